#!/usr/bin/env bash
# Provision the host (Debian 12 / bookworm) for the harness:
#   PostgreSQL 15 server + dev headers, pgvector, bubblewrap, build tools, setpriv, and (npm, under .data/tools)
#   the OpenAPI linter the tests run.
# Idempotent: when everything is present it runs no apt-get at all and exits quickly.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
VECTOR_CONTROL=/usr/share/postgresql/$PG_MAJOR/extension/vector.control
TRIXIE_SRC_LIST=/etc/apt/sources.list.d/harness-trixie-src.sources
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIRED_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR bubblewrap build-essential util-linux)

log() { echo "provision: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Everything below changes system state; require root (or passwordless sudo).
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo available)"
  SUDO=(sudo -n)
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# apt-get update at most once per run, and only when we actually need to install something.
APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "step: apt-get update"
    "${SUDO[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
}

apt_install() {
  apt_update
  log "step: apt-get install $*"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Print "URI<TAB>SIGNED_BY" of the configured main Debian archive (the entry serving the
# plain 'bookworm' suite), so we never hard-code a mirror host name.
find_debian_mirror() {
  local f out=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] && [ "$f" != "$TRIXIE_SRC_LIST" ] || continue
    # deb822: paragraphs separated by blank lines.
    out=$(awk 'BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; suites = ""; signed = ""; types = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^URIs:/)      { sub(/^URIs:[ \t]*/, "", line); split(line, u, /[ \t]+/); uri = u[1] }
          if (line ~ /^Suites:/)    { sub(/^Suites:[ \t]*/, "", line); suites = line }
          if (line ~ /^Types:/)     { sub(/^Types:[ \t]*/, "", line); types = line }
          # Only a single-line key path is reusable; inline key blocks are skipped.
          if (line ~ /^Signed-By:[ \t]*\//) { sub(/^Signed-By:[ \t]*/, "", line); signed = line }
        }
        if (types !~ /(^|[ \t])deb([ \t]|$)/) next
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == "bookworm") { print uri "\t" signed; exit }
      }' "$f")
    if [ -n "$out" ]; then echo "$out"; return 0; fi
  done

  # One-line format fallback: "deb [opts] URI bookworm main ..."
  if [ -r /etc/apt/sources.list ]; then
    out=$(awk '$1 == "deb" {
        signed = ""; i = 2
        if ($2 ~ /^\[/) {
          while (i <= NF) {
            if ($i ~ /signed-by=/) { s = $i; sub(/.*signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
            if ($i ~ /\]$/) { i++; break }
            i++
          }
        }
        if ($(i + 1) == "bookworm") { print $i "\t" signed; exit }
      }' /etc/apt/sources.list)
    if [ -n "$out" ]; then echo "$out"; return 0; fi
  fi
  return 1
}

build_pgvector_from_source() {
  local mirror uri signed tmp srcdir
  mirror=$(find_debian_mirror) || die "could not find the bookworm archive URI in apt sources"
  uri=${mirror%%$'\t'*}
  signed=${mirror#*$'\t'}
  [ -n "$signed" ] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
  log "step: adding trixie deb-src ($uri) as $TRIXIE_SRC_LIST"
  "${SUDO[@]}" tee "$TRIXIE_SRC_LIST" >/dev/null <<EOF
# Added by scripts/provision.sh to build pgvector from trixie's source package.
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: $signed
EOF
  # Refresh only this one source: much faster than a full update, leaves other lists alone.
  log "step: apt-get update (trixie deb-src only)"
  "${SUDO[@]}" apt-get update -qq \
    -o Dir::Etc::sourcelist="$TRIXIE_SRC_LIST" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0

  is_installed dpkg-dev || apt_install dpkg-dev # dpkg-source, used by apt-get source

  tmp=$(mktemp -d /tmp/pgvector-build.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  # apt downloads as the sandbox user _apt; give it the dir (avoids an "unsandboxed" warning).
  if id -u _apt >/dev/null 2>&1; then "${SUDO[@]}" chown _apt "$tmp"; fi
  log "step: apt-get source pgvector (trixie)"
  (cd "$tmp" && "${SUDO[@]}" apt-get source -qq pgvector >/dev/null)
  srcdir=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
  [ -n "$srcdir" ] || die "apt-get source pgvector produced no source directory"
  log "step: building $(basename "$srcdir") against $PG_CONFIG"
  # OPTFLAGS="" drops upstream's -march=native, so the binary runs on any x86-64 CI host.
  "${SUDO[@]}" make -s -C "$srcdir" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
  "${SUDO[@]}" make -s -C "$srcdir" install PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
  rm -rf "$tmp"
  trap - EXIT

  # The deb-src entry was only needed for this build; drop it so routine
  # `apt-get update` runs do not keep downloading trixie's Sources index.
  "${SUDO[@]}" rm -f "$TRIXIE_SRC_LIST"
}

# --- 1. Debian packages -------------------------------------------------------
missing=()
for pkg in "${REQUIRED_PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  log "packages: all present (${REQUIRED_PACKAGES[*]})"
fi
command -v setpriv >/dev/null 2>&1 || die "setpriv missing even though util-linux is installed"
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG missing after installing postgresql-server-dev-$PG_MAJOR"

# --- 2. pgvector --------------------------------------------------------------
if [ -f "$VECTOR_CONTROL" ]; then
  log "pgvector: already installed ($(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$VECTOR_CONTROL"))"
else
  candidate_of() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
  candidate=$(candidate_of "postgresql-$PG_MAJOR-pgvector")
  if { [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; } && [ "$APT_UPDATED" -eq 0 ]; then
    apt_update # package lists may just be stale/empty on a fresh image
    candidate=$(candidate_of "postgresql-$PG_MAJOR-pgvector")
  fi
  if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
    apt_install "postgresql-$PG_MAJOR-pgvector"
  else
    log "pgvector: no binary package postgresql-$PG_MAJOR-pgvector, building from source"
    build_pgvector_from_source
  fi
  [ -f "$VECTOR_CONTROL" ] || die "pgvector install finished but $VECTOR_CONTROL is missing"
  log "pgvector: installed ($(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$VECTOR_CONTROL"))"
fi

# --- 3. the unprivileged users ---------------------------------------------------
# harness-pg owns local and test PostgreSQL clusters (initdb refuses root).
if [ "$(id -u)" -eq 0 ] && ! id harness-pg >/dev/null 2>&1; then
  log "step: create system user harness-pg"
  useradd --system --no-create-home --shell /usr/sbin/nologin harness-pg
fi

# --- 4. the OpenAPI linter the tests run (npm, project-local) ---------------------
REDOCLY_VERSION=2.77.0
REDOCLY_DIR="$REPO_ROOT/.data/tools/redocly"
if [ -x "$REDOCLY_DIR/node_modules/.bin/redocly" ] && grep -q "\"version\": \"$REDOCLY_VERSION\"" "$REDOCLY_DIR/node_modules/@redocly/cli/package.json" 2>/dev/null; then
  log "redocly: already installed ($REDOCLY_VERSION)"
else
  command -v npm >/dev/null 2>&1 || die "npm is required for the OpenAPI lint (Node.js ships with this machine image)"
  log "step: install @redocly/cli $REDOCLY_VERSION under .data/tools/redocly"
  mkdir -p "$REDOCLY_DIR"
  npm install --prefix "$REDOCLY_DIR" --no-audit --no-fund --loglevel=error "@redocly/cli@$REDOCLY_VERSION" >/dev/null
  [ -x "$REDOCLY_DIR/node_modules/.bin/redocly" ] || die "redocly install finished but its binary is missing"
fi

# --- 5. the MCP tests' outside client: the official TypeScript SDK (npm, project-local) ---
MCP_SDK_VERSION=1.32.2
MCP_SDK_DIR="$REPO_ROOT/.data/tools/mcp-sdk"
if grep -q "\"version\": \"$MCP_SDK_VERSION\"" "$MCP_SDK_DIR/node_modules/@modelcontextprotocol/sdk/package.json" 2>/dev/null; then
  log "mcp-sdk: already installed ($MCP_SDK_VERSION)"
else
  command -v npm >/dev/null 2>&1 || die "npm is required for the MCP client tests (Node.js ships with this machine image)"
  log "step: install @modelcontextprotocol/sdk $MCP_SDK_VERSION under .data/tools/mcp-sdk"
  mkdir -p "$MCP_SDK_DIR"
  npm install --prefix "$MCP_SDK_DIR" --no-audit --no-fund --loglevel=error "@modelcontextprotocol/sdk@$MCP_SDK_VERSION" >/dev/null
  [ -f "$MCP_SDK_DIR/node_modules/@modelcontextprotocol/sdk/package.json" ] || die "mcp-sdk install finished but the package is missing"
fi

# --- 6. the web console's browser tests (issue 19): Debian's chromium and the certified oidc-provider ---------
# Playwright drives the distribution's chromium through ExecutablePath and never downloads a browser of its own.
# fonts-liberation: installed without recommends, chromium would render the screenshots' text in boxes.
console_missing=()
for pkg in chromium fonts-liberation; do
  is_installed "$pkg" || console_missing+=("$pkg")
done
if [ "${#console_missing[@]}" -gt 0 ]; then
  apt_install "${console_missing[@]}"
else
  log "chromium: already installed"
fi
[ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"

OIDC_PROVIDER_VERSION=9.13.3
OIDC_PROVIDER_DIR="$REPO_ROOT/.data/tools/oidc-provider"
if grep -q "\"version\": \"$OIDC_PROVIDER_VERSION\"" "$OIDC_PROVIDER_DIR/node_modules/oidc-provider/package.json" 2>/dev/null; then
  log "oidc-provider: already installed ($OIDC_PROVIDER_VERSION)"
else
  command -v npm >/dev/null 2>&1 || die "npm is required for the console tests' identity provider"
  log "step: install oidc-provider $OIDC_PROVIDER_VERSION under .data/tools/oidc-provider"
  mkdir -p "$OIDC_PROVIDER_DIR"
  npm install --prefix "$OIDC_PROVIDER_DIR" --no-audit --no-fund --loglevel=error "oidc-provider@$OIDC_PROVIDER_VERSION" >/dev/null
  [ -f "$OIDC_PROVIDER_DIR/node_modules/oidc-provider/lib/index.js" ] || die "oidc-provider install finished but its module is missing"
fi

# --- 7. the database failover test and soak (issue 20): Debian's Patroni and etcd ------------------------------
# scripts/patroni-cluster.sh runs its own etcd and Patroni nodes under a directory of its own; the packages' system
# services are never used: they are stopped and disabled (masked under systemd) right after the install, and again on
# every run in case something enabled them.
HA_PACKAGES=(patroni python3-etcd etcd-server etcd-client)
ha_missing=()
for pkg in "${HA_PACKAGES[@]}"; do
  is_installed "$pkg" || ha_missing+=("$pkg")
done
if [ "${#ha_missing[@]}" -gt 0 ]; then
  apt_install "${ha_missing[@]}"
else
  log "patroni/etcd: already installed"
fi
for unit in etcd patroni; do
  if [ -d /run/systemd/system ]; then
    if [ "$(systemctl is-enabled "$unit" 2>/dev/null || true)" != masked ]; then
      log "step: stop and mask the $unit system service (scripts/patroni-cluster.sh runs its own)"
      "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
      "${SUDO[@]}" systemctl mask "$unit" >/dev/null
    fi
  elif [ -x "/etc/init.d/$unit" ]; then
    if "${SUDO[@]}" "/etc/init.d/$unit" status >/dev/null 2>&1; then
      log "step: stop the $unit init.d service (scripts/patroni-cluster.sh runs its own)"
      "${SUDO[@]}" "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
    fi
    if ls /etc/rc[2-5].d/S*"$unit" >/dev/null 2>&1; then
      "${SUDO[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  fi
done
for bin in patroni patronictl etcd; do
  command -v "$bin" >/dev/null 2>&1 || die "$bin missing after installing ${HA_PACKAGES[*]}"
done

log "done"

#!/usr/bin/env python3
"""Verify a HarnessServer audit export (JSON Lines from GET /v1/audit/export). Python 3 standard library only.

Each line is one event. Its hashed object is the line without "hash" and "payload":
    hash        = hex(SHA-256(UTF-8(prevHash) || UTF-8(JCS(event without hash and payload))))
    payloadHash = hex(SHA-256(UTF-8(JCS(payload))))          (checked when "payload" is present; absent = redacted)
JCS is RFC 8785: members sorted by UTF-16 code units, no whitespace, ECMAScript number and string forms.
The first line must have prevHash = 64 zeros when the export starts at seq 1; seqs must be consecutive.

With --checkpoint ANCHORS.jsonl (lines of the server's anchor file, Harness:Audit:AnchorPath, or checkpoints as
GET /v1/audit/checkpoints gives them), the chain must also reach every checkpoint of its tenant and have its hash
there: a tail cut back in the database, checkpoints and head included, fails. (Their ECDSA signatures are checked by
the server, GET /v1/audit/verify?checkpoint=, or with openssl; the standard library has no ECDSA.)

Usage: verify-audit-export.py EXPORT.jsonl [--checkpoint ANCHORS.jsonl]   (prints OK, or the first bad seq; exits 1 on failure)
"""
import hashlib
import json
import math
import sys

GENESIS = "0" * 64


def jcs(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, (int, float)):
        return jcs_number(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # surrogatepass: a name may hold a lone surrogate (escaped as \udxxx in the line), which still sorts by code unit
        keys = sorted(value.keys(), key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(jcs_string(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise TypeError(f"not JSON: {value!r}")


def jcs_string(s):
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif c < 0x20 or 0xD800 <= c <= 0xDFFF:
            out.append("\\u%04x" % c)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jcs_number(x):
    x = float(x)  # JSON numbers are IEEE doubles in JCS, as in ECMAScript
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and Infinity are not JSON")
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    sign = "-" if x < 0 else ""
    r = repr(abs(x))  # shortest round-trip digits
    mantissa, _, exp = r.partition("e")
    exponent = int(exp) if exp else 0
    int_part, _, frac = mantissa.partition(".")
    digits = (int_part + frac).lstrip("0")
    n = len(int_part) + exponent - (len(int_part + frac) - len((int_part + frac).lstrip("0")))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + "e" + ("-" if e < 0 else "+") + str(abs(e))
    return sign + text


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def main(path, anchors_path=None):
    previous_seq = None
    previous_hash = None
    first_seq = None
    tenant = None
    hashes = {}
    count = 0
    anchors = []
    if anchors_path is not None:
        with open(anchors_path, encoding="utf-8") as lines:
            anchors = [json.loads(line) for line in lines if line.strip()]
    wanted = {a["seq"] for a in anchors}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                seq = event["seq"]
            except (ValueError, KeyError) as error:
                return fail(f"line {number}", f"not an audit event: {error}")
            if previous_seq is None:
                if seq == 1 and event["prevHash"] != GENESIS:
                    return fail(seq, "the first event's prevHash is not 64 zeros")
            else:
                if seq != previous_seq + 1:
                    return fail(previous_seq + 1, f"missing (next line has seq {seq})")
                if event["prevHash"] != previous_hash:
                    return fail(seq, "prevHash does not match the previous event's hash")
            if "payload" in event and sha256_hex(jcs(event["payload"]).encode("utf-8")) != event["payloadHash"]:
                return fail(seq, "payload does not match payloadHash")
            hashed = {k: v for k, v in event.items() if k not in ("hash", "payload")}
            computed = sha256_hex(event["prevHash"].encode("utf-8") + jcs(hashed).encode("utf-8"))
            if computed != event["hash"]:
                return fail(seq, "hash does not match the event's content")
            previous_seq, previous_hash = seq, event["hash"]
            if first_seq is None:
                first_seq, tenant = seq, event["tenant"]
            if seq in wanted:
                hashes[seq] = event["hash"]
            count += 1
    if anchors_path is not None:
        for anchor in sorted((a for a in anchors if a.get("tenant") == tenant), key=lambda a: a["seq"]):
            if first_seq is not None and anchor["seq"] < first_seq:
                continue
            if previous_seq is None or anchor["seq"] > previous_seq:
                return fail(anchor["seq"], f"the chain ends at seq {previous_seq or 0}, but a checkpoint signed at {anchor['at']} covers seq {anchor['seq']}: events were removed from the tail")
            if hashes[anchor["seq"]] != anchor["hash"]:
                return fail(anchor["seq"], f"differs from the checkpoint signed at {anchor['at']}")
    print(f"OK {count} events" + (f", last seq {previous_seq}, hash {previous_hash}" if count else ""))
    return 0


def fail(seq, reason):
    print(f"FAIL at seq {seq}: {reason}")
    return 1


if __name__ == "__main__":
    args = sys.argv[1:]
    anchors = None
    if len(args) == 3 and args[1] == "--checkpoint":
        anchors = args[2]
        args = args[:1]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(args[0], anchors))

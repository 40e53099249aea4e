// The certified oidc-provider (npm, installed under .data/tools/oidc-provider by scripts/provision.sh) as the
// console tests' identity provider: the authorization code flow with PKCE required, one confidential client (the
// console), and accounts whose id tokens carry the tenant, teams and roles claims the server reads.
//   OIDC_PROVIDER_MODULE  path of oidc-provider's lib/index.js
//   OIDC_PORT             the loopback port to listen on
//   OIDC_CLIENT           JSON: { client_id, client_secret, redirect_uris }
//   OIDC_ACCOUNTS         JSON: { "<login>": { name, tid, groups: [...], roles: [...] } }
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);
const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const client = JSON.parse(process.env.OIDC_CLIENT);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);

const provider = new Provider(issuer, {
  clients: [{
    ...client,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name'],
    harness: ['tid', 'groups', 'roles'],
  },
  // The server reads identity from the id token only (as it does from an access token), so claims go there.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['console-tests-only-cookie-key'] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) {
      return undefined;
    }

    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

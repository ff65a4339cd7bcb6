// Loopback OIDC provider for busgate's tests (started by scripts/oidc-up.sh).
//
// Issues RS256 JWT access tokens for the client_credentials grant:
//   iss = http://127.0.0.1:$BG_OIDC_PORT, aud = "busgate", sub = client_id,
//   groups = the client's static groups below, exp = iat + TTL.
// The signing key is generated on first start into $BG_OIDC_STATE (the
// cache, never the checkout); its public half is also written next to it as
// jwks-public.json for configurations that want a jwks_file.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import Provider from 'oidc-provider';

const port = Number(process.env.BG_OIDC_PORT || 19400);
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;
const stateDir = process.env.BG_OIDC_STATE || path.resolve('state');
const tokenTTL = Number(process.env.BG_OIDC_TOKEN_TTL || 3600);
const shortTTL = Number(process.env.BG_OIDC_SHORT_TTL || 15);

// client_id -> groups claim. Secret of each client: "<client_id>-secret".
const CLIENT_GROUPS = {
  'svc-orders': ['orders'],
  'svc-reporting': ['reporting'],
  'svc-admin': ['platform-admin'],
  'svc-intruder': [],
  'svc-short': ['orders'], // tokens live BG_OIDC_SHORT_TTL (15) seconds
};
const SHORT_LIVED = new Set(['svc-short']);

// loadKeys: the private JWKS, created once with mode 0600. A restart keeps
// the key, so tokens and a busgate that cached the JWKS stay valid.
function loadKeys() {
  const priv = path.join(stateDir, 'jwks-private.json');
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(priv)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = privateKey.export({ format: 'jwk' });
    const kid = crypto.randomBytes(8).toString('hex');
    const tmp = `${priv}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ keys: [{ ...jwk, kid, use: 'sig', alg: 'RS256' }] }),
      { mode: 0o600 });
    fs.renameSync(tmp, priv);
  }
  const jwks = JSON.parse(fs.readFileSync(priv, 'utf8'));
  const pub = jwks.keys.map(({ kty, n, e, kid, use, alg }) => ({ kty, n, e, kid, use, alg }));
  fs.writeFileSync(path.join(stateDir, 'jwks-public.json'), JSON.stringify({ keys: pub }, null, 2));
  return jwks;
}

function clients() {
  return Object.keys(CLIENT_GROUPS).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // oidc-provider accepts client_secret_post as well for this method.
    token_endpoint_auth_method: 'client_secret_basic',
  }));
}

const configuration = {
  clients: clients(),
  jwks: loadKeys(),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Clients never send resource=; without a resource the token would be
      // opaque, so every token is for busgate.
      defaultResource: () => 'urn:busgate',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'kafka amqp http',
        audience: 'busgate',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    const groups = CLIENT_GROUPS[token.clientId];
    return groups ? { groups } : undefined;
  },
  ttl: {
    ClientCredentials: (ctx, token, client) => (SHORT_LIVED.has(client.clientId) ? shortTTL : tokenTTL),
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message));

const server = http.createServer(provider.callback());
server.listen(port, host, () => {
  console.log(`oidc provider ${issuer} (pid ${process.pid})`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

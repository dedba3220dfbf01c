// A real OpenID Connect provider (oidc-provider 9.x) for the test suite, laid
// out like Keycloak so that the unchanged python-keycloak client works with it:
//
//   issuer      http://127.0.0.1:PORT/realms/REALM
//   discovery   /realms/REALM/.well-known/openid-configuration
//   endpoints   /realms/REALM/protocol/openid-connect/{auth,token,userinfo,certs,
//               logout,token/introspect,revoke}
//
// Usage: node provider.mjs CONFIG.json
//   CONFIG = {"port": N, "realm": "ddns",
//             "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                          "post_logout_redirect_uris": [...]}],
//             "users": [{"sub", "username", "password", "email", "name",
//                        "groups": [...], "eduperson_entitlement": [...]}]}
//
// Prints "ready http://127.0.0.1:PORT/realms/REALM" on stdout once listening;
// everything else goes to stderr. Exits when stdin closes (so a crashed test
// run leaves no orphan) and on SIGTERM/SIGINT. Keys are made fresh at start.
//
// What is Keycloak-like beyond the paths:
// - a real HTML login form (inputs #username/#password, button #kc-login
//   "Sign In"; a bad password shows it again with "Invalid username or
//   password."), consent is granted automatically (first-party clients);
// - POST .../logout with client_id, client_secret and refresh_token (what
//   python-keycloak's logout() sends) ends the SSO session and answers 204;
// - GET .../logout?id_token_hint=...&post_logout_redirect_uri=...&state=...
//   (or the same as a POSTed form) ends the SSO session and redirects at
//   once, without a confirmation page.

import { createHash, generateKeyPairSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

if (process.argv.length < 3) {
  process.stderr.write('usage: node provider.mjs CONFIG.json\n');
  process.exit(2);
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const HOST = '127.0.0.1';
const port = Number(config.port);
const realm = config.realm || 'ddns';
const MOUNT = `/realms/${realm}`;
const ISSUER = `http://${HOST}:${port}${MOUNT}`;
const OIDC = '/protocol/openid-connect';
const LOGOUT_PATH = `${OIDC}/logout`;
const INTERACTION_PREFIX = '/interaction/';
const BODY_LIMIT = 64 * 1024;

const log = (...args) => process.stderr.write(`[oidc-provider ${port}] ${args.join(' ')}\n`);

// ---------------------------------------------------------------- accounts

const users = (config.users || []).map((u) => ({ ...u, sub: String(u.sub || u.username) }));
const usersBySub = new Map(users.map((u) => [u.sub, u]));

function findUserByLogin(login) {
  const wanted = String(login || '').trim().toLowerCase();
  if (!wanted) return undefined;
  return users.find((u) => String(u.username || '').toLowerCase() === wanted)
    || users.find((u) => u.email && String(u.email).toLowerCase() === wanted);
}

function safeEqual(a, b) {
  const x = createHash('sha256').update(String(a ?? '')).digest();
  const y = createHash('sha256').update(String(b ?? '')).digest();
  return timingSafeEqual(x, y) && String(a ?? '') === String(b ?? '');
}

function accountClaims(user) {
  const claims = {
    sub: user.sub,
    email: user.email,
    email_verified: user.email_verified ?? Boolean(user.email),
    name: user.name,
    preferred_username: user.username,
    given_name: user.given_name,
    family_name: user.family_name,
    groups: user.groups ?? [],
    eduperson_entitlement: user.eduperson_entitlement ?? [],
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return claims;
}

async function findAccount(ctx, sub) {
  const user = usersBySub.get(String(sub));
  if (!user) return undefined;
  return {
    accountId: user.sub,
    async claims() { return accountClaims(user); },
  };
}

// ---------------------------------------------------------------- keys

function signingJwk() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

// ---------------------------------------------------------------- html

const escapeHtml = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, inner) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
</head>
<body>
<div id="kc-header"><div id="kc-header-wrapper">${escapeHtml(realm)}</div></div>
<main id="kc-content">
${inner}
</main>
</body>
</html>
`;
}

function loginPage({ action, username = '', error }) {
  const alert = error
    ? `<div id="input-error" class="alert-error" role="alert" aria-live="polite">${escapeHtml(error)}</div>\n`
    : '';
  return page(`Sign in to ${realm}`, `<h1 id="kc-page-title">Sign in to your account</h1>
${alert}<form id="kc-form-login" action="${escapeHtml(action)}" method="post">
  <div>
    <label for="username">Username or email</label>
    <input id="username" name="username" type="text" value="${escapeHtml(username)}" autocomplete="username" autofocus required>
  </div>
  <div>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
  </div>
  <div id="kc-form-buttons">
    <button id="kc-login" name="login" type="submit">Sign In</button>
  </div>
</form>`);
}

function messagePage(ctx, status, title, message) {
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = page(title, `<h1 id="kc-page-title">${escapeHtml(title)}</h1>
<p id="kc-info-message" class="instruction">${escapeHtml(message)}</p>`);
}

// ---------------------------------------------------------------- provider

const clients = (config.clients || []).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris || [],
  post_logout_redirect_uris: c.post_logout_redirect_uris || [],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_post',
}));

// Consent is granted automatically (all clients here are first-party), as
// oidc-provider's documentation suggests for that case: the grant used for an
// authorization request always covers the scopes and claims it asks for.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const clientId = oidc.client.clientId;
  const accountId = oidc.session.accountId;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
    grant = new oidc.provider.Grant({ accountId, clientId });
  }
  const scope = [...oidc.requestParamOIDCScopes];
  if (scope.length) grant.addOIDCScope(scope.join(' '));
  const claims = [...oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

const provider = new Provider(ISSUER, {
  clients,
  findAccount,
  jwks: { keys: [signingJwk()] },
  cookies: {
    keys: [randomBytes(32).toString('base64url')],
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
  },
  claims: {
    openid: ['sub', 'groups', 'eduperson_entitlement'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'given_name', 'family_name'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  responseTypes: ['code'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  loadExistingGrant,
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    // Discovery's end_session_endpoint; GET and POST to it are answered by
    // the middleware below (logout without a confirmation page).
    rpInitiatedLogout: { enabled: true },
  },
  interactions: {
    url: (ctx, interaction) => `${MOUNT}${INTERACTION_PREFIX}${interaction.uid}`,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('We are sorry...', `<h1 id="kc-page-title">We are sorry...</h1>
<p id="kc-error-message" class="instruction">${escapeHtml(out.error)}: ${escapeHtml(out.error_description || '')}</p>`);
  },
  ttl: {
    AccessToken: 300,
    AuthorizationCode: 60,
    IdToken: 300,
    RefreshToken: 1800,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  routes: {
    authorization: `${OIDC}/auth`,
    token: `${OIDC}/token`,
    userinfo: `${OIDC}/userinfo`,
    jwks: `${OIDC}/certs`,
    end_session: LOGOUT_PATH,
    introspection: `${OIDC}/token/introspect`,
    revocation: `${OIDC}/revoke`,
    device_authorization: `${OIDC}/auth/device`,
    code_verification: '/device',
    backchannel_authentication: `${OIDC}/ext/ciba/auth`,
    pushed_authorization_request: `${OIDC}/ext/par/request`,
    registration: '/clients-registrations/openid-connect',
  },
});

provider.on('server_error', (ctx, err) => log('server_error', err?.stack || err));
for (const event of ['authorization.error', 'grant.error', 'introspection.error', 'end_session.error', 'userinfo.error']) {
  provider.on(event, (ctx, err) => log(event, `${err?.error || err}: ${err?.error_description || ''}`,
    err?.cause ? `(${err.cause.message || err.cause})` : ''));
}

// ---------------------------------------------------------------- helpers

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function jsonError(ctx, status, error, description) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error, error_description: description };
}

async function revokeGrant(grantId) {
  if (!grantId) return;
  await Promise.all([provider.AccessToken, provider.RefreshToken, provider.AuthorizationCode]
    .map((model) => model.revokeByGrantId(grantId)));
  const grant = await provider.Grant.find(grantId);
  if (grant) await grant.destroy();
}

// Ends an SSO session the way the provider's own logout does: revoke the
// grants of every client in it, then destroy it.
async function endSession(session) {
  if (!session) return;
  for (const { grantId } of Object.values(session.authorizations || {})) {
    await revokeGrant(grantId);
  }
  await session.destroy();
}

function clearSessionCookie(ctx) {
  ctx.cookies.set(provider.cookieName('session'), null, { httpOnly: true, sameSite: 'lax' });
}

function decodeJwtPayload(jwt) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

// ---------------------------------------------------------------- logout

// python-keycloak's logout(refresh_token): POST client_id, client_secret and
// refresh_token; Keycloak answers 204 after ending the user's session.
async function backchannelLogout(ctx, form) {
  const client = await provider.Client.find(String(form.get('client_id') || ''));
  if (!client || !client.clientSecret || !safeEqual(client.clientSecret, form.get('client_secret'))) {
    jsonError(ctx, 400, 'unauthorized_client', 'Invalid client or Invalid client credentials');
    return;
  }
  const token = await provider.RefreshToken.find(String(form.get('refresh_token')), { ignoreSessionBinding: true });
  if (!token || !token.isValid || token.clientId !== client.clientId) {
    jsonError(ctx, 400, 'invalid_grant', 'Invalid refresh token');
    return;
  }
  const session = token.sessionUid ? await provider.Session.findByUid(token.sessionUid) : undefined;
  if (session) {
    await endSession(session);
  } else {
    await revokeGrant(token.grantId);
  }
  await token.destroy();
  ctx.status = 204;
  ctx.body = null;
}

// RP-initiated logout by the browser (GET, or a POSTed form): ends the
// session and redirects to the registered post_logout_redirect_uri at once,
// without a confirmation page.
async function browserLogout(ctx, params) {
  for (const name of ['id_token_hint', 'post_logout_redirect_uri', 'client_id', 'state']) {
    if (params.getAll(name).length > 1) {
      messagePage(ctx, 400, 'We are sorry...', `Duplicate parameter: ${name}`);
      return;
    }
  }
  const one = (name) => params.get(name) ?? undefined;
  const hint = one('id_token_hint');
  const redirectUri = one('post_logout_redirect_uri');
  let clientId = one('client_id');
  let client;
  if (hint) {
    let aud;
    try {
      ({ aud } = decodeJwtPayload(hint));
    } catch {
      messagePage(ctx, 400, 'We are sorry...', 'Invalid parameter: id_token_hint');
      return;
    }
    const hintClientId = Array.isArray(aud) ? aud[0] : aud;
    if (clientId && clientId !== hintClientId) {
      messagePage(ctx, 400, 'We are sorry...', 'Parameter client_id does not match the id_token_hint');
      return;
    }
    clientId = hintClientId;
    client = await provider.Client.find(String(clientId));
    try {
      if (!client) throw new Error('client not found');
      await provider.IdToken.validate(hint, client);
    } catch {
      messagePage(ctx, 400, 'We are sorry...', 'Invalid parameter: id_token_hint');
      return;
    }
  } else if (clientId) {
    client = await provider.Client.find(String(clientId));
    if (!client) {
      messagePage(ctx, 400, 'We are sorry...', 'Invalid parameter: client_id');
      return;
    }
  }
  if (redirectUri !== undefined) {
    if (!client) {
      messagePage(ctx, 400, 'We are sorry...', 'Missing parameters: id_token_hint');
      return;
    }
    if (!client.postLogoutRedirectUriAllowed(redirectUri)) {
      messagePage(ctx, 400, 'We are sorry...', 'Invalid redirect uri');
      return;
    }
  }

  const session = await provider.Session.get(ctx);
  if (session && !session.new && session.accountId) {
    await endSession(session);
  }
  clearSessionCookie(ctx);
  ctx.set('Cache-Control', 'no-store');

  if (redirectUri !== undefined) {
    const target = new URL(redirectUri);
    if (one('state') !== undefined) target.searchParams.set('state', one('state'));
    ctx.status = 302;
    ctx.redirect(target.href);
    return;
  }
  messagePage(ctx, 200, 'You are logged out', 'You are logged out.');
}

// ---------------------------------------------------------------- login UI

async function interaction(ctx, uid) {
  ctx.set('Cache-Control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch {
    messagePage(ctx, 400, 'Page has expired', 'Your login attempt timed out. Login will start from the beginning.');
    return;
  }
  if (details.uid !== uid) {
    messagePage(ctx, 400, 'Page has expired', 'Your login attempt timed out. Login will start from the beginning.');
    return;
  }
  const action = `${MOUNT}${INTERACTION_PREFIX}${encodeURIComponent(uid)}`;
  const { prompt } = details;

  if (prompt.name === 'consent') {
    // Auto-consent (first-party clients): grant what is asked for.
    const { params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    if (prompt.details.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  if (prompt.name !== 'login') {
    messagePage(ctx, 400, 'We are sorry...', `Unsupported prompt: ${prompt.name}`);
    return;
  }

  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = loginPage({ action, username: details.params.login_hint || '' });
    return;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 405;
    return;
  }
  const form = new URLSearchParams((await readForm(ctx.req)).toString('utf8'));
  const username = form.get('username') || '';
  const user = findUserByLogin(username);
  if (!user || !safeEqual(user.password, form.get('password') || '')) {
    ctx.status = 200;
    ctx.type = 'html';
    ctx.body = loginPage({ action, username, error: 'Invalid username or password.' });
    return;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: user.sub, amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
}

// Runs before the provider's own router (Provider is a Koa app).
provider.use(async (ctx, next) => {
  if (ctx.path.startsWith(INTERACTION_PREFIX)) {
    const uid = ctx.path.slice(INTERACTION_PREFIX.length);
    if (uid && !uid.includes('/')) {
      await interaction(ctx, uid);
      return;
    }
  }
  if (ctx.path === LOGOUT_PATH) {
    if (ctx.method === 'GET') {
      await browserLogout(ctx, new URLSearchParams(ctx.querystring));
      return;
    }
    if (ctx.method === 'POST') {
      if (ctx.get('content-type') && !ctx.is('application/x-www-form-urlencoded')) {
        jsonError(ctx, 400, 'invalid_request', 'only application/x-www-form-urlencoded bodies are supported');
        return;
      }
      const form = new URLSearchParams((await readForm(ctx.req)).toString('utf8'));
      if (form.has('refresh_token')) {
        await backchannelLogout(ctx, form);
      } else {
        await browserLogout(ctx, form);
      }
      return;
    }
  }
  await next();
});

// ---------------------------------------------------------------- server

const callback = provider.callback();

const server = http.createServer((req, res) => {
  const url = req.url || '/';
  if (url === MOUNT || url.startsWith(`${MOUNT}/`) || url.startsWith(`${MOUNT}?`)) {
    // Mounted under /realms/REALM, the way express mounting does it.
    req.originalUrl = url;
    let rest = url.slice(MOUNT.length);
    if (!rest.startsWith('/')) rest = `/${rest}`;
    req.url = rest;
    callback(req, res);
    return;
  }
  res.statusCode = 404;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ error: 'Unable to find matching target resource method' }));
});

let stopping = false;
function shutdown(code, why) {
  if (stopping) return;
  stopping = true;
  log(`stopping (${why})`, Date.now());
  server.close();
  server.closeAllConnections?.();
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0, 'SIGTERM'));
process.on('SIGINT', () => shutdown(0, 'SIGINT'));
process.stdin.on('end', () => shutdown(0, 'stdin closed'));
process.stdin.on('close', () => shutdown(0, 'stdin closed'));
process.stdin.on('error', () => shutdown(0, 'stdin error'));
process.stdin.resume();

server.on('error', (err) => {
  log('server error:', err.stack || err);
  process.exit(1);
});

server.listen(port, HOST, () => {
  process.stdout.write(`ready ${ISSUER}\n`);
});

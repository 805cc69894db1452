// Signing in at the caller identity provider, when the server names one (`sign-in.json`):
// OIDC authorization code with PKCE (S256 only), by a public client, done by this page alone.
// The verifier and the state wait in this tab's sessionStorage for exactly one answer; the
// access token the provider issues is then used as a pasted token is (the server checks it).

const PENDING_KEY = 'consentry:oidc-pending';
const OPTIONS_URL = new URL('dashboard/sign-in.json', document.baseURI).toString();
// A provider's words are shown, never trusted to be short.
const MAX_PROVIDER_TEXT = 300;

/** The identity provider's settings from the server, or null when there is none. */
export async function loadSignInOptions() {
  try {
    const response = await fetch(OPTIONS_URL, { credentials: 'omit', headers: { Accept: 'application/json' } });
    if (!response.ok) return null;
    return (await response.json()).oidc || null;
  } catch {
    return null;
  }
}

function base64url(bytes) {
  let binary = '';
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** `size` bytes from the browser's CSPRNG, base64url: 32 bytes make 43 characters. */
function randomValue(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

function problem(message, code) {
  return { message, code };
}

function providerText(value) {
  return String(value || '').slice(0, MAX_PROVIDER_TEXT);
}

/** Sends the browser to the provider's sign-in page, keeping the verifier and state here. */
export async function startSignIn(oidc) {
  if (!window.crypto || !crypto.subtle) {
    throw problem('This browser cannot sign in here without https (no Web Crypto): open the dashboard at its https address', 'INSECURE_CONTEXT');
  }
  const verifier = randomValue(32);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const pending = { state: randomValue(32), nonce: randomValue(32), verifier };
  try {
    window.sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  } catch {
    throw problem('This browser keeps no session storage for this page, which signing in needs: paste a caller token instead', 'NO_STORAGE');
  }
  const url = new URL(oidc.authorizationEndpoint);
  const query = url.searchParams;
  query.set('response_type', 'code');
  query.set('client_id', oidc.clientId);
  query.set('redirect_uri', oidc.redirectUri);
  query.set('scope', oidc.scope);
  query.set('state', pending.state);
  query.set('nonce', pending.nonce);
  query.set('code_challenge', base64url(digest));
  query.set('code_challenge_method', 'S256');
  window.location.assign(url.toString());
}

/**
 * The provider's answer in this page's address, if it holds one: taken out of the address bar
 * at once (before anything else runs), and paired with the sign-in this tab started, which is
 * used up whatever the answer says. Null when the address holds no answer.
 */
export function takeProviderAnswer() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has('code') && !params.has('error') && !params.has('state')) return null;
  window.history.replaceState(window.history.state, '', window.location.pathname + window.location.hash);
  let pending = null;
  try {
    pending = JSON.parse(window.sessionStorage.getItem(PENDING_KEY) || 'null');
    window.sessionStorage.removeItem(PENDING_KEY);
  } catch { /* nothing pending */ }
  return {
    code: params.get('code'),
    state: params.get('state'),
    iss: params.get('iss'),
    error: params.get('error'),
    errorDescription: params.get('error_description'),
    pending,
  };
}

/**
 * Checks the provider's answer and redeems its code for an access token at the token
 * endpoint. Throws {message, code} for anything refused; a code whose state does not match
 * the sign-in started here is never sent anywhere.
 */
export async function redeem(answer, oidc) {
  const { pending } = answer;
  if (!pending || !answer.state || !pending.state || answer.state !== pending.state) {
    throw problem('This sign-in answer was not asked for by this tab (its state does not match the sign-in started here), so it was refused and not used. Sign in again.', 'STATE_MISMATCH');
  }
  if (!oidc) {
    throw problem('Signing in at the identity provider is no longer configured on this server: paste a caller token', 'NOT_CONFIGURED');
  }
  // RFC 9207: an answer that names an issuer must name the one the sign-in went to.
  if (answer.iss !== null && answer.iss !== oidc.issuer) {
    throw problem('The sign-in answer names another identity provider than the one this sign-in went to, so it was refused. Sign in again.', 'ISSUER_MISMATCH');
  }
  if (answer.error) {
    const description = providerText(answer.errorDescription) || 'it gave no description';
    throw problem(`The identity provider did not sign you in: ${description}`, providerText(answer.error));
  }
  if (!answer.code) {
    throw problem('The identity provider answered without a code or an error. Sign in again.', 'NO_CODE');
  }
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code: answer.code,
    redirect_uri: oidc.redirectUri,
    client_id: oidc.clientId,
    code_verifier: pending.verifier,
  });
  let response;
  try {
    response = await fetch(oidc.tokenEndpoint, {
      method: 'POST', body, credentials: 'omit', headers: { Accept: 'application/json' },
    });
  } catch (e) {
    throw problem(`The identity provider's token endpoint cannot be reached (${e.message}); it must allow this page's origin (CORS)`, 'NETWORK');
  }
  let tokens = null;
  try { tokens = await response.json(); } catch { /* said below */ }
  if (!response.ok || !tokens || typeof tokens.access_token !== 'string' || !tokens.access_token) {
    const error = tokens && tokens.error ? providerText(tokens.error) : `HTTP_${response.status}`;
    const description = tokens && tokens.error_description
      ? providerText(tokens.error_description)
      : `it answered HTTP ${response.status} without an access token`;
    throw problem(`The identity provider did not issue a token: ${description}`, error);
  }
  return tokens.access_token;
}

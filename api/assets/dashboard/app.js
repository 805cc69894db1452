// The dashboard's entry point: sign-in with a caller token (pasted, or from the caller
// identity provider when the server names one), the caller's roles (who sees
// write buttons, who must pick an MSP first), the clients list, and the live connection that
// keeps it current without a refresh button.

import { request, getToken, setToken, clearToken, connectLive } from './api.js';
import { announce, showError, clearError, errorText } from './dom.js';
import { ClientList } from './clients.js';
import { loadSignInOptions, startSignIn, takeProviderAnswer, redeem } from './oidc.js';
import { VIEWER, TILE_CHANGED, REPAIR_CHANGED, CONSENT_CHANGED } from './queries.js';

// Remembered for the tab: after Sign out, the demo's token is not used again.
const DECLINED_DEMO_TOKEN = 'consentry:demo-token-declined';

const $ = (id) => document.getElementById(id);
let list = null;
let live = null;
let expiryTimer = null;
let failedConnects = 0;
let oidc = null; // the caller identity provider, when the server names one

function show(...sections) {
  for (const id of ['sign-in', 'msp-picker', 'clients']) $(id).hidden = !sections.includes(id);
}

function showSignIn(error) {
  stop();
  show('sign-in');
  $('who').textContent = '';
  $('sign-out').hidden = true;
  const area = $('sign-in-error');
  if (error) showError(area, error); else clearError(area);
  $('token').focus();
}

/** Stops the list and the live connection (sign-out, another MSP). */
function stop() {
  if (list) list.destroy();
  list = null;
  if (live) live.dispose();
  live = null;
  $('live').hidden = true;
  clearTimeout(expiryTimer);
}

async function signIn() {
  let viewer;
  try {
    viewer = (await request(VIEWER)).viewer;
  } catch (error) {
    clearToken();
    showSignIn(error);
    return;
  }
  const roles = viewer.roles.map((r) => r.toLowerCase()).join(', ');
  const until = new Date(viewer.tokenExpiresAt).toLocaleString();
  $('who').textContent = `${viewer.subject} · ${viewer.msp.name} (${roles})${viewer.canWrite ? '' : ' · read-only'}` +
    ` · token valid until ${until}`;
  $('sign-out').hidden = false;
  // Sign out when the token expires, rather than failing request by request.
  const left = new Date(viewer.tokenExpiresAt).getTime() - Date.now();
  clearTimeout(expiryTimer);
  expiryTimer = setTimeout(() => {
    clearToken();
    showSignIn({ message: 'Your token has expired: sign in with a new one', code: 'UNAUTHENTICATED' });
  }, Math.min(Math.max(left, 0), 2 ** 31 - 1));
  announce(`Signed in as ${viewer.subject}`);
  if (viewer.readsAllMsps) {
    // Support staff read one named MSP at a time (the API requires it for subscriptions).
    show('msp-picker');
    $('msp-id').focus();
  } else {
    startList(null, viewer.canWrite);
  }
}

function startList(mspId, canWrite) {
  stop();
  show(...(mspId ? ['msp-picker', 'clients'] : ['clients']));
  $('clients-title').textContent = mspId ? `Clients of MSP ${mspId} (read-only)` : 'Clients';
  list = new ClientList({ canWrite, mspId });
  list.load();
  list.loadCounts();
  startLive(mspId);
}

/**
 * One connection, three subscriptions: every change of the MSP's tiles, repairs, consents.
 * Each event names its client (`clientId`); the list places it, or ignores it when that
 * client is not on the page.
 */
function startLive(mspId) {
  failedConnects = 0;
  live = connectLive(onLiveState);
  const subscribe = (document, field, apply) => live.subscribe(
    document,
    { mspId },
    (data) => { if (list && data[field]) apply(data[field]); },
    (error, refused) => liveBanner(refused
      ? `Live updates for ${field} were refused: ${errorText(error)}`
      : `A live update (${field}) failed: ${errorText(error)}. Use Refresh if something looks stale.`));
  subscribe(TILE_CHANGED, 'graphApiTileChanged', (tile) => list.applyTile(tile));
  subscribe(REPAIR_CHANGED, 'servicePrincipalRequestChanged', (r) => list.applyRepair(r));
  subscribe(CONSENT_CHANGED, 'delegatedConsentChanged', (c) => list.applyConsent(c));
}

function liveBanner(text) {
  const banner = $('live');
  banner.textContent = text;
  banner.hidden = !text;
}

function onLiveState(state) {
  if (state === 'connected') {
    if (!$('live').hidden) announce('Live updates are back');
    failedConnects = 0;
    liveBanner('');
  } else if (state === 'reconnecting') {
    failedConnects++;
    // The server accepts WebSockets only from its own public address (or CORS origins).
    const hint = failedConnects >= 3
      ? ' If this goes on, open the dashboard at the address Consentry prints (its public URL).' : '';
    liveBanner(`Live updates lost: reconnecting…${hint}`);
  } else if (state === 'resync') {
    // Events may have been missed: re-read what is shown.
    if (list) list.reload();
  } else if (state === 'refused') {
    liveBanner('Live updates stopped: the server no longer accepts your token (it expired, or your MSP was disabled). Sign in again.');
  } else if (state === 'unavailable') {
    liveBanner('Live updates are unavailable (the WebSocket client did not load). Use Refresh.');
  }
}

function wire() {
  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
    if (!token) {
      showError($('sign-in-error'), { message: 'Paste a token first', code: 'BAD_USER_INPUT' });
      return;
    }
    $('token').value = '';
    setToken(token);
    signIn();
  });
  $('sign-in-oidc').addEventListener('click', async () => {
    if (!oidc) return;
    clearError($('sign-in-error'));
    try {
      await startSignIn(oidc);
    } catch (error) {
      showError($('sign-in-error'), error);
    }
  });
  $('sign-out').addEventListener('click', () => {
    clearToken();
    try { window.sessionStorage.setItem(DECLINED_DEMO_TOKEN, '1'); } catch { /* no storage */ }
    showSignIn();
    announce('Signed out');
  });
  $('msp-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const mspId = $('msp-id').value.trim();
    if (mspId) startList(mspId, false);
  });
}

async function start() {
  wire();
  // Before anything else: a code or state in the address leaves it, whatever comes next.
  const answer = takeProviderAnswer();
  oidc = await loadSignInOptions();
  $('oidc-sign-in').hidden = !oidc;
  if (answer && !answer.pending && getToken()) {
    // An answer this tab never asked for (a crafted link) changes nothing: the tab stays
    // signed in as it was, and its code is never sent anywhere.
    announce('A sign-in answer this tab did not ask for was ignored');
  } else if (answer) {
    try {
      setToken(await redeem(answer, oidc));
    } catch (error) {
      clearToken();
      showSignIn(error);
      return;
    }
    signIn();
    return;
  }
  // `consentry demo` hands the page its admin token in a <meta> (there is no inline script).
  const demo = document.querySelector('meta[name="consentry-token"]');
  let declined = false;
  try { declined = window.sessionStorage.getItem(DECLINED_DEMO_TOKEN) === '1'; } catch { /* none */ }
  if (demo && demo.content && !getToken() && !declined) setToken(demo.content);
  if (getToken()) signIn(); else showSignIn();
}

start();

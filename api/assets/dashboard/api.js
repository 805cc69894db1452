// Talking to Consentry: GraphQL over HTTP for queries and mutations, one graphql-ws
// (graphql-transport-ws) connection for the live subscriptions, and the caller token, which
// lives in this tab's sessionStorage only (never localStorage: a later user of the browser
// profile would find it there).

const TOKEN_KEY = 'consentry:token';
// The endpoints are relative to the page, so a path prefix in front of Consentry still works.
const HTTP_URL = new URL('graphql', document.baseURI).toString();
const WS_URL = HTTP_URL.replace(/^http/, 'ws') + '/ws';

let memoryToken = null; // where the token lives if the browser refuses sessionStorage

export function getToken() {
  try { return window.sessionStorage.getItem(TOKEN_KEY) || memoryToken; } catch { return memoryToken; }
}

export function setToken(token) {
  memoryToken = token;
  try { window.sessionStorage.setItem(TOKEN_KEY, token); } catch { /* memory only */ }
}

export function clearToken() {
  memoryToken = null;
  try { window.sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing kept */ }
}

/** One GraphQL error as the API reports it: its message and `extensions.code`. */
export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code || 'UNKNOWN';
    this.extensions = extensions;
  }
}

function toApiError(error, retryAfterHeader) {
  const extensions = { ...(error.extensions || {}) };
  if (extensions.retryAfter == null && retryAfterHeader) extensions.retryAfter = Number(retryAfterHeader);
  return new ApiError(error.message || 'Unknown error', extensions.code, extensions);
}

/**
 * Runs one operation over HTTP. Resolves with `data`; rejects with an ApiError for the first
 * error (the API answers one error per failed root field; a page shows one at a time).
 */
export async function request(query, variables = {}) {
  const headers = {
    'Content-Type': 'application/json',
    Accept: 'application/graphql-response+json, application/json',
  };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(HTTP_URL, {
      method: 'POST', headers, body: JSON.stringify({ query, variables }), credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(`Consentry cannot be reached (${e.message})`, 'NETWORK');
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`Consentry answered HTTP ${response.status} without GraphQL`, 'HTTP_' + response.status);
  }
  if (body.errors && body.errors.length) {
    throw toApiError(body.errors[0], response.headers.get('Retry-After'));
  }
  // Never a blank area: an answer without data and without an error still says something.
  if (!body.data) {
    throw new ApiError(`Consentry answered HTTP ${response.status} without data or an error`, 'NO_DATA');
  }
  return body.data;
}

/**
 * The live connection. `onState` hears 'connected', 'reconnecting', 'resync' (re-query what
 * you show: events may have been missed) and 'refused' (the token is no longer accepted).
 */
export function connectLive(onState) {
  if (!window.graphqlWs) {
    onState('unavailable');
    return { subscribe() { return () => {}; }, dispose() {} };
  }
  let connectedBefore = false;
  let disposed = false;
  const client = window.graphqlWs.createClient({
    url: WS_URL,
    lazy: false,
    // Read at every (re)connection, so a new sign-in is used.
    connectionParams: () => ({ Authorization: `Bearer ${getToken()}` }),
    // Keep trying for ever after a drop (a restart, a network change) ...
    retryAttempts: Infinity,
    // ... except when the server refused the token or the MSP (4403): retrying cannot help.
    shouldRetry: (event) => !(event && event.code === 4403),
    // graphql-ws doubles its wait without a bound; cap it, so a long outage ends quickly.
    retryWait: (retries) => new Promise((resolve) =>
      setTimeout(resolve, Math.min(1000 * 2 ** retries, 15000) + Math.random() * 1000)),
    on: {
      connected: () => {
        onState('connected');
        // After a reconnect, whatever changed meanwhile was not pushed: re-query.
        if (connectedBefore) onState('resync');
        connectedBefore = true;
      },
      closed: (event) => {
        if (disposed) return;
        onState(event && event.code === 4403 ? 'refused' : 'reconnecting');
      },
    },
  });
  return {
    /**
     * Subscribes; `onData` gets each event's `data`, `onError(error, refused)` an ApiError
     * when the server refuses the subscription itself (`refused`) or an event carries an
     * error. Returns the unsubscribe function.
     */
    subscribe(query, variables, onData, onError) {
      return client.subscribe({ query, variables }, {
        next: (result) => {
          const errors = result.errors || [];
          const resync = (e) => e.extensions && e.extensions.code === 'RESYNC';
          // The server tells a lagging subscriber it missed events; the subscription stays.
          if (errors.some(resync)) onState('resync');
          // Any other error of an event is shown (message and code), not dropped.
          const other = errors.find((e) => !resync(e));
          if (other) onError(toApiError(other), false);
          if (result.data) onData(result.data);
        },
        error: (error) => {
          if (disposed) return;
          // An array is the server's refusal of this subscription; anything else is the
          // socket giving up, which `closed` has already reported.
          if (Array.isArray(error) && error.length) onError(toApiError(error[0]), true);
        },
        complete: () => {},
      });
    },
    dispose() {
      disposed = true;
      client.dispose();
    },
  };
}

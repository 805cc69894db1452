// A client's Graph API tile: its status (a coloured badge *and* words, so colour is never the
// only signal), what went wrong and what to do, the permissions, and one button for each of
// the tile's `availableActions` — the server decides which buttons exist, so the dashboard
// never re-implements the status machine.

import { request } from './api.js';
import { h, announce, showError, clearError, copyableLink, time, humanise, actionButton } from './dom.js';
import { AUTHORISE, VERIFY, CREATE_SERVICE_PRINCIPAL } from './queries.js';

/** The badge of each status: a symbol (decorative) and the words, in its colour class. */
const STATUS = {
  NOT_AUTHORISED: ['○', 'Not authorised'],
  AWAITING_CONSENT: ['…', 'Awaiting consent'],
  VERIFYING: ['↻', 'Verifying'],
  AUTHORISED: ['✓', 'Authorised'],
  FAILED: ['✗', 'Failed'],
  REVOKED: ['⊘', 'Revoked'],
};

/** A status in words (`Not authorised`), as the badge and the status filter say it. */
export function statusWords(status) {
  return (STATUS[status] || [null, humanise(status)])[1];
}

export function statusBadge(status) {
  const [symbol, words] = STATUS[status] || ['?', humanise(status)];
  return h('span', { className: `badge status-${status.toLowerCase().replace(/_/g, '-')}` },
    h('span', { 'aria-hidden': 'true', text: symbol }), ` ${words}`);
}

// A repair in one of these states is finished; older finished ones are not worth showing.
const REPAIR_DONE = ['READY', 'ALREADY_EXISTS', 'FAILED'];

/** Starts an Authorise for one client; resolves with the ConsentLink (used by bulk too). */
export async function authorise(clientId) {
  return (await request(AUTHORISE, { clientId })).authoriseGraphApi;
}

function permissions(tile) {
  const granted = tile.grantedPermissions;
  const missing = tile.missingPermissions;
  if (!granted.length && !missing.length) return null;
  return h('dl', { className: 'permissions' },
    granted.length ? [h('dt', { text: 'Granted' }), h('dd', { text: granted.join(', ') })] : null,
    missing.length ? [h('dt', { text: 'Missing' }), h('dd', { className: 'missing', text: missing.join(', ') })] : null);
}

/** The problem box: only a `FAILED` or `REVOKED` tile has a problem (null otherwise, so a
 * repaired tile shows none). */
function problem(p) {
  if (!p) return null;
  return h('div', { className: 'problem' },
    h('p', {}, h('strong', { text: humanise(p.code) }), p.aadstsCode ? ` (AADSTS${p.aadstsCode})` : ''),
    p.message ? h('p', { className: 'ms' }, 'Microsoft said: ', h('q', { text: p.message })) : null,
    p.appId ? h('p', { text: `${p.code === 'MISSING_SERVICE_PRINCIPAL' ? 'Missing service principal' : 'Service principal'}: ${p.appDisplayName || 'application'} (${p.appId})` }) : null,
    h('p', {}, h('strong', { text: 'What to do: ' }), p.remediation));
}

function repairView(repair) {
  return h('div', { className: 'repair' },
    h('p', {}, h('strong', { text: 'Service principal: ' }),
      `${repair.appDisplayName || repair.appId} — `, h('span', { className: 'repair-status', text: humanise(repair.status) }),
      repair.status === 'PROPAGATING' ? ' (Microsoft replicates it; this takes a few minutes)' : ''),
    repair.problemMessage ? h('p', { className: 'ms', text: repair.problemMessage }) : null,
    repair.remediation && repair.status === 'FAILED' ? h('p', { text: repair.remediation }) : null,
    repair.signInUrl && repair.status === 'PENDING_SIGN_IN'
      ? copyableLink('Sign-in link for an admin of the client', repair.signInUrl, null) : null);
}

/**
 * The tile of `row` (a ClientRow: `client`, `ui` kept across refreshes, `canWrite`,
 * `applyTile(tile)`, `openConsents()`, `renderTile()`).
 */
export function tileView(row) {
  const { client, ui } = row;
  const tile = client.graphApiTile;
  const errors = h('div', { className: 'error', role: 'alert', hidden: true });
  const run = (what, action) => async () => {
    clearError(errors);
    try {
      await action();
    } catch (error) {
      showError(errors, error, `${what} ${client.name}: `);
    }
  };

  const actions = {
    AUTHORISE: ['Authorise', run('Authorise', async () => {
      const link = await authorise(client.id);
      ui.authoriseLink = link;
      row.applyTile(link.graphApiTile, true);
      announce(`Consent link for ${client.name} ready to copy`);
    })],
    VERIFY: ['Verify now', run('Verify', async () => {
      const checked = (await request(VERIFY, { clientId: client.id })).verifyGraphApi;
      row.applyTile(checked, true);
      announce(`${client.name}: ${humanise(checked.status)}`);
    })],
    CREATE_SERVICE_PRINCIPAL: ['Create service principal', run('Create service principal for', async () => {
      const appId = tile.problem && tile.problem.appId;
      ui.repair = (await request(CREATE_SERVICE_PRINCIPAL, { clientId: client.id, appId })).createServicePrincipal;
      row.renderTile();
      announce(`Service principal for ${client.name}: ${humanise(ui.repair.status)}`);
    })],
    DELEGATE: ['Delegated consent…', () => row.openConsents(true)],
  };
  const buttons = row.canWrite
    ? tile.availableActions.filter((a) => actions[a]).map((a) => {
      const button = actionButton(actions[a][0], actions[a][1], a === 'AUTHORISE' ? '' : 'secondary');
      button.dataset.focusKey = `action-${a}`;
      return button;
    })
    : [];

  const repair = ui.repair || (client.servicePrincipalRequests || [])
    .find((r) => !REPAIR_DONE.includes(r.status));
  // A link is shown until the tile moves on from the state the link left it in (the admin
  // used it, or it expired): then it is spent.
  const link = ui.authoriseLink && ui.authoriseLink.graphApiTile.version === tile.version
    && new Date(ui.authoriseLink.expiresAt) > new Date() ? ui.authoriseLink : null;

  return h('section', { className: 'tile', 'aria-label': `Graph API for ${client.name}` },
    h('div', { className: 'tile-head' },
      h('h4', { text: 'Graph API' }), statusBadge(tile.status),
      h('span', { className: 'hint' }, 'since ', time(tile.statusChangedAt))),
    // The tile's words come from the server: success reads as success, and a pending
    // re-consent says the authorisation still stands.
    tile.headline ? h('p', { className: 'headline', text: tile.headline }) : null,
    problem(tile.problem),
    permissions(tile),
    tile.tenantProof ? h('p', { className: 'hint', text: `Tenant proven by ${tile.tenantProof.signedInAs}` }) : null,
    tile.lastVerifiedAt ? h('p', { className: 'hint' }, 'Last verified ', time(tile.lastVerifiedAt)) : null,
    link ? copyableLink(`Consent link for ${client.name}'s admin`, link.url, link.expiresAt) : null,
    // Whoever made the pending link (this tab, another operator, before a reload), the tile
    // says until when it works.
    tile.consentLinkExpiresAt ? h('p', { className: 'hint link-expiry' },
      'Authorise link pending: link expires at ', time(tile.consentLinkExpiresAt), '.') : null,
    repair ? repairView(repair) : null,
    buttons.length ? h('div', { className: 'actions' }, buttons) : null,
    errors);
}

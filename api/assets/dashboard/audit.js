// A client's audit trail, newest first, ten at a time. The API pages forwards only, so
// "Newer" walks back through the cursors this panel has already used.

import { request } from './api.js';
import { h, showError, clearError, time, humanise } from './dom.js';
import { AUDIT_LOG as AUDIT } from './queries.js';

const PAGE_SIZE = 10;

/** `details` (any JSON the server recorded) as one short line. */
function summarise(details) {
  if (details == null || typeof details !== 'object') return details == null ? '' : String(details);
  return Object.entries(details)
    .filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join('; ')
    .slice(0, 300);
}

/** The audit panel of one client; `reload()` re-reads the page it shows. */
export function auditPanel(client) {
  const body = h('div', { 'aria-live': 'polite' });
  const errors = h('div', { className: 'error', role: 'alert', hidden: true });
  const older = h('button', { type: 'button', className: 'secondary', text: 'Older', disabled: true });
  const newer = h('button', { type: 'button', className: 'secondary', text: 'Newer', disabled: true });
  const previous = []; // the `after` of each page before this one
  let after = null;
  let endCursor = null;

  async function load() {
    try {
      const data = await request(AUDIT, { id: client.id, first: PAGE_SIZE, after });
      if (!data.client) throw { message: 'This client no longer exists', code: 'NOT_FOUND' };
      const log = data.client.auditLog;
      endCursor = log.pageInfo.endCursor;
      older.disabled = !log.pageInfo.hasNextPage;
      newer.disabled = previous.length === 0;
      clearError(errors);
      body.replaceChildren(log.edges.length ? h('table', {},
        h('caption', { className: 'visually-hidden', text: `Audit trail of ${client.name}` }),
        h('thead', {}, h('tr', {}, ['When', 'What', 'Who', 'Details'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, log.edges.map(({ node }) => h('tr', {},
          h('td', {}, time(node.at)),
          h('th', { scope: 'row', text: humanise(node.action) }),
          h('td', { text: `${node.actorSubject} (${node.actorMspId}; ${node.actorRoles.join(', ') || 'no role'})` }),
          h('td', { className: 'details', text: summarise(node.details) })))))
        : h('p', { text: 'Nothing recorded yet.' }));
    } catch (error) {
      showError(errors, error, 'Loading the audit trail: ');
    }
  }

  older.addEventListener('click', () => { previous.push(after); after = endCursor; load(); });
  newer.addEventListener('click', () => { after = previous.pop() ?? null; load(); });
  body.replaceChildren(h('p', { text: 'Loading…' }));
  load();
  return {
    element: h('section', { className: 'subpanel', 'aria-label': `Audit trail of ${client.name}` },
      h('h4', { text: 'Audit trail' }), body, errors,
      h('div', { className: 'pager' }, newer, older)),
    /** Re-reads the newest page only: a reader deep in the past keeps their place. */
    reload() { if (!after) load(); },
  };
}

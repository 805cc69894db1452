// The clients list: one page at a time (never all of them: an MSP may have thousands), a
// debounced search, a status filter, the count of clients in each status, selection for
// "Authorise selected", and one row per client that live events update in place.

import { request } from './api.js';
import { h, announce, showError, clearError, copyableLink, errorText } from './dom.js';
import { tileView, authorise, statusWords } from './tile.js';
import { consentsPanel } from './consents.js';
import { auditPanel } from './audit.js';
import { CLIENTS_PAGE, CLIENT_COUNTS } from './queries.js';

// The server pages the list (at most 100 a request); the dashboard asks for 25 at a time and
// renders only those, so an MSP with thousands of clients costs one page, not the list.
const PAGE_SIZE = 25;

const $ = (id) => document.getElementById(id);

/** Calls `fn` once, `ms` after the last of a burst of calls. */
function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** One client on the page: its heading, tile, and the panels a person opened. */
class ClientRow {
  constructor(list, client) {
    this.list = list;
    this.client = client;
    this.canWrite = list.canWrite;
    this.ui = list.uiFor(client.id); // links and open panels, kept across refreshes
    this.tileSlot = h('div');
    this.panels = h('div', { className: 'panels' });
    this.consentsButton = this.toggle('Delegated consents', () => this.openConsents(!this.consents));
    this.auditButton = this.toggle('Audit trail', () => this.openAudit(!this.audit));
    const select = this.canWrite ? h('input', {
      type: 'checkbox', id: `select-${client.id}`, className: 'select',
      on: { change: (e) => list.select(client, e.target.checked) },
    }) : null;
    if (select) select.checked = list.selected.has(client.id);
    this.select = select;
    this.heading = h('h3', { id: `client-${client.id}` });
    this.domain = h('p', { className: 'domain' });
    this.element = h('li', { className: 'client' },
      h('article', { 'aria-labelledby': `client-${client.id}` },
        h('div', { className: 'client-head' },
          select ? [select, h('label', { for: select.id, className: 'visually-hidden', text: `Select ${client.name}` })] : null,
          this.heading, this.domain),
        this.tileSlot,
        h('div', { className: 'toggles' }, this.consentsButton, this.auditButton),
        this.panels));
    this.update(client);
    if (this.ui.consentsOpen) this.openConsents(true, false);
    if (this.ui.auditOpen) this.openAudit(true, false);
  }

  toggle(text, onClick) {
    return h('button', { type: 'button', className: 'link-button', 'aria-expanded': 'false', text, on: { click: onClick } });
  }

  update(client) {
    const before = this.client;
    this.client = client;
    this.heading.textContent = client.name;
    this.domain.textContent = client.domain || 'no domain yet';
    this.renderTile();
    this.refreshConsentsForm(before);
  }

  /** The New consent form depends on the tile offering DELEGATE: redo an open panel when that changes. */
  refreshConsentsForm(before) {
    const offers = (c) => c.graphApiTile.availableActions.includes('DELEGATE');
    if (this.consents && offers(before) !== offers(this.client)) {
      this.openConsents(false);
      this.openConsents(true, false);
    }
  }

  /** Puts a newer tile in place; an event that is not newer (`version`) is ignored. */
  applyTile(tile, fromOwnAction = false) {
    const current = this.client.graphApiTile;
    if (!fromOwnAction && tile.version <= current.version) return false;
    if (tile.version < current.version) return false;
    const before = this.client;
    this.client = { ...this.client, graphApiTile: tile };
    this.renderTile();
    this.refreshConsentsForm(before);
    if (this.audit) this.audit.reload();
    return true;
  }

  /**
   * A pushed step of one of this client's repairs: the one shown moves on, and a repair begun
   * elsewhere (another operator, another tab) takes its place.
   */
  applyRepair(request) {
    const shown = this.ui.repair || (this.client.servicePrincipalRequests || [])[0];
    if (shown && shown.id === request.id) {
      // Only the mutation's answer carries the sign-in link: keep it while it is still needed.
      const next = { ...shown, ...request, signInUrl: request.signInUrl || shown.signInUrl };
      if (this.ui.repair) this.ui.repair = next;
      else this.client = { ...this.client, servicePrincipalRequests: [next] };
    } else {
      this.ui.repair = null;
      this.client = { ...this.client, servicePrincipalRequests: [request] };
    }
    this.renderTile();
  }

  /** Re-renders the tile, keeping keyboard focus on the same control. */
  renderTile() {
    const focused = document.activeElement;
    const key = this.tileSlot.contains(focused) && focused.dataset ? focused.dataset.focusKey : null;
    this.tileSlot.replaceChildren(tileView(this));
    if (key) {
      const again = this.tileSlot.querySelector(`[data-focus-key="${key}"]`);
      if (again) again.focus();
    }
  }

  openConsents(open, focus = true) {
    this.ui.consentsOpen = open;
    this.consentsButton.setAttribute('aria-expanded', String(open));
    if (open && !this.consents) {
      this.consents = consentsPanel(this.client, this.canWrite);
      this.panels.prepend(this.consents.element);
      if (focus) this.consents.element.querySelector('h4').setAttribute('tabindex', '-1');
      if (focus) this.consents.element.querySelector('h4').focus();
    } else if (!open && this.consents) {
      this.consents.element.remove();
      this.consents = null;
    }
  }

  openAudit(open) {
    this.ui.auditOpen = open;
    this.auditButton.setAttribute('aria-expanded', String(open));
    if (open && !this.audit) {
      this.audit = auditPanel(this.client);
      this.panels.append(this.audit.element);
    } else if (!open && this.audit) {
      this.audit.element.remove();
      this.audit = null;
    }
  }
}

/** The list, for a caller who `canWrite` or not; `mspId` names the MSP for support staff. */
export class ClientList {
  constructor({ canWrite, mspId }) {
    this.canWrite = canWrite;
    this.mspId = mspId || null;
    this.rows = new Map(); // client id -> ClientRow, this page's
    this.ui = new Map(); // client id -> what a person opened or made for it
    this.selected = new Map(); // client id -> name, across pages
    this.previous = []; // the `after` of each page before this one
    this.after = null;
    this.endCursor = null;
    this.status = '';
    this.search = '';
    this.generation = 0; // answers to superseded loads are dropped
    this.countGeneration = 0; // likewise for the counts
    this.countSoon = debounce(() => this.loadCounts(), 1000);
    this.wire();
  }

  uiFor(id) {
    if (!this.ui.has(id)) this.ui.set(id, {});
    return this.ui.get(id);
  }

  filter() {
    const filter = {};
    if (this.search) filter.search = this.search;
    if (this.status) filter.status = [this.status];
    if (this.mspId) filter.mspId = this.mspId;
    return filter;
  }

  /** The filter the counts use: the same search and MSP, any status (so `totalCount` is All). */
  countFilter() {
    const { status, ...filter } = this.filter();
    return filter;
  }

  wire() {
    const search = $('search');
    const status = $('status-filter');
    search.value = '';
    status.value = '';
    const restart = () => { this.previous = []; this.after = null; this.load(); this.loadCounts(); };
    const onSearch = debounce(() => { this.search = search.value.trim(); restart(); }, 300);
    this.listeners = [
      [search, 'input', onSearch],
      [status, 'change', () => { this.status = status.value; restart(); }],
      [$('refresh'), 'click', () => this.reload()],
      [$('next'), 'click', () => { this.previous.push(this.after); this.after = this.endCursor; this.load(true); }],
      [$('previous'), 'click', () => { this.after = this.previous.pop() ?? null; this.load(true); }],
      [$('authorise-selected'), 'click', () => this.authoriseSelected()],
    ];
    for (const [element, event, handler] of this.listeners) element.addEventListener(event, handler);
    $('bulk').hidden = !this.canWrite;
    this.updateBulk();
  }

  /** Stops listening (sign-out, another MSP). */
  destroy() {
    for (const [element, event, handler] of this.listeners) element.removeEventListener(event, handler);
    this.generation++;
    this.countGeneration++;
    for (const option of $('status-filter').options) {
      if (option.dataset.words != null) option.textContent = option.dataset.words;
    }
    $('client-list').replaceChildren();
    $('counts').replaceChildren();
    $('bulk-result').replaceChildren();
  }

  /** Re-reads everything shown: the page, the counts, and the open panels. */
  reload() {
    this.load();
    this.loadCounts();
    for (const row of this.rows.values()) {
      if (row.consents) row.consents.reload();
      if (row.audit) row.audit.reload();
    }
  }

  async load(moveFocus = false) {
    const generation = ++this.generation;
    const errorArea = $('list-error');
    $('client-list').setAttribute('aria-busy', 'true');
    try {
      const data = await request(CLIENTS_PAGE, { first: PAGE_SIZE, after: this.after, filter: this.filter() });
      if (generation !== this.generation) return;
      clearError(errorArea);
      this.render(data.clients, moveFocus);
    } catch (error) {
      if (generation === this.generation) showError(errorArea, error, 'Loading the clients: ');
    } finally {
      if (generation === this.generation) $('client-list').removeAttribute('aria-busy');
    }
  }

  render(clients, moveFocus) {
    const rows = new Map();
    for (const client of clients.nodes) {
      const row = this.rows.get(client.id);
      if (row) row.update(client);
      rows.set(client.id, row || new ClientRow(this, client));
    }
    this.rows = rows;
    const list = $('client-list');
    list.replaceChildren(...[...rows.values()].map((r) => r.element));
    if (!rows.size) list.replaceChildren(h('li', { className: 'empty', text: 'No clients match.' }));
    this.endCursor = clients.pageInfo.endCursor;
    $('next').disabled = !clients.pageInfo.hasNextPage;
    $('previous').disabled = this.previous.length === 0;
    const first = this.previous.length * PAGE_SIZE + 1;
    const last = first + clients.nodes.length - 1;
    $('page-status').textContent = clients.totalCount === 0 ? 'No clients.'
      : `Clients ${first}–${last} of ${clients.totalCount.toLocaleString()}`;
    if (moveFocus) $('clients-title').focus();
  }

  /**
   * The count of clients in each status (`statusCounts`, one request, no client fetched):
   * beside each status of the filter, and as buttons that filter by it.
   */
  async loadCounts() {
    const area = $('counts');
    const generation = ++this.countGeneration;
    let clients;
    try {
      clients = (await request(CLIENT_COUNTS, { filter: this.countFilter() })).clients;
    } catch (error) {
      if (generation === this.countGeneration) showError(area, error, 'Counting the clients: ');
      return;
    }
    if (generation !== this.countGeneration) return;
    const counts = new Map(clients.statusCounts.map(({ status, count }) => [status, count]));
    const options = [...$('status-filter').options];
    for (const option of options) {
      // The words stay in `data-words`; the option reads "Failed (3)".
      if (option.dataset.words == null) option.dataset.words = option.textContent;
      const count = option.value ? counts.get(option.value) ?? 0 : clients.totalCount;
      option.textContent = `${option.dataset.words} (${count.toLocaleString()})`;
    }
    const entries = [['', 'All', clients.totalCount],
      ...options.filter((o) => o.value).map((o) => [o.value, statusWords(o.value), counts.get(o.value) ?? 0])];
    area.replaceChildren(h('ul', {}, entries.map(([status, words, count]) => h('li', {},
      h('button', {
        type: 'button', className: `count ${status ? `status-${status.toLowerCase().replace(/_/g, '-')}` : ''}`,
        'aria-pressed': String(this.status === status),
        on: { click: () => { $('status-filter').value = status; $('status-filter').dispatchEvent(new Event('change')); } },
      }, h('span', { className: 'count-number', text: count.toLocaleString() }), ` ${words}`)))));
  }

  // Live events. Each names its client (`clientId`): it updates that client's row, and is
  // ignored when the client is not on this page (the counts still follow tile changes).

  applyTile(tile) {
    const row = this.rows.get(tile.clientId);
    if (row && row.applyTile(tile)) announce(`${row.client.name}: ${statusWords(tile.status).toLowerCase()}`);
    this.countSoon();
  }

  applyRepair(request) {
    const row = this.rows.get(request.clientId);
    if (row) row.applyRepair(request);
  }

  /** A consent event updates that client's consents panel when it is open. */
  applyConsent(consent) {
    const row = this.rows.get(consent.clientId);
    if (!row || !row.consents) return;
    // A consent the panel does not list yet (a new one) needs the list read again.
    if (!row.consents.apply(consent)) row.consents.reload();
  }

  // Bulk Authorise.

  select(client, on) {
    if (on) this.selected.set(client.id, client.name);
    else this.selected.delete(client.id);
    this.updateBulk();
  }

  updateBulk() {
    const button = $('authorise-selected');
    button.textContent = `Authorise selected (${this.selected.size})`;
    button.disabled = this.selected.size === 0;
  }

  /** One `authoriseGraphApi` after another; stops when the MSP's mutation budget runs out. */
  async authoriseSelected() {
    const out = $('bulk-result');
    const button = $('authorise-selected');
    const todo = [...this.selected.entries()];
    const links = h('ul', { className: 'bulk-links' });
    const summary = h('p', { text: `Authorising ${todo.length}…` });
    out.replaceChildren(summary, links);
    button.disabled = true;
    let done = 0;
    for (const [id, name] of todo) {
      try {
        const link = await authorise(id);
        done++;
        this.selected.delete(id);
        const row = this.rows.get(id);
        if (row) {
          row.ui.authoriseLink = link;
          row.applyTile(link.graphApiTile, true);
          if (row.select) row.select.checked = false;
        }
        links.append(h('li', {}, copyableLink(`${name}`, link.url, link.expiresAt)));
      } catch (error) {
        if (error.code === 'RATE_LIMITED') {
          const wait = error.extensions.retryAfter ? ` in ${error.extensions.retryAfter} s` : ' later';
          summary.textContent = `Authorised ${done} of ${todo.length}, then your MSP's mutation budget ran out: ` +
            `${errorText(error)}. The ${todo.length - done} not done are still selected: press Authorise selected again${wait}.`;
          summary.className = 'error';
          announce(summary.textContent);
          this.updateBulk();
          return;
        }
        links.append(h('li', { className: 'error', text: `${name}: ${errorText(error)}` }));
      }
    }
    summary.textContent = `Authorised ${done} of ${todo.length}. Send each link to that client's admin.`;
    summary.className = '';
    announce(summary.textContent);
    this.updateBulk();
  }
}

// A client's delegated consents: the "New consent" form (the permissions as switches, all on,
// as the runbook asks every client for all four) that makes a link for a user of the
// client's tenant, and the consents granted so far with Verify and Revoke.

import { request } from './api.js';
import { h, announce, showError, clearError, copyableLink, time, humanise, actionButton } from './dom.js';
import {
  CONSENTS as LIST, PERMISSION_CATALOG as CATALOG, START_CONSENT as START,
  VERIFY_CONSENT as VERIFY, REVOKE_CONSENT as REVOKE,
} from './queries.js';

let catalog = null; // the permissions never change while the server runs: ask once

async function permissionCatalog() {
  if (!catalog) catalog = request(CATALOG).then((d) => d.delegatedPermissions).catch((e) => { catalog = null; throw e; });
  return catalog;
}

let switchCounter = 0;

async function newConsentForm(client, area) {
  const errors = h('div', { className: 'error', role: 'alert', hidden: true });
  const result = h('div', { className: 'result' });
  let permissions;
  try {
    permissions = await permissionCatalog();
  } catch (error) {
    showError(errors, error, 'Loading the permissions: ');
    return h('div', {}, errors);
  }
  const switches = permissions.map((p) => {
    const id = `switch-${++switchCounter}`;
    const box = h('input', { type: 'checkbox', role: 'switch', id, checked: true, 'aria-describedby': `${id}-d` });
    box.dataset.permission = p.permission;
    return h('div', { className: 'switch' }, box,
      h('label', { for: id, text: p.displayName }),
      h('p', { id: `${id}-d`, className: 'hint' }, p.description,
        p.adminConsentRequired ? ' Only an administrator can grant it.' : ''));
  });
  const create = actionButton('Create consent link', async () => {
    clearError(errors);
    const chosen = switches.map((s) => s.querySelector('input')).filter((b) => b.checked).map((b) => b.dataset.permission);
    if (!chosen.length) {
      showError(errors, { message: 'Choose at least one permission', code: 'BAD_USER_INPUT' });
      return;
    }
    try {
      const link = (await request(START, { clientId: client.id, permissions: chosen })).startDelegatedConsent;
      result.replaceChildren(copyableLink(`Consent link for a user of ${client.name}`, link.url, link.expiresAt));
      announce(`Delegated consent link for ${client.name} ready to copy`);
    } catch (error) {
      showError(errors, error, 'New consent: ');
    }
  });
  return h('fieldset', { className: 'new-consent' },
    h('legend', { text: 'New consent: permissions to ask for' }), switches, create, result, errors);
}

function consentRow(consent, canWrite, replace, errors) {
  const act = (what, mutation) => actionButton(what, async () => {
    clearError(errors);
    if (what === 'Revoke' && !window.confirm(`Revoke ${consent.userPrincipalName}'s consent? Consentry erases its token.`)) return;
    try {
      const data = await request(mutation, { id: consent.id });
      const updated = data.verifyDelegatedConsent || data.revokeDelegatedConsent;
      replace(updated);
      announce(`${updated.userPrincipalName}: ${humanise(updated.status)}`);
    } catch (error) {
      showError(errors, error, `${what} ${consent.userPrincipalName}: `);
    }
  }, 'secondary');
  return h('tr', {},
    h('th', { scope: 'row' }, consent.displayName || consent.userPrincipalName,
      consent.displayName ? h('div', { className: 'hint', text: consent.userPrincipalName }) : null),
    h('td', {}, h('span', { className: `badge consent-${consent.status.toLowerCase()}`, text: humanise(consent.status) }),
      consent.statusReason ? h('div', { className: 'hint', text: consent.statusReason }) : null),
    h('td', { text: consent.permissions.map(humanise).join(', ') || '—' },
      consent.missingPermissions.length
        ? h('div', { className: 'missing', text: `Not granted: ${consent.missingPermissions.map(humanise).join(', ')}` }) : null),
    h('td', {}, time(consent.grantedAt)),
    h('td', {}, time(consent.lastRefreshedAt)),
    canWrite ? h('td', { className: 'actions' },
      consent.status !== 'REVOKED' ? act('Verify', VERIFY) : null,
      consent.status !== 'REVOKED' ? act('Revoke', REVOKE) : null) : null);
}

/**
 * The consents panel of one client. `reload()` re-reads the list; `apply(consent)` puts a
 * pushed consent in place and answers whether it was one of this panel's. The New consent
 * form shows when the caller may write and the tile offers `DELEGATE`.
 */
export function consentsPanel(client, canWrite) {
  const list = h('div', { className: 'consent-list', 'aria-live': 'polite' });
  const errors = h('div', { className: 'error', role: 'alert', hidden: true });
  const formSlot = h('div');
  let consents = [];

  const draw = () => {
    if (!consents.length) {
      list.replaceChildren(h('p', { text: 'No delegated consents yet.' }));
      return;
    }
    const replace = (updated) => {
      consents = consents.map((c) => (c.id === updated.id ? updated : c));
      draw();
    };
    list.replaceChildren(h('table', {},
      h('caption', { className: 'visually-hidden', text: `Delegated consents of ${client.name}` }),
      h('thead', {}, h('tr', {}, ['User', 'Status', 'Permissions', 'Granted', 'Last refreshed']
        .concat(canWrite ? ['Actions'] : []).map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, consents.map((c) => consentRow(c, canWrite, replace, errors)))));
  };

  const panel = {
    element: h('section', { className: 'subpanel', 'aria-label': `Delegated consents of ${client.name}` },
      h('h4', { text: 'Delegated consents' }), formSlot, list, errors),
    async reload() {
      try {
        const data = await request(LIST, { id: client.id });
        consents = data.client ? data.client.delegatedConsents : [];
        clearError(errors);
        draw();
      } catch (error) {
        showError(errors, error, 'Loading the consents: ');
      }
    },
    apply(consent) {
      if (!consents.some((c) => c.id === consent.id)) return false;
      consents = consents.map((c) => (c.id === consent.id ? consent : c));
      draw();
      return true;
    },
  };
  list.replaceChildren(h('p', { text: 'Loading…' }));
  if (canWrite && client.graphApiTile.availableActions.includes('DELEGATE')) {
    newConsentForm(client, formSlot).then((form) => formSlot.replaceChildren(form));
  } else if (canWrite) {
    formSlot.replaceChildren(h('p', { className: 'hint', text: 'New consents can be asked for once the Graph API tile offers them (when it is authorised).' }));
  }
  panel.reload();
  return panel;
}

// Small DOM helpers shared by the dashboard's modules. Everything is built with
// createElement and textContent (text is never parsed as HTML), so text from the API cannot
// become markup, and nothing sets a style attribute: looks come from classes in
// dashboard.css (the page's policy allows no inline style).

/**
 * Creates an element. `props`: `className`, `text`, `hidden`, `on` (event handlers), and any
 * other key as an attribute (`aria-*`, `type`, `for`, …; `true` sets an empty attribute).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'className') element.className = value;
    else if (key === 'text') element.textContent = value;
    else if (key === 'hidden') element.hidden = true;
    else if (key === 'on') for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const announcer = () => document.getElementById('announcer');

/** Reads a short message out to screen readers (the page's aria-live region). */
export function announce(message) {
  const region = announcer();
  if (!region) return;
  // Clearing first makes the same message heard again.
  region.textContent = '';
  setTimeout(() => { region.textContent = message; }, 50);
}

/** An error as a person reads it: the message, then the API's code. */
export function errorText(error) {
  const code = error && error.code ? ` (${error.code})` : '';
  return `${(error && error.message) || 'Something went wrong'}${code}`;
}

/** Shows `error` in `area` (its message and code, never a blank area) and announces it. */
export function showError(area, error, prefix = '') {
  area.replaceChildren(h('strong', { text: 'Error: ' }), `${prefix}${errorText(error)}`);
  area.hidden = false;
  area.classList.add('error');
  announce(`Error: ${prefix}${errorText(error)}`);
}

export function clearError(area) {
  area.replaceChildren();
  area.hidden = true;
}

/** A local, readable time in a <time> element; '—' when there is none. */
export function time(iso) {
  if (!iso) return h('span', { text: '—' });
  const date = new Date(iso);
  return h('time', { datetime: iso, title: iso, text: date.toLocaleString() });
}

/** `NOT_AUTHORISED` → `Not authorised`. */
export function humanise(name) {
  const words = String(name).toLowerCase().replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

let copyCounter = 0;

/**
 * A link to hand to someone: a read-only field with the URL, a Copy button, an "Open
 * Microsoft's page" link (new tab, no opener), and when it expires.
 */
export function copyableLink(label, url, expiresAt) {
  const id = `copy-${++copyCounter}`;
  const input = h('input', { id, type: 'text', readonly: true, value: url, className: 'link-field' });
  const copy = h('button', {
    type: 'button', className: 'secondary', text: 'Copy',
    on: {
      click: async () => {
        input.select();
        try {
          await navigator.clipboard.writeText(url);
          announce('Link copied');
          copy.textContent = 'Copied';
        } catch {
          // No clipboard permission (or not a secure context): the text is selected instead.
          announce('Link selected: press Ctrl+C to copy it');
        }
      },
    },
  });
  return h('div', { className: 'link' },
    h('label', { for: id, text: label }),
    h('div', { className: 'link-row' }, input, copy,
      h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: "Open Microsoft's page" })),
    expiresAt ? h('p', { className: 'hint' }, 'Works once, until ', time(expiresAt), '.') : null);
}

/** A button that shows it is busy while `action` runs, and cannot be pressed twice. */
export function actionButton(text, action, className = '') {
  const button = h('button', { type: 'button', className, text });
  button.addEventListener('click', async () => {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try { await action(); } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  });
  return button;
}

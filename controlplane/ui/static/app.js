// Verity UI behaviour. The pages work without it; it only adds conveniences. Loaded as a file
// because the Content-Security-Policy forbids inline script.
'use strict';

// Calls the API with the session cookie and the page's CSRF token (required on unsafe methods).
window.verity = {
  csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  },
  api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (!headers.has('content-type') && init.body) headers.set('content-type', 'application/json');
    const method = (init.method || 'GET').toUpperCase();
    if (!['GET', 'HEAD', 'OPTIONS'].includes(method)) headers.set('x-csrftoken', window.verity.csrfToken());
    return fetch(path, { credentials: 'same-origin', ...init, headers });
  },
};

// Choosing "My own configuration" moves focus to the configuration field.
document.addEventListener('change', (event) => {
  if (event.target.id === 'template-custom') document.getElementById('label_config')?.focus();
});

// Data manager filters: choosing a column offers only the operators the server runs on it and
// the value input that fits it (number, time, yes/no, a person, text). Without script the page
// still works: the saved filter comes back with the fitting inputs, and the server refuses
// what does not fit with a message.
function fitFilterRow(columnSelect) {
  const row = columnSelect.closest('.filter-row');
  const chosen = columnSelect.selectedOptions[0];
  if (!row || !chosen) return;
  const allowed = (chosen.dataset.operators || '').split(' ').filter(Boolean);
  const operator = row.querySelector('select[name="operator"]');
  for (const option of operator.options) {
    const off = !allowed.includes(option.value);
    option.hidden = off;
    option.disabled = off;
  }
  if (operator.selectedOptions[0]?.disabled) {
    const first = [...operator.options].find((o) => !o.disabled);
    if (first) operator.value = first.value;
  }
  const input = chosen.dataset.input || 'text';
  const swap = (holder, name, kind) => {
    const old = holder?.querySelector(`[name="${name}"]`);
    const template = document.getElementById(`dm-input-${kind}`);
    if (!old || !template) return;
    const fresh = template.content.firstElementChild.cloneNode(true);
    fresh.id = old.id;
    fresh.name = name;
    old.replaceWith(fresh);
  };
  swap(row.querySelector('.dm-filter-value'), 'value', input);
  swap(row.querySelector('.dm-filter-value-max'), 'value_max', ['number', 'datetime'].includes(input) ? input : 'text');
}

document.addEventListener('change', (event) => {
  if (event.target.matches?.('select.dm-filter-column')) fitFilterRow(event.target);
});

// Person filters in organizations too large to list everyone (the page then draws a text field
// with `data-people-search`): typing asks the server's membership search and offers the first
// matches in the field's suggestions; a suggestion's value is the person's id, its label their
// name and email. Without script, a member's email or id typed in works the same.
let peopleSearch;
document.addEventListener('input', (event) => {
  const field = event.target;
  if (!field.matches?.('input[data-people-search]')) return;
  clearTimeout(peopleSearch);
  const typed = field.value.trim();
  if (typed.length < 2 || /^\d+$/.test(typed)) return;
  peopleSearch = setTimeout(async () => {
    const url = `${field.dataset.peopleSearch}?search=${encodeURIComponent(typed)}&is_active=true&page_size=20`;
    const response = await window.verity.api(url);
    if (!response.ok || field.value.trim() !== typed) return;
    const { results } = await response.json();
    const options = results.map((m) => {
      const option = document.createElement('option');
      const name = `${m.user.first_name || ''} ${m.user.last_name || ''}`.trim();
      option.value = String(m.user_id);
      option.label = name ? `${name} (${m.user.email})` : m.user.email;
      return option;
    });
    document.getElementById(field.getAttribute('list'))?.replaceChildren(...options);
  }, 200);
});

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

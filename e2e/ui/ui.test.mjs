// Browser tests of Verity's web UI: a real `verity serve` (SQLite, or PostgreSQL when
// VERITY_UI_DATABASE_URL is set) driven through headless Chromium (the Debian package) by
// playwright-core. A failing test leaves a screenshot and the page's HTML in e2e/ui/artifacts/.
//
//   VERITY_BIN=target/debug/verity node --test --test-concurrency=1 e2e/ui/ui.test.mjs
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { accessibilityProblems, tabOrder } from './a11y.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, 'artifacts');
const ADMIN = { email: 'admin@example.com', password: 'admin password 1' };
const ADMIN_TOKEN = randomBytes(20).toString('hex');
const INSTANCE_TOKEN = randomBytes(32).toString('hex');

let server;
let browser;
const pages = new Set();

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startVerity() {
  const bin = process.env.VERITY_BIN ?? join(here, '../../target/debug/verity');
  const dir = mkdtempSync(join(tmpdir(), 'verity-ui-'));
  const port = await freePort();
  const env = {
    ...process.env,
    VERITY_LISTEN: `127.0.0.1:${port}`,
    VERITY_DATA_DIR: dir,
    VERITY_ADMIN_EMAIL: ADMIN.email,
    VERITY_ADMIN_PASSWORD: ADMIN.password,
    VERITY_ADMIN_TOKEN: ADMIN_TOKEN,
    VERITY_INSTANCE_ADMIN_TOKEN: INSTANCE_TOKEN,
    VERITY_SESSION_KEY: randomBytes(32).toString('hex'),
    VERITY_LOGIN_MAX_FAILURES: '3',
    VERITY_EDITOR_DIR: process.env.VERITY_EDITOR_DIR ?? '',
    VERITY_LOCAL_FILES_ROOT: join(dir, 'files'),
  };
  mkdirSync(join(dir, 'files'), { recursive: true });
  delete env.VERITY_DATABASE_URL;
  if (process.env.VERITY_UI_DATABASE_URL) env.VERITY_DATABASE_URL = process.env.VERITY_UI_DATABASE_URL;
  const log = openSync(join(dir, 'server.log'), 'a');
  const proc = spawn(bin, ['serve'], { env, stdio: ['ignore', log, log] });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`verity exited (${proc.exitCode}); see ${dir}/server.log`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`verity did not get ready; see ${dir}/server.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    dir,
    stop: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
    },
  };
}

/** The API as the admin (token auth), for set-up and checks. */
async function api(method, path, body) {
  const r = await fetch(`${server.base}${path}`, {
    method,
    headers: { authorization: `Token ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Script errors and Content-Security-Policy violations; not the 401 of a refused sign-in.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  page.errors = errors;
  pages.add(page);
  return page;
}

async function signIn(page, email, password) {
  await page.goto(`${server.base}/user/login`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

before(async () => {
  rmSync(artifacts, { recursive: true, force: true });
  server = await startVerity();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--disable-gpu', '--disable-quic'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (server && !process.exitCode) rmSync(server.dir, { recursive: true, force: true });
});

// Screenshots and HTML of every open page when a test failed; pages closed either way.
afterEach(async (t) => {
  const failed = t?.passed === false || t?.error !== undefined;
  let i = 0;
  for (const page of pages) {
    if (failed) {
      mkdirSync(artifacts, { recursive: true });
      const name = `${(t?.name ?? 'test').replace(/[^a-z0-9]+/gi, '-')}-${i++}`;
      await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true }).catch(() => {});
      writeFileSync(join(artifacts, `${name}.html`), await page.content().catch(() => ''));
    }
    await page.context().close().catch(() => {});
  }
  pages.clear();
});

test('the start page leads to sign-in; the first-start admin password signs in; a wrong one is refused', async () => {
  const page = await newPage();
  await page.goto(`${server.base}/`);
  assert.match(page.url(), /\/user\/login$/);
  // Labels, focus order: email, password, then the button.
  await page.getByLabel('Email').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Sign in');
  await signIn(page, ADMIN.email, 'not the password');
  await page.locator('#login-error').waitFor();
  assert.match(await page.locator('#login-error').textContent(), /email or password is not correct/);
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.getByRole('heading', { name: 'Projects' }).waitFor();
  assert.deepEqual(page.errors, [], 'no script errors under the Content-Security-Policy');
});

test('repeated failures lock the account with a clear message', async () => {
  await api('POST', '/api/users', { email: 'locked@example.com', password: 'locked password', role: 'annotator' });
  const page = await newPage();
  for (let i = 0; i < 3; i++) await signIn(page, 'locked@example.com', 'wrong password');
  await signIn(page, 'locked@example.com', 'locked password');
  await page.locator('#login-error').waitFor();
  assert.match(await page.locator('#login-error').textContent(), /locked after too many failed sign-ins/);
  assert.match(page.url(), /\/user\/login/);
});

test('a manager creates a project from a template, sees it listed and opens its data', async () => {
  await api('POST', '/api/users', { email: 'manager@example.com', password: 'manager password', role: 'manager' });
  const page = await newPage();
  await signIn(page, 'manager@example.com', 'manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Browser sentiment');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  await api('POST', `/api/projects/${id}/import`, [{ text: 'first task text' }, { text: 'second task text' }]);
  await page.reload();
  await page.locator('#tasks').getByText('second task text').waitFor();
  assert.match(await page.locator('#tasks caption').textContent(), /2 tasks/);
  await page.getByRole('link', { name: 'Projects' }).click();
  await page.getByRole('link', { name: 'Browser sentiment' }).waitFor();
  // Settings: change the instructions through the form.
  await page.goto(`${server.base}/projects/${id}/settings`);
  await page.getByLabel('Instructions for annotators (HTML)').fill('<p>Read it all</p>');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#saved').waitFor();
  assert.equal((await api('GET', `/api/projects/${id}`)).expert_instruction, '<p>Read it all</p>');
  assert.deepEqual(page.errors, []);
});

test('a manager imports a CSV file through the page, exports JSON, and makes, converts to CSV and downloads a snapshot', async () => {
  await api('POST', '/api/users', { email: 'io-manager@example.com', password: 'io manager password', role: 'manager' });
  const page = await newPage();
  await signIn(page, 'io-manager@example.com', 'io manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Imports in a browser');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  // Import: upload a CSV file through the form; the data manager shows its tasks.
  await page.locator('#dm-import').click();
  await page.waitForURL(new RegExp(`/projects/${id}/data/import$`));
  await page.getByLabel('Files').setInputFiles({
    name: 'tasks.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from('text\nfirst row from a file\n"second row, with a comma"\n'),
  });
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  await page.locator('#import-result').waitFor();
  assert.match(await page.locator('#import-result').textContent(), /Imported 2 tasks/);
  await page.getByRole('link', { name: 'See them in the data manager' }).click();
  await page.locator('#tasks').getByText('second row, with a comma').waitFor();
  assert.match(await page.locator('#tasks caption').textContent(), /2 tasks/);
  // A file that is not valid: the importer's message, nothing imported.
  await page.locator('#dm-import').click();
  await page.getByLabel('Files').setInputFiles({ name: 'broken.json', mimeType: 'application/json', buffer: Buffer.from('[{"text": "ok"}, 3]') });
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  await page.locator('#import-error').waitFor();
  assert.match(await page.locator('#import-error').textContent(), /task 1: each task must be a JSON object/);
  assert.equal((await api('GET', `/api/tasks?project=${id}&include=id`)).total, 2);
  // Export: JSON of every task, downloaded straight from the API's export.
  await page.goto(`${server.base}/projects/${id}/data`);
  await page.locator('#dm-export').click();
  await page.waitForURL(new RegExp(`/projects/${id}/data/export$`));
  assert.equal(await page.getByLabel('COCO', { exact: true }).isDisabled(), true);
  await page.getByLabel('JSON', { exact: true }).check();
  await page.getByLabel('Include tasks without annotations').check();
  const [direct] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
  const exported = JSON.parse(readFileSync(await direct.path(), 'utf8'));
  assert.deepEqual(exported.map((t) => t.data.text).sort(), ['first row from a file', 'second row, with a comma']);
  // A snapshot: the page follows it until it is written, then it downloads.
  await page.getByLabel('Title').fill('From the browser');
  await page.getByRole('button', { name: 'Create a snapshot' }).click();
  await page.locator('#snapshots a.download').waitFor({ timeout: 30_000 });
  const [snapshot] = await Promise.all([page.waitForEvent('download'), page.locator('#snapshots a.download').click()]);
  const saved = JSON.parse(readFileSync(await snapshot.path(), 'utf8'));
  assert.equal(saved.length, 2);
  assert.ok(saved.some((t) => t.data.text === 'first row from a file'));
  // Converted to CSV: the page follows the conversion, then the CSV downloads.
  await page.locator('#snapshots select[name="export_type"]').selectOption('CSV');
  await page.locator('#snapshots').getByRole('button', { name: 'Convert', exact: true }).click();
  await page.locator('#snapshots a.download-converted').waitFor({ timeout: 30_000 });
  const [converted] = await Promise.all([page.waitForEvent('download'), page.locator('#snapshots a.download-converted').click()]);
  assert.match(converted.suggestedFilename(), /\.csv$/);
  const csv = readFileSync(await converted.path(), 'utf8').trim().split('\n');
  assert.equal(csv.length, 3, csv.join('\n'));
  assert.match(csv[0], /(^|,)text(,|$)/);
  assert.ok(csv.some((line) => line.includes('"second row, with a comma"')), csv.join('\n'));
  await page.locator('#snapshots').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#no-snapshots').waitFor();
  assert.deepEqual(await api('GET', `/api/projects/${id}/exports`), []);
  assert.deepEqual(page.errors, []);
});

test('a manager connects a local-files source storage on the cloud storage page and syncs it', async () => {
  mkdirSync(join(server.dir, 'files', 'drive'), { recursive: true });
  writeFileSync(join(server.dir, 'files', 'drive', 'tasks.json'), JSON.stringify([{ text: 'from the shared drive' }]));
  await api('POST', '/api/users', { email: 'storage-manager@example.com', password: 'storage manager password', role: 'manager' });
  const page = await newPage();
  await signIn(page, 'storage-manager@example.com', 'storage manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Storage in a browser');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  await page.getByRole('link', { name: 'Cloud storage' }).click();
  await page.waitForURL(new RegExp(`/projects/${id}/settings/storage$`));
  await page.locator('#import-type').selectOption('localfiles');
  await page.getByRole('button', { name: 'Add source storage' }).click();
  await page.getByLabel('Title').fill('Shared drive');
  await page.getByLabel('Directory').fill('drive');
  await page.getByRole('button', { name: 'Add storage' }).click();
  await page.locator('#storage-ok').waitFor();
  const [storage] = await api('GET', `/api/storages/localfiles?project=${id}`);
  assert.equal(storage.title, 'Shared drive');
  const row = page.locator(`tr[data-storage="import-localfiles-${storage.id}"]`);
  await row.getByRole('button', { name: 'Sync' }).click();
  await row.locator('.status').getByText('completed').waitFor();
  assert.equal((await api('GET', `/api/projects/${id}`)).task_number, 1);
  assert.deepEqual(page.errors, []);
});

test('sign-up through an invitation link; an annotator sees no settings', async () => {
  const project = await api('POST', '/api/projects', { title: 'Invited work' });
  const invitation = await api('POST', '/api/invitations', { role: 'annotator' });
  const page = await newPage();
  await page.goto(`${server.base}${invitation.invite_url}`);
  await page.getByLabel('Email').fill('invited@example.com');
  await page.getByLabel('First name').fill('Ina');
  await page.getByLabel(/^Password/).fill('invited password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(/\/projects$/);
  const me = (await api('GET', '/api/users')).find((u) => u.email === 'invited@example.com');
  await api('POST', `/api/projects/${project.id}/members`, { user: me.id });
  await page.reload();
  assert.equal(await page.getByText('Create a project').count(), 0, 'annotators cannot create projects');
  await page.getByRole('link', { name: 'Invited work' }).click();
  await page.waitForURL(/\/data$/);
  assert.equal(await page.getByRole('link', { name: 'Settings' }).count(), 0);
  const response = await page.goto(`${server.base}/projects/${project.id}/settings`);
  assert.equal(response.status(), 403);
  // The link works once.
  const again = await newPage();
  await again.goto(`${server.base}${invitation.invite_url}`);
  await again.getByLabel('Email').fill('second@example.com');
  await again.getByLabel(/^Password/).fill('another password');
  await again.getByRole('button', { name: 'Create account' }).click();
  await again.locator('#signup-error').waitFor();
  assert.match(await again.locator('#signup-error').textContent(), /already used/);
});

test('a forged cross-site form post is refused, and sign-out everywhere ends other sessions', async () => {
  await api('POST', '/api/users', { email: 'victim@example.com', password: 'victim password', role: 'manager' });
  const page = await newPage();
  await signIn(page, 'victim@example.com', 'victim password');
  await page.waitForURL(/\/projects$/);
  const before = (await api('GET', '/api/projects')).count;
  // A forged post that carries the session cookie but not the session's CSRF token (what a
  // same-site attacker could send; a cross-site one does not even get the SameSite=Lax cookie
  // attached): the form post and the API call are both refused and nothing is created.
  const forged = await page.evaluate(async (base) => {
    const r = await fetch(`${base}/projects`, {
      method: 'POST', credentials: 'include',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'title=Forged&template=text_classification&csrf_token=guess',
    });
    return r.status;
  }, server.base);
  assert.equal(forged, 403);
  const apiForged = await page.evaluate(async () => (await fetch('/api/projects', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: 'Forged too' }),
  })).status);
  assert.equal(apiForged, 403);
  // The page's own helper sends the token: the same call succeeds.
  const allowed = await page.evaluate(async () => (await window.verity.api('/api/projects', {
    method: 'POST', body: JSON.stringify({ title: 'Made by the page' }),
  })).status);
  assert.equal(allowed, 201);
  assert.equal((await api('GET', '/api/projects')).count, before + 1);
  // A second browser of the same user; "sign out everywhere" from the first ends both.
  const other = await newPage();
  await signIn(other, 'victim@example.com', 'victim password');
  await other.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/user/logout`);
  await page.getByRole('button', { name: 'Sign out everywhere' }).click();
  await page.waitForURL(/\/user\/login$/);
  await other.goto(`${server.base}/projects`);
  assert.match(other.url(), /\/user\/login\?next=/);
});

test('members and workspaces: a manager adds, pauses and removes a project member and makes a workspace; an annotator sees no controls', async () => {
  await api('POST', '/api/users', { email: 'pm-manager@example.com', password: 'pm manager password', role: 'manager' });
  await api('POST', '/api/users', { email: 'pm-annotator@example.com', password: 'pm annotator password', role: 'annotator' });
  const annotator = (await api('GET', '/api/users')).find((u) => u.email === 'pm-annotator@example.com');
  const page = await newPage();
  await signIn(page, 'pm-manager@example.com', 'pm manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Members in a browser');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  await page.getByRole('link', { name: 'Members' }).click();
  await page.waitForURL(/\/members$/);
  await page.getByLabel('Organization member').selectOption(String(annotator.id));
  await page.getByLabel('Project role', { exact: true }).selectOption('annotator');
  await page.getByRole('button', { name: 'Add to the project' }).click();
  await page.locator('#project-members-notice').waitFor();
  let members = await api('GET', `/api/projects/${id}/members`);
  assert.deepEqual(members.map((m) => [m.user.id, m.role, m.paused]), [[annotator.id, 'annotator', false]]);
  await page.getByLabel('Why pm-annotator@example.com is paused (they see this)').fill('Read the guide first');
  await page.getByRole('button', { name: 'Pause pm-annotator@example.com' }).click();
  await page.locator('#project-members-notice').waitFor();
  assert.match(await page.locator(`#project-member-${annotator.id}`).textContent(), /paused\s*Read the guide first/);
  const pauses = await api('GET', `/api/projects/${id}/members/${annotator.id}/pauses`);
  assert.equal(pauses[0].verbose_reason, 'Read the guide first');
  // The annotator sees the list, paused, and no controls.
  const other = await newPage();
  await signIn(other, 'pm-annotator@example.com', 'pm annotator password');
  await other.waitForURL(/\/projects$/);
  await other.goto(`${server.base}/projects/${id}/members`);
  assert.match(await other.locator(`#project-member-${annotator.id}`).textContent(), /paused/);
  assert.equal(await other.getByRole('button').filter({ hasText: /Pause|Unpause|Remove|Add/ }).count(), 0);
  await page.getByRole('button', { name: 'Unpause pm-annotator@example.com' }).click();
  await page.locator('#project-members-notice').waitFor();
  assert.equal((await api('GET', `/api/projects/${id}/members/${annotator.id}/pauses`)).length, 0);
  await page.getByRole('button', { name: 'Remove pm-annotator@example.com from the project' }).click();
  await page.locator('#project-members-notice').waitFor();
  members = await api('GET', `/api/projects/${id}/members`);
  assert.equal(members.length, 0);
  // A workspace from the header's link, with the annotator in it.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Workspaces' }).click();
  await page.waitForURL(/\/workspaces$/);
  await page.getByLabel('Name', { exact: true }).fill('Browser team');
  await page.getByRole('button', { name: 'Create workspace' }).click();
  await page.waitForURL(/\/workspaces\/\d+$/);
  const ws = Number(page.url().split('/')[4]);
  await page.getByLabel('Organization member').selectOption(String(annotator.id));
  await page.getByRole('button', { name: 'Add to the workspace' }).click();
  await page.locator('#workspace-notice').waitFor();
  const wsMembers = await api('GET', `/api/workspaces/${ws}/memberships`);
  assert.ok(wsMembers.some((m) => m.user.id === annotator.id));
  assert.deepEqual(page.errors, []);
  assert.deepEqual(other.errors, []);
});

test('data manager: a manager adds a tab, filters, sorts and runs an action; an annotator sees no actions', async () => {
  await api('POST', '/api/users', { email: 'dm-manager@example.com', password: 'dm manager password', role: 'manager' });
  await api('POST', '/api/users', { email: 'dm-annotator@example.com', password: 'dm annotator password', role: 'annotator' });
  const page = await newPage();
  await signIn(page, 'dm-manager@example.com', 'dm manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Data manager in a browser');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  const texts = ['one', 'two', 'three', 'four', 'five'].map((w) => ({ text: `text ${w}` }));
  await api('POST', `/api/projects/${id}/import`, texts);
  const tasks = (await api('GET', `/api/tasks?project=${id}&include=id`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  const result = [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: ['Positive'] } }];
  for (const t of tasks.slice(0, 3)) await api('POST', `/api/tasks/${t}/annotations`, { result });
  // A tab of its own.
  await page.reload();
  await page.getByLabel('New tab').fill('Annotated');
  await page.getByRole('button', { name: 'Add tab' }).click();
  await page.waitForURL(/\?view=\d+$/);
  const view = Number(new URL(page.url()).searchParams.get('view'));
  assert.equal(await page.getByRole('link', { name: 'Annotated' }).getAttribute('aria-current'), 'page');
  // Filter: annotations > 0, saved into the tab.
  await page.getByLabel('Column 1', { exact: true }).selectOption('total_annotations');
  await page.getByLabel('Operator 1', { exact: true }).selectOption('greater');
  await page.getByLabel('Value 1', { exact: true }).fill('0');
  await page.getByRole('button', { name: 'Apply filters to this tab' }).click();
  await page.waitForURL(new RegExp(`\\?view=${view}$`));
  assert.match(await page.locator('#tasks caption').textContent(), /^3 tasks$/);
  const saved = await api('GET', `/api/dm/views/${view}`);
  assert.equal(saved.data.filters.items[0].operator, 'greater');
  // A bad filter is refused with the task list's message next to the form: a range without
  // its upper end (the number input takes no text, so the range is what can be wrong).
  await page.getByLabel('Operator 1', { exact: true }).selectOption('in');
  await page.getByLabel('Up to (ranges) 1', { exact: true }).fill('');
  await page.getByRole('button', { name: 'Apply filters to this tab' }).click();
  await page.locator('#filter-error').waitFor();
  assert.match(await page.locator('#filter-error').textContent(), /not a finite number/);
  // Ordering by the ID header: ascending, then descending.
  await page.goto(`${server.base}/projects/${id}/data?view=${view}`);
  const firstId = async () => Number(await page.locator('#tasks tbody tr').first().locator('td').nth(1).textContent());
  await page.locator('#tasks thead').getByRole('link', { name: /^ID/ }).click();
  await page.waitForURL(/ordering=id$/);
  assert.equal(await firstId(), tasks[0]);
  await page.locator('#tasks thead').getByRole('link', { name: /^ID/ }).click();
  await page.waitForURL(/ordering=-id$/);
  assert.equal(await firstId(), tasks[2]);
  assert.equal(await page.locator('#tasks thead th[aria-sort="descending"]').count(), 1);
  // Select the first row, delete its annotations, confirm, and see the table change.
  await page.getByLabel(`Select task ${tasks[2]}`).check();
  await page.getByLabel('Action').selectOption({ label: 'Delete annotations' });
  await page.getByRole('button', { name: 'Run on selected tasks' }).click();
  await page.locator('#dm-confirm').waitFor();
  await page.locator('#dm-confirm').getByRole('button', { name: 'Delete annotations' }).click();
  await page.locator('#dm-message').waitFor();
  assert.match(await page.locator('#dm-message').textContent(), /Deleted 1 annotations/);
  assert.match(await page.locator('#tasks caption').textContent(), /^2 tasks$/);
  assert.equal((await api('GET', `/api/tasks?project=${id}&only_annotated=true&include=id`)).total, 2);
  assert.deepEqual(page.errors, [], 'no script errors under the Content-Security-Policy');
  // The annotator sees the tab and its tasks but no actions and no selection.
  const annotator = (await api('GET', '/api/users')).find((u) => u.email === 'dm-annotator@example.com');
  await api('POST', `/api/projects/${id}/members`, { user: annotator.id });
  const other = await newPage();
  await signIn(other, 'dm-annotator@example.com', 'dm annotator password');
  await other.waitForURL(/\/projects$/);
  await other.goto(`${server.base}/projects/${id}/data?view=${view}`);
  assert.match(await other.locator('#tasks caption').textContent(), /^2 tasks$/);
  assert.equal(await other.locator('#dm-actions').count(), 0);
  assert.equal(await other.getByRole('checkbox', { name: /^Select task/ }).count(), 0);
  assert.equal(await other.getByRole('button', { name: 'Rename' }).count(), 0);
});

test('data manager: bulk label, assign and mark ground truth on the selection; a reviewer labels without the other actions', async () => {
  const config = `<View><Text name="text" value="$text"/>
    <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
    <Number name="score" toName="text" min="1" max="10"/><Rating name="stars" toName="text" maxRating="5"/>
    <TextArea name="note" toName="text"/>
    <Taxonomy name="topic" toName="text"><Choice value="News"><Choice value="Sport"/><Choice value="Weather"/></Choice><Choice value="Ads"/></Taxonomy></View>`;
  const project = await api('POST', '/api/projects', { title: 'Bulk in a browser', label_config: config });
  const id = project.id;
  assert.equal(project.config_suitable_for_bulk_annotation, true);
  await api('POST', `/api/projects/${id}/import`, ['a', 'b', 'c', 'd'].map((w) => ({ text: `bulk ${w}` })));
  const tasks = (await api('GET', `/api/tasks?project=${id}&include=id`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  await api('POST', '/api/users', { email: 'bulk-reviewer@example.com', password: 'bulk reviewer password', role: 'reviewer' });
  await api('POST', '/api/users', { email: 'bulk-annotator@example.com', password: 'bulk annotator password', role: 'annotator' });
  const users = await api('GET', '/api/users');
  const reviewer = users.find((u) => u.email === 'bulk-reviewer@example.com');
  const annotator = users.find((u) => u.email === 'bulk-annotator@example.com');
  await api('POST', `/api/projects/${id}/members`, { user: reviewer.id });
  await api('POST', `/api/projects/${id}/members`, { user: annotator.id });

  const page = await newPage();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${id}/data`);
  const form = page.locator('#dm-bulk-label');
  await form.locator('summary').click();
  await page.locator('#dm-bulk-assign summary').click();
  await assertAccessible(page, 'the data page with the bulk forms open');
  // Nothing ticked: refused with a message, nothing written.
  await form.getByLabel('Positive').check();
  await form.getByRole('button', { name: 'Label selected tasks' }).click();
  await page.locator('#dm-error').waitFor();
  assert.match(await page.locator('#dm-error').textContent(), /Select some tasks/);
  // No answer given: refused, nothing written.
  await page.getByLabel(`Select task ${tasks[0]}`).check();
  await page.locator('#dm-bulk-label summary').click();
  await page.locator('#dm-bulk-label').getByRole('button', { name: 'Label selected tasks' }).click();
  await page.locator('#dm-error').waitFor();
  assert.match(await page.locator('#dm-error').textContent(), /at least one answer/);
  assert.equal((await api('GET', `/api/projects/${id}`)).total_annotations_number, 0);
  // Two tasks labeled with every kind of answer.
  await page.getByLabel(`Select task ${tasks[0]}`).check();
  await page.getByLabel(`Select task ${tasks[1]}`).check();
  await page.locator('#dm-bulk-label summary').click();
  await form.getByLabel('Positive').check();
  await form.getByLabel('score').fill('7');
  await form.getByLabel('stars').selectOption('4');
  await form.getByLabel('note').fill('checked in bulk');
  await form.getByLabel('News / Weather').check();
  await form.getByLabel('Ads', { exact: true }).check();
  await form.getByRole('button', { name: 'Label selected tasks' }).click();
  await page.locator('#dm-message').waitFor();
  assert.match(await page.locator('#dm-message').textContent(), /Labeled 2 tasks/);
  for (const t of tasks.slice(0, 2)) {
    const [made] = await api('GET', `/api/tasks/${t}/annotations`);
    assert.equal(made.bulk_created, true);
    assert.deepEqual(made.result.map((r) => [r.from_name, r.value]), [
      ['sentiment', { choices: ['Positive'] }], ['score', { number: 7 }], ['stars', { rating: 4 }], ['note', { text: ['checked in bulk'] }],
      ['topic', { taxonomy: [['News', 'Weather'], ['Ads']] }],
    ]);
  }
  // Assign the annotator to the third task.
  await page.getByLabel(`Select task ${tasks[2]}`).check();
  await page.locator('#dm-bulk-assign summary').click();
  await page.locator('#dm-bulk-assign').getByLabel('bulk-annotator@example.com').check();
  await page.locator('#dm-bulk-assign').getByRole('button', { name: 'Assign to annotators' }).click();
  await page.locator('#dm-message').waitFor();
  assert.match(await page.locator('#dm-message').textContent(), /Assigned 1 annotator to 1 task/);
  const assigned = await api('GET', `/api/projects/${id}/tasks/${tasks[2]}/assignees`);
  assert.deepEqual(assigned.map((a) => [a.assignee, a.type]), [[annotator.id, 'AN']]);
  // Mark ground truth on every task matching the filters: the two labeled ones get a mark.
  await page.getByLabel(/^All 4 tasks matching the filters/).check();
  await page.getByLabel('Action').selectOption({ label: 'Mark as ground truth' });
  await page.getByRole('button', { name: 'Run on selected tasks' }).click();
  await page.locator('#dm-confirm').waitFor();
  await page.locator('#dm-confirm').getByRole('button', { name: 'Mark as ground truth' }).click();
  await page.locator('#dm-message').waitFor();
  assert.match(await page.locator('#dm-message').textContent(), /Marked 2 ground truths; 0 already marked; 2 tasks without/);
  assert.equal((await api('GET', `/api/projects/${id}`)).ground_truth_number, 2);
  assert.deepEqual(page.errors, [], 'no script errors under the Content-Security-Policy');

  // The reviewer: the selection and the bulk-label form, no actions and no assigning.
  const other = await newPage();
  await signIn(other, 'bulk-reviewer@example.com', 'bulk reviewer password');
  await other.waitForURL(/\/projects$/);
  await other.goto(`${server.base}/projects/${id}/data`);
  assert.equal(await other.getByLabel('Action').count(), 0);
  assert.equal(await other.locator('#dm-bulk-assign').count(), 0);
  await other.getByLabel(`Select task ${tasks[3]}`).check();
  await other.locator('#dm-bulk-label summary').click();
  await other.locator('#dm-bulk-label').getByLabel('Negative').check();
  await other.locator('#dm-bulk-label').getByRole('button', { name: 'Label selected tasks' }).click();
  await other.locator('#dm-message').waitFor();
  assert.match(await other.locator('#dm-message').textContent(), /Labeled 1 task\./);
  const [byReviewer] = await api('GET', `/api/tasks/${tasks[3]}/annotations`);
  assert.deepEqual([byReviewer.completed_by, byReviewer.bulk_created, byReviewer.result.length], [reviewer.id, true, 1]);
});

test('data manager: the filter list is the server\'s column catalogue; filter by annotator and by annotation result', async () => {
  await api('POST', '/api/users', { email: 'dmc-manager@example.com', password: 'dmc manager password', role: 'manager', first_name: 'Mona', last_name: 'Manager' });
  const page = await newPage();
  await signIn(page, 'dmc-manager@example.com', 'dmc manager password');
  await page.waitForURL(/\/projects$/);
  await page.getByLabel('Name', { exact: true }).fill('Filters from the catalogue');
  await page.getByLabel('Text classification').check();
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(/\/projects\/\d+\/data$/);
  const id = Number(page.url().split('/')[4]);
  await api('POST', `/api/projects/${id}/import`, ['a', 'b', 'c', 'd'].map((w) => ({ text: `text ${w}` })));
  const tasks = (await api('GET', `/api/tasks?project=${id}&include=id`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  const label = (choice) => [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [choice] } }];
  // The admin labels two tasks Positive; the manager labels one Negative (through the API).
  for (const t of tasks.slice(0, 2)) await api('POST', `/api/tasks/${t}/annotations`, { result: label('Positive') });
  await page.evaluate(async ([t, result]) => {
    const r = await window.verity.api(`/api/tasks/${t}/annotations`, { method: 'POST', body: JSON.stringify({ result }) });
    if (!r.ok) throw new Error(`annotating failed: ${r.status}`);
  }, [tasks[2], label('Negative')]);
  await page.reload();
  // Exactly the catalogue's columns are offered, then the data fields.
  const catalogue = (await api('GET', `/api/dm/columns?project=${id}`)).columns
    .filter((c) => !c.parent && c.id !== 'data').map((c) => c.id);
  const offered = await page.getByLabel('Column 1', { exact: true }).locator('option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
  assert.deepEqual(offered, [...catalogue, 'data.text']);
  // Choosing a person column offers the people and the operators the server runs on it.
  await page.getByLabel('Column 1', { exact: true }).selectOption('annotators');
  const enabled = await page.getByLabel('Operator 1', { exact: true }).locator('option:not([disabled])').evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual(enabled, ['contains', 'not_contains', 'exists', 'not_exists']);
  await page.getByLabel('Operator 1', { exact: true }).selectOption('contains');
  await page.getByLabel('Value 1', { exact: true }).selectOption({ label: 'Mona Manager (dmc-manager@example.com)' });
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.waitForURL(/\?view=\d+$/);
  assert.match(await page.locator('#tasks caption').textContent(), /^1 task$/);
  assert.equal(Number(await page.locator('#tasks tbody tr').first().locator('td').nth(1).textContent()), tasks[2]);
  // By annotation result: a text column, matched as the server matches it.
  await page.getByLabel('Column 1', { exact: true }).selectOption('annotations_results');
  assert.equal(await page.getByLabel('Value 1', { exact: true }).evaluate((e) => e.tagName), 'INPUT');
  await page.getByLabel('Operator 1', { exact: true }).selectOption('contains');
  await page.getByLabel('Value 1', { exact: true }).fill('positive');
  await page.getByRole('button', { name: 'Apply filters to this tab' }).click();
  await page.locator('#tasks caption').filter({ hasText: /^2 tasks$/ }).waitFor();
  const rows = await page.locator('#tasks tbody tr').evaluateAll((trs) => trs.map((tr) => Number(tr.querySelectorAll('td')[1].textContent)));
  assert.deepEqual(rows.sort((a, b) => a - b), tasks.slice(0, 2));
  // A yes/no column gets a yes/no choice, a time column a date-and-time input.
  await page.getByLabel('Column 2', { exact: true }).selectOption('ground_truth');
  assert.equal(await page.getByLabel('Value 2', { exact: true }).evaluate((e) => e.tagName), 'SELECT');
  await page.getByLabel('Column 2', { exact: true }).selectOption('completed_at');
  assert.equal(await page.getByLabel('Value 2', { exact: true }).getAttribute('type'), 'datetime-local');
  assert.deepEqual(page.errors, [], 'no script errors under the Content-Security-Policy');
});

// Needs Label Studio's editor, installed by controlplane/ui/fetch-editor (e2e/test-all does).
test('an annotator labels a task in the editor, submits, and gets the next task', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  await api('POST', '/api/users', { email: 'labeler@example.com', password: 'labeler password', role: 'annotator' });
  const users = await api('GET', '/api/users');
  const labeler = users.find((u) => u.email === 'labeler@example.com');
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Label me', label_config: config });
  await api('POST', `/api/projects/${project.id}/members`, { user: labeler.id });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'first task text' }, { text: 'second task text' }]);
  const page = await newPage();
  await signIn(page, 'labeler@example.com', 'labeler password');
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/label`);
  // The status reads "Loading the next task…" until the first task is shown: wait for the task,
  // or the change after submitting could be mistaken for that first load.
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  const first = await page.locator('#label-status').textContent();
  await page.getByRole('checkbox', { name: /^Positive/ }).click();
  await page.getByRole('button', { name: /submit/i }).click();
  // The next task (or a "Not saved" message) replaces the first one once the annotation is saved.
  await page.waitForFunction((before) => {
    const now = document.getElementById('label-status').textContent;
    return now !== before && !now.startsWith('Loading');
  }, first);
  assert.match(await page.locator('#label-status').textContent(), /^Task \d+$/);
  const tasks = (await api('GET', `/api/tasks?project=${project.id}&fields=all`)).tasks;
  const done = tasks.filter((t) => (t.annotations ?? []).length > 0);
  assert.equal(done.length, 1, JSON.stringify(tasks));
  assert.deepEqual(done[0].annotations[0].result[0].value, { choices: ['Positive'] });
  assert.equal(done[0].annotations[0].completed_by, labeler.id);
  // No script errors besides the editor's own known boot noise.
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('the editor autosaves a draft, reopening restores it, submitting removes it', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  await api('POST', '/api/users', { email: 'drafter@example.com', password: 'drafter password', role: 'annotator' });
  const drafter = (await api('GET', '/api/users')).find((u) => u.email === 'drafter@example.com');
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Drafts', label_config: config });
  await api('POST', `/api/projects/${project.id}/members`, { user: drafter.id });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'draft me' }]);
  const [task] = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks.map((t) => t.id);
  const page = await newPage();
  await signIn(page, 'drafter@example.com', 'drafter password');
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/data?labeling=1`);
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  await page.getByRole('checkbox', { name: /^Positive/ }).click();
  // The editor saves a draft a few seconds after the change (its autosave); no submit.
  await page.waitForSelector('#editor[data-draft]', { state: 'attached', timeout: 30_000 });
  const drafts = (t) => page.evaluate((id) => fetch(`/api/tasks/${id}/drafts`).then((r) => r.json()), t);
  const saved = await drafts(task);
  assert.equal(saved.length, 1);
  assert.deepEqual(saved[0].result[0].value, { choices: ['Positive'] });
  // Reopening the task brings the draft back into the editor.
  await page.reload();
  await page.waitForFunction(() => /draft restored$/.test(document.getElementById('label-status').textContent));
  assert.equal(await page.getByRole('checkbox', { name: /^Positive/ }).isChecked(), true);
  // Submitting turns it into the annotation and removes the draft.
  await page.getByRole('button', { name: /submit/i }).click();
  await page.waitForFunction(() => !/draft restored$/.test(document.getElementById('label-status').textContent));
  const [annotation] = await api('GET', `/api/tasks/${task}/annotations`);
  assert.deepEqual(annotation.result[0].value, { choices: ['Positive'] });
  assert.equal(annotation.draft_created_at, saved[0].created_at);
  assert.deepEqual(await drafts(task), []);
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('postpone puts the task aside; the next task loads and the postponed one comes back last', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  await api('POST', '/api/users', { email: 'postponer@example.com', password: 'postponer password', role: 'annotator' });
  const postponer = (await api('GET', '/api/users')).find((u) => u.email === 'postponer@example.com');
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Postpone', label_config: config });
  await api('POST', `/api/projects/${project.id}/members`, { user: postponer.id });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'later please' }, { text: 'now then' }]);
  const [first, second] = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  const page = await newPage();
  await signIn(page, 'postponer@example.com', 'postponer password');
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/label`);
  const statusIs = (text) => page.waitForFunction((t) => document.getElementById('label-status').textContent === t, text);
  await statusIs(`Task ${first}`);
  // Some work, then Postpone: the next task loads.
  await page.getByRole('checkbox', { name: /^Positive/ }).click();
  await page.getByRole('button', { name: 'Postpone' }).click();
  await statusIs(`Task ${second}`);
  const drafts = (t) => page.evaluate((id) => fetch(`/api/tasks/${id}/drafts`).then((r) => r.json()), t);
  const [draft] = await drafts(first);
  assert.equal(draft.was_postponed, true);
  assert.deepEqual(draft.result[0].value, { choices: ['Positive'] });
  assert.equal(await page.getByRole('button', { name: 'Postpone' }).isVisible(), true);
  await page.getByRole('checkbox', { name: /^Negative/ }).click();
  await page.getByRole('button', { name: /submit/i }).click();
  // The postponed task comes back last, with its work, and without Postpone.
  await statusIs(`Task ${first} · draft restored`);
  assert.equal(await page.getByRole('checkbox', { name: /^Positive/ }).isChecked(), true);
  assert.equal(await page.getByRole('button', { name: 'Postpone' }).isVisible(), false);
  await page.getByRole('button', { name: /submit/i }).click();
  await page.waitForFunction(() => !/^Task /.test(document.getElementById('label-status').textContent));
  const [annotation] = await api('GET', `/api/tasks/${first}/annotations`);
  assert.deepEqual(annotation.result[0].value, { choices: ['Positive'] });
  assert.deepEqual(await drafts(first), [], 'submitting from the draft deleted it');
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('opening an annotation restores your draft of it; Update saves it and removes the draft', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Revise', label_config: config });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'change my mind' }]);
  const [task] = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks.map((t) => t.id);
  const choice = (c) => [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [c] } }];
  const annotation = await api('POST', `/api/tasks/${task}/annotations`, { result: choice('Positive') });
  await api('POST', `/api/tasks/${task}/annotations/${annotation.id}/drafts`, { result: choice('Negative') });
  const page = await newPage();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/data?task=${task}&annotation=${annotation.id}`);
  await page.waitForFunction((t) => document.getElementById('label-status').textContent === t,
    `Task ${task} · annotation ${annotation.id} · draft restored`);
  assert.equal(await page.getByRole('checkbox', { name: /^Negative/ }).isChecked(), true);
  assert.equal(await page.getByRole('checkbox', { name: /^Positive/ }).isChecked(), false);
  // The editor's Update (not a <button> in 1.4.0).
  await page.getByText('Update', { exact: true }).click();
  let drafts = null;
  for (let i = 0; i < 50; i += 1) {
    drafts = await api('GET', `/api/tasks/${task}/annotations/${annotation.id}/drafts`);
    if (drafts.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.deepEqual(drafts, [], 'updating the annotation removed the draft');
  const saved = await api('GET', `/api/annotations/${annotation.id}`);
  assert.deepEqual(saved.result[0].value, { choices: ['Negative'] });
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('predictions pre-annotate the task and show their scores', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  await api('POST', '/api/users', { email: 'predicted@example.com', password: 'predicted password', role: 'annotator' });
  const user = (await api('GET', '/api/users')).find((u) => u.email === 'predicted@example.com');
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Predicted', label_config: config, model_version: 'v2' });
  await api('POST', `/api/projects/${project.id}/members`, { user: user.id });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'predict me' }]);
  const [task] = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks.map((t) => t.id);
  const result = (label) => [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [label] } }];
  await api('POST', '/api/predictions', { task, result: result('Negative'), score: 0.25, model_version: 'v1' });
  await api('POST', '/api/predictions', { task, result: result('Positive'), score: 0.875, model_version: 'v2' });
  const page = await newPage();
  await signIn(page, 'predicted@example.com', 'predicted password');
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/data?labeling=1`);
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  // Only the prediction of the project's model version, with its score; it pre-annotates.
  assert.equal(await page.locator('#label-predictions').textContent(), 'Predictions: v2, score 0.88');
  assert.equal(await page.getByRole('checkbox', { name: /^Positive/ }).isChecked(), true);
  assert.equal(await page.getByRole('checkbox', { name: /^Negative/ }).isChecked(), false);
  // Revealed on request only: the annotator starts empty, the score is still shown.
  await api('PATCH', `/api/projects/${project.id}`, { reveal_preannotations_interactively: true });
  await page.reload();
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  assert.equal(await page.locator('#label-predictions').textContent(), 'Predictions: v2, score 0.88');
  assert.equal(await page.getByRole('checkbox', { name: /^Positive/ }).isChecked(), false);
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('follow a deep link to a region', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  const config = '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="ORG"/></Labels><Text name="text" value="$text"/></View>';
  const project = await api('POST', '/api/projects', { title: 'Deep links', label_config: config });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'Ada Lovelace met Babbage at the Royal Society' }, { text: 'another task' }]);
  const tasks = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  const span = (id, start, end, label) => ({
    id, from_name: 'label', to_name: 'text', type: 'labels',
    value: { start, end, text: 'Ada Lovelace met Babbage at the Royal Society'.slice(start, end), labels: [label] },
  });
  const annotation = await api('POST', `/api/tasks/${tasks[0]}/annotations`, {
    result: [span('person-1', 0, 12, 'PER'), span('org-1', 32, 45, 'ORG')],
  });
  const page = await newPage();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  // The data manager's task row links to the task in the editor.
  await page.goto(`${server.base}/projects/${project.id}/data`);
  await page.locator('#tasks tbody tr').first().getByTitle(/^Open task \d+ in the editor$/).click();
  await page.waitForURL(new RegExp(`/projects/${project.id}/data\\?task=${tasks[0]}$`));
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  // Label Studio's address of one region of one annotation selects that region.
  await page.goto(`${server.base}/projects/${project.id}/data?task=${tasks[0]}&annotation=${annotation.id}&region=org-1`);
  await page.waitForFunction(() => /selected$/.test(document.getElementById('label-status').textContent));
  assert.equal(await page.locator('#label-status').textContent(), `Task ${tasks[0]} · annotation ${annotation.id} · region org-1 selected`);
  assert.equal(await page.locator('#editor').getAttribute('data-selected-region'), 'org-1');
  // An annotation of another task, and a task of another project, are not found, as in the API.
  const wrong = await page.goto(`${server.base}/projects/${project.id}/data?task=${tasks[1]}&annotation=${annotation.id}`);
  assert.equal(wrong.status(), 404);
  const other = await api('POST', '/api/projects', { title: 'Elsewhere', label_config: config });
  assert.equal((await page.goto(`${server.base}/projects/${other.id}/data?task=${tasks[0]}`)).status(), 404);
  assert.equal((await page.goto(`${server.base}/projects/${project.id}/data?task=first`)).status(), 400);
  // ?labeling=1 starts the label stream.
  await page.goto(`${server.base}/projects/${project.id}/data?labeling=1`);
  await page.waitForFunction(() => /^Task \d+$/.test(document.getElementById('label-status').textContent));
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
  // Somebody who is not in the project gets what the API answers for the task.
  await api('POST', '/api/users', { email: 'outsider@example.com', password: 'outsider password', role: 'annotator' });
  const outsider = await newPage();
  await signIn(outsider, 'outsider@example.com', 'outsider password');
  await outsider.waitForURL(/\/projects$/);
  const viaApi = await outsider.evaluate((t) => fetch(`/api/tasks/${t}`).then((r) => r.status), tasks[0]);
  assert.notEqual(viaApi, 200);
  assert.equal((await outsider.goto(`${server.base}/projects/${project.id}/data?task=${tasks[0]}`)).status(), viaApi);
});

test('a comment added on the labeling page is listed by the API and notifies the annotator', { skip: !process.env.VERITY_EDITOR_DIR && 'VERITY_EDITOR_DIR is not set' }, async () => {
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Comments', label_config: config });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'a fine day' }]);
  const task = (await api('GET', `/api/tasks?project=${project.id}&include=id`)).tasks[0].id;
  const annotator = await api('POST', '/api/users', { email: 'commented@example.com', password: 'commented password', role: 'annotator' });
  await api('POST', `/api/projects/${project.id}/members`, { user: annotator.id });
  // The annotator labels the task (through the API, with their session).
  const theirs = await newPage();
  await signIn(theirs, 'commented@example.com', 'commented password');
  await theirs.waitForURL(/\/projects$/);
  const annotation = await theirs.evaluate((t) => window.verity.api(`/api/tasks/${t}/annotations`, {
    method: 'POST',
    body: JSON.stringify({ result: [{ id: 'c1', from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: ['pos'] } }] }),
  }).then((r) => r.json()), task);
  assert.equal(await theirs.locator('#notification-count').count(), 0);
  // The admin opens the annotation on the labeling page and comments in the panel beside the editor.
  const page = await newPage();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/data?task=${task}&annotation=${annotation.id}`);
  await page.locator('#comments').waitFor({ state: 'visible' });
  await page.getByLabel('New comment').fill('Is this really positive?');
  await page.getByRole('button', { name: 'Add comment' }).click();
  await page.locator('#comment-list li').first().waitFor();
  assert.match(await page.locator('#comment-list li').first().textContent(), /Is this really positive\?/);
  const listed = await api('GET', `/api/comments?annotation=${annotation.id}`);
  assert.deepEqual(listed.map((c) => [c.text, c.annotation, c.task]), [['Is this really positive?', annotation.id, task]]);
  assert.equal((await api('GET', `/api/tasks/${task}`)).comment_count, 1);
  // The annotator sees one unread notification in the header, and the page links to the annotation.
  await theirs.goto(`${server.base}/projects`);
  assert.equal((await theirs.locator('#notification-count').textContent()).trim(), '1');
  await theirs.locator('#notifications-link').click();
  await theirs.waitForURL(/\/notifications$/);
  const link = theirs.locator('#notifications .notification-link').first();
  assert.equal(await link.getAttribute('href'), `/projects/${project.id}/data?task=${task}&annotation=${annotation.id}`);
  assert.match(await theirs.locator('#notifications').textContent(), /Is this really positive\?/);
  await theirs.getByRole('button', { name: 'Mark all read' }).click();
  await theirs.waitForURL(/\/notifications$/);
  assert.equal(await theirs.locator('#notification-count').count(), 0);
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('a reviewer rejects a task with a comment, accepts the next, and the dashboard shows the counts', async () => {
  await api('POST', '/api/users', { email: 'worker@example.com', password: 'worker password', role: 'annotator' });
  await api('POST', '/api/users', { email: 'checker@example.com', password: 'checker password', role: 'reviewer' });
  const users = await api('GET', '/api/users');
  const worker = users.find((u) => u.email === 'worker@example.com');
  const checker = users.find((u) => u.email === 'checker@example.com');
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Review me', label_config: config });
  for (const u of [worker, checker]) await api('POST', `/api/projects/${project.id}/members`, { user: u.id });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'first review text' }, { text: 'second review text' }, { text: 'third review text' }]);
  const { tasks } = await api('GET', `/api/tasks?project=${project.id}`);
  // The annotator's work, through the API with the annotator's own session.
  const annotatorPage = await newPage();
  await signIn(annotatorPage, 'worker@example.com', 'worker password');
  await annotatorPage.waitForURL(/\/projects$/);
  for (const [t, label] of [[tasks[0], 'Positive'], [tasks[1], 'Negative'], [tasks[2], 'Negative']]) {
    const status = await annotatorPage.evaluate(async ({ id, label }) => (await window.verity.api(`/api/tasks/${id}/annotations`, {
      method: 'POST',
      body: JSON.stringify({ result: [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [label] } }] }),
    })).status, { id: t.id, label });
    assert.equal(status, 201);
  }
  await annotatorPage.goto(`${server.base}/projects/${project.id}/data`);
  assert.equal(await annotatorPage.getByRole('link', { name: 'Review', exact: true }).count(), 0, 'annotators have no review link');
  assert.equal(await annotatorPage.getByRole('link', { name: 'Dashboard' }).count(), 0);

  const page = await newPage();
  await signIn(page, 'checker@example.com', 'checker password');
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/data`);
  await page.getByRole('link', { name: 'Review', exact: true }).click();
  await page.waitForURL(/\/review$/);
  assert.equal(await page.locator('#review-task').textContent(), String(tasks[0].id));
  assert.match(await page.locator('#review-result').textContent(), /Positive/);
  await page.getByRole('textbox', { name: /^Comment/ }).fill('Not positive at all');
  await page.getByRole('button', { name: 'Reject' }).click();
  await page.waitForURL(/done=rejected/);
  assert.match(await page.locator('#review-notice').textContent(), /Rejected/);
  assert.equal(await page.locator('#review-task').textContent(), String(tasks[1].id));
  await page.getByRole('button', { name: 'Accept', exact: true }).click();
  await page.waitForURL(/done=accepted/);
  assert.equal(await page.locator('#review-task').textContent(), String(tasks[2].id));
  if (process.env.VERITY_EDITOR_DIR) {
    // Fix + Accept: the reviewer changes the answer in the editor; the fixed result is stored.
    await page.waitForFunction(() => /^Annotation \d+ in the editor$/.test(document.getElementById('review-status').textContent));
    await page.getByRole('checkbox', { name: /^Positive/ }).click();
    await page.getByRole('button', { name: 'Fix + Accept' }).click();
    await page.waitForURL(/done=fixed/);
  } else {
    await page.getByRole('button', { name: 'Accept', exact: true }).click();
    await page.waitForURL(/done=accepted/);
  }
  await page.locator('#review-empty').waitFor();
  assert.match(await page.getByRole('heading', { name: 'Nothing to review' }).textContent(), /Nothing to review/);
  const rejected = await api('GET', `/api/annotation-reviews?annotation__task__project=${project.id}`);
  assert.deepEqual(rejected.map((r) => [r.accepted, r.comment]), [[false, 'Not positive at all'], [true, null], [true, null]]);
  if (process.env.VERITY_EDITOR_DIR) {
    assert.deepEqual(rejected[2].result.map((r) => r.value), [{ choices: ['Positive'] }]);
  }

  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.waitForURL(/\/dashboard$/);
  assert.equal(await page.locator('#n-annotations').textContent(), '3');
  assert.match(await page.locator('#n-accepted').textContent(), /^2/);
  assert.equal(await page.locator('#n-rejected').textContent(), '1');
  assert.equal(await page.getByRole('img', { name: 'Annotations per annotator' }).count(), 1);
  assert.equal(await page.getByRole('row', { name: /worker@example\.com/ }).count(), 1);

  // From the data manager: open one task's review again, comment on its annotation, resolve it.
  await page.goto(`${server.base}/projects/${project.id}/data`);
  await page.getByRole('link', { name: `Review task ${tasks[1].id}`, exact: true }).click();
  await page.waitForURL(new RegExp(`/review\\?task=${tasks[1].id}$`));
  assert.equal(await page.locator('#review-task').textContent(), String(tasks[1].id));
  assert.match(await page.locator('#review-comment-list').textContent(), /No comments/);
  await page.getByLabel('Add a comment').fill('Borderline, but fine');
  await page.getByRole('button', { name: 'Add comment' }).click();
  await page.waitForURL(/done=commented/);
  assert.match(await page.locator('#review-notice').textContent(), /Comment added/);
  assert.match(await page.locator('#review-comment-list').textContent(), /Borderline, but fine/);
  await page.getByRole('button', { name: 'Resolve' }).click();
  await page.waitForURL(/done=resolved/);
  assert.equal(await page.locator('#review-task').textContent(), String(tasks[1].id));
  const reviewed = Number(await page.locator('#review-annotation').textContent());
  const comments = await api('GET', `/api/comments?annotation=${reviewed}`);
  assert.deepEqual(comments.map((c) => [c.text, c.is_resolved, c.created_by]), [['Borderline, but fine', true, checker.id]]);
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('"Continue with SSO" finds the organization by the email domain and sends the browser to its identity provider', async () => {
  // The identity provider's metadata, with a signing certificate made here (Verity refuses
  // metadata without one).
  const dir = mkdtempSync(join(tmpdir(), 'verity-ui-idp-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=idp',
    '-keyout', join(dir, 'idp.key'), '-out', join(dir, 'idp.crt')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'idp.crt'), 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  rmSync(dir, { recursive: true, force: true });
  const metadata = '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
    + 'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.ui.test/metadata">'
    + '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
    + `<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${cert}</ds:X509Certificate>`
    + '</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
    + '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.ui.test/sso"/>'
    + '</md:IDPSSODescriptor></md:EntityDescriptor>';
  const view = await api('POST', '/api/saml/settings', { domain: 'ui-sso.test', metadata_xml: metadata });
  assert.equal(view.idp_sso_url, 'https://idp.ui.test/sso');
  try {
    const page = await newPage();
    // The identity provider is not on the network: what counts is that the browser asks it.
    await page.goto(`${server.base}/user/login?next=/projects`);
    await page.getByLabel(/single sign-on/).fill('someone@UI-SSO.test');
    const request = page.waitForRequest(/^https:\/\/idp\.ui\.test\/sso\?/, { timeout: 15_000 });
    await page.getByRole('button', { name: 'Continue with SSO' }).click();
    const reached = new URL((await request).url());
    assert.ok(reached, 'the identity provider was reached');
    assert.ok(reached.searchParams.get('SAMLRequest'), 'with an AuthnRequest');
    assert.ok(reached.searchParams.get('RelayState'), 'and a RelayState');
    // An email of a domain no organization claims stays on Verity with a clear message (in a
    // page of its own: the first one is still failing to reach the identity provider).
    const other = await newPage();
    await other.goto(`${server.base}/user/login`);
    await other.getByLabel(/single sign-on/).fill('someone@elsewhere.test');
    await other.getByRole('button', { name: 'Continue with SSO' }).click();
    assert.match(await other.locator('#page-error').textContent(), /No single sign-on is set up/);
  } finally {
    await api('DELETE', '/api/saml/settings');
  }
});

/** Runs SQL on the server's database (to give a person a second membership: no API does). */
function sql(statement) {
  if (process.env.VERITY_UI_DATABASE_URL) {
    execFileSync('psql', [process.env.VERITY_UI_DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-c', statement], { stdio: 'ignore' });
  } else {
    execFileSync('sqlite3', ['-cmd', '.timeout 10000', join(server.dir, 'verity.db'), statement], { stdio: 'ignore' });
  }
}

test('a personal access token made on the account page works against the API, and the header switches organization', async () => {
  const me = await api('POST', '/api/users', { email: 'switcher@example.com', password: 'switcher password', role: 'admin' });
  await api('POST', '/api/projects', { title: 'First org project' });
  const r = await fetch(`${server.base}/api/admin/organizations/ui-second`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${INSTANCE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Second org', owner_email: 'second-owner@example.com' }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const second = await r.json();
  const created = await fetch(`${server.base}/api/projects`, {
    method: 'POST',
    headers: { authorization: `Token ${second.owner_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Second org project' }),
  });
  assert.equal(created.status, 201);
  sql(`insert into org_member (organization_id, user_id, role, created_at) values (${second.id}, ${me.id}, 'owner', 0)`);

  const page = await newPage();
  await signIn(page, 'switcher@example.com', 'switcher password');
  await page.waitForURL(/\/projects$/);
  // The account page: a personal access token, shown once, exchanged and used with the API.
  await page.getByRole('link', { name: 'switcher@example.com' }).click();
  await page.waitForURL(/\/user\/account$/);
  await page.getByRole('button', { name: 'Create a personal access token' }).click();
  const pat = await page.locator('#new-token').inputValue();
  assert.match(pat, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const refreshed = await fetch(`${server.base}/api/token/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh: pat }),
  });
  assert.equal(refreshed.status, 200);
  const { access } = await refreshed.json();
  const whoami = await (await fetch(`${server.base}/api/current-user/whoami`, { headers: { authorization: `Bearer ${access}` } })).json();
  assert.equal(whoami.email, 'switcher@example.com');
  assert.equal(await page.locator('#pat-list tbody tr').count(), 1);
  // The switcher: the other organization's projects, and the API acts there too.
  await page.goto(`${server.base}/projects`);
  assert.equal(await page.getByRole('link', { name: 'First org project' }).count(), 1);
  await page.getByLabel('Organization', { exact: true }).selectOption({ label: 'Second org' });
  await page.getByRole('button', { name: 'Switch', exact: true }).click();
  await page.waitForURL(/\/projects$/);
  assert.equal(await page.getByRole('link', { name: 'Second org project' }).count(), 1);
  assert.equal(await page.getByRole('link', { name: 'First org project' }).count(), 0);
  const now = await (await fetch(`${server.base}/api/current-user`, { headers: { authorization: `Bearer ${access}` } })).json();
  assert.equal(now.active_organization, second.id);
  assert.deepEqual(page.errors, []);
});

test('analytics: a manager sees per-person numbers and the chart change, picks dates and a time zone; an annotator sees only their own', async () => {
  const people = ['an-manager', 'an-first', 'an-second'];
  for (const [who, role] of [[people[0], 'manager'], [people[1], 'annotator'], [people[2], 'annotator']]) {
    await api('POST', '/api/users', { email: `${who}@example.com`, password: `${who} password`, role });
  }
  const users = await api('GET', '/api/users');
  const [manager, first, second] = people.map((who) => users.find((u) => u.email === `${who}@example.com`));
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  // The manager makes the project (managers see everyone's work in the projects they made).
  const page = await newPage();
  await signIn(page, `${people[0]}@example.com`, `${people[0]} password`);
  await page.waitForURL(/\/projects$/);
  const project = await page.evaluate(async (label_config) => (await window.verity.api('/api/projects', {
    method: 'POST', body: JSON.stringify({ title: 'Analytics project', label_config }),
  })).json(), config);
  for (const u of [first, second]) await api('POST', `/api/projects/${project.id}/members`, { user: u.id });
  await api('POST', `/api/projects/${project.id}/import`, [1, 2, 3, 4, 5].map((n) => ({ text: `analytics text ${n}` })));
  const { tasks } = await api('GET', `/api/tasks?project=${project.id}`);

  await page.goto(`${server.base}/analytics`);
  await page.getByLabel('Project', { exact: true }).selectOption(String(project.id));
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(new RegExp(`project=${project.id}`));
  const rows = (table) => page.locator(`#${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())));
  // The chart's columns with work: "date: n submitted, m skipped".
  const columns = () => page.locator('#analytics-days g').evaluateAll((gs) => gs
    .filter((g) => g.querySelector('rect.submitted, rect.skipped'))
    .map((g) => g.querySelector('title').textContent.trim()));
  assert.deepEqual(await rows('analytics-annotators'), [['No annotations in this range.']]);
  assert.deepEqual(await columns(), []);

  // Work through the API, each annotator with their own session; the manager accepts one.
  const as = async (who, requests) => {
    const p = await newPage();
    await signIn(p, `${who}@example.com`, `${who} password`);
    await p.waitForURL(/\/projects$/);
    const answers = [];
    for (const [url, b] of requests) {
      answers.push(await p.evaluate(async ({ url, b }) => {
        const r = await window.verity.api(url, { method: 'POST', body: JSON.stringify(b) });
        return { status: r.status, body: await r.json() };
      }, { url, b }));
    }
    return answers;
  };
  const choice = (label) => ({ result: [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [label] } }], lead_time: 30 });
  const firstWork = await as(people[1], [
    [`/api/tasks/${tasks[0].id}/annotations`, choice('Positive')],
    [`/api/tasks/${tasks[1].id}/annotations`, choice('Negative')],
    [`/api/tasks/${tasks[2].id}/annotations`, { result: [], was_cancelled: true }],
  ]);
  const secondWork = await as(people[2], [[`/api/tasks/${tasks[3].id}/annotations`, choice('Positive')]]);
  for (const a of [...firstWork, ...secondWork]) assert.equal(a.status, 201, JSON.stringify(a.body));
  const review = await page.evaluate(async (annotation) => (await window.verity.api('/api/annotation-reviews', {
    method: 'POST', body: JSON.stringify({ annotation, accepted: true }),
  })).status, firstWork[0].body.id);
  assert.equal(review, 201);

  await page.reload();
  const person = (who) => new RegExp(`${who}@example\\.com`);
  const annotators = await rows('analytics-annotators');
  assert.equal(annotators.length, 2, JSON.stringify(annotators));
  const firstRow = annotators.find((r) => person(people[1]).test(r[0]));
  const secondRow = annotators.find((r) => person(people[2]).test(r[0]));
  assert.deepEqual(firstRow.slice(1), ['2', '1', '1 min 0 s', '30.0 s'], JSON.stringify(annotators));
  assert.deepEqual(secondRow.slice(1, 3), ['1', '0']);
  const reviewers = await rows('analytics-reviewers');
  assert.equal(reviewers.length, 1);
  assert.match(reviewers[0][0], person(people[0]));
  assert.deepEqual(reviewers[0].slice(1), ['1', '1', '0', '0', '100 %']);
  // The chart has one column with work: today's (in UTC, the default zone).
  const utcDay = firstWork[0].body.created_at.slice(0, 10);
  assert.deepEqual(await columns(), [`${utcDay}: 3 submitted, 1 skipped`]);
  assert.deepEqual(await page.locator('#analytics-days-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim()))), [[utcDay, '3', '1']]);
  await assertAccessible(page, 'analytics with numbers');

  // The time zone decides the day: the work falls on one day in the zone 14 hours east of UTC
  // and on an earlier one 11 hours west, which are never the same date.
  const dayIn = (zone) => new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(firstWork[0].body.created_at));
  const east = dayIn('Pacific/Kiritimati');
  const show = async (start, end, tz) => {
    await page.getByLabel('From', { exact: true }).fill(start);
    await page.getByLabel('To', { exact: true }).fill(end);
    await page.getByLabel('Time zone', { exact: true }).fill(tz);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL((u) => u.searchParams.get('tz') === tz && u.searchParams.get('start') === start && u.searchParams.get('end') === end);
  };
  await show(east, east, 'Pacific/Kiritimati');
  assert.equal(await page.getByLabel('Project', { exact: true }).inputValue(), String(project.id), 'the project stays chosen');
  assert.deepEqual(await columns(), [`${east}: 3 submitted, 1 skipped`]);
  assert.match(await page.locator('#analytics-days-title').textContent(), new RegExp(`${east} to ${east} \\(Pacific/Kiritimati\\)`));
  await show(east, east, 'Pacific/Pago_Pago');
  assert.deepEqual(await columns(), []);
  assert.deepEqual(await rows('analytics-annotators'), [['No annotations in this range.']]);
  // A long range is drawn in weeks; an earlier range has nothing.
  await show('2020-01-01', '2020-12-31', 'UTC');
  assert.match(await page.locator('#analytics-days-heading').textContent(), /Annotations per week/);
  assert.deepEqual(await columns(), []);
  // Bad input is explained on the page, and the form keeps it.
  await show(utcDay, utcDay, 'Mars/Olympus_Mons');
  assert.match(await page.locator('#analytics-error').textContent(), /Mars\/Olympus_Mons/);
  assert.equal(await page.getByLabel('Time zone', { exact: true }).inputValue(), 'Mars/Olympus_Mons');
  assert.equal(await page.locator('#analytics-days').count(), 0);

  // An annotator sees their own numbers only.
  const own = await newPage();
  await signIn(own, `${people[2]}@example.com`, `${people[2]} password`);
  await own.waitForURL(/\/projects$/);
  await own.goto(`${server.base}/analytics?project=${project.id}`);
  const ownRows = await own.locator('#analytics-annotators tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())));
  assert.equal(ownRows.length, 1, JSON.stringify(ownRows));
  assert.match(ownRows[0][0], person(people[2]));
  assert.deepEqual(ownRows[0].slice(1, 3), ['1', '0']);
  assert.match(await own.locator('#analytics-reviewers tbody').textContent(), /No reviews in this range/);
  assert.deepEqual(await own.locator('#analytics-days g').evaluateAll((gs) => gs
    .filter((g) => g.querySelector('rect.submitted, rect.skipped'))
    .map((g) => g.querySelector('title').textContent.trim())), [`${utcDay}: 1 submitted, 0 skipped`]);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(own.errors, []);
});

/** Asserts that the page open in `page` passes the accessibility checks of a11y.mjs. */
async function assertAccessible(page, what) {
  assert.deepEqual(await accessibilityProblems(page), [], `${what}: ${page.url()}`);
}

test('accessibility basics on the main pages: names, text alternatives, headings, unique ids, contrast, focus outline and control edges', async () => {
  const config = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>';
  const project = await api('POST', '/api/projects', { title: 'Accessible project', label_config: config });
  await api('POST', `/api/projects/${project.id}/import`, [{ text: 'one' }, { text: 'two' }]);
  const { tasks } = await api('GET', `/api/tasks?project=${project.id}`);
  await api('POST', `/api/tasks/${tasks[0].id}/annotations`, { result: [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: ['Positive'] } }] });

  const page = await newPage();
  await page.goto(`${server.base}/user/login`);
  await assertAccessible(page, 'login');
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  const paths = [
    '/projects',
    `/projects/${project.id}/data`,
    `/projects/${project.id}/label`,
    `/projects/${project.id}/review`,
    `/projects/${project.id}/dashboard`,
    '/analytics',
    '/organization',
    '/organization/settings/access',
    '/organization/settings/sessions',
    '/organization/settings/sso',
    '/user/account',
    `/projects/${project.id}/settings`,
    `/projects/${project.id}/settings/storage`,
  ];
  for (const path of paths) {
    const response = await page.goto(`${server.base}${path}`);
    assert.equal(response.status(), 200, path);
    await assertAccessible(page, path);
  }
  // The checker finds what it looks for (so that a pass means something).
  await page.evaluate(() => {
    const main = document.getElementById('main');
    main.insertAdjacentHTML('beforeend', '<input type="text" id="a11y-probe"><p id="a11y-pale">pale text</p><svg width="10" height="10"></svg><span id="a11y-probe">again</span>'
      + '<button type="button" id="a11y-pale-button">Pale</button><a href="#main" id="a11y-amber">amber focus</a>');
    // Through the CSSOM: the Content-Security-Policy refuses style attributes in markup.
    document.getElementById('a11y-pale').style.color = '#aaaaaa';
    // A pale fill without an edge (1.2:1 on white), and the old amber focus outline (2:1).
    Object.assign(document.getElementById('a11y-pale-button').style, { background: '#ffe680', border: '0', color: '#000000' });
    document.getElementById('a11y-amber').style.outline = '3px solid #f2a900';
  });
  const found = await accessibilityProblems(page);
  for (const expected of [/no accessible name: input#a11y-probe/, /contrast .*p#a11y-pale "pale text"/, /SVG without a text alternative/, /id "a11y-probe" used 2 times/,
    /boundary 1\.\d+:1 < 3:1 .*button#a11y-pale-button/, /focus outline 2\.\d+:1 < 3:1 .*a#a11y-amber/]) {
    assert.ok(found.some((p) => expected.test(p)), `${expected} in ${JSON.stringify(found)}`);
  }
  assert.deepEqual(page.errors.filter((e) => !/regionStore|innerHTML|Warning:/.test(e)), []);
});

test('a pale organization accent keeps text readable: the server derives the text colours', async () => {
  const org = (await api('GET', '/api/current-user')).active_organization;
  await api('PATCH', `/api/organizations/${org}`, { accent_color: '#ffe680' });
  try {
    const page = await newPage();
    await signIn(page, ADMIN.email, ADMIN.password);
    await page.waitForURL(/\/projects$/);
    for (const path of ['/projects', '/organization/settings/sessions', '/user/account']) {
      await page.goto(`${server.base}${path}`);
      await assertAccessible(page, `pale accent ${path}`);
    }
    // The accent is used (the buttons are filled with it), with black text on it.
    const button = page.getByRole('button', { name: 'Create a personal access token' });
    assert.deepEqual(await button.evaluate((b) => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]),
      ['rgb(255, 230, 128)', 'rgb(0, 0, 0)']);
  } finally {
    await api('PATCH', `/api/organizations/${org}`, { accent_color: '' });
  }
});

test('keyboard: Tab follows the visual order and focus is visible on the sign-in page and a form page', async () => {
  // Focus order is that of the listed controls (others, e.g. header links, may come between),
  // each later in reading order than the one before; every focused control has an outline.
  const check = async (page, expected, what) => {
    const visited = await tabOrder(page, expected.length + 30);
    const order = visited.filter((v) => expected.includes(v.id));
    assert.deepEqual(order.map((v) => v.id).slice(0, expected.length), expected, `${what}: ${JSON.stringify(visited.map((v) => v.id))}`);
    for (let i = 1; i < expected.length; i++) {
      const [a, b] = [order[i - 1], order[i]];
      assert.ok(b.top > a.top + 1 || (Math.abs(b.top - a.top) <= 1 && b.left > a.left), `${what}: ${b.id} comes after ${a.id} on the page`);
    }
    for (const v of visited) {
      assert.ok(v.focusVisible && v.outline, `${what}: the focus on ${v.id} is visible`);
    }
  };
  const page = await newPage();
  await page.goto(`${server.base}/user/login`);
  await check(page, ['Skip to content', 'email', 'password', 'Sign in', 'sso-email', 'sso-submit'], 'sign-in');
  // The skip link shows itself when focused.
  await tabOrder(page, 1);
  assert.ok(await page.evaluate(() => document.activeElement.getBoundingClientRect().left >= 0), 'the skip link is on screen when focused');

  const project = await api('POST', '/api/projects', { title: 'Keyboard project' });
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.goto(`${server.base}/projects/${project.id}/settings`);
  await check(page, ['title', 'description', 'label_config', 'expert_instruction', 'show_instruction', 'Save'], 'project settings');
});

test('organization settings: an admin saves the session policy, a bad network is refused with nothing changed, SSO secrets show as not set', async () => {
  const page = await newPage();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.waitForURL(/\/projects$/);
  await page.getByRole('link', { name: 'Organization settings' }).click();
  await page.waitForURL(/\/organization\/settings\/access$/);

  // Sessions: saved, shown back, and the API has it.
  await page.getByRole('link', { name: 'Sessions', exact: true }).click();
  await page.waitForURL(/\/organization\/settings\/sessions$/);
  await page.getByLabel(/ends this many minutes after sign-in/).fill('600');
  await page.getByLabel(/without a request/).fill('45');
  await page.getByRole('button', { name: 'Save the session policy' }).click();
  await page.waitForURL(/done=sessions/);
  assert.match(await page.locator('#settings-notice').textContent(), /saved/i);
  assert.equal(await page.getByLabel(/ends this many minutes after sign-in/).inputValue(), '600');
  assert.equal(await page.getByLabel(/without a request/).inputValue(), '45');
  const policy = await api('GET', '/api/session-policy');
  assert.deepEqual([policy.max_session_age, policy.max_time_between_activity], [600, 45]);

  // Access policy: a network that is none shows the message, keeps what was typed, saves nothing.
  const before = await api('GET', '/api/access-policy');
  await page.getByRole('link', { name: 'Access policy', exact: true }).click();
  await page.waitForURL(/\/organization\/settings\/access$/);
  await page.getByLabel(/Networks allowed to use the API/).fill('10.0.0.0/8\nnot-a-network');
  await page.getByRole('button', { name: 'Save the access policy' }).click();
  await page.locator('#settings-error').waitFor();
  assert.match(await page.locator('#settings-error').textContent(), /not-a-network/);
  assert.equal(await page.getByLabel(/Networks allowed to use the API/).inputValue(), '10.0.0.0/8\nnot-a-network');
  assert.deepEqual(await api('GET', '/api/access-policy'), before);

  // Single sign-on: off, and the LDAP service password is "not set" (never shown).
  await page.getByRole('link', { name: 'Single sign-on', exact: true }).click();
  await page.waitForURL(/\/organization\/settings\/sso$/);
  assert.match(await page.locator('#saml-status').textContent(), /^Off\./);
  assert.equal(await page.locator('#ldap-password-state').textContent(), 'not set');
  assert.equal(await page.getByLabel(/Service account password/).inputValue(), '');
  assert.equal(await page.locator('#scim-token').count(), 0, 'no SCIM token is shown');
  await assertAccessible(page, 'sso');
  assert.deepEqual(page.errors, []);
});

// Last in the file: it fills an organization of its own with more than a thousand people.
test('data manager: with more than 1,000 members the person filter searches the server instead of listing everyone', async () => {
  const r = await fetch(`${server.base}/api/admin/organizations/ui-crowd`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${INSTANCE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Crowd', owner_email: 'crowd-owner@example.com' }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const crowd = await r.json();
  const asOwner = async (method, path, body) => {
    const answer = await fetch(`${server.base}${path}`, {
      method,
      headers: { authorization: `Token ${crowd.owner_token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const manager = await asOwner('POST', '/api/users', { email: 'crowd-manager@example.com', password: 'crowd manager password', role: 'manager', first_name: 'Quentin', last_name: 'Needleman' });
  // 1,000 more people, eight requests at a time.
  const numbers = Array.from({ length: 1000 }, (_, i) => String(i).padStart(4, '0'));
  for (let i = 0; i < numbers.length; i += 8) {
    await Promise.all(numbers.slice(i, i + 8).map((n) => asOwner('POST', '/api/users', { email: `crowd-${n}@example.com`, first_name: 'Crowd', last_name: `Person ${n}` })));
  }
  const project = await asOwner('POST', '/api/projects', { title: 'Crowded project', label_config: '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>' });
  await asOwner('POST', `/api/projects/${project.id}/members`, { user: manager.id });
  await asOwner('POST', `/api/projects/${project.id}/import`, [{ text: 'crowd one' }, { text: 'crowd two' }, { text: 'crowd three' }]);
  const tasks = (await asOwner('GET', `/api/tasks?project=${project.id}`)).tasks.map((t) => t.id).sort((a, b) => a - b);
  const result = [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: ['Positive'] } }];
  await asOwner('POST', `/api/tasks/${tasks[0]}/annotations`, { result });

  const page = await newPage();
  await signIn(page, 'crowd-manager@example.com', 'crowd manager password');
  await page.waitForURL(/\/projects$/);
  await page.evaluate(async ([t, result]) => {
    const answer = await window.verity.api(`/api/tasks/${t}/annotations`, { method: 'POST', body: JSON.stringify({ result }) });
    if (!answer.ok) throw new Error(`annotating failed: ${answer.status}`);
  }, [tasks[1], result]);
  await page.goto(`${server.base}/projects/${project.id}/data`);
  // No list of everyone: the page has no option per person.
  assert.equal(await page.locator('option[value]').evaluateAll((os) => os.filter((o) => /crowd-\d+@/.test(o.textContent)).length), 0);
  assert.ok((await page.content()).length < 200_000, 'the page stays small');
  await page.getByLabel('Column 1', { exact: true }).selectOption('annotators');
  await page.getByLabel('Operator 1', { exact: true }).selectOption('contains');
  const value = page.getByLabel('Value 1', { exact: true });
  assert.equal(await value.getAttribute('list'), 'dm-people');
  // Typing asks the server; the suggestions are the matching members (value: the id).
  const suggestions = () => page.locator('#dm-people option').evaluateAll((os) => os.map((o) => [o.value, o.label]));
  await value.pressSequentially('Person 0777');
  await page.waitForFunction(() => document.querySelectorAll('#dm-people option').length === 1);
  const someone = (await asOwner('GET', '/api/users')).find((u) => u.email === 'crowd-0777@example.com');
  assert.deepEqual(await suggestions(), [[String(someone.id), 'Crowd Person 0777 (crowd-0777@example.com)']]);
  await value.fill('');
  await value.pressSequentially('needle');
  await page.waitForFunction(() => document.querySelector('#dm-people option')?.label.includes('Needleman'));
  assert.deepEqual(await suggestions(), [[String(manager.id), 'Quentin Needleman (crowd-manager@example.com)']]);
  // Choosing a suggestion puts its value, the id, in the field.
  await value.fill(String(manager.id));
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.waitForURL(/\?view=\d+$/);
  assert.match(await page.locator('#tasks caption').textContent(), /^1 task$/);
  // The manager is a reviewer of the project: the first column ticks tasks for bulk labeling.
  assert.equal(Number(await page.locator('#tasks tbody tr').first().locator('td').nth(1).textContent()), tasks[1]);
  // The saved filter shows who the id is.
  assert.equal(await page.getByLabel('Value 1', { exact: true }).inputValue(), String(manager.id));
  assert.match(await page.locator('.dm-person').first().textContent(), /Quentin Needleman \(crowd-manager@example\.com\)/);
  // Without picking a suggestion, an email typed in works too (as it does without script).
  await page.getByLabel('Value 1', { exact: true }).fill('CROWD-OWNER@example.com');
  await page.getByRole('button', { name: 'Apply filters to this tab' }).click();
  await page.locator('#tasks caption').filter({ hasText: /^1 task$/ }).waitFor();
  assert.equal(Number(await page.locator('#tasks tbody tr').first().locator('td').nth(1).textContent()), tasks[0]);
  assert.equal(await page.getByLabel('Value 1', { exact: true }).inputValue(), String(crowd.owner_id ?? (await asOwner('GET', '/api/current-user')).id));
  // An email nobody has is refused with a message, and the tab keeps its filter.
  const view = new URL(page.url()).searchParams.get('view');
  const saved = await asOwner('GET', `/api/dm/views/${view}`);
  await page.getByLabel('Value 1', { exact: true }).fill('nobody@example.com');
  await page.getByRole('button', { name: 'Apply filters to this tab' }).click();
  await page.locator('#filter-error').waitFor();
  assert.match(await page.locator('#filter-error').textContent(), /no member of this organization has the email "nobody@example\.com"/);
  assert.deepEqual((await asOwner('GET', `/api/dm/views/${view}`)).data, saved.data);
  await assertAccessible(page, 'data manager with the person search');
  assert.deepEqual(page.errors, []);
});

// The label stream in Label Studio's editor (window.LabelStudio, loaded before this module).
// Takes the next task from the API, submits or skips through the API, then swaps the next task
// into the same editor. All calls carry the session's CSRF token (window.verity.api).
const root = document.getElementById('editor');
const status = document.getElementById('label-status');
const projectId = Number(root.dataset.project);
const call = async (path, init) => {
  const r = await window.verity.api(path, init);
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  return { ok: r.ok, status: r.status, body };
};

let current = null; // the task as the API sent it (the editor's copy drops unique_lock_id)

async function nextTask() {
  const r = await call(`/api/projects/${projectId}/next`);
  if (r.ok) return r.body;
  status.textContent = r.body?.detail ?? `No task: the server answered ${r.status}.`;
  return null;
}

function show(store, task) {
  current = task;
  if (!task) {
    store.setFlags({ noTask: true });
    return;
  }
  status.textContent = `Task ${task.id}`;
  store.resetState();
  store.assignTask(task);
  store.initializeStore(task);
  const annotation = store.annotationStore.addAnnotation({ userGenerate: true });
  store.annotationStore.selectAnnotation(annotation.id);
}

async function save(store, annotation, extra = {}) {
  const r = await call(`/api/tasks/${current.id}/annotations`, {
    method: 'POST',
    body: JSON.stringify({
      result: annotation.serializeAnnotation(),
      lead_time: (Date.now() - annotation.loadedDate) / 1000,
      unique_id: current.unique_lock_id,
      ...extra,
    }),
  });
  if (!r.ok) {
    status.textContent = `Not saved: ${r.body?.detail ?? r.status}`;
    return;
  }
  annotation.updatePersonalKey(String(r.body.id));
  show(store, await nextTask());
}

const [project, me, first] = await Promise.all([
  call(`/api/projects/${projectId}`).then((r) => r.body),
  call('/api/current-user/whoami').then((r) => r.body),
  nextTask(),
]);
if (project && me) {
  new window.LabelStudio('editor', {
    config: project.label_config,
    task: first ?? { id: 0, data: {}, annotations: [], predictions: [] },
    description: project.show_instruction ? project.expert_instruction : '',
    interfaces: ['panel', 'controls', 'submit', 'update', 'topbar', 'side-column', 'edit-history',
      'infobar', 'instruction', ...(project.show_skip_button ? ['skip'] : [])],
    user: { id: me.id, pk: me.id, username: me.username, firstName: me.first_name, lastName: me.last_name },
    onLabelStudioLoad: (store) => show(store, first),
    onSubmitAnnotation: (store, annotation) => save(store, annotation),
    onSkipTask: (store, { comment } = {}) =>
      save(store, store.annotationStore.selected, { was_cancelled: true, ...(comment ? { comment } : {}) }),
    onUpdateAnnotation: (store, annotation) => call(`/api/annotations/${annotation.pk}`, {
      method: 'PATCH', body: JSON.stringify({ result: annotation.serializeAnnotation() }),
    }),
  });
}

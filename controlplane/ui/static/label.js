// Label Studio's editor (window.LabelStudio, loaded before this module) on the labeling page.
// Two modes: the label stream (the next task from the API; submit or skip, then the next one)
// and one task named by a deep link (`?task=…&annotation=…&region=…`, ADR 0044), which opens
// that task, selects the annotation and the region. All calls carry the session's CSRF token
// (window.verity.api).
const root = document.getElementById('editor');
const status = document.getElementById('label-status');
const projectId = Number(root.dataset.project);
const link = root.dataset.task
  ? { task: Number(root.dataset.task), annotation: root.dataset.annotation, region: root.dataset.region }
  : null;
const canAnnotate = root.dataset.canAnnotate === 'true';
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

async function linkedTask() {
  const r = await call(`/api/tasks/${link.task}`);
  if (r.ok) return r.body;
  status.textContent = r.body?.detail ?? `Task ${link.task}: the server answered ${r.status}.`;
  return null;
}

const load = () => (link ? linkedTask() : nextTask());

// Selects the annotation `pk` of the loaded task and in it the region `regionId`; says on the
// page what was selected (or what was not found).
function selectLinked(store, pk, regionId) {
  const annotation = store.annotationStore.annotations.find((a) => String(a.pk) === String(pk));
  if (!annotation) {
    status.textContent = `Task ${current.id}: annotation ${pk} is not in this task.`;
    return;
  }
  store.annotationStore.selectAnnotation(annotation.id);
  let said = `Task ${current.id} · annotation ${pk}`;
  if (regionId) {
    const region = annotation.regionStore.regions.find((r) => r.cleanId === regionId || r.id === regionId);
    if (region) {
      annotation.selectArea(region);
      root.dataset.selectedRegion = region.cleanId;
      said += ` · region ${regionId} selected`;
    } else {
      said += ` · region ${regionId} is not in this annotation`;
    }
  }
  status.textContent = said;
}

function show(store, task, select = link?.annotation) {
  current = task;
  if (!task) {
    store.setFlags({ noTask: true });
    return;
  }
  status.textContent = `Task ${task.id}`;
  store.resetState();
  store.assignTask(task);
  store.initializeStore(task);
  if (select) {
    selectLinked(store, select, select === link?.annotation ? link?.region : null);
  } else if (canAnnotate) {
    const annotation = store.annotationStore.addAnnotation({ userGenerate: true });
    store.annotationStore.selectAnnotation(annotation.id);
  } else if (store.annotationStore.annotations.length) {
    store.annotationStore.selectAnnotation(store.annotationStore.annotations[0].id);
  }
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
  // In the stream the next task follows; a linked task is shown again with the saved annotation.
  show(store, await load(), link ? r.body.id : undefined);
}

const [project, me, first] = await Promise.all([
  call(`/api/projects/${projectId}`).then((r) => r.body),
  call('/api/current-user/whoami').then((r) => r.body),
  load(),
]);
if (project && me) {
  const annotations = link
    ? ['annotations:menu', 'annotations:tabs', 'annotations:current', 'annotations:history',
      ...(canAnnotate ? ['annotations:add-new'] : [])]
    : [];
  new window.LabelStudio('editor', {
    config: project.label_config,
    task: first ?? { id: 0, data: {}, annotations: [], predictions: [] },
    description: project.show_instruction ? project.expert_instruction : '',
    interfaces: ['panel', 'controls', 'topbar', 'side-column', 'edit-history', 'infobar', 'instruction',
      ...(canAnnotate ? ['submit', 'update'] : []), ...annotations,
      ...(project.show_skip_button && !link ? ['skip'] : [])],
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

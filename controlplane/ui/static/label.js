// Label Studio's editor (window.LabelStudio, loaded before this module) on the labeling page.
// Two modes: the label stream (the next task from the API; submit or skip, then the next one)
// and one task named by a deep link (`?task=…&annotation=…&region=…`, ADR 0044), which opens
// that task, selects the annotation and the region. All calls carry the session's CSRF token
// (window.verity.api).
const root = document.getElementById('editor');
const status = document.getElementById('label-status');
const scores = document.getElementById('label-predictions');
// The page's Postpone (label stream only): the pinned editor 1.4.0 has no `postpone` interface
// of its own, so the page offers it beside the editor, as Label Studio's does in its editor.
const actions = document.getElementById('label-actions');
const postponeButton = document.getElementById('label-postpone');
let settings = {}; // the project, once loaded
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
let me = null; // the signed-in user

// Comments on the selected annotation (ADR 0051), through /api/comments. The pinned editor
// (1.4.0) has no comment panel of its own, so this page shows one beside it: the list, a new
// comment (optionally about the region selected in the editor), resolve/reopen and delete. The
// server decides who may do what; a refusal is said in the panel.
const panel = document.getElementById('comments');
const list = document.getElementById('comment-list');
const commentForm = document.getElementById('comment-form');
const commentText = document.getElementById('comment-text');
const aboutRegion = document.getElementById('comment-region');
const commentStatus = document.getElementById('comment-status');
let commented = null; // { store, pk } of the annotation the panel shows
let editorStore = null;

// The region selected in the editor's selected annotation, as a comment's region_ref.
function selectedRegionRef(annotation) {
  const region = annotation?.highlightedNode
    ?? annotation?.regionStore?.regions?.find((r) => r.selected || r.highlighted);
  if (!region) return null;
  const control = region.labeling?.from_name?.name ?? region.results?.[0]?.from_name?.name
    ?? region.from_name?.name ?? region.object?.name ?? '';
  return { regionId: region.cleanId ?? region.id, controlName: control };
}

async function showComments(store) {
  const pk = store?.annotationStore?.selected?.pk;
  commented = pk ? { store, pk } : null;
  panel.hidden = !commented;
  list.replaceChildren();
  if (!commented) return;
  const r = await call(`/api/comments?annotation=${pk}`);
  if (!r.ok) {
    commentStatus.textContent = `Comments not loaded: ${r.body?.detail ?? r.status}`;
    return;
  }
  for (const c of r.body) list.append(commentItem(c));
  root.dataset.comments = String(r.body.length);
}

function commentItem(c) {
  const li = document.createElement('li');
  li.dataset.id = String(c.id);
  li.className = c.is_resolved ? 'resolved' : 'open';
  const text = document.createElement('q');
  text.textContent = c.text;
  const about = c.region_ref?.regionId ? ` (region ${c.region_ref.regionId})` : '';
  li.append(text, ` — user ${c.created_by ?? 'deleted'}${about}${c.is_resolved ? ', resolved' : ''} `);
  const button = (label, action) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary';
    b.textContent = label;
    b.addEventListener('click', action);
    li.append(b, ' ');
  };
  button(c.is_resolved ? 'Reopen' : 'Resolve', () => changeComment(c.id, 'PATCH', { is_resolved: !c.is_resolved }));
  if (me && c.created_by === me.id) button('Delete', () => changeComment(c.id, 'DELETE'));
  return li;
}

async function changeComment(id, method, body) {
  const r = await call(`/api/comments/${id}`, { method, ...(body ? { body: JSON.stringify(body) } : {}) });
  commentStatus.textContent = r.ok ? (method === 'DELETE' ? 'Comment deleted' : 'Comment changed')
    : `Not changed: ${r.body?.detail ?? r.status}`;
  await showComments(commented?.store);
}

commentForm?.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!commented) return;
  const annotation = commented.store.annotationStore.selected;
  const regionRef = aboutRegion.checked ? selectedRegionRef(annotation) : null;
  if (aboutRegion.checked && !regionRef) {
    commentStatus.textContent = 'Select a region in the editor first, or untick "About the selected region".';
    return;
  }
  const r = await call('/api/comments', {
    method: 'POST',
    body: JSON.stringify({ annotation: Number(commented.pk), text: commentText.value, ...(regionRef ? { region_ref: regionRef } : {}) }),
  });
  if (!r.ok) {
    commentStatus.textContent = `Comment not added: ${r.body?.validation_errors ? JSON.stringify(r.body.validation_errors) : r.body?.detail ?? r.status}`;
    return;
  }
  commentText.value = '';
  aboutRegion.checked = false;
  commentStatus.textContent = 'Comment added';
  await showComments(commented.store);
});

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
  if (canAnnotate && restoreDraft(annotation, current, pk)) said += ' · draft restored';
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
  restored.clear();
  // Postpone is offered for a task of the stream unless it came back postponed already.
  if (actions) actions.hidden = !task || task.allow_postpone === false;
  store.toggleInterface?.('postpone', Boolean(task) && task.allow_postpone !== false);
  if (!task) {
    store.setFlags({ noTask: true });
    showComments(null);
    return;
  }
  status.textContent = `Task ${task.id}`;
  showScores(task);
  // Revealed on request only: the annotator starts from nothing, and the predictions are not
  // put into the editor (their scores stay listed above it).
  const reveal = settings.reveal_preannotations_interactively && canAnnotate && !select;
  const shown = reveal ? { ...task, predictions: [] } : task;
  store.resetState();
  store.assignTask(shown);
  store.initializeStore(shown);
  if (select) {
    selectLinked(store, select, select === link?.annotation ? link?.region : null);
  } else if (canAnnotate) {
    // Pre-annotation: the annotator starts from the task's (first) prediction, as Label Studio
    // does, unless the project reveals predictions only on request
    // (reveal_preannotations_interactively, above) or a draft exists.
    const prediction = store.annotationStore.predictions?.[0];
    const hasDraft = (task.drafts ?? []).some((d) => d.annotation === null);
    const annotation = prediction && !hasDraft
      ? store.annotationStore.addAnnotationFromPrediction(prediction)
      : store.annotationStore.addAnnotation({ userGenerate: true });
    store.annotationStore.selectAnnotation(annotation.id);
    if (restoreDraft(annotation, task)) status.textContent = `Task ${task.id} · draft restored`;
  } else if (store.annotationStore.annotations.length) {
    store.annotationStore.selectAnnotation(store.annotationStore.annotations[0].id);
  }
  showComments(store);
}

// The task's predictions (the API sends those of the project's model version when one is set)
// with their model version and score, beside the editor.
function showScores(task) {
  const predictions = task.predictions ?? [];
  scores.hidden = predictions.length === 0;
  scores.textContent = predictions.length === 0 ? '' : `Predictions: ${predictions
    .map((p) => `${p.model_version || 'no model version'}, score ${typeof p.score === 'number' ? p.score.toFixed(2) : 'none'}`)
    .join('; ')}`;
}

// The caller's latest draft of a new annotation of the task (`pk` null), or of the existing
// annotation `pk` (the API nests only the caller's drafts, with `annotation` set for the latter),
// put back into the editor's annotation so the work continues where it stopped; once per
// annotation while the task is shown. Answers whether the annotation has its draft back.
const restored = new Set();
function restoreDraft(annotation, task, pk = null) {
  const of = pk === null ? null : Number(pk);
  const draft = (task?.drafts ?? []).filter((d) => (d.annotation ?? null) === of).at(-1);
  if (!draft) return false;
  // Selecting the annotation may have put it back already (onSelectAnnotation).
  if (restored.has(annotation.id)) return true;
  restored.add(annotation.id);
  annotation.addVersions({ draft: draft.result });
  annotation.deserializeResults(draft.result);
  annotation.updateObjects();
  annotation.setDraftId(draft.id);
  return true;
}

// An existing annotation selected in the editor (its tabs): the caller's draft of it comes back.
function restoreSelected(store) {
  const annotation = store?.annotationStore?.selected;
  if (!canAnnotate || !current || !annotation?.pk) return;
  if (restoreDraft(annotation, current, annotation.pk)) {
    status.textContent = `Task ${current.id} · annotation ${annotation.pk} · draft restored`;
  }
}

// The editor's autosave (it calls this a few seconds after the result changed): the first save
// creates the draft, later ones change it.
async function saveDraft(annotation) {
  if (!current) return;
  const body = JSON.stringify({
    result: annotation.versions.draft ?? annotation.serializeAnnotation(),
    lead_time: (Date.now() - annotation.loadedDate) / 1000,
  });
  const task = current.id;
  const r = annotation.draftId
    ? await call(`/api/drafts/${annotation.draftId}`, { method: 'PATCH', body })
    : await call(annotation.pk ? `/api/tasks/${task}/annotations/${annotation.pk}/drafts` : `/api/tasks/${task}/drafts`,
      { method: 'POST', body });
  if (r.ok) {
    annotation.setDraftId(r.body.id);
    root.dataset.draft = String(r.body.id);
  } else {
    status.textContent = `Draft not saved: ${r.body?.detail ?? r.status}`;
  }
}

// Postpone (the page's button, or the editor's own in an editor that has one): the work so far
// is saved as a draft with was_postponed, which puts the task at the end of the caller's stream
// (ADR 0003 addendum), and the next task is shown.
async function postpone(store) {
  const annotation = store?.annotationStore?.selected;
  if (!current || !annotation) return;
  annotation.pauseAutosave?.();
  const body = JSON.stringify({
    result: annotation.serializeAnnotation(),
    lead_time: (Date.now() - annotation.loadedDate) / 1000,
    was_postponed: true,
  });
  const r = annotation.draftId
    ? await call(`/api/drafts/${annotation.draftId}`, { method: 'PATCH', body })
    : await call(`/api/tasks/${current.id}/drafts`, { method: 'POST', body });
  if (!r.ok) {
    status.textContent = `Not postponed: ${r.body?.detail ?? r.status}`;
    return;
  }
  root.dataset.postponed = String(current.id);
  show(store, await load());
}

postponeButton?.addEventListener('click', () => postpone(editorStore));

async function save(store, annotation, extra = {}) {
  // Submitting turns the draft into the annotation (the server deletes it); no autosave after.
  annotation.pauseAutosave?.();
  const r = await call(`/api/tasks/${current.id}/annotations`, {
    method: 'POST',
    body: JSON.stringify({
      result: annotation.serializeAnnotation(),
      lead_time: (Date.now() - annotation.loadedDate) / 1000,
      unique_id: current.unique_lock_id,
      ...(annotation.draftId ? { draft_id: annotation.draftId } : {}),
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

const [project, whoami, first] = await Promise.all([
  call(`/api/projects/${projectId}`).then((r) => r.body),
  call('/api/current-user/whoami').then((r) => r.body),
  load(),
]);
me = whoami;
if (project && me) {
  settings = project;
  const annotations = link
    ? ['annotations:menu', 'annotations:tabs', 'annotations:current', 'annotations:history',
      ...(canAnnotate ? ['annotations:add-new'] : [])]
    : [];
  new window.LabelStudio('editor', {
    config: project.label_config,
    // The editor starts bare; show() then puts the task in with what it should start from.
    task: first ? { ...first, annotations: [], predictions: [] } : { id: 0, data: {}, annotations: [], predictions: [] },
    description: project.show_instruction ? project.expert_instruction : '',
    interfaces: ['panel', 'controls', 'topbar', 'side-column', 'edit-history', 'infobar', 'instruction',
      ...(canAnnotate ? ['submit', 'update'] : []), ...annotations,
      ...(project.show_skip_button && !link ? ['skip'] : []),
      ...(canAnnotate && !link && first?.allow_postpone !== false ? ['postpone'] : [])],
    user: { id: me.id, pk: me.id, username: me.username, firstName: me.first_name, lastName: me.last_name },
    onLabelStudioLoad: (store) => {
      editorStore = store;
      show(store, first);
    },
    onSubmitAnnotation: (store, annotation) => save(store, annotation),
    onSkipTask: (store, { comment } = {}) =>
      save(store, store.annotationStore.selected, { was_cancelled: true, ...(comment ? { comment } : {}) }),
    // An editor with its own Postpone sends the draft with was_postponed, then asks for the
    // next task; the page does both in postpone().
    onSubmitDraft: (store, annotation, params = {}) =>
      (params?.was_postponed ? postpone(store) : saveDraft(annotation)),
    onNextTask: () => {},
    onSelectAnnotation: () => {
      restoreSelected(editorStore);
      showComments(editorStore);
    },
    onUpdateAnnotation: (store, annotation) => call(`/api/annotations/${annotation.pk}`, {
      method: 'PATCH', body: JSON.stringify({ result: annotation.serializeAnnotation() }),
    }),
  });
}

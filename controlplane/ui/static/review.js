// The review page's editor (window.LabelStudio, loaded before this module): shows the annotation
// under review; "Fix + Accept" puts the editor's current result into the review form, which the
// server handles like POST /api/annotation-reviews. Accept and Reject work without this file.
const root = document.getElementById('editor');
const form = document.getElementById('review-form');
const status = document.getElementById('review-status');
let store = null;

if (root && form && window.LabelStudio) {
  const task = JSON.parse(root.dataset.task);
  const userId = Number(root.dataset.user);
  new window.LabelStudio('editor', {
    config: root.dataset.config,
    task: { id: task.id, data: task.data, annotations: task.annotations ?? [], predictions: [] },
    interfaces: ['panel', 'topbar', 'side-column', 'edit-history', 'infobar', 'annotations:current'],
    user: { id: userId, pk: userId, username: root.dataset.username },
    onLabelStudioLoad: (ls) => {
      store = ls;
      const first = ls.annotationStore.annotations[0];
      if (first) ls.annotationStore.selectAnnotation(first.id);
      status.textContent = `Annotation ${task.annotations?.[0]?.id ?? ''} in the editor`;
    },
  });
  form.addEventListener('submit', (event) => {
    if (event.submitter?.value !== 'fix') return;
    const annotation = store?.annotationStore.selected;
    if (!annotation) {
      event.preventDefault();
      status.textContent = 'The editor has not loaded the annotation yet; try again in a moment.';
      return;
    }
    form.elements.result.value = JSON.stringify(annotation.serializeAnnotation());
  });
} else if (status) {
  status.textContent = 'The editor could not be loaded; Accept and Reject still work.';
}

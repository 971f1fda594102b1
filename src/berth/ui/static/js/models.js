// The Model Hub screen: filters and pages of the model list, importing a model, and
// deleting a model or one of its checkpoints. The server renders the list. Filters and page links fetch a fresh copy
// of it and put their query into the address bar, so a reload shows the same list.

import {
  announce,
  api,
  clearErrors,
  fillDialog,
  goToSignIn,
  localizeTimes,
  openDialog,
  sentence,
  showAlert,
  showMessage,
  submitting,
} from "./core.js";

const SEARCH_DELAY_MS = 250;
const IMPORT_PROGRESS =
  "Importing the model. Berth checks, measures and copies the files, which takes a while for large models.";

const filters = document.getElementById("model-filters");
let listRequest = 0;
let searchTimer = 0;

/** Return the query string of the filter form, leaving out empty and default values. */
function filterQuery() {
  const query = new URLSearchParams();
  for (const [name, value] of new FormData(filters)) {
    const field = filters.elements[name];
    if (value && value !== field.dataset.default) query.set(name, value);
  }
  return query.toString();
}

/**
 * Replace the model list with the server's list for `query` (a query string without
 * "?") and put that query into the address. Returns whether the list was replaced.
 */
async function loadList(query) {
  const request = ++listRequest;
  document.getElementById("model-list").setAttribute("aria-busy", "true");

  let response;
  let html;
  try {
    response = await fetch(`${filters.dataset.fragmentUrl}?${query}`, { headers: { Accept: "text/html" } });
    html = await response.text();
  } catch {
    html = null;
  }
  if (request !== listRequest) return false; // a newer request replaces the list

  const list = document.getElementById("model-list");
  list.removeAttribute("aria-busy");
  if (html === null) {
    showAlert("Berth did not respond. Try again in a moment.");
    return false;
  }
  if (response.status === 401) {
    goToSignIn();
    return false;
  }
  if (!response.ok) {
    showAlert(sentence(`The models could not be listed: ${html}`));
    return false;
  }

  const template = document.createElement("template");
  template.innerHTML = html.trim();
  const fresh = template.content.firstElementChild;
  list.replaceWith(fresh);
  localizeTimes(fresh);
  history.replaceState(null, "", query ? `${location.pathname}?${query}` : location.pathname);
  announce(fresh.querySelector("#model-count").textContent.replace(/\s+/g, " ").trim());
  return true;
}

filters.addEventListener("change", (event) => {
  if (event.target.name !== "search") loadList(filterQuery());
});
filters.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  loadList(filterQuery());
});
filters.elements.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadList(filterQuery()), SEARCH_DELAY_MS);
});
filters.querySelector("[data-clear-filters]").addEventListener("click", (event) => {
  event.preventDefault();
  clearFilters();
  loadList(filterQuery());
});

/** Set every filter to "Any" and empty the search; the page size stays. */
function clearFilters() {
  filters.querySelectorAll("select").forEach((select) => {
    if (select.name !== "per_page") select.value = "";
  });
  filters.elements.search.value = "";
}

// Page links work without the script too. With it, only the list is replaced, and the
// focus moves to the count at the top of the new page.
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("#model-list a[data-page-link]") : null;
  if (!link) return;
  event.preventDefault();
  loadList(new URL(link.href).search.slice(1)).then((loaded) => {
    if (loaded) document.getElementById("model-count").focus();
  });
});

// Import a model. The form keeps its values until an import succeeds, also when the
// dialog is closed and opened again.

const importDialog = document.getElementById("model-import-dialog");

if (importDialog) {
  const form = document.getElementById("model-import-form");
  const progress = document.getElementById("model-import-progress");

  const openImport = document.querySelector("[data-open-import]");
  openImport.addEventListener("click", () => {
    openDialog(importDialog);
    form.elements.path.focus();
  });
  openImport.disabled = false;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (form.hasAttribute("aria-busy")) return;
    const body = {
      path: form.elements.path.value,
      name: form.elements.name.value,
      checkpoint: form.elements.checkpoint.value,
      description: form.elements.description.value,
      sharing: form.elements.sharing.value,
      is_base: form.elements.is_base.checked,
      link: form.elements.link.checked,
    };
    if (form.elements.ml_app.value) body.ml_app = form.elements.ml_app.value;
    progress.textContent = IMPORT_PROGRESS;
    submitting(form, async () => {
      let model;
      try {
        model = await api("POST", "/models/import", body);
      } catch (error) {
        // The person may have closed the dialog while the import ran.
        if (!importDialog.open) showAlert(error.message);
        throw error;
      }
      importDialog.close();
      form.reset();
      clearErrors(form);
      await showImported(model);
    }).finally(() => {
      progress.textContent = "";
    });
  });
}

/** Announce the imported model and list it alone, with the focus on its name. */
async function showImported(model) {
  const checkpoint = model.checkpoints[model.checkpoints.length - 1];
  const message =
    model.checkpoints.length > 1
      ? `Checkpoint ${checkpoint.name} was added to model ${model.name}.`
      : `Model ${model.name} was imported with checkpoint ${checkpoint.name}.`;
  showMessage(message);
  clearFilters();
  filters.elements.search.value = model.name;
  if (await loadList(filterQuery())) {
    document.getElementById(`model-${model.id}-name`)?.focus();
  }
}

// Delete a model. The API rejects this while an endpoint uses the model, and its
// message, which names those endpoints, appears in the dialog.

const deleteDialog = document.getElementById("model-delete-dialog");
const deleteForm = document.getElementById("model-delete-form");
let deleting = null;

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest('[data-model-action="delete"]') : null;
  if (!button) return;
  deleting = JSON.parse(button.closest("[data-model]").dataset.model);
  fillDialog(deleteDialog, deleting);
  openDialog(deleteDialog);
});

deleteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(deleteForm, async () => {
    const model = deleting;
    await api("DELETE", `/models/${model.id}`);
    deleteDialog.close();
    showMessage(`Model ${model.name} was deleted from the Model Hub.`);
    await loadList(location.search.slice(1));
    document.getElementById("model-count").focus();
  });
});

// Delete one checkpoint of a model. The API rejects this while an endpoint is set to the
// checkpoint or old instances of a rolling update still run on it, and for the model's
// only checkpoint. Its message appears in the dialog.

const checkpointDialog = document.getElementById("checkpoint-delete-dialog");
const checkpointForm = document.getElementById("checkpoint-delete-form");
let deletingCheckpoint = null;

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest('[data-checkpoint-action="delete"]') : null;
  if (!button) return;
  const model = JSON.parse(button.closest("[data-model]").dataset.model);
  const checkpoint = JSON.parse(button.closest("[data-checkpoint]").dataset.checkpoint);
  deletingCheckpoint = { model, checkpoint };
  fillDialog(checkpointDialog, { model: model.name, checkpoint: checkpoint.name });
  openDialog(checkpointDialog);
});

checkpointForm.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(checkpointForm, async () => {
    const { model, checkpoint } = deletingCheckpoint;
    await api("DELETE", `/models/${model.id}/checkpoints/${checkpoint.id}`);
    checkpointDialog.close();
    showMessage(`Checkpoint ${checkpoint.name} was deleted from model ${model.name}.`);
    if (await loadList(location.search.slice(1))) {
      (document.getElementById(`model-${model.id}-name`) || document.getElementById("model-count")).focus();
    }
  });
});

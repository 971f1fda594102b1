// The projects list and the project window: create a project and open it, and edit
// (rename, describe) or delete a project of the list's rows or the project of the window.

import {
  ApiError,
  UI,
  api,
  fillDialog,
  nameProblem,
  openDialog,
  showError,
  showMessageNext,
  submitting,
  throwFieldErrors,
} from "./core.js";

// Create a project from the projects list.

const addForm = document.getElementById("project-add-form");

addForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(addForm, async () => {
    const body = { name: addForm.elements.name.value, description: addForm.elements.description.value };
    const project = await api("POST", "/projects", body);
    showMessageNext(`Project ${project.name} was created.`);
    location.assign(`${UI}/projects/${project.id}`);
  });
});

// Edit and delete a project. The action buttons sit in an element whose data-project
// contains the project: a row of the projects list or the head of the project window. The
// pages offer them only to those who may change the project, and the delete only for a
// project other than the default one. The API checks both again.

const editDialog = document.getElementById("project-edit-dialog");
const deleteDialog = document.getElementById("project-delete-dialog");
// The project whose dialog is open.
let project = null;

/** Write the project's current name and description into the edit form. */
function fillEditForm(form) {
  fillDialog(editDialog, project);
  // The default project keeps its name, so its dialog shows the name without a field.
  form.querySelector("[data-when-renamable]").hidden = project.is_default;
  form.querySelector("[data-when-default]").hidden = !project.is_default;
  form.elements.name.value = project.name;
  form.elements.description.value = project.description;
}

/** Read the project from the API into `project`, so the next Save sends its version. */
async function reloadProject() {
  const current = await api("GET", `/projects/${project.id}`);
  Object.assign(project, current);
  return current;
}

async function openEditDialog() {
  const form = editDialog.querySelector("form");
  // The page may be older than the project, so the dialog starts from a fresh read.
  // When that read fails, the dialog opens with the page's values and shows the error.
  let loadError = null;
  try {
    await reloadProject();
  } catch (error) {
    loadError = error;
  }
  form.reset();
  fillEditForm(form);
  openDialog(editDialog);
  if (loadError) showError(form, loadError);
  (project.is_default ? form.elements.description : form.elements.name).focus();
}

/** Describe how `current` differs from `before` in name and description, in sentences. */
function describeChange(before, current) {
  const changes = [];
  if (current.name !== before.name) changes.push(`name is now "${current.name}"`);
  if (current.description !== before.description) {
    changes.push(current.description ? `description is now "${current.description}"` : "description is now empty");
  }
  if (changes.length === 0) {
    return "While you edited this project, someone else saved it with the same name and description.";
  }
  return `While you edited this project, someone else changed it. Its ${changes.join(" and its ")}.`;
}

if (editDialog) {
  const form = editDialog.querySelector("form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      // The default project's dialog shows no name field, so its name stays as it is.
      const nameInput = project.is_default ? null : form.elements.name;
      if (nameInput) {
        const problem = nameProblem(nameInput.value);
        throwFieldErrors(problem ? [{ field: "name", message: problem }] : []);
      }
      // The version makes the API reject the change when someone else changed the
      // project after the dialog read it.
      const body = { description: form.elements.description.value, version: project.version };
      if (nameInput) body.name = nameInput.value.trim();
      let updated;
      try {
        updated = await api("PATCH", `/projects/${project.id}`, body);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409 && error.field === "version")) throw error;
        // The fields keep the user's text. The dialog takes the new version, so the
        // next Save applies that text over the other change.
        const before = { name: project.name, description: project.description };
        const current = await reloadProject();
        throw new ApiError(
          409,
          `${describeChange(before, current)} Save again to apply your edit over it, or Cancel to keep it.`,
        );
      }
      const message =
        updated.name === project.name
          ? `Project ${updated.name} was updated.`
          : `Project ${project.name} was renamed to ${updated.name}.`;
      showMessageNext(message);
      location.reload();
    });
  });
}

/** Return the number of endpoints that keep the project from being deleted. */
function blockingEndpoints() {
  // The project window's endpoints list refreshes itself, so its count is newer than
  // the one that the page was rendered with.
  const endpoints = document.getElementById("project-endpoints");
  return Number(endpoints ? endpoints.dataset.blockingEndpoints : project.blocking_endpoints || 0);
}

function openDeleteDialog() {
  const count = blockingEndpoints();
  fillDialog(deleteDialog, { ...project, endpoints: `${count} endpoint${count === 1 ? "" : "s"}` });
  deleteDialog.querySelectorAll("[data-when-empty]").forEach((element) => {
    element.hidden = count > 0;
  });
  deleteDialog.querySelectorAll("[data-when-not-empty]").forEach((element) => {
    element.hidden = count === 0;
  });
  openDialog(deleteDialog);
}

if (deleteDialog) {
  const form = deleteDialog.querySelector("form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      // The API rejects the delete with 409 when endpoints were added since the dialog
      // opened. Its message then shows in the dialog.
      await api("DELETE", `/projects/${project.id}`);
      showMessageNext(`Project ${project.name} was deleted.`);
      location.assign(`${UI}/projects`);
    });
  });
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-project-action]") : null;
  if (!button) return;
  project = JSON.parse(button.closest("[data-project]").dataset.project);
  if (button.dataset.projectAction === "edit") openEditDialog();
  else if (button.dataset.projectAction === "delete") openDeleteDialog();
});

// The API keys table of the endpoint window: add a key, edit its description, revoke it.
// Each change reloads the page, so the table and the playground's key list agree.

import { ApiError, api, fillDialog, openDialog, showMessageNext, submitting } from "./core.js";

const addForm = document.getElementById("key-add-form");
const editDialog = document.getElementById("key-edit-dialog");
const revokeDialog = document.getElementById("key-revoke-dialog");
let chosenKey = null;

function keysPath(form) {
  return `/endpoints/${form.dataset.endpointId}/keys`;
}

function description(form) {
  const text = form.elements.description.value.trim();
  if (!text) throw new ApiError(0, "Enter a description, so that people can tell the keys apart.", "description");
  return text;
}

addForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(addForm, async () => {
    const key = await api("POST", keysPath(addForm), { description: description(addForm) });
    showMessageNext(`Key "${key.description}" was added.`);
    location.reload();
  });
});

const editForm = document.getElementById("key-edit-form");
editForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(editForm, async () => {
    const key = await api("PATCH", `${keysPath(editForm)}/${chosenKey.id}`, { description: description(editForm) });
    showMessageNext(`The key description is now "${key.description}".`);
    location.reload();
  });
});

const revokeForm = document.getElementById("key-revoke-form");
revokeForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(revokeForm, async () => {
    await api("POST", `${keysPath(revokeForm)}/${chosenKey.id}/revoke`);
    showMessageNext(`Key "${chosenKey.description}" was revoked; requests with it are rejected from now on.`);
    location.reload();
  });
});

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-key-action]") : null;
  if (!button) return;
  chosenKey = JSON.parse(button.closest("[data-key]").dataset.key);
  if (button.dataset.keyAction === "edit") {
    fillDialog(editDialog, chosenKey);
    editForm.elements.description.value = chosenKey.description;
    openDialog(editDialog);
    editForm.elements.description.select();
  } else if (button.dataset.keyAction === "revoke") {
    fillDialog(revokeDialog, chosenKey);
    openDialog(revokeDialog);
  }
});

document.querySelector('[data-open-dialog="key-add-dialog"]')?.addEventListener("click", () => {
  addForm.reset();
});

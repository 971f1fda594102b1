// Endpoints on the project window and the endpoint window: the add and update dialogs
// with their model picker and Model Hub browser, and stop, restart and delete.

import {
  ApiError,
  UI,
  api,
  fillDialog,
  nameProblem,
  openDialog,
  refreshAllParts,
  showAlert,
  showMessage,
  showMessageNext,
  submitting,
  throwFieldErrors,
} from "./core.js";
import { fillSettings, readSettings, showRolloutNote, showSettings, wireSettings } from "./runtime_settings.js";

const HUB_CHOICE = "hub:browse";
const SEARCH_DELAY_MS = 250;

// The model picker: a select with the groups My models, Shared models and Berth models,
// and an entry that opens the Model Hub browser.

/** Show only the picker's models of `mlApp` (all when empty); clear a hidden choice. */
function limitPickerToApp(picker, mlApp) {
  picker.querySelectorAll("option[data-ml-app]").forEach((option) => {
    const hide = Boolean(mlApp) && option.dataset.mlApp !== mlApp;
    option.hidden = hide;
    option.disabled = hide;
  });
  if (picker.selectedOptions[0]?.disabled) picker.value = "";
  picker.dataset.previous = picker.value;
  showCheckpoints(picker);
}

/** Choose `model` in the picker, and its checkpoint `checkpointId` (the default when null). */
function choosePickerModel(picker, model, checkpointId = null) {
  let option = [...picker.options].find((candidate) => candidate.value === model.id);
  if (!option) {
    // The hub lists models beyond the picker's groups; keep such a choice in a group of its own.
    const group = document.createElement("optgroup");
    group.label = picker.dataset.hubGroupLabel;
    option = new Option(model.name, model.id);
    option.dataset.mlApp = model.mlApp;
    option.dataset.checkpoints = JSON.stringify(model.checkpoints || []);
    group.append(option);
    picker.append(group);
  }
  option.hidden = false;
  option.disabled = false;
  picker.value = model.id;
  picker.dataset.previous = model.id;
  showCheckpoints(picker, checkpointId);
}

// The checkpoint choice under the picker appears for a model with several checkpoints.
// Checkpoints come oldest first, and the last is the one that the API gives an endpoint
// that names only the model, so it is chosen unless `checkpointId` names another.

function checkpointSelect(picker) {
  return document.getElementById(picker.dataset.checkpointSelect);
}

function showCheckpoints(picker, checkpointId = null) {
  const select = checkpointSelect(picker);
  const field = select.closest("[data-checkpoint-field]");
  const checkpoints = JSON.parse(picker.selectedOptions[0]?.dataset.checkpoints || "[]");
  if (checkpoints.length < 2) {
    select.replaceChildren();
    field.hidden = true;
    return;
  }
  const latest = checkpoints[checkpoints.length - 1];
  select.replaceChildren(
    ...checkpoints.map((checkpoint) => {
      const created = new Date(checkpoint.created_at).toLocaleString(undefined, { dateStyle: "medium" });
      const name = checkpoint === latest ? `${checkpoint.name} (default)` : checkpoint.name;
      return new Option(`${name} · ${checkpoint.format} · created ${created}`, checkpoint.id);
    }),
  );
  const known = checkpoints.some((checkpoint) => checkpoint.id === checkpointId);
  select.value = known ? checkpointId : latest.id;
  field.hidden = false;
}

/** Return the format of the checkpoint that the picker's choice deploys, or "" when unknown. */
function checkpointFormat(picker) {
  const checkpoints = JSON.parse(picker.selectedOptions[0]?.dataset.checkpoints || "[]");
  const chosenId = checkpointSelect(picker).value;
  const chosen = checkpoints.find((checkpoint) => checkpoint.id === chosenId) || checkpoints[checkpoints.length - 1];
  return chosen?.format || "";
}

/** Return the picker's choice as the API's model reference: "MODEL" or "MODEL:CHECKPOINT". */
function modelReference(picker) {
  const select = checkpointSelect(picker);
  return select.value ? `${picker.value}:${select.value}` : picker.value;
}

/** Make the picker's hub entry open the Model Hub browser; `onChoice` runs for every choice. */
function wirePicker(picker, { mlAppOf, onChoice = () => {} }) {
  picker.dataset.previous = picker.value;
  picker.addEventListener("change", () => {
    if (picker.value !== HUB_CHOICE) {
      picker.dataset.previous = picker.value;
      showCheckpoints(picker);
      const option = picker.selectedOptions[0];
      if (option?.dataset.mlApp) onChoice({ id: option.value, name: option.dataset.name, mlApp: option.dataset.mlApp });
      return;
    }
    picker.value = picker.dataset.previous || "";
    openModelHub(picker, mlAppOf(), onChoice);
  });
}

// The Model Hub browser, filled from the server's list of models that match the filters.

const hubDialog = document.getElementById("model-hub-dialog");
const hubFilters = document.getElementById("model-hub-filters");
const hubResults = document.getElementById("model-hub-results");
let hubPicker = null;
let hubOnUse = null;
let hubSearchTimer = 0;
let hubRequest = 0;

async function loadHubResults() {
  const request = ++hubRequest;
  const query = new URLSearchParams(new FormData(hubFilters));
  hubResults.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(`${hubFilters.dataset.url}?${query}`, { headers: { Accept: "text/html" } });
    const text = await response.text();
    if (request !== hubRequest) return;
    if (response.ok) {
      // Keep the person's choice when the list is refreshed and still shows that model.
      const chosen = hubResults.querySelector('input[name="hub-model"]:checked')?.value;
      hubResults.innerHTML = text;
      const again = chosen && hubResults.querySelector(`input[name="hub-model"][value="${CSS.escape(chosen)}"]`);
      if (again && !again.disabled) again.checked = true;
    } else {
      hubResults.textContent = `The Model Hub could not be listed: ${text}`;
    }
  } catch {
    if (request === hubRequest) hubResults.textContent = "Berth did not respond. Try again in a moment.";
  } finally {
    if (request === hubRequest) hubResults.removeAttribute("aria-busy");
  }
}

function openModelHub(picker, mlApp, onUse = null) {
  hubPicker = picker;
  hubOnUse = onUse;
  hubFilters.reset();
  hubFilters.elements.ml_app.value = mlApp || "";
  hubResults.textContent = "";
  openDialog(hubDialog);
  loadHubResults();
}

if (hubDialog) {
  hubFilters.addEventListener("change", loadHubResults);
  hubFilters.addEventListener("submit", (event) => {
    event.preventDefault();
    loadHubResults();
  });
  hubFilters.elements.search.addEventListener("input", () => {
    clearTimeout(hubSearchTimer);
    hubSearchTimer = setTimeout(loadHubResults, SEARCH_DELAY_MS);
  });
  hubDialog.querySelector("[data-use-model]").addEventListener("click", () => {
    const chosen = hubResults.querySelector('input[name="hub-model"]:checked');
    const slot = hubDialog.querySelector('[data-error-for="form"]');
    if (!chosen) {
      slot.textContent = "Choose a model in the list first.";
      return;
    }
    const model = {
      id: chosen.value,
      name: chosen.dataset.name,
      mlApp: chosen.dataset.mlApp,
      checkpoints: JSON.parse(chosen.dataset.checkpoints || "[]"),
    };
    choosePickerModel(hubPicker, model);
    if (hubOnUse) hubOnUse(model);
    hubDialog.close();
    hubPicker.focus();
  });
}

// Add an endpoint.

const addDialog = document.getElementById("add-endpoint-dialog");

if (addDialog) {
  const form = document.getElementById("add-endpoint-form");
  const picker = form.elements.model;
  const appFilter = form.elements.ml_app;
  const settings = form.querySelector("[data-runtime-settings]");
  // The settings fields follow the chosen model: its ML App and checkpoint format.
  const showChosenSettings = () => {
    showSettings(settings, picker.selectedOptions[0]?.dataset.mlApp || "", checkpointFormat(picker));
  };

  wirePicker(picker, {
    mlAppOf: () => appFilter.value,
    onChoice: (model) => {
      // A model of another ML App than the one selected changes the ML App to match.
      if (appFilter.value && appFilter.value !== model.mlApp) {
        appFilter.value = model.mlApp;
        limitPickerToApp(picker, model.mlApp);
        choosePickerModel(picker, model);
      }
      showChosenSettings();
    },
  });
  form.addEventListener("change", showChosenSettings);
  wireSettings(settings);
  appFilter.addEventListener("change", () => limitPickerToApp(picker, appFilter.value));

  document.querySelectorAll("[data-open-add-endpoint]").forEach((button) => {
    button.addEventListener("click", () => {
      form.reset();
      limitPickerToApp(picker, "");
      showChosenSettings();
      openDialog(addDialog);
      form.elements.name.focus();
    });
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      // Every field is checked before the first error is shown, so the form shows them all.
      const problems = [];
      const nameError = nameProblem(form.elements.name.value);
      if (nameError) problems.push({ field: "name", message: nameError });
      if (!picker.value) problems.push({ field: "model", message: "Choose a model for the endpoint." });
      const instances = readInstances(form.elements.instances, problems);
      const runtimeSettings = readSettings(settings, {}, problems);
      throwFieldErrors(problems);
      const body = {
        project: form.dataset.projectId,
        name: form.elements.name.value,
        model: modelReference(picker),
        instances,
        share_with_all_tenants: form.elements.share?.value === "all",
      };
      if (Object.keys(runtimeSettings).length > 0) body.runtime_settings = runtimeSettings;
      const created = await api("POST", "/endpoints", body);
      showMessageNext(`Endpoint ${created.name} was created and queued for deployment.`);
      location.assign(`${UI}/endpoints/${created.id}`);
    });
  });
}

/**
 * Read the instance count of a number input. A value that is empty, not a whole number
 * or outside the input's min and max adds its message to `problems` and returns null.
 */
function readInstances(input, problems) {
  const text = input.value.trim();
  const minimum = Number(input.min);
  const maximum = Number(input.max);
  let message = "";
  if (input.validity.badInput) {
    message = "Enter the number of instances as a whole number.";
  } else if (!text) {
    message = "Enter the number of instances.";
  } else if (!Number.isInteger(Number(text))) {
    message = `Enter a whole number of instances, not ${text}.`;
  } else if (Number(text) < minimum || Number(text) > maximum) {
    message = `Instances ${text} is out of range: use ${minimum} to ${maximum}.`;
  }
  if (message) {
    problems.push({ field: "instances", message });
    return null;
  }
  return Number(text);
}

// Update the endpoint.

const updateDialog = document.getElementById("update-endpoint-dialog");
let updating = null;

if (updateDialog) {
  const form = document.getElementById("update-endpoint-form");
  const settings = form.querySelector("[data-runtime-settings]");
  // A new model or checkpoint can change which settings apply: GGUF checkpoints take no
  // max batch size.
  const showChosenSettings = () => {
    showSettings(settings, updating.ml_app, checkpointFormat(form.elements.model));
    showRolloutNote(settings, updating.stored_settings);
  };
  wirePicker(form.elements.model, { mlAppOf: () => updating?.ml_app, onChoice: showChosenSettings });
  form.elements.checkpoint.addEventListener("change", showChosenSettings);
  wireSettings(settings, () => updating.stored_settings);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      const endpoint = updating;
      const problems = [];
      if (!form.elements.model.value) problems.push({ field: "model", message: "Choose a model for the endpoint." });
      const instances = readInstances(form.elements.instances, problems);
      const runtimeSettings = readSettings(settings, endpoint.stored_settings, problems);
      throwFieldErrors(problems);
      const body = {
        description: form.elements.description.value,
        model: modelReference(form.elements.model),
        instances,
        version: endpoint.version,
      };
      if (form.elements.share) body.share_with_all_tenants = form.elements.share.value === "all";
      if (Object.keys(runtimeSettings).length > 0) body.runtime_settings = runtimeSettings;
      try {
        await api("PATCH", `/endpoints/${endpoint.id}`, body);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409 && error.field === "version")) throw error;
        // The fields keep the user's choices. The dialog takes the new version, so the
        // next Save applies them over the other change.
        const current = await api("GET", `/endpoints/${endpoint.id}`);
        endpoint.version = current.version;
        const count = `${current.instances} instance${current.instances === 1 ? "" : "s"}`;
        throw new ApiError(
          409,
          `While you edited this endpoint, someone else changed it: it now serves ${current.model.name} ` +
            `on ${count}. Save again to apply your settings over it, or Cancel to keep it.`,
        );
      }
      updateDialog.close();
      showMessage(`Endpoint ${endpoint.name} was updated. New settings apply as its instances change.`);
      refreshAllParts();
    });
  });
}

function openUpdateDialog(endpoint) {
  const form = document.getElementById("update-endpoint-form");
  updating = endpoint;
  form.reset();
  fillDialog(updateDialog, endpoint);
  form.elements.description.value = endpoint.description;
  form.elements.instances.value = endpoint.instances;
  if (form.elements.share) form.elements.share.value = endpoint.share_with_all_tenants ? "all" : "tenant";
  limitPickerToApp(form.elements.model, endpoint.ml_app);
  choosePickerModel(
    form.elements.model,
    {
      id: endpoint.model_id,
      name: endpoint.model_name,
      mlApp: endpoint.ml_app,
      checkpoints: endpoint.model_checkpoints,
    },
    endpoint.checkpoint_id,
  );
  const settings = form.querySelector("[data-runtime-settings]");
  fillSettings(settings, endpoint.stored_settings);
  showSettings(settings, endpoint.ml_app, checkpointFormat(form.elements.model));
  showRolloutNote(settings, endpoint.stored_settings);
  openDialog(updateDialog);
  form.elements.description.focus();
}

// Stop, restart and delete.

const stopDialog = document.getElementById("stop-endpoint-dialog");
const deleteDialog = document.getElementById("delete-endpoint-dialog");
let confirming = null;

function runningItems(endpoint) {
  const count = endpoint.instance_list.length;
  const items = [`Model ${endpoint.model_name} (${endpoint.ml_app_name}) on ${count} instance${count === 1 ? "" : "s"}`];
  endpoint.instance_list.forEach((instance) => {
    items.push(`Instance ${instance.id.slice(0, 8)}, now ${instance.state}`);
  });
  if (count === 0) items[0] = `Model ${endpoint.model_name} (${endpoint.ml_app_name}); no instance is running yet`;
  return items;
}

function openStopDialog(endpoint) {
  confirming = endpoint;
  fillDialog(stopDialog, endpoint);
  const list = stopDialog.querySelector('[data-fill-list="running"]');
  list.replaceChildren(
    ...runningItems(endpoint).map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
  openDialog(stopDialog);
}

function openDeleteDialog(endpoint) {
  confirming = endpoint;
  fillDialog(deleteDialog, endpoint);
  openDialog(deleteDialog);
}

async function restart(endpoint) {
  try {
    await api("POST", `/endpoints/${endpoint.id}/restart`);
    showMessage(`Endpoint ${endpoint.name} is restarting. Its status shows the progress.`);
    refreshAllParts();
  } catch (error) {
    showAlert(error.message);
  }
}

function wireConfirmation(dialog, action) {
  if (!dialog) return;
  const form = dialog.querySelector("form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      await action(confirming);
      dialog.close();
    });
  });
}

wireConfirmation(stopDialog, async (endpoint) => {
  await api("POST", `/endpoints/${endpoint.id}/stop`);
  showMessage(`Endpoint ${endpoint.name} is stopping.`);
  refreshAllParts();
});

wireConfirmation(deleteDialog, async (endpoint) => {
  await api("DELETE", `/endpoints/${endpoint.id}`);
  const message = `Endpoint ${endpoint.name} was marked for deletion; its keys no longer work.`;
  const head = document.getElementById("endpoint-head");
  if (head) {
    showMessageNext(message);
    location.assign(head.dataset.afterDelete);
    return;
  }
  showMessage(message);
  refreshAllParts();
});

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-endpoint-action]") : null;
  if (!button) return;
  const holder = button.closest("[data-endpoint]");
  const endpoint = JSON.parse(holder.dataset.endpoint);
  const action = button.dataset.endpointAction;
  if (action === "edit") openUpdateDialog(endpoint);
  else if (action === "stop") openStopDialog(endpoint);
  else if (action === "restart") restart(endpoint);
  else if (action === "delete") openDeleteDialog(endpoint);
});

// Tell screen-reader users when the endpoint window's status changes by itself.
document.addEventListener("berth:part-updated", (event) => {
  const fresh = event.target;
  if (fresh.id !== "endpoint-details") return;
  const before = event.detail.previous.querySelector("#endpoint-status")?.dataset.state;
  const after = fresh.querySelector("#endpoint-status")?.dataset.state;
  if (before && after && before !== after) {
    const name = JSON.parse(fresh.dataset.endpoint).name;
    document.getElementById("announcer").textContent = `Endpoint ${name} is now ${after}.`;
  }
});

document.addEventListener("berth:part-failed", (event) => {
  if (event.target.id === "endpoint-details" && event.detail.status === 404) {
    showAlert("This endpoint no longer exists; it was deleted.");
  }
});

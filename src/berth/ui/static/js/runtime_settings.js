// The runtime settings fieldset of the endpoint dialogs, which the runtime_settings_fields
// macro renders with one [data-setting] field per setting. Each field carries the server
// defaults by ML App, and a field whose setting the ML App does not read stays hidden. An
// empty field means the server default, and the API resets a stored setting sent as null.

function settingFields(fieldset) {
  return [...fieldset.querySelectorAll("[data-setting]")];
}

function inputOf(field) {
  return field.querySelector("input, select");
}

function defaultOf(field, mlApp, checkpointFormat) {
  const defaults = JSON.parse(checkpointFormat === "gguf" ? field.dataset.ggufDefaults : field.dataset.defaults);
  return defaults[mlApp];
}

/**
 * Show the fields of the settings that endpoints of `mlApp` with a checkpoint of
 * `checkpointFormat` use, with their server defaults, and hide the others.
 */
export function showSettings(fieldset, mlApp, checkpointFormat) {
  let visibleCount = 0;
  for (const field of settingFields(fieldset)) {
    const fallback = defaultOf(field, mlApp, checkpointFormat);
    field.hidden = fallback === undefined;
    if (field.hidden) continue;
    visibleCount += 1;
    // A null default leaves the value to the model, as for the context length.
    field.querySelector("[data-setting-default]").textContent =
      fallback === null ? field.dataset.modelDefault : String(fallback);
    const choice = field.querySelector("[data-default-choice]");
    if (choice) choice.textContent = `Server default (${fallback})`;
  }
  fieldset.hidden = visibleCount === 0;
  fieldset.dataset.mlApp = mlApp;
  fieldset.dataset.checkpointFormat = checkpointFormat;
}

/** Fill each field with its stored value from `stored`, or leave it empty for the default. */
export function fillSettings(fieldset, stored) {
  for (const field of settingFields(fieldset)) {
    const value = stored[field.dataset.setting];
    inputOf(field).value = value === undefined || value === null ? "" : String(value);
  }
}

/** Return the value that a shown field sends: null when empty, else a number or a choice. */
function fieldValue(field, problems) {
  const input = inputOf(field);
  if (input.validity?.badInput) {
    const errorField = field.querySelector("[data-error-for]").dataset.errorFor;
    problems.push({ field: errorField, message: `Enter ${field.dataset.label.toLowerCase()} as a number.` });
    return undefined;
  }
  const text = input.value.trim();
  if (text === "") return null;
  return input.tagName === "SELECT" ? text : Number(text);
}

/**
 * Return the runtime_settings object of a request that turns `stored` into the shown
 * fields' values: a changed value, and null for a stored setting whose field is empty.
 * Settings whose fields are hidden are left out, so they keep their values. Invalid
 * fields add their messages to `problems`; the server checks the ranges.
 */
export function readSettings(fieldset, stored, problems = []) {
  const body = {};
  for (const field of settingFields(fieldset)) {
    if (field.hidden) continue;
    const name = field.dataset.setting;
    const value = fieldValue(field, problems);
    if (value === undefined) continue;
    const before = stored[name] ?? null;
    if (value !== before) body[name] = value;
  }
  return body;
}

/** Return the labels of the shown settings whose value in effect the fields change. */
export function changedSettings(fieldset, stored) {
  const { mlApp, checkpointFormat } = fieldset.dataset;
  const changed = [];
  for (const field of settingFields(fieldset)) {
    if (field.hidden) continue;
    const value = fieldValue(field, []);
    if (value === undefined) continue;
    const fallback = defaultOf(field, mlApp, checkpointFormat);
    const before = stored[field.dataset.setting] ?? fallback;
    if ((value ?? fallback) !== before) changed.push(field.dataset.label.toLowerCase());
  }
  return changed;
}

/** Say in the fieldset's note that saving starts a rolling update, when a setting changes. */
export function showRolloutNote(fieldset, stored) {
  const note = fieldset.querySelector("[data-rollout-note]");
  const changed = changedSettings(fieldset, stored);
  const text = changed.length
    ? `Saving starts a rolling update because ${changed.join(", ")} changes: new instances start ` +
      "with the new settings, and the running ones keep serving until the new ones are ready."
    : "";
  if (note.textContent !== text) note.textContent = text;
  note.hidden = !text;
}

/**
 * Make each field's "Use default" button empty the field. With `storedOf`, which returns
 * the settings that the endpoint has now, also keep the rollout note up to date.
 */
export function wireSettings(fieldset, storedOf = null) {
  const update = () => {
    if (storedOf) showRolloutNote(fieldset, storedOf());
  };
  fieldset.addEventListener("input", update);
  fieldset.addEventListener("change", update);
  fieldset.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-reset-setting]") : null;
    if (!button) return;
    const input = inputOf(button.closest("[data-setting]"));
    input.value = "";
    input.focus();
    update();
  });
}

// Behaviour shared by every page: calls to the REST API, form errors, dialogs, copy
// buttons, messages, local times, and the parts of a page that refresh themselves.

export const UI = document.body.dataset.ui;
export const API = document.body.dataset.api;

const FLASH_KEY = "berth-flash";

// Messages for failures whose response carries no message of its own.
const STATUS_MESSAGES = {
  401: "Your session has ended. Sign in again.",
  403: "You may not do this.",
  404: "It was not found; it may have been deleted in the meantime.",
  409: "This conflicts with a change made in the meantime. Reload the page and try again.",
  413: "The request is too large.",
  429: "Too many attempts. Wait a moment and try again.",
  500: "Berth failed to handle the request. The server log has the details.",
  503: "Berth is not ready to handle the request. Try again in a moment.",
};

export class ApiError extends Error {
  /**
   * `fieldErrors` lists every invalid field as {field, message}. By default it contains
   * `field` with `message`, or nothing when the error names no field.
   */
  constructor(status, message, field = null, code = "", fieldErrors = null) {
    super(message);
    this.status = status;
    this.field = field;
    this.code = code;
    this.fieldErrors = fieldErrors || (field ? [{ field, message }] : []);
  }
}

/** Throw one ApiError that names every field in `problems` ({field, message}), if any. */
export function throwFieldErrors(problems) {
  if (problems.length === 0) return;
  const message = problems.map((problem) => problem.message).join(" ");
  throw new ApiError(0, message, problems[0].field, "invalid_input", problems);
}

/** Turn a server message into a sentence: capital first letter, final full stop. */
export function sentence(text) {
  const trimmed = (text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

export function goToSignIn() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`${UI}/login?next=${next}`);
}

/**
 * Call the REST API with the session cookie and return the decoded JSON body.
 * Failures raise ApiError with a plain message and the field that the API names.
 */
export async function api(method, path, body = undefined, { signInOn401 = true } = {}) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch {
    throw new ApiError(0, "Berth did not respond. Check that the server is running and try again.");
  }
  if (response.status === 401 && signInOn401) {
    goToSignIn();
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message =
      sentence(error.message) || STATUS_MESSAGES[response.status] || `The request failed with status ${response.status}.`;
    const fieldErrors = Array.isArray(error.errors)
      ? error.errors.map((item) => ({ field: item.field, message: sentence(item.message) }))
      : null;
    throw new ApiError(response.status, message, error.field || null, error.code || "", fieldErrors);
  }
  return data;
}

// Names: the rule of berth/names.py, which the page passes in data-name-pattern and
// data-max-name-length. The API checks names as well, including the ID-shaped names
// that this check lets through.

/** Return why `value` is not a valid name for `field`, or "" when it is valid. */
export function nameProblem(value, field = "name") {
  const name = value.trim();
  const maxLength = Number(document.body.dataset.maxNameLength);
  if (!name) return sentence(`${field} must not be empty`);
  if (name.length > maxLength) {
    return sentence(`${field} '${name.slice(0, 20)}...' is ${name.length} characters long; use at most ${maxLength}`);
  }
  if (!new RegExp(`^(?:${document.body.dataset.namePattern})$`).test(name)) {
    return sentence(
      `${field} '${name}' is invalid: start with a letter or digit and use only letters, digits, '-', '_' and '.'`,
    );
  }
  return "";
}

// Form errors. Each field's message goes into the element with data-error-for="<field>"
// inside the form, and every invalid field is marked, so a form shows all of its
// errors at once. A message for a field the form does not show goes to "form".

export function clearErrors(container) {
  container.querySelectorAll("[data-error-for]").forEach((slot) => {
    slot.textContent = "";
  });
  container.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
}

export function showError(container, error) {
  const message = error instanceof ApiError ? error.message : sentence(String(error.message || error));
  const fieldErrors = error instanceof ApiError ? error.fieldErrors : [];
  const unplaced = fieldErrors.length === 0 ? [message] : [];
  let firstInvalid = null;
  for (const { field, message: text } of fieldErrors) {
    const slot = container.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (!slot) {
      unplaced.push(text);
      continue;
    }
    // A field can fail more than one check of the API's schema.
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    const input = slot.id ? container.querySelector(`[aria-describedby~="${CSS.escape(slot.id)}"]`) : null;
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    if (!firstInvalid || firstInvalid.compareDocumentPosition(input) & Node.DOCUMENT_POSITION_PRECEDING) {
      firstInvalid = input;
    }
  }
  if (unplaced.length > 0) {
    const formSlot = container.querySelector('[data-error-for="form"]');
    if (formSlot) formSlot.textContent = unplaced.join(" ");
    else showAlert(unplaced.join(" "));
  }
  // The focus goes to the first invalid field of the form, whatever order the errors came in.
  firstInvalid?.focus();
}

/** Run `action` while the form's submit button is disabled; show any error in the form. */
export async function submitting(form, action) {
  const buttons = form.querySelectorAll('button[type="submit"]');
  clearErrors(form);
  buttons.forEach((button) => {
    button.disabled = true;
  });
  form.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    showError(form, error);
    return undefined;
  } finally {
    buttons.forEach((button) => {
      button.disabled = false;
    });
    form.removeAttribute("aria-busy");
  }
}

// Messages at the top of the page.

export function showMessage(text) {
  const flash = document.getElementById("flash");
  if (!flash) return;
  flash.textContent = text;
  flash.hidden = false;
  hideAlert();
}

export function showAlert(text) {
  const alert = document.getElementById("page-alert");
  if (!alert) return;
  alert.textContent = text;
  alert.hidden = false;
}

function hideAlert() {
  const alert = document.getElementById("page-alert");
  if (alert) alert.hidden = true;
}

/** Show `text` on the next page this browser tab opens (after a reload or redirect). */
export function showMessageNext(text) {
  sessionStorage.setItem(FLASH_KEY, text);
}

export function announce(text) {
  const announcer = document.getElementById("announcer");
  if (!announcer) return;
  announcer.textContent = "";
  // A new text node makes screen readers speak the same message again.
  announcer.append(document.createTextNode(text));
}

// Dialogs.

export function openDialog(dialog) {
  dialog.querySelectorAll("form").forEach((form) => clearErrors(form));
  dialog.showModal();
}

/** Write the values of `data` into the dialog's [data-fill="<key>"] elements. */
export function fillDialog(dialog, data) {
  dialog.querySelectorAll("[data-fill]").forEach((element) => {
    const value = data[element.dataset.fill];
    element.textContent = value === undefined || value === null ? "" : String(value);
  });
}

// Action menus are popovers (`<div popover class="menu-items">`) opened by a button with
// popovertarget; each opens under its button, aligned to the button's right edge.

document.addEventListener(
  "beforetoggle",
  (event) => {
    const menu = event.target;
    if (event.newState !== "open" || !menu.matches?.(".menu-items[popover]")) return;
    const button = document.querySelector(`[popovertarget="${CSS.escape(menu.id)}"]`);
    if (!button) return;
    const box = button.getBoundingClientRect();
    menu.style.top = `${box.bottom + 4}px`;
    menu.style.right = `${Math.max(8, document.documentElement.clientWidth - box.right)}px`;
  },
  true,
);

function closeMenus() {
  document.querySelectorAll(".menu-items:popover-open").forEach((menu) => menu.hidePopover());
}

// An open menu would stay where it was while its button scrolls away.
addEventListener("scroll", closeMenus, { passive: true });

// Copying to the clipboard.

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Without the Clipboard API (a page over plain HTTP on another host), fall back to
    // the older selection-based command.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

async function onCopy(button) {
  const source = button.dataset.copyFrom ? document.getElementById(button.dataset.copyFrom) : null;
  const text = source ? source.textContent : button.dataset.copy;
  const subject = button.dataset.copyLabel || "the text";
  if (await copyText(text)) {
    button.dataset.copied = "true";
    announce(sentence(`${subject} copied to the clipboard`));
    setTimeout(() => delete button.dataset.copied, 2000);
  } else {
    showAlert(sentence(`Copying ${subject} failed; select it and copy it by hand`));
  }
}

// Times: the server writes UTC, the browser shows local time.

export function localizeTimes(root = document) {
  root.querySelectorAll("time[datetime]").forEach((element) => {
    const value = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(value.getTime())) return;
    element.title = element.textContent.trim();
    element.textContent = value.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  });
}

// Parts of a page that refresh themselves: an element with data-poll-url is replaced by
// a fresh copy from that URL every data-poll-ms milliseconds. The server sets the
// interval in each copy, short while an endpoint changes state and long otherwise.

const pollTimers = new Map();
const pollRequests = new Map();
const hiddenWhileDue = new Set();
// Milliseconds between polls while the server cannot be reached, for example while it
// restarts, so that the page recovers soon after the server is back.
const UNREACHABLE_RETRY_MS = 2000;

function schedulePoll(element, delay = Number(element.dataset.pollMs) || 10000) {
  clearTimeout(pollTimers.get(element.id));
  pollTimers.set(element.id, setTimeout(() => refreshPart(element.id), delay));
}

// Show or hide the notice that the last poll could not reach the server.
function showUnreachable(unreachable) {
  const notice = document.getElementById("connection-notice");
  if (notice && notice.hidden !== !unreachable) notice.hidden = !unreachable;
}

/** Fetch a fresh copy of the self-refreshing part with this id now. */
export async function refreshPart(id) {
  const element = document.getElementById(id);
  if (!element) return;
  clearTimeout(pollTimers.get(id));
  if (document.hidden) {
    hiddenWhileDue.add(id);
    return;
  }
  const request = (pollRequests.get(id) || 0) + 1;
  pollRequests.set(id, request);

  let response;
  let html;
  try {
    response = await fetch(element.dataset.pollUrl, { headers: { Accept: "text/html" } });
    html = await response.text();
  } catch {
    // A failed fetch means that no response came, because the server or the network is down.
    if (pollRequests.get(id) !== request) return;
    showUnreachable(true);
    const current = document.getElementById(id);
    if (current) schedulePoll(current, Math.min(UNREACHABLE_RETRY_MS, Number(current.dataset.pollMs) || 10000));
    return;
  }
  if (pollRequests.get(id) !== request) return; // a newer refresh has started
  showUnreachable(false);
  const current = document.getElementById(id);
  if (!current) return;
  if (response.status === 401) {
    goToSignIn();
    return;
  }
  if (!response.ok) {
    current.dispatchEvent(new CustomEvent("berth:part-failed", { bubbles: true, detail: { status: response.status } }));
    if (response.status !== 404) schedulePoll(current);
    return;
  }
  if (current.querySelector(":popover-open")) {
    // Someone is choosing from a menu of this part; refresh it after they are done.
    schedulePoll(current);
    return;
  }
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  const fresh = template.content.firstElementChild;
  if (!fresh) return;
  replaceKeepingFocus(current, fresh);
  localizeTimes(fresh);
  fresh.dispatchEvent(new CustomEvent("berth:part-updated", { bubbles: true, detail: { previous: current } }));
  schedulePoll(fresh);
}

export function refreshAllParts() {
  document.querySelectorAll("[data-poll-url]").forEach((element) => refreshPart(element.id));
}

function replaceKeepingFocus(current, fresh) {
  const focused = current.contains(document.activeElement) ? document.activeElement.id : "";
  current.replaceWith(fresh);
  if (focused) document.getElementById(focused)?.focus();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  hiddenWhileDue.forEach((id) => refreshPart(id));
  hiddenWhileDue.clear();
});

// Wiring that every page shares.

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;

  if (target.closest(".menu-items button")) closeMenus();

  const opener = target.closest("[data-open-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.openDialog);
    if (dialog) openDialog(dialog);
    return;
  }
  const closer = target.closest("[data-close-dialog]");
  if (closer) {
    closer.closest("dialog")?.close();
    return;
  }
  const copyButton = target.closest("[data-copy], [data-copy-from]");
  if (copyButton) onCopy(copyButton);
});

document.querySelector("[data-sign-out]")?.addEventListener("click", async () => {
  try {
    await api("POST", "/auth/logout", undefined, { signInOn401: false });
  } finally {
    location.assign(`${UI}/login`);
  }
});

const pending = sessionStorage.getItem(FLASH_KEY);
if (pending) {
  sessionStorage.removeItem(FLASH_KEY);
  showMessage(pending);
}
localizeTimes();
document.querySelectorAll("[data-poll-url]").forEach(schedulePoll);

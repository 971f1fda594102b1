// The sign-in form: checks the user name and password with the API, which sets the
// session cookie, then opens the page the person asked for.

import { ApiError, UI, api, submitting, throwFieldErrors } from "./core.js";

const form = document.getElementById("sign-in-form");

/** Return the page to open after signing in: a page of the UI, never another site. */
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  const safe = next.startsWith(`${UI}/`) && !next.startsWith("//") && !next.includes("\\");
  return safe ? next : `${UI}/`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(form, async () => {
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const problems = [];
    if (!username) problems.push({ field: "username", message: "Enter your user name." });
    if (!password) problems.push({ field: "password", message: "Enter your password." });
    throwFieldErrors(problems);
    try {
      await api("POST", "/auth/login", { username, password }, { signInOn401: false });
    } catch (error) {
      // A disabled user with the right password gets the server's message about the account.
      if (error.status === 401 && error.code !== "user_disabled") {
        throw new ApiError(401, "Wrong user name or password.");
      }
      throw error;
    }
    location.assign(nextPage());
  });
});

form.elements.username.focus();

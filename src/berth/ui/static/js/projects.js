// The projects list: create a project and open it.

import { UI, api, showMessageNext, submitting } from "./core.js";

const form = document.getElementById("project-add-form");

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(form, async () => {
    const body = { name: form.elements.name.value, description: form.elements.description.value };
    const project = await api("POST", "/projects", body);
    showMessageNext(`Project ${project.name} was created.`);
    location.assign(`${UI}/projects/${project.id}`);
  });
});

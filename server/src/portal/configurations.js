// The Configurations section: create from the sample template, edit with the errors shown by
// line before saving, the rollout of each revision, assign to several devices, delete.

import { h, renderChrome, show } from "./ui.js";

export async function renderConfigurations(org) {
  renderChrome(org, "configurations");
  show("Configurations", h("h1", {}, "Configurations"), h("p", { class: "muted" }, "This section is coming."));
}

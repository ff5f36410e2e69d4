// "Inactive devices", on the Devices page: the organization's inactive-device release. When on,
// the server releases the license of a device that is offline and was last seen more than N days
// ago (the device is told if it comes back, and pairs again with a new code). Off by default.

import { put } from "./api.js";
import { errorMessage, h } from "./ui.js";

const DEFAULT_DAYS = 90;

export function inactiveReleaseSection(base, organization) {
  const current = organization.release_inactive_after_days;
  const enabled = h("input", { id: "inactive-enabled", type: "checkbox" });
  enabled.checked = current !== null && current !== undefined;
  const days = h("input", { id: "inactive-days", type: "number", min: 1, max: 3650, required: true });
  days.value = current ?? DEFAULT_DAYS;
  days.disabled = !enabled.checked;
  enabled.addEventListener("change", () => {
    days.disabled = !enabled.checked;
  });
  const save = h("button", { type: "submit", class: "button secondary", id: "inactive-save" }, "Save");
  const status = h("p", { id: "inactive-status", class: "muted", role: "status" }, describe(current));
  const form = h(
    "form",
    { class: "inactive-form", id: "inactive-release" },
    h("label", { for: "inactive-enabled" }, enabled, " Release the license of a device not seen for"),
    h("label", { for: "inactive-days", class: "visually-hidden" }, "Days"),
    days,
    h("span", {}, " days"),
    save,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    status.textContent = "Saving…";
    try {
      const answer = await put(`${base}/inactive-release`, {
        after_days: enabled.checked ? Number(days.value) : null,
      });
      status.textContent = `Saved. ${describe(answer.after_days)}`;
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      save.disabled = false;
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "inactive-title" },
    h("h2", { id: "inactive-title" }, "Inactive devices"),
    form,
    status,
  );
}

function describe(days) {
  return days === null || days === undefined
    ? "Off: licenses stay with their devices however long they are away."
    : `On: a device offline and unseen for more than ${days} days loses its license, which is then free for another device.`;
}

// "Inactive devices", on the Devices page: the organization's inactive-device release. When on,
// the server releases the license of a device that is offline and was last seen more than N days
// ago (the device is told if it comes back, and pairs again with a new code). Off by default.
// Before a save, the section says how many devices the number of days entered would release now:
// the fleet list's own count of devices offline and unseen since then (`not_seen_since`, by the
// server's clock), so the admin sees what a setting does before it does it.

import { get, put } from "./api.js";
import { errorMessage, h } from "./ui.js";

const DEFAULT_DAYS = 90;
const DAY_MS = 86_400_000;
/** How long typing pauses before the count is asked for. */
const PREVIEW_DEBOUNCE_MS = 300;

/** `serverNow()`: the server's time in milliseconds (the Devices page knows its clock's offset). */
export function inactiveReleaseSection(base, organization, serverNow) {
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
  const preview = h("p", { id: "inactive-preview", class: "muted", "aria-live": "polite" });
  let saved = current ?? null;
  let ticket = 0;
  let timer = null;
  const showPreview = async () => {
    const wanted = Number(days.value);
    const mine = ++ticket;
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > 3650) {
      preview.textContent = "";
      return;
    }
    try {
      const since = new Date(serverNow() - wanted * DAY_MS).toISOString();
      const page = await get(`${base}/devices?not_seen_since=${encodeURIComponent(since)}&limit=1`);
      if (mine !== ticket) return;
      const count = `${page.total}${page.total_exact ? "" : "+"}`;
      preview.textContent =
        page.total === 0
          ? `No device is offline and unseen for more than ${wanted} days now.`
          : `${count} ${page.total === 1 ? "device is" : "devices are"} offline and unseen for more than ${wanted} days now: ${
              saved === wanted ? "the server is releasing their licenses" : "saving the release with this number would release their licenses"
            }.`;
    } catch (error) {
      if (mine === ticket) preview.textContent = errorMessage(error);
    }
  };
  days.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(showPreview, PREVIEW_DEBOUNCE_MS);
  });
  enabled.addEventListener("change", showPreview);
  showPreview();
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
      saved = answer.after_days;
      showPreview();
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
    preview,
    status,
  );
}

function describe(days) {
  return days === null || days === undefined
    ? "Off: licenses stay with their devices however long they are away."
    : `On: a device offline and unseen for more than ${days} days loses its license, which is then free for another device.`;
}

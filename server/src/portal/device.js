// A device's own page (#/organizations/{org}/devices/{device}): the name and notes an admin
// keeps on it (editable), what it reports of itself, its license, what it should run and what it
// last reported, and its history from the audit log: configurations assigned to it and failed on
// it, its pairing and unpairing, every entry that names it. An unpaired device has no device
// record any more (404), but its history stays: the page then shows the history alone.

import { ApiError, get, patch, segment } from "./api.js";
import { auditRow, AUDIT_COLUMNS } from "./audit.js";
import { replaceSection } from "./replace.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

const HISTORY_PAGE = 100;

/** Actions that make up a device's configuration history, and its pairing history. */
const CONFIGURATION_ACTIONS = new Set(["configuration.assigned", "configuration.created", "configuration.apply_failed"]);
const PAIRING_ACTIONS = new Set([
  "device.paired",
  "device.pairing_repeated",
  "device.unpaired",
  "device.license_expired",
  "device.replaced",
  "device.released_inactive",
]);

export async function renderDevice(org, deviceId) {
  renderChrome(org, "devices");
  show("Device", h("h1", {}, "Device"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  let device = null;
  let history;
  try {
    [device, history] = await Promise.all([
      get(`${base}/devices/${segment(deviceId)}`).catch((error) => {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }),
      get(`${base}/audit?device=${encodeURIComponent(deviceId)}&limit=${HISTORY_PAGE}`),
    ]);
  } catch (error) {
    showError("Device", error);
    return;
  }
  const title = device ? device.name : historyName(history.items) ?? "Unpaired device";
  const back = h("p", {}, h("a", { href: `#/organizations/${encodeURIComponent(org)}/devices` }, "← Devices"));
  const parts = [back, h("h1", { id: "device-title" }, title)];
  if (device) {
    parts.push(
      nameAndNotes(base, device),
      facts(org, device),
      configurationState(org, device),
      replaceSection(base, device),
    );
  } else {
    parts.push(
      h(
        "p",
        { class: "alert", id: "device-gone" },
        "This device is no longer paired. Its history stays in the audit log:",
      ),
    );
  }
  parts.push(...historySections(org, base, deviceId, history));
  show(title, ...parts);
}

/** The name an unpaired device last had, from its newest entry that names it. */
function historyName(entries) {
  for (const entry of entries) {
    if (entry.subject && entry.action.startsWith("device.") && entry.details?.name) return entry.details.name;
  }
  return null;
}

function nameAndNotes(base, device) {
  const name = h("input", {
    id: "device-admin-name",
    name: "admin_name",
    type: "text",
    maxlength: 128,
    placeholder: device.reported_name,
    "aria-describedby": "device-admin-name-help",
  });
  name.value = device.admin_name ?? "";
  const notes = h("textarea", { id: "device-notes", name: "notes", rows: 4 });
  notes.value = device.notes ?? "";
  const status = h("p", { id: "device-save-status", class: "muted", role: "status" });
  const save = h("button", { type: "submit", class: "button", id: "device-save" }, "Save");
  const form = h(
    "form",
    { class: "card device-edit", id: "device-edit" },
    h("h2", {}, "Name and notes"),
    h("label", { for: "device-admin-name" }, "Name"),
    name,
    h(
      "p",
      { id: "device-admin-name-help", class: "muted" },
      `Shown instead of the name the device reports ("${device.reported_name}"); leave empty to show that one. A reconnection never changes it.`,
    ),
    h("label", { for: "device-notes" }, "Notes"),
    notes,
    save,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    status.textContent = "Saving…";
    try {
      const edited = await patch(`${base}/devices/${segment(device.id)}`, {
        name: name.value.trim() === "" ? null : name.value,
        notes: notes.value.trim() === "" ? null : notes.value,
      });
      document.getElementById("device-title").textContent = edited.name;
      status.textContent = "Saved.";
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

function fact(label, value, id) {
  return [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
}

function facts(org, device) {
  const code = device.paired_by_code
    ? h("a", { href: `#/organizations/${encodeURIComponent(org)}/codes` }, h("code", {}, device.paired_by_code))
    : "—";
  return h(
    "section",
    { class: "card", "aria-labelledby": "device-facts-title" },
    h("h2", { id: "device-facts-title" }, "Device and license"),
    h(
      "dl",
      { class: "facts", id: "device-facts" },
      fact("Reported name", device.reported_name),
      fact("Model", device.model),
      fact("OS", device.os),
      fact("App version", device.app_version),
      fact("Online", device.online ? "Online now" : `Offline, last seen ${formatTime(device.last_seen)}`, "device-online"),
      fact("Paired", formatTime(device.paired_at)),
      fact("Paired with code", code),
      fact("License", h("code", {}, device.license_id), "device-license"),
      fact("License valid until", device.license_valid_until ? formatTime(device.license_valid_until) : "No end"),
      fact("Installation", h("code", {}, device.installation_id)),
    ),
  );
}

function configurationState(org, device) {
  const link = (id, text) =>
    h("a", { href: `#/organizations/${encodeURIComponent(org)}/configurations`, "data-configuration-id": id }, text);
  const assigned = device.configuration
    ? [link(device.configuration.id, device.configuration.name), `, revision ${device.configuration.revision}`]
    : "None (the organization has no configuration)";
  let reported = "Nothing yet (no acknowledgement)";
  if (device.applied) {
    const applied = device.applied;
    const what = `revision ${applied.revision} of ${applied.configuration_id === device.configuration?.id ? device.configuration.name : applied.configuration_id}`;
    reported =
      applied.status === "failed"
        ? `Failed to apply ${what} at ${formatTime(applied.at)}: ${applied.reason ?? "no reason given"}`
        : `Applied ${what} at ${formatTime(applied.at)}`;
  }
  const upToDate =
    device.configuration &&
    device.applied &&
    device.applied.configuration_id === device.configuration.id &&
    device.applied.revision === device.configuration.revision &&
    device.applied.status === "applied";
  return h(
    "section",
    { class: "card", "aria-labelledby": "device-configuration-title" },
    h("h2", { id: "device-configuration-title" }, "Configuration"),
    h(
      "dl",
      { class: "facts" },
      fact("Should run", assigned, "device-assigned"),
      fact("Last reported", reported, "device-applied"),
      fact("State", !device.configuration ? "—" : upToDate ? "Up to date" : device.applied?.status === "failed" ? "Failed" : "Pending", "device-revision-state"),
    ),
  );
}

/** The configuration history, the pairing history and every entry, from one read of the log. */
function historySections(org, base, deviceId, first) {
  const section = (id, title, empty, filter) => {
    const body = h("tbody", {});
    const status = h("p", { class: "muted", role: "status" });
    const add = (entries) => {
      body.append(...entries.filter(filter).map((entry) => auditRow(org, entry)));
      status.textContent = body.childElementCount === 0 ? empty : "";
    };
    return {
      add,
      element: h(
        "section",
        { class: "card", id, "aria-labelledby": `${id}-title` },
        h("h2", { id: `${id}-title` }, title),
        h("div", { class: "table-wrap" }, table({ class: "audit" }, title, AUDIT_COLUMNS, body)),
        status,
      ),
    };
  };
  const sections = [
    section("device-configuration-history", "Configuration history", "No configuration was assigned to it or failed on it.", (entry) =>
      CONFIGURATION_ACTIONS.has(entry.action),
    ),
    section("device-pairing-history", "Pairing history", "No pairing recorded.", (entry) => PAIRING_ACTIONS.has(entry.action)),
    section("device-audit", "Every audit entry that names it", "No entry names it.", () => true),
  ];
  const more = h("button", { type: "button", class: "button secondary", id: "device-history-more" }, "Show older entries");
  const status = h("p", { class: "muted", role: "status" });
  let cursor = null;
  const append = (page) => {
    for (const part of sections) part.add(page.items);
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  append(first);
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      append(await get(`${base}/audit?device=${encodeURIComponent(deviceId)}&limit=${HISTORY_PAGE}&cursor=${encodeURIComponent(cursor)}`));
      status.textContent = "";
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      more.disabled = false;
    }
  });
  return [...sections.map((part) => part.element), more, status];
}

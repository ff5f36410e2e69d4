// The Audit log section: newest first, a page at a time, filtered by action, device and time
// (the filters live in the address: `#/organizations/{org}/audit?action=…&device=…&from=…&until=…`,
// so a filtered log can be bookmarked, reloaded and shared). Each entry shows the names it
// carries (as they were when it was written) and links to the device or configuration it is
// about.

import { get, segment } from "./api.js";
import { errorMessage, formatTime, go, h, renderChrome, show, showError, table } from "./ui.js";

const AUDIT_PAGE = 100;

/** The actions an organization's log can hold (docs/admin-api.md, section 8). */
const ACTIONS = [
  "device.paired",
  "device.pairing_repeated",
  "device.edited",
  "device.unpaired",
  "devices.unpaired",
  "device.license_expired",
  "pairing.refused",
  "configuration.created",
  "configuration.updated",
  "configuration.assigned",
  "configuration.apply_failed",
  "configuration.deleted",
  "code.created",
  "code.revoked",
  "key.created",
  "key.revoked",
  "licenses.added",
  "license.renewed",
  "licenses.renewed",
  "organization.created",
];

export const AUDIT_COLUMNS = ["When", "Action", "By", "About", "Details"];

/** The filters named in the address's query, as the API takes them. */
function filtersOf(query) {
  const params = new URLSearchParams(query);
  const filters = {};
  for (const name of ["action", "device", "from", "until"]) {
    const value = params.get(name);
    if (value) filters[name] = value;
  }
  return filters;
}

/** `datetime-local` (the browser's, read as UTC) ⇄ RFC 3339. */
const toInput = (rfc3339) => (rfc3339 ? rfc3339.slice(0, 16) : "");
const fromInput = (value) => (value ? `${value}:00Z` : "");

export async function renderAudit(org, query = "") {
  renderChrome(org, "audit");
  show("Audit log", h("h1", {}, "Audit log"), h("p", { class: "muted" }, "Loading…"));
  const filters = filtersOf(query);
  const search = new URLSearchParams({ limit: String(AUDIT_PAGE), ...filters });
  const base = `/v1/organizations/${segment(org)}/audit?${search}`;
  let first;
  try {
    first = await get(base);
  } catch (error) {
    showError("Audit log", error);
    show("Audit log", h("h1", {}, "Audit log"), filterForm(org, filters, errorMessage(error)));
    return;
  }
  const body = h("tbody", {});
  const auditTable = table({ class: "audit" }, "Audit log, newest first", AUDIT_COLUMNS, body);
  const more = h("button", { type: "button", class: "button secondary", id: "audit-more" }, "Show older entries");
  const status = h("p", { class: "muted", role: "status", id: "audit-status" });
  const filtered = Object.keys(filters).length > 0;
  const append = (page) => {
    body.append(...page.items.map((entry) => auditRow(org, entry)));
    more.hidden = !page.next_cursor;
    status.textContent =
      body.childElementCount > 0
        ? ""
        : filtered
          ? "No entry matches these filters."
          : "Nothing has happened in this organization yet.";
    return page.next_cursor;
  };
  let cursor = append(first);
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      cursor = append(await get(`${base}&cursor=${encodeURIComponent(cursor)}`));
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      more.disabled = false;
    }
  });
  show(
    "Audit log",
    h("h1", {}, "Audit log"),
    filterForm(org, filters),
    h("div", { class: "table-wrap" }, auditTable),
    status,
    more,
  );
}

function filterForm(org, filters, problem) {
  const action = h(
    "select",
    { id: "audit-action", name: "action" },
    h("option", { value: "" }, "Any action"),
    ACTIONS.map((name) => h("option", { value: name, selected: filters.action === name }, name)),
  );
  const device = h("input", {
    id: "audit-device",
    name: "device",
    type: "text",
    spellcheck: "false",
    autocomplete: "off",
    placeholder: "Device id",
    value: filters.device ?? "",
  });
  const from = h("input", { id: "audit-from", name: "from", type: "datetime-local", value: toInput(filters.from) });
  const until = h("input", { id: "audit-until", name: "until", type: "datetime-local", value: toInput(filters.until) });
  const field = (id, label, control) => h("div", { class: "filter" }, h("label", { for: id }, label), control);
  const form = h(
    "form",
    { class: "filters audit-filters", id: "audit-filters", role: "search", "aria-label": "Filter the audit log" },
    field("audit-action", "Action", action),
    field("audit-device", "Device", device),
    field("audit-from", "From (UTC)", from),
    field("audit-until", "Until (UTC)", until),
    h(
      "div",
      { class: "filter-buttons" },
      h("button", { type: "submit", class: "button", id: "audit-apply" }, "Filter"),
      h("button", { type: "button", class: "button secondary", id: "audit-clear" }, "Clear"),
    ),
    problem ? h("p", { class: "alert error", role: "alert" }, problem) : null,
  );
  const open = (chosen) => {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(chosen)) if (value) params.set(name, value);
    const text = params.toString();
    go(`#/organizations/${encodeURIComponent(org)}/audit${text ? `?${text}` : ""}`);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    open({
      action: action.value,
      device: device.value.trim(),
      from: fromInput(from.value),
      until: fromInput(until.value),
    });
  });
  form.querySelector("#audit-clear").addEventListener("click", () => open({}));
  return form;
}

/** The link to a device's own page. */
function deviceLink(org, id, text) {
  return h(
    "a",
    { href: `#/organizations/${encodeURIComponent(org)}/devices/${encodeURIComponent(id)}`, "data-device-id": id },
    text,
  );
}

function configurationLink(org, id, text) {
  return h(
    "a",
    { href: `#/organizations/${encodeURIComponent(org)}/configurations`, "data-configuration-id": id },
    text,
  );
}

/** What an entry is about, by name, linked to its page when it has one. */
function about(org, entry) {
  const details = entry.details ?? {};
  if (entry.action.startsWith("device.") && entry.subject) {
    return deviceLink(org, entry.subject, details.name ?? entry.subject);
  }
  if (entry.action.startsWith("configuration.") && entry.subject) {
    const parts = [configurationLink(org, entry.subject, details.name ?? entry.subject)];
    if (entry.action === "configuration.apply_failed" && entry.actor.startsWith("device:")) {
      const device = entry.actor.slice("device:".length);
      parts.push(" on ", deviceLink(org, device, details.device_name ?? device));
    }
    return h("span", {}, parts);
  }
  if (entry.action === "license.renewed" && details.device_id) {
    return h("span", {}, "License of ", deviceLink(org, details.device_id, details.device_name ?? details.device_id));
  }
  if (entry.action === "pairing.refused") {
    return details.device_name ? `${details.device_name} (code ${details.label ?? entry.subject})` : entry.subject ?? "—";
  }
  return details.name ?? details.label ?? entry.subject ?? "—";
}

/** The details left once the names shown in "About" are taken out. */
function detailsText(entry) {
  const details = entry.details ?? {};
  const shown = Object.entries(details).filter(([key]) => key !== "name" && key !== "device_name");
  if (shown.length === 0) return "—";
  return shown
    .map(([key, value]) => `${key}: ${value !== null && typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(", ");
}

/** One entry as a row of the audit table (also the device page's history). */
export function auditRow(org, entry) {
  const actor = entry.actor.startsWith("device:")
    ? deviceLink(org, entry.actor.slice("device:".length), entry.actor)
    : entry.actor;
  return h(
    "tr",
    { "data-action": entry.action },
    h("td", { "data-label": "When" }, formatTime(entry.at)),
    h("td", { "data-label": "Action" }, h("code", {}, entry.action)),
    h("td", { "data-label": "By" }, actor),
    h("td", { "data-label": "About", class: "about" }, about(org, entry)),
    h("td", { "data-label": "Details", class: "details" }, detailsText(entry)),
  );
}

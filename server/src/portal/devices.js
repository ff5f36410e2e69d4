// The Devices section: one row per license, with the device that holds it.

import { get, getAll, segment } from "./api.js";
import { formatTime, h, renderChrome, show, showError, table } from "./ui.js";

const STATUS_LABELS = { free: "Free", reserved: "Reserved", assigned: "Assigned", expired: "Expired" };

export async function renderDevices(org) {
  renderChrome(org, "devices");
  show("Devices", h("h1", {}, "Devices"), h("p", { class: "muted" }, "Loading…"));
  let organization, summary, licenses, devices;
  try {
    const base = `/v1/organizations/${segment(org)}`;
    [organization, summary, licenses, devices] = await Promise.all([
      get(base),
      get(`${base}/licenses/summary`),
      getAll(`${base}/licenses`),
      getAll(`${base}/devices`),
    ]);
  } catch (error) {
    showError("Devices", error);
    return;
  }
  const devicesByLicense = new Map(devices.map((device) => [device.license_id, device]));

  const counts = [
    ["total", "Total"],
    ["free", "Free"],
    ["reserved", "Reserved"],
    ["assigned", "Assigned"],
    ["expired", "Expired"],
  ];
  const summaryList = h(
    "dl",
    { id: "summary", class: "summary" },
    counts.map(([key, label]) =>
      h("div", { class: `count count-${key}` }, h("dt", {}, label), h("dd", { "data-count": key }, summary[key])),
    ),
  );
  const noFree =
    summary.free === 0
      ? h(
          "p",
          { id: "no-free-licenses", class: "alert warning", role: "status" },
          h("strong", {}, "No free license. "),
          "New devices cannot pair until a license is added or an assigned one is freed.",
        )
      : null;

  const licensesTable = licenses.length
    ? table(
        { id: "licenses", class: "licenses" },
        "Licenses and the devices that hold them",
        ["Status", "Valid until", "Device", "Model", "App version", "Configuration", "Online", "Last seen"],
        h("tbody", {}, licenses.map((license) => licenseRow(license, devicesByLicense.get(license.id)))),
      )
    : h("p", { id: "no-licenses" }, "This organization has no licenses yet.");

  show(
    "Devices",
    h("p", { class: "org-name", id: "org-name" }, organization.name),
    h("h1", {}, "Devices"),
    h("section", { "aria-label": "License summary" }, summaryList, noFree),
    h("section", { "aria-label": "Licenses" }, h("h2", {}, "Licenses"), h("div", { class: "table-wrap" }, licensesTable)),
  );
}

function licenseRow(license, device) {
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  const status = h("span", { class: `badge status-${license.status}` }, STATUS_LABELS[license.status] ?? license.status);
  if (!device) {
    const note = license.status === "reserved" ? `reserved until ${formatTime(license.reserved_until)}` : "—";
    return h(
      "tr",
      { "data-license-id": license.id, "data-status": license.status },
      cell("Status", status),
      cell("Valid until", license.valid_until ? formatTime(license.valid_until) : "No end"),
      h("td", { "data-label": "Device", colspan: 6, class: "muted" }, note),
    );
  }
  return h(
    "tr",
    { "data-license-id": license.id, "data-status": license.status, "data-device-id": device.id },
    cell("Status", status),
    cell("Valid until", license.valid_until ? formatTime(license.valid_until) : "No end"),
    cell("Device", h("span", { class: "device-name" }, device.name)),
    cell("Model", h("span", { class: "device-model" }, device.model)),
    cell("App version", device.app_version),
    cell("Configuration", configurationState(device)),
    cell(
      "Online",
      h(
        "span",
        { class: `badge ${device.online ? "online" : "offline"} device-online` },
        device.online ? "Online" : "Offline",
      ),
    ),
    cell("Last seen", formatTime(device.last_seen)),
  );
}

/** What the device should run against what it last reported. */
function configurationState(device) {
  const assigned = device.configuration;
  const applied = device.applied;
  if (!assigned) return h("span", { class: "muted" }, "None");
  const name = `${assigned.name} (rev. ${assigned.revision})`;
  let state;
  if (applied && applied.configuration_id === assigned.id && applied.revision === assigned.revision) {
    state =
      applied.status === "applied"
        ? h("span", { class: "badge ok" }, "Applied")
        : h("span", { class: "badge failed", title: applied.reason ?? "" }, `Failed${applied.reason ? `: ${applied.reason}` : ""}`);
  } else if (applied && applied.status === "failed") {
    state = h("span", { class: "badge failed" }, `Pending (rev. ${applied.revision} failed)`);
  } else if (applied) {
    state = h("span", { class: "badge pending" }, `Pending (runs rev. ${applied.revision})`);
  } else {
    state = h("span", { class: "badge pending" }, "Pending");
  }
  return h("span", { class: "configuration" }, name, " ", state);
}

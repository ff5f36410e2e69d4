// The Devices section: where devices are paired (reusable codes, from codes.js's "Pair devices",
// and Assign device on a free license), and one row per license, with the device that holds it
// and what an admin does there: assign a device to a free license (a single-use code shown as a
// QR in a dialog), change a device's configuration, unpair a device, and (the operator only) add
// licenses.
//
// The page is built once by `renderDevices`, which keeps a page-state object. After that, only
// parts of it change: `refreshLicense`, `refreshDevice` and `refreshSummary` re-read one license
// (with its device), one device or the summary from the API and replace just that part of the
// page, keeping an open Assign dialog or Configure panel when its row is still in a state it
// fits. The actions below call them after each change, and so does the organization's live feed
// (live.js) with the ids its events carry: a device pairing, coming online, going offline or
// applying a revision shows without a reload.
//
// Layout: five columns (status, device, configuration, last seen, actions) whose cells wrap, so
// that the table never needs more than the page's width and every row's actions stay in view;
// at phone width each row is a card.

import { ApiError, del, get, getAll, newIdempotencyKey, post, put, segment, session } from "./api.js";
import { pairingSection } from "./codes.js";
import { watch } from "./live.js";
import { errorMessage, formatTime, h, openDialog, renderChrome, show, showError, table } from "./ui.js";

const STATUS_LABELS = { free: "Free", reserved: "Reserved", assigned: "Assigned", expired: "Expired" };

/** The table's columns: a license's status and validity, its device (name, model, app version),
 * the device's configuration, whether it is online and when it was last seen, the row's actions. */
const COLUMNS = ["Status", "Device", "Configuration", "Last seen", "Actions"];

/** The most licenses one "Add licenses" may add (the API's limit). */
const MAX_LICENSES_ADDED = 100_000;

const SUMMARY_COUNTS = [
  ["total", "Total"],
  ["free", "Free"],
  ["reserved", "Reserved"],
  ["assigned", "Assigned"],
  ["expired", "Expired"],
];

export async function renderDevices(org) {
  renderChrome(org, "devices");
  show("Devices", h("h1", {}, "Devices"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  let organization, page, me;
  const asked = Date.now();
  try {
    [organization, page, me] = await Promise.all([get(base), readLicenses(base), get("/v1/whoami")]);
  } catch (error) {
    showError("Devices", error);
    return;
  }

  const state = {
    /** The server's clock minus this browser's (reservations end by the server's clock). */
    clockOffset: Date.parse(me.now) - (asked + Date.now()) / 2,
    base,
    operator: session.role() === "operator",
    /** License id → { license, device, row, panel }, in the table's order. */
    entries: new Map(),
    /** Device id → the id of the license it holds. */
    licenseOfDevice: new Map(),
    /** License id → the number of its latest refresh, so that an older answer never wins. */
    refreshes: new Map(),
    tbody: h("tbody", {}),
    counts: new Map(),
    warningSlot: h("div", { class: "warning-slot" }),
    status: h("p", { id: "devices-status", class: "muted", role: "status" }),
    empty: h("p", { id: "no-licenses" }, "This organization has no licenses yet."),
    licensesTable: null,
    live: h("p", { id: "live-state", class: "live-state", "data-state": "connecting" }, "Connecting to live updates…"),
    /** What the live feed said changed, not yet re-read. */
    pending: { devices: new Set(), summary: false, everything: false },
    flushing: false,
    flushTimer: null,
    lastFullReload: 0,
    /** The "Pair devices" part: the active reusable codes and Create Code. */
    pairing: pairingSection(org),
    codesTimer: null,
  };

  // Every row is built once, into a body that is not on the page yet; one click listener on the
  // body serves the buttons of every row, however many there are.
  for (const [license, device] of page.rows) placeLicense(state, license, device);
  state.tbody.addEventListener("click", (event) => onRowAction(state, event));
  state.licensesTable = table(
    { id: "licenses", class: "licenses" },
    "Licenses and the devices that hold them",
    COLUMNS,
    state.tbody,
  );

  const summaryList = h(
    "dl",
    { id: "summary", class: "summary" },
    SUMMARY_COUNTS.map(([key, label]) => {
      const value = h("dd", { "data-count": key });
      state.counts.set(key, value);
      return h("div", { class: `count count-${key}` }, h("dt", {}, label), value);
    }),
  );
  showSummary(state, page.summary);
  updateEmpty(state);

  show(
    "Devices",
    h("p", { class: "org-name", id: "org-name" }, organization.name),
    h("div", { class: "title-row" }, h("h1", {}, "Devices"), state.live),
    h("section", { "aria-label": "License summary" }, summaryList, state.warningSlot),
    state.pairing.element,
    addLicensesSection(state),
    h(
      "section",
      { "aria-label": "Licenses" },
      h("h2", {}, "Licenses"),
      state.status,
      state.empty,
      h("div", { class: "table-wrap" }, state.licensesTable),
    ),
  );
  startLive(state, org);
}

// --- live updates ------------------------------------------------------------------------------

/** Re-reading this many devices one by one costs more than re-reading the whole page. */
const FULL_RELOAD_ABOVE = 100;
/** Events are gathered this long before the page re-reads what they name. */
const FLUSH_DELAY_MS = 150;
/** A whole-page re-read happens at most this often (a big organization enrolling at full speed
 * sends events many times a second). */
const FULL_RELOAD_EVERY_MS = 2000;

function startLive(state, org) {
  // The user may have left while the page loaded.
  if (!state.tbody.isConnected) return;
  watch(
    org,
    (name, data) => {
      const pending = state.pending;
      // A code created or revoked, or a pairing (a code's uses): the active codes are re-read.
      if (name === "codes" || name === "resync" || (name === "devices" && data.change === "paired")) {
        scheduleCodesRefresh(state);
      }
      if (name === "devices") {
        for (const id of data.device_ids ?? []) pending.devices.add(id);
        // A pairing takes a license and an ended pairing frees one: the counts change.
        if (data.change === "paired" || data.change === "ended") pending.summary = true;
      } else if (name === "licenses" || name === "configurations" || name === "resync") {
        // New licenses (whose ids the event does not carry), every device of an edited
        // configuration, or missed events: re-read the page.
        pending.everything = true;
      } else {
        return;
      }
      scheduleFlush(state);
    },
    (feedState) => showLiveState(state, feedState),
  );
}

function showLiveState(state, feedState) {
  const labels = {
    connecting: "Connecting to live updates…",
    live: "Live",
    reconnecting: "Live updates interrupted; reconnecting…",
    off: "Live updates unavailable; reload to see changes.",
  };
  state.live.dataset.state = feedState;
  state.live.textContent = labels[feedState] ?? feedState;
}

/** The active codes are re-read at most this often: a mass enrollment pairs many devices a second. */
const CODES_REFRESH_DELAY_MS = 1000;

function scheduleCodesRefresh(state) {
  if (state.codesTimer) return;
  state.codesTimer = setTimeout(() => {
    state.codesTimer = null;
    if (state.tbody.isConnected) state.pairing.refresh();
  }, CODES_REFRESH_DELAY_MS);
}

function scheduleFlush(state) {
  if (state.flushTimer || state.flushing) return;
  state.flushTimer = setTimeout(() => flush(state), FLUSH_DELAY_MS);
}

/** Re-reads what the gathered events named: the rows of their devices, or the whole page. */
async function flush(state) {
  state.flushTimer = null;
  const { devices, summary, everything } = state.pending;
  state.pending = { devices: new Set(), summary: false, everything: false };
  state.flushing = true;
  try {
    if (everything || devices.size > FULL_RELOAD_ABOVE) {
      const wait = state.lastFullReload + FULL_RELOAD_EVERY_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      state.lastFullReload = Date.now();
      await reloadAll(state);
    } else {
      const ids = [...devices];
      // A few at a time: the admin API serves other users too.
      for (let start = 0; start < ids.length; start += 8) {
        await Promise.all(ids.slice(start, start + 8).map((id) => refreshDevice(state, id)));
      }
      if (summary) await refreshSummary(state);
    }
  } finally {
    state.flushing = false;
  }
  const next = state.pending;
  if (next.everything || next.summary || next.devices.size > 0) scheduleFlush(state);
}

/** Re-reads every license, device and count, and puts each row in place (open panels stay when
 * they still fit); rows of licenses that no longer exist go. */
async function reloadAll(state) {
  let page;
  try {
    page = await readLicenses(state.base);
  } catch (error) {
    state.status.textContent = `Could not update the page: ${errorMessage(error)}`;
    return;
  }
  const present = new Set();
  for (const [license, device] of page.rows) {
    present.add(license.id);
    const entry = state.entries.get(license.id);
    // Unchanged rows are left alone, so that a big page does not flicker or lose focus.
    if (entry && sameJson(entry.license, license) && sameJson(entry.device, device)) continue;
    placeLicense(state, license, device);
  }
  for (const licenseId of [...state.entries.keys()]) {
    if (!present.has(licenseId)) removeLicense(state, licenseId);
  }
  showSummary(state, page.summary);
}

/** The license counts, and every license with the device holding it (or null), in list order. */
async function readLicenses(base) {
  const [summary, licenses, devices] = await Promise.all([
    get(`${base}/licenses/summary`),
    getAll(`${base}/licenses`),
    getAll(`${base}/devices`),
  ]);
  const devicesByLicense = new Map(devices.map((device) => [device.license_id, device]));
  return { summary, rows: licenses.map((license) => [license, devicesByLicense.get(license.id) ?? null]) };
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// --- refreshing parts of the page --------------------------------------------------------------

/**
 * Re-reads one license and the device holding it, and replaces its row (adding it when the page
 * does not show it yet). An open panel stays when it still fits the row's new state.
 */
async function refreshLicense(state, licenseId) {
  const ticket = (state.refreshes.get(licenseId) ?? 0) + 1;
  state.refreshes.set(licenseId, ticket);
  try {
    const license = await get(`${state.base}/licenses/${segment(licenseId)}`);
    let device = null;
    if (license.device_id) {
      try {
        device = await get(`${state.base}/devices/${segment(license.device_id)}`);
      } catch (error) {
        // Unpaired between the two reads: the license answer is already out of date, and the
        // next refresh (the unpairing's own) shows it free.
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
    }
    if (state.refreshes.get(licenseId) !== ticket) return;
    placeLicense(state, license, device);
  } catch (error) {
    if (state.refreshes.get(licenseId) !== ticket) return;
    if (error instanceof ApiError && error.status === 404) {
      removeLicense(state, licenseId);
    } else {
      state.status.textContent = `Could not update a license: ${errorMessage(error)}`;
    }
  }
}

/** Re-reads one device's row: the row of the license it holds (a new device's too). */
async function refreshDevice(state, deviceId) {
  const known = state.licenseOfDevice.get(deviceId);
  if (known) {
    await refreshLicense(state, known);
    return;
  }
  try {
    const device = await get(`${state.base}/devices/${segment(deviceId)}`);
    await refreshLicense(state, device.license_id);
  } catch (error) {
    // A device that is gone and was never shown changes nothing on this page.
    if (!(error instanceof ApiError && error.status === 404)) {
      state.status.textContent = `Could not update a device: ${errorMessage(error)}`;
    }
  }
}

/** Re-reads the license counts (and with them the "no free license" warning). */
async function refreshSummary(state) {
  try {
    showSummary(state, await get(`${state.base}/licenses/summary`));
  } catch (error) {
    state.status.textContent = `Could not update the license counts: ${errorMessage(error)}`;
  }
}

/** Puts a license's row in place: replaces the shown one, or adds it at the end (the newest). */
function placeLicense(state, license, device) {
  const row = licenseRow(license, device);
  const entry = state.entries.get(license.id);
  if (!entry) {
    state.entries.set(license.id, { license, device, row, panel: null });
    state.tbody.append(row);
    updateEmpty(state);
  } else {
    if (entry.device && entry.device.id !== device?.id) state.licenseOfDevice.delete(entry.device.id);
    // A keyboard user on one of the row's buttons stays on the same button of the new row.
    const focused = entry.row.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    entry.row.replaceWith(row);
    Object.assign(entry, { license, device, row });
    if (entry.panel && !entry.panel.fits(license, device)) {
      // The usual end of an Assign dialog: the device scanned its code.
      if (entry.panel.kind === "assign" && device) state.status.textContent = `${device.name} paired with the license.`;
      closePanel(entry);
    }
    if (focused) row.querySelector(`button[data-action="${focused}"]`)?.focus();
  }
  if (device) state.licenseOfDevice.set(device.id, license.id);
  watchReservation(state, state.entries.get(license.id));
}

/** A reservation ends by itself when its single-use code expires, and no event says so: the row
 * (and the counts) are re-read just after the server's expiry time. */
function watchReservation(state, entry) {
  clearTimeout(entry.reservationTimer);
  entry.reservationTimer = null;
  if (entry.license.status !== "reserved" || !entry.license.reserved_until) return;
  const serverNow = Date.now() + (Number.isFinite(state.clockOffset) ? state.clockOffset : 0);
  const left = Date.parse(entry.license.reserved_until) - serverNow;
  if (!Number.isFinite(left)) return;
  entry.reservationTimer = setTimeout(() => {
    if (!state.tbody.isConnected) return;
    refreshLicense(state, entry.license.id);
    refreshSummary(state);
  }, Math.max(0, left) + 1000);
}

function removeLicense(state, licenseId) {
  const entry = state.entries.get(licenseId);
  if (!entry) return;
  clearTimeout(entry.reservationTimer);
  closePanel(entry);
  if (entry.device) state.licenseOfDevice.delete(entry.device.id);
  entry.row.remove();
  state.entries.delete(licenseId);
  updateEmpty(state);
}

function updateEmpty(state) {
  const empty = state.entries.size === 0;
  state.empty.hidden = !empty;
  if (state.licensesTable) state.licensesTable.hidden = empty;
}

function showSummary(state, summary) {
  for (const [key, element] of state.counts) element.textContent = summary[key];
  const warning = noFreeWarning(state, summary);
  if (warning) state.warningSlot.replaceChildren(warning);
  else state.warningSlot.replaceChildren();
}

/** Said where the admin looks when no device can pair, with the next step for this user. */
function noFreeWarning(state, summary) {
  if (summary.free > 0) return null;
  const reserved =
    summary.reserved > 0
      ? `${summary.reserved === 1 ? "One license is" : `${summary.reserved} licenses are`} reserved for a device ` +
        "being assigned with its single-use code. "
      : "";
  const nextStep = state.operator
    ? "Add licenses with the form below."
    : "Buy licenses from your paird provider to pair more devices.";
  return h(
    "p",
    { id: "no-free-licenses", class: "alert warning", role: "status" },
    h("strong", {}, "No free license. "),
    "New devices cannot pair until a license is added or an assigned one is freed. ",
    reserved,
    nextStep,
  );
}

// --- rows --------------------------------------------------------------------------------------

function licenseRow(license, device) {
  // A cell's content is one block, so that at phone width (where the cell is a labelled line) its
  // parts stay together on the right.
  const cell = (label, ...content) => h("td", { "data-label": label }, h("div", { class: "cell" }, ...content));
  const status = cell(
    "Status",
    h("span", { class: `badge status-${license.status}` }, STATUS_LABELS[license.status] ?? license.status),
    h("span", { class: "detail valid-until" }, license.valid_until ? `until ${formatTime(license.valid_until)}` : "No end"),
  );
  if (!device) {
    const note = license.status === "reserved" ? `Reserved until ${formatTime(license.reserved_until)}` : "—";
    const assignable = license.status === "free" || license.status === "reserved";
    return h(
      "tr",
      { "data-license-id": license.id, "data-status": license.status },
      status,
      h("td", { "data-label": "Device", colspan: COLUMNS.length - 2, class: "muted" }, note),
      actionsCell(assignable && actionButton("assign", "Assign device", false, "Show a single-use code for this license")),
    );
  }
  return h(
    "tr",
    { "data-license-id": license.id, "data-status": license.status, "data-device-id": device.id },
    status,
    cell(
      "Device",
      h("span", { class: "device-name" }, device.name),
      h(
        "span",
        { class: "detail" },
        h("span", { class: "device-model" }, device.model),
        " · app ",
        h("span", { class: "device-app-version" }, device.app_version),
      ),
    ),
    cell("Configuration", configurationState(device)),
    cell(
      "Last seen",
      h(
        "span",
        { class: `badge ${device.online ? "online" : "offline"} device-online` },
        device.online ? "Online" : "Offline",
      ),
      h("span", { class: "detail last-seen" }, formatTime(device.last_seen)),
    ),
    actionsCell(
      license.status === "assigned" && actionButton("configure", "Configure", true, `Choose the configuration of ${device.name}`),
      actionButton("unpair", "Unpair", true, `Unpair ${device.name}`),
    ),
  );
}

function actionsCell(...buttons) {
  return h("td", { "data-label": "Actions", class: "actions" }, h("div", { class: "row-actions" }, buttons));
}

function actionButton(action, label, secondary, description) {
  return h(
    "button",
    { type: "button", class: secondary ? "button secondary" : "button", "data-action": action, "aria-label": description },
    label,
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
  } else if (applied && applied.configuration_id !== assigned.id) {
    state = h("span", { class: "badge pending" }, "Pending (runs another configuration)");
  } else if (applied) {
    state = h("span", { class: "badge pending" }, `Pending (runs rev. ${applied.revision})`);
  } else {
    state = h("span", { class: "badge pending" }, "Pending");
  }
  return h("span", { class: "configuration" }, name, " ", state);
}

function onRowAction(state, event) {
  const button = event.target.closest("button[data-action]");
  const row = button?.closest("tr[data-license-id]");
  if (!row) return;
  const entry = state.entries.get(row.dataset.licenseId);
  if (!entry || entry.row !== row) return;
  if (button.dataset.action === "assign") openAssign(state, entry);
  else if (button.dataset.action === "configure") openConfigure(state, entry);
  else if (button.dataset.action === "unpair") unpair(state, entry);
}

// --- panels and dialogs: one at most per row ----------------------------------------------------
//
// An entry's `panel` is what is open for its row: the Configure panel (a table row of its own
// right below it) or the Assign dialog. `fits(license, device)` says whether it still belongs to
// the row after a refresh; `close()` closes it.

/**
 * Opens a panel under the entry's row. `onEscape` runs on the Escape key; `stop` when it is
 * closed.
 */
function openRowPanel(entry, kind, title, content, { fits, onEscape, stop = () => {} }) {
  closePanel(entry);
  const titleId = `panel-title-${entry.license.id}`;
  const heading = h("h3", { id: titleId, tabindex: -1 }, title);
  const box = h("div", { class: `row-panel-box ${kind}-panel`, role: "group", "aria-labelledby": titleId }, heading, content);
  const row = h(
    "tr",
    { class: "row-panel", "data-panel-for": entry.license.id, "data-panel": kind },
    h("td", { colspan: COLUMNS.length }, box),
  );
  row.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      onEscape();
    }
  });
  entry.row.after(row);
  entry.panel = {
    kind,
    heading,
    fits,
    close() {
      stop();
      row.remove();
    },
  };
  return entry.panel;
}

/**
 * Opens a dialog for the entry's row (see ui.js's `openDialog`); when it closes, the keyboard goes
 * back to the row's `action` button, or to the row's first button when that one is gone (the
 * license was assigned meanwhile).
 */
function openRowDialog(entry, kind, action, title, content, { fits, onEscape, stop }) {
  closePanel(entry);
  const panel = { kind, fits, heading: null, close: () => {} };
  const dialog = openDialog({
    title,
    content,
    className: `${kind}-dialog`,
    attributes: { "data-license-id": entry.license.id },
    onEscape,
    onClose: () => {
      stop();
      if (entry.panel === panel) entry.panel = null;
    },
    returnFocus: () =>
      entry.row.querySelector(`button[data-action="${action}"]`) ?? entry.row.querySelector("button") ?? entry.row,
  });
  panel.heading = dialog.heading;
  panel.close = dialog.close;
  entry.panel = panel;
  return panel;
}

function closePanel(entry) {
  if (!entry.panel) return;
  const panel = entry.panel;
  entry.panel = null;
  panel.close();
}

/** Closes the panel and gives the keyboard back to the row's button that opened it. */
function closePanelToRow(entry, action) {
  closePanel(entry);
  entry.row.querySelector(`button[data-action="${action}"]`)?.focus();
}

// --- Assign device: a single-use code for one license ------------------------------------------

function openAssign(state, entry) {
  const licenseId = entry.license.id;
  const image = h("img", { class: "qr assign-qr", alt: "", width: 256, height: 256, hidden: true });
  const payload = h("code", { class: "assign-payload" });
  const countdown = h("p", { class: "countdown", role: "timer" });
  const message = h("p", { class: "assign-message", role: "status" }, "Creating a single-use code…");
  const newCode = h("button", { type: "button", class: "button", "data-action": "new-code" }, "New code");
  const cancel = h("button", { type: "button", class: "button secondary", "data-action": "cancel-code" }, "Cancel");
  const content = h(
    "div",
    { class: "assign-body" },
    image,
    h(
      "div",
      { class: "assign-text" },
      message,
      countdown,
      h("p", { class: "payload" }, payload),
      h("div", { class: "panel-buttons" }, newCode, cancel),
    ),
  );

  let timer = null;
  let deadline = 0;
  const stopTimer = () => {
    clearInterval(timer);
    timer = null;
  };

  const tick = () => {
    if (!content.isConnected) {
      stopTimer();
      return;
    }
    const remaining = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
    countdown.dataset.remainingSeconds = String(remaining);
    if (remaining > 0) {
      countdown.textContent = `Expires in ${formatRemaining(remaining)}`;
      return;
    }
    stopTimer();
    content.classList.add("expired");
    image.hidden = true;
    countdown.textContent = "Expired";
    message.textContent = "This code has expired and pairs no device. Press New code for a fresh one.";
  };

  const createCode = async () => {
    newCode.disabled = true;
    const asked = performance.now();
    try {
      const code = await post(`${state.base}/licenses/${segment(licenseId)}/single-use-code?qr=png`, {});
      if (!content.isConnected) return;
      // The answer carries no separate "server now", but `created_at` is the server's clock when
      // it made the code, so `expires_at - created_at` is the validity as the server counts it.
      // It is counted down from when the request was sent, on the browser's monotonic clock: a
      // wrong clock on this computer does not matter, and the countdown ends a little before the
      // server's expiry, never after. A jump of the server's clock (tests drive it) is not seen
      // here; "New code" works at any time.
      const validity = Date.parse(code.expires_at) - Date.parse(code.created_at);
      deadline = asked + (Number.isFinite(validity) ? validity : 0);
      image.src = `data:image/png;base64,${code.qr_png_base64}`;
      image.alt = "QR code that pairs one device with this license";
      image.hidden = false;
      payload.textContent = code.payload_uri;
      content.classList.remove("expired");
      message.textContent =
        "Scan this code with the app on the device. It works once, for this license only. " +
        "A new code replaces this one.";
      stopTimer();
      timer = setInterval(tick, 250);
      tick();
      await Promise.all([refreshLicense(state, licenseId), refreshSummary(state)]);
    } catch (error) {
      message.textContent = `No code: ${errorMessage(error)}`;
      if (error instanceof ApiError && error.status === 409) await refreshLicense(state, licenseId);
    } finally {
      newCode.disabled = false;
    }
  };

  const cancelCode = async () => {
    stopTimer();
    closePanelToRow(entry, "assign");
    try {
      await del(`${state.base}/licenses/${segment(licenseId)}/single-use-code`);
    } catch (error) {
      state.status.textContent = `The code was not cancelled: ${errorMessage(error)}`;
    }
    await Promise.all([refreshLicense(state, licenseId), refreshSummary(state)]);
  };

  newCode.addEventListener("click", createCode);
  cancel.addEventListener("click", cancelCode);
  // A code fits a license that no device holds yet; once a device holds it, the dialog is done.
  // It is a modal dialog, not a part of the table: nothing clips the QR, whatever the width.
  openRowDialog(entry, "assign", "assign", "Assign a device to this license", content, {
    fits: (license, device) => !device && (license.status === "free" || license.status === "reserved"),
    onEscape: cancelCode,
    stop: stopTimer,
  });
  createCode();
}

/** Seconds left as "45 s" (up to two minutes, so the default minute reads "60 s") or "2 min 05 s". */
function formatRemaining(seconds) {
  if (seconds < 120) return `${seconds} s`;
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

// --- Configure: pick the device's configuration -------------------------------------------------

function openConfigure(state, entry) {
  const device = entry.device;
  const licenseId = entry.license.id;
  const selectId = `configure-select-${licenseId}`;
  const select = h("select", { id: selectId, class: "configure-select", disabled: true }, h("option", {}, "Loading…"));
  const save = h("button", { type: "submit", class: "button", "data-action": "save-configuration", disabled: true }, "Save");
  const close = h("button", { type: "button", class: "button secondary", "data-action": "close-panel" }, "Cancel");
  const message = h("p", { class: "configure-message", role: "status" });
  const form = h(
    "form",
    { class: "configure-form" },
    h("label", { for: selectId }, "Configuration", select),
    h("div", { class: "panel-buttons" }, save, close),
    message,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!select.value) return;
    save.disabled = true;
    const chosen = select.selectedOptions[0]?.dataset.name ?? "the configuration";
    try {
      await put(`${state.base}/devices/${segment(device.id)}/configuration`, {
        configuration_id: select.value,
      });
      closePanelToRow(entry, "configure");
      state.status.textContent = `${device.name} is assigned “${chosen}”; it shows as Pending until the device applies it.`;
      await refreshDevice(state, device.id);
    } catch (error) {
      message.textContent = `Not saved: ${errorMessage(error)}`;
      save.disabled = false;
    }
  });
  close.addEventListener("click", () => closePanelToRow(entry, "configure"));

  const panel = openRowPanel(entry, "configure", `Configuration of ${device.name}`, form, {
    // The panel belongs to this device while it holds the license.
    fits: (license, current) => current?.id === device.id && license.status === "assigned",
    onEscape: () => closePanelToRow(entry, "configure"),
  });
  // The list is still loading (the select is disabled): the heading takes the focus meanwhile.
  panel.heading.focus();

  // The list is read every time the panel opens: another admin may have added one meanwhile.
  getAll(`${state.base}/configurations`).then(
    (configurations) => {
      if (!form.isConnected) return;
      const current = entry.device?.configuration?.id;
      if (configurations.length === 0) {
        select.replaceChildren(h("option", { value: "" }, "No configuration yet"));
        message.textContent = "This organization has no configuration yet: create one in Configurations first.";
        return;
      }
      const options = configurations.map((configuration) =>
        h(
          "option",
          { value: configuration.id, selected: configuration.id === current, "data-name": configuration.name },
          `${configuration.name} (rev. ${configuration.revision})`,
        ),
      );
      if (!current) options.unshift(h("option", { value: "", disabled: true, selected: true }, "Choose a configuration"));
      select.replaceChildren(...options);
      select.disabled = false;
      save.disabled = false;
      // Unless the user has moved on meanwhile, the choice is where the keyboard goes.
      if (document.activeElement === panel.heading) select.focus();
    },
    (error) => {
      if (form.isConnected) message.textContent = `The configurations could not be read: ${errorMessage(error)}`;
    },
  );
}

// --- Unpair -------------------------------------------------------------------------------------

async function unpair(state, entry) {
  const device = entry.device;
  const licenseId = entry.license.id;
  if (
    !window.confirm(
      `Unpair “${device.name}”? Its license becomes free at once, and the device must be paired again with a new code.`,
    )
  ) {
    return;
  }
  try {
    await post(`${state.base}/devices/${segment(device.id)}/unpair`);
    state.status.textContent = `${device.name} was unpaired; its license is free.`;
  } catch (error) {
    // Already unpaired (404): the refresh below shows how things stand.
    if (!(error instanceof ApiError && error.status === 404)) {
      state.status.textContent = `${device.name} was not unpaired: ${errorMessage(error)}`;
    }
  }
  await Promise.all([refreshLicense(state, licenseId), refreshSummary(state)]);
  entry.row.querySelector("button[data-action]")?.focus();
}

// --- Add licenses (operator) --------------------------------------------------------------------

function addLicensesSection(state) {
  if (!state.operator) {
    return h(
      "p",
      { id: "buy-licenses", class: "buy-licenses" },
      "To get more licenses, buy them from your paird provider. They appear here as free licenses once added.",
    );
  }
  const count = h("input", {
    id: "license-count",
    type: "number",
    min: 1,
    max: MAX_LICENSES_ADDED,
    step: 1,
    value: 1,
    required: true,
    inputmode: "numeric",
  });
  const validUntil = h("input", { id: "license-valid-until", type: "date", "aria-describedby": "license-valid-until-help" });
  const submit = h("button", { type: "submit", class: "button", id: "add-licenses-submit" }, "Add licenses");
  const message = h("p", { id: "add-licenses-status", role: "status" });
  const form = h(
    "form",
    { id: "add-licenses", class: "add-licenses-form" },
    h("label", { for: "license-count" }, "Number of licenses", count),
    h("label", { for: "license-valid-until" }, "Valid until (optional)", validUntil),
    submit,
  );

  // One idempotency key per intended purchase: resubmitting after an error whose answer was lost
  // does not add the licenses twice. A new key after success or when the values change.
  let idempotencyKey = newIdempotencyKey();
  form.addEventListener("input", () => {
    idempotencyKey = newIdempotencyKey();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const wanted = Number(count.value);
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > MAX_LICENSES_ADDED) {
      message.textContent = `Enter a whole number from 1 to ${MAX_LICENSES_ADDED.toLocaleString("en")}.`;
      count.focus();
      return;
    }
    const body = { count: wanted };
    // A date means "valid through that day": until its end, in UTC like every time shown here.
    if (validUntil.value) body.valid_until = `${validUntil.value}T23:59:59.999Z`;
    submit.disabled = true;
    message.textContent = "Adding…";
    try {
      const added = await post(`${state.base}/licenses`, body, { "Idempotency-Key": idempotencyKey });
      idempotencyKey = newIdempotencyKey();
      message.textContent = `Added ${added.license_ids.length} ${added.license_ids.length === 1 ? "license" : "licenses"}.`;
      await Promise.all([showAddedLicenses(state, added.license_ids), refreshSummary(state)]);
    } catch (error) {
      message.textContent = `No licenses added: ${errorMessage(error)}`;
    } finally {
      submit.disabled = false;
    }
  });

  return h(
    "section",
    { "aria-labelledby": "add-licenses-title", class: "add-licenses" },
    h("h2", { id: "add-licenses-title" }, "Add licenses"),
    form,
    h(
      "p",
      { id: "license-valid-until-help", class: "muted" },
      "Licenses end at the end of the chosen day (UTC); without a date they do not end.",
    ),
    message,
  );
}

/**
 * Adds the rows of new licenses. They are free when created, so one read of the free licenses
 * (a page per 1,000) brings them all; one that a device took meanwhile is read on its own.
 */
async function showAddedLicenses(state, licenseIds) {
  const missing = new Set(licenseIds.filter((id) => !state.entries.has(id)));
  try {
    const free = await getAll(`${state.base}/licenses?status=free`);
    for (const license of free) {
      if (missing.delete(license.id)) placeLicense(state, license, null);
    }
  } catch (error) {
    state.status.textContent = `The new licenses could not be read: ${errorMessage(error)}`;
  }
  await Promise.all([...missing].map((id) => refreshLicense(state, id)));
}

// The Devices section: where devices are paired (reusable codes, from codes.js's "Pair devices",
// and Assign device on a free license), and the organization's licenses with the devices that
// hold them, one page of 50 at a time, and what an admin does there: assign a device to a free
// license (a single-use code shown as a QR in a dialog), change a device's configuration, unpair
// a device, act on many devices at once (unpair, assign a configuration), export the list as CSV,
// and (the operator only) add licenses.
//
// The list is the admin API's fleet list (`GET .../licenses` with `q`, the filters, `sort`,
// `limit=50` and a keyset `cursor`; docs/admin-api.md "Fleet lists"): the server searches,
// filters, sorts and counts, and the page never reads the whole organization. What is shown (the
// search, the filters, the sort and the page's cursor, with the cursors of the pages before it
// for Previous) is in the address's hash (`#/organizations/{org}/devices?q=van&sort=-last_seen`),
// so a reload, a bookmark and the browser's back and forward buttons show the same list;
// app.js hands a change of only that part to `updateDevicesView` instead of rebuilding the page.
//
// After the page is built, only parts of it change: `refreshLicense`, `refreshDevice` and
// `refreshSummary` re-read one license (with its device), one device or the summary and replace
// just that part, keeping an open Assign dialog or Configure panel when its row is still in a
// state it fits. The organization's live feed (live.js) names what changed: a device shown on the
// page is re-read on its own; a device that pairs, new licenses or an edited configuration make
// the page re-read its current page of 50 (gathered, at most once a second, and during a burst of
// events once it quiets, at most 2 s late), never the whole list. The devices waiting for a
// license (waiting.js) are shown under the summary and re-read on the feed's `waiting` events.
//
// Layout: five columns (status with the row's checkbox, device, configuration, last seen,
// actions) whose cells wrap, so that the table never needs more than the page's width and every
// row's actions stay in view; at phone width each row is a card.

import { ApiError, del, get, getAll, newIdempotencyKey, post, put, segment, session } from "./api.js";
import { pairingSection } from "./codes.js";
import { inactiveReleaseSection } from "./inactive.js";
import { watch } from "./live.js";
import { errorMessage, formatTime, h, openDialog, renderChrome, show, showError } from "./ui.js";
import { waitingSection } from "./waiting.js";

const STATUS_LABELS = { free: "Free", reserved: "Reserved", assigned: "Assigned", expired: "Expired" };

/** The table's columns: a license's status and validity, its device (name, model, app version),
 * the device's configuration, whether it is online and when it was last seen, the row's actions;
 * with the `sort` key of the columns whose header sorts the list. */
const COLUMNS = [
  ["Status", "status"],
  ["Device", "name"],
  ["Configuration", null],
  ["Last seen", "last_seen"],
  ["Actions", null],
];

/** The filters on a license's device (all but `status`), and the sorts by a device's key. */
const DEVICE_FILTERS = ["q", "online", "not_seen_for", "configuration", "revision", "app_version", "code"];
const DEVICE_SORTS = new Set(["name", "-name", "last_seen", "-last_seen", "paired_at", "-paired_at"]);

/** Rows per page. */
const PAGE_SIZE = 50;

/** How long typing pauses before the search is sent. */
const SEARCH_DEBOUNCE_MS = 120;

/** The most licenses one "Add licenses" may add (the API's limit). */
const MAX_LICENSES_ADDED = 100_000;

const SUMMARY_COUNTS = [
  ["total", "Total"],
  ["free", "Free"],
  ["reserved", "Reserved"],
  ["assigned", "Assigned"],
  ["expired", "Expired"],
];

/** The list's filters as the hash and the API name them (`not_seen_for` is in days in the hash,
 * sent as the `not_seen_since` time). */
const FILTERS = ["q", "status", "online", "not_seen_for", "configuration", "revision", "app_version", "code"];

const SORTS = [
  ["id", "Purchase order"],
  ["name", "Name (A–Z)"],
  ["-name", "Name (Z–A)"],
  ["-last_seen", "Last seen (newest)"],
  ["last_seen", "Last seen (oldest)"],
  ["-paired_at", "Paired (newest)"],
  ["paired_at", "Paired (oldest)"],
  ["status", "Status"],
  ["-status", "Status (reversed)"],
];

// --- the list's state in the address -----------------------------------------------------------

/** The view a hash's query part asks for: filters, sort, the page's cursor and those before it. */
function parseView(query) {
  const params = new URLSearchParams(query ?? "");
  const view = { sort: params.get("sort") || "id", cursor: params.get("cursor") || null, back: params.getAll("back") };
  for (const name of FILTERS) view[name] = params.get(name) ?? "";
  if (!SORTS.some(([value]) => value === view.sort)) view.sort = "id";
  if (!view.cursor) view.back = [];
  return view;
}

/** The hash's query part of a view ("" for the default view). */
function viewQuery(view) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (view[name]) params.set(name, view[name]);
  if (view.sort !== "id") params.set("sort", view.sort);
  if (view.cursor) {
    params.set("cursor", view.cursor);
    // The first page has no cursor: it is "" in the stack.
    for (const cursor of view.back) params.append("back", cursor);
  }
  return params.toString();
}

/** The API's filter object of a view (what the list, the CSV export and "all matching" send). */
function apiFilter(state, view = state.view) {
  const filter = {};
  for (const name of FILTERS) {
    if (!view[name]) continue;
    if (name === "not_seen_for") {
      const days = Number(view[name]);
      if (!Number.isFinite(days) || days <= 0) continue;
      filter.not_seen_since = new Date(serverNow(state) - days * 86_400_000).toISOString();
    } else {
      filter[name] = view[name];
    }
  }
  return filter;
}

function listQuery(state, { paged }) {
  const params = new URLSearchParams(apiFilter(state));
  if (state.view.sort !== "id") params.set("sort", state.view.sort);
  if (paged) {
    params.set("limit", String(PAGE_SIZE));
    if (state.view.cursor) params.set("cursor", state.view.cursor);
  }
  return params.toString();
}

function hashOf(state, view) {
  const query = viewQuery(view);
  return `#/organizations/${segment(state.org)}/devices${query ? `?${query}` : ""}`;
}

/** The page that is shown now, for app.js's router. */
let current = null;

/**
 * Called by the router when the hash changes: when only the list's query changed on the Devices
 * page already shown (back, forward, a link), the list follows and true is returned; otherwise
 * the router builds the page.
 */
export function updateDevicesView(org, query) {
  if (!current || current.org !== org || !current.tbody.isConnected) return false;
  const view = parseView(query);
  if (viewQuery(view) === viewQuery(current.view)) return true;
  current.view = view;
  showControls(current);
  loadPage(current, { fresh: true });
  return true;
}

/** Shows `view`: a new history entry (`push`) or the same one (typing a search). */
function navigate(state, view, { push }) {
  state.view = view;
  const hash = hashOf(state, view);
  if (location.hash !== hash) {
    if (push) history.pushState(null, "", hash);
    else history.replaceState(null, "", hash);
  }
  showControls(state);
  loadPage(state, { fresh: true });
}

/** A view with some filters or the sort changed: back to the first page. */
function withChanges(state, changes) {
  return { ...state.view, ...changes, cursor: null, back: [] };
}

/** The server's time now, in milliseconds, by the offset of its clock read when the page opened. */
function serverNow(state) {
  return Date.now() + (Number.isFinite(state.clockOffset) ? state.clockOffset : 0);
}

export async function renderDevices(org, query = "") {
  performance.mark("devices-start");
  renderChrome(org, "devices");
  show("Devices", h("h1", {}, "Devices"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  const state = {
    org,
    base,
    view: parseView(query),
    operator: session.role() === "operator",
    /** License id → { license, device, row, panel }, in the table's order. */
    entries: new Map(),
    /** Device id → the id of the license it holds. */
    licenseOfDevice: new Map(),
    /** License id → the number of its latest refresh, so that an older answer never wins. */
    refreshes: new Map(),
    /** The number of the latest page read, so that an older answer never wins. */
    pageTicket: 0,
    /** Device ids ticked; `allMatching`: "every device matching the filters" instead. */
    selected: new Set(),
    allMatching: false,
    /** How many devices match the filters ({ total, exact }), once read; null before. */
    matching: null,
    total: 0,
    totalExact: true,
    nextCursor: null,
    tbody: h("tbody", {}),
    counts: new Map(),
    warningSlot: h("div", { class: "warning-slot" }),
    status: h("p", { id: "devices-status", class: "muted", role: "status" }),
    empty: h("p", { id: "no-licenses" }, "This organization has no licenses yet."),
    range: h("p", { id: "devices-range", class: "range", "aria-live": "polite" }),
    licensesTable: null,
    live: h("p", { id: "live-state", class: "live-state", "data-state": "connecting" }, "Connecting to live updates…"),
    /** What the live feed said changed, not yet re-read. */
    pending: { devices: new Set(), summary: false, page: false },
    /** When the last live event came, and the first not yet re-read (see `flush`). */
    lastEventAt: 0,
    firstUnreadAt: null,
    flushing: false,
    flushTimer: null,
    lastPageReload: 0,
    /** The "Pair devices" part: the active reusable codes and Create Code. */
    pairing: pairingSection(org),
    /** The devices waiting for a license, under the summary (hidden while none waits). */
    waiting: null,
    codesTimer: null,
    controls: null,
    configurations: [],
    organization: null,
  };
  current = state;
  const asked = Date.now();
  let me;
  try {
    let page;
    [state.organization, me, state.configurations, page] = await Promise.all([
      get(base),
      get("/v1/whoami"),
      getAll(`${base}/configurations`).catch(() => []),
      get(`${base}/licenses/summary`),
    ]);
    state.clockOffset = Date.parse(me.now) - (asked + Date.now()) / 2;
    state.summary = page;
  } catch (error) {
    if (current === state) current = null;
    showError("Devices", error);
    return;
  }
  if (current !== state) return;

  state.tbody.addEventListener("click", (event) => onRowAction(state, event));
  state.tbody.addEventListener("change", (event) => onRowTick(state, event));
  state.licensesTable = licensesTable(state);
  state.controls = listControls(state);
  state.bulk = bulkBar(state);
  state.narrowPageBox = narrowPageBox(state);
  state.pager = pager(state);
  state.waiting = waitingSection(base, { operator: state.operator });

  const summaryList = h(
    "dl",
    { id: "summary", class: "summary" },
    SUMMARY_COUNTS.map(([key, label]) => {
      const value = h("dd", { "data-count": key });
      state.counts.set(key, value);
      return h("div", { class: `count count-${key}` }, h("dt", {}, label), value);
    }),
  );
  showSummary(state, state.summary);

  show(
    "Devices",
    h("p", { class: "org-name", id: "org-name" }, state.organization.name),
    h("div", { class: "title-row" }, h("h1", {}, "Devices"), state.live),
    h("section", { "aria-label": "License summary" }, summaryList, state.warningSlot),
    state.waiting.element,
    state.pairing.element,
    addLicensesSection(state),
    h(
      "section",
      { "aria-label": "Licenses" },
      h("h2", {}, "Licenses"),
      state.controls.element,
      state.bulk.element,
      state.narrowPageBox.element,
      state.status,
      state.range,
      state.empty,
      h("div", { class: "table-wrap" }, state.licensesTable),
      state.pager.element,
    ),
    inactiveReleaseSection(base, state.organization, () => serverNow(state)),
  );
  showControls(state);
  state.waiting.refresh();
  await loadPage(state, { fresh: true });
  performance.mark("devices-first-page");
  startLive(state, org);
}

// --- the list: one page ------------------------------------------------------------------------

/**
 * Reads the current page (with its devices) and shows it. `fresh`: another list (filters, sort or
 * page changed): the selection ends and the rows are replaced; otherwise (the live feed) rows that
 * did not change are left alone, so that nothing flickers or loses focus.
 */
async function loadPage(state, { fresh }) {
  const ticket = ++state.pageTicket;
  if (fresh) state.licensesTable.setAttribute("aria-busy", "true");
  let page, devices;
  try {
    const query = listQuery(state, { paged: true });
    // The device list with the same parameters holds the same devices in the same order when
    // the licenses are filtered on their device or sorted by it (see docs/admin-api.md "Fleet
    // lists"): on a first page it is read alongside, instead of one read per device. Not for a
    // search: it walks every device (~100 ms on 100,000), and twice costs more than 50 reads by id.
    const sameDevices =
      !state.view.cursor &&
      !state.view.q &&
      (DEVICE_FILTERS.some((name) => state.view[name]) || DEVICE_SORTS.has(state.view.sort));
    let listed;
    [page, listed] = await Promise.all([
      get(`${state.base}/licenses?${query}`),
      sameDevices ? get(`${state.base}/devices?${query}`).catch(() => null) : null,
    ]);
    const byId = new Map((listed?.items ?? []).map((device) => [device.id, device]));
    // A device missing from that answer (it paired or changed meanwhile) is read on its own.
    devices = await Promise.all(
      page.items.map((license) => byId.get(license.device_id) ?? readDevice(state, license.device_id)),
    );
  } catch (error) {
    if (ticket !== state.pageTicket) return;
    state.licensesTable.removeAttribute("aria-busy");
    // A cursor from an old address (or another sort) is refused: the first page instead.
    if (error instanceof ApiError && error.status < 500 && state.view.cursor && fresh) {
      navigate(state, { ...state.view, cursor: null, back: [] }, { push: false });
      return;
    }
    state.status.textContent = `Could not read the list: ${errorMessage(error)}`;
    return;
  }
  if (ticket !== state.pageTicket || !state.tbody.isConnected) return;
  state.licensesTable.removeAttribute("aria-busy");
  if (fresh) {
    state.selected.clear();
    state.allMatching = false;
    state.matching = null;
  }
  const present = new Set();
  const order = [];
  page.items.forEach((license, index) => {
    const device = devices[index];
    present.add(license.id);
    order.push(license.id);
    const entry = state.entries.get(license.id);
    if (entry && sameJson(entry.license, license) && sameJson(entry.device, device)) return;
    placeLicense(state, license, device);
  });
  for (const [licenseId, entry] of [...state.entries]) {
    if (present.has(licenseId)) continue;
    // A row with an open dialog or panel stays (at the end) while the user works in it: the
    // license that an Assign dialog reserves leaves a "free" list, but its QR must stay.
    if (entry.panel && !fresh) order.push(licenseId);
    else removeLicense(state, licenseId);
  }
  // The rows in the page's order (with an open Configure panel under its row).
  const shown = [...state.tbody.querySelectorAll(":scope > tr[data-license-id]")].map((row) => row.dataset.licenseId);
  if (!sameJson(shown, order)) {
    const ordered = new Map(order.map((id) => [id, state.entries.get(id)]));
    for (const entry of ordered.values()) {
      state.tbody.append(entry.row);
      if (entry.panel?.row) state.tbody.append(entry.panel.row);
    }
    state.entries = ordered;
  }
  for (const deviceId of [...state.selected]) {
    if (!state.licenseOfDevice.has(deviceId)) state.selected.delete(deviceId);
  }
  state.total = page.total ?? page.items.length;
  state.totalExact = page.total_exact !== false;
  state.nextCursor = page.next_cursor ?? null;
  showRange(state, page.items.length);
  updateEmpty(state);
  showSelection(state);
  // For measuring (BENCHMARKS.md "Issue 15: Devices page"): when a new list is on the page.
  if (fresh) performance.mark("devices-page-shown");
}

/** A license's device, or null (none, or unpaired meanwhile). */
async function readDevice(state, deviceId) {
  if (!deviceId) return null;
  try {
    return await get(`${state.base}/devices/${segment(deviceId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

const NUMBER = new Intl.NumberFormat("en");

/** "1–50 of 20,008", "10,001–10,050 of more than 10,000". */
function showRange(state, rows) {
  const first = state.view.back.length * PAGE_SIZE + (state.view.cursor ? PAGE_SIZE : 0);
  const filtered = Object.keys(apiFilter(state)).length > 0;
  if (rows === 0) {
    state.range.textContent = filtered ? "No license matches." : "";
  } else {
    const of = state.totalExact ? NUMBER.format(state.total) : `more than ${NUMBER.format(state.total)}`;
    state.range.textContent = `${NUMBER.format(first + 1)}–${NUMBER.format(first + rows)} of ${of}`;
  }
  state.pager.previous.disabled = !state.view.cursor;
  state.pager.next.disabled = !state.nextCursor;
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// --- controls: search, filters, sort, paging ---------------------------------------------------

function listControls(state) {
  const field = (id, label, control) => h("label", { for: id, class: "filter" }, label, control);
  const select = (id, name, options) =>
    h(
      "select",
      { id, "data-filter": name },
      options.map(([value, label]) => h("option", { value }, label)),
    );
  const search = h("input", {
    id: "device-search",
    type: "search",
    placeholder: "Name, model, OS, app version, notes",
    autocomplete: "off",
    spellcheck: "false",
    "data-filter": "q",
  });
  const status = select("filter-status", "status", [["", "Any"], ...Object.entries(STATUS_LABELS)]);
  const online = select("filter-online", "online", [["", "Any"], ["true", "Online"], ["false", "Offline"]]);
  const notSeen = select("filter-not-seen", "not_seen_for", [
    ["", "Any time"],
    ["1", "1 day"],
    ["7", "7 days"],
    ["30", "30 days"],
    ["90", "90 days"],
  ]);
  const configuration = select("filter-configuration", "configuration", [
    ["", "Any"],
    ...state.configurations.map((configuration) => [configuration.id, configuration.name]),
  ]);
  const revision = select("filter-revision", "revision", [
    ["", "Any"],
    ["up_to_date", "Up to date"],
    ["pending", "Pending"],
    ["failed", "Failed"],
  ]);
  const appVersion = h("input", { id: "filter-app-version", type: "text", autocomplete: "off", "data-filter": "app_version", size: 8 });
  const code = h("input", { id: "filter-code", type: "text", autocomplete: "off", "data-filter": "code", size: 12 });
  const sort = select("sort", "sort", SORTS);
  const exportButton = h("button", { type: "button", class: "button secondary", id: "export-csv" }, "Export CSV");
  const clear = h("button", { type: "button", class: "button secondary", id: "clear-filters" }, "Clear filters");

  const element = h(
    "form",
    { id: "device-filters", class: "device-filters", role: "search", "aria-label": "Search and filter the list" },
    field("device-search", "Search", search),
    field("filter-status", "Status", status),
    field("filter-online", "Connection", online),
    field("filter-not-seen", "Not seen for", notSeen),
    field("filter-configuration", "Configuration", configuration),
    field("filter-revision", "Revision", revision),
    field("filter-app-version", "App version", appVersion),
    field("filter-code", "Paired with code", code),
    field("sort", "Sort", sort),
    h("div", { class: "filter-buttons" }, clear, exportButton),
  );
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(state.searchTimer);
    applyControl(state, search, true);
  });
  let searchTimer = null;
  search.addEventListener("input", () => {
    performance.mark("devices-search-typed");
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      applyControl(state, search, false);
    }, SEARCH_DEBOUNCE_MS);
  });
  for (const control of [status, online, notSeen, configuration, revision, sort]) {
    control.addEventListener("change", () => applyControl(state, control, true));
  }
  for (const control of [appVersion, code]) {
    control.addEventListener("change", () => applyControl(state, control, true));
  }
  clear.addEventListener("click", () => {
    const cleared = Object.fromEntries(FILTERS.map((name) => [name, ""]));
    navigate(state, withChanges(state, cleared), { push: true });
  });
  exportButton.addEventListener("click", () => exportCsv(state, exportButton));
  return { element, controls: [search, status, online, notSeen, configuration, revision, appVersion, code, sort] };
}

function applyControl(state, control, push) {
  const name = control.dataset.filter;
  const value = name === "q" || name === "app_version" || name === "code" ? control.value.trim() : control.value;
  if ((state.view[name] ?? "") === value) return;
  navigate(state, withChanges(state, { [name]: value || (name === "sort" ? "id" : "") }), { push });
}

/** Puts the view's values in the controls and the headers' sort state. */
function showControls(state) {
  if (!state.controls) return;
  for (const control of state.controls.controls) {
    const value = state.view[control.dataset.filter] ?? "";
    // The search box keeps what is being typed.
    if (control.id === "device-search" && document.activeElement === control && control.value.trim() === value) continue;
    if (control.tagName === "SELECT" && value && ![...control.options].some((option) => option.value === value)) {
      control.append(h("option", { value }, value));
    }
    control.value = value;
  }
  for (const th of state.licensesTable.querySelectorAll("th[data-sort]")) {
    const key = th.dataset.sort;
    const sort = state.view.sort;
    th.setAttribute("aria-sort", sort === key ? "ascending" : sort === `-${key}` ? "descending" : "none");
  }
}

function licensesTable(state) {
  const head = h(
    "tr",
    {},
    COLUMNS.map(([label, key], index) => {
      const content = [];
      if (index === 0) {
        const all = h("input", { type: "checkbox", id: "select-page", "aria-label": "Select every device on this page" });
        all.addEventListener("change", () => selectPage(state, all.checked));
        content.push(all, " ");
      }
      if (key) {
        const button = h("button", { type: "button", class: "sort-button", "data-sort": key }, label);
        button.addEventListener("click", () => {
          // A first click sorts the column (by recency for a time), a second reverses it.
          const first = key === "last_seen" ? `-${key}` : key;
          const reversed = first.startsWith("-") ? key : `-${key}`;
          const sort = state.view.sort === first ? reversed : first;
          navigate(state, withChanges(state, { sort }), { push: true });
        });
        content.push(button);
      } else {
        content.push(label);
      }
      return h("th", { scope: "col", "data-sort": key ?? false, "aria-sort": key ? "none" : false }, content);
    }),
  );
  return h(
    "table",
    { id: "licenses", class: "licenses" },
    h("caption", { class: "visually-hidden" }, "Licenses and the devices that hold them"),
    h("thead", {}, head),
    state.tbody,
  );
}

function pager(state) {
  const previous = h("button", { type: "button", class: "button secondary", id: "page-previous", disabled: true }, "Previous");
  const next = h("button", { type: "button", class: "button secondary", id: "page-next", disabled: true }, "Next");
  previous.addEventListener("click", () => {
    if (!state.view.cursor) return;
    const back = [...state.view.back];
    const cursor = back.pop() || null;
    navigate(state, { ...state.view, cursor, back: cursor ? back : [] }, { push: true });
  });
  next.addEventListener("click", () => {
    if (!state.nextCursor) return;
    const back = state.view.cursor ? [...state.view.back, state.view.cursor] : [];
    navigate(state, { ...state.view, cursor: state.nextCursor, back }, { push: true });
  });
  return { element: h("nav", { class: "pager", "aria-label": "Pages" }, previous, next), previous, next };
}

// --- selection and actions on many devices ----------------------------------------------------

function onRowTick(state, event) {
  const box = event.target.closest("input[data-select]");
  if (!box) return;
  state.allMatching = false;
  if (box.checked) state.selected.add(box.dataset.select);
  else state.selected.delete(box.dataset.select);
  showSelection(state);
}

function selectPage(state, checked) {
  state.allMatching = false;
  for (const entry of state.entries.values()) {
    if (!entry.device) continue;
    if (checked) state.selected.add(entry.device.id);
    else state.selected.delete(entry.device.id);
  }
  showSelection(state);
  if (checked) countMatchingDevices(state);
}

/**
 * How many devices match the filters (the list counts licenses, free ones too; an action on
 * "all matching" acts on devices): read when the whole page is ticked, for "Select all N
 * matching" and its confirmation.
 */
async function countMatchingDevices(state) {
  const ticket = state.pageTicket;
  try {
    const params = new URLSearchParams(apiFilter(state));
    params.set("limit", "1");
    const page = await get(`${state.base}/devices?${params}`);
    if (ticket !== state.pageTicket) return;
    state.matching = { total: page.total ?? 0, exact: page.total_exact !== false };
  } catch (error) {
    state.status.textContent = `Could not count the matching devices: ${errorMessage(error)}`;
    return;
  }
  showSelection(state);
}

/** "1,234" or "10,000+" for the devices matching the filters. */
function matchingCount(state) {
  const { total, exact } = state.matching;
  return exact ? NUMBER.format(total) : `${NUMBER.format(total)}+`;
}

/** The devices that can be ticked on this page. */
function pageDevices(state) {
  return [...state.entries.values()].filter((entry) => entry.device).map((entry) => entry.device.id);
}

function showSelection(state) {
  if (!state.bulk) return;
  const onPage = pageDevices(state);
  for (const box of state.tbody.querySelectorAll("input[data-select]")) {
    box.checked = state.allMatching || state.selected.has(box.dataset.select);
  }
  const ticked = onPage.filter((id) => state.selected.has(id)).length;
  // The header's box, and the one shown instead at phone width (where the header is hidden).
  for (const pageBox of [state.licensesTable.querySelector("#select-page"), state.narrowPageBox.box]) {
    pageBox.disabled = onPage.length === 0;
    pageBox.checked = state.allMatching || (onPage.length > 0 && ticked === onPage.length);
    pageBox.indeterminate = !pageBox.checked && ticked > 0;
  }
  const { element, label, all, unpair, assign } = state.bulk;
  if (state.allMatching && !state.matching) state.allMatching = false;
  const count = state.allMatching ? state.matching.total : state.selected.size;
  element.hidden = count === 0;
  label.textContent = state.allMatching
    ? `All ${matchingCount(state)} matching devices selected.`
    : `${NUMBER.format(count)} ${count === 1 ? "device" : "devices"} selected.`;
  // After ticking the whole page, the rest of the list is one click away.
  const more =
    !state.allMatching &&
    onPage.length > 0 &&
    ticked === onPage.length &&
    state.matching !== null &&
    (state.matching.total > onPage.length || !state.matching.exact);
  all.hidden = !more;
  if (more) all.textContent = `Select all ${matchingCount(state)} matching`;
  unpair.disabled = count === 0;
  assign.disabled = count === 0;
}

/**
 * "Select this page" above the rows, for phone widths: there the table's header (with its box for
 * the page) is hidden and each row shows its own labels. style.css shows it only there.
 */
function narrowPageBox(state) {
  const box = h("input", { type: "checkbox", id: "select-page-narrow" });
  box.addEventListener("change", () => selectPage(state, box.checked));
  const element = h("label", { class: "select-page-narrow", for: "select-page-narrow" }, box, " Select this page");
  return { element, box };
}

function bulkBar(state) {
  const label = h("span", { id: "selection-count" });
  const all = h("button", { type: "button", class: "link-button", id: "select-all-matching", hidden: true }, "Select all matching");
  const clear = h("button", { type: "button", class: "link-button", id: "clear-selection" }, "Clear selection");
  const unpair = h("button", { type: "button", class: "button secondary", id: "bulk-unpair" }, "Unpair");
  const configuration = h(
    "select",
    { id: "bulk-configuration", "aria-label": "Configuration to assign" },
    state.configurations.map((item) => h("option", { value: item.id }, item.name)),
  );
  const assign = h("button", { type: "button", class: "button secondary", id: "bulk-assign" }, "Assign configuration");
  const element = h(
    "div",
    { id: "bulk-bar", class: "bulk-bar", role: "region", "aria-label": "Selected devices", hidden: true },
    label,
    all,
    clear,
    h("span", { class: "bulk-actions" }, unpair, state.configurations.length > 0 ? [configuration, assign] : null),
  );
  all.addEventListener("click", () => {
    state.allMatching = true;
    showSelection(state);
  });
  clear.addEventListener("click", () => {
    state.allMatching = false;
    state.selected.clear();
    showSelection(state);
  });
  unpair.addEventListener("click", () => bulkAction(state, "unpair"));
  assign.addEventListener("click", () => bulkAction(state, "assign", configuration));
  return { element, label, all, unpair, assign };
}

/** What a bulk action acts on: the ticked devices, or every device matching the filters. */
function bulkSelection(state) {
  if (!state.allMatching) return { device_ids: [...state.selected] };
  const filter = apiFilter(state);
  return Object.keys(filter).length === 0 ? { all: true } : { filter };
}

async function bulkAction(state, kind, configurationSelect) {
  const count = state.allMatching ? state.matching.total : state.selected.size;
  if (count === 0) return;
  const devices = `${state.allMatching && !state.matching.exact ? "more than " : ""}${NUMBER.format(count)} ${count === 1 ? "device" : "devices"}`;
  const configurationName = configurationSelect?.selectedOptions[0]?.textContent ?? "";
  const question =
    kind === "unpair"
      ? `Unpair ${devices}? Their licenses become free at once, and each device must be paired again with a new code.`
      : `Assign “${configurationName}” to ${devices}?`;
  if (!window.confirm(question)) return;
  const body = bulkSelection(state);
  const headers = { "Idempotency-Key": newIdempotencyKey() };
  state.bulk.unpair.disabled = true;
  state.bulk.assign.disabled = true;
  try {
    if (kind === "unpair") {
      const answer = await post(`${state.base}/devices/unpair`, body, headers);
      state.status.textContent = `Unpaired ${NUMBER.format(answer.unpaired)} of ${NUMBER.format(answer.matched)} ${answer.matched === 1 ? "device" : "devices"}.`;
    } else {
      const answer = await post(`${state.base}/configurations/${segment(configurationSelect.value)}/assign`, body, headers);
      state.status.textContent = `Assigned “${configurationName}” to ${NUMBER.format(answer.assigned)} of ${NUMBER.format(answer.matched)} ${answer.matched === 1 ? "device" : "devices"}.`;
    }
    state.selected.clear();
    state.allMatching = false;
  } catch (error) {
    state.status.textContent = `Nothing was changed: ${errorMessage(error)}`;
  }
  showSelection(state);
  await Promise.all([loadPage(state, { fresh: false }), refreshSummary(state)]);
}

// --- export -------------------------------------------------------------------------------------

/** The file name of an export: the organization's name, made safe for a file system. */
function exportFileName(state) {
  const name = (state.organization?.name ?? "organization").replace(/[^\p{L}\p{N}._-]+/gu, "-").replace(/^-+|-+$/g, "");
  return `${name || "organization"}-devices.csv`;
}

/**
 * Downloads the devices matching the filters, in the list's order, as CSV. The key is a header,
 * not a cookie, so a plain link cannot fetch it: the file is fetched here and saved through a
 * Blob and an object URL.
 */
async function exportCsv(state, button) {
  button.disabled = true;
  state.status.textContent = "Exporting…";
  try {
    const query = listQuery(state, { paged: false });
    const response = await fetch(`${state.base}/devices.csv${query ? `?${query}` : ""}`, {
      headers: { Authorization: `Bearer ${session.token() ?? ""}`, Accept: "text/csv" },
      cache: "no-store",
    });
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json())?.error?.message ?? message;
      } catch {
        // Not JSON: the status text says it.
      }
      throw new ApiError(response.status, "error", message);
    }
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: exportFileName(state), hidden: true, id: "export-link" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    state.status.textContent = `Exported ${exportFileName(state)}.`;
  } catch (error) {
    state.status.textContent = `Not exported: ${errorMessage(error)}`;
  } finally {
    button.disabled = false;
  }
}

// --- live updates ------------------------------------------------------------------------------

/** Re-reading this many devices one by one costs more than re-reading the page. */
const PAGE_RELOAD_ABOVE = 20;
/** Events are gathered this long before the page re-reads what they name. */
const FLUSH_DELAY_MS = 150;
/** The current page is re-read at most this often (a big organization enrolling at full speed
 * sends events many times a second). */
const PAGE_RELOAD_EVERY_MS = 1000;
/** While events keep coming (a burst of pairings), the page and the counts wait until none has
 * come for this long, so that a burst is not slowed by the page's reads; */
const QUIET_MS = 300;
/** but they never lag the first unread event by more than this. */
const STALE_AT_MOST_MS = 2000;

function startLive(state, org) {
  // The user may have left while the page loaded.
  if (!state.tbody.isConnected || current !== state) return;
  watch(
    org,
    (name, data) => {
      const pending = state.pending;
      state.lastEventAt = Date.now();
      // A code created or revoked, or a pairing (a code's uses): the active codes are re-read.
      if (name === "codes" || name === "resync" || (name === "devices" && data.change === "paired")) {
        scheduleCodesRefresh(state);
      }
      // The line changed, or (while devices wait) licenses came or a device paired, perhaps
      // from the line: the waiting devices are re-read.
      const lineMoves = name === "licenses" || (name === "devices" && data.change === "paired");
      if (name === "waiting" || name === "resync" || (lineMoves && state.waiting.waiting())) {
        state.waiting.schedule();
      }
      if (name === "devices") {
        for (const id of data.device_ids ?? []) {
          // A device on the page is re-read on its own; one that is not changes nothing here,
          // unless it just paired or ended (it may now belong on this page, or leave it).
          if (state.licenseOfDevice.has(id) && data.change !== "ended") pending.devices.add(id);
          else if (data.change === "paired" || data.change === "ended" || changesMembership(state, data.change)) {
            pending.page = true;
          }
        }
        // A pairing takes a license and an ended pairing frees one: the counts change.
        if (data.change === "paired" || data.change === "ended") pending.summary = true;
      } else if (name === "licenses" || name === "configurations" || name === "resync") {
        // New licenses (whose ids the event does not carry), every device of an edited
        // configuration, or missed events: the current page is re-read.
        pending.page = true;
        pending.summary = true;
      } else {
        return;
      }
      scheduleFlush(state);
    },
    (feedState) => showLiveState(state, feedState),
  );
}

/** The filters a device's change can make it match (or stop matching). */
const FILTERS_CHANGED_BY = {
  assigned: ["configuration", "revision"],
  acknowledged: ["revision"],
  online: ["online", "not_seen_for"],
  offline: ["online", "not_seen_for"],
  edited: ["q"],
};

/** Whether a device's change of this kind may bring it into the list shown (or take it out). */
function changesMembership(state, change) {
  return (FILTERS_CHANGED_BY[change] ?? []).some((name) => state.view[name]);
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
  state.firstUnreadAt ??= Date.now();
  state.flushTimer = setTimeout(() => flush(state), FLUSH_DELAY_MS);
}

/** Re-reads what the gathered events named: the rows of their devices, or the current page. */
async function flush(state) {
  state.flushTimer = null;
  if (!state.tbody.isConnected) return;
  state.flushing = true;
  try {
    // The page and the counts wait for a quiet moment in a burst (bounded by STALE_AT_MOST_MS).
    const heavy = () =>
      state.pending.page || state.pending.summary || state.pending.devices.size > PAGE_RELOAD_ABOVE;
    for (;;) {
      const quietIn = (state.lastEventAt ?? 0) + QUIET_MS - Date.now();
      const staleIn = (state.firstUnreadAt ?? Date.now()) + STALE_AT_MOST_MS - Date.now();
      if (!heavy() || quietIn <= 0 || staleIn <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(quietIn, staleIn)));
      if (!state.tbody.isConnected) return;
    }
    const { devices, summary, page } = state.pending;
    state.pending = { devices: new Set(), summary: false, page: false };
    state.firstUnreadAt = null;
    if (page || devices.size > PAGE_RELOAD_ABOVE) {
      const wait = state.lastPageReload + PAGE_RELOAD_EVERY_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      state.lastPageReload = Date.now();
      await loadPage(state, { fresh: false });
    } else {
      const ids = [...devices];
      // A few at a time: the admin API serves other users too.
      for (let start = 0; start < ids.length; start += 8) {
        await Promise.all(ids.slice(start, start + 8).map((id) => refreshDevice(state, id)));
      }
    }
    if (summary) await refreshSummary(state);
  } finally {
    state.flushing = false;
  }
  const next = state.pending;
  if (next.page || next.summary || next.devices.size > 0) scheduleFlush(state);
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

/** Re-reads one device's row (the row of the license it holds); a device the page does not show
 * makes it re-read the current page (it may belong there now). */
async function refreshDevice(state, deviceId) {
  const known = state.licenseOfDevice.get(deviceId);
  if (known) {
    await refreshLicense(state, known);
    return;
  }
  state.pending.page = true;
  scheduleFlush(state);
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
  const left = Date.parse(entry.license.reserved_until) - serverNow(state);
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
  const filtered = Object.keys(apiFilter(state)).length > 0;
  state.empty.textContent = filtered
    ? "No license matches the search and filters."
    : "This organization has no licenses yet.";
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
    device &&
      h("input", {
        type: "checkbox",
        class: "select-row",
        "data-select": device.id,
        "aria-label": `Select ${device.name}`,
      }),
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
      h(
        "a",
        {
          class: "device-name",
          href: `#/organizations/${encodeURIComponent(device.organization_id)}/devices/${encodeURIComponent(device.id)}`,
        },
        device.name,
      ),
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
    row,
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
      await Promise.all([loadPage(state, { fresh: false }), refreshSummary(state)]);
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


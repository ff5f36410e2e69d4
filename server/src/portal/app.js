// The portal's views and navigation. Views are chosen by the URL's hash:
//   #/sign-in                         the token form
//   #/organizations                   the operator's list of organizations
//   #/organizations/{org}/devices     licenses and devices of one organization
//   #/organizations/{org}/codes       reusable codes: create (with its QR), show again, revoke
//   #/organizations/{org}/audit       the organization's audit log, newest first
//   #/organizations/{org}/{section}   sections still to come (configurations)
// Everything shown is built with DOM calls and textContent: data from the API is never parsed
// as HTML.

import { ApiError, get, getAll, post, segment, session } from "./api.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");

const SECTIONS = [
  ["devices", "Devices"],
  ["codes", "Codes"],
  ["configurations", "Configurations"],
  ["audit", "Audit log"],
];

/** `h("p", {class: "x"}, "text", child)`: an element with attributes and children. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A table with a header row of `columns` (and a caption for screen readers, if given). */
function table(attributes, caption, columns, body) {
  return h(
    "table",
    attributes,
    caption && h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((label) => h("th", { scope: "col" }, label)))),
    body,
  );
}

/** Replaces the page's content and gives the main region a title. */
function show(title, ...content) {
  document.title = `${title} · paird Customer Portal`;
  main.replaceChildren(...content);
}

function go(hash) {
  if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

/** A time from the API (RFC 3339, UTC) as "2026-03-04 15:47 UTC"; "—" when absent. */
function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function errorMessage(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return "Your token is no longer accepted. Sign in again.";
    if (error.status === 404) return "Not found: this organization does not exist or your token cannot see it.";
    return error.message;
  }
  return String(error);
}

function showError(title, error) {
  show(title, h("h1", {}, title), h("p", { class: "alert error", role: "alert" }, errorMessage(error)));
  if (error instanceof ApiError && error.status === 401) {
    session.clear();
    renderChrome(null);
  }
}

// --- chrome: navigation and sign out -----------------------------------------------------------

function renderChrome(org, current) {
  const signedIn = Boolean(session.token());
  signOutButton.hidden = !signedIn;
  nav.hidden = !signedIn;
  const links = [];
  if (signedIn && session.role() === "operator") {
    links.push(navLink("#/organizations", "Organizations", current === "organizations"));
  }
  if (signedIn && org) {
    for (const [section, label] of SECTIONS) {
      links.push(
        navLink(`#/organizations/${segment(org)}/${section}`, label, current === section),
      );
    }
  }
  nav.replaceChildren(h("ul", {}, links.map((link) => h("li", {}, link))));
}

function navLink(href, label, current) {
  return h("a", { href, "aria-current": current ? "page" : false }, label);
}

signOutButton.addEventListener("click", () => {
  session.clear();
  go("#/sign-in");
});

// --- sign in -----------------------------------------------------------------------------------

function renderSignIn(message) {
  renderChrome(null);
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const error = h("p", { id: "sign-in-error", class: "alert error", role: "alert", hidden: !message }, message ?? "");
  const button = h("button", { type: "submit", id: "sign-in", class: "button" }, "Sign in");
  const form = h(
    "form",
    { class: "card sign-in", novalidate: true },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "Access token"),
    input,
    h(
      "p",
      { id: "token-help", class: "muted" },
      "Your organization key (paird_key_…) or the operator token (paird_op_…). It is kept in this browser tab only.",
    ),
    error,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Enter a token.";
      error.hidden = false;
      input.focus();
      return;
    }
    button.disabled = true;
    error.hidden = true;
    try {
      await signIn(token);
    } catch (failure) {
      error.textContent =
        failure instanceof ApiError && failure.status === 401
          ? "This token was not accepted. Check that you copied the whole token and that it has not been revoked."
          : `Cannot sign in: ${errorMessage(failure)}`;
      error.hidden = false;
      button.disabled = false;
      input.focus();
    }
  });
  show("Sign in", form);
  input.focus();
}

/** Validates the token and opens what it may see: its organization, or the operator's list. */
async function signIn(token) {
  const organizations = await getAll("/v1/organizations", token);
  // Only the operator may read the server status; an organization key is refused (403).
  let role = "key";
  try {
    await get("/v1/status", token);
    role = "operator";
  } catch (failure) {
    if (!(failure instanceof ApiError) || failure.status !== 403) throw failure;
  }
  session.save(token, role);
  if (role === "operator") {
    go("#/organizations");
  } else if (organizations.length > 0) {
    go(`#/organizations/${segment(organizations[0].id)}/devices`);
  } else {
    throw new ApiError(404, "not_found", "This key's organization was not found.");
  }
}

/** Where a signed-in user starts. */
async function home() {
  if (session.role() === "operator") {
    go("#/organizations");
    return;
  }
  try {
    const organizations = await getAll("/v1/organizations");
    go(`#/organizations/${segment(organizations[0].id)}/devices`);
  } catch (error) {
    showError("Sign in", error);
  }
}

// --- organizations (operator) ------------------------------------------------------------------

async function renderOrganizations() {
  renderChrome(null, "organizations");
  show("Organizations", h("h1", {}, "Organizations"), h("p", { class: "muted" }, "Loading…"));
  let organizations;
  try {
    organizations = await getAll("/v1/organizations");
  } catch (error) {
    showError("Organizations", error);
    return;
  }
  const list = organizations.length
    ? h(
        "ul",
        { id: "org-list", class: "org-list" },
        organizations.map((org) =>
          h(
            "li",
            {},
            h("a", { href: `#/organizations/${segment(org.id)}/devices`, "data-org-id": org.id }, org.name),
            h("span", { class: "muted" }, ` created ${formatTime(org.created_at)}`),
          ),
        ),
      )
    : h("p", { id: "org-list-empty" }, "No organizations yet.");
  show(
    "Organizations",
    h("h1", {}, "Organizations"),
    h("p", { class: "muted" }, "Choose an organization to manage."),
    list,
  );
}

// --- devices -----------------------------------------------------------------------------------

const STATUS_LABELS = { free: "Free", reserved: "Reserved", assigned: "Assigned", expired: "Expired" };

async function renderDevices(org) {
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

// --- codes ---------------------------------------------------------------------------------------

const DAY_SECONDS = 24 * 3600;

async function renderCodes(org) {
  renderChrome(org, "codes");
  show("Codes", h("h1", {}, "Codes"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}/codes`;
  let codes;
  try {
    codes = await getAll(base);
  } catch (error) {
    showError("Codes", error);
    return;
  }
  const shown = h("section", { id: "shown-code", "aria-live": "polite" });
  const status = h("p", { class: "muted", role: "status" });

  const showCode = (code) => {
    shown.dataset.codeId = code.id;
    shown.replaceChildren(
      h("h2", {}, code.label ? `Code “${code.label}”` : "Reusable code"),
      h("img", {
        id: "qr",
        class: "qr",
        src: `data:image/png;base64,${code.qr_png_base64}`,
        alt: `QR code for pairing devices, valid until ${formatTime(code.expires_at)}`,
        width: 256,
        height: 256,
      }),
      h(
        "p",
        {},
        "Valid until ",
        h("strong", {}, formatTime(code.expires_at)),
        code.max_uses ? `, for at most ${code.max_uses} devices (${code.uses} used).` : ", for any number of devices.",
      ),
      h("p", { class: "payload" }, h("code", { id: "payload" }, code.payload_uri)),
    );
    shown.scrollIntoView({ block: "nearest" });
  };

  const validity = h("input", { id: "code-validity", type: "number", min: 1, max: 365, value: 30, required: true });
  const maxUses = h("input", { id: "code-max-uses", type: "number", min: 1, placeholder: "no limit" });
  const label = h("input", { id: "code-label", type: "text", maxlength: 100, placeholder: "e.g. spring rollout" });
  const create = h("button", { type: "submit", class: "button", id: "create-code" }, "Create Code");
  const form = h(
    "form",
    { class: "code-form" },
    h("label", { for: "code-label" }, "Label", label),
    h("label", { for: "code-validity" }, "Valid for (days)", validity),
    h("label", { for: "code-max-uses" }, "Use limit", maxUses),
    create,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    create.disabled = true;
    status.textContent = "";
    const body = { validity_seconds: Number(validity.value) * DAY_SECONDS };
    if (maxUses.value) body.max_uses = Number(maxUses.value);
    if (label.value.trim()) body.label = label.value.trim();
    try {
      const code = await post(`${base}?qr=png`, body);
      showCode(code);
      list.prepend(codeRow(code));
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      create.disabled = false;
    }
  });

  const codeRow = (code) => {
    const actions = h("td", { "data-label": "Actions", class: "actions" });
    if (code.kind === "reusable" && code.status === "active") {
      const reveal = h("button", { type: "button", class: "button secondary", "data-action": "show" }, "Show");
      reveal.addEventListener("click", async () => {
        try {
          showCode(await get(`${base}/${segment(code.id)}/reveal?qr=png`));
        } catch (error) {
          status.textContent = errorMessage(error);
        }
      });
      const revoke = h("button", { type: "button", class: "button secondary", "data-action": "revoke" }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!window.confirm("Revoke this code? Devices can no longer pair with it.")) return;
        try {
          const revoked = await post(`${base}/${segment(code.id)}/revoke`);
          row.replaceWith(codeRow({ ...code, ...revoked }));
          if (shown.dataset.codeId === code.id) shown.replaceChildren();
        } catch (error) {
          status.textContent = errorMessage(error);
        }
      });
      actions.append(reveal, " ", revoke);
    }
    const row = h(
      "tr",
      { "data-code-id": code.id, "data-status": code.status },
      h("td", { "data-label": "Label" }, code.label ?? (code.kind === "single_use" ? "single-use" : "—")),
      h("td", { "data-label": "Status" }, h("span", { class: `badge status-${code.status}` }, code.status)),
      h("td", { "data-label": "Valid until" }, formatTime(code.expires_at)),
      h("td", { "data-label": "Uses" }, code.max_uses ? `${code.uses} of ${code.max_uses}` : String(code.uses)),
      h("td", { "data-label": "Last used" }, formatTime(code.last_used_at)),
      actions,
    );
    return row;
  };

  const list = h("tbody", {}, codes.slice().reverse().map(codeRow));
  const codesTable = table(
    { id: "codes" },
    null,
    ["Label", "Status", "Valid until", "Uses", "Last used", "Actions"],
    list,
  );
  show(
    "Codes",
    h("h1", {}, "Codes"),
    h(
      "p",
      { class: "alert warning", id: "code-warning" },
      "Anyone who has a reusable code can pair devices and take this organization's free licenses. ",
      "Share it only with the people who set up devices, and revoke it when the rollout is done.",
    ),
    form,
    status,
    shown,
    h("h2", {}, "Codes"),
    h("div", { class: "table-wrap" }, codesTable),
  );
}

// --- audit log -----------------------------------------------------------------------------------

const AUDIT_PAGE = 100;

async function renderAudit(org) {
  renderChrome(org, "audit");
  show("Audit log", h("h1", {}, "Audit log"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}/audit?limit=${AUDIT_PAGE}`;
  let first;
  try {
    first = await get(base);
  } catch (error) {
    showError("Audit log", error);
    return;
  }
  const body = h("tbody", {});
  const auditTable = table(
    { class: "audit" },
    "Audit log, newest first",
    ["When", "Action", "By", "Subject", "Details"],
    body,
  );
  const more = h("button", { type: "button", class: "button secondary", id: "audit-more" }, "Show older entries");
  const status = h("p", { class: "muted", role: "status" });
  const append = (page) => {
    body.append(...page.items.map(auditRow));
    more.hidden = !page.next_cursor;
    status.textContent = body.childElementCount === 0 ? "Nothing has happened in this organization yet." : "";
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
  show("Audit log", h("h1", {}, "Audit log"), h("div", { class: "table-wrap" }, auditTable), status, more);
}

function auditRow(entry) {
  const details = entry.details && Object.keys(entry.details).length > 0
    ? Object.entries(entry.details)
        .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
        .join(", ")
    : "—";
  return h(
    "tr",
    { "data-action": entry.action },
    h("td", { "data-label": "When" }, formatTime(entry.at)),
    h("td", { "data-label": "Action" }, h("code", {}, entry.action)),
    h("td", { "data-label": "By" }, entry.actor),
    h("td", { "data-label": "Subject" }, entry.subject ?? "—"),
    h("td", { "data-label": "Details", class: "details" }, details),
  );
}

function renderPlaceholder(org, section) {
  renderChrome(org, section);
  const label = SECTIONS.find(([key]) => key === section)?.[1] ?? section;
  show(label, h("h1", {}, label), h("p", { class: "muted" }, "This section is coming in a later version of the portal."));
}

// --- routing -----------------------------------------------------------------------------------

function route() {
  const path = location.hash.replace(/^#/, "") || "/";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (!session.token()) {
    renderSignIn();
    return;
  }
  if (parts[0] === "sign-in") {
    renderSignIn();
  } else if (parts[0] === "organizations" && parts.length === 1 && session.role() === "operator") {
    renderOrganizations();
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "devices") {
    renderDevices(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "codes") {
    renderCodes(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "audit") {
    renderAudit(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 3 && SECTIONS.some(([key]) => key === parts[2])) {
    renderPlaceholder(parts[1], parts[2]);
  } else {
    home();
  }
}

window.addEventListener("hashchange", () => {
  route();
  // Moves keyboard focus to the new content, unless the view focused a field of its own.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
});
route();

// The portal's views and navigation. Views are chosen by the URL's hash:
//   #/sign-in                         the token form
//   #/organizations                   the operator's list of organizations, and a new one
//   #/organizations/{org}/devices     licenses and devices of one organization; `?q=…&status=…&sort=…`
//                                     after it is the list's search, filters, sort and page
//   #/organizations/{org}/codes       reusable codes: create (with its QR), show again, revoke
//   #/organizations/{org}/configurations  create, edit, roll out, assign, delete
//   #/organizations/{org}/devices/{device}  one device: name and notes, license, configuration,
//                                     its history
//   #/organizations/{org}/audit       the organization's audit log, newest first; `?action=…&device=…
//                                     &from=…&until=…` after it are its filters
//   #/organizations/{org}/keys        the operator: create, list and revoke the keys
//   #/organizations/{org}/webhooks    add, list and delete webhooks; their deliveries, send again
// Each section is a module of its own (devices.js, codes.js, configurations.js, audit.js,
// keys.js, webhooks.js); ui.js holds the shared pieces.
// Everything shown is built with DOM calls and textContent: data from the API is never parsed
// as HTML.

import { ApiError, get, getAll, newIdempotencyKey, post, segment, session } from "./api.js";
import { renderAudit } from "./audit.js";
import { renderCodes } from "./codes.js";
import { renderDevice } from "./device.js";
import { renderConfigurations } from "./configurations.js";
import { renderDevices, updateDevicesView } from "./devices.js";
import { renderKeys } from "./keys.js";
import { renderWebhooks } from "./webhooks.js";
import { stopWatching } from "./live.js";
import {
  closeDialogs,
  errorMessage,
  formatTime,
  go,
  h,
  main,
  renderChrome,
  show,
  showError,
} from "./ui.js";

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
  const me = await get("/v1/whoami", token);
  const role = me.role === "operator" ? "operator" : "key";
  session.save(token, role, role === "key" ? me.organization_id : null);
  if (role === "operator") {
    go("#/organizations");
  } else {
    go(`#/organizations/${segment(me.organization_id)}/devices`);
  }
}

/** Where a signed-in user starts. */
async function home() {
  if (session.role() === "operator") {
    go("#/organizations");
    return;
  }
  try {
    const me = await get("/v1/whoami");
    go(`#/organizations/${segment(me.organization_id)}/devices`);
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
            " ",
            h("a", { href: `#/organizations/${segment(org.id)}/keys`, class: "org-keys-link" }, "Keys"),
          ),
        ),
      )
    : h("p", { id: "org-list-empty" }, "No organizations yet.");
  show(
    "Organizations",
    h("h1", {}, "Organizations"),
    createOrganizationForm(),
    h("h2", {}, "All organizations"),
    h("p", { class: "muted" }, "Choose an organization to manage."),
    list,
  );
}

/**
 * Creates an organization and opens its Keys page: its admins sign in with a key made there.
 */
function createOrganizationForm() {
  const name = h("input", { id: "new-organization-name", name: "name", type: "text", maxlength: 200, required: true, autocomplete: "off" });
  const submit = h("button", { type: "submit", class: "button", id: "create-organization" }, "Create organization");
  const message = h("p", { id: "create-organization-status", role: "status" });
  const form = h(
    "form",
    { id: "create-organization-form", class: "inline-form" },
    h("label", { for: "new-organization-name" }, "Name", name),
    submit,
  );
  // One key per intended organization: a retry after a lost answer does not create two.
  let idempotencyKey = newIdempotencyKey();
  form.addEventListener("input", () => {
    idempotencyKey = newIdempotencyKey();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      message.textContent = "Enter the organization's name.";
      name.focus();
      return;
    }
    submit.disabled = true;
    message.textContent = "Creating…";
    try {
      const created = await post("/v1/organizations", { name: name.value.trim() }, { "Idempotency-Key": idempotencyKey });
      go(`#/organizations/${segment(created.id)}/keys`);
    } catch (error) {
      message.textContent = `Not created: ${errorMessage(error)}`;
      submit.disabled = false;
      name.focus();
    }
  });
  return h(
    "section",
    { "aria-labelledby": "create-organization-title", class: "card form-card" },
    h("h2", { id: "create-organization-title" }, "New organization"),
    form,
    h("p", { class: "muted" }, "Its admins sign in with a key, which you create on its Keys page next."),
    message,
  );
}

// --- routing -----------------------------------------------------------------------------------

function route() {
  // The path, and the query after it (only the Devices list has one).
  const [path, query = ""] = (location.hash.replace(/^#/, "") || "/").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  // Only the Devices list's search, filters, sort or page changed (back, forward): the list
  // follows, the page and its live feed stay.
  if (session.token() && parts[0] === "organizations" && parts.length === 3 && parts[2] === "devices") {
    if (updateDevicesView(parts[1], query)) return;
  }
  // A page that watches the live feed starts its own; leaving it ends the previous one, and
  // the previous page's dialogs.
  stopWatching();
  closeDialogs();
  if (!session.token()) {
    renderSignIn();
    return;
  }
  if (parts[0] === "sign-in") {
    renderSignIn();
  } else if (parts[0] === "organizations" && parts.length === 1 && session.role() === "operator") {
    renderOrganizations();
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "devices") {
    renderDevices(parts[1], query);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "codes") {
    renderCodes(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 4 && parts[2] === "devices") {
    renderDevice(parts[1], parts[3]);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "audit") {
    renderAudit(parts[1], query);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "configurations") {
    renderConfigurations(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "keys" && session.role() === "operator") {
    renderKeys(parts[1]);
  } else if (parts[0] === "organizations" && parts.length === 3 && parts[2] === "webhooks") {
    renderWebhooks(parts[1]);
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

// The Keys section (the operator's): an organization's keys, which its admins and its portal
// backends sign in with. Create one (its secret is shown this once, with a Copy button), list
// them, revoke one.

import { del, get, getAll, newIdempotencyKey, post, segment } from "./api.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

export async function renderKeys(org) {
  renderChrome(org, "keys");
  show("Keys", h("h1", {}, "Keys"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  let organization, keys;
  try {
    [organization, keys] = await Promise.all([get(base), getAll(`${base}/keys`)]);
  } catch (error) {
    showError("Keys", error);
    return;
  }
  const status = h("p", { id: "keys-status", role: "status" });
  const secretSlot = h("div", { id: "new-key", "aria-live": "polite" });
  const list = h("tbody", {});

  const keyRow = (key) => {
    const actions = h("td", { "data-label": "Actions", class: "actions" });
    if (!key.revoked_at) {
      const revoke = h(
        "button",
        { type: "button", class: "button secondary danger", "data-action": "revoke-key", "aria-label": `Revoke the key “${key.name}”` },
        "Revoke",
      );
      revoke.addEventListener("click", async () => {
        if (!window.confirm(`Revoke the key “${key.name}”? Whoever signs in with it is refused from then on.`)) return;
        revoke.disabled = true;
        try {
          await del(`${base}/keys/${segment(key.id)}`);
          status.textContent = `The key “${key.name}” is revoked.`;
          const revoked = (await getAll(`${base}/keys`)).find((item) => item.id === key.id) ?? key;
          const row = keyRow(revoked);
          list.querySelector(`tr[data-key-id="${key.id}"]`)?.replaceWith(row);
          // The button is gone with the old row: the keyboard stays on the row.
          row.focus();
        } catch (error) {
          status.textContent = `Not revoked: ${errorMessage(error)}`;
          revoke.disabled = false;
        }
      });
      actions.append(revoke);
    }
    return h(
      "tr",
      { "data-key-id": key.id, "data-status": key.revoked_at ? "revoked" : "active", tabindex: -1 },
      h("td", { "data-label": "Name", class: "key-name" }, key.name),
      h("td", { "data-label": "Created" }, formatTime(key.created_at)),
      h(
        "td",
        { "data-label": "Status" },
        key.revoked_at
          ? h("span", { class: "badge status-revoked" }, `Revoked ${formatTime(key.revoked_at)}`)
          : h("span", { class: "badge ok" }, "Active"),
      ),
      actions,
    );
  };
  // Newest first.
  list.append(...keys.slice().reverse().map(keyRow));
  const empty = h("p", { id: "no-keys", hidden: keys.length > 0 }, "This organization has no key yet: create one so that its admins can sign in.");

  const name = h("input", { id: "key-name", name: "name", type: "text", maxlength: 100, required: true, autocomplete: "off", placeholder: "e.g. admin portal" });
  const submit = h("button", { type: "submit", class: "button", id: "create-key" }, "Create key");
  const form = h(
    "form",
    { id: "create-key-form", class: "inline-form" },
    h("label", { for: "key-name" }, "What the key is for", name),
    submit,
  );
  let idempotencyKey = newIdempotencyKey();
  form.addEventListener("input", () => {
    idempotencyKey = newIdempotencyKey();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      status.textContent = "Enter what the key is for.";
      name.focus();
      return;
    }
    submit.disabled = true;
    status.textContent = "";
    try {
      const created = await post(`${base}/keys`, { name: name.value.trim() }, { "Idempotency-Key": idempotencyKey });
      idempotencyKey = newIdempotencyKey();
      name.value = "";
      secretSlot.replaceChildren(newKeySecret(created));
      secretSlot.querySelector("input")?.focus();
      list.prepend(keyRow(created));
      empty.hidden = true;
    } catch (error) {
      status.textContent = `No key created: ${errorMessage(error)}`;
    } finally {
      submit.disabled = false;
    }
  });

  show(
    "Keys",
    h("p", { class: "org-name", id: "org-name" }, organization.name),
    h("h1", {}, "Keys"),
    h(
      "p",
      { class: "muted" },
      "The organization's admins sign in to this portal with a key, and its portal backend calls the admin API with one. ",
      "A key manages this organization only.",
    ),
    h(
      "section",
      { "aria-labelledby": "create-key-title", class: "card form-card" },
      h("h2", { id: "create-key-title" }, "New key"),
      form,
    ),
    secretSlot,
    status,
    h("h2", {}, "Keys of this organization"),
    empty,
    h("div", { class: "table-wrap" }, table({ id: "keys" }, null, ["Name", "Created", "Status", "Actions"], list)),
  );
}

/** A new key's secret, shown this once: selectable, with a Copy button. */
function newKeySecret(created) {
  const field = h("input", {
    id: "new-key-secret",
    type: "text",
    readonly: true,
    value: created.key,
    spellcheck: "false",
    "aria-describedby": "new-key-help",
  });
  const copied = h("span", { class: "copy-status", role: "status" });
  const copy = h("button", { type: "button", class: "button", id: "copy-key" }, "Copy");
  copy.addEventListener("click", async () => {
    copied.textContent = (await copyText(field)) ? "Copied." : "Select the key and copy it yourself.";
  });
  field.addEventListener("focus", () => field.select());
  return h(
    "div",
    { class: "alert warning new-key", "data-key-id": created.id },
    h("p", {}, h("strong", {}, `The key “${created.name}”`), " is created. ", "Copy it now: it is not shown again."),
    h("label", { for: "new-key-secret", class: "visually-hidden" }, "The new key"),
    h("div", { class: "secret-row" }, field, copy, copied),
    h(
      "p",
      { id: "new-key-help", class: "muted" },
      "Whoever holds it manages this organization: give it only to its admins, and revoke it when it is no longer needed.",
    ),
  );
}

/**
 * Copies a field's text to the clipboard: the Clipboard API where the page may use it (a secure
 * context: HTTPS or this machine), else the older copy command on the selected text.
 */
async function copyText(field) {
  try {
    await navigator.clipboard.writeText(field.value);
    return true;
  } catch {
    field.focus();
    field.select();
    return document.execCommand("copy");
  }
}

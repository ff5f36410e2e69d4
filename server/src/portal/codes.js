// Reusable codes: the Codes section (create a code with its QR, show one again, revoke; the list
// follows the live feed), and the Devices section's "Pair devices" part (the active codes, each
// shown again in a dialog, and Create Code in one), which share the form and the code's view.

import { get, getAll, post, segment } from "./api.js";
import { stopWatching, watch } from "./live.js";
import { errorMessage, formatTime, h, openDialog, renderChrome, show, showError, table } from "./ui.js";

const DAY_SECONDS = 24 * 3600;

/** Said wherever a reusable code is created. */
const SECRET_WARNING = [
  "Anyone who has a reusable code can pair devices and take this organization's free licenses. ",
  "Share it only with the people who set up devices, and revoke it when the rollout is done.",
];

export async function renderCodes(org) {
  renderChrome(org, "codes");
  show("Codes", h("h1", {}, "Codes"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}/codes`;
  let codes, configurations;
  try {
    [codes, configurations] = await Promise.all([
      getAll(base),
      getAll(`/v1/organizations/${segment(org)}/configurations`),
    ]);
  } catch (error) {
    showError("Codes", error);
    return;
  }
  const configurationNames = new Map(configurations.map((entry) => [entry.id, entry.name]));
  /** What the devices a code pairs get. */
  const givesText = (code) =>
    code.configuration_id
      ? `“${configurationNames.get(code.configuration_id) ?? "a configuration"}”`
      : "the one for new devices";
  const shown = h("section", { id: "shown-code", "aria-live": "polite" });
  const status = h("p", { class: "muted", role: "status" });

  const showCode = (code) => {
    shown.dataset.codeId = code.id;
    shown.replaceChildren(h("h2", {}, codeTitle(code)), ...codeDetails(code));
    shown.scrollIntoView({ block: "nearest" });
  };

  const form = codeForm(base, status, (code) => {
    showCode(code);
    list.prepend(codeRow(code));
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
      h("td", { "data-label": "Devices get", "data-field": "configuration" }, givesText(code)),
      actions,
    );
    return row;
  };

  const list = h("tbody", {}, codes.slice().reverse().map(codeRow));
  const codesTable = table(
    { id: "codes" },
    null,
    ["Label", "Status", "Valid until", "Uses", "Last used", "Devices get", "Actions"],
    list,
  );
  show(
    "Codes",
    h("h1", {}, "Codes"),
    h("p", { class: "alert warning", id: "code-warning" }, SECRET_WARNING),
    form,
    status,
    shown,
    h("h2", {}, "Codes"),
    h("div", { class: "table-wrap" }, codesTable),
  );

  // Live: codes created or revoked elsewhere, and pairings that use a code (its uses and last
  // use), re-read the list. A button that had the focus keeps it in the new row.
  let pending = null;
  const reread = async () => {
    pending = null;
    let latest;
    try {
      latest = await getAll(base);
    } catch (error) {
      status.textContent = errorMessage(error);
      return;
    }
    if (!list.isConnected) return;
    const focused = list.contains(document.activeElement)
      ? [document.activeElement.closest("tr")?.dataset.codeId, document.activeElement.dataset.action]
      : null;
    list.replaceChildren(...latest.slice().reverse().map(codeRow));
    if (focused) list.querySelector(`tr[data-code-id="${focused[0]}"] button[data-action="${focused[1]}"]`)?.focus();
  };
  watch(org, (name, data) => {
    if (!list.isConnected) {
      stopWatching();
      return;
    }
    const relevant =
      name === "codes" || name === "resync" || (name === "devices" && data.change === "paired");
    if (relevant && !pending) pending = setTimeout(reread, 300);
  });
}

// --- shared: the form and a code's view ---------------------------------------------------------

/** "Code “label”", or "Reusable code" for a code without a label. */
function codeTitle(code) {
  return code.label ? `Code “${code.label}”` : "Reusable code";
}

/** A reusable code as the person who scans it needs it: the QR, its validity, its payload. */
function codeDetails(code) {
  return [
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
  ];
}

/**
 * The Create Code form (label, validity in days, use limit). `onCreated(code)` gets the new code
 * with its QR; a refusal is said in `status`.
 */
function codeForm(base, status, onCreated) {
  const validity = h("input", { id: "code-validity", type: "number", min: 1, max: 365, value: 30, required: true });
  // Which configuration the devices it pairs get: the organization's for new devices, or one of
  // its configurations (read as the form opens).
  const configuration = h(
    "select",
    { id: "code-configuration" },
    h("option", { value: "" }, "The one for new devices"),
  );
  getAll(base.replace(/\/codes$/, "/configurations"))
    .then((configurations) => {
      configuration.append(
        ...configurations.map((entry) => h("option", { value: entry.id }, entry.name)),
      );
    })
    .catch(() => {
      // Without the list the code simply carries none; the default option stays.
    });
  const maxUses = h("input", { id: "code-max-uses", type: "number", min: 1, placeholder: "no limit" });
  const label = h("input", { id: "code-label", type: "text", maxlength: 100, placeholder: "e.g. spring rollout" });
  const create = h("button", { type: "submit", class: "button", id: "create-code" }, "Create Code");
  const form = h(
    "form",
    { class: "code-form" },
    h("label", { for: "code-label" }, "Label", label),
    h("label", { for: "code-validity" }, "Valid for (days)", validity),
    h("label", { for: "code-max-uses" }, "Use limit", maxUses),
    h("label", { for: "code-configuration" }, "Devices get", configuration),
    create,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    create.disabled = true;
    status.textContent = "";
    const body = { validity_seconds: Number(validity.value) * DAY_SECONDS };
    if (maxUses.value) body.max_uses = Number(maxUses.value);
    if (label.value.trim()) body.label = label.value.trim();
    if (configuration.value) body.configuration_id = configuration.value;
    try {
      onCreated(await post(`${base}?qr=png`, body));
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      create.disabled = false;
    }
  });
  return form;
}

// --- the Devices section's "Pair devices" -------------------------------------------------------

/**
 * Where the Devices section pairs devices with reusable codes: its active codes (label, validity,
 * uses), each with Show QR, and Create Code, both in a dialog. `refresh()` re-reads the codes
 * (the Devices page calls it on the live feed's code and pairing events).
 *
 * Returns `{ element, refresh }`.
 */
export function pairingSection(org) {
  const base = `/v1/organizations/${segment(org)}/codes`;
  const status = h("p", { id: "pairing-status", role: "status" });
  const list = h("ul", { id: "active-codes", class: "active-codes", "aria-label": "Active reusable codes" });
  const none = h("p", { id: "no-active-codes", class: "muted", hidden: true }, "No reusable code is active: create one, or assign a device to a free license.");
  const create = h("button", { type: "button", class: "button", id: "pair-create-code" }, "Create Code");
  let reading = null;

  const codeItem = (code) => {
    const reveal = h(
      "button",
      { type: "button", class: "button secondary", "data-action": "show-code", "aria-label": `Show the QR of ${codeTitle(code)}` },
      "Show QR",
    );
    reveal.addEventListener("click", async () => {
      try {
        const revealed = await get(`${base}/${segment(code.id)}/reveal?qr=png`);
        // The list may be re-read while the dialog is open: the keyboard goes back to this code's
        // button as it is then.
        showCodeDialog(revealed, () => list.querySelector(`li[data-code-id="${code.id}"] button`) ?? create);
      } catch (error) {
        status.textContent = `The code cannot be shown: ${errorMessage(error)}`;
      }
    });
    return h(
      "li",
      { "data-code-id": code.id },
      h("span", { class: "code-name" }, code.label ?? "Reusable code"),
      h(
        "span",
        { class: "muted code-facts" },
        `created ${formatTime(code.created_at)}, valid until ${formatTime(code.expires_at)} · `,
        code.max_uses ? `${code.uses} of ${code.max_uses} uses` : `${code.uses} ${code.uses === 1 ? "use" : "uses"}`,
      ),
      reveal,
    );
  };

  const refresh = async () => {
    // One read at a time; a refresh asked for meanwhile reads again after it.
    if (reading) {
      reading.again = true;
      return;
    }
    reading = { again: false };
    try {
      const codes = await getAll(`${base}?kind=reusable`);
      const active = codes.filter((code) => code.status === "active").reverse();
      const focused = list.contains(document.activeElement) ? document.activeElement.closest("li")?.dataset.codeId : null;
      list.replaceChildren(...active.map(codeItem));
      none.hidden = active.length > 0;
      if (focused) list.querySelector(`li[data-code-id="${focused}"] button`)?.focus();
    } catch (error) {
      status.textContent = `The codes could not be read: ${errorMessage(error)}`;
    } finally {
      const again = reading.again;
      reading = null;
      if (again) refresh();
    }
  };

  create.addEventListener("click", () => {
    const formStatus = h("p", { class: "dialog-status", role: "status" });
    const content = h("div", { class: "create-code-body" }, h("p", { class: "alert warning" }, SECRET_WARNING), formStatus);
    const dialog = openDialog({ title: "Create a reusable code", content, className: "code-dialog" });
    content.insertBefore(
      codeForm(base, formStatus, (code) => {
        // The same dialog shows the new code.
        dialog.heading.textContent = codeTitle(code);
        content.replaceChildren(...codeDetails(code), dialogDoneButton(dialog));
        dialog.heading.focus();
        refresh();
      }),
      formStatus,
    );
    content.querySelector("input")?.focus();
  });

  const element = h(
    "section",
    { "aria-labelledby": "pairing-title", class: "pairing" },
    h(
      "div",
      { class: "pairing-head" },
      h("h2", { id: "pairing-title" }, "Pair devices"),
      h("div", { class: "pairing-actions" }, create, h("a", { href: `#/organizations/${segment(org)}/codes` }, "Manage codes")),
    ),
    h(
      "p",
      { class: "muted pairing-help" },
      "The app pairs a device by scanning a QR code. A reusable code pairs any number of devices, each taking a free license; ",
      "Assign device on a free license below pairs one device with that license.",
    ),
    none,
    list,
    status,
  );
  refresh();
  return { element, refresh };
}

/** A reusable code in a dialog, to be scanned from the screen. */
function showCodeDialog(code, returnFocus) {
  const content = h("div", { class: "code-dialog-body", "data-code-id": code.id });
  const dialog = openDialog({ title: codeTitle(code), content, className: "code-dialog", returnFocus });
  content.append(...codeDetails(code), dialogDoneButton(dialog));
}

function dialogDoneButton(dialog) {
  const done = h("button", { type: "button", class: "button secondary", "data-action": "close-dialog" }, "Close");
  done.addEventListener("click", () => dialog.close());
  return h("div", { class: "panel-buttons" }, done);
}

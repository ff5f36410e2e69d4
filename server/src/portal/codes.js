// The Codes section: create a reusable code (with its QR), show one again, revoke. The list
// follows the live feed.

import { get, getAll, post, segment } from "./api.js";
import { stopWatching, watch } from "./live.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

const DAY_SECONDS = 24 * 3600;

export async function renderCodes(org) {
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

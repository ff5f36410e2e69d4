// The Webhooks section: endpoints of the organization's portal backend that receive its events
// (docs/admin-api.md, "Webhooks"). Add one (its signing secret is shown this once, with a Copy
// button), list them with their recent deliveries and outcomes, send a delivery again, delete
// one. Deliveries have no live-feed event: the page reads them again every few seconds while it
// is open, and stops when the page is left.

import { del, get, getAll, newIdempotencyKey, post, segment } from "./api.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

/** The kinds of events, as the API names them, and what each tells. */
const KINDS = [
  ["pairings", "Devices paired"],
  ["unpairings", "Pairings ended: unpaired, expired, replaced or released"],
  ["no_free_license", "A pairing refused for want of a license (at most one notice every 10 minutes)"],
  ["rollout_halted", "A staged rollout halted"],
  ["apply_failed", "Devices failing to apply a configuration"],
  ["licenses_expiring", "Licenses ending within a week (at most one notice a day)"],
];

/** How often the deliveries are read again while the page is open. */
const POLL_MS = 3000;

/** The page's poller; a new page (or another section) stops the previous one. */
let poller = null;

function stopPolling() {
  if (poller) clearInterval(poller);
  poller = null;
}

window.addEventListener("hashchange", () => {
  if (!location.hash.endsWith("/webhooks")) stopPolling();
});

export async function renderWebhooks(org) {
  stopPolling();
  renderChrome(org, "webhooks");
  show("Webhooks", h("h1", {}, "Webhooks"), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  let organization, webhooks;
  try {
    [organization, webhooks] = await Promise.all([get(base), getAll(`${base}/webhooks`)]);
  } catch (error) {
    showError("Webhooks", error);
    return;
  }
  const status = h("p", { id: "webhooks-status", role: "status" });
  const secretSlot = h("div", { id: "new-webhook", "aria-live": "polite" });
  const list = h("div", { id: "webhook-list" });
  const empty = h("p", { id: "no-webhooks", hidden: webhooks.length > 0 }, "No webhook yet: add one so that your portal backend hears of this organization's events.");

  /** The deliveries of each webhook shown, by webhook id, and their rows' last state. */
  const shown = new Map();

  const webhookCard = (webhook) => {
    const deliveries = h("tbody", {});
    const remove = h(
      "button",
      { type: "button", class: "button secondary danger", "data-action": "delete-webhook", "aria-label": `Delete the webhook to ${webhook.url}` },
      "Delete",
    );
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete the webhook to ${webhook.url}? Nothing more is sent to it.`)) return;
      remove.disabled = true;
      try {
        await del(`${base}/webhooks/${segment(webhook.id)}`);
        card.remove();
        shown.delete(webhook.id);
        empty.hidden = shown.size > 0;
        status.textContent = `The webhook to ${webhook.url} is deleted.`;
        status.focus?.();
      } catch (error) {
        status.textContent = `Not deleted: ${errorMessage(error)}`;
        remove.disabled = false;
      }
    });
    const kinds = webhook.events
      .map((kind) => KINDS.find(([name]) => name === kind)?.[0] ?? kind)
      .join(", ");
    const card = h(
      "section",
      { class: "card webhook", "data-webhook-id": webhook.id, "aria-label": `Webhook to ${webhook.url}` },
      h("h3", { class: "webhook-url" }, webhook.url),
      h("p", { class: "muted" }, `Receives: ${kinds}. Added ${formatTime(webhook.created_at)} by ${webhook.created_by}.`),
      h("div", { class: "actions" }, remove),
      h("h4", {}, "Recent deliveries"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { class: "deliveries", "data-webhook-id": webhook.id },
          null,
          ["Event", "State", "Attempts", "Last answer", "Time", "Actions"],
          deliveries,
        ),
      ),
    );
    shown.set(webhook.id, { webhook, deliveries, rows: new Map() });
    return card;
  };

  const deliveryRow = (webhook, delivery) => {
    const actions = h("td", { "data-label": "Actions", class: "actions" });
    if (delivery.state !== "pending") {
      const again = h(
        "button",
        { type: "button", class: "button secondary", "data-action": "replay", "aria-label": `Send the ${delivery.kind} event ${delivery.id} again` },
        "Send again",
      );
      again.addEventListener("click", async () => {
        again.disabled = true;
        try {
          await post(`${base}/webhooks/${segment(webhook.id)}/deliveries/${delivery.id}/replay`, {});
          status.textContent = `The ${delivery.kind} event is being sent again.`;
          await refresh();
        } catch (error) {
          status.textContent = `Not sent again: ${errorMessage(error)}`;
          again.disabled = false;
        }
      });
      actions.append(again);
    }
    const answer = delivery.last_status
      ? `${delivery.last_status}${delivery.last_error ? ` · ${delivery.last_error}` : ""}`
      : delivery.last_error ?? "—";
    const time =
      delivery.state === "delivered"
        ? `delivered ${formatTime(delivery.delivered_at)}`
        : delivery.state === "pending" && delivery.next_attempt_at
          ? `next try ${formatTime(delivery.next_attempt_at)}`
          : formatTime(delivery.last_attempt_at ?? delivery.created_at);
    return h(
      "tr",
      { "data-delivery-id": delivery.id, "data-state": delivery.state, "data-event-id": delivery.event_id },
      h("td", { "data-label": "Event" }, delivery.kind),
      h("td", { "data-label": "State" }, h("span", { class: `badge delivery-${delivery.state}` }, delivery.state)),
      h("td", { "data-label": "Attempts" }, String(delivery.attempts)),
      h("td", { "data-label": "Last answer", class: "last-answer" }, answer),
      h("td", { "data-label": "Time" }, time),
      actions,
    );
  };

  /** Reads every shown webhook's recent deliveries; replaces only the rows that changed. */
  const refresh = async () => {
    for (const [id, entry] of shown) {
      let page;
      try {
        page = await get(`${base}/webhooks/${segment(id)}/deliveries?limit=20`);
      } catch {
        continue;
      }
      const seen = new Set();
      let previous = null;
      for (const delivery of page.items) {
        seen.add(delivery.id);
        const key = JSON.stringify([delivery.state, delivery.attempts, delivery.last_status, delivery.last_error, delivery.next_attempt_at]);
        const known = entry.rows.get(delivery.id);
        let row = known?.row;
        if (!known || known.key !== key) {
          const focused = known && known.row.contains(document.activeElement);
          row = deliveryRow(entry.webhook, delivery);
          if (known) known.row.replaceWith(row);
          entry.rows.set(delivery.id, { key, row });
          if (focused) row.querySelector("button")?.focus();
        }
        // Newest first: each row after the one before it.
        if (previous) {
          if (previous.nextSibling !== row) previous.after(row);
        } else if (entry.deliveries.firstChild !== row) {
          entry.deliveries.prepend(row);
        }
        previous = row;
      }
      for (const [deliveryId, known] of entry.rows) {
        if (!seen.has(deliveryId)) {
          known.row.remove();
          entry.rows.delete(deliveryId);
        }
      }
    }
  };

  for (const webhook of webhooks) list.append(webhookCard(webhook));

  const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, autocomplete: "off", placeholder: "https://portal.example.com/hooks/paird" });
  const boxes = KINDS.map(([kind, label]) =>
    h(
      "label",
      { class: "checkbox" },
      h("input", { type: "checkbox", name: "events", value: kind, id: `webhook-kind-${kind}`, checked: kind === "pairings" || kind === "unpairings" }),
      ` ${kind}: ${label}`,
    ),
  );
  const submit = h("button", { type: "submit", class: "button", id: "create-webhook" }, "Add webhook");
  const form = h(
    "form",
    { id: "create-webhook-form" },
    h("label", { for: "webhook-url" }, "Receiver URL (https://, or http:// on this machine)", url),
    h("fieldset", {}, h("legend", {}, "Events it receives"), ...boxes),
    submit,
  );
  let idempotencyKey = newIdempotencyKey();
  form.addEventListener("input", () => {
    idempotencyKey = newIdempotencyKey();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = boxes.map((box) => box.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
    if (!url.value.trim()) {
      status.textContent = "Enter the receiver's URL.";
      url.focus();
      return;
    }
    if (events.length === 0) {
      status.textContent = "Choose at least one kind of event.";
      boxes[0].querySelector("input").focus();
      return;
    }
    submit.disabled = true;
    status.textContent = "";
    try {
      const created = await post(`${base}/webhooks`, { url: url.value.trim(), events }, { "Idempotency-Key": idempotencyKey });
      idempotencyKey = newIdempotencyKey();
      url.value = "";
      secretSlot.replaceChildren(newWebhookSecret(created));
      secretSlot.querySelector("input")?.focus();
      list.prepend(webhookCard(created));
      empty.hidden = true;
    } catch (error) {
      status.textContent = `No webhook added: ${errorMessage(error)}`;
    } finally {
      submit.disabled = false;
    }
  });

  show(
    "Webhooks",
    h("p", { class: "org-name", id: "org-name" }, organization.name),
    h("h1", {}, "Webhooks"),
    h(
      "p",
      { class: "muted" },
      "Your portal backend can hear of this organization's events as they happen: each is posted to the webhook's URL, ",
      "signed with its secret (the Paird-Signature header), in order, and tried again until the receiver accepts it.",
    ),
    h("section", { "aria-labelledby": "create-webhook-title", class: "card form-card" }, h("h2", { id: "create-webhook-title" }, "New webhook"), form),
    secretSlot,
    status,
    h("h2", {}, "Webhooks of this organization"),
    empty,
    list,
  );
  await refresh();
  poller = setInterval(refresh, POLL_MS);
}

/** A new webhook's signing secret, shown this once: selectable, with a Copy button. */
function newWebhookSecret(created) {
  const field = h("input", {
    id: "new-webhook-secret",
    type: "text",
    readonly: true,
    value: created.secret,
    spellcheck: "false",
    "aria-describedby": "new-webhook-help",
  });
  const copied = h("span", { class: "copy-status", role: "status" });
  const copy = h("button", { type: "button", class: "button", id: "copy-webhook-secret" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(field.value);
      copied.textContent = "Copied.";
    } catch {
      field.focus();
      field.select();
      copied.textContent = document.execCommand("copy") ? "Copied." : "Select the secret and copy it yourself.";
    }
  });
  field.addEventListener("focus", () => field.select());
  return h(
    "div",
    { class: "alert warning new-key", "data-webhook-id": created.id },
    h("p", {}, h("strong", {}, `The webhook to ${created.url}`), " is added. Copy its secret now: it is not shown again."),
    h("label", { for: "new-webhook-secret", class: "visually-hidden" }, "The webhook's secret"),
    h("div", { class: "secret-row" }, field, copy, copied),
    h(
      "p",
      { id: "new-webhook-help", class: "muted" },
      "Your receiver checks each delivery with it: the Paird-Signature header is t=<seconds>,v1=<HMAC-SHA256 of \"<seconds>.<body>\">, ",
      "as docs/admin-api.md shows.",
    ),
  );
}

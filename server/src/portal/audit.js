// The Audit log section: newest first, a page at a time.

import { get, segment } from "./api.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

const AUDIT_PAGE = 100;

export async function renderAudit(org) {
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

// "Waiting for a license", on the Devices page, under the license summary: the devices that
// asked to wait when no license was free (the device protocol's `pair_or_wait`; docs/admin-api.md
// "Waiting list"). They stay connected and are paired in the order they came as soon as a license
// is added or freed, so the admin who finds the pool dry sees who is waiting, in that order, and
// how the line moves: adding licenses (the operator does; an organization admin buys them from
// the provider) pairs the first in line. "Dismiss" takes one device out of the line (it is
// refused `dismissed` and may ask again, at the end).
//
// When nobody waits the section is hidden; when the last device leaves while the page is open,
// it shrinks to one quiet line that says so (the keyboard, if it was on a Dismiss button, goes to
// that line instead of being lost). It follows the live feed through `schedule()`, which
// devices.js calls on `waiting` events (and on `licenses` and pairings while devices wait):
// reads are gathered, at most one a second, and only the rows that changed are replaced, so that
// the keyboard stays on the Dismiss button it was on.

import { ApiError, del, get, segment } from "./api.js";
import { errorMessage, formatTime, h } from "./ui.js";

/** Devices read per request (the API's largest page for this list). */
const PAGE_SIZE = 500;
/** The line is read up to this many devices; past it, the heading says "more than". */
const READ_AT_MOST = 2000;
/** Rows shown: the first in line, who are served first. */
const SHOWN_AT_MOST = 50;
/** Live events are gathered: the line is read at most this often. */
const REFRESH_EVERY_MS = 1000;

const NUMBER = new Intl.NumberFormat("en");

/**
 * The section, hidden until the first read finds a device waiting. Returns `{ element, refresh,
 * schedule, waiting }`: `refresh()` reads the line now, `schedule()` reads it soon (gathering live
 * events), `waiting()` says whether the last read found anyone.
 */
export function waitingSection(base, { operator }) {
  const heading = h("h2", { id: "waiting-title", tabindex: -1 });
  const hint = h(
    "p",
    { id: "waiting-hint", class: "waiting-hint" },
    "Each license added or freed pairs the first device in this line, in this order. ",
    operator
      ? "Add licenses with the form below to pair them."
      : "Buy licenses from your paird provider to pair them: they are paired as soon as the licenses are added.",
  );
  const list = h("ol", { id: "waiting-list", class: "waiting-list", "aria-labelledby": "waiting-title" });
  const more = h("p", { id: "waiting-more", class: "muted", hidden: true });
  const status = h("p", { id: "waiting-status", role: "status" });
  const element = h(
    "section",
    { id: "waiting", class: "waiting", "aria-labelledby": "waiting-title", hidden: true },
    heading,
    hint,
    list,
    more,
    status,
  );

  /** Ticket → { device, row }, in the order shown. */
  let rows = new Map();
  let count = 0;
  /** Whether a device has been seen waiting since the page opened (then an empty line says so). */
  let everShown = false;
  let reading = null;
  let timer = null;
  let lastRead = 0;

  const row = (device) => {
    const dismiss = h(
      "button",
      {
        type: "button",
        class: "button secondary",
        "data-action": "dismiss",
        "aria-label": `Dismiss ${device.name} (number ${device.position} in line)`,
      },
      "Dismiss",
    );
    dismiss.addEventListener("click", () => dismissDevice(device));
    return h(
      "li",
      { "data-ticket": device.ticket, "data-installation-id": device.installation_id },
      h("span", { class: "waiting-position", "aria-hidden": "true" }, String(device.position)),
      h(
        "span",
        { class: "waiting-device" },
        h("span", { class: "waiting-name" }, device.name),
        h("span", { class: "muted waiting-facts" }, `${device.model} · waiting since ${formatTime(device.since)} · from ${device.address}`),
      ),
      dismiss,
    );
  };

  /** Shows a read of the line: replaces the rows that changed, keeps the focus where it was. */
  const showLine = (devices, complete) => {
    const focusedTicket = list.contains(document.activeElement)
      ? document.activeElement.closest("li[data-ticket]")?.dataset.ticket
      : null;
    const focusedIndex = focusedTicket ? [...rows.keys()].indexOf(focusedTicket) : -1;
    const shown = devices.slice(0, SHOWN_AT_MOST);
    const next = new Map();
    for (const device of shown) {
      const ticket = String(device.ticket);
      const old = rows.get(ticket);
      if (old && JSON.stringify(old.device) === JSON.stringify(device)) {
        next.set(ticket, old);
      } else {
        const fresh = row(device);
        if (old) old.row.replaceWith(fresh);
        next.set(ticket, { device, row: fresh });
      }
    }
    for (const [ticket, old] of rows) if (!next.has(ticket)) old.row.remove();
    // The rows in the line's order; a row already in place is not moved (moving it would take
    // the focus off its button).
    let previous = null;
    for (const { row: item } of next.values()) {
      const wanted = previous ? previous.nextElementSibling : list.firstElementChild;
      if (wanted !== item) {
        if (previous) previous.after(item);
        else list.prepend(item);
      }
      previous = item;
    }
    rows = next;
    count = devices.length;
    const countText = complete ? NUMBER.format(count) : `More than ${NUMBER.format(READ_AT_MOST)}`;
    heading.textContent =
      count === 0
        ? "No device is waiting for a license."
        : `${countText} ${count === 1 && complete ? "device" : "devices"} waiting for a license`;
    more.hidden = count <= shown.length;
    more.textContent = `The first ${shown.length} are shown; ${complete ? NUMBER.format(count - shown.length) : "more"} wait after them.`;
    everShown ||= count > 0;
    element.hidden = !everShown;
    element.classList.toggle("empty", count === 0);
    hint.hidden = count === 0;
    // The focused row left (paired or dismissed): the keyboard goes to the row now in its place,
    // or to the heading when the line emptied or ended there.
    if (focusedTicket && !rows.has(focusedTicket)) {
      const items = [...rows.values()];
      const target = items[Math.min(Math.max(focusedIndex, 0), items.length - 1)];
      if (target) target.row.querySelector("button")?.focus();
      else heading.focus();
    } else if (focusedTicket) {
      rows.get(focusedTicket)?.row.querySelector("button")?.focus();
    }
  };

  const readLine = async () => {
    const devices = [];
    let cursor = null;
    do {
      const page = await get(`${base}/waiting?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      devices.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && devices.length < READ_AT_MOST);
    return { devices, complete: !cursor };
  };

  const refresh = async () => {
    // One read at a time; a refresh asked for meanwhile reads again after it.
    if (reading) {
      reading.again = true;
      return;
    }
    reading = { again: false };
    lastRead = Date.now();
    try {
      const { devices, complete } = await readLine();
      showLine(devices, complete);
    } catch (error) {
      status.textContent = `The waiting devices could not be read: ${errorMessage(error)}`;
    } finally {
      const again = reading.again;
      reading = null;
      if (again) schedule();
    }
  };

  const schedule = () => {
    if (timer) return;
    const wait = Math.max(0, lastRead + REFRESH_EVERY_MS - Date.now());
    timer = setTimeout(() => {
      timer = null;
      if (element.isConnected) refresh();
    }, wait);
  };

  const dismissDevice = async (device) => {
    if (
      !window.confirm(
        `Dismiss “${device.name}” from the line? It is refused a license and told so; it may ask again, at the end of the line.`,
      )
    ) {
      return;
    }
    try {
      await del(`${base}/waiting/${segment(String(device.ticket))}`);
      status.textContent = `${device.name} was dismissed from the line.`;
    } catch (error) {
      status.textContent =
        error instanceof ApiError && error.status === 404
          ? `${device.name} is no longer in the line (paired or gone).`
          : `${device.name} was not dismissed: ${errorMessage(error)}`;
    }
    await refresh();
  };

  return { element, refresh, schedule, waiting: () => count > 0 };
}

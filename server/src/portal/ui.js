// Shared pieces of the portal's views: element building, the page frame (title, navigation,
// errors) and formatting. Everything shown is built with DOM calls and textContent: data from the
// API is never parsed as HTML.

import { ApiError, segment, session } from "./api.js";

export const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");

export const SECTIONS = [
  ["devices", "Devices"],
  ["codes", "Codes"],
  ["configurations", "Configurations"],
  ["audit", "Audit log"],
  ["webhooks", "Webhooks"],
];

/** Sections only the operator sees (an organization's keys are how its admins sign in). */
const OPERATOR_SECTIONS = [["keys", "Keys"]];

/** `h("p", {class: "x"}, "text", child)`: an element with attributes and children. */
export function h(tag, attributes = {}, ...children) {
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
export function table(attributes, caption, columns, body) {
  return h(
    "table",
    attributes,
    caption && h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((label) => h("th", { scope: "col" }, label)))),
    body,
  );
}

/** Replaces the page's content and gives the main region a title. */
export function show(title, ...content) {
  document.title = `${title} · paird Customer Portal`;
  // Leaves out absent parts (a `cond ? x : null`), which replaceChildren would write as "null".
  main.replaceChildren(...content.filter((part) => part !== null && part !== undefined && part !== false));
}

/**
 * Opens the view at `hash`. Already there (a bookmarked address opened before signing in), the
 * view is routed again: setting the same hash would change nothing.
 */
export function go(hash) {
  if (location.hash === hash) {
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = hash;
  }
}

/** A time from the API (RFC 3339, UTC) as "2026-03-04 15:47 UTC"; "—" when absent. */
export function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function errorMessage(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return "Your token is no longer accepted. Sign in again.";
    if (error.status === 404) return "Not found: this organization does not exist or your token cannot see it.";
    return error.message;
  }
  return String(error);
}

export function showError(title, error) {
  show(title, h("h1", {}, title), h("p", { class: "alert error", role: "alert" }, errorMessage(error)));
  if (error instanceof ApiError && error.status === 401) {
    session.clear();
    renderChrome(null);
  }
}

// --- chrome: navigation and sign out -----------------------------------------------------------

export function renderChrome(org, current) {
  const signedIn = Boolean(session.token());
  signOutButton.hidden = !signedIn;
  nav.hidden = !signedIn;
  const links = [];
  if (signedIn && session.role() === "operator") {
    links.push(navLink("#/organizations", "Organizations", current === "organizations"));
  }
  // A key's navigation always leads to its own organization, whatever the address says.
  if (signedIn && session.role() === "key" && session.organization()) org = session.organization();
  if (signedIn && org) {
    const sections = session.role() === "operator" ? [...SECTIONS, ...OPERATOR_SECTIONS] : SECTIONS;
    for (const [section, label] of sections) {
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

// --- dialogs -----------------------------------------------------------------------------------

let dialogsOpened = 0;

/**
 * Opens a modal dialog: an HTML `<dialog>` shown with `showModal()`, so it sits in the browser's
 * top layer, above the page and outside every scrolling box of it (nothing can clip it), and the
 * page behind it is inert. The keyboard goes to its title. Escape closes it, after `onEscape`
 * (which may act, e.g. cancel what the dialog shows). Whatever closes it (Escape, `close()`,
 * leaving the page), it leaves the document, `onClose` runs, and the keyboard goes back to
 * `returnFocus()` (by default the element that had it when the dialog opened).
 *
 * Returns `{ dialog, heading, close }`.
 */
export function openDialog({ title, content, className = "", attributes = {}, onEscape, onClose, returnFocus }) {
  const opener = document.activeElement;
  dialogsOpened += 1;
  const titleId = `dialog-title-${dialogsOpened}`;
  const heading = h("h2", { id: titleId, tabindex: -1 }, title);
  const dialog = h(
    "dialog",
    { ...attributes, class: `dialog ${className}`.trim(), "aria-labelledby": titleId },
    heading,
    content,
  );
  // The browser closes the dialog on Escape after this "cancel" event.
  dialog.addEventListener("cancel", () => onEscape?.());
  dialog.addEventListener("close", () => {
    dialog.remove();
    onClose?.();
    const target = returnFocus ? returnFocus() : opener;
    if (target?.isConnected) target.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  heading.focus();
  return {
    dialog,
    heading,
    close() {
      if (dialog.open) dialog.close();
    },
  };
}

/** Closes every open dialog: a new view does not inherit the previous one's. */
export function closeDialogs() {
  for (const dialog of document.querySelectorAll("body > dialog")) {
    if (dialog.open) dialog.close();
    else dialog.remove();
  }
}

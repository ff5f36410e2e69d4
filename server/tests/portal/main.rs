//! Browser tests of the Customer Portal: a real paird on 127.0.0.1 (in this process, with a
//! throwaway database, as in the black-box tests), a real headless Chromium driven over W3C
//! WebDriver by chromedriver, real devices paired over WebSocket.
//!
//! The first run installs Chromium, chromedriver and zbarimg with `scripts/browser-deps`.
//!
//! - `webdriver`: the WebDriver client and the chromedriver process.
//! - `fixture`: a server with organizations, devices and a browser pointed at the portal.
//! - `assets`: the portal's files over plain HTTP (content types, caching, CSP).
//! - `pages`: what a user sees and does in the browser.
//! - `codes`, `configurations`, `devices`: one section of the portal each, with real devices.
//! - `detail`: a device's own page and the audit log's filters and links.
//! - `lifecycle`: replacing a device from its page; the inactive-device release.
//! - `fleet`: the Devices list at fleet scale: paging, search, filters, sort, the address, live
//!   pairings, selection and actions on many devices, CSV export.
//! - `layout`: the Devices page at desktop and phone widths, the single-use QR read from a
//!   screenshot.
//! - `keyboard`, `live`: the portal from the keyboard alone; the pages following the live feed.
//! - `operator`: the operator's pages (organizations and their keys).
//! - `rollouts`: the Configurations editor's staged rollouts, with real devices.
//! - `waiting`: the Devices page's waiting list, with real devices waiting for a license.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

// The black-box tests' harness, shared; not every helper of it is used here.
#[allow(dead_code)]
#[path = "../blackbox/support.rs"]
mod support;

mod assets;
mod codes;
mod configurations;
mod detail;
mod devices;
mod fixture;
mod fleet;
mod keyboard;
mod layout;
mod lifecycle;
mod live;
mod operator;
mod pages;
mod rollouts;
mod waiting;
mod webdriver;
mod webhooks;

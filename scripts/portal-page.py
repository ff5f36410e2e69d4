#!/usr/bin/env python3
"""The portal's Devices page in a headless Chromium, for benchmarks (not tests).

  portal-page.py hold      opens the Devices page of $PAIRD_ORG at $PAIRD_PORTAL, signed in with
                           $PAIRD_KEY, prints `ready` once its first rows show, and keeps it open
                           (live feed and all) until its standard input ends. The load tester's
                           `enroll --page` runs it, to measure what an open page costs pairing.
  portal-page.py measure   the same page loaded again and again: the time from navigation to the
                           first page of rows rendered, and from the last keystroke of a search to
                           the filtered page shown (browser clock, `performance.now()`); prints
                           each round and the medians and p90 as JSON.

Needs Chromium and chromedriver (`scripts/browser-deps` installs them). Talks only to loopback:
chromedriver on a free 127.0.0.1 port, the portal at the address given. Standard library only.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

# What the Devices page shows (server/src/portal/devices.js).
ROWS = "#licenses tbody tr[data-license-id]"
SEARCH = "#device-search"

# How long the page may take to show what is waited for, in seconds.
WAIT = 60


class Driver:
    """A chromedriver process and one headless Chromium session on it."""

    def __init__(self, width, height):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("chromedriver did not start")
                time.sleep(0.05)
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    f"--window-size={width},{height}",
                ],
            },
        }
        answer = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = answer["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)["value"]

    def session_call(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.session_call("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.session_call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def wait_script(self, source, *args):
        """An asynchronous script: the last argument is its callback."""
        return self.session_call("POST", "/execute/async", {"script": source, "args": list(args)})

    def quit(self):
        try:
            self.session_call("DELETE", "")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


# Resolves with performance.now() once `test()` holds, checked every animation frame.
WAIT_UNTIL = """
const [selector, needle, limitMs, done] = arguments;
const started = performance.now();
function test() {
  const rows = document.querySelectorAll(selector);
  if (rows.length === 0) return false;
  if (needle === null) return true;
  return rows.length > 0 && Array.from(rows).every((row) => row.textContent.toLowerCase().includes(needle));
}
function poll() {
  if (test()) return done(performance.now());
  if (performance.now() - started > limitMs) return done(null);
  requestAnimationFrame(poll);
}
poll();
"""

# Types the search (as the last keystroke does: the value, then an input event) and resolves
# with the time from then until the rows all match.
SEARCH_AND_WAIT = """
const [searchSelector, selector, text, limitMs, done] = arguments;
const input = document.querySelector(searchSelector);
if (!input) return done(null);
const needle = text.toLowerCase();
input.focus();
input.value = text;
const typed = performance.now();
input.dispatchEvent(new Event("input", { bubbles: true }));
function matches() {
  const rows = document.querySelectorAll(selector);
  if (text === "") return rows.length > 1;
  return rows.length > 0 && Array.from(rows).every((row) => row.textContent.toLowerCase().includes(needle));
}
function poll() {
  if (matches()) return done(performance.now() - typed);
  if (performance.now() - typed > limitMs) return done(null);
  requestAnimationFrame(poll);
}
poll();
"""


def sign_in(driver, portal, key, org):
    driver.go(portal)
    # The portal keeps the key in the tab's sessionStorage; signing in through the form checks it.
    deadline = time.monotonic() + WAIT
    while True:
        found = driver.script("return document.querySelector('#token') !== null")
        if found:
            break
        if time.monotonic() > deadline:
            raise SystemExit("no sign-in form")
        time.sleep(0.05)
    driver.script(
        """
        const [key] = arguments;
        const input = document.querySelector('#token');
        input.value = key;
        input.dispatchEvent(new Event('input', { bubbles: true }));
        document.querySelector('#sign-in').click();
        """,
        key,
    )
    deadline = time.monotonic() + WAIT
    while driver.script("return document.querySelector('#token') !== null"):
        if time.monotonic() > deadline:
            raise SystemExit("signing in did not finish")
        time.sleep(0.05)


def devices_url(portal, org):
    return f"{portal}#/organizations/{org}/devices"


def first_page(driver, portal, org):
    """Loads the Devices page afresh; the browser-clock time until its rows show, in ms."""
    driver.go("about:blank")
    driver.go(devices_url(portal, org))
    shown = driver.wait_script(WAIT_UNTIL, ROWS, None, WAIT * 1000)
    if shown is None:
        raise SystemExit("the Devices page showed no rows")
    return shown


def environment():
    try:
        return os.environ["PAIRD_PORTAL"], os.environ["PAIRD_ORG"], os.environ["PAIRD_KEY"]
    except KeyError as missing:
        raise SystemExit(f"{missing} is not set")


def hold(args):
    portal, org, key = environment()
    driver = Driver(args.width, args.height)
    try:
        sign_in(driver, portal, key, org)
        first_page(driver, portal, org)
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        driver.quit()


def summary(values):
    values = sorted(values)
    return {
        "median_ms": round(statistics.median(values), 1),
        "p90_ms": round(values[max(0, int(len(values) * 0.9 + 0.5) - 1)], 1),
        "max_ms": round(values[-1], 1),
        "rounds": len(values),
    }


def measure(args):
    portal, org, key = environment()
    driver = Driver(args.width, args.height)
    try:
        sign_in(driver, portal, key, org)
        first_page(driver, portal, org)  # warm: the browser's cache of the portal's files
        navigation, search = [], []
        for round_ in range(args.rounds):
            shown = first_page(driver, portal, org)
            navigation.append(shown)
            text = args.searches[round_ % len(args.searches)]
            took = driver.wait_script(SEARCH_AND_WAIT, SEARCH, ROWS, text, WAIT * 1000)
            if took is None:
                raise SystemExit(f"searching {text!r} showed no matching page")
            search.append(took)
            print(json.dumps({"round": round_ + 1, "navigation_ms": round(shown, 1), "search": text, "search_ms": round(took, 1)}), file=sys.stderr)
        print(json.dumps({"navigation": summary(navigation), "search": summary(search), "width": args.width}, indent=2))
    finally:
        driver.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("hold", help="open the page until standard input ends")
    measure_parser = commands.add_parser("measure", help="time first page and search")
    measure_parser.add_argument("--rounds", type=int, default=20)
    measure_parser.add_argument(
        "--search",
        dest="searches",
        action="append",
        help="a search to type (repeatable; default: a few device names)",
    )
    args = parser.parse_args()
    if args.command == "hold":
        hold(args)
    else:
        args.searches = args.searches or ["Van 4242", "Truck 17001", "Meter reader 50002", "Handheld 99"]
        measure(args)


if __name__ == "__main__":
    main()

// The organization's live feed (GET /v1/organizations/{org}/events, server-sent events), read
// with fetch because EventSource cannot send the Authorization header. One feed at a time: a
// page that watches replaces the previous page's feed, and leaving a page stops it.
//
// Events name what changed, by id; the page re-reads what it shows. When the stream ends (the
// server restarted, the network dropped), the feed reconnects after a pause and then tells the
// page to re-read everything, since nothing is replayed.

import { session } from "./api.js";

const RECONNECT_MS = [1000, 2000, 5000, 10000];

let current = null;

/**
 * Watches `org`'s feed. `onEvent(name, data)` gets each event ("devices", "licenses", "codes",
 * "configurations", "rollout", "waiting", "resync"); `onState(state)` gets "connecting", "live" or "reconnecting".
 */
export function watch(org, onEvent, onState = () => {}) {
  stopWatching();
  const feed = { stopped: false, controller: null };
  current = feed;
  run(feed, org, onEvent, onState);
  return feed;
}

// Leaving the document (a reload, another address) ends the feed at once: a stream the browser
// left to close by itself can keep one of its few connections to the server busy until the
// server's next keep-alive line, and the next page's requests wait for it.
window.addEventListener("pagehide", () => stopWatching());

/** Ends the current feed, if any. */
export function stopWatching() {
  if (!current) return;
  current.stopped = true;
  current.controller?.abort();
  current = null;
}

async function run(feed, org, onEvent, onState) {
  let attempt = 0;
  let connectedBefore = false;
  while (!feed.stopped) {
    onState(connectedBefore ? "reconnecting" : "connecting");
    feed.controller = new AbortController();
    try {
      const response = await fetch(`/v1/organizations/${encodeURIComponent(org)}/events`, {
        headers: { Authorization: `Bearer ${session.token() ?? ""}`, Accept: "text/event-stream" },
        cache: "no-store",
        signal: feed.controller.signal,
      });
      // A refused token or a vanished organization will not get better by retrying.
      if (response.status === 401 || response.status === 403 || response.status === 404) {
        onState("off");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`feed answered ${response.status}`);
      for await (const [name, data] of events(response.body)) {
        if (feed.stopped) return;
        if (name === "ready") {
          attempt = 0;
          onState("live");
          // Whatever happened while the stream was down is read again.
          if (connectedBefore) onEvent("resync", {});
          connectedBefore = true;
          continue;
        }
        onEvent(name, data);
      }
    } catch {
      // Aborted, or the connection dropped: reconnect below unless stopped.
    }
    if (feed.stopped) return;
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)]));
    attempt += 1;
  }
}

/** The events of a text/event-stream body, as [name, parsed data] pairs. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue; // a keep-alive comment
      let parsed = {};
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        parsed = {};
      }
      yield [name, parsed];
    }
  }
}

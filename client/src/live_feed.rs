//! An organization's live feed (`GET /v1/organizations/{org}/events`, docs/admin-api.md §7.9),
//! read as server-sent events.
//!
//! [`EventStreamDecoder`] reads the `text/event-stream` format itself, without I/O: bytes in,
//! events out, whatever the chunks they arrive in (a line, or a character, may be split between
//! two). [`LiveFeed`] is an open feed over HTTP: it checks the answer, waits for the feed's
//! `ready` event, and hands out the events after it with their JSON data. Open one with
//! [`AdminClient::open_live_feed`](crate::admin::AdminClient::open_live_feed).

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

/// The longest line the decoder holds while waiting for its end. The feed's events are a few
/// hundred bytes (a batch of pairings names at most a few thousand device ids); a stream that
/// goes on past this without a line break is not a live feed.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One server-sent event as the stream carries it: its name (`message` when the stream gave
/// none) and its data (the `data:` lines, joined with line breaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub name: String,
    pub data: String,
}

/// Why the decoder stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the event stream sent a line that is not UTF-8")]
    NotUtf8,
    #[error("the event stream sent a line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// The `text/event-stream` format (the WHATWG "server-sent events" parsing rules), without I/O.
///
/// Lines end with LF or CR LF (a lone CR is not taken for a line end: no server we read sends
/// one). A blank line ends an event; an event without data is dropped, which is also what
/// becomes of comment lines (`: keep-alive`). `id:` and `retry:` are read past: the live feed
/// replays nothing, so there is nothing to resume from.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    /// Bytes received and not yet read as lines; `unread[read..]` is still to be read.
    unread: Vec<u8>,
    read: usize,
    /// The event being put together.
    name: Option<String>,
    data: Option<String>,
}

impl EventStreamDecoder {
    pub fn new() -> EventStreamDecoder {
        EventStreamDecoder::default()
    }

    /// Takes the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.unread.drain(..self.read);
        self.read = 0;
        self.unread.extend_from_slice(bytes);
    }

    /// The next complete event in what was pushed so far, if there is one.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, DecodeError> {
        while let Some(length) = self.unread[self.read..].iter().position(|&b| b == b'\n') {
            let start = self.read;
            self.read += length + 1;
            let mut line = &self.unread[start..start + length];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = std::str::from_utf8(line).map_err(|_| DecodeError::NotUtf8)?;
            if line.is_empty() {
                let name = self.name.take();
                if let Some(data) = self.data.take() {
                    return Ok(Some(StreamEvent {
                        name: name.unwrap_or_else(|| "message".to_string()),
                        data,
                    }));
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                // A comment (empty field name), `id`, `retry` or a field the format does not
                // define: nothing to keep.
                _ => {}
            }
        }
        if self.unread.len() - self.read > MAX_LINE_BYTES {
            return Err(DecodeError::LineTooLong);
        }
        Ok(None)
    }
}

/// One event of the live feed: its name (`devices`, `licenses`, `codes`, `configurations`,
/// `key_revoked`, `resync`) and its data, which is JSON (`{"kind": …, …}`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub name: String,
    pub data: Value,
}

/// Why a live feed could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LiveFeedError {
    #[error("the live feed request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the live feed answered {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the live feed answered {0:?}, not text/event-stream")]
    NotEventStream(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the live feed's {name:?} event carries no JSON: {error}")]
    NotJson {
        name: String,
        error: serde_json::Error,
    },
    #[error("the live feed did not open with its ready event (it sent {0:?})")]
    NoReady(Option<FeedEvent>),
}

/// An open live feed, after its `ready` event: whatever is committed from then on is told.
#[derive(Debug)]
pub struct LiveFeed {
    response: reqwest::Response,
    decoder: EventStreamDecoder,
}

impl LiveFeed {
    /// Reads the feed from the answer to its request: checks that it is a `200` event stream
    /// and waits for the `ready` event.
    pub(crate) async fn from_response(
        response: reqwest::Response,
    ) -> Result<LiveFeed, LiveFeedError> {
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            return Err(LiveFeedError::Refused { status, body });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("text/event-stream") {
            return Err(LiveFeedError::NotEventStream(content_type));
        }
        let mut feed = LiveFeed {
            response,
            decoder: EventStreamDecoder::new(),
        };
        match feed.next_event().await? {
            Some(event) if event.name == "ready" => Ok(feed),
            other => Err(LiveFeedError::NoReady(other)),
        }
    }

    /// The headers the feed was answered with.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The next event, or `None` once the stream ended (the server stopped, or the key the
    /// feed was opened with was revoked). Waits as long as it takes: bound it with a timeout.
    /// Cancel-safe: a call dropped before it finished (in a `select!`) loses no event, since
    /// what arrived is handed to the decoder in the same step that received it.
    pub async fn next_event(&mut self) -> Result<Option<FeedEvent>, LiveFeedError> {
        loop {
            if let Some(event) = self.decoder.next_event()? {
                let data =
                    serde_json::from_str(&event.data).map_err(|error| LiveFeedError::NotJson {
                        name: event.name.clone(),
                        error,
                    })?;
                return Ok(Some(FeedEvent {
                    name: event.name,
                    data,
                }));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.decoder.push(&chunk),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event in `chunks`, pushed one chunk at a time.
    fn decode(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, DecodeError> {
        let mut decoder = EventStreamDecoder::new();
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(event) = decoder.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn event(name: &str, data: &str) -> StreamEvent {
        StreamEvent {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn named_events_with_their_data() {
        let stream = b"event: ready\ndata: {}\n\nevent: devices\ndata: {\"kind\":\"devices\"}\n\n";
        assert_eq!(
            decode(&[stream]),
            Ok(vec![
                event("ready", "{}"),
                event("devices", "{\"kind\":\"devices\"}")
            ])
        );
    }

    #[test]
    fn the_same_events_whatever_the_chunks() {
        let stream = "event: devices\r\ndata: {\"name\":\"Zürich ☃\"}\r\n\r\n: keep-alive\n\n\
                      event:codes\ndata:{}\n\n"
            .as_bytes();
        let whole = decode(&[stream]).unwrap();
        assert_eq!(
            whole,
            vec![
                event("devices", "{\"name\":\"Zürich ☃\"}"),
                event("codes", "{}")
            ]
        );
        // Split at every byte: lines, line ends and multi-byte characters cut in two.
        for cut in 0..stream.len() {
            let (first, second) = stream.split_at(cut);
            assert_eq!(decode(&[first, second]).unwrap(), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode(&bytes).unwrap(), whole);
    }

    #[test]
    fn comments_and_events_without_data_are_dropped() {
        let stream = b": keep-alive\n\nevent: nothing\n\nid: 7\nretry: 10\n\ndata: x\n\n";
        assert_eq!(decode(&[stream]), Ok(vec![event("message", "x")]));
    }

    #[test]
    fn data_lines_are_joined_and_one_leading_space_is_dropped() {
        let stream = b"data:  two spaces\ndata\ndata: last\n\n";
        assert_eq!(
            decode(&[stream]),
            Ok(vec![event("message", " two spaces\n\nlast")])
        );
    }

    #[test]
    fn an_event_is_told_only_once_its_blank_line_arrived() {
        assert_eq!(decode(&[b"event: codes\ndata: {}\n"]), Ok(Vec::new()));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error() {
        assert_eq!(decode(&[b"data: \xff\xfe\n\n"]), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn a_line_without_end_is_not_held_for_ever() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        assert_eq!(
            decode(&[&b"data: "[..], &long]),
            Err(DecodeError::LineTooLong)
        );
    }
}

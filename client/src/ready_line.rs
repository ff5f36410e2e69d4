//! The ready line of `paird serve`: one line of JSON on standard output that tells a program
//! which started paird where it listens, so that it never reads the banner written for humans.
//!
//! paird prints it once, after its banner, when both listeners are bound, the engine runs and
//! (with `--demo`) the demo organization exists:
//!
//! ```text
//! {"paird":"ready","version":"0.1.0","device_url":"ws://127.0.0.1:7878/device","admin_url":"http://127.0.0.1:7879","portal_url":"http://127.0.0.1:7879/portal/","device_address":"127.0.0.1:7878","admin_address":"127.0.0.1:7879","database":"sqlite://paird-data/paird.db","new_operator_token":null}
//! ```
//!
//! The server writes it from [`ReadyLine`] and programs read it back into the same type, so the
//! two cannot drift apart. [`read_startup`] reads a server's standard output up to that line.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The value of the `paird` field that makes a line the ready line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadyMarker {
    #[default]
    #[serde(rename = "ready")]
    Ready,
}

/// What `paird serve` tells a program once it serves. Fields may be added; a reader ignores
/// those it does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// Always `"ready"`: what marks the line.
    pub paird: ReadyMarker,
    /// The version of the `paird` binary.
    pub version: String,
    /// The device WebSocket endpoint, `ws://host:port/device`, on the address it is bound to
    /// (the real port when it was started on port 0).
    pub device_url: String,
    /// The admin API, `http://host:port`, on the address it is bound to.
    pub admin_url: String,
    /// The Customer Portal, `http://host:port/portal/`: the admin listener serves it.
    pub portal_url: String,
    /// The address the device listener is bound to, `host:port`.
    pub device_address: SocketAddr,
    /// The address the admin listener is bound to, `host:port`.
    pub admin_address: SocketAddr,
    /// The database URL, as given (or the SQLite file's default).
    pub database: String,
    /// The operator token this start created (the first start on a database without
    /// `PAIRD_OPERATOR_TOKEN`), else `null`. The banner shows the same token once, on the same
    /// stream, and it is saved in `<data-dir>/operator-token`; a token given through the
    /// environment is never repeated here.
    pub new_operator_token: Option<String>,
}

/// Why a line could not be taken for the ready line, or the ready line never came.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read paird's output: {0}")]
    Read(#[from] std::io::Error),
    /// A line marked `"paird":"ready"` that does not hold what a ready line holds.
    #[error("paird printed a ready line this program cannot read ({error}): {line}")]
    Malformed {
        line: String,
        error: serde_json::Error,
    },
    /// The output ended first: paird exited (its error is on its standard error).
    #[error("paird's output ended before its ready line:\n{}", banner.join("\n"))]
    Ended { banner: Vec<String> },
}

impl ReadyLine {
    /// `line` as the ready line; `None` for every other line paird prints (the banner, the
    /// demo's QR code).
    pub fn recognize(line: &str) -> Result<Option<ReadyLine>, StartupError> {
        #[derive(Deserialize)]
        struct Marked {
            paird: Option<ReadyMarker>,
        }
        let line = line.trim();
        if !line.starts_with('{') {
            return Ok(None);
        }
        match serde_json::from_str::<Marked>(line) {
            Ok(Marked { paird: Some(_) }) => {
                serde_json::from_str(line)
                    .map(Some)
                    .map_err(|error| StartupError::Malformed {
                        line: line.to_string(),
                        error,
                    })
            }
            _ => Ok(None),
        }
    }

    /// The line itself, without its line break.
    pub fn to_line(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What `paird serve` printed on start-up.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The lines printed before the ready line (the human banner).
    pub banner: Vec<String>,
    pub ready: ReadyLine,
}

/// Reads `paird serve`'s standard output up to its ready line. What it prints afterwards is read
/// and dropped by a task of its own, so that paird never blocks on a full pipe. Waits as long as
/// it takes: bound it with a timeout.
pub async fn read_startup<R>(output: R) -> Result<Startup, StartupError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut lines = BufReader::new(output).lines();
    let mut banner = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(ready) = ReadyLine::recognize(&line)? {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(Startup { banner, ready });
        }
        banner.push(line);
    }
    Err(StartupError::Ended { banner })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ReadyLine {
        ReadyLine {
            paird: ReadyMarker::Ready,
            version: "0.1.0".into(),
            device_url: "ws://127.0.0.1:7878/device".into(),
            admin_url: "http://127.0.0.1:7879".into(),
            portal_url: "http://127.0.0.1:7879/portal/".into(),
            device_address: ([127, 0, 0, 1], 7878).into(),
            admin_address: ([127, 0, 0, 1], 7879).into(),
            database: "sqlite://paird-data/paird.db".into(),
            new_operator_token: None,
        }
    }

    /// The line as README.md and the module's documentation show it.
    #[test]
    fn the_line_is_pinned() {
        assert_eq!(
            example().to_line(),
            r#"{"paird":"ready","version":"0.1.0","device_url":"ws://127.0.0.1:7878/device","admin_url":"http://127.0.0.1:7879","portal_url":"http://127.0.0.1:7879/portal/","device_address":"127.0.0.1:7878","admin_address":"127.0.0.1:7879","database":"sqlite://paird-data/paird.db","new_operator_token":null}"#
        );
        let mut created = example();
        created.new_operator_token = Some("paird_op_x".into());
        assert!(
            created
                .to_line()
                .ends_with(r#""new_operator_token":"paird_op_x"}"#)
        );
    }

    /// README.md shows the same line, so that it cannot drift from what paird prints.
    #[test]
    fn the_readme_shows_the_line() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&example().to_line()),
            "README.md's ready line"
        );
    }

    #[test]
    fn the_ready_line_reads_back_and_other_lines_are_not_it() {
        let line = example().to_line();
        assert_eq!(ReadyLine::recognize(&line).unwrap(), Some(example()));
        for other in [
            "paird is running",
            "  admin API        http://127.0.0.1:7879",
            "",
            "{not json",
            r#"{"paird":null}"#,
            r#"{"device_url":"ws://x/device"}"#,
            r#"{"paird":"stopping"}"#,
        ] {
            assert_eq!(ReadyLine::recognize(other).unwrap(), None, "{other}");
        }
    }

    #[test]
    fn fields_a_reader_does_not_know_are_ignored() {
        let line = example().to_line().replace('}', r#","pid":42}"#);
        assert_eq!(ReadyLine::recognize(&line).unwrap(), Some(example()));
    }

    #[test]
    fn a_ready_line_without_its_fields_is_an_error() {
        let error = ReadyLine::recognize(r#"{"paird":"ready","version":"0.1.0"}"#).unwrap_err();
        assert!(matches!(error, StartupError::Malformed { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn startup_is_the_banner_then_the_ready_line() {
        let output = format!(
            "paird is running\n  device endpoint  ws://elsewhere\n{}\nlater\n",
            example().to_line()
        );
        let startup = read_startup(std::io::Cursor::new(output.into_bytes()))
            .await
            .unwrap();
        assert_eq!(startup.ready, example());
        assert_eq!(
            startup.banner,
            vec!["paird is running", "  device endpoint  ws://elsewhere"]
        );
    }

    #[tokio::test]
    async fn output_that_ends_first_says_what_was_printed() {
        let output = b"paird is running\n".to_vec();
        let error = read_startup(std::io::Cursor::new(output))
            .await
            .unwrap_err();
        match error {
            StartupError::Ended { banner } => assert_eq!(banner, vec!["paird is running"]),
            other => panic!("{other:?}"),
        }
    }
}

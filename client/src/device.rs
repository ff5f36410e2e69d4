//! A long-running device: pair once, then stay connected for good.
//!
//! The device keeps its identity and its last applied configuration in a state file. It
//! reconnects after a network failure or a server shutdown with jittered exponential back-off,
//! trying the next server address each time, and stops for good when the server says the pairing
//! is over (unpaired, license expired, credential refused, superseded by another connection).

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{
    AckOutcome, CloseCode, ConfigRef, Configuration, DeviceInfo, EndReason, Paired, PairingPayload,
    Refused, Resumed, ServerMessage,
};

use crate::connection::{ClientError, ConnectOptions, Connection, PairResult, ResumeResult};
use crate::identity::{DeviceIdentity, DeviceState};

/// What happened, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    Connected {
        server: String,
    },
    Paired(Paired),
    Resumed(Resumed),
    /// A configuration arrived, was applied (or not) and the acknowledgement was recorded.
    Configuration(Configuration),
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
    /// The server asked the device to wait (a pairing refused as `rate_limited` or
    /// `unavailable`, with its `retry_after_ms`): it tries again after `retry_in`.
    Waiting {
        reason: String,
        retry_in: Duration,
    },
}

/// How many times a device asks to pair when the server tells it to wait, before it gives up.
pub const PAIR_ATTEMPTS: u32 = 5;

/// Why a device stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("state file {path}: {error}")]
    State {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid pairing payload: {0}")]
    Payload(#[from] protocol::PayloadError),
    #[error("pairing refused: {}", .0.reason)]
    Refused(Refused),
    #[error("the pairing is over: {}", .0.as_str())]
    Ended(EndReason),
    #[error("closed by the server and told not to reconnect ({0:?})")]
    Closed(Option<CloseCode>),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// How a device applies a configuration. The command-line device writes it to a file; a test
/// may refuse it.
pub trait Apply {
    fn apply(&mut self, configuration: &Configuration) -> Result<(), String>;
}

impl<F: FnMut(&Configuration) -> Result<(), String>> Apply for F {
    fn apply(&mut self, configuration: &Configuration) -> Result<(), String> {
        self(configuration)
    }
}

/// Pairs with the code in `payload` (unless the state file shows this device is paired
/// already), saves the state, then runs like [`run`].
pub async fn pair_and_run(
    payload: &str,
    state_path: &Path,
    info: &DeviceInfo,
    options: &ConnectOptions,
    apply: &mut dyn Apply,
    on_event: &mut dyn FnMut(DeviceEvent),
) -> Result<(), DeviceError> {
    let payload = PairingPayload::parse(payload)?;
    let server = payload.websocket_url();
    let mut state = match DeviceState::load(state_path) {
        // The same installation scanning again: pairing is idempotent with its credential.
        Ok(state) => state,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => DeviceState {
            servers: vec![server.clone()],
            identity: DeviceIdentity::generate().map_err(|error| DeviceError::State {
                path: state_path.to_path_buf(),
                error,
            })?,
            device_id: None,
            organization_id: None,
            configuration: None,
        },
        Err(error) => {
            return Err(DeviceError::State {
                path: state_path.to_path_buf(),
                error,
            });
        }
    };
    state.servers.retain(|known| known != &server);
    state.servers.insert(0, server.clone());
    let mut attempt = 1;
    let mut connection = loop {
        let mut connection = Connection::connect(&server, options).await?;
        on_event(DeviceEvent::Connected {
            server: server.clone(),
        });
        match connection
            .pair(payload.code.as_str(), &state.identity, info)
            .await?
        {
            PairResult::Paired(paired) => {
                state.device_id = Some(paired.device_id);
                state.organization_id = Some(paired.organization_id);
                save(&state, state_path)?;
                on_event(DeviceEvent::Paired(paired));
                break connection;
            }
            // Told to wait: wait as long as the server said, on a new connection (a refusal
            // counts against the one that asked), a few times.
            PairResult::Refused(refused)
                if attempt < PAIR_ATTEMPTS && refused.retry_after_ms.is_some() =>
            {
                let retry_in = Duration::from_millis(refused.retry_after_ms.unwrap_or_default());
                on_event(DeviceEvent::Waiting {
                    reason: format!("pairing refused: {}", refused.reason),
                    retry_in,
                });
                drop(connection);
                tokio::time::sleep(retry_in).await;
                attempt += 1;
            }
            PairResult::Refused(refused) => return Err(DeviceError::Refused(refused)),
        }
    };
    let outcome = session(&mut connection, &mut state, state_path, apply, on_event).await;
    continue_after(outcome, state, state_path, info, options, apply, on_event).await
}

/// Runs a paired device from its state file until its pairing ends.
pub async fn run(
    state_path: &Path,
    info: &DeviceInfo,
    options: &ConnectOptions,
    apply: &mut dyn Apply,
    on_event: &mut dyn FnMut(DeviceEvent),
) -> Result<(), DeviceError> {
    let state = DeviceState::load(state_path).map_err(|error| DeviceError::State {
        path: state_path.to_path_buf(),
        error,
    })?;
    continue_after(
        Err(ClientError::Transport("not connected yet".into())),
        state,
        state_path,
        info,
        options,
        apply,
        on_event,
    )
    .await
}

async fn continue_after(
    mut outcome: Result<(), ClientError>,
    mut state: DeviceState,
    state_path: &Path,
    info: &DeviceInfo,
    options: &ConnectOptions,
    apply: &mut dyn Apply,
    on_event: &mut dyn FnMut(DeviceEvent),
) -> Result<(), DeviceError> {
    let mut backoff = Backoff::default();
    let mut server_index = 0usize;
    let mut first = true;
    loop {
        match outcome {
            Ok(()) => return Ok(()),
            Err(error) => {
                if let Some(code) = error.close_code()
                    && !code.should_reconnect()
                {
                    return Err(DeviceError::Closed(Some(code)));
                }
                if !first {
                    let retry_in = backoff.next();
                    on_event(DeviceEvent::Disconnected {
                        reason: error.to_string(),
                        retry_in,
                    });
                    tokio::time::sleep(retry_in).await;
                    server_index += 1;
                }
                first = false;
            }
        }
        if state.servers.is_empty() {
            return Err(DeviceError::Client(ClientError::Url(
                "no server in the state file".into(),
            )));
        }
        let server = state.servers[server_index % state.servers.len()].clone();
        outcome = async {
            let mut connection = Connection::connect(&server, options).await?;
            on_event(DeviceEvent::Connected {
                server: server.clone(),
            });
            match connection
                .resume(&state.identity, info, state.configuration)
                .await?
            {
                ResumeResult::Resumed(resumed) => {
                    backoff = Backoff::default();
                    on_event(DeviceEvent::Resumed(resumed));
                }
                ResumeResult::Ended(reason) => {
                    return Err(ClientError::Closed {
                        code: Some(reason.close_code().code()),
                        reason: reason.as_str().into(),
                    });
                }
            }
            session(&mut connection, &mut state, state_path, apply, on_event).await
        }
        .await;
        if let Err(ClientError::Closed {
            code: Some(code), ..
        }) = &outcome
            && let Some(reason) = end_reason(*code)
        {
            return Err(DeviceError::Ended(reason));
        }
    }
}

/// Receives configurations until the connection ends.
async fn session(
    connection: &mut Connection,
    state: &mut DeviceState,
    state_path: &Path,
    apply: &mut dyn Apply,
    on_event: &mut dyn FnMut(DeviceEvent),
) -> Result<(), ClientError> {
    loop {
        match connection.recv().await? {
            ServerMessage::Configuration(configuration) => {
                let reference = ConfigRef {
                    configuration_id: configuration.configuration_id,
                    revision: configuration.revision,
                };
                let outcome = match apply.apply(&configuration) {
                    Ok(()) => {
                        state.configuration = Some(reference);
                        if let Err(error) = state.save(state_path) {
                            tracing::warn!(%error, "cannot save the device state");
                        }
                        AckOutcome::Applied
                    }
                    Err(reason) => AckOutcome::Failed { reason },
                };
                connection.ack(reference, outcome).await?;
                on_event(DeviceEvent::Configuration(configuration));
            }
            ServerMessage::Ended(ended) => {
                return Err(ClientError::Closed {
                    code: Some(ended.reason.close_code().code()),
                    reason: ended.reason.as_str().into(),
                });
            }
            _ => {}
        }
    }
}

fn end_reason(code: u16) -> Option<EndReason> {
    match CloseCode::from_code(code)? {
        CloseCode::Unpaired => Some(EndReason::Unpaired),
        CloseCode::LicenseExpired => Some(EndReason::LicenseExpired),
        CloseCode::AuthenticationFailed => Some(EndReason::AuthenticationFailed),
        CloseCode::Superseded => Some(EndReason::Superseded),
        CloseCode::Replaced => Some(EndReason::Replaced),
        CloseCode::ReleasedInactive => Some(EndReason::ReleasedInactive),
        _ => None,
    }
}

fn save(state: &DeviceState, path: &Path) -> Result<(), DeviceError> {
    state.save(path).map_err(|error| DeviceError::State {
        path: path.to_path_buf(),
        error,
    })
}

/// Exponential back-off from 0.5 s to 30 s with full jitter, so that a fleet whose server
/// restarted does not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            ceiling: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(Duration::from_secs(30));
        let mut bytes = [0u8; 4];
        let fraction = match getrandom::fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        Duration::from_millis(100).max(ceiling.mul_f64(fraction))
    }
}

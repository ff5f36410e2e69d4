//! Several PostgreSQL hosts behind one URL, and following the primary among them.
//!
//! A highly available PostgreSQL (pg_auto_failover, Patroni, a managed service with a standby)
//! moves its primary from host to host. libpq clients name every host in one URL and say which
//! kind of session they need:
//! `postgres://paird@db1:5432,db2:5432/paird?target_session_attrs=read-write`. sqlx parses one
//! host only (it would refuse the list, and it ignores `target_session_attrs` with a warning), so
//! this module reads such a URL itself, into one set of connect options per host.
//!
//! With more than one host, or with `target_session_attrs=read-write`, a [`HostFollower`] keeps
//! the store's pools pointed at the host that accepts writes:
//! - at open, it tries the hosts in the URL's order and starts on the first writable one;
//! - every new pool connection is checked (`SHOW transaction_read_only`, what libpq checks for
//!   `read-write`): a connection to a standby, or to a primary that pg_auto_failover keeps
//!   read-only while it promotes, is refused, so nothing is ever written to the wrong host and
//!   the caller gets a retryable "unavailable";
//! - a watch task asks the current host once a second whether it still takes writes, and when it
//!   does not (it is gone, or it became a standby) tries every host again and moves the pools
//!   (`Pool::set_connect_options`) to the first writable one. Connections to the old host fail
//!   their next use and are replaced by connections to the new one; the change listener's pool
//!   moves with the others, and its reconnection makes the engine resynchronise.
//!
//! A URL with one host and no `target_session_attrs` (or `any`) is passed on as it is, and no
//! task runs.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use engine::store::StoreError;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

/// How often the watch task checks that the current host still takes writes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long one probe of one host may take (connect, then one query).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What kind of session the URL asks for (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    /// Any server that accepts a connection (libpq's default).
    Any,
    /// A server that accepts writes: `read-write`, or `primary` (the same to paird, which only
    /// needs to write).
    ReadWrite,
}

/// The hosts of a PostgreSQL URL, in its order, and the kind of session it asks for.
#[derive(Clone)]
pub(crate) struct PgTargets {
    /// One set of connect options per host; everything but the host and port is the same.
    pub(crate) hosts: Vec<PgConnectOptions>,
    pub(crate) attrs: SessionAttrs,
}

impl PgTargets {
    /// Reads a `postgres://` URL with one host or a comma-separated list of `host[:port]`.
    pub(crate) fn parse(url: &str) -> Result<PgTargets, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "a PostgreSQL URL starts with postgres://".to_string())?;
        // The authority ends at the first '/' or '?' after the user information (a password
        // may hold either, percent-encoded or not, so the last '@' before them ends it).
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (user_info, host_list) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let (tail, attrs) = take_session_attrs(tail)?;
        let hosts: Vec<&str> = if host_list.is_empty() {
            vec![""]
        } else {
            host_list.split(',').collect()
        };
        if hosts.iter().any(|host| host.is_empty()) && hosts.len() > 1 {
            return Err(format!(
                "the PostgreSQL URL's host list {host_list:?} has an empty entry"
            ));
        }
        let hosts = hosts
            .iter()
            .map(|host| {
                let single = format!("{scheme}://{user_info}{host}{tail}");
                PgConnectOptions::from_str(&single).map_err(|error| {
                    format!("the PostgreSQL URL (host {host:?}) cannot be used: {error}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PgTargets { hosts, attrs })
    }

    /// Whether the store must choose among hosts and check what it connects to.
    pub(crate) fn needs_follower(&self) -> bool {
        self.hosts.len() > 1 || self.attrs == SessionAttrs::ReadWrite
    }
}

/// Removes `target_session_attrs` from the URL's path-and-query part, returning what it asked.
fn take_session_attrs(tail: &str) -> Result<(String, SessionAttrs), String> {
    let Some((path, query)) = tail.split_once('?') else {
        return Ok((tail.to_string(), SessionAttrs::Any));
    };
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "target_session_attrs" {
            kept.push(pair);
            continue;
        }
        attrs = match value {
            "any" => SessionAttrs::Any,
            "read-write" | "primary" => SessionAttrs::ReadWrite,
            other => {
                return Err(format!(
                    "target_session_attrs={other} is not supported: paird writes, so it takes \
                     `read-write` (or `primary`), or `any`"
                ));
            }
        };
    }
    let tail = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    Ok((tail, attrs))
}

/// Whether the server behind `connection` takes writes (`transaction_read_only` is off: not a
/// standby, and not a primary held read-only).
async fn takes_writes(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(connection)
        .await?;
    Ok(read_only == "off")
}

/// The check every new pool connection passes when the URL asks for `read-write`.
pub(crate) async fn check_session(
    connection: &mut PgConnection,
    attrs: SessionAttrs,
) -> Result<(), sqlx::Error> {
    if attrs == SessionAttrs::ReadWrite && !takes_writes(connection).await? {
        // An I/O error, so that the store answers "unavailable" (retryable): the primary is
        // moving, and the watch task is looking for it.
        return Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the server is read-only (a standby, or a primary being promoted); \
             target_session_attrs=read-write",
        )));
    }
    Ok(())
}

/// Pool options that check every new connection against `attrs`.
pub(crate) fn pool_options(attrs: SessionAttrs) -> PgPoolOptions {
    let options = PgPoolOptions::new();
    if attrs == SessionAttrs::Any {
        return options;
    }
    options.after_connect(move |connection, _| {
        Box::pin(async move { check_session(connection, attrs).await })
    })
}

/// A pool that follows the primary, with the `application_name` its connections carry.
struct Followed {
    pool: PgPool,
    application_name: &'static str,
}

/// Keeps the store's pools on the host that takes writes. See the module's documentation.
pub(crate) struct HostFollower {
    targets: PgTargets,
    /// Index in `targets.hosts` of the host the pools connect to.
    current: AtomicUsize,
    pools: Mutex<Vec<Followed>>,
}

impl HostFollower {
    /// A follower on the URL's first host, with no pools and no watch task yet.
    pub(crate) fn new(targets: PgTargets) -> Arc<HostFollower> {
        Arc::new(HostFollower {
            targets,
            current: AtomicUsize::new(0),
            pools: Mutex::default(),
        })
    }

    /// Finds the first host that takes a session of the wanted kind, trying each in the URL's
    /// order. Fails "unavailable" when none does now.
    pub(crate) async fn start(targets: PgTargets) -> Result<Arc<HostFollower>, StoreError> {
        let follower = HostFollower::new(targets);
        if follower.targets.needs_follower() {
            let found = follower.find_primary(0).await.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "none of the {} PostgreSQL hosts takes writes now",
                    follower.targets.hosts.len()
                ))
            })?;
            follower.current.store(found, Ordering::Relaxed);
            tokio::spawn(watch(Arc::downgrade(&follower)));
        }
        Ok(follower)
    }

    pub(crate) fn attrs(&self) -> SessionAttrs {
        self.targets.attrs
    }

    /// The connect options of the current host, under `application_name`.
    pub(crate) fn options(&self, application_name: &str) -> PgConnectOptions {
        let current = self.current.load(Ordering::Relaxed);
        self.targets.hosts[current]
            .clone()
            .application_name(application_name)
    }

    /// Makes `pool` follow the primary from now on.
    pub(crate) fn follow(&self, pool: &PgPool, application_name: &'static str) {
        if !self.targets.needs_follower() {
            return;
        }
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pools.push(Followed {
            pool: pool.clone(),
            application_name,
        });
    }

    /// The first host, starting at `first` and going round, that takes writes (or, for
    /// `any`, that accepts a connection).
    async fn find_primary(&self, first: usize) -> Option<usize> {
        let count = self.targets.hosts.len();
        for step in 0..count {
            let index = (first + step) % count;
            if self.probe(index).await {
                return Some(index);
            }
        }
        None
    }

    async fn probe(&self, index: usize) -> bool {
        let options = self.targets.hosts[index]
            .clone()
            .application_name("paird probe");
        let attempt = async {
            let mut connection = PgConnection::connect_with(&options).await?;
            let fits = match self.targets.attrs {
                SessionAttrs::Any => true,
                SessionAttrs::ReadWrite => takes_writes(&mut connection).await?,
            };
            let _ = connection.close().await;
            Ok::<bool, sqlx::Error>(fits)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(fits)) => fits,
            Ok(Err(error)) => {
                tracing::debug!(host = index, %error, "postgresql host probe failed");
                false
            }
            Err(_) => false,
        }
    }

    /// Whether the pools' current host still takes a session of the wanted kind, asked through
    /// the first pool (the store's).
    async fn current_still_fits(&self) -> bool {
        let pool = {
            let pools = self
                .pools
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            match pools.first() {
                Some(followed) => followed.pool.clone(),
                None => return true,
            }
        };
        let check = async {
            let mut connection = pool.acquire().await?;
            match self.targets.attrs {
                SessionAttrs::Any => sqlx::query("SELECT 1")
                    .execute(&mut *connection)
                    .await
                    .map(|_| true),
                SessionAttrs::ReadWrite => takes_writes(&mut connection).await,
            }
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, check).await,
            Ok(Ok(true))
        )
    }

    /// Moves every followed pool to host `index`.
    fn move_to(&self, index: usize) {
        let from = self.current.swap(index, Ordering::Relaxed);
        let pools = self
            .pools
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for followed in pools.iter() {
            followed
                .pool
                .set_connect_options(self.options(followed.application_name));
        }
        let host = &self.targets.hosts[index];
        tracing::warn!(
            from,
            to = index,
            host = host.get_host(),
            port = host.get_port(),
            "the postgresql primary moved; connecting to the new one"
        );
    }
}

/// Checks the current host every [`WATCH_EVERY`] and moves the pools when it no longer fits.
/// Ends when the store (and with it the follower) is gone.
async fn watch(follower: Weak<HostFollower>) {
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(follower) = follower.upgrade() else {
            return;
        };
        if follower.current_still_fits().await {
            continue;
        }
        let current = follower.current.load(Ordering::Relaxed);
        // The next host first: the current one just failed the check.
        let next = (current + 1) % follower.targets.hosts.len();
        match follower.find_primary(next).await {
            Some(found) if found != current => follower.move_to(found),
            Some(_) => {}
            None => tracing::warn!("no postgresql host takes writes now; still looking"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(targets: &PgTargets) -> Vec<(String, u16)> {
        targets
            .hosts
            .iter()
            .map(|options| (options.get_host().to_string(), options.get_port()))
            .collect()
    }

    #[test]
    fn a_single_host_url_is_read_as_before() {
        let targets = PgTargets::parse("postgres://paird:secret@db:6432/fleet?sslmode=disable")
            .expect("parses");
        assert_eq!(hosts(&targets), [("db".to_string(), 6432)]);
        assert_eq!(targets.attrs, SessionAttrs::Any);
        assert!(!targets.needs_follower());
        assert_eq!(targets.hosts[0].get_database(), Some("fleet"));
        assert_eq!(targets.hosts[0].get_username(), "paird");
    }

    #[test]
    fn a_host_list_gives_one_set_of_options_per_host_in_order() {
        let targets = PgTargets::parse(
            "postgresql://paird:p%40ss@10.0.0.1:5432,db2,[::1]:5433/fleet?\
             target_session_attrs=read-write&application_name=x",
        )
        .expect("parses");
        assert_eq!(
            hosts(&targets),
            [
                ("10.0.0.1".to_string(), 5432),
                ("db2".to_string(), 5432),
                ("[::1]".to_string(), 5433),
            ]
        );
        assert_eq!(targets.attrs, SessionAttrs::ReadWrite);
        assert!(targets.needs_follower());
        for options in &targets.hosts {
            assert_eq!(options.get_database(), Some("fleet"));
            assert_eq!(options.get_username(), "paird");
        }
    }

    #[test]
    fn primary_means_read_write_and_any_is_the_default() {
        let primary =
            PgTargets::parse("postgres://db/x?target_session_attrs=primary").expect("parses");
        assert_eq!(primary.attrs, SessionAttrs::ReadWrite);
        let any = PgTargets::parse("postgres://a,b/x?target_session_attrs=any").expect("parses");
        assert_eq!(any.attrs, SessionAttrs::Any);
        assert!(any.needs_follower(), "two hosts: the first that answers");
    }

    #[test]
    fn unsupported_session_kinds_and_empty_hosts_are_refused_clearly() {
        let error = PgTargets::parse("postgres://db/x?target_session_attrs=standby")
            .err()
            .expect("refused");
        assert!(error.contains("target_session_attrs=standby"), "{error}");
        let error = PgTargets::parse("postgres://a,,b/x")
            .err()
            .expect("refused");
        assert!(error.contains("empty entry"), "{error}");
        assert!(PgTargets::parse("db/x").is_err());
    }
}

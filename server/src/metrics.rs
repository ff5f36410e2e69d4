//! The operator's Prometheus metrics: who may read them ([`MetricsSettings`]), and the
//! exposition of the engine's, the device endpoint's and the process's figures in the
//! Prometheus text format (version 0.0.4, through the `prometheus` crate's encoder).
//!
//! Nothing here is on the pairing path: every figure is an atomic the engine and the endpoint
//! keep anyway, read when a scrape asks. The families are built anew at each scrape, so no
//! registry (and no lock) sits beside the counters.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::DetailedMetrics;
use engine::histogram::HistogramSnapshot;
use ipnet::IpNet;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::admin::listener::AdminListenerStats;
use crate::device::EndpointStats;

/// Who may read `/metrics`, besides the operator token (always accepted).
#[derive(Clone, Default)]
pub struct MetricsSettings {
    /// A bearer token that reads the metrics and nothing else (`PAIRD_METRICS_TOKEN`).
    pub token: Option<String>,
    /// Peers (by the TCP connection's address, never a forwarded header) that read the
    /// metrics without a token.
    pub allow: Vec<IpNet>,
}

impl std::fmt::Debug for MetricsSettings {
    // The token is a secret: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allow", &self.allow)
            .finish()
    }
}

/// The shortest metrics token accepted: it guards what the server's load and fleet look like.
pub const MIN_METRICS_TOKEN_CHARS: usize = 24;

impl MetricsSettings {
    /// Checks the settings as given by flags or the environment.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(token) = &self.token
            && (token.chars().count() < MIN_METRICS_TOKEN_CHARS
                || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!(
                "the metrics token must be at least {MIN_METRICS_TOKEN_CHARS} characters, \
                 without spaces or control characters"
            ));
        }
        Ok(())
    }

    /// Whether `peer` may read the metrics without a token.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        self.allow.iter().any(|net| net.contains(&peer))
    }

    /// Whether `token` is the metrics token (compared in constant time).
    pub fn is_metrics_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.token
            .as_deref()
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(token.as_bytes())))
    }
}

/// Parses `--metrics-allow`: addresses or CIDR ranges (`10.0.0.0/8`, `::1`), separated by
/// commas.
pub fn parse_allow_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an address or a CIDR range"))
        })
        .collect()
}

/// `--metrics-allow` as the command line reads it (one value, a list separated by commas).
#[derive(Debug, Clone, Default)]
pub struct AllowList(pub Vec<IpNet>);

impl std::str::FromStr for AllowList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_allow_list(text).map(AllowList)
    }
}

/// How many organizations the queue-depth gauge names at most: the deepest queues, so that the
/// number of series stays bounded whatever the number of organizations.
pub const TOP_ORGANIZATIONS: usize = 10;

/// Why the device endpoint refused a connection before any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// The request was not for `/device`.
    Path,
    /// No offered subprotocol is one the server speaks.
    Subprotocol,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The handshake failed otherwise (not a WebSocket upgrade, a broken request, the peer left).
    Handshake,
    /// A trusted proxy's PROXY protocol header was malformed or late.
    ProxyHeader,
}

impl ConnectionRefusal {
    pub const ALL: [ConnectionRefusal; 5] = [
        ConnectionRefusal::Path,
        ConnectionRefusal::Subprotocol,
        ConnectionRefusal::HandshakeTimeout,
        ConnectionRefusal::Handshake,
        ConnectionRefusal::ProxyHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRefusal::Path => "path",
            ConnectionRefusal::Subprotocol => "subprotocol",
            ConnectionRefusal::HandshakeTimeout => "handshake_timeout",
            ConnectionRefusal::Handshake => "handshake",
            ConnectionRefusal::ProxyHeader => "proxy_header",
        }
    }

    /// Its slot in [`EndpointStats::connection_refusals`].
    pub fn slot(self) -> usize {
        self as usize
    }
}

/// What the process itself uses, read from /proc/self (Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessUsage {
    pub resident_bytes: Option<u64>,
    pub open_files: Option<u64>,
    pub max_open_files: Option<u64>,
    /// Tasks alive in the runtimes read (tokio's count: spawned, not yet finished).
    pub tasks: Option<u64>,
}

impl ProcessUsage {
    /// Reads the process's usage, and counts the tasks of `runtimes` (the server's main runtime,
    /// which drives the device connections and the engine, and the admin API's own).
    pub fn read(runtimes: &[&tokio::runtime::Handle]) -> ProcessUsage {
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            });
        // Counting the entries opens one more descriptor (the directory), not counted.
        let open_files = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count().saturating_sub(1) as u64);
        let max_open_files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft);
        let tasks = (!runtimes.is_empty()).then(|| {
            runtimes
                .iter()
                .map(|runtime| runtime.metrics().num_alive_tasks() as u64)
                .sum()
        });
        ProcessUsage {
            resident_bytes,
            open_files,
            max_open_files,
            tasks,
        }
    }
}

/// The Prometheus text exposition of everything above. An error is a family built wrongly
/// here: a bug, not the scraper's fault.
pub fn render(
    engine: &DetailedMetrics,
    endpoint: &EndpointStats,
    admin: &AdminListenerStats,
    process: &ProcessUsage,
    uptime_seconds: f64,
) -> Result<String, prometheus::Error> {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
    let counters = &engine.counters;
    let mut families = Families::default();

    // Device connections.
    families.gauge(
        "paird_device_connections_open",
        "Device connections open now (from TCP accept until closed).",
        &[(&[], load(&endpoint.open_connections))],
    );
    families.gauge(
        "paird_devices_connected",
        "Devices connected now with a session (paired or resumed on this node).",
        &[(&[], counters.connected_devices as f64)],
    );
    families.counter(
        "paird_device_connections_accepted_total",
        "Device connections accepted (TCP).",
        &[(&[], load(&endpoint.accepted))],
    );
    let refusals: Vec<_> = ConnectionRefusal::ALL
        .iter()
        .map(|reason| {
            (
                vec![("reason", reason.as_str())],
                load(&endpoint.connection_refusals[reason.slot()]),
            )
        })
        .collect();
    families.counter_labeled(
        "paird_device_connections_refused_total",
        "Device connections refused before any message, by reason.",
        &refusals,
    );
    families.counter(
        "paird_device_unproven_evicted_total",
        "Connections that had not paired or resumed, closed (4004) because a newer one from the \
         same address needed the address's slot.",
        &[(&[], load(&endpoint.evicted_unproven))],
    );
    families.counter(
        "paird_device_accept_errors_total",
        "Failed accepts on the device listener (out of descriptors or memory: accepting pauses).",
        &[(&[], load(&endpoint.accept_errors))],
    );

    // Admin connections.
    families.gauge(
        "paird_admin_connections_open",
        "Connections open on the admin listener.",
        &[(&[], load(&admin.open_connections))],
    );
    families.counter(
        "paird_admin_connections_accepted_total",
        "Connections accepted on the admin listener.",
        &[(&[], load(&admin.accepted))],
    );
    families.counter(
        "paird_admin_connections_refused_total",
        "Admin connections answered 429 because their address held its cap.",
        &[(&[], load(&admin.refused_per_address))],
    );
    families.counter(
        "paird_admin_connections_idle_closed_total",
        "Admin connections closed for idleness.",
        &[(&[], load(&admin.idle_closed))],
    );

    // Pairings, resumes, acknowledgements, pushes.
    families.counter_labeled(
        "paird_pairings_total",
        "Pairing requests answered, by outcome: paired (a new pairing), repaired (an \
         installation already paired, paired again with its credential), refused.",
        &[
            (vec![("outcome", "paired")], counters.pairings as f64),
            (
                vec![("outcome", "repaired")],
                counters.repeated_pairings as f64,
            ),
            (
                vec![("outcome", "refused")],
                engine.refusals.iter().map(|(_, n)| *n as f64).sum(),
            ),
        ],
    );
    let by_reason: Vec<_> = engine
        .refusals
        .iter()
        .map(|(reason, count)| (vec![("reason", reason.as_str())], *count as f64))
        .collect();
    families.counter_labeled(
        "paird_pairing_refusals_total",
        "Pairing requests refused, by reason (the protocol's refusal reasons).",
        &by_reason,
    );
    families.counter(
        "paird_rate_limited_total",
        "Pairing attempts refused because their address or code failed too often.",
        &[(&[], counters.rate_limited as f64)],
    );
    families.counter_labeled(
        "paird_resumes_total",
        "Reconnections of paired devices, by outcome.",
        &[
            (vec![("outcome", "resumed")], counters.resumes as f64),
            (vec![("outcome", "failed")], counters.failed_resumes as f64),
        ],
    );
    families.counter(
        "paird_acknowledgements_total",
        "Configuration acknowledgements recorded from devices.",
        &[(&[], counters.acknowledgements as f64)],
    );
    families.counter(
        "paird_configuration_pushes_total",
        "Configurations sent to connected devices (on pairing, resume or change).",
        &[(&[], load(&endpoint.configurations_sent))],
    );
    families.counter(
        "paird_expired_pairings_total",
        "Pairings ended by the expiry sweep.",
        &[(&[], counters.expired_by_sweep as f64)],
    );
    families.counter(
        "paird_released_inactive_pairings_total",
        "Pairings of devices unseen for longer than their organization allows, ended to release \
         their licenses.",
        &[(&[], counters.released_inactive as f64)],
    );
    families.counter(
        "paird_replaced_devices_total",
        "Devices replaced by a new installation that paired with their replacement code.",
        &[(&[], counters.replaced as f64)],
    );
    families.counter(
        "paird_webhook_attempts_total",
        "Webhook deliveries sent, by outcome: delivered (the receiver answered 2xx) or failed \
         (anything else; tried again with back-off).",
        &[
            (
                &[("outcome", "delivered")],
                counters.webhooks_delivered as f64,
            ),
            (&[("outcome", "failed")], counters.webhook_failures as f64),
        ],
    );
    families.counter(
        "paird_line_pairings_total",
        "Devices paired from their organization's waiting line (counted in \
         paird_pairings_total too).",
        &[(&[], counters.served_from_line as f64)],
    );
    families.counter(
        "paird_rollouts_decided_total",
        "Staged rollouts the duty promoted (their time came) or halted (more failed \
         acknowledgements than allowed), by outcome.",
        &[
            (
                &[("outcome", "promoted")],
                counters.rollouts_promoted as f64,
            ),
            (&[("outcome", "halted")], counters.rollouts_halted as f64),
        ],
    );

    // Batches.
    families.counter(
        "paird_batches_total",
        "Device-request transactions committed.",
        &[(&[], counters.batches as f64)],
    );
    families.histogram(
        "paird_batch_size_requests",
        "Device requests per committed batch.",
        &engine.batch_size,
    );
    families.histogram(
        "paird_batch_commit_duration_seconds",
        "Time from a batch's BEGIN to its COMMIT (read, decide, write, commit).",
        &engine.batch_seconds,
    );

    // Organizations.
    families.gauge(
        "paird_organization_actors_running",
        "Organization actors running on this node.",
        &[(&[], counters.running_organization_actors as f64)],
    );
    families.counter(
        "paird_organization_actor_restarts_total",
        "Organization actors restarted after a failure.",
        &[(&[], counters.actor_restarts as f64)],
    );
    families.gauge(
        "paird_queued_requests",
        "Requests sent to this node's organization actors and not answered yet, all \
         organizations together.",
        &[(&[], engine.queued_requests as f64)],
    );
    let ids: Vec<String> = engine
        .deepest_queues
        .iter()
        .map(|(org, _)| org.to_string())
        .collect();
    let deepest: Vec<_> = engine
        .deepest_queues
        .iter()
        .zip(&ids)
        .map(|((_, depth), id)| (vec![("organization", id.as_str())], *depth as f64))
        .collect();
    families.gauge_labeled(
        "paird_organization_queued_requests",
        &format!(
            "Requests waiting for one organization's actor: the {TOP_ORGANIZATIONS} deepest \
             queues only, those with at least one request."
        ),
        &deepest,
    );

    // Live feed.
    families.gauge(
        "paird_live_feed_watchers",
        "Live-feed streams (server-sent events) open on this node.",
        &[(&[], engine.live_feed_watchers as f64)],
    );
    families.gauge_labeled(
        "paird_live_feed_organizations",
        "Organizations with live-feed watchers: here (on this node), elsewhere (announced by \
         other nodes).",
        &[
            (
                vec![("where", "here")],
                counters.live_feed_watched_here as f64,
            ),
            (
                vec![("where", "elsewhere")],
                counters.live_feed_watched_elsewhere as f64,
            ),
        ],
    );

    // Database.
    let mut open = Vec::new();
    let mut idle = Vec::new();
    let mut max = Vec::new();
    for pool in &engine.pools {
        open.push((vec![("pool", pool.name)], f64::from(pool.open)));
        idle.push((vec![("pool", pool.name)], f64::from(pool.idle)));
        max.push((vec![("pool", pool.name)], f64::from(pool.max)));
    }
    families.gauge_labeled(
        "paird_database_connections_open",
        "Database connections open, by pool (PostgreSQL: main; SQLite: writer, readers, exports).",
        &open,
    );
    families.gauge_labeled(
        "paird_database_connections_idle",
        "Database connections open and idle, by pool.",
        &idle,
    );
    families.gauge_labeled(
        "paird_database_connections_max",
        "Most database connections a pool opens.",
        &max,
    );

    // Process.
    if let Some(bytes) = process.resident_bytes {
        families.gauge(
            "paird_process_resident_memory_bytes",
            "Resident memory of the paird process (VmRSS).",
            &[(&[], bytes as f64)],
        );
    }
    if let Some(open) = process.open_files {
        families.gauge(
            "paird_process_open_fds",
            "File descriptors open in the paird process (sockets included).",
            &[(&[], open as f64)],
        );
    }
    if let Some(limit) = process.max_open_files {
        families.gauge(
            "paird_process_max_fds",
            "The process's open-file limit (soft).",
            &[(&[], limit as f64)],
        );
    }
    if let Some(tasks) = process.tasks {
        families.gauge(
            "paird_runtime_tasks_alive",
            "Tasks alive in the server's async runtimes (one or two per device connection, plus \
             the server's own); flat while the fleet is.",
            &[(&[], tasks as f64)],
        );
    }
    families.gauge(
        "paird_uptime_seconds",
        "Seconds since this server started.",
        &[(&[], uptime_seconds)],
    );

    prometheus::TextEncoder::new().encode_to_string(&families.0)
}

/// The families of one scrape, in the order they are added.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

type Labels<'a> = [(&'a str, &'a str)];

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        // A family without samples (no queue holds a request) is left out: the format has no
        // way to write one.
        if metrics.is_empty() {
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.0.push(family);
    }

    fn counter(&mut self, name: &str, help: &str, samples: &[(&Labels<'_>, f64)]) {
        let metrics = samples
            .iter()
            .map(|(labels, value)| {
                let mut counter = Counter::default();
                counter.set_value(*value);
                let mut metric = Metric::from_label(label_pairs(labels));
                metric.set_counter(counter);
                metric
            })
            .collect();
        self.add(name, help, MetricType::COUNTER, metrics);
    }

    fn counter_labeled(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        let borrowed: Vec<(&Labels<'_>, f64)> = samples
            .iter()
            .map(|(labels, value)| (labels.as_slice(), *value))
            .collect();
        self.counter(name, help, &borrowed);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: &[(&Labels<'_>, f64)]) {
        let metrics = samples
            .iter()
            .map(|(labels, value)| {
                let mut gauge = Gauge::default();
                gauge.set_value(*value);
                let mut metric = Metric::from_label(label_pairs(labels));
                metric.set_gauge(gauge);
                metric
            })
            .collect();
        self.add(name, help, MetricType::GAUGE, metrics);
    }

    fn gauge_labeled(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        let borrowed: Vec<(&Labels<'_>, f64)> = samples
            .iter()
            .map(|(labels, value)| (labels.as_slice(), *value))
            .collect();
        self.gauge(name, help, &borrowed);
    }

    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        let mut histogram = Histogram::default();
        histogram.set_sample_count(snapshot.count);
        histogram.set_sample_sum(snapshot.sum);
        histogram.set_bucket(
            snapshot
                .buckets
                .iter()
                .map(|(bound, cumulative)| {
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(*bound);
                    bucket.set_cumulative_count(*cumulative);
                    bucket
                })
                .collect(),
        );
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        self.add(name, help, MetricType::HISTOGRAM, vec![metric]);
    }
}

fn label_pairs(labels: &Labels<'_>) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_string());
            pair.set_value((*value).to_string());
            pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_takes_addresses_and_ranges_and_names_a_bad_one() {
        let settings = MetricsSettings {
            token: None,
            allow: parse_allow_list("10.1.0.0/16, ::1,127.0.0.2").unwrap_or_default(),
        };
        assert_eq!(settings.allow.len(), 3);
        assert!(settings.allows("10.1.200.3".parse().unwrap_or(IpAddr::from([0; 4]))));
        assert!(settings.allows("::ffff:127.0.0.2".parse().unwrap_or(IpAddr::from([0; 4]))));
        assert!(!settings.allows("127.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]))));
        let error = parse_allow_list("10.0.0.0/8,nonsense").err();
        assert_eq!(
            error.as_deref(),
            Some("\"nonsense\" is not an address or a CIDR range")
        );
        assert!(parse_allow_list("10.0.0.0/33").is_err());
    }

    #[test]
    fn a_short_or_spaced_metrics_token_is_refused() {
        let with = |token: &str| MetricsSettings {
            token: Some(token.to_string()),
            allow: Vec::new(),
        };
        assert!(with("short").validate().is_err());
        assert!(with("a token with spaces in it, long").validate().is_err());
        assert!(with("0123456789abcdef01234567").validate().is_ok());
        assert!(with("0123456789abcdef01234567").is_metrics_token("0123456789abcdef01234567"));
        assert!(!with("0123456789abcdef01234567").is_metrics_token("0123456789abcdef0123456"));
    }
}

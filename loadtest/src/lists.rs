//! `lists`: an organization seeded with paired devices, then the first pages that the Devices
//! section asks for (searches, filters, sorts), each asked many times and timed.
//!
//! The seeding is the real pairing path: every device pairs with a reusable code on a fresh
//! connection that then closes (`enroll --mode fresh`), each with a name, model, OS and app
//! version of its own ([`crate::fleet::device_info`]). A second configuration goes to one device
//! in ten, so that the configuration and revision filters pick something out. The times are the
//! client's, over loopback HTTP: an upper bound of the server's.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::admin::configuration_body;
use crate::report::{Percentiles, Phase, Report};
use crate::scenarios::{Common, Run, Target, expect_results};
use crate::verify::Expectation;

#[derive(Debug, Clone, Args)]
pub struct ListsArgs {
    /// Devices to pair before the lists are read.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    /// Licenses (default: one per device; more leaves some free).
    #[arg(long)]
    pub licenses: Option<u32>,
    /// Times each query is asked (round robin over the queries).
    #[arg(long, default_value_t = 100)]
    pub rounds: u32,
    /// Rows per page.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// A pause between the seeding and the timed queries. On PostgreSQL the planner's
    /// statistics lag a burst until autovacuum analyzes the new rows (within a minute by
    /// default; `--database-setting "autovacuum_naptime = 1s"` makes it seconds): a pause of a
    /// few seconds measures the lists as they are once it has.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// After the seeding, before anything else reads the lists: time a CSV export of all the
    /// devices (`GET .../devices.csv`) and report the server's resident memory before and after
    /// it (with --start-server, or --server-pid).
    #[arg(long)]
    pub export: bool,
    #[command(flatten)]
    pub common: Common,
}

/// An RFC 3339 time from microseconds since the Unix epoch.
fn rfc3339(us: u64) -> String {
    let seconds = us / 1_000_000;
    let millis = (us / 1_000) % 1_000;
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

pub async fn lists(target: &mut Target, args: &ListsArgs) -> anyhow::Result<Report> {
    let licenses = args.licenses.unwrap_or(args.devices).max(args.devices);
    let provisioned = target.admin.provision(licenses).await?;
    let org = provisioned.org.clone();
    let code = target.admin.reusable_code(&org).await?;
    let held = args.common.concurrency as u32;
    let mut run = Run::start(target, "lists", args.devices, held, &args.common).await?;
    run.setting("licenses", licenses);
    run.setting("rounds", args.rounds);
    run.setting("page", args.limit);
    run.setting("settle", format!("{:?}", args.settle));

    let seeding = now_us();
    let (phase, results) = run.pair("seed", &|_| code.clone(), true, false, None).await;
    let seeded = now_us();
    run.report.phases.push(phase);
    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    expectation.assigned = Some(u64::from(args.devices));

    let admin = &run.target.admin;
    let base = format!("/v1/organizations/{org}");
    // One device in ten gets a second configuration (20,000 ids per call at most).
    let beta = admin
        .post(
            &format!("{base}/configurations"),
            json!({ "name": "beta", "body": configuration_body(2) }),
        )
        .await?;
    let beta = beta["id"].as_str().context("configuration id")?.to_string();
    let devices = admin.all(&format!("{base}/devices")).await?;
    let tenth: Vec<&str> = devices
        .iter()
        .step_by(10)
        .filter_map(|device| device["id"].as_str())
        .collect();
    for ids in tenth.chunks(20_000) {
        admin
            .post(
                &format!("{base}/configurations/{beta}/assign"),
                json!({ "device_ids": ids }),
            )
            .await?;
    }
    let codes = admin.get(&format!("{base}/codes")).await?;
    let code_id = codes["items"][0]["id"]
        .as_str()
        .context("code id")?
        .to_string();
    let midway = rfc3339(seeding + (seeded - seeding) / 2);

    if args.export {
        let pid = run.target.server_pids.first().copied();
        let before = pid.and_then(crate::procstat::sample);
        let start = Instant::now();
        let csv = admin.get_text(&format!("{base}/devices.csv")).await?;
        let seconds = start.elapsed().as_secs_f64();
        let after = pid.and_then(crate::procstat::sample);
        let rows = csv.matches("\r\n").count().saturating_sub(1);
        if rows != args.devices as usize {
            problems.push(format!("the export has {rows} rows, not {}", args.devices));
        }
        let figures = &mut run.report.figures;
        figures.insert("export seconds".into(), seconds);
        figures.insert("export rows".into(), rows as f64);
        figures.insert("export MB".into(), csv.len() as f64 / 1e6);
        if let (Some(before), Some(after)) = (before, after) {
            figures.insert(
                "server RSS MB before export".into(),
                before.rss_bytes as f64 / 1e6,
            );
            figures.insert(
                "server RSS MB after export".into(),
                after.rss_bytes as f64 / 1e6,
            );
        }
    }

    let licenses_path = format!("{base}/licenses");
    let devices_path = format!("{base}/devices");
    let queries: Vec<(String, String)> = [
        ("licenses", &licenses_path, String::new()),
        ("licenses by name", &licenses_path, "sort=name".into()),
        (
            "licenses by last seen, newest",
            &licenses_path,
            "sort=-last_seen".into(),
        ),
        ("licenses by status", &licenses_path, "sort=status".into()),
        ("free licenses", &licenses_path, "status=free".into()),
        (
            "search \"van 12\", by name",
            &licenses_path,
            "q=van+12&sort=name".into(),
        ),
        (
            "search \"tc52\" (a fifth), by name",
            &licenses_path,
            "q=tc52&sort=name".into(),
        ),
        (
            "search \"meter reader 9\"",
            &licenses_path,
            "q=meter+reader+9".into(),
        ),
        ("search with no match", &licenses_path, "q=zzz".into()),
        (
            "devices by pairing, newest",
            &devices_path,
            "sort=-paired_at".into(),
        ),
        (
            "app version 4.3.0, by name",
            &devices_path,
            "app_version=4.3.0&sort=name".into(),
        ),
        (
            "not seen since the seeding's midpoint, by last seen",
            &devices_path,
            format!("not_seen_since={midway}&sort=-last_seen"),
        ),
        (
            "configuration beta, by name",
            &devices_path,
            format!("configuration={beta}&sort=name"),
        ),
        ("revision pending", &devices_path, "revision=pending".into()),
        (
            "online (none), by name",
            &devices_path,
            "online=true&sort=name".into(),
        ),
        (
            "paired by the code",
            &devices_path,
            format!("code={code_id}"),
        ),
    ]
    .into_iter()
    .map(|(name, path, query)| {
        let separator = if query.is_empty() { "" } else { "&" };
        (
            name.to_string(),
            format!("{path}?{query}{separator}limit={}", args.limit),
        )
    })
    .collect();

    tokio::time::sleep(args.settle).await;
    // Round robin, so that every query meets the same conditions.
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); queries.len()];
    let mut matched: Vec<String> = vec![String::new(); queries.len()];
    let mut failures: Vec<u64> = vec![0; queries.len()];
    let began = Instant::now();
    for _ in 0..args.rounds {
        for (index, (_, url)) in queries.iter().enumerate() {
            let start = Instant::now();
            let page = admin.get(url).await;
            let elapsed = start.elapsed();
            match page {
                Ok(page) => {
                    latencies[index].push(elapsed.as_micros() as u64);
                    matched[index] = match page["total_exact"].as_bool() {
                        Some(true) => page["total"].to_string(),
                        _ => format!("more than {}", page["total"]),
                    };
                }
                Err(error) => {
                    failures[index] += 1;
                    problems.push(format!("{url}: {error:#}"));
                }
            }
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let mut worst_p99: f64 = 0.0;
    for (index, (name, _)) in queries.iter().enumerate() {
        let percentiles = Percentiles::of(latencies[index].iter().copied());
        if let Some(percentiles) = &percentiles {
            worst_p99 = worst_p99.max(percentiles.p99);
        }
        all.extend(latencies[index].iter().copied());
        run.report.phases.push(Phase {
            name: format!("{name} ({} match)", matched[index]),
            attempted: u64::from(args.rounds),
            ok: latencies[index].len() as u64,
            seconds,
            per_second: latencies[index].len() as f64 / seconds.max(f64::EPSILON),
            latency_ms: percentiles,
            ..Phase::default()
        });
        if failures[index] > 0 {
            problems.push(format!("{name}: {} requests failed", failures[index]));
        }
    }
    if let Some(overall) = Percentiles::of(all) {
        run.report
            .figures
            .insert("first page p99 ms, all queries".into(), overall.p99);
        run.report
            .figures
            .insert("first page p50 ms, all queries".into(), overall.p50);
    }
    run.report
        .figures
        .insert("first page p99 ms, slowest query".into(), worst_p99);
    run.report.figures.insert(
        "seed seconds".into(),
        Duration::from_micros(seeded - seeding).as_secs_f64(),
    );
    run.finish(args.common.verify, &org, &expectation, problems)
        .await
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_630_400_123_000), "2026-12-07T08:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }
}

//! `bulk`: N devices pair and stay connected, then one admin command unpairs them all by a
//! filter (issue 15's bulk actions). Reports the command's time (the client's, over loopback
//! HTTP: an upper bound of the server's) and checks that every connected device was told it was
//! unpaired (`ended` with reason `unpaired`) and that no device is left paired.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::report::{Phase, Report};
use crate::scenarios::{Common, Run, Target, expect_results};
use crate::verify::Expectation;

#[derive(Debug, Clone, Args)]
pub struct BulkArgs {
    /// Connected devices to unpair with one command.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    #[command(flatten)]
    pub common: Common,
}

/// How the fleets name a stay that ended with the unpaired notice.
const TOLD_UNPAIRED: &str = "ended: Unpaired";

pub async fn bulk(target: &mut Target, args: &BulkArgs) -> anyhow::Result<Report> {
    let provisioned = target.admin.provision(args.devices).await?;
    let org = provisioned.org.clone();
    let code = target.admin.reusable_code(&org).await?;
    let mut run = Run::start(target, "bulk", args.devices, args.devices, &args.common).await?;
    let phase = run.connect().await;
    run.report.phases.push(phase);
    let (phase, results) = run.pair("pair", &|_| code.clone(), false, true, None).await;
    run.report.phases.push(phase);
    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    let first = run.wait_revision(1).await;
    if first.missing > 0 {
        problems.push(format!("{} devices missed revision 1", first.missing));
    }
    let (connected, lost) = run.status().await;
    for (reason, count) in &lost {
        problems.push(format!(
            "{count} connections lost before the command: {reason}"
        ));
    }
    let code_id = run
        .target
        .admin
        .get(&format!("/v1/organizations/{org}/codes"))
        .await?["items"][0]["id"]
        .as_str()
        .context("code id")?
        .to_string();

    // One command: every device paired with the code (a filter, not a list of ids).
    let meter = run.target.meter();
    let sent = Instant::now();
    let answer = run
        .target
        .admin
        .post(
            &format!("/v1/organizations/{org}/devices/unpair"),
            json!({ "filter": { "code": code_id } }),
        )
        .await
        .context("the bulk unpair")?;
    let command = sent.elapsed();
    let unpaired = answer["unpaired"].as_u64().unwrap_or(0);
    let mut phase = Phase::new("unpair all by filter (one command)");
    phase.attempted = u64::from(args.devices);
    phase.ok = unpaired;
    phase.set_duration(command.as_secs_f64());
    meter.finish(&mut phase);
    run.report.phases.push(phase);
    if answer["matched"].as_u64() != Some(u64::from(args.devices))
        || unpaired != u64::from(args.devices)
    {
        problems.push(format!("the command answered {answer}"));
    }

    // Every connected device is told, then its connection ends.
    let deadline = Instant::now() + args.common.timeout;
    let mut told = 0u64;
    let mut other = std::collections::BTreeMap::<String, u64>::new();
    let mut still = connected;
    while still > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (now_connected, lost) = run.status().await;
        still = now_connected;
        for (reason, count) in lost {
            if reason == TOLD_UNPAIRED {
                told += count;
            } else {
                *other.entry(reason).or_default() += count;
            }
        }
    }
    let all_told = sent.elapsed();
    if told != connected {
        problems.push(format!(
            "{told} of {connected} connected devices were told they were unpaired"
        ));
    }
    for (reason, count) in &other {
        problems.push(format!("{count} connections ended otherwise: {reason}"));
    }
    let left = run
        .target
        .admin
        .get(&format!("/v1/organizations/{org}/devices?limit=1"))
        .await?;
    if left["total"] != json!(0) {
        problems.push(format!("devices left paired: {}", left["total"]));
    }
    run.report
        .figures
        .insert("unpair command, ms".into(), command.as_secs_f64() * 1000.0);
    run.report.figures.insert(
        "all connected devices told, ms after the request (20 ms polls)".into(),
        all_told.as_secs_f64() * 1000.0,
    );
    run.report
        .figures
        .insert("connected devices told".into(), told as f64);
    run.report.verification = Some(problems);
    run.finish(false, &org, &expectation, Vec::new()).await
}

//! `crash`: the server is killed with SIGKILL at a moment chosen at random and started again on
//! the same database, once or `--cycles` times in a row. Each cycle works on an organization of
//! its own, in one of three kinds (chosen by the seeded generator unless there is one cycle):
//!
//! - **burst**: killed once a random share of an enrollment burst has its answers. Every device
//!   told "paired" is still paired with the license it was told (also one told "paired" whose
//!   configuration the kill cut off); the devices without an answer pair on retry, those whose
//!   pairing was committed getting it back.
//! - **push**: every device paired and connected, a configuration edit sent, killed a random few
//!   milliseconds later (before, during or after its commit and its push). An edit answered
//!   before the kill is there after it, and the body is the one of the revision the server
//!   has; the devices resume and each acknowledges that revision.
//! - **bulk**: every device paired and connected, one bulk unpair by filter sent (with an
//!   `Idempotency-Key`), killed a random few milliseconds later. The command is all or nothing
//!   (an answered one is all, and so is one any device was told `unpaired` of); sent again with
//!   its key after the restart, it leaves no device paired and every license free.
//!
//! After every cycle: no license held twice and the counts add up (the organization's check), the
//! previous cycle's organization is checked again, and every few cycles and at the end every
//! earlier cycle's organization is, so an acknowledged pairing lost by a later crash is found. A failing run prints its seed;
//! `--seed` replays the same kinds and moments (the server's timing still varies).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::admin::configuration_body;
use crate::fleet::Command;
use crate::report::{Phase, Report};
use crate::scenarios::{Common, CrashArgs, Run, Target, expect_results, tally_phase};
use crate::seeded::Seeded;
use crate::verify::{Expectation, verify};

/// How a cycle's server was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Burst,
    Push,
    Bulk,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Burst => "burst",
            Kind::Push => "push",
            Kind::Bulk => "bulk",
        }
    }
}

/// What one cycle left, and what it found.
#[derive(Debug, Default)]
struct Cycle {
    org: String,
    /// What must hold of the organization from now on, whatever later crashes.
    expectation: Expectation,
    problems: Vec<String>,
    phases: Vec<Phase>,
    figures: BTreeMap<String, f64>,
    /// When the kill came, in the cycle's own terms.
    moment: String,
}

/// Every earlier organization is checked again after this many cycles (and after the last).
const RECHECK_EVERY: u32 = 10;

/// Each admin call and each wait of a cycle: past it the cycle reports a problem and the run
/// stops, rather than waiting for ever.
const STEP_LIMIT: Duration = Duration::from_secs(120);

pub async fn crash(target: &mut Target, args: &CrashArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        target.spawned.is_some(),
        "the crash scenario kills and restarts the one server: use --start-server"
    );
    anyhow::ensure!(args.cycles >= 1, "--cycles must be at least 1");
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
    });
    let mut rng = Seeded::new(seed);
    let devices = args.devices_per_cycle();
    let mut report = Report {
        scenario: "crash".into(),
        ..Report::default()
    };
    report
        .settings
        .insert("devices per cycle".into(), devices.to_string());
    report
        .settings
        .insert("cycles".into(), args.cycles.to_string());
    report.settings.insert("seed".into(), seed.to_string());
    if !target.quiet {
        eprintln!("crash: seed {seed} (replay with --seed {seed})");
    }
    let began = Instant::now();
    let mut done: Vec<(String, Expectation)> = Vec::new();
    let mut problems = Vec::new();
    let mut kinds = BTreeMap::<Kind, u64>::new();
    let mut figures = BTreeMap::<String, f64>::new();
    for number in 1..=args.cycles {
        let (kind, share) = if args.cycles == 1 {
            (Kind::Burst, args.kill_at)
        } else {
            let kind = match rng.below(4) {
                0 | 1 => Kind::Burst,
                2 => Kind::Push,
                _ => Kind::Bulk,
            };
            (kind, rng.between(0.05, 0.9))
        };
        // Half the pushes and bulk commands are killed in their first 3 ms (before or during
        // the commit), half in their first 40 ms (mostly during the push or the telling).
        let span = if rng.below(2) == 0 { 3_000 } else { 40_000 };
        let delay = Duration::from_micros(rng.below(span) as u64);
        let started = Instant::now();
        let cycle = async {
            match kind {
                Kind::Burst => burst(target, devices, share, &args.common).await,
                Kind::Push => push(target, devices, delay, &args.common).await,
                Kind::Bulk => bulk(target, devices, delay, seed, number, &args.common).await,
            }
        };
        // Each cycle is bounded by `--timeout` as a whole, besides each of its steps: a stall
        // names its cycle and seed instead of ending the run with no word of where it was.
        let cycle = tokio::time::timeout(args.common.timeout, cycle)
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "no end in {} s (--timeout)",
                    args.common.timeout.as_secs()
                ))
            });
        let mut cycle = cycle.with_context(|| {
            let planned = match kind {
                Kind::Burst => format!("at {:.0}% answered", share * 100.0),
                Kind::Push | Kind::Bulk => format!("{:.1} ms in", delay.as_secs_f64() * 1000.0),
            };
            format!(
                "cycle {number} ({}, to be killed {planned}), seed {seed}",
                kind.name()
            )
        })?;
        *kinds.entry(kind).or_default() += 1;
        for (name, value) in &cycle.figures {
            *figures.entry(name.clone()).or_default() += value;
        }
        if !target.quiet {
            eprintln!(
                "crash: cycle {number}/{} {:<5} killed {}: {} problems ({:.1} s)",
                args.cycles,
                kind.name(),
                cycle.moment,
                cycle.problems.len(),
                started.elapsed().as_secs_f64()
            );
        }
        problems.extend(cycle.problems.drain(..).map(|problem| {
            format!(
                "cycle {number} ({}, killed {}): {problem}",
                kind.name(),
                cycle.moment
            )
        }));
        if args.cycles == 1 {
            report.phases.append(&mut cycle.phases);
            report
                .settings
                .insert("kill at".into(), format!("{:.0}% answered", share * 100.0));
        }
        done.push((cycle.org, cycle.expectation));
        // The previous cycle's organization after every kill (its last writes are the ones a
        // kill is likeliest to reach, in the database's log), every one every few cycles.
        let earlier = done.len() - 1;
        let first = if number % RECHECK_EVERY == 0 || number == args.cycles {
            0
        } else {
            earlier.saturating_sub(1)
        };
        for (index, (org, expectation)) in done.iter().enumerate().take(earlier).skip(first) {
            let found = bounded(
                "checking an earlier cycle",
                verify(&target.admin, org, expectation),
            )
            .await??;
            problems.extend(found.into_iter().map(|problem| {
                format!("cycle {} again after cycle {number}: {problem}", index + 1)
            }));
        }
        if !problems.is_empty() && args.cycles > 1 {
            // The first failing cycle is the one to replay; later ones would bury it.
            break;
        }
    }
    for (kind, count) in kinds {
        figures.insert(format!("cycles, {}", kind.name()), count as f64);
    }
    figures.insert("seconds".into(), began.elapsed().as_secs_f64());
    report.figures = figures;
    if !problems.is_empty() {
        problems.push(format!("replay with --seed {seed}"));
    }
    // The crash check is the point of this scenario: it always verifies.
    report.verification = Some(problems);
    Ok(report)
}

/// `future`, or an error naming `what` past [`STEP_LIMIT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_LIMIT, future)
        .await
        .with_context(|| format!("{what}: no answer in {} s", STEP_LIMIT.as_secs()))
}

/// Every connection is gone with the killed server: waits until the fleets have seen it, and
/// returns why the connections ended, by reason (`ended: Unpaired` for a device the server told
/// so before the kill).
async fn wait_disconnected(run: &mut Run<'_>) -> anyhow::Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut ended = BTreeMap::new();
    loop {
        let (connected, lost) = bounded("counting the connections", run.status()).await?;
        for (reason, count) in lost {
            *ended.entry(reason).or_default() += count;
        }
        if connected == 0 {
            return Ok(ended);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{connected} connections still open {} s after the kill",
            STEP_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `request` and kills the server with SIGKILL `delay` after it was sent, whatever it is
/// doing then; whether the request was answered before.
async fn killed_during<T>(
    target: &mut Target,
    delay: Duration,
    request: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<bool> {
    let mut spawned = target.spawned.take().context("no server")?;
    let killer = async move {
        tokio::time::sleep(delay).await;
        spawned.kill().await;
        spawned
    };
    let (answer, spawned) = tokio::join!(request, killer);
    target.spawned = Some(spawned);
    Ok(answer.is_ok())
}

/// Restarts the killed server on its database.
async fn restart(target: &mut Target) -> anyhow::Result<()> {
    let spawned = target.spawned.as_mut().context("no server")?;
    bounded("restarting the server", spawned.restart())
        .await?
        .context("restarting the server")?;
    target.server_pids = spawned.pid().into_iter().collect();
    Ok(())
}

/// An organization of `devices` licenses and devices, every device paired with one reusable
/// code and, with `stay`, connected; the expectation of what they were told.
async fn paired_fleet<'a>(
    target: &'a mut Target,
    devices: u32,
    stay: bool,
    common: &Common,
) -> anyhow::Result<(Run<'a>, String, String, Expectation, Vec<String>)> {
    let provisioned = bounded("provisioning", target.admin.provision(devices)).await??;
    let code = bounded("a code", target.admin.reusable_code(&provisioned.org)).await??;
    let mut run = Run::start(target, "crash", devices, devices, common).await?;
    let phase = run.connect().await;
    run.report.phases.push(phase);
    let (phase, results) = run.pair("pair", &|_| code.clone(), false, stay, None).await;
    run.report.phases.push(phase);
    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    if expectation.told.len() != devices as usize {
        problems.push(format!(
            "{} of {devices} devices paired before the kill",
            expectation.told.len()
        ));
    }
    Ok((
        run,
        provisioned.org,
        provisioned.configuration,
        expectation,
        problems,
    ))
}

/// Killed once `share` of an enrollment burst has its answers.
async fn burst(
    target: &mut Target,
    devices: u32,
    share: f64,
    common: &Common,
) -> anyhow::Result<Cycle> {
    let provisioned = bounded("provisioning", target.admin.provision(devices)).await??;
    let org = provisioned.org.clone();
    let code = bounded("a code", target.admin.reusable_code(&org)).await??;
    let mut run = Run::start(target, "crash", devices, devices, common).await?;
    let phase = run.connect().await;
    run.report.phases.push(phase);

    let threshold = (f64::from(devices) * share.clamp(0.0, 1.0)) as u64;
    let probe = run.fleets.progress_probe();
    let mut spawned = run.target.spawned.take().context("no server")?;
    // The last answers of a fast wave can all come between two looks, and the wave's end resets
    // the counter: then the killer kills at the wave's end (the cycle's moment says so) rather
    // than wait for ever.
    let wave_over = std::sync::atomic::AtomicBool::new(false);
    let killer = async {
        while probe() < threshold && !wave_over.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at_the_end = wave_over.load(std::sync::atomic::Ordering::SeqCst);
        spawned.kill().await;
        (spawned, at_the_end)
    };
    let code_of = |_| code.clone();
    let wave = async {
        let outcome = run.pair("pair, killed", &code_of, false, false, None).await;
        wave_over.store(true, std::sync::atomic::Ordering::SeqCst);
        outcome
    };
    let ((phase, results), (spawned, at_the_end)) = tokio::join!(wave, killer);
    run.target.spawned = Some(spawned);
    let mut problems = Vec::new();
    run.report.phases.push(phase);
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    let told_before = expectation.told.len();
    let cut_off = results
        .iter()
        .filter(|(_, result)| result.told_before_failing.is_some())
        .count();

    restart(run.target).await?;
    let mut after_crash = expectation.clone();
    after_crash.errors_allowed = true;
    let survived = bounded(
        "checking after the restart",
        verify(&run.target.admin, &org, &after_crash),
    )
    .await??;
    problems.extend(
        survived
            .into_iter()
            .map(|problem| format!("after restart: {problem}")),
    );

    // Everyone without a pairing tries again, on fresh connections.
    let (phase, retried) = run
        .pair("retry after restart", &code_of, true, false, None)
        .await;
    run.report.phases.push(phase);
    let mut retry = Expectation::default();
    let again = expect_results(&mut retry, &retried, &mut problems);
    for (device, license) in retry.told {
        expectation.told_paired(&device, &license, &mut problems);
    }
    expectation.errors = retry.errors;
    expectation.refused = retry.refused;
    expectation.refusals = Some(BTreeMap::new());
    expectation.assigned = Some(u64::from(devices));
    problems.extend(
        bounded(
            "checking after the retry",
            verify(&run.target.admin, &org, &expectation),
        )
        .await??,
    );
    let report = run.finish(false, &org, &expectation, Vec::new()).await?;
    // Later checks: the same pairings, whatever the retry's connections saw.
    expectation.errors.clear();
    expectation.refused.clear();
    let mut figures = BTreeMap::new();
    figures.insert("told paired before the kill".into(), told_before as f64);
    figures.insert("committed but unanswered at the kill".into(), again as f64);
    figures.insert(
        "told paired, cut off before the configuration".into(),
        cut_off as f64,
    );
    Ok(Cycle {
        org,
        expectation,
        problems,
        phases: report.phases,
        figures,
        moment: if at_the_end {
            format!(
                "at the burst's end (aimed at {:.0}% answered)",
                share * 100.0
            )
        } else {
            format!("at {:.0}% answered", share * 100.0)
        },
    })
}

/// Killed `delay` after a configuration edit was sent to a connected fleet.
async fn push(
    target: &mut Target,
    devices: u32,
    delay: Duration,
    common: &Common,
) -> anyhow::Result<Cycle> {
    let (mut run, org, configuration, expectation, mut problems) =
        paired_fleet(target, devices, true, common).await?;
    let first = run.wait_revision(1).await;
    if first.missing > 0 {
        problems.push(format!("{} devices missed revision 1", first.missing));
    }
    let path = format!("/v1/organizations/{org}/configurations/{configuration}");
    let admin = run.target.admin.clone();
    let edit = admin.put(&path, json!({ "body": configuration_body(2) }));
    let answered = killed_during(run.target, delay, edit).await?;

    wait_disconnected(&mut run).await?;
    restart(run.target).await?;
    let now = bounded("reading the configuration", run.target.admin.get(&path)).await??;
    let revision = now["revision"]
        .as_u64()
        .context("the configuration's revision")?;
    if answered && revision != 2 {
        problems.push(format!(
            "the edit was answered before the kill, but the configuration is at revision {revision}"
        ));
    }
    if revision != 1 && revision != 2 {
        problems.push(format!("the configuration is at revision {revision}"));
    }
    // Wholly there or wholly absent: the body is the one of the revision the server has.
    if (revision == 1 || revision == 2)
        && now["body"].as_str() != Some(configuration_body(revision).as_str())
    {
        problems.push(format!(
            "the configuration is at revision {revision} with another revision's body: {}",
            now["body"]
        ));
    }
    let mut check = expectation.clone();
    check.assigned = Some(u64::from(devices));
    problems.extend(
        bounded(
            "checking after the restart",
            verify(&run.target.admin, &org, &check),
        )
        .await??,
    );

    // Every device resumes, and acknowledges the revision the server has.
    let replies = bounded("resuming", run.fleets.all(&Command::Resume)).await?;
    let resumed = tally_phase("resume after restart", replies);
    if resumed.ok != u64::from(devices) {
        problems.push(format!(
            "{} of {devices} devices resumed after the restart: {:?}",
            resumed.ok, resumed.errors
        ));
    }
    let latest = run.wait_revision(revision).await;
    if latest.missing > 0 {
        problems.push(format!(
            "{} devices did not acknowledge revision {revision} after resuming",
            latest.missing
        ));
    }
    let report = run.finish(false, &org, &check, Vec::new()).await?;
    let mut figures = BTreeMap::new();
    figures.insert(
        "edits answered before the kill".into(),
        f64::from(u8::from(answered)),
    );
    figures.insert(
        "edits committed (revision 2 after the restart)".into(),
        f64::from(u8::from(revision == 2)),
    );
    Ok(Cycle {
        org,
        expectation: check,
        problems,
        phases: report.phases,
        figures,
        moment: format!("{:.1} ms after the edit", delay.as_secs_f64() * 1000.0),
    })
}

/// Killed `delay` after one bulk unpair of the whole fleet was sent.
async fn bulk(
    target: &mut Target,
    devices: u32,
    delay: Duration,
    seed: u64,
    number: u32,
    common: &Common,
) -> anyhow::Result<Cycle> {
    // The devices stay connected, so that those told "unpaired" before the kill are known.
    let (mut run, org, _, _, mut problems) = paired_fleet(target, devices, true, common).await?;
    let codes = bounded(
        "listing the codes",
        run.target
            .admin
            .get(&format!("/v1/organizations/{org}/codes")),
    )
    .await??;
    let code_id = codes["items"][0]["id"]
        .as_str()
        .context("code id")?
        .to_string();
    let path = format!("/v1/organizations/{org}/devices/unpair");
    let body = json!({ "filter": { "code": code_id } });
    let key = format!("crash-{seed}-{number}");
    let admin = run.target.admin.clone();
    let command = admin.post_with_key(&path, body.clone(), &key);
    let answered = killed_during(run.target, delay, command).await?;
    let told_unpaired = wait_disconnected(&mut run)
        .await?
        .get("ended: Unpaired")
        .copied()
        .unwrap_or(0);
    restart(run.target).await?;

    let paired = |admin: &crate::admin::Admin| {
        let path = format!("/v1/organizations/{org}/devices?limit=1");
        let admin = admin.clone();
        async move {
            let page = bounded("counting the devices", admin.get(&path)).await??;
            page["total"].as_u64().context("the devices' total")
        }
    };
    let left = paired(&run.target.admin).await?;
    if answered && left != 0 {
        problems.push(format!(
            "the bulk unpair was answered before the kill, but {left} devices are paired"
        ));
    }
    if told_unpaired > 0 && left != 0 {
        problems.push(format!(
            "{told_unpaired} devices were told \"unpaired\" before the kill, but {left} devices \
             are paired after the restart"
        ));
    }
    if left != 0 && left != u64::from(devices) {
        problems.push(format!(
            "{left} of {devices} devices paired after the kill: the bulk unpair was not all or nothing"
        ));
    }
    // The client sends it again with its key, as after any lost answer.
    let again = bounded(
        "the bulk unpair again",
        run.target.admin.post_with_key(&path, body, &key),
    )
    .await?
    .context("the bulk unpair, sent again")?;
    let left_after = paired(&run.target.admin).await?;
    if left_after != 0 {
        problems.push(format!(
            "{left_after} devices paired after the bulk unpair was sent again ({again})"
        ));
    }
    // No device paired, every license free.
    let expectation = Expectation {
        assigned: Some(0),
        ..Expectation::default()
    };
    problems.extend(
        bounded(
            "checking after the command",
            verify(&run.target.admin, &org, &expectation),
        )
        .await??,
    );
    let report = run.finish(false, &org, &expectation, Vec::new()).await?;
    let mut figures = BTreeMap::new();
    figures.insert(
        "bulk unpairs answered before the kill".into(),
        f64::from(u8::from(answered)),
    );
    figures.insert(
        "bulk unpairs committed before the kill".into(),
        f64::from(u8::from(left == 0)),
    );
    figures.insert(
        "devices told unpaired before the kill".into(),
        told_unpaired as f64,
    );
    Ok(Cycle {
        org,
        expectation,
        problems,
        phases: report.phases,
        figures,
        moment: format!("{:.1} ms after the command", delay.as_secs_f64() * 1000.0),
    })
}

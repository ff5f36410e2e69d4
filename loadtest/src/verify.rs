//! `--verify`: the outcome the devices were told, checked against what the admin API lists.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::admin::Admin;

/// What the devices were told, and what the scenario expects of the server.
#[derive(Debug, Default, Clone)]
pub struct Expectation {
    /// Every device told "paired": device id → the license it was told.
    pub told: HashMap<String, String>,
    /// Devices that must hold a given license (single-use codes): device id → license.
    pub bound: HashMap<String, String>,
    /// The number of assigned licenses the server must count, when known exactly. Without it
    /// (a crash left answers unsent) the count must be at least the devices told "paired".
    pub assigned: Option<u64>,
    /// The refusals the devices must have been given, by reason, when known exactly.
    pub refusals: Option<BTreeMap<String, u64>>,
    /// Refusals the devices were given, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Devices that got no answer, by error; a problem unless `errors_allowed`.
    pub errors: BTreeMap<String, u64>,
    pub errors_allowed: bool,
}

impl Expectation {
    /// Records a device told "paired". A device told two different licenses (a retry that
    /// got another one) is a problem the check reports.
    pub fn told_paired(&mut self, device_id: &str, license_id: &str, problems: &mut Vec<String>) {
        if let Some(earlier) = self.told.insert(device_id.into(), license_id.into())
            && earlier != license_id
        {
            problems.push(format!(
                "device {device_id} was told license {earlier}, then {license_id}"
            ));
        }
    }
}

/// Checks the outcome against the admin API. Returns the problems found (none: it holds).
pub async fn verify(
    admin: &Admin,
    org: &str,
    expected: &Expectation,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let listed = admin
        .all(&format!("/v1/organizations/{org}/devices"))
        .await?;
    let listed: HashMap<String, String> = listed
        .iter()
        .filter_map(|device| {
            Some((
                device["id"].as_str()?.to_string(),
                device["license_id"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut missing = 0;
    for (device, license) in &expected.told {
        match listed.get(device) {
            None => {
                missing += 1;
                if missing <= 10 {
                    problems.push(format!(
                        "device {device} was told \"paired\" but is not listed"
                    ));
                }
            }
            Some(held) if held != license => problems.push(format!(
                "device {device} was told license {license} but holds {held}"
            )),
            Some(_) => {}
        }
    }
    if missing > 10 {
        problems.push(format!(
            "{missing} devices told \"paired\" are not listed in all"
        ));
    }
    for (device, license) in &expected.bound {
        if listed.get(device).is_some_and(|held| held != license) {
            problems.push(format!(
                "device {device} paired with the single-use code of license {license} but \
                 holds another"
            ));
        }
    }
    let told_licenses: HashSet<&String> = expected.told.values().collect();
    if told_licenses.len() != expected.told.len() {
        problems.push(format!(
            "{} licenses were handed out more than once",
            expected.told.len() - told_licenses.len()
        ));
    }
    let held: HashSet<&String> = listed.values().collect();
    if held.len() != listed.len() {
        problems.push(format!(
            "the server lists {} licenses held by two devices",
            listed.len() - held.len()
        ));
    }
    let summary = admin
        .get(&format!("/v1/organizations/{org}/licenses/summary"))
        .await?;
    let count = |field: &str| summary[field].as_u64().unwrap_or(u64::MAX);
    let (total, free, reserved, assigned, expired) = (
        count("total"),
        count("free"),
        count("reserved"),
        count("assigned"),
        count("expired"),
    );
    if [free, reserved, assigned, expired]
        .iter()
        .try_fold(0u64, |sum, part| sum.checked_add(*part))
        != Some(total)
    {
        problems.push(format!(
            "license counts do not add up: {free} free + {reserved} reserved + {assigned} \
             assigned + {expired} expired != {total}"
        ));
    }
    if assigned != listed.len() as u64 {
        problems.push(format!(
            "the server counts {assigned} assigned licenses but lists {} devices",
            listed.len()
        ));
    }
    match expected.assigned {
        Some(exact) if assigned != exact => problems.push(format!(
            "expected {exact} assigned licenses, the server counts {assigned}"
        )),
        None if assigned < expected.told.len() as u64 => problems.push(format!(
            "{} devices were told \"paired\" but the server counts {assigned} assigned licenses",
            expected.told.len()
        )),
        _ => {}
    }
    if let Some(refusals) = &expected.refusals
        && refusals != &expected.refused
    {
        problems.push(format!(
            "expected refusals {refusals:?}, the devices were given {:?}",
            expected.refused
        ));
    }
    let failed: u64 = expected.errors.values().sum();
    if failed > 0 && !expected.errors_allowed {
        problems.push(format!(
            "{failed} devices failed with errors: {:?}",
            expected.errors
        ));
    }
    Ok(problems)
}

//! The fleet lists, `GET .../licenses` and `GET .../devices`: every filter and every sort
//! answers what the rows themselves say (an oracle in this file reads the unfiltered rows and
//! decides which match and in what order), page by page through cursors, with the count; paging
//! through a list that changes while it is read; bad parameters; and an organization key that
//! never reaches another organization's rows through a filter or a cursor.

use std::cmp::Ordering;
use std::collections::HashSet;

use client::{Connection, PairResult};
use protocol::{AckOutcome, DeviceInfo, Encoding};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rows {
    Licenses,
    Devices,
}

impl Rows {
    fn path(self, org: &str) -> String {
        match self {
            Rows::Licenses => format!("/v1/organizations/{org}/licenses"),
            Rows::Devices => format!("/v1/organizations/{org}/devices"),
        }
    }

    /// The device of a row, if any.
    fn device(self, row: &Value) -> Option<&Value> {
        match self {
            Rows::Licenses => Some(&row["device"]).filter(|device| !device.is_null()),
            Rows::Devices => Some(row),
        }
    }

    /// The id a row is known by in its list.
    fn id(self, row: &Value) -> String {
        row["id"].as_str().unwrap().to_string()
    }

    /// The license status of a row.
    fn status(self, row: &Value, now: &str) -> String {
        match self {
            Rows::Licenses => row["status"].as_str().unwrap().to_string(),
            Rows::Devices => match row["license_valid_until"].as_str() {
                Some(until) if until <= now => "expired".into(),
                _ => "assigned".into(),
            },
        }
    }
}

/// The filters that leave out the licenses that no device holds.
const DEVICE_FILTERS: [&str; 7] = [
    "q",
    "online",
    "not_seen_since",
    "configuration",
    "revision",
    "app_version",
    "code",
];

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Whether every word of `q` begins a word of the device's name, reported name, model, OS, app
/// version or notes (a word begins a field or follows a space), ignoring ASCII case.
fn searched(device: &Value, q: &str) -> bool {
    let fields: Vec<String> = [
        "admin_name",
        "reported_name",
        "model",
        "os",
        "app_version",
        "notes",
    ]
    .iter()
    .map(|field| text(&device[*field]).to_ascii_lowercase())
    .collect();
    q.split_whitespace().all(|word| {
        let word = word.to_ascii_lowercase();
        fields
            .iter()
            .any(|field| field.starts_with(&word) || field.contains(&format!(" {word}")))
    })
}

/// Where the device stands with its configuration's current revision.
fn revision_state(device: &Value) -> Option<&'static str> {
    let assigned = &device["configuration"];
    if assigned.is_null() {
        return None;
    }
    let applied = &device["applied"];
    let current = !applied.is_null()
        && applied["configuration_id"] == assigned["id"]
        && applied["revision"] == assigned["revision"];
    Some(match (current, text(&applied["status"])) {
        (true, "applied") => "up_to_date",
        (true, "failed") => "failed",
        _ => "pending",
    })
}

/// Whether a row matches every parameter.
fn matches(rows: Rows, row: &Value, params: &[(&str, String)], now: &str) -> bool {
    let device = rows.device(row);
    params.iter().all(|(name, value)| {
        if DEVICE_FILTERS.contains(name) && device.is_none() {
            return false;
        }
        let device = device.unwrap_or(&Value::Null);
        match *name {
            "status" => rows.status(row, now) == *value,
            "q" => searched(device, value),
            "online" => device["online"] == json!(value == "true"),
            "not_seen_since" => {
                device["online"] == json!(false) && text(&device["last_seen"]) < value.as_str()
            }
            "configuration" => device["configuration"]["id"] == json!(value),
            "revision" => revision_state(device) == Some(value.as_str()),
            "app_version" => device["app_version"] == json!(value),
            "code" => device["paired_by_code"] == json!(value),
            "sort" => true,
            other => panic!("no oracle for {other}"),
        }
    })
}

/// The order a sort gives, as the docs describe it: a key, then the id; for the license list,
/// the licenses that no device holds after the others (in license id order) when the key is a
/// device's; statuses in the order assigned, reserved, free, expired; a license list filtered on
/// its device is in the devices' id order.
fn ordered(
    rows: Rows,
    mut list: Vec<Value>,
    sort: &str,
    device_filtered: bool,
    now: &str,
) -> Vec<String> {
    let (descending, sort) = match sort.strip_prefix('-') {
        Some(sort) => (true, sort),
        None => (false, sort),
    };
    let by_device_id = rows == Rows::Devices || device_filtered;
    let tie = |row: &Value| -> String {
        if by_device_id {
            text(&rows.device(row).unwrap()["id"]).to_string()
        } else {
            rows.id(row)
        }
    };
    let key = |row: &Value| -> Option<String> {
        let device = rows.device(row)?;
        Some(match sort {
            "name" => text(&device["name"]).to_ascii_lowercase(),
            "last_seen" => text(&device["last_seen"]).to_string(),
            "paired_at" => text(&device["paired_at"]).to_string(),
            _ => unreachable!(),
        })
    };
    let flip = |ordering: Ordering| {
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    };
    let rank = |row: &Value| {
        ["assigned", "reserved", "free", "expired"]
            .iter()
            .position(|status| *status == rows.status(row, now))
            .unwrap()
    };
    list.sort_by(|a, b| match sort {
        "id" => flip(tie(a).cmp(&tie(b))),
        "status" => flip(rank(a).cmp(&rank(b)).then_with(|| tie(a).cmp(&tie(b)))),
        _ => match (key(a), key(b)) {
            (Some(ka), Some(kb)) => flip(ka.cmp(&kb).then_with(|| tie(a).cmp(&tie(b)))),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => flip(rows.id(a).cmp(&rows.id(b))),
        },
    });
    list.iter().map(|row| rows.id(row)).collect()
}

fn query_string(params: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(name, value)| (*name, value.as_str())));
    url.query().unwrap_or("").to_string()
}

/// Every page of a list with `params`, `limit` rows at a time: the ids in order, checking on
/// the way that each page says the same total and that the last page has no cursor.
async fn read_all(
    admin: &Admin,
    path: &str,
    rows: Rows,
    params: &[(&str, String)],
    limit: u32,
) -> (Vec<String>, Value) {
    read_from(admin, path, rows, params, limit, None).await
}

/// As [`read_all`], from the page after `cursor`.
async fn read_from(
    admin: &Admin,
    path: &str,
    rows: Rows,
    params: &[(&str, String)],
    limit: u32,
    mut cursor: Option<String>,
) -> (Vec<String>, Value) {
    let mut ids = Vec::new();
    let mut totals = HashSet::new();
    loop {
        let mut all = params.to_vec();
        all.push(("limit", limit.to_string()));
        if let Some(cursor) = &cursor {
            all.push(("cursor", cursor.clone()));
        }
        let url = format!("{path}?{}", query_string(&all));
        let (status, page) = admin.call(Method::GET, &url, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize, "{url}");
        ids.extend(items.iter().map(|row| rows.id(row)));
        totals.insert((page["total"].clone(), page["total_exact"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(
                    items.len(),
                    limit as usize,
                    "{url}: a short page before the end"
                );
                cursor = Some(next.to_string());
            }
            None => break,
        }
    }
    assert_eq!(
        totals.len(),
        1,
        "{path} {params:?}: every page says the same total"
    );
    let (total, exact) = totals.into_iter().next().unwrap();
    (ids, json!({ "total": total, "total_exact": exact }))
}

/// A device that pairs with `code` as `info`; its connection is open.
async fn pair_as(test: &TestServer, code: &str, info: &DeviceInfo) -> (Connection, String) {
    let mut connection = connect(&test.device_url(), Encoding::Json).await;
    let PairResult::Paired(paired) = connection.pair(code, &identity(), info).await.unwrap() else {
        panic!("{} not paired", info.name);
    };
    (connection, paired.device_id.to_string())
}

fn info(name: &str, model: &str, os: &str, app_version: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        model: model.into(),
        os: os.into(),
        app_version: app_version.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_and_sort_answers_what_the_rows_say() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Fleet").await;
    admin.add_licenses(&org, 10).await;
    let now = admin.get("/v1/whoami").await["now"]
        .as_str()
        .unwrap()
        .to_string();
    // Two licenses that end in four minutes, reserved meanwhile so that no pairing takes them:
    // by the end of the seeding they are expired.
    let ending = admin
        .post(
            &format!("/v1/organizations/{org}/licenses"),
            json!({ "count": 2, "valid_until": later(&now, 240) }),
        )
        .await;
    for license in ids(&ending["license_ids"]) {
        admin
            .post(
                &format!("/v1/organizations/{org}/licenses/{license}/single-use-code"),
                json!({ "validity_seconds": 600 }),
            )
            .await;
    }
    let alpha = admin
        .create_config(&org, "Alpha", "[GLOBAL]\nalpha = 1\n")
        .await;
    let door_a = admin
        .reusable_code(&org, json!({ "label": "Door A" }))
        .await;
    let door_b = admin
        .reusable_code(&org, json!({ "label": "Door B" }))
        .await;

    // name, model, OS, app version, code, stays connected, what it says of Alpha.
    let applied = || Some(AckOutcome::Applied);
    let failed = || {
        Some(AckOutcome::Failed {
            reason: "no storage".into(),
        })
    };
    let specs = [
        (
            "alpha van 1",
            "TC52",
            "Android 13",
            "4.2.1",
            &door_a,
            true,
            applied(),
        ),
        (
            "Alpha Van 2",
            "TC52",
            "Android 14",
            "4.3.0",
            &door_a,
            false,
            failed(),
        ),
        ("bravo", "CT40", "Android 14", "4.3.0", &door_b, true, None),
        (
            "charlie truck",
            "CT40",
            "Android 13",
            "4.2.1",
            &door_b,
            false,
            applied(),
        ),
        (
            "delta",
            "TC52",
            "Android 13",
            "4.2.1",
            &door_a,
            true,
            applied(),
        ),
        ("delta", "TC21", "iOS 17", "5.0.0", &door_a, false, None),
        ("echo", "TC21", "iOS 17", "5.0.0", &door_b, true, applied()),
    ];
    let mut devices = Vec::new();
    for (index, (name, model, os, version, code, _, outcome)) in specs.iter().enumerate() {
        // The last two pair at the same moment: a tie broken by id.
        if index != 6 {
            admin.advance(30.0).await;
        }
        let (mut connection, id) = pair_as(
            &test,
            code["code"].as_str().unwrap(),
            &info(name, model, os, version),
        )
        .await;
        let received = next_configuration(&mut connection).await;
        if let Some(outcome) = outcome.clone() {
            assert!(acknowledge(&mut connection, &received, outcome).await);
        }
        devices.push((Some(connection), id));
    }
    // Those that do not stay connected leave one by one, so that each was last seen at its own
    // time.
    for (index, spec) in specs.iter().enumerate() {
        if spec.5 {
            continue;
        }
        admin.advance(30.0).await;
        drop(devices[index].0.take());
        let id = devices[index].1.clone();
        eventually("the device is offline", || async {
            (admin.device(&org, &id).await["online"] == json!(false)).then_some(())
        })
        .await;
    }
    admin.advance(30.0).await;
    // The admin names one device and writes notes on another; a second configuration goes to
    // two of them (one connected, which applies it; one not, which is pending).
    let device_path =
        |index: usize| format!("/v1/organizations/{org}/devices/{}", devices[index].1);
    admin
        .call(
            Method::PATCH,
            &device_path(2),
            Some(json!({ "name": "Zulu yard" })),
        )
        .await;
    admin
        .call(
            Method::PATCH,
            &device_path(3),
            Some(json!({ "notes": "Spare battery, van 9" })),
        )
        .await;
    let beta = admin
        .create_config(&org, "Beta", "[GLOBAL]\nbeta = 1\n")
        .await;
    admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{beta}/assign"),
            json!({ "device_ids": [devices[3].1, devices[2].1] }),
        )
        .await;
    let connection = devices[2].0.as_mut().unwrap();
    let received = next_configuration(connection).await;
    assert!(acknowledge(connection, &received, AckOutcome::Applied).await);
    // One free license reserved by a single-use code, valid well past the checks.
    let free = admin
        .get(&format!(
            "/v1/organizations/{org}/licenses?status=free&limit=1"
        ))
        .await;
    let reserved = free["items"][0]["id"].as_str().unwrap().to_string();
    admin
        .post(
            &format!("/v1/organizations/{org}/licenses/{reserved}/single-use-code"),
            json!({ "validity_seconds": 600 }),
        )
        .await;
    let now = admin.get("/v1/whoami").await["now"]
        .as_str()
        .unwrap()
        .to_string();

    // The unfiltered rows, which the oracle reads.
    let everything = |rows: Rows| {
        let path = rows.path(&org);
        async move {
            admin.get(&format!("{path}?limit=1000")).await["items"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let licenses = everything(Rows::Licenses).await;
    let all_devices = everything(Rows::Devices).await;
    let statuses: Vec<String> = licenses
        .iter()
        .map(|row| Rows::Licenses.status(row, &now))
        .collect();
    for (status, count) in [
        ("assigned", 7),
        ("reserved", 1),
        ("free", 2),
        ("expired", 2),
    ] {
        assert_eq!(
            statuses.iter().filter(|s| *s == status).count(),
            count,
            "{status}: {statuses:?}"
        );
    }
    assert_eq!(all_devices.len(), 7);
    let middle_seen = admin.device(&org, &devices[3].1).await["last_seen"]
        .as_str()
        .unwrap()
        .to_string();

    let p = |name: &'static str, value: &str| (name, value.to_string());
    let code_a = door_a["id"].as_str().unwrap();
    let code_b = door_b["id"].as_str().unwrap();
    let filters: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![p("status", "free")],
        vec![p("status", "reserved")],
        vec![p("status", "assigned")],
        vec![p("status", "expired")],
        vec![p("online", "true")],
        vec![p("online", "false")],
        vec![p("not_seen_since", &middle_seen)],
        vec![p("configuration", &alpha)],
        vec![p("configuration", &beta)],
        vec![p("revision", "up_to_date")],
        vec![p("revision", "pending")],
        vec![p("revision", "failed")],
        vec![p("app_version", "4.2.1")],
        vec![p("code", code_a)],
        vec![p("q", "alpha")],
        vec![p("q", "ALPHA VAN")],
        vec![p("q", "van 2")],
        vec![p("q", "zulu")],
        vec![p("q", "bravo")],
        vec![p("q", "spare")],
        vec![p("q", "android 14")],
        vec![p("q", "t")],
        vec![p("q", "ios 5")],
        vec![p("q", "lta")],
        vec![p("q", "van%")],
        vec![p("status", "assigned"), p("online", "true"), p("q", "a")],
        vec![p("code", code_b), p("revision", "up_to_date")],
        vec![
            p("configuration", &alpha),
            p("app_version", "5.0.0"),
            p("online", "false"),
        ],
    ];
    let sorts = ["id", "name", "last_seen", "paired_at", "status"];
    let mut checked = 0;
    for rows in [Rows::Licenses, Rows::Devices] {
        let all = if rows == Rows::Licenses {
            &licenses
        } else {
            &all_devices
        };
        for filter in &filters {
            let device_filtered = filter.iter().any(|(name, _)| DEVICE_FILTERS.contains(name));
            let matching: Vec<Value> = all
                .iter()
                .filter(|row| matches(rows, row, filter, &now))
                .cloned()
                .collect();
            for sort in sorts
                .iter()
                .flat_map(|sort| [sort.to_string(), format!("-{sort}")])
            {
                let expected = ordered(rows, matching.clone(), &sort, device_filtered, &now);
                let mut params = filter.clone();
                params.push(("sort", sort.clone()));
                let (got, count) = read_all(admin, &rows.path(&org), rows, &params, 3).await;
                assert_eq!(got, expected, "{rows:?} {params:?}");
                assert_eq!(
                    count,
                    json!({ "total": expected.len(), "total_exact": true }),
                    "{rows:?} {params:?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * filters.len() * 10);
    // The filters are not all empty or all full: each of them picks something out.
    for filter in &filters[1..] {
        let picked = licenses
            .iter()
            .filter(|row| matches(Rows::Licenses, row, filter, &now))
            .count();
        if !filter
            .iter()
            .any(|(_, value)| ["van%", "ios 5", "lta"].contains(&value.as_str()))
        {
            assert!(
                picked > 0 && picked < licenses.len(),
                "{filter:?} picks {picked}"
            );
        }
    }
    drop(devices);
    test.stop().await;
}

/// `at` plus `seconds`, as RFC 3339.
fn later(at: &str, seconds: i64) -> String {
    let parsed = engine::ids::Timestamp::parse_rfc3339(at).unwrap();
    engine::ids::Timestamp(parsed.0 + seconds * 1000).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_a_changing_list_returns_no_row_twice_and_loses_none() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Changing", 40).await;
    let mut connections = Vec::new();
    let mut id_of = std::collections::HashMap::new();
    for index in 0..12 {
        let name = format!("d{index:02}");
        let (connection, id) =
            pair_as(&test, &code, &info(&name, "TC52", "Android 13", "4.2.1")).await;
        connections.push(connection);
        id_of.insert(name, id);
    }
    for rows in [Rows::Devices, Rows::Licenses] {
        for sort in ["name", "-name", "id", "paired_at"] {
            let path = rows.path(&org);
            let before: Vec<String> =
                admin.get(&format!("{path}?sort={sort}&limit=1000")).await["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| rows.id(row))
                    .collect();
            let first = admin.get(&format!("{path}?sort={sort}&limit=4")).await;
            let mut seen: Vec<String> = first["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| rows.id(row))
                .collect();
            // Between two pages: a row already read and a row not yet read are unpaired (their
            // devices leave the list; their licenses stay, now free), licenses are added and a
            // device pairs.
            let read_device = |id: &String| match rows {
                Rows::Devices => id.clone(),
                Rows::Licenses => first["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|row| rows.id(row) == *id)
                    .map(|row| text(&row["device"]["id"]).to_string())
                    .unwrap_or_default(),
            };
            let behind = read_device(&seen[0]);
            let ahead_row = before[8].clone();
            let ahead = match rows {
                Rows::Devices => ahead_row.clone(),
                Rows::Licenses => {
                    text(&admin.get(&format!("{path}/{ahead_row}")).await["device_id"]).to_string()
                }
            };
            let mut gone = HashSet::new();
            for device in [&behind, &ahead] {
                if !device.is_empty() {
                    admin.unpair(&org, device).await;
                    gone.insert(device.clone());
                }
            }
            let added = admin.add_licenses(&org, 2).await;
            let (connection, newcomer) = pair_as(
                &test,
                &code,
                &info(&format!("d05 {sort}"), "TC52", "Android 13", "4.2.1"),
            )
            .await;
            connections.push(connection);
            let params = vec![("sort", sort.to_string())];
            let cursor = first["next_cursor"].as_str().map(str::to_string);
            let (rest, _) = read_from(admin, &path, rows, &params, 4, cursor).await;
            seen.extend(rest);
            // In an order by a device's key, a license moves when its device is unpaired (from the
            // licenses held to those not held, last) or when the newcomer takes it (the other
            // way): it may be read twice or not at all. No other row may.
            let device_key = !sort.ends_with("id");
            let taken = text(&admin.device(&org, &newcomer).await["license_id"]).to_string();
            let moved: HashSet<&String> = match rows {
                Rows::Licenses if device_key => {
                    [&seen[0], &ahead_row, &taken].into_iter().collect()
                }
                _ => HashSet::new(),
            };
            let unique: HashSet<&String> = seen.iter().collect();
            for row in &unique {
                let times = seen.iter().filter(|seen| seen == row).count();
                assert!(
                    times == 1 || (times == 2 && moved.contains(row)),
                    "{rows:?} {sort}: {row} read {times} times"
                );
            }
            // Every row that was there before and stayed is there.
            for row in &before {
                let removed = rows == Rows::Devices && gone.contains(row);
                assert!(
                    removed || moved.contains(row) || unique.contains(row),
                    "{rows:?} {sort}: {row} lost"
                );
            }
            // The device unpaired ahead of the cursor is not read after its unpairing.
            if rows == Rows::Devices {
                assert!(!unique.contains(&ahead), "{sort}: an unpaired device read");
            }
            // Rows added after the cursor's place are read: new licenses (last by id) and, in
            // the device list by name, the newcomer ("d05 …" sorts after "d04", before "d06").
            if rows == Rows::Licenses && sort == "id" {
                for license in &added {
                    assert!(
                        unique.contains(license),
                        "{sort}: an added license not read"
                    );
                }
            }
            if rows == Rows::Devices && sort == "name" {
                assert!(
                    unique.contains(&newcomer),
                    "a newcomer ahead of the cursor not read"
                );
            }
        }
    }
    drop(connections);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_refused_and_a_key_sees_only_its_own_rows() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Mine", 6).await;
    let (other, other_code) = admin.org_with_code("Theirs", 6).await;
    let mut connections = Vec::new();
    for (org_code, name) in [
        (&code, "van mine"),
        (&code, "van mine 2"),
        (&other_code, "van theirs"),
        (&other_code, "van theirs 2"),
    ] {
        connections
            .push(pair_as(&test, org_code, &info(name, "TC52", "Android 13", "4.2.1")).await);
    }
    let config = admin.create_config(&other, "Theirs", "[GLOBAL]\n").await;
    let their_code = admin.get(&format!("/v1/organizations/{other}/codes")).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = admin.create_key(&org, "mine").await;
    let mine = admin.with_token(key["key"].as_str().unwrap());

    for rows in [Rows::Licenses, Rows::Devices] {
        let path = rows.path(&org);
        // Filters naming another organization's things find nothing here.
        for query in [
            format!("configuration={config}"),
            format!("code={their_code}"),
            "q=theirs".to_string(),
        ] {
            let page = mine.get(&format!("{path}?{query}")).await;
            assert_eq!(
                (page["items"].as_array().unwrap().len(), &page["total"]),
                (0, &json!(0)),
                "{query}"
            );
        }
        // The other organization's list is not this key's.
        let (status, _) = mine.call(Method::GET, &rows.path(&other), None).await;
        assert_eq!(status, 404);
        // A cursor made on the other organization's list reads this organization's rows only.
        let theirs = admin
            .get(&format!("{}?sort=name&limit=1", rows.path(&other)))
            .await;
        let cursor = theirs["next_cursor"].as_str().unwrap();
        let (status, page) = mine
            .call(
                Method::GET,
                &format!("{path}?sort=name&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for row in page["items"].as_array().unwrap() {
            let owner = match rows {
                Rows::Licenses => &row["organization_id"],
                Rows::Devices => &row["organization_id"],
            };
            assert_eq!(owner, &json!(org), "{row}");
        }

        // Bad values: 422 naming the parameter; unknown parameters and bad limits: 400.
        let name_cursor = admin.get(&format!("{path}?sort=name&limit=1")).await["next_cursor"]
            .as_str()
            .unwrap()
            .to_string();
        let long = "x".repeat(201);
        for (query, status, field) in [
            ("status=lost".to_string(), 422, Some("status")),
            ("revision=late".to_string(), 422, Some("revision")),
            (
                "not_seen_since=yesterday".to_string(),
                422,
                Some("not_seen_since"),
            ),
            ("sort=colour".to_string(), 422, Some("sort")),
            ("sort=--name".to_string(), 422, Some("sort")),
            (format!("q={long}"), 422, Some("q")),
            ("cursor=bm90IGEgY3Vyc29y".to_string(), 422, Some("cursor")),
            (
                format!("sort=-name&cursor={name_cursor}"),
                422,
                Some("cursor"),
            ),
            (format!("sort=id&cursor={name_cursor}"), 422, Some("cursor")),
            ("online=maybe".to_string(), 422, Some("online")),
            ("configuration=nine".to_string(), 422, Some("configuration")),
            ("code=nine".to_string(), 422, Some("code")),
            ("limit=many".to_string(), 400, None),
            ("colour=red".to_string(), 400, None),
        ] {
            let (got, answer) = mine
                .call(Method::GET, &format!("{path}?{query}"), None)
                .await;
            assert_eq!(got, status, "{rows:?} {query}: {answer}");
            assert_eq!(
                answer["error"]["code"],
                json!("invalid_request"),
                "{query}: {answer}"
            );
            if let Some(field) = field {
                assert_eq!(answer["error"]["field"], json!(field), "{query}: {answer}");
            }
        }
    }
    drop(connections);
    test.stop().await;
}

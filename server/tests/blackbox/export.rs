//! The CSV export of the fleet lists, `GET .../devices.csv` and `GET .../licenses.csv`: the
//! header and columns, filters and sort as the lists take them, RFC 4180 quoting and formula
//! escaping of what admins and devices write, the BOM, a list longer than one chunk, another
//! organization's key, bad parameters, and a client that goes away mid-export.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const DEVICE_COLUMNS: [&str; 19] = [
    "device_id",
    "name",
    "admin_name",
    "notes",
    "reported_name",
    "model",
    "os",
    "app_version",
    "online",
    "last_seen",
    "paired_at",
    "configuration_id",
    "configuration_name",
    "revision",
    "paired_by_code_id",
    "paired_by_code_label",
    "license_id",
    "license_status",
    "license_valid_until",
];

/// The answer to a CSV request: status, headers and body text.
struct Csv {
    status: u16,
    content_type: String,
    disposition: String,
    body: String,
}

async fn export(base: &str, token: &str, path: &str) -> Csv {
    let answer = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API answers");
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    let status = answer.status().as_u16();
    let body = answer.text().await.expect("whole body");
    Csv {
        status,
        content_type,
        disposition,
        body,
    }
}

/// Parses RFC 4180 CSV with CRLF record ends (after the BOM); panics on anything else.
fn parse(body: &str) -> Vec<Vec<String>> {
    let text = body.strip_prefix('\u{feff}').expect("a BOM first");
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty() && !was_quoted, "a quote inside a field");
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                was_quoted = false;
            }
            '\n' => panic!("a bare LF outside quotes"),
            c => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "ends with CRLF"
    );
    records
}

/// The records as maps from column to value, after checking the header.
fn rows(body: &str, header: &[&str]) -> Vec<std::collections::HashMap<String, String>> {
    let records = parse(body);
    assert_eq!(records[0], header, "header");
    records[1..]
        .iter()
        .map(|record| {
            assert_eq!(record.len(), header.len(), "{record:?}");
            header
                .iter()
                .map(|name| name.to_string())
                .zip(record.iter().cloned())
                .collect()
        })
        .collect()
}

fn license_columns() -> Vec<&'static str> {
    let mut columns = DEVICE_COLUMNS[16..].to_vec();
    columns.extend_from_slice(&DEVICE_COLUMNS[..16]);
    columns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_licenses_export_as_csv_with_quoting_and_formula_escaping() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Export").await;
    admin.add_licenses(&org, 3).await;
    let code = admin
        .reusable_code(&org, json!({ "label": "=Warehouse, \"north\"" }))
        .await;
    let code_text = code["code"].as_str().unwrap();
    let (_, _first_connection, first) = pair_ok(&test.device_url(), code_text).await;
    let (_, _second_connection, second) = pair_ok(&test.device_url(), code_text).await;
    let (first, second) = (first.device_id.to_string(), second.device_id.to_string());
    let devices = format!("/v1/organizations/{org}/devices");
    let (status, edited) = admin
        .call(
            Method::PATCH,
            &format!("{devices}/{first}"),
            Some(json!({ "name": "=HYPERLINK(\"x\")", "notes": "a, \"b\"\r\nc" })),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    let (status, edited) = admin
        .call(
            Method::PATCH,
            &format!("{devices}/{second}"),
            Some(json!({ "name": "Van 7", "notes": "@home\t-1" })),
        )
        .await;
    assert_eq!(status, 200, "{edited}");

    let csv = export(
        admin.base(),
        OPERATOR_TOKEN,
        &format!("{devices}.csv?sort=name"),
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    assert!(
        csv.disposition.starts_with("attachment; filename=\"")
            && csv.disposition.contains(&org)
            && csv.disposition.ends_with(".csv\""),
        "{}",
        csv.disposition
    );
    assert!(csv.body.starts_with("\u{feff}device_id,name,"));
    let exported = rows(&csv.body, &DEVICE_COLUMNS);
    // Sorted by name: "=HYPERLINK…" before "Van 7" (lower-case order).
    let ids: Vec<&str> = exported.iter().map(|r| r["device_id"].as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    let (a, b) = (&exported[0], &exported[1]);
    assert_eq!(a["admin_name"], "'=HYPERLINK(\"x\")");
    assert_eq!(a["name"], "'=HYPERLINK(\"x\")");
    assert_eq!(a["notes"], "a, \"b\"\r\nc");
    assert_eq!(b["notes"], "'@home\t-1");
    assert_eq!(b["admin_name"], "Van 7");
    for row in &exported {
        let listed = admin.device(&org, &row["device_id"]).await;
        assert_eq!(
            row["reported_name"],
            listed["reported_name"].as_str().unwrap()
        );
        assert_eq!(row["model"], listed["model"].as_str().unwrap());
        assert_eq!(row["license_id"], listed["license_id"].as_str().unwrap());
        assert_eq!(row["license_status"], "assigned");
        assert_eq!(row["license_valid_until"], "");
        assert_eq!(row["online"], "true");
        assert_eq!(row["paired_at"], listed["paired_at"].as_str().unwrap());
        assert_eq!(row["paired_by_code_id"], code["id"].as_str().unwrap());
        assert_eq!(row["paired_by_code_label"], "'=Warehouse, \"north\"");
        assert_eq!(row["configuration_id"], "");
        assert_eq!(row["revision"], "");
    }
    // The raw quoting: the comma, the doubled quotes and the CRLF inside quotes.
    assert!(csv.body.contains(",\"a, \"\"b\"\"\r\nc\","), "{}", csv.body);

    // Descending, and a filter.
    let csv = export(
        admin.base(),
        OPERATOR_TOKEN,
        &format!("{devices}.csv?sort=-name"),
    )
    .await;
    let ids: Vec<String> = rows(&csv.body, &DEVICE_COLUMNS)
        .iter()
        .map(|r| r["device_id"].clone())
        .collect();
    assert_eq!(ids, [second.clone(), first.clone()]);
    let csv = export(
        admin.base(),
        OPERATOR_TOKEN,
        &format!("{devices}.csv?q=van"),
    )
    .await;
    let ids: Vec<String> = rows(&csv.body, &DEVICE_COLUMNS)
        .iter()
        .map(|r| r["device_id"].clone())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&second));

    // A configuration: its id and name, and the revision state as the `revision` filter says.
    let config = admin
        .create_config(&org, "Route, A", "[GLOBAL]\nroute = 1\n")
        .await;
    admin
        .put(
            &format!("{devices}/{first}/configuration"),
            json!({ "configuration_id": config }),
        )
        .await;
    let csv = export(
        admin.base(),
        OPERATOR_TOKEN,
        &format!("{devices}.csv?configuration={config}"),
    )
    .await;
    // Devices without a configuration take the organization's first one: both have it.
    let exported = rows(&csv.body, &DEVICE_COLUMNS);
    assert_eq!(exported.len(), 2);
    for row in &exported {
        assert_eq!(row["configuration_id"], config);
        assert_eq!(row["configuration_name"], "Route, A");
        let revision = &row["revision"];
        // The test's devices never acknowledge: pending, as the list's filter says too.
        assert_eq!(revision, "pending");
        let listed = admin
            .get(&format!(
                "{devices}?configuration={config}&revision={revision}"
            ))
            .await;
        assert!(
            listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|device| device["id"] == json!(row["device_id"])),
            "{revision}: {listed}"
        );
    }

    // Licenses: one row per license, the free one without device columns.
    let licenses = format!("/v1/organizations/{org}/licenses");
    let csv = export(admin.base(), OPERATOR_TOKEN, &format!("{licenses}.csv")).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let exported = rows(&csv.body, &license_columns());
    assert_eq!(exported.len(), 3);
    let free: Vec<_> = exported
        .iter()
        .filter(|r| r["license_status"] == "free")
        .collect();
    assert_eq!(free.len(), 1);
    assert_eq!(free[0]["device_id"], "");
    let csv = export(
        admin.base(),
        OPERATOR_TOKEN,
        &format!("{licenses}.csv?status=assigned&sort=-name"),
    )
    .await;
    let ids: Vec<String> = rows(&csv.body, &license_columns())
        .iter()
        .map(|r| r["device_id"].clone())
        .collect();
    assert_eq!(ids, [second, first]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_another_organizations_key_get_no_rows() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Mine", 2).await;
    let _paired = pair_ok(&test.device_url(), &code).await;
    let other = admin.create_org("Other").await;
    let key = admin.create_key(&other, "theirs").await;
    let theirs = key["key"].as_str().unwrap();
    for what in ["devices", "licenses"] {
        let path = format!("/v1/organizations/{org}/{what}.csv");
        let csv = export(admin.base(), theirs, &path).await;
        assert!(
            csv.status == 403 || csv.status == 404,
            "{}: {}",
            csv.status,
            csv.body
        );
        assert!(!csv.body.contains(&org) && !csv.body.contains("device_id"));
        for (query, field) in [
            ("limit=10", "limit"),
            ("cursor=abc", "cursor"),
            ("status=bogus", "status"),
            ("online=maybe", "online"),
            ("sort=colour", "sort"),
            ("revision=soon", "revision"),
        ] {
            let csv = export(admin.base(), OPERATOR_TOKEN, &format!("{path}?{query}")).await;
            assert_eq!(csv.status, 422, "{query}: {}", csv.body);
            assert!(csv.body.contains(field), "{query}: {}", csv.body);
        }
        let csv = export(admin.base(), OPERATOR_TOKEN, &format!("{path}?colour=red")).await;
        assert!(matches!(csv.status, 400 | 422), "{}", csv.body);
    }
}

/// The ids of a license export, checked to be in ascending id order.
fn exported_license_ids(body: &str) -> Vec<String> {
    let ids: Vec<String> = rows(body, &license_columns())
        .iter()
        .map(|r| r["license_id"].clone())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "id order");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_longer_than_a_chunk_and_a_client_that_goes_away_mid_export() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Large").await;
    let added: HashSet<String> = admin.add_licenses(&org, 2_500).await.into_iter().collect();
    let path = format!("/v1/organizations/{org}/licenses.csv");
    let csv = export(admin.base(), OPERATOR_TOKEN, &path).await;
    assert_eq!(csv.status, 200);
    let ids = exported_license_ids(&csv.body);
    assert_eq!(ids.len(), 2_500);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), added);

    // A client reads the head of the export and goes away.
    let address = admin.base().trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\n\
                 Authorization: Bearer {OPERATOR_TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let mut read = 0;
    while !String::from_utf8_lossy(&head[..read]).contains("license_id") {
        let n = socket.read(&mut head[read..]).await.unwrap();
        assert!(n > 0, "the export's first bytes");
        read += n;
    }
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"));
    drop(socket);

    // The server goes on: a write, then a whole export that sees it.
    let more = admin.add_licenses(&org, 1).await;
    let csv = export(admin.base(), OPERATOR_TOKEN, &path).await;
    assert_eq!(csv.status, 200);
    let ids = exported_license_ids(&csv.body);
    assert_eq!(ids.len(), 2_501);
    assert!(ids.contains(&more[0]));
}

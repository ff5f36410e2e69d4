//! `GET /v1/organizations/{org}/devices.csv` and `.../licenses.csv`: the fleet lists as CSV
//! (docs/admin-api.md, "CSV export").
//!
//! The body is streamed: the first chunk is read before answering (so that a bad filter or a
//! store error gets its status), then each further chunk is read only when the previous one has
//! been handed to the connection. A client that goes away drops the body and with it the
//! stream: no chunk is read after that.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use engine::ids::OrgId;
use engine::model::FleetRows;
use engine::query::{ExportChunk, ExportFleet, ExportRow};
use futures_util::stream::{self, StreamExt as _};

use super::routes::FleetParams;
use super::{ApiError, AppState, Auth, Ids, Params};

/// The byte order mark that tells spreadsheets the file is UTF-8.
const BOM: &str = "\u{feff}";

/// The columns, in the order of a device export; a license export moves the license's three to
/// the front.
const COLUMNS: [&str; 19] = [
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

/// The order of a license export's columns, as indexes into [`COLUMNS`].
const LICENSE_ORDER: [usize; 19] = [
    16, 17, 18, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
];
const DEVICE_ORDER: [usize; 19] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
];

pub(super) async fn devices_csv(
    state: State<AppState>,
    auth: Auth,
    org: Ids<OrgId>,
    params: Params<FleetParams>,
) -> Result<Response, ApiError> {
    export(state, auth, org, params, FleetRows::Devices).await
}

pub(super) async fn licenses_csv(
    state: State<AppState>,
    auth: Auth,
    org: Ids<OrgId>,
    params: Params<FleetParams>,
) -> Result<Response, ApiError> {
    export(state, auth, org, params, FleetRows::Licenses).await
}

async fn export(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(params): Params<FleetParams>,
    rows: FleetRows,
) -> Result<Response, ApiError> {
    if params.limit.is_some() {
        return Err(ApiError::invalid(
            "limit",
            "an export is the whole filtered list: no limit",
        ));
    }
    if params.cursor.is_some() {
        return Err(ApiError::invalid(
            "cursor",
            "an export is the whole filtered list: no cursor",
        ));
    }
    let (sort, descending) = params.sort()?;
    let query = ExportFleet {
        rows,
        filter: params.filter()?,
        sort,
        descending,
        after: None,
    };
    let first = state.engine.query(&principal, org, query.clone()).await?;
    let order = match rows {
        FleetRows::Devices => &DEVICE_ORDER,
        FleetRows::Licenses => &LICENSE_ORDER,
    };
    let what = match rows {
        FleetRows::Devices => "devices",
        FleetRows::Licenses => "licenses",
    };
    let date = first.at.to_rfc3339().chars().take(10).collect::<String>();
    let filename = format!("paird-{org}-{what}-{date}.csv");

    let mut head = String::from(BOM);
    write_record(&mut head, order.iter().map(|&index| COLUMNS[index]));
    let next = write_chunk(&mut head, &first, order);

    // Each further chunk is read when the body asks for it; none after the body is dropped.
    let engine = state.engine.clone();
    let rest = stream::unfold(next, move |cursor| {
        let engine = engine.clone();
        let query = query.clone();
        async move {
            let after = cursor?;
            let chunk = engine
                .query(
                    &principal,
                    org,
                    ExportFleet {
                        after: Some(after),
                        ..query
                    },
                )
                .await;
            match chunk {
                Ok(chunk) => {
                    let mut text = String::new();
                    let next = write_chunk(&mut text, &chunk, order);
                    Some((Ok(Bytes::from(text)), next))
                }
                Err(error) => {
                    // The status is sent: ending the body early is how the client learns.
                    tracing::warn!(%org, %error, "CSV export stopped");
                    Some((Err(std::io::Error::other("export stopped")), None))
                }
            }
        }
    });
    let body = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(rest);
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .map_err(|_| ApiError(engine::EngineError::Internal))?,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Writes the chunk's rows; returns where the next chunk starts.
fn write_chunk(out: &mut String, chunk: &ExportChunk, order: &[usize; 19]) -> Option<String> {
    for row in &chunk.rows {
        let fields = fields(row);
        write_record(out, order.iter().map(|&index| fields[index].as_str()));
    }
    chunk.next_cursor.clone()
}

/// A row's values, in the order of [`COLUMNS`].
fn fields(row: &ExportRow) -> [String; 19] {
    let device = row.device.as_ref();
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    let configuration = device.and_then(|d| d.configuration.as_ref());
    [
        text(device.map(|d| d.id.to_string()).as_deref()),
        text(device.map(|d| d.name.as_str())),
        text(device.and_then(|d| d.admin_name.as_deref())),
        text(device.and_then(|d| d.notes.as_deref())),
        text(device.map(|d| d.reported_name.as_str())),
        text(device.map(|d| d.model.as_str())),
        text(device.map(|d| d.os.as_str())),
        text(device.map(|d| d.app_version.as_str())),
        text(device.map(|d| if d.online { "true" } else { "false" })),
        text(device.map(|d| d.last_seen.to_rfc3339()).as_deref()),
        text(device.map(|d| d.paired_at.to_rfc3339()).as_deref()),
        text(configuration.map(|c| c.id.to_string()).as_deref()),
        text(configuration.map(|c| c.name.as_str())),
        text(row.revision.map(|r| r.as_str())),
        text(
            device
                .and_then(|d| d.paired_by_code)
                .map(|c| c.to_string())
                .as_deref(),
        ),
        text(row.paired_by_label.as_deref()),
        row.license.id.to_string(),
        row.license.status.as_str().to_string(),
        text(row.license.valid_until.map(|t| t.to_rfc3339()).as_deref()),
    ]
}

/// Writes one record (RFC 4180, CRLF).
fn write_record<'a>(out: &mut String, values: impl Iterator<Item = &'a str>) {
    for (index, value) in values.enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_field(out, value);
    }
    out.push_str("\r\n");
}

/// Writes one field: a value a spreadsheet would read as a formula (first character `=`, `+`,
/// `-`, `@`, tab or carriage return) gets a `'` in front; a value with a comma, a double quote,
/// a carriage return or a line feed is quoted, its double quotes doubled.
fn write_field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = value.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quoted {
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str) -> String {
        let mut out = String::new();
        write_field(&mut out, value);
        out
    }

    #[test]
    fn fields_are_quoted_and_formulas_escaped() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("@cmd"), "'@cmd");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(field("\rx"), "\"'\rx\"");
        assert_eq!(field("=1,2"), "\"'=1,2\"");
        assert_eq!(field("a=b"), "a=b");
    }
}

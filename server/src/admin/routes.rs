//! The admin API's routes and handlers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use engine::admin::{
    AddLicenses, AssignConfiguration, AssignConfigurationToFleet, ConfigureDevice,
    CreateConfiguration, CreateKey, CreateOrganization, CreateReusableCode, CreateSingleUseCode,
    CreateWebhook, DeleteConfiguration, DeleteWebhook, DismissWaiting, EditDevice, HaltRollout,
    MAX_IDS_PER_BULK_COMMAND, PinConfiguration, PromoteRollout, RenewLicense, RenewLicenses,
    ReplaceDevice, ReplayDelivery, RevertConfiguration, RevokeCode, RevokeKey, RevokeSingleUseCode,
    RolloutAudience, Selection, SetInactiveRelease, StageConfiguration, UnpairDevice,
    UnpairDevices, UpdateConfiguration,
};
use engine::ids::{CodeId, ConfigId, DeviceId, KeyId, LicenseId, OrgId, Timestamp, WebhookId};
use engine::model::{
    AuditFilter, CodeKind, CodeWithSecret, FleetFilter, FleetSort, LicenseStatus, PageRequest,
    RevisionState,
};
use engine::query::{
    DiffConfigurationRevisions, GetCode, GetConfiguration, GetConfigurationRevision,
    GetConfigurationRollout, GetDevice, GetInactiveRelease, GetLicense, GetLicenseSummary,
    GetNewDeviceConfiguration, GetOrganization, ListAudit, ListCodes, ListConfigurationRevisions,
    ListConfigurations, ListDeliveries, ListDevices, ListKeys, ListLicenses, ListWaiting,
    ListWebhooks, RevealCode,
};
use engine::store::FieldEdit;
use engine::{EngineError, Principal};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::route_table::RouteTable;
use super::{ApiError, AppState, Auth, Body, Ids, Params, created, idempotency_key, not_found};
use crate::qr;

type Result<T> = std::result::Result<T, ApiError>;

/// Largest request body: a 256 KiB configuration, JSON-escaped, fits with room to spare.
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

pub(crate) fn router(state: AppState, test_hooks: bool) -> Router {
    route_table(test_hooks)
        .into_router()
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state)
}

/// Every route of the admin API. Each one is documented in `openapi.rs` (one line each; its
/// test fails on a route left out).
pub(crate) fn route_table(test_hooks: bool) -> RouteTable {
    let org = "/v1/organizations/{org}";
    let mut router = RouteTable::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics::metrics))
        .route("/v1/openapi.json", get(super::openapi::serve))
        .route("/v1/status", get(status))
        .route("/v1/whoami", get(whoami))
        .route("/v1/configuration-template", get(template))
        .route("/v1/configuration-check", post(check_configuration))
        .route("/v1/audit", get(server_audit))
        .route(
            "/v1/operator-tokens",
            get(super::tokens::list_operator_tokens).post(super::tokens::create_operator_token),
        )
        .route(
            "/v1/operator-tokens/{token}",
            delete(super::tokens::revoke_operator_token),
        )
        .route(
            "/v1/organizations",
            post(create_organization).get(list_organizations),
        )
        .route(org, get(organization))
        .route(&format!("{org}/keys"), post(create_key).get(list_keys))
        .route(&format!("{org}/keys/{{key}}"), delete(revoke_key))
        .route(
            &format!("{org}/licenses"),
            post(add_licenses).get(list_licenses),
        )
        .route(&format!("{org}/licenses/summary"), get(license_summary))
        .route(&format!("{org}/licenses/renew"), post(renew_licenses))
        .route(
            &format!("{org}/licenses.csv"),
            get(super::export::licenses_csv),
        )
        .route(
            &format!("{org}/licenses/{{license}}"),
            get(license).patch(renew_license),
        )
        .route(
            &format!("{org}/licenses/{{license}}/single-use-code"),
            post(create_single_use_code).delete(revoke_single_use_code),
        )
        .route(&format!("{org}/codes"), post(create_code).get(list_codes))
        .route(&format!("{org}/codes/{{code}}"), get(code))
        .route(&format!("{org}/codes/{{code}}/reveal"), get(reveal_code))
        .route(&format!("{org}/codes/{{code}}/qr.svg"), get(code_svg))
        .route(&format!("{org}/codes/{{code}}/qr.png"), get(code_png))
        .route(&format!("{org}/codes/{{code}}/revoke"), post(revoke_code))
        .route(
            &format!("{org}/configurations"),
            post(create_configuration).get(list_configurations),
        )
        .route(
            &format!("{org}/configurations/{{config}}"),
            get(configuration)
                .put(update_configuration)
                .delete(delete_configuration),
        )
        .route(
            &format!("{org}/configurations/{{config}}/rollout"),
            get(configuration_rollout).post(stage_configuration),
        )
        .route(
            &format!("{org}/configurations/{{config}}/rollout/promote"),
            post(promote_rollout),
        )
        .route(
            &format!("{org}/configurations/{{config}}/rollout/halt"),
            post(halt_rollout),
        )
        .route(
            &format!("{org}/configurations/{{config}}/assign"),
            post(assign_configuration),
        )
        .route(
            &format!("{org}/new-device-configuration"),
            get(new_device_configuration).put(pin_configuration),
        )
        .route(
            &format!("{org}/inactive-release"),
            get(inactive_release).put(set_inactive_release),
        )
        .route(&format!("{org}/waiting"), get(list_waiting))
        .route(
            &format!("{org}/webhooks"),
            post(create_webhook).get(list_webhooks),
        )
        .route(
            &format!("{org}/webhooks/{{webhook}}"),
            delete(delete_webhook),
        )
        .route(
            &format!("{org}/webhooks/{{webhook}}/deliveries"),
            get(webhook_deliveries),
        )
        .route(
            &format!("{org}/webhooks/{{webhook}}/deliveries/{{delivery}}/replay"),
            post(replay_delivery),
        )
        .route(
            &format!("{org}/waiting/{{ticket}}"),
            delete(dismiss_waiting),
        )
        .route(
            &format!("{org}/configurations/{{config}}/revisions"),
            get(configuration_revisions),
        )
        .route(
            &format!("{org}/configurations/{{config}}/revisions/{{revision}}"),
            get(configuration_revision),
        )
        .route(
            &format!("{org}/configurations/{{config}}/revisions/{{revision}}/revert"),
            post(revert_configuration),
        )
        .route(
            &format!("{org}/configurations/{{config}}/diff"),
            get(configuration_diff),
        )
        .route(&format!("{org}/devices"), get(list_devices))
        .route(&format!("{org}/devices/unpair"), post(unpair_devices))
        .route(
            &format!("{org}/devices.csv"),
            get(super::export::devices_csv),
        )
        .route(
            &format!("{org}/devices/{{device}}"),
            get(device).patch(edit_device),
        )
        .route(
            &format!("{org}/devices/{{device}}/configuration"),
            put(assign_one),
        )
        .route(&format!("{org}/devices/{{device}}/unpair"), post(unpair))
        .route(
            &format!("{org}/devices/{{device}}/replace"),
            post(replace_device),
        )
        .route(&format!("{org}/audit"), get(org_audit))
        .route(&format!("{org}/events"), get(super::events::org_events));
    if test_hooks {
        router = router
            .route("/v1/test/clock/advance", post(advance_clock))
            .route("/v1/test/organizations/{org}/crash", post(crash_org))
            .route("/v1/test/sweep", post(sweep));
    }
    router
}

// --- common -------------------------------------------------------------------------------

/// `?limit=&cursor=` of a list.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

impl ListQuery {
    fn page(&self) -> PageRequest {
        page(self.limit, &self.cursor)
    }
}

fn page(limit: Option<u32>, cursor: &Option<String>) -> PageRequest {
    PageRequest {
        limit: limit.unwrap_or(0),
        after: cursor.clone(),
    }
}

/// The search, filters, sort and page of the license and device lists (docs/admin-api.md,
/// "Fleet lists").
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FleetParams {
    q: Option<String>,
    #[param(pattern = "^(free|reserved|assigned|expired)$")]
    status: Option<String>,
    #[param(pattern = "^(true|false)$")]
    online: Option<String>,
    #[param(format = DateTime)]
    not_seen_since: Option<String>,
    configuration: Option<String>,
    #[param(pattern = "^(up_to_date|pending|failed)$")]
    revision: Option<String>,
    app_version: Option<String>,
    code: Option<String>,
    #[param(pattern = "^-?(id|name|last_seen|paired_at|status)$")]
    sort: Option<String>,
    pub(super) limit: Option<u32>,
    pub(super) cursor: Option<String>,
}

/// The search and filters of a fleet list, or the `filter` of a bulk command's body: one type,
/// so that both are read and refused alike (a `422` naming the field). In a body, `online` may
/// also be a JSON boolean.
#[derive(Debug, Deserialize, Default, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetCriteria {
    q: Option<String>,
    #[schema(pattern = "^(free|reserved|assigned|expired)$")]
    status: Option<String>,
    #[serde(default, deserialize_with = "text_or_bool")]
    online: Option<String>,
    #[schema(format = DateTime)]
    not_seen_since: Option<String>,
    configuration: Option<String>,
    #[schema(pattern = "^(up_to_date|pending|failed)$")]
    revision: Option<String>,
    app_version: Option<String>,
    code: Option<String>,
}

/// A JSON string or boolean, as text.
fn text_or_bool<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrBool {
        Text(String),
        Bool(bool),
    }
    Ok(
        Option::<TextOrBool>::deserialize(deserializer)?.map(|value| match value {
            TextOrBool::Text(text) => text,
            TextOrBool::Bool(value) => value.to_string(),
        }),
    )
}

/// Longest search.
const MAX_SEARCH_BYTES: usize = 200;

impl FleetParams {
    pub(super) fn filter(&self) -> Result<FleetFilter> {
        FleetCriteria {
            q: self.q.clone(),
            status: self.status.clone(),
            online: self.online.clone(),
            not_seen_since: self.not_seen_since.clone(),
            configuration: self.configuration.clone(),
            revision: self.revision.clone(),
            app_version: self.app_version.clone(),
            code: self.code.clone(),
        }
        .filter()
    }

    /// The sort and whether it is descending.
    pub(super) fn sort(&self) -> Result<(FleetSort, bool)> {
        match self.sort.as_deref() {
            None => Ok((FleetSort::Id, false)),
            Some(text) => FleetSort::parse(text).ok_or_else(|| {
                ApiError::invalid(
                    "sort",
                    "id, name, last_seen, paired_at or status, with - first for descending",
                )
            }),
        }
    }
}

impl FleetCriteria {
    fn filter(&self) -> Result<FleetFilter> {
        let search = match self.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.len() > MAX_SEARCH_BYTES || text.contains('\0') => {
                return Err(ApiError::invalid(
                    "q",
                    format!("at most {MAX_SEARCH_BYTES} bytes of text"),
                ));
            }
            Some(text) => Some(text.to_string()),
        };
        let license_status = self
            .status
            .as_deref()
            .map(|text| {
                LicenseStatus::parse(text).ok_or_else(|| {
                    ApiError::invalid("status", "free, reserved, assigned or expired")
                })
            })
            .transpose()?;
        let not_seen_since = self
            .not_seen_since
            .as_deref()
            .map(|text| {
                Timestamp::parse_rfc3339(text)
                    .ok_or_else(|| ApiError::invalid("not_seen_since", "an RFC 3339 time"))
            })
            .transpose()?;
        let revision = self
            .revision
            .as_deref()
            .map(|text| {
                RevisionState::parse(text)
                    .ok_or_else(|| ApiError::invalid("revision", "up_to_date, pending or failed"))
            })
            .transpose()?;
        let online = match self.online.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::invalid("online", "true or false")),
        };
        Ok(FleetFilter {
            search,
            license_status,
            online,
            not_seen_since,
            configuration: parse_id(&self.configuration, "configuration", "a configuration id")?,
            revision,
            app_version: self.app_version.clone(),
            paired_by: parse_id(&self.code, "code", "a code id")?,
        })
    }
}

/// An id given as a query parameter, or `422` naming it.
fn parse_id<T: std::str::FromStr>(
    text: &Option<String>,
    field: &'static str,
    what: &str,
) -> Result<Option<T>> {
    text.as_deref()
        .map(|text| {
            text.trim()
                .parse()
                .map_err(|_| ApiError::invalid(field, what.to_string()))
        })
        .transpose()
}

/// What a bulk command changes, as its body says it: `ids` (under the field `ids_field`), a
/// `filter` with at least one criterion, or `"all": true`; exactly one of them (an empty
/// filter counts only with `"all": true`).
fn selection<Id>(
    ids: Option<Vec<Id>>,
    filter: Option<&FleetCriteria>,
    all: bool,
    ids_field: &'static str,
) -> Result<Selection<Id>> {
    let one_of = format!("{ids_field}, a filter with at least one criterion, or \"all\": true");
    if let Some(ids) = ids {
        if filter.is_some() || all {
            return Err(ApiError::invalid(ids_field, one_of));
        }
        if ids.is_empty() || ids.len() > MAX_IDS_PER_BULK_COMMAND {
            return Err(ApiError::invalid(
                ids_field,
                format!("from 1 to {MAX_IDS_PER_BULK_COMMAND} ids"),
            ));
        }
        return Ok(Selection::Ids(ids));
    }
    let filter = filter.map(FleetCriteria::filter).transpose()?;
    match filter {
        Some(filter) if !filter.is_empty() => Ok(Selection::Filter(filter)),
        _ if all => Ok(Selection::All),
        _ => Err(ApiError::invalid("filter", one_of)),
    }
}

/// `?kind=&limit=&cursor=` of the code list.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CodeQuery {
    #[param(pattern = "^(reusable|single_use)$")]
    kind: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `?action=&device=&from=&until=&limit=&cursor=` of the audit logs.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// One action or several, separated by commas.
    action: Option<String>,
    device: Option<String>,
    #[param(format = DateTime)]
    from: Option<String>,
    #[param(format = DateTime)]
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter> {
        let time = |field: &'static str, text: &Option<String>| {
            text.as_deref()
                .map(|text| {
                    Timestamp::parse_rfc3339(text).ok_or_else(|| {
                        ApiError::invalid(field, "an RFC 3339 time such as 2026-03-03T00:00:00Z")
                    })
                })
                .transpose()
        };
        Ok(AuditFilter {
            actions: self
                .action
                .as_deref()
                .map(|actions| {
                    actions
                        .split(',')
                        .map(|action| action.trim().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            device_id: self
                .device
                .as_deref()
                .map(|device| {
                    device
                        .trim()
                        .parse::<DeviceId>()
                        .map_err(|_| ApiError::invalid("device", "a device id"))
                })
                .transpose()?,
            from: time("from", &self.from)?,
            until: time("until", &self.until)?,
        })
    }

    fn page(&self) -> PageRequest {
        page(self.limit, &self.cursor)
    }
}

/// `?qr=png` adds the PNG (base64) to a code response.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct QrQuery {
    #[param(pattern = "^(svg|png)$")]
    qr: Option<String>,
}

impl QrQuery {
    fn with_png(&self) -> Result<bool> {
        match self.qr.as_deref() {
            None | Some("svg") => Ok(false),
            Some("png") => Ok(true),
            Some(_) => Err(ApiError::invalid("qr", "svg (default) or png")),
        }
    }
}

/// A code with everything needed to show it: the code, the payload URI and the QR.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct CodeResponse {
    #[serde(flatten)]
    code: CodeWithSecret,
    payload_uri: String,
    qr_svg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qr_png_base64: Option<String>,
}

fn code_response(state: &AppState, code: CodeWithSecret, with_png: bool) -> Result<CodeResponse> {
    let payload_uri = state.public.payload(&code.code)?;
    let qr_svg = qr::svg(&payload_uri, 256).map_err(|_| ApiError(EngineError::Internal))?;
    let qr_png_base64 = if with_png {
        let png = qr::png(&payload_uri, 512).map_err(|_| ApiError(EngineError::Internal))?;
        Some(base64::engine::general_purpose::STANDARD.encode(png))
    } else {
        None
    };
    Ok(CodeResponse {
        code,
        payload_uri,
        qr_svg,
        qr_png_base64,
    })
}

fn seconds(field: &'static str, value: Option<f64>) -> Result<Option<Duration>> {
    value
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| ApiError::invalid(field, "a non-negative number of seconds"))
        })
        .transpose()
}

// --- server ---------------------------------------------------------------------------------

async fn status(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> Result<Json<serde_json::Value>> {
    principal.require_operator("only the operator reads the server status")?;
    let stats = &state.endpoint.stats;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "now": state.engine.clock().now(),
        "device_endpoint": {
            "open_connections": stats.open_connections.load(Ordering::Relaxed),
            "accepted": stats.accepted.load(Ordering::Relaxed),
            "refused_handshakes": stats.refused_handshakes.load(Ordering::Relaxed),
            "accept_errors": stats.accept_errors.load(Ordering::Relaxed),
        },
        "engine": state.engine.metrics(),
    })))
}

/// The process is alive and serves HTTP. No token: for a load balancer or a supervisor.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "alive"}))
}

/// Whether new connections should come here: the listeners are up, the database answers
/// (within a second), and the server is not draining. 200 or 503, each check named. No token.
async fn readyz(State(state): State<AppState>) -> Response {
    // Set before the stop itself (`RunningServer::shutdown` drains first).
    let draining = state.draining.load(Ordering::Relaxed);
    let database =
        match tokio::time::timeout(Duration::from_secs(1), state.engine.store().ping()).await {
            Ok(Ok(())) => "ok",
            // The cause is logged, not told to whoever asks (no token here).
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: the database does not answer");
                "unreachable"
            }
            Err(_) => "no answer within 1 s",
        };
    let ready = !draining && database == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else if draining { "draining" } else { "not_ready" },
        "checks": {
            "listeners": if draining { "closing" } else { "up" },
            "database": database,
            "draining": draining,
        },
    });
    (status, Json(body)).into_response()
}

/// Who the token belongs to, and the server's clock (a client may use it to show times relative
/// to the server's, such as a code's remaining validity).
async fn whoami(
    State(state): State<AppState>,
    Auth(principal): Auth,
    client: Option<axum::Extension<super::listener::ClientAddress>>,
) -> Json<serde_json::Value> {
    let now = state.engine.clock().now();
    let client_address = client.map(|axum::Extension(address)| address.0.to_string());
    Json(match principal {
        Principal::OrgKey { org_id, key_id } => json!({
            "role": "organization_key",
            "organization_id": org_id,
            "key_id": key_id,
            "now": now,
            "client_address": client_address,
        }),
        Principal::Operator | Principal::System => {
            json!({ "role": "operator", "now": now, "client_address": client_address })
        }
    })
}

async fn template(Auth(_): Auth) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::SAMPLE_CONFIGURATION,
    )
        .into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckConfigurationBody {
    body: String,
}

/// Checks a configuration body the way a save would, and saves nothing: an editor calls it
/// to show the problems by line before the admin saves.
async fn check_configuration(
    Auth(_): Auth,
    Body(body): Body<CheckConfigurationBody>,
) -> Result<Response> {
    let report = engine::check_configuration_body(&body.body)?;
    Ok(Json(json!({
        "valid": report.is_valid(),
        "errors": report.errors().count(),
        "warnings": report.warnings().count(),
        "problems": super::problems_json(&report.problems),
        "problems_truncated": report.problems.len() > super::MAX_LISTED_PROBLEMS,
    }))
    .into_response())
}

async fn server_audit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Params(query): Params<AuditQuery>,
) -> Result<Response> {
    let page = state
        .engine
        .server_audit(&principal, &query.filter()?, &query.page())
        .await?;
    Ok(Json(page).into_response())
}

// --- organizations and keys ---------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NameBody {
    name: String,
}

async fn create_organization(
    State(state): State<AppState>,
    Auth(principal): Auth,
    headers: HeaderMap,
    Body(body): Body<NameBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = CreateOrganization { name: body.name };
    let org = state
        .engine
        .create_organization_with_key(&principal, command, key)
        .await?;
    Ok(created(org))
}

async fn list_organizations(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Params(query): Params<ListQuery>,
) -> Result<Response> {
    Ok(Json(
        state
            .engine
            .list_organizations(&principal, &query.page())
            .await?,
    )
    .into_response())
}

async fn organization(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    Ok(Json(state.engine.query(&principal, org, GetOrganization).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKeyBody {
    name: String,
    /// When it stops working (UTC); none: never.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
}

async fn create_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<CreateKeyBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = CreateKey {
        name: body.name,
        expires_at: body.expires_at,
    };
    Ok(created(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    let keys = state.engine.query(&principal, org, ListKeys).await?;
    Ok(Json(json!({ "items": keys, "next_cursor": null })).into_response())
}

/// The body of a new webhook.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateWebhookBody {
    /// `https://…` (or `http://` to a loopback address).
    url: String,
    /// The kinds of events it receives: `pairings`, `unpairings`, `no_free_license`,
    /// `rollout_halted`, `apply_failed`, `licenses_expiring`.
    events: Vec<String>,
    /// For `licenses_expiring`: licenses that end within this many days (1 to 90; default 7).
    expiring_within_days: Option<u32>,
}

async fn create_webhook(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<CreateWebhookBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = CreateWebhook {
        url: body.url,
        events: body.events,
        expiring_within_days: body
            .expiring_within_days
            .unwrap_or(engine::webhooks::EXPIRING_WITHIN_DAYS_DEFAULT),
    };
    Ok(created(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    ))
}

async fn list_webhooks(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    let webhooks = state.engine.query(&principal, org, ListWebhooks).await?;
    Ok(Json(json!({ "items": webhooks, "next_cursor": null })).into_response())
}

async fn delete_webhook(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, webhook)): Ids<(OrgId, WebhookId)>,
) -> Result<Response> {
    let command = DeleteWebhook {
        webhook_id: webhook,
    };
    state.engine.run(&principal, org, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn webhook_deliveries(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, webhook)): Ids<(OrgId, WebhookId)>,
    Params(query): Params<ListQuery>,
) -> Result<Response> {
    let query = ListDeliveries {
        webhook_id: webhook,
        page: query.page(),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn replay_delivery(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, webhook, delivery)): Ids<(OrgId, WebhookId, u64)>,
) -> Result<Response> {
    let command = ReplayDelivery {
        webhook_id: webhook,
        delivery_id: delivery,
    };
    state.engine.run(&principal, org, command).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn list_waiting(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(query): Params<ListQuery>,
) -> Result<Response> {
    let query = ListWaiting { page: query.page() };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn dismiss_waiting(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, ticket)): Ids<(OrgId, u64)>,
) -> Result<Response> {
    let command = DismissWaiting { ticket };
    state.engine.run(&principal, org, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, key)): Ids<(OrgId, KeyId)>,
) -> Result<Response> {
    let command = RevokeKey { key_id: key };
    state.engine.run(&principal, org, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- licenses -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddLicensesBody {
    count: u32,
    #[serde(default)]
    valid_until: Option<Timestamp>,
}

async fn add_licenses(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<AddLicensesBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = AddLicenses {
        count: body.count,
        valid_until: body.valid_until,
    };
    Ok(created(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    ))
}

async fn list_licenses(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(params): Params<FleetParams>,
) -> Result<Response> {
    let (sort, descending) = params.sort()?;
    let query = ListLicenses {
        filter: params.filter()?,
        sort,
        descending,
        page: page(params.limit, &params.cursor),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn license_summary(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    Ok(Json(
        state
            .engine
            .query(&principal, org, GetLicenseSummary)
            .await?,
    )
    .into_response())
}

async fn license(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, license)): Ids<(OrgId, LicenseId)>,
) -> Result<Response> {
    let query = GetLicense {
        license_id: license,
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

/// `valid_until` must be given: an RFC 3339 time, or `null` for no end (so that a forgotten
/// field never removes an end date by accident).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewBody {
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: serde_json::Value,
}

async fn renew_license(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, license)): Ids<(OrgId, LicenseId)>,
    Body(body): Body<RenewBody>,
) -> Result<Response> {
    let valid_until = match &body.valid_until {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(
            Timestamp::parse_rfc3339(text)
                .ok_or_else(|| ApiError::invalid("valid_until", "an RFC 3339 time or null"))?,
        ),
        _ => return Err(ApiError::invalid("valid_until", "an RFC 3339 time or null")),
    };
    let command = RenewLicense {
        license_id: license,
        valid_until,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

/// The end to renew to, and which licenses: `license_ids`, `filter` or `all`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewLicensesBody {
    #[schema(format = DateTime)]
    valid_until: String,
    license_ids: Option<Vec<LicenseId>>,
    filter: Option<FleetCriteria>,
    #[serde(default)]
    all: bool,
}

async fn renew_licenses(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<RenewLicensesBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let valid_until = Timestamp::parse_rfc3339(&body.valid_until)
        .ok_or_else(|| ApiError::invalid("valid_until", "an RFC 3339 time"))?;
    let command = RenewLicenses {
        valid_until,
        selection: selection(
            body.license_ids,
            body.filter.as_ref(),
            body.all,
            "license_ids",
        )?,
    };
    Ok(Json(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    )
    .into_response())
}

// --- codes ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateCodeBody {
    validity_seconds: Option<f64>,
    max_uses: Option<u32>,
    label: Option<String>,
    /// Devices paired with the code get this configuration instead of the organization's for
    /// new devices.
    configuration_id: Option<ConfigId>,
}

async fn create_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(qr_query): Params<QrQuery>,
    headers: HeaderMap,
    Body(body): Body<CreateCodeBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = CreateReusableCode::new(
        seconds("validity_seconds", body.validity_seconds)?,
        body.max_uses,
        body.label,
    )
    .with_configuration(body.configuration_id);
    let code = state
        .engine
        .run_with_key(&principal, org, command, key)
        .await?;
    Ok(created(code_response(&state, code, qr_query.with_png()?)?))
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SingleUseBody {
    validity_seconds: Option<f64>,
}

async fn create_single_use_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, license)): Ids<(OrgId, LicenseId)>,
    Params(qr_query): Params<QrQuery>,
    headers: HeaderMap,
    Body(body): Body<SingleUseBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command =
        CreateSingleUseCode::new(license, seconds("validity_seconds", body.validity_seconds)?);
    let code = state
        .engine
        .run_with_key(&principal, org, command, key)
        .await?;
    Ok(created(code_response(&state, code, qr_query.with_png()?)?))
}

async fn replace_device(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, device)): Ids<(OrgId, DeviceId)>,
    Params(qr_query): Params<QrQuery>,
    headers: HeaderMap,
    Body(body): Body<SingleUseBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let validity = seconds("validity_seconds", body.validity_seconds)?;
    let command = ReplaceDevice::new(device, validity);
    let code = state
        .engine
        .run_with_key(&principal, org, command, key)
        .await?;
    Ok(created(code_response(&state, code, qr_query.with_png()?)?))
}

async fn revoke_single_use_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, license)): Ids<(OrgId, LicenseId)>,
) -> Result<Response> {
    let command = RevokeSingleUseCode {
        license_id: license,
    };
    let revoked = state.engine.run(&principal, org, command).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}

async fn list_codes(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(query): Params<CodeQuery>,
) -> Result<Response> {
    let kind = match query.kind.as_deref() {
        None => None,
        Some(text) => Some(
            CodeKind::parse(text)
                .ok_or_else(|| ApiError::invalid("kind", "reusable or single_use"))?,
        ),
    };
    let query = ListCodes {
        kind,
        page: page(query.limit, &query.cursor),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, code)): Ids<(OrgId, CodeId)>,
) -> Result<Response> {
    let query = GetCode { code_id: code };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn reveal_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, code)): Ids<(OrgId, CodeId)>,
    Params(qr_query): Params<QrQuery>,
) -> Result<Response> {
    let query = RevealCode { code_id: code };
    let code = state.engine.query(&principal, org, query).await?;
    Ok(Json(code_response(&state, code, qr_query.with_png()?)?).into_response())
}

async fn code_svg(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, code)): Ids<(OrgId, CodeId)>,
) -> Result<Response> {
    let query = RevealCode { code_id: code };
    let code = state.engine.query(&principal, org, query).await?;
    let payload = state.public.payload(&code.code)?;
    let svg = qr::svg(&payload, 256).map_err(|_| ApiError(EngineError::Internal))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn code_png(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, code)): Ids<(OrgId, CodeId)>,
) -> Result<Response> {
    let query = RevealCode { code_id: code };
    let code = state.engine.query(&principal, org, query).await?;
    let payload = state.public.payload(&code.code)?;
    let png = qr::png(&payload, 512).map_err(|_| ApiError(EngineError::Internal))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

async fn revoke_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, code)): Ids<(OrgId, CodeId)>,
) -> Result<Response> {
    let command = RevokeCode { code_id: code };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

// --- configurations -------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateConfigurationBody {
    name: String,
    body: String,
}

async fn create_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<CreateConfigurationBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = CreateConfiguration {
        name: body.name,
        body: body.body,
    };
    Ok(created(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    ))
}

async fn list_configurations(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(query): Params<ListQuery>,
) -> Result<Response> {
    let query = ListConfigurations { page: query.page() };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
) -> Result<Response> {
    let query = GetConfiguration { config_id: config };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn configuration_rollout(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
) -> Result<Response> {
    let query = GetConfigurationRollout { config_id: config };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

/// The body of a staged rollout: the new revision's body, and which devices run it first
/// (`share_percent` or `device_ids`, one of them).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StageConfigurationBody {
    body: String,
    /// Refuse unless the configuration's latest revision is this one.
    if_revision: Option<u64>,
    /// This share of the configuration's active devices, in percent (1 to 100), at random.
    share_percent: Option<u8>,
    /// Or these devices, each an active device assigned the configuration.
    device_ids: Option<Vec<DeviceId>>,
    /// Promote by itself this long after the start (60 s to 90 days) unless halted; absent or
    /// null: only an admin promotes it.
    promote_after_seconds: Option<u64>,
    /// More devices failing to apply the revision than this halt the rollout (default 0: the
    /// first failure halts it).
    max_failures: Option<u64>,
}

async fn stage_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
    headers: HeaderMap,
    Body(body): Body<StageConfigurationBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let audience = match (body.share_percent, body.device_ids) {
        (Some(share), None) => RolloutAudience::Share(share),
        (None, Some(device_ids)) => RolloutAudience::Devices(device_ids),
        _ => {
            return Err(ApiError::invalid(
                "share_percent",
                "share_percent or device_ids, one of them",
            ));
        }
    };
    let command = StageConfiguration {
        config_id: config,
        body: body.body,
        if_revision: body.if_revision,
        audience,
        promote_after_seconds: body.promote_after_seconds,
        max_failures: body.max_failures.unwrap_or(0),
    };
    Ok(created(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    ))
}

async fn promote_rollout(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
) -> Result<Response> {
    let command = PromoteRollout { config_id: config };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn halt_rollout(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
) -> Result<Response> {
    let command = HaltRollout { config_id: config };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateConfigurationBody {
    name: Option<String>,
    body: Option<String>,
    if_revision: Option<u64>,
}

async fn update_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
    Body(body): Body<UpdateConfigurationBody>,
) -> Result<Response> {
    let command = UpdateConfiguration {
        config_id: config,
        name: body.name,
        body: body.body,
        if_revision: body.if_revision,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn delete_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
) -> Result<Response> {
    let command = DeleteConfiguration { config_id: config };
    state.engine.run(&principal, org, command).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn new_device_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    let answer = state
        .engine
        .query(&principal, org, GetNewDeviceConfiguration)
        .await?;
    Ok(Json(answer).into_response())
}

/// The body of a pin: the configuration new devices get from now on; `null` unpins.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PinBody {
    configuration_id: Option<ConfigId>,
}

async fn pin_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Body(body): Body<PinBody>,
) -> Result<Response> {
    let command = PinConfiguration {
        config_id: body.configuration_id,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn inactive_release(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    let answer = state
        .engine
        .query(&principal, org, GetInactiveRelease)
        .await?;
    Ok(Json(answer).into_response())
}

/// The body of the inactive-release setting: days an offline device may go unseen before its
/// license is released; `null` turns the release off.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InactiveReleaseBody {
    after_days: Option<u32>,
}

async fn set_inactive_release(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Body(body): Body<InactiveReleaseBody>,
) -> Result<Response> {
    let command = SetInactiveRelease {
        after_days: body.after_days,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn configuration_revisions(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
    Params(query): Params<ListQuery>,
) -> Result<Response> {
    let query = ListConfigurationRevisions {
        config_id: config,
        page: query.page(),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn configuration_revision(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config, revision)): Ids<(OrgId, ConfigId, u64)>,
) -> Result<Response> {
    let query = GetConfigurationRevision {
        config_id: config,
        revision,
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

/// The body of a revert: optionally, the revision the configuration must be at.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevertBody {
    if_revision: Option<u64>,
}

async fn revert_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config, revision)): Ids<(OrgId, ConfigId, u64)>,
    Body(body): Body<RevertBody>,
) -> Result<Response> {
    let command = RevertConfiguration {
        config_id: config,
        revision,
        if_revision: body.if_revision,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

/// `?from=&to=` of a diff: two revision numbers.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DiffQuery {
    /// The older side (any revision of the configuration).
    from: u64,
    /// The newer side.
    to: u64,
}

async fn configuration_diff(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
    Params(query): Params<DiffQuery>,
) -> Result<Response> {
    let query = DiffConfigurationRevisions {
        config_id: config,
        from: query.from,
        to: query.to,
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

/// A bulk command's selection of devices: `device_ids`, `filter` or `all`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DevicesBody {
    device_ids: Option<Vec<DeviceId>>,
    filter: Option<FleetCriteria>,
    #[serde(default)]
    all: bool,
}

async fn assign_configuration(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, config)): Ids<(OrgId, ConfigId)>,
    headers: HeaderMap,
    Body(body): Body<DevicesBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    if let Some(device_ids) = body.device_ids {
        if body.filter.is_some() || body.all {
            return Err(ApiError::invalid(
                "device_ids",
                "device_ids, a filter with at least one criterion, or \"all\": true",
            ));
        }
        // The list form: all of the devices or none (404 if one is not the organization's).
        let command = AssignConfiguration {
            config_id: config,
            device_ids,
        };
        let reply = state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?;
        let count = reply.device_ids.len();
        return Ok(Json(json!({
            "configuration_id": reply.configuration_id,
            "device_ids": reply.device_ids,
            "matched": count,
            "assigned": count,
        }))
        .into_response());
    }
    let command = AssignConfigurationToFleet {
        config_id: config,
        selection: selection(None, body.filter.as_ref(), body.all, "device_ids")?,
    };
    Ok(Json(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    )
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignOneBody {
    configuration_id: ConfigId,
}

async fn assign_one(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, device)): Ids<(OrgId, DeviceId)>,
    Body(body): Body<AssignOneBody>,
) -> Result<Response> {
    let command = ConfigureDevice {
        device_id: device,
        config_id: body.configuration_id,
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

// --- devices and audit ----------------------------------------------------------------------

async fn list_devices(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(params): Params<FleetParams>,
) -> Result<Response> {
    let (sort, descending) = params.sort()?;
    let query = ListDevices {
        filter: params.filter()?,
        sort,
        descending,
        page: page(params.limit, &params.cursor),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

async fn device(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, device)): Ids<(OrgId, DeviceId)>,
) -> Result<Response> {
    let query = GetDevice { device_id: device };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

/// `name` and `notes` each: absent leaves it, `null` empties it, a string sets it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EditDeviceBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    notes: Option<Option<String>>,
}

/// A field that is present in the body: `Some(None)` for `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn field_edit(field: Option<Option<String>>) -> FieldEdit<String> {
    match field {
        None => FieldEdit::Unchanged,
        Some(None) => FieldEdit::Cleared,
        Some(Some(value)) => FieldEdit::Set(value),
    }
}

async fn edit_device(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, device)): Ids<(OrgId, DeviceId)>,
    Body(body): Body<EditDeviceBody>,
) -> Result<Response> {
    let command = EditDevice {
        device_id: device,
        name: field_edit(body.name),
        notes: field_edit(body.notes),
    };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn unpair(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids((org, device)): Ids<(OrgId, DeviceId)>,
) -> Result<Response> {
    let command = UnpairDevice { device_id: device };
    Ok(Json(state.engine.run(&principal, org, command).await?).into_response())
}

async fn unpair_devices(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    headers: HeaderMap,
    Body(body): Body<DevicesBody>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let command = UnpairDevices {
        selection: selection(
            body.device_ids,
            body.filter.as_ref(),
            body.all,
            "device_ids",
        )?,
    };
    Ok(Json(
        state
            .engine
            .run_with_key(&principal, org, command, key)
            .await?,
    )
    .into_response())
}

async fn org_audit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
    Params(query): Params<AuditQuery>,
) -> Result<Response> {
    let query = ListAudit {
        filter: query.filter()?,
        page: query.page(),
    };
    Ok(Json(state.engine.query(&principal, org, query).await?).into_response())
}

// --- test hooks -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance_clock(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Body(body): Body<AdvanceBody>,
) -> Result<Response> {
    require_test_operator(&principal)?;
    let clock = state
        .manual_clock
        .as_ref()
        .ok_or(ApiError(EngineError::NotFound("manual clock")))?;
    let by = seconds("seconds", Some(body.seconds))?.unwrap_or_default();
    let now = clock.advance(by);
    Ok(Json(json!({ "now": now })).into_response())
}

async fn crash_org(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response> {
    require_test_operator(&principal)?;
    state.engine.crash_org_actor(org).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn sweep(State(state): State<AppState>, Auth(principal): Auth) -> Result<Response> {
    require_test_operator(&principal)?;
    let swept = state.engine.sweep_expired().await;
    let answer = json!({
        "ended": swept.expired,
        "released_inactive": swept.released_inactive,
        "rollouts_promoted": swept.rollouts.promoted,
        "rollouts_halted": swept.rollouts.halted,
    });
    Ok(Json(answer).into_response())
}

fn require_test_operator(principal: &Principal) -> Result<()> {
    principal
        .require_operator("only the operator uses test hooks")
        .map_err(ApiError)
}

// --- extractors alone, for the fuzz targets -------------------------------------------------

/// Declares every request body type and query string type of the admin API once: the router
/// below and the lists of their names come from the same list.
macro_rules! extractor_routes {
    (bodies: [$($body:ty),* $(,)?], queries: [$($query:ty),* $(,)?] $(,)?) => {
        /// The names of the body types, in route order (`/body/<name>`).
        #[cfg(any(test, feature = "fuzzing"))]
        pub(crate) const BODY_TYPES: &[&str] = &[$(stringify!($body)),*];
        /// The names of the query string types, in route order (`/query/<name>`).
        #[cfg(any(test, feature = "fuzzing"))]
        pub(crate) const QUERY_TYPES: &[&str] = &[$(stringify!($query)),*];

        /// A router with one route per body type (`POST /body/<name>`) and per query string
        /// type (`GET /query/<name>`) that only runs the API's extractor for it ([`Body`],
        /// [`Params`]) with the API's body limit and answers 204 when it accepts: the real
        /// extraction and rejection mapping without a database behind them, for the fuzz targets
        /// (`fuzz/`) and their tests.
        #[cfg(any(test, feature = "fuzzing"))]
        pub(crate) fn extractor_router() -> axum::Router {
            axum::Router::new()
                $(.route(
                    concat!("/body/", stringify!($body)),
                    post(|Body(_): Body<$body>| async { StatusCode::NO_CONTENT }),
                ))*
                $(.route(
                    concat!("/query/", stringify!($query)),
                    get(|Params(_): Params<$query>| async { StatusCode::NO_CONTENT }),
                ))*
                .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        }
    };
}

#[cfg(any(test, feature = "fuzzing"))]
use super::tokens::CreateOperatorTokenBody;

extractor_routes! {
    bodies: [
        AddLicensesBody, AdvanceBody, AssignOneBody, CheckConfigurationBody, CreateCodeBody,
        CreateConfigurationBody, CreateKeyBody, CreateOperatorTokenBody,
        CreateWebhookBody, DevicesBody, EditDeviceBody, InactiveReleaseBody, NameBody, PinBody,
        RenewBody, RenewLicensesBody, RevertBody, SingleUseBody, StageConfigurationBody,
        UpdateConfigurationBody,
    ],
    queries: [AuditQuery, CodeQuery, DiffQuery, FleetParams, ListQuery, QrQuery]
}

#[cfg(test)]
mod extractor_tests {
    /// Every `Body<…>` and `Params<…>` of the admin API is in the fuzzed list: a new body type
    /// left out of `extractor_routes!` fails here.
    #[test]
    fn every_body_and_query_type_is_fuzzed() {
        let sources = [
            include_str!("routes.rs"),
            include_str!("tokens.rs"),
            include_str!("export.rs"),
            include_str!("events.rs"),
        ];
        for (marker, listed) in [
            ("Body<", super::BODY_TYPES),
            ("Params<", super::QUERY_TYPES),
        ] {
            for source in sources {
                for (_, after) in source
                    .match_indices(marker)
                    .map(|(at, _)| source.split_at(at))
                {
                    let name: String = after[marker.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name.is_empty() || name == "T" || name.starts_with('$') {
                        continue;
                    }
                    assert!(
                        listed.contains(&name.as_str()),
                        "{marker}{name}> is not in extractor_routes!"
                    );
                }
            }
        }
    }
}

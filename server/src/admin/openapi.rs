//! The admin API's OpenAPI 3.1 document, built from the code: the request bodies, query
//! parameters and answers are the handlers' and the engine's own types (`utoipa::ToSchema`,
//! `utoipa::IntoParams`), and [`operations`] names each route once, one line per method.
//!
//! It is served at `GET /v1/openapi.json` (no token: it holds no secret and describes only
//! what docs/admin-api.md already says) and committed as `docs/openapi.json`. The tests below
//! fail when the committed file differs from what the code builds (`PAIRD_BLESS=1 cargo test
//! -p server --lib openapi` writes it again) and when a route of [`super::routes::route_table`]
//! is missing here; `server/tests/blackbox/openapi.rs` checks the methods of every path against
//! the live server.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use engine::admin::{AddedLicenses, CreatedKey, RenewedLicenses, UnpairedDevice, UnpairedDevices};
use engine::model::{
    AuditEntry, CodeInfo, Configuration, ConfigurationDiff, ConfigurationRevision,
    ConfigurationRollout, CountedPage, CreatedWebhook, Device, InactiveRelease, License,
    LicenseSummary, LicenseWithDevice, NewDeviceConfiguration, OrgKeyInfo, Organization, Page,
    StagedRollout, WaitingDevice, Webhook, WebhookDelivery,
};
use serde::Serialize;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::{IntoParams, ToSchema};

use super::routes::{
    AddLicensesBody, AssignOneBody, AuditQuery, CheckConfigurationBody, CodeQuery, CodeResponse,
    CreateCodeBody, CreateConfigurationBody, CreateWebhookBody, DevicesBody, DiffQuery,
    EditDeviceBody, FleetParams, InactiveReleaseBody, ListQuery, NameBody, PinBody, QrQuery,
    RenewBody, RenewLicensesBody, RevertBody, SingleUseBody, StageConfigurationBody,
    UpdateConfigurationBody,
};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No token (health checks, this document).
    Public,
    /// The operator token only.
    Operator,
    /// The operator token or the organization's key.
    Either,
    /// The operator token, the metrics token, or none from an allowed address (`/metrics`).
    Metrics,
}

/// Every operation of the admin API: one line per route and method. Adding a route to
/// `routes.rs` adds its line here (the tests name a route that has none).
fn operations() -> Vec<Op> {
    use Access::{Either, Metrics, Operator, Public};
    use HttpMethod::{Delete, Get, Patch, Post, Put};
    let org = "/v1/organizations/{org}";
    let at = |rest: &str| format!("{org}{rest}");
    vec![
        // Server.
        Op::new(Get, "/healthz", "healthz", Public, "The process is alive").json::<Health>(200),
        Op::new(
            Get,
            "/readyz",
            "readyz",
            Public,
            "Whether new connections should come here",
        )
        .json::<Readiness>(200)
        .json::<Readiness>(503),
        Op::new(Get, "/v1/openapi.json", "openapi", Public, "This document").any_json(200),
        Op::new(
            Get,
            "/metrics",
            "metrics",
            Metrics,
            "Prometheus metrics (text exposition format 0.0.4)",
        )
        .text(200, "text/plain"),
        Op::new(Get, "/v1/status", "status", Operator, "The server's status").any_json(200),
        Op::new(
            Get,
            "/v1/operator-tokens",
            "list_operator_tokens",
            Operator,
            "The operator tokens (never the tokens themselves)",
        )
        .json::<Page<engine::model::OperatorTokenInfo>>(200),
        Op::new(
            Post,
            "/v1/operator-tokens",
            "create_operator_token",
            Operator,
            "Create an operator token (shown this once)",
        )
        .body::<super::tokens::CreateOperatorTokenBody>()
        .json::<engine::admin::CreatedOperatorToken>(201),
        Op::new(
            Delete,
            "/v1/operator-tokens/{token}",
            "revoke_operator_token",
            Operator,
            "Revoke an operator token (not the last one)",
        )
        .nothing(204),
        Op::new(
            Get,
            "/v1/whoami",
            "whoami",
            Either,
            "Who the token belongs to",
        )
        .json::<WhoAmI>(200),
        Op::new(
            Get,
            "/v1/configuration-template",
            "configuration_template",
            Either,
            "A sample configuration body",
        )
        .text(200, "text/plain"),
        Op::new(
            Post,
            "/v1/configuration-check",
            "check_configuration",
            Either,
            "Check a configuration body",
        )
        .body::<CheckConfigurationBody>()
        .json::<ConfigurationCheck>(200),
        Op::new(
            Get,
            "/v1/audit",
            "server_audit",
            Operator,
            "The server-wide audit log",
        )
        .query::<AuditQuery>()
        .json::<Page<AuditEntry>>(200),
        // Organizations and keys.
        Op::new(
            Post,
            "/v1/organizations",
            "create_organization",
            Operator,
            "Create an organization",
        )
        .idempotent()
        .body::<NameBody>()
        .json::<Organization>(201),
        Op::new(
            Get,
            "/v1/organizations",
            "list_organizations",
            Operator,
            "List organizations",
        )
        .query::<ListQuery>()
        .json::<Page<Organization>>(200),
        Op::new(Get, org, "get_organization", Either, "An organization").json::<Organization>(200),
        Op::new(
            Post,
            at("/keys"),
            "create_key",
            Either,
            "Create an organization key",
        )
        .idempotent()
        .body::<super::routes::CreateKeyBody>()
        .json::<CreatedKey>(201),
        Op::new(
            Post,
            at("/webhooks"),
            "create_webhook",
            Either,
            "Register an endpoint for chosen kinds of events",
        )
        .idempotent()
        .body::<CreateWebhookBody>()
        .json::<CreatedWebhook>(201),
        Op::new(
            Get,
            at("/webhooks"),
            "list_webhooks",
            Either,
            "The organization's webhooks",
        )
        .json::<Page<Webhook>>(200),
        Op::new(
            Delete,
            at("/webhooks/{webhook}"),
            "delete_webhook",
            Either,
            "Stop sending to a webhook",
        )
        .nothing(204),
        Op::new(
            Get,
            at("/webhooks/{webhook}/deliveries"),
            "list_webhook_deliveries",
            Either,
            "A webhook's deliveries and their outcomes, newest first",
        )
        .query::<ListQuery>()
        .json::<Page<WebhookDelivery>>(200),
        Op::new(
            Post,
            at("/webhooks/{webhook}/deliveries/{delivery}/replay"),
            "replay_webhook_delivery",
            Either,
            "Send a delivery again",
        )
        .nothing(202),
        Op::new(
            Get,
            at("/waiting"),
            "list_waiting",
            Either,
            "Devices waiting for a license, in the order they are served",
        )
        .query::<ListQuery>()
        .json::<Page<WaitingDevice>>(200),
        Op::new(
            Delete,
            at("/waiting/{ticket}"),
            "dismiss_waiting",
            Either,
            "Take a device out of the line (it is refused dismissed)",
        )
        .nothing(204),
        Op::new(
            Get,
            at("/keys"),
            "list_keys",
            Either,
            "The organization's keys",
        )
        .json::<Page<OrgKeyInfo>>(200),
        Op::new(
            Delete,
            at("/keys/{key}"),
            "revoke_key",
            Either,
            "Revoke a key",
        )
        .nothing(204),
        // Licenses.
        Op::new(
            Post,
            at("/licenses"),
            "add_licenses",
            Operator,
            "Add licenses",
        )
        .idempotent()
        .body::<AddLicensesBody>()
        .json::<AddedLicenses>(201),
        Op::new(
            Get,
            at("/licenses"),
            "list_licenses",
            Either,
            "The fleet list of licenses",
        )
        .query::<FleetParams>()
        .json::<CountedPage<LicenseWithDevice>>(200),
        Op::new(
            Get,
            at("/licenses/summary"),
            "license_summary",
            Either,
            "License counts by status",
        )
        .json::<LicenseSummary>(200),
        Op::new(
            Post,
            at("/licenses/renew"),
            "renew_licenses",
            Operator,
            "Renew licenses in bulk",
        )
        .idempotent()
        .body::<RenewLicensesBody>()
        .json::<RenewedLicenses>(200),
        Op::new(
            Get,
            at("/licenses.csv"),
            "licenses_csv",
            Either,
            "Export the licenses as CSV",
        )
        .query::<FleetParams>()
        .text(200, "text/csv"),
        Op::new(
            Get,
            at("/licenses/{license}"),
            "get_license",
            Either,
            "A license",
        )
        .json::<License>(200),
        Op::new(
            Patch,
            at("/licenses/{license}"),
            "renew_license",
            Operator,
            "Renew one license",
        )
        .body::<RenewBody>()
        .json::<License>(200),
        Op::new(
            Post,
            at("/licenses/{license}/single-use-code"),
            "create_single_use_code",
            Either,
            "Create a single-use code",
        )
        .idempotent()
        .query::<QrQuery>()
        .body::<SingleUseBody>()
        .json::<CodeResponse>(201),
        Op::new(
            Delete,
            at("/licenses/{license}/single-use-code"),
            "revoke_single_use_code",
            Either,
            "Revoke a license's single-use codes",
        )
        .json::<Revoked>(200),
        // Codes.
        Op::new(
            Post,
            at("/codes"),
            "create_code",
            Either,
            "Create a reusable code",
        )
        .idempotent()
        .query::<QrQuery>()
        .body::<CreateCodeBody>()
        .json::<CodeResponse>(201),
        Op::new(
            Get,
            at("/codes"),
            "list_codes",
            Either,
            "The organization's codes",
        )
        .query::<CodeQuery>()
        .json::<Page<CodeInfo>>(200),
        Op::new(
            Get,
            at("/codes/{code}"),
            "get_code",
            Either,
            "A code, without its secret",
        )
        .json::<CodeInfo>(200),
        Op::new(
            Get,
            at("/codes/{code}/reveal"),
            "reveal_code",
            Either,
            "A reusable code with its secret and QR",
        )
        .query::<QrQuery>()
        .json::<CodeResponse>(200),
        Op::new(
            Get,
            at("/codes/{code}/qr.svg"),
            "code_svg",
            Either,
            "A code's QR as SVG",
        )
        .text(200, "image/svg+xml"),
        Op::new(
            Get,
            at("/codes/{code}/qr.png"),
            "code_png",
            Either,
            "A code's QR as PNG",
        )
        .binary(200, "image/png"),
        Op::new(
            Post,
            at("/codes/{code}/revoke"),
            "revoke_code",
            Either,
            "Revoke a code",
        )
        .json::<CodeInfo>(200),
        // Configurations.
        Op::new(
            Post,
            at("/configurations"),
            "create_configuration",
            Either,
            "Create a configuration",
        )
        .idempotent()
        .body::<CreateConfigurationBody>()
        .json::<Configuration>(201),
        Op::new(
            Get,
            at("/configurations"),
            "list_configurations",
            Either,
            "The organization's configurations",
        )
        .query::<ListQuery>()
        .json::<Page<Configuration>>(200),
        Op::new(
            Get,
            at("/configurations/{config}"),
            "get_configuration",
            Either,
            "A configuration with its body",
        )
        .json::<Configuration>(200),
        Op::new(
            Put,
            at("/configurations/{config}"),
            "update_configuration",
            Either,
            "Edit a configuration",
        )
        .body::<UpdateConfigurationBody>()
        .json::<Configuration>(200),
        Op::new(
            Delete,
            at("/configurations/{config}"),
            "delete_configuration",
            Either,
            "Delete an unused configuration",
        )
        .nothing(204),
        Op::new(
            Get,
            at("/configurations/{config}/rollout"),
            "configuration_rollout",
            Either,
            "How its revisions reached the devices",
        )
        .json::<ConfigurationRollout>(200),
        Op::new(
            Post,
            at("/configurations/{config}/rollout"),
            "stage_configuration",
            Either,
            "Save an edit that a share or a set of its devices run first",
        )
        .idempotent()
        .body::<StageConfigurationBody>()
        .json::<StagedRollout>(201),
        Op::new(
            Post,
            at("/configurations/{config}/rollout/promote"),
            "promote_rollout",
            Either,
            "Give the staged revision to every device",
        )
        .json::<StagedRollout>(200),
        Op::new(
            Post,
            at("/configurations/{config}/rollout/halt"),
            "halt_rollout",
            Either,
            "Stop the staged rollout from promoting itself",
        )
        .json::<StagedRollout>(200),
        Op::new(
            Post,
            at("/configurations/{config}/assign"),
            "assign_configuration",
            Either,
            "Assign it to devices",
        )
        .idempotent()
        .body::<DevicesBody>()
        .json::<Assigned>(200),
        Op::new(
            Get,
            at("/new-device-configuration"),
            "get_new_device_configuration",
            Either,
            "Which configuration new devices get, and why",
        )
        .json::<NewDeviceConfiguration>(200),
        Op::new(
            Put,
            at("/new-device-configuration"),
            "pin_configuration",
            Either,
            "Pin the configuration new devices get, or unpin",
        )
        .body::<PinBody>()
        .json::<NewDeviceConfiguration>(200),
        Op::new(
            Get,
            at("/inactive-release"),
            "get_inactive_release",
            Either,
            "After how many days unseen a device's license is released",
        )
        .json::<InactiveRelease>(200),
        Op::new(
            Put,
            at("/inactive-release"),
            "set_inactive_release",
            Either,
            "Release the licenses of devices unseen for N days, or stop",
        )
        .body::<InactiveReleaseBody>()
        .json::<InactiveRelease>(200),
        Op::new(
            Get,
            at("/configurations/{config}/revisions"),
            "list_configuration_revisions",
            Either,
            "Its history: every revision, newest first",
        )
        .query::<ListQuery>()
        .json::<Page<ConfigurationRevision>>(200),
        Op::new(
            Get,
            at("/configurations/{config}/revisions/{revision}"),
            "get_configuration_revision",
            Either,
            "One revision with its body",
        )
        .json::<ConfigurationRevision>(200),
        Op::new(
            Post,
            at("/configurations/{config}/revisions/{revision}/revert"),
            "revert_configuration",
            Either,
            "Save that revision's body as a new revision",
        )
        .body::<RevertBody>()
        .json::<Configuration>(200),
        Op::new(
            Get,
            at("/configurations/{config}/diff"),
            "diff_configuration_revisions",
            Either,
            "What changed between two revisions",
        )
        .query::<DiffQuery>()
        .json::<ConfigurationDiff>(200),
        // Devices and audit.
        Op::new(
            Get,
            at("/devices"),
            "list_devices",
            Either,
            "The fleet list of devices",
        )
        .query::<FleetParams>()
        .json::<CountedPage<Device>>(200),
        Op::new(
            Post,
            at("/devices/unpair"),
            "unpair_devices",
            Either,
            "Unpair devices in bulk",
        )
        .idempotent()
        .body::<DevicesBody>()
        .json::<UnpairedDevices>(200),
        Op::new(
            Get,
            at("/devices.csv"),
            "devices_csv",
            Either,
            "Export the devices as CSV",
        )
        .query::<FleetParams>()
        .text(200, "text/csv"),
        Op::new(
            Get,
            at("/devices/{device}"),
            "get_device",
            Either,
            "A device",
        )
        .json::<Device>(200),
        Op::new(
            Patch,
            at("/devices/{device}"),
            "edit_device",
            Either,
            "Name a device, write notes",
        )
        .body::<EditDeviceBody>()
        .json::<Device>(200),
        Op::new(
            Put,
            at("/devices/{device}/configuration"),
            "configure_device",
            Either,
            "Assign one device a configuration",
        )
        .body::<AssignOneBody>()
        .json::<Device>(200),
        Op::new(
            Post,
            at("/devices/{device}/unpair"),
            "unpair_device",
            Either,
            "Unpair a device",
        )
        .json::<UnpairedDevice>(200),
        Op::new(
            Post,
            at("/devices/{device}/replace"),
            "replace_device",
            Either,
            "Replace a device with a new installation: a code that moves its license",
        )
        .idempotent()
        .query::<QrQuery>()
        .body::<SingleUseBody>()
        .json::<CodeResponse>(201),
        Op::new(
            Get,
            at("/audit"),
            "org_audit",
            Either,
            "The organization's audit log",
        )
        .query::<AuditQuery>()
        .json::<Page<AuditEntry>>(200),
        Op::new(
            Get,
            at("/events"),
            "org_events",
            Either,
            "The live feed (server-sent events)",
        )
        .text(200, "text/event-stream"),
    ]
}

/// The document, as the code describes the API.
pub(crate) fn document() -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    named::<ErrorAnswer>(&mut schemas);
    // The items of the generic pages are referred to by name; `Page<T>` does not add them.
    named::<AuditEntry>(&mut schemas);
    named::<CodeInfo>(&mut schemas);
    named::<Configuration>(&mut schemas);
    named::<ConfigurationRevision>(&mut schemas);
    named::<Device>(&mut schemas);
    named::<LicenseWithDevice>(&mut schemas);
    named::<OrgKeyInfo>(&mut schemas);
    named::<Organization>(&mut schemas);
    named::<engine::model::OperatorTokenInfo>(&mut schemas);
    named::<engine::model::TokenSource>(&mut schemas);
    // Named only inside generic pages, whose own schema is inline.
    named::<WaitingDevice>(&mut schemas);
    named::<Webhook>(&mut schemas);
    named::<WebhookDelivery>(&mut schemas);
    for op in operations() {
        schemas.extend(op.schemas);
        paths.add_path_operation(op.path, vec![op.method], op.operation);
    }
    let mut components = Components::new();
    for (name, schema) in schemas {
        components.schemas.insert(name, schema);
    }
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description.to_string()))
                .build(),
        )
    };
    components.add_security_scheme(
        "operator_token",
        bearer("The operator token (`paird_op_…`): every organization, and the operator's own endpoints."),
    );
    components.add_security_scheme(
        "organization_key",
        bearer("An organization key (`paird_key_…`): its own organization only."),
    );
    components.add_security_scheme(
        "metrics_token",
        bearer("The metrics token (`PAIRD_METRICS_TOKEN`): `/metrics` only."),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("paird admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The admin HTTP API of paird. docs/admin-api.md says what each endpoint does; \
                     every error is the `Error` object with a stable `code`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as committed in `docs/openapi.json`: pretty JSON and a final newline.
pub(crate) fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|_| String::from("{}"));
    text.push('\n');
    text
}

/// `GET /v1/openapi.json`.
pub(crate) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

// --- one operation --------------------------------------------------------------------------

/// An operation being described, and the named schemas it refers to.
struct Op {
    method: HttpMethod,
    path: String,
    operation: OperationBuilder,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Op {
    /// An operation; its path parameters (`{org}`, …) are ids, and every answer it does not
    /// name is the error object (`default`).
    fn new(
        method: HttpMethod,
        path: impl Into<String>,
        id: &str,
        access: Access,
        summary: &str,
    ) -> Op {
        let path = path.into();
        let mut operation = OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag(tag_of(&path))
            .response(
                "default",
                ResponseBuilder::new()
                    .description("An error: the error object with its stable code")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            );
        for name in path_parameters(&path) {
            // Every path parameter is an id, except a configuration's revision number and a
            // waiting device's ticket.
            let (description, schema) = match name.as_str() {
                "delivery" => (
                    "The delivery's number".to_string(),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .into(),
                ),
                "ticket" => (
                    "The waiting device's ticket".to_string(),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .into(),
                ),
                "revision" => (
                    "The revision's number".to_string(),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .into(),
                ),
                _ => (format!("The {name}'s id"), text("uuid")),
            };
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name.clone())
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some(description))
                    .schema(Some(schema)),
            );
        }
        operation = match access {
            Access::Public => operation.securities(Some(Vec::<SecurityRequirement>::new())),
            Access::Operator => operation.security(SecurityRequirement::new(
                "operator_token",
                Vec::<String>::new(),
            )),
            Access::Either => operation
                .security(SecurityRequirement::new(
                    "operator_token",
                    Vec::<String>::new(),
                ))
                .security(SecurityRequirement::new(
                    "organization_key",
                    Vec::<String>::new(),
                )),
            Access::Metrics => operation
                .security(SecurityRequirement::new(
                    "operator_token",
                    Vec::<String>::new(),
                ))
                .security(SecurityRequirement::new(
                    "metrics_token",
                    Vec::<String>::new(),
                ))
                // From an address of --metrics-allow, no token at all.
                .security(SecurityRequirement::default()),
        };
        Op {
            method,
            path,
            operation,
            schemas: Vec::new(),
        }
    }

    /// Takes the `Idempotency-Key` header (docs/admin-api.md, "Idempotency").
    fn idempotent(mut self) -> Op {
        self.operation = self.operation.parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes a retry safe: the same key and body answer the first answer again",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[\\x21-\\x7e]+$")),
                )),
        );
        self
    }

    /// Query parameters, from the handler's own query type.
    fn query<T: IntoParams>(mut self) -> Op {
        for parameter in T::into_params(|| Some(ParameterIn::Query)) {
            self.operation = self.operation.parameter(parameter);
        }
        self
    }

    /// A JSON request body, from the handler's own body type.
    fn body<T: ToSchema>(mut self) -> Op {
        let schema = self.inline::<T>();
        self.operation = self.operation.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .build(),
        ));
        self
    }

    /// A JSON answer of type `T` with this status.
    fn json<T: ToSchema>(mut self, status: u16) -> Op {
        let schema = self.inline::<T>();
        self.answer(status, "application/json", Some(schema))
    }

    /// A JSON answer whose shape the document does not pin (the server's status, this
    /// document).
    fn any_json(self, status: u16) -> Op {
        let schema = ObjectBuilder::new().schema_type(Type::Object).into();
        self.answer(status, "application/json", Some(schema))
    }

    /// A text answer of this content type.
    fn text(self, status: u16, content_type: &str) -> Op {
        self.answer(status, content_type, Some(text_plain()))
    }

    /// A binary answer of this content type.
    fn binary(self, status: u16, content_type: &str) -> Op {
        self.answer(status, content_type, None)
    }

    /// An answer without a body.
    fn nothing(mut self, status: u16) -> Op {
        self.operation = self.operation.response(
            status.to_string(),
            ResponseBuilder::new().description(describe(status)).build(),
        );
        self
    }

    fn answer(mut self, status: u16, content_type: &str, schema: Option<RefOr<Schema>>) -> Op {
        let mut content = ContentBuilder::new();
        if let Some(schema) = schema {
            content = content.schema(Some(schema));
        }
        self.operation = self.operation.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(describe(status))
                .content(content_type, content.build())
                .build(),
        );
        self
    }

    /// `T`'s schema, inline (generic pages have no name of their own), with the named schemas
    /// it refers to kept for the components.
    fn inline<T: ToSchema>(&mut self) -> RefOr<Schema> {
        T::schemas(&mut self.schemas);
        T::schema()
    }
}

impl From<Op> for Operation {
    fn from(op: Op) -> Operation {
        op.operation.build()
    }
}

/// Adds `T` and what it refers to to the components, under `T`'s name.
fn named<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

fn text(format: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom(format.to_string())))
        .into()
}

fn text_plain() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn describe(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted; it is done shortly",
        204 => "Done; no body",
        503 => "Not ready",
        _ => "Answer",
    }
}

/// The names in a path's braces, in order.
fn path_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// The section of docs/admin-api.md an operation belongs to.
fn tag_of(path: &str) -> &'static str {
    let rest = path.strip_prefix("/v1/organizations/{org}").unwrap_or("");
    match rest.split(['/', '.']).nth(1) {
        _ if !path.starts_with("/v1/organizations") => "server",
        None => "organizations",
        Some("keys") => "keys",
        Some("licenses") => "licenses",
        Some("codes") => "codes",
        Some("configurations" | "new-device-configuration") => "configurations",
        Some("devices") => "devices",
        Some("audit") => "audit",
        Some("events") => "live feed",
        Some("waiting") => "devices",
        Some("webhooks") => "webhooks",
        Some(_) => "organizations",
    }
}

// --- answers the handlers build as JSON by hand ---------------------------------------------
// These describe what `routes.rs` writes with `json!`; the live tests (schemathesis) check
// that the answers match.

/// The error object of every refusal (docs/admin-api.md, "Errors").
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
struct ErrorAnswer {
    error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
struct ErrorObject {
    /// The stable code: `unauthorized`, `forbidden`, `not_found`, `invalid_request`,
    /// `invalid_json`, `invalid_configuration`, `unavailable`, `internal`,
    /// `too_many_connections`, or a conflict's own code.
    code: String,
    /// For people; it may change.
    message: String,
    /// The request field the error concerns, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// A configuration body's problems (`invalid_configuration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<Problem>>,
    /// Whether more problems were found than listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    problems_truncated: Option<bool>,
}

/// A problem of a configuration body, by line (0: the whole body).
#[derive(Serialize, ToSchema)]
struct Problem {
    line: u64,
    /// `error` or `warning`.
    severity: String,
    message: String,
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `alive`.
    status: String,
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, `draining` or `not_ready`.
    status: String,
    checks: ReadinessChecks,
}

#[derive(Serialize, ToSchema)]
struct ReadinessChecks {
    listeners: String,
    database: String,
    draining: bool,
}

#[derive(Serialize, ToSchema)]
struct WhoAmI {
    /// `operator` or `organization_key`.
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_id: Option<engine::ids::OrgId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<engine::ids::KeyId>,
    now: engine::ids::Timestamp,
    /// The address the request is taken to come from (behind a trusted proxy, the client's).
    client_address: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ConfigurationCheck {
    valid: bool,
    errors: u64,
    warnings: u64,
    problems: Vec<Problem>,
    problems_truncated: bool,
}

#[derive(Serialize, ToSchema)]
struct Revoked {
    /// How many single-use codes were revoked.
    revoked: u64,
}

/// What an assignment answers: with `device_ids`, those devices (all of them or none);
/// with a filter or `all`, the counts.
#[derive(Serialize, ToSchema)]
struct Assigned {
    configuration_id: engine::ids::ConfigId,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_ids: Option<Vec<engine::ids::DeviceId>>,
    matched: u64,
    assigned: u64,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The document as `docs/openapi.json` holds it.
    fn committed_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    #[test]
    fn the_committed_document_is_what_the_code_builds() {
        let built = document_json();
        let path = committed_path();
        if std::env::var_os("PAIRD_BLESS").is_some() {
            std::fs::write(&path, &built).expect("write docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == built,
            "docs/openapi.json differs from the document the code builds; write it again with \
             `PAIRD_BLESS=1 cargo test -p server --lib openapi` and commit it"
        );
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let routed: BTreeSet<String> = super::super::routes::route_table(false)
            .paths()
            .iter()
            .cloned()
            .collect();
        let documented: BTreeSet<String> = operations().into_iter().map(|op| op.path).collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes without a line in openapi.rs `operations`: {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unrouted.is_empty(),
            "documented paths the router does not serve: {unrouted:?}"
        );
    }

    /// The endpoint table at the top of docs/admin-api.md section 7 lists every operation of
    /// the document, and nothing else.
    #[test]
    fn the_admin_api_endpoint_table_lists_every_operation() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.md");
        let doc = std::fs::read_to_string(path).expect("docs/admin-api.md");
        let table = doc
            .split("| Method | Path | Who | Section |")
            .nth(1)
            .expect("the endpoint table")
            .split("\n\n")
            .next()
            .unwrap_or_default();
        let listed: BTreeSet<String> = table
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let method = cells.next()?;
                let path = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some(format!("{method} {path}"))
            })
            .collect();
        let documented: BTreeSet<String> = operations()
            .into_iter()
            .map(|op| {
                let method = serde_json::to_value(&op.method).expect("a method");
                let method = method.as_str().unwrap_or_default().to_uppercase();
                format!("{method} {}", op.path)
            })
            .collect();
        let missing: Vec<_> = documented.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "operations missing from the table: {missing:?}"
        );
        let extra: Vec<_> = listed.difference(&documented).collect();
        assert!(
            extra.is_empty(),
            "table rows that are no operation: {extra:?}"
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = BTreeSet::new();
        for op in operations() {
            let operation: Operation = op.operation.build();
            let id = operation.operation_id.unwrap_or_default();
            assert!(seen.insert(id.clone()), "operation id {id} twice");
        }
    }
}

//! The OpenAPI description of the management API, generated from the handlers, and of the inference
//! protocols' routes ([`crate::openapi_inference`]).

use utoipa::OpenApi;

use serde_json::{Value, json};

use crate::{admin, alerts, console, drift, forecast, jobs, route, schema, stats, tenancy};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Yunmo management API",
        description = "Models, versions, uploads, sharing, tenants, API keys, usage and audit. Every route needs an API key (Authorization: Bearer ym_...) when auth is on, but this document and the web console (/ui/, /ui/session.json). Inference speaks each client's protocol: KServe V2 with Triton's extensions under /v2 (and over gRPC), KServe V1, OpenAI's API with the Responses API under /v1, Anthropic's Messages API, Ollama's API under /api and TEI's routes; those operations are tagged by protocol, their bodies are the protocol's own (each tag links its specification), and their errors use the protocol's error body."
    ),
    paths(
        admin::list_models,
        admin::create_model,
        admin::get_model,
        admin::update_model,
        admin::delete_model,
        admin::list_versions,
        admin::upload_version,
        admin::get_version,
        admin::delete_version,
        admin::set_config,
        admin::set_tokenizer,
        admin::load_version,
        admin::unload_version,
        admin::set_sharing,
        admin::openapi_json,
        route::get_route,
        route::set_route,
        route::promote,
        tenancy::create_tenant,
        tenancy::list_tenants,
        tenancy::get_tenant,
        tenancy::delete_tenant,
        tenancy::set_tenant_limits,
        tenancy::create_key,
        tenancy::list_keys,
        tenancy::revoke_key,
        tenancy::usage,
        tenancy::audit,
        tenancy::whoami,
        stats::live_stats,
        console::session,
        drift::drift,
        drift::set_baseline,
        drift::reset_baseline,
        alerts::alerts,
        forecast::forecast,
        jobs::upload_file,
        jobs::list_files,
        jobs::get_file,
        jobs::file_content,
        jobs::delete_file,
        jobs::create_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::job_events,
        jobs::cancel_job,
    ),
    components(schemas(
        console::SessionDto,
        jobs::FileDto,
        jobs::FileList,
        jobs::Deleted,
        jobs::CreateJob,
        jobs::JobDto,
        jobs::JobList,
        jobs::EventDto,
        jobs::EventList,
        drift::DriftDto,
        drift::BaselineDto,
        drift::WindowsDto,
        drift::WindowDto,
        drift::FeatureDto,
        drift::BinDto,
        alerts::AlertsDto,
        alerts::AlertDto,
        forecast::ForecastDto,
        forecast::SeriesDto,
        forecast::ParametersDto,
        forecast::BacktestDto,
        forecast::CapacityDto,
        admin::CreateModel,
        admin::UpdateModel,
        admin::ModelDto,
        admin::ModelList,
        admin::VersionDto,
        admin::VersionConfigDto,
        admin::TensorSpecDto,
        admin::VersionPolicyDto,
        route::RouteDto,
        route::WeightedDto,
        route::GuardDto,
        route::RouteStatusDto,
        route::RouteVersionDto,
        route::PromoteDto,
        admin::SharingDto,
        tenancy::CreateTenant,
        tenancy::CreateKey,
        schema::ErrorBody,
        schema::ErrorDetail,
        schema::LimitsSchema,
        schema::TenantSchema,
        schema::KeySchema,
        schema::CreatedKeySchema,
        schema::UsageReportSchema,
        schema::UsageRowSchema,
        schema::AuditSchema,
        schema::WhoamiSchema,
        schema::UploadForm,
        stats::StatsDto,
        stats::VersionStatsDto,
        stats::TotalsDto,
        stats::SeriesDto,
    ))
)]
struct ApiDoc;

/// The OpenAPI document: what the handlers declare, completed with what every operation shares
/// ([`complete`]).
pub fn document() -> Value {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut value = serde_json::to_value(&document).expect("the OpenAPI document serializes. This is a bug.");
    complete(&mut value);
    crate::openapi_inference::add(&mut value, &crate::openapi_inference::Errors { common: &COMMON_ERRORS, body: &BODY_ERRORS });
    value
}

/// Error answers every operation can give, besides those it declares.
const COMMON_ERRORS: [(&str, &str); 7] = [
    ("400", "Bad input: a malformed path, query or body; the message names the field and the bound."),
    ("401", "No key, or an unknown, revoked or expired one."),
    ("403", "The key lacks the scope, or the model belongs to another tenant."),
    ("404", "No such model, version, tenant or key (a model the caller cannot see is not found)."),
    ("405", "The path does not take this method."),
    ("500", "A server failure; the details are in the server log."),
    ("503", "A store the request needs (the database, object storage, the limit store) cannot be reached now; retry after Retry-After."),
];

/// Error answers of operations with a body.
const BODY_ERRORS: [(&str, &str); 2] = [
    ("413", "The body passes its limit (server.max_json_bytes, max_upload_bytes)."),
    ("415", "The body is not JSON, or its Content-Encoding is not supported."),
];

/// Adds what the annotations cannot say once for all: the key (bearer, or an `api-key` header) every
/// operation needs, the error answers each can give with their body, and the upload's two body forms.
fn complete(document: &mut Value) {
    let error = json!({ "description": "", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } });
    document["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer", "description": "An API key: Authorization: Bearer ym_<id>_<secret>" },
        "api_key": { "type": "apiKey", "in": "header", "name": "api-key", "description": "The same key in an api-key header" },
    });
    document["security"] = json!([{ "bearer": [] }, { "api_key": [] }]);
    let Some(paths) = document["paths"].as_object_mut() else { return };
    // Path parameters as the handlers check them.
    let name = r"^([A-Za-z0-9_][A-Za-z0-9._-]{0,127}/)?[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$";
    let path_schemas = [
        (
            "name",
            json!({ "type": "string", "pattern": name, "description": "A model or tenant name; a model may be tenant/name (a slash or %2F)" }),
        ),
        ("version", json!({ "type": "integer", "minimum": 1, "maximum": i64::MAX })),
        ("id", json!({ "type": "string", "pattern": "^[a-z0-9]{4,32}$" })),
    ];
    for (path, operations) in paths.iter_mut() {
        let Some(operations) = operations.as_object_mut() else { continue };
        for (method, operation) in operations.iter_mut() {
            if path == "/api/v1/models/{name}/versions" && method == "post" {
                operation["requestBody"] = json!({
                    "description": "The model file as the body, or a multipart form with the file and optional config and tokenizer parts.",
                    "required": true,
                    "content": {
                        "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                        "multipart/form-data": { "schema": { "$ref": "#/components/schemas/UploadForm" } },
                    },
                });
            }
            for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if parameter["in"] == "path"
                    && let Some((_, schema)) = path_schemas.iter().find(|(name, _)| parameter["name"] == *name)
                {
                    parameter["schema"] = schema.clone();
                }
            }
            let has_body = operation.get("requestBody").is_some();
            let responses = operation["responses"].as_object_mut().expect("every operation declares responses");
            let extra = COMMON_ERRORS.iter().chain(if has_body { BODY_ERRORS.iter() } else { [].iter() });
            for (status, description) in extra {
                responses.entry(status.to_string()).or_insert_with(|| json!({ "description": description }));
            }
            for (status, response) in responses.iter_mut() {
                // OpenAPI requires a description on every response.
                if response.get("description").is_none() {
                    response["description"] = json!("Success.");
                }
                if status.starts_with('4') || status.starts_with('5') {
                    let description = response["description"].clone();
                    *response = error.clone();
                    response["description"] = description;
                }
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline (the form kept in `docs/openapi.json`).
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the OpenAPI document serializes. This is a bug.");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_openapi_json_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let current = super::document_json();
        let stored = std::fs::read_to_string(path).unwrap_or_default();
        if stored != current {
            if std::env::var_os("YUNMO_UPDATE_DOCS").is_some() {
                std::fs::write(path, &current).unwrap();
                return;
            }
            panic!("docs/openapi.json is out of date: run `YUNMO_UPDATE_DOCS=1 cargo test -p yunmo-api openapi`");
        }
    }
}

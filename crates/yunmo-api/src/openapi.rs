//! The OpenAPI description of the management API, generated from the handlers.

use utoipa::OpenApi;

use crate::{admin, tenancy};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Yunmo management API",
        description = "Models, versions, uploads, sharing, tenants, API keys, usage and audit. Every route needs an API key (Authorization: Bearer ym_...) when auth is on. Inference uses the KServe V2 protocol under /v2 and the OpenAI API under /v1."
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
    ),
    components(schemas(
        admin::CreateModel,
        admin::UpdateModel,
        admin::ModelDto,
        admin::ModelList,
        admin::VersionDto,
        admin::VersionConfigDto,
        admin::TensorSpecDto,
        admin::VersionPolicyDto,
        admin::SharingDto,
        tenancy::CreateTenant,
        tenancy::CreateKey,
    ))
)]
struct ApiDoc;

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document
}

/// The document as pretty JSON with a trailing newline (the form kept in `docs/openapi.json`).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().expect("the OpenAPI document serializes. This is a bug.");
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

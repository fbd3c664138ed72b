//! Stored responses of OpenAI's Responses API, per tenant: what `store: true` keeps for the configured
//! retention (`[responses] retention_s`), and what `previous_response_id`, `GET` and `DELETE
//! /v1/responses/{id}` read. Only the tenant of the key that created a response reads or deletes it; for
//! every other caller it does not exist.

use yunmo_auth::Principal;
use yunmo_registry::StoredResponse;
use yunmo_types::Scope;

use crate::jobs::now_ms;
use crate::{Call, Code, InferenceService, ServiceError};

/// A response to store: the registry's record without its tenant and times, which the service sets.
pub struct NewResponse {
    /// `resp_…`.
    pub id: String,
    /// The model, as the request named it.
    pub model: String,
    /// The response object (JSON).
    pub body: String,
    /// The whole conversation it answered, as input items (JSON).
    pub input: String,
}

/// The caller's tenant, for a key with the `infer` scope.
fn tenant_of(principal: &Principal) -> Result<&str, ServiceError> {
    principal.require(Scope::Infer)?;
    if principal.tenant.is_empty() {
        return Err(ServiceError::new(Code::PermissionDenied, "a caller without a key has no stored responses; send an API key"));
    }
    Ok(&principal.tenant)
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::new(Code::NotFound, format!("Response with id '{id}' not found."))
}

impl InferenceService {
    /// Stores a response the caller created, for the retention; `false` when storing is off (retention 0).
    pub async fn store_response(&self, call: &Call, response: NewResponse) -> Result<bool, ServiceError> {
        let tenant = tenant_of(&call.principal)?;
        let retention = self.inner.responses_retention;
        if retention.is_zero() {
            return Ok(false);
        }
        let now = now_ms();
        let record = StoredResponse {
            id: response.id,
            tenant: tenant.to_string(),
            model: response.model,
            body: response.body,
            input: response.input,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
        };
        self.inner.registry.responses().put_response(&record, now).await?;
        Ok(true)
    }

    /// A response the caller's tenant stored, not expired.
    pub async fn stored_response(&self, call: &Call, id: &str) -> Result<StoredResponse, ServiceError> {
        let tenant = tenant_of(&call.principal)?;
        self.inner.registry.responses().get_response(tenant, id, now_ms()).await?.ok_or_else(|| not_found(id))
    }

    /// Deletes a response the caller's tenant stored.
    pub async fn delete_response(&self, call: &Call, id: &str) -> Result<(), ServiceError> {
        let tenant = tenant_of(&call.principal)?;
        if self.inner.registry.responses().delete_response(tenant, id, now_ms()).await? { Ok(()) } else { Err(not_found(id)) }
    }
}

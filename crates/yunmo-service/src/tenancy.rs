//! Tenants, keys, usage reports and the audit log, through the same pipeline as models: every method takes
//! the [`Call`] and checks its caller's scopes here (tenants and keys are admin-only; usage, audit and a
//! tenant's own record are readable by its keys), so the transports only decode and encode.

use yunmo_auth::KeyRequest;
pub use yunmo_registry::UsageQuery;
use yunmo_registry::{AuditEntry, KeyRecord, TenantRecord, UsageGroup, UsageRow};
use yunmo_types::{Code, Limits, Scope, ServiceError};

use crate::{Call, InferenceService};

/// Most audit entries in one answer.
pub const MAX_AUDIT_ENTRIES: u32 = 10_000;

impl InferenceService {
    /// Creates a tenant (admin).
    pub async fn create_tenant(&self, call: &Call, name: &str, limits: &Limits) -> Result<TenantRecord, ServiceError> {
        call.principal.require(Scope::Admin)?;
        Ok(self.inner.registry.create_tenant(name, limits).await?)
    }

    /// Every tenant (admin).
    pub async fn list_tenants(&self, call: &Call) -> Result<Vec<TenantRecord>, ServiceError> {
        call.principal.require(Scope::Admin)?;
        Ok(self.inner.registry.list_tenants().await?)
    }

    /// One tenant (admin, or a key of that tenant).
    pub async fn get_tenant(&self, call: &Call, name: &str) -> Result<TenantRecord, ServiceError> {
        call.principal.tenant_filter(Some(name))?;
        Ok(self.inner.registry.get_tenant(name).await?)
    }

    /// Replaces a tenant's limits (admin); they apply from the next request on.
    pub async fn set_tenant_limits(&self, call: &Call, name: &str, limits: &Limits) -> Result<TenantRecord, ServiceError> {
        call.principal.require(Scope::Admin)?;
        self.inner.gate.set_tenant_limits(name, limits).await
    }

    /// Deletes a tenant (admin) with its keys and, with `with_models`, its models (unloading them). Its keys
    /// are refused from the next request on, whether or not the models went too.
    pub async fn delete_tenant(&self, call: &Call, name: &str, with_models: bool) -> Result<(), ServiceError> {
        call.principal.require(Scope::Admin)?;
        let result = self.remove_tenant(name, with_models).await;
        self.inner.gate.forget_keys();
        result?;
        self.forget_tenant_jobs(name).await?;
        tracing::info!(tenant = %name, "Tenant deleted.");
        Ok(())
    }

    /// Creates a key (admin); returns its record and the key itself, which is not stored.
    pub async fn create_key(&self, call: &Call, request: KeyRequest) -> Result<(KeyRecord, String), ServiceError> {
        let principal = &call.principal;
        if !principal.is_admin() {
            principal.require(Scope::KeysWrite)?;
            self_service_key(principal, &request)?;
        }
        self.inner.gate.create_key(request).await
    }

    /// The keys of `tenant` (admins: any or all; others: their own tenant's).
    pub async fn list_keys(&self, call: &Call, tenant: Option<&str>) -> Result<Vec<KeyRecord>, ServiceError> {
        let tenant = call.principal.tenant_filter(tenant)?;
        Ok(self.inner.registry.list_keys(tenant.as_deref()).await?)
    }

    /// Revokes a key (admin): it is refused from the next request on.
    pub async fn revoke_key(&self, call: &Call, id: &str) -> Result<KeyRecord, ServiceError> {
        let principal = &call.principal;
        if !principal.is_admin() {
            principal.require(Scope::KeysWrite)?;
            let key = self.inner.registry.get_key(id).await?;
            // Another tenant's key is answered as missing: its existence is not the caller's to learn.
            if key.is_none_or(|key| key.tenant != principal.tenant) {
                return Err(ServiceError::new(Code::NotFound, format!("no key '{id}' in tenant '{}'", principal.tenant)));
            }
        }
        self.inner.gate.revoke_key(id).await
    }

    /// Usage rows (admins: the tenant asked for, or all when `query.tenant` is `None`; others: their own). Events still waiting for the writer are
    /// included; a report that would miss some is refused (`model_not_ready`, retry shortly). Grouped by
    /// model, each tenant's rows name models as that tenant calls them.
    pub async fn usage_report(&self, call: &Call, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, ServiceError> {
        let tenant = call.principal.tenant_filter(query.tenant)?;
        if let Err(unwritten) = self.inner.gate.flush().await {
            return Err(ServiceError::not_ready(format!(
                "{unwritten} usage events could not be written to the database yet (see the server log); they are retried, ask again shortly"
            ))
            .with_retry_after(1));
        }
        let mut rows = self.inner.registry.usage_report(UsageQuery { tenant: tenant.as_deref(), ..query }).await?;
        if query.group == UsageGroup::Model {
            for row in &mut rows {
                row.group = yunmo_registry::name_for(&row.group, &row.tenant).to_string();
            }
        }
        Ok(rows)
    }

    /// The newest `limit` audit entries (admins: any tenant or all; others: their own).
    pub async fn list_audit(&self, call: &Call, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, ServiceError> {
        let tenant = call.principal.tenant_filter(tenant)?;
        if !(1..=MAX_AUDIT_ENTRIES).contains(&limit) {
            return Err(ServiceError::invalid(format!("limit must be between 1 and {MAX_AUDIT_ENTRIES}, got {limit}")));
        }
        Ok(self.inner.registry.list_audit(tenant.as_deref(), limit).await?)
    }
}

/// What a tenant's `keys:write` key may create: a key of its own tenant, with scopes it holds itself (never
/// `admin`), limited to models it may use itself.
fn self_service_key(principal: &yunmo_auth::Principal, request: &KeyRequest) -> Result<(), ServiceError> {
    let denied = |message: String| ServiceError::new(Code::PermissionDenied, message);
    if request.tenant != principal.tenant {
        return Err(denied(format!(
            "key '{}' of tenant '{}' cannot create keys of tenant '{}'",
            principal.key_id, principal.tenant, request.tenant
        )));
    }
    if let Some(scope) = request.scopes.iter().find(|scope| **scope == Scope::Admin || !principal.scopes.contains(scope)) {
        return Err(denied(format!("key '{}' cannot grant the '{}' scope, which it does not hold", principal.key_id, scope.as_str())));
    }
    if let Some(allowed) = &principal.models {
        match &request.models {
            None => return Err(denied(format!("key '{}' may use only some models: name them in 'models'", principal.key_id))),
            Some(models) => {
                if let Some(model) = models.iter().find(|model| !allowed.contains(model)) {
                    return Err(denied(format!("key '{}' cannot grant model '{model}', which it may not use", principal.key_id)));
                }
            }
        }
    }
    Ok(())
}

//! The authenticated caller.

use yunmo_registry::{DEFAULT_TENANT, KeyRecord};
use yunmo_types::{Code, ServiceError};
use yunmo_types::{Limits, Scope};

/// Who is calling: a key, its tenant, scopes, model allow-list and the limits that apply.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Key id (`-` when auth is off).
    pub key_id: String,
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Models the key may use (`None`: all its tenant can see).
    pub models: Option<Vec<String>>,
    /// The key's limits.
    pub key_limits: Limits,
    /// The tenant's limits.
    pub tenant_limits: Limits,
}

impl Principal {
    /// The caller when auth is off: an admin of the default tenant, unmetered by key.
    pub fn local() -> Principal {
        Principal {
            key_id: "-".into(),
            tenant: DEFAULT_TENANT.into(),
            scopes: vec![Scope::Admin],
            models: None,
            key_limits: Limits::default(),
            tenant_limits: Limits::default(),
        }
    }

    /// The caller on an open path (`auth.open_paths`) with auth on: no key, no scopes and no tenant (an
    /// empty name, which no tenant can have), so a route that needs a scope refuses it by name and no
    /// tenant's records, models or quota are its own.
    pub fn anonymous() -> Principal {
        Principal {
            key_id: "anonymous".into(),
            tenant: String::new(),
            scopes: Vec::new(),
            models: Some(Vec::new()),
            key_limits: Limits::default(),
            tenant_limits: Limits::default(),
        }
    }

    /// The caller a stored key stands for.
    pub fn from_key(key: KeyRecord) -> Principal {
        Principal {
            key_id: key.id,
            tenant: key.tenant,
            scopes: key.scopes,
            models: key.models,
            key_limits: key.limits,
            tenant_limits: key.tenant_limits,
        }
    }

    /// Holds the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// Holds `scope` (admins hold every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.is_admin() || self.scopes.contains(&scope)
    }

    /// Holds any of `scopes`.
    pub fn has_any(&self, scopes: &[Scope]) -> bool {
        scopes.iter().any(|scope| self.has(*scope))
    }

    /// Fails unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ServiceError> {
        if self.has(scope) { Ok(()) } else { Err(self.lacks(scope)) }
    }

    /// The error for a missing scope.
    pub fn lacks(&self, scope: Scope) -> ServiceError {
        ServiceError::new(Code::PermissionDenied, format!("key '{}' lacks the '{}' scope", self.key_id, scope.as_str()))
    }

    /// The tenant whose data a request may read: `requested` for admins (all tenants when `None`), else
    /// the caller's own (asking for another tenant is refused).
    pub fn tenant_filter(&self, requested: Option<&str>) -> Result<Option<String>, ServiceError> {
        if self.tenant.is_empty() {
            return Err(ServiceError::new(Code::PermissionDenied, "a caller without a key reads no tenant's records; send an API key"));
        }
        match requested {
            _ if self.is_admin() => Ok(requested.map(str::to_string)),
            Some(tenant) if tenant != self.tenant => Err(ServiceError::new(
                Code::PermissionDenied,
                format!("key '{}' of tenant '{}' cannot read tenant '{tenant}'", self.key_id, self.tenant),
            )),
            _ => Ok(Some(self.tenant.clone())),
        }
    }
}

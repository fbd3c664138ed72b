//! Who may do what to which model. Pure functions of the caller and the model record.

use yunmo_registry::ModelRecord;
use yunmo_service::{Code, ServiceError};
use yunmo_types::Scope;

use crate::Principal;

/// What a caller wants to do with a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read metadata, readiness, versions.
    Read,
    /// Run inference.
    Infer,
    /// Change, upload to, load, unload or delete.
    Write,
}

/// Whether the caller's tenant can see the model at all (own, public, or shared with it).
pub fn can_see(principal: &Principal, model: &ModelRecord) -> bool {
    principal.is_admin() || model.tenant == principal.tenant || model.sharing.public || model.sharing.tenants.contains(&principal.tenant)
}

/// Checks that `principal` may do `action` on `model`. A model the caller cannot see answers exactly as a
/// model that does not exist, so names of other tenants' private models do not leak.
pub fn check(principal: &Principal, model: &ModelRecord, action: Action) -> Result<(), ServiceError> {
    if !can_see(principal, model) {
        return Err(ServiceError::not_found(format!("model '{}' not found", model.name)));
    }
    if principal.is_admin() {
        return Ok(());
    }
    if let Some(allowed) = &principal.models
        && !allowed.contains(&model.name)
    {
        return Err(ServiceError::new(
            Code::PermissionDenied,
            format!("key '{}' may not use model '{}': it is limited to {allowed:?}", principal.key_id, model.name),
        ));
    }
    match action {
        Action::Read if principal.has_any(&[Scope::ModelsRead, Scope::ModelsWrite, Scope::Infer]) => Ok(()),
        Action::Read => Err(principal.lacks(Scope::ModelsRead)),
        Action::Infer if principal.has(Scope::Infer) => Ok(()),
        Action::Infer => Err(principal.lacks(Scope::Infer)),
        Action::Write if !principal.has(Scope::ModelsWrite) => Err(principal.lacks(Scope::ModelsWrite)),
        Action::Write if model.tenant != principal.tenant => Err(ServiceError::new(
            Code::PermissionDenied,
            format!("model '{}' belongs to tenant '{}'; only its owner may change it", model.name, model.tenant),
        )),
        Action::Write => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunmo_registry::NewModel;
    use yunmo_types::{Limits, Sharing};

    fn principal(tenant: &str, scopes: &[Scope]) -> Principal {
        Principal {
            key_id: "k".into(),
            tenant: tenant.into(),
            scopes: scopes.to_vec(),
            models: None,
            key_limits: Limits::default(),
            tenant_limits: Limits::default(),
        }
    }

    fn model(tenant: &str, sharing: Sharing) -> ModelRecord {
        let new = NewModel { name: "m".into(), tenant: tenant.into(), sharing, ..NewModel::default() };
        ModelRecord::for_tests(new)
    }

    #[test]
    fn private_models_are_invisible_to_other_tenants() {
        let b = model("b", Sharing::default());
        let a = principal("a", &[Scope::Infer, Scope::ModelsRead, Scope::ModelsWrite]);
        for action in [Action::Read, Action::Infer, Action::Write] {
            assert_eq!(check(&a, &b, action).unwrap_err().code, Code::ModelNotFound);
        }
        assert!(check(&principal("x", &[Scope::Admin]), &b, Action::Write).is_ok());
    }

    #[test]
    fn shared_models_can_be_used_but_not_changed() {
        let shared = model("b", Sharing { public: false, tenants: vec!["a".into()] });
        let a = principal("a", &[Scope::Infer, Scope::ModelsWrite]);
        assert!(check(&a, &shared, Action::Infer).is_ok());
        assert_eq!(check(&a, &shared, Action::Write).unwrap_err().code, Code::PermissionDenied);
        assert_eq!(check(&principal("c", &[Scope::Infer]), &shared, Action::Infer).unwrap_err().code, Code::ModelNotFound);
        let public = model("b", Sharing { public: true, tenants: vec![] });
        assert!(check(&principal("c", &[Scope::Infer]), &public, Action::Infer).is_ok());
    }

    #[test]
    fn scopes_and_allow_lists_are_enforced() {
        let own = model("a", Sharing::default());
        assert_eq!(check(&principal("a", &[Scope::ModelsRead]), &own, Action::Infer).unwrap_err().code, Code::PermissionDenied);
        assert_eq!(check(&principal("a", &[Scope::Infer]), &own, Action::Write).unwrap_err().code, Code::PermissionDenied);
        assert!(check(&principal("a", &[Scope::Infer]), &own, Action::Read).is_ok());
        let mut limited = principal("a", &[Scope::Infer]);
        limited.models = Some(vec!["other".into()]);
        let error = check(&limited, &own, Action::Infer).unwrap_err();
        assert_eq!(error.code, Code::PermissionDenied);
        assert!(error.message.contains("other"), "{}", error.message);
    }
}

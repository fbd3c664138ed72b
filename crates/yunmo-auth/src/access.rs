//! Who may do what to which model. Pure functions of the caller and the model record.

use yunmo_registry::{DEFAULT_TENANT, ModelRecord};
use yunmo_types::Scope;
use yunmo_types::{Code, ServiceError};

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

/// The model `principal` means by `name`, among `candidates` (every model whose name within its tenant is
/// `name`): the caller's own, else the `default` tenant's, else the one another tenant shares with it. A
/// model the caller cannot see is not a candidate, so the answer for it is exactly the answer for a name
/// nobody uses; two other tenants' models of that name are ambiguous (qualify it as `tenant/name`).
pub fn pick<M: std::ops::Deref<Target = ModelRecord> + Clone>(
    principal: &Principal,
    name: &str,
    candidates: &[M],
) -> Result<M, ServiceError> {
    for tenant in [principal.tenant.as_str(), DEFAULT_TENANT] {
        if let Some(model) = candidates.iter().find(|model| model.tenant == tenant && can_see(principal, model)) {
            return Ok(model.clone());
        }
    }
    let visible: Vec<&M> = candidates.iter().filter(|model| can_see(principal, model)).collect();
    match visible.len() {
        0 => Err(ServiceError::not_found(format!("model '{name}' not found"))),
        1 => Ok(visible[0].clone()),
        _ => {
            let names: Vec<String> = visible.iter().map(|model| format!("'{}'", model.name)).collect();
            Err(ServiceError::invalid(format!("model name '{name}' is ambiguous: say which one, {}", names.join(" or "))))
        }
    }
}

/// Whether a key's model allow-list admits `model`: an entry is a qualified name, or the short name of a
/// model of the key's own tenant.
pub fn allowed_by(allowed: &[String], principal: &Principal, model: &ModelRecord) -> bool {
    allowed.iter().any(|entry| *entry == model.name || (model.tenant == principal.tenant && entry == model.short_name()))
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
        && !allowed_by(allowed, principal, model)
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

    #[test]
    fn short_names_resolve_to_the_callers_own_then_the_default_tenants_then_one_shared_model() {
        let shared_with_a = Sharing { public: false, tenants: vec!["a".into()] };
        let own = model("a", Sharing::default());
        let operator = model(DEFAULT_TENANT, Sharing { public: true, tenants: vec![] });
        let from_b = model("b", shared_with_a.clone());
        let from_c = model("c", shared_with_a);
        let private_d = model("d", Sharing::default());
        let a = principal("a", &[Scope::Infer]);
        let all = || [own.clone(), operator.clone(), from_b.clone(), from_c.clone(), private_d.clone()].map(std::sync::Arc::new).to_vec();
        assert_eq!(pick(&a, "m", &all()).unwrap().name, "a/m", "the caller's own model first");
        assert_eq!(pick(&a, "m", &all()[1..]).unwrap().name, "m", "then the default tenant's");
        let arcs = |models: Vec<ModelRecord>| models.into_iter().map(std::sync::Arc::new).collect::<Vec<_>>();
        assert_eq!(pick(&a, "m", &arcs(vec![from_b.clone(), private_d.clone()])).unwrap().name, "b/m", "then the one shared with it");
        let error = pick(&a, "m", &arcs(vec![from_b, from_c])).unwrap_err();
        assert!(error.message.contains("'b/m' or 'c/m'"), "{}", error.message);
        // Another tenant's private model is exactly as absent as no model at all.
        let hidden = pick(&a, "m", &arcs(vec![private_d])).unwrap_err();
        let missing = pick(&a, "m", &arcs(vec![])).unwrap_err();
        assert_eq!((hidden.code, hidden.message), (missing.code, missing.message));
    }

    #[test]
    fn allow_lists_name_own_models_short_and_others_qualified() {
        let mut limited = principal("a", &[Scope::Infer]);
        limited.models = Some(vec!["m".into(), "b/m".into()]);
        assert!(check(&limited, &model("a", Sharing::default()), Action::Infer).is_ok());
        let shared = Sharing { public: false, tenants: vec!["a".into()] };
        assert!(check(&limited, &model("b", shared.clone()), Action::Infer).is_ok());
        assert_eq!(check(&limited, &model("c", shared), Action::Infer).unwrap_err().code, Code::PermissionDenied);
    }
}

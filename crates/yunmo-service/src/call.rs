//! The request pipeline inside the service: every call that names a model takes the request's [`Call`]
//! (who is calling, the request id, its span, its usage record, its deadline) and a [`Target`], the model
//! the caller means as the service's access check found it. Only [`InferenceService::authorize`] makes a
//! `Target`, and every method that takes one checks that it was made for this caller and for an action
//! that covers its own, so no transport can reach a model without the check. Admission (rate limits,
//! quotas) and the usage record start in [`InferenceService::admit`].

use std::sync::Arc;
use std::time::Instant;

use yunmo_auth::{Action, Principal, UsageCell, UsageGuard};
use yunmo_registry::ModelRecord;
use yunmo_types::{Code, ModelRef, ServiceError};

use crate::InferenceService;

/// One request as the service sees it, whatever transport it came on.
#[derive(Clone)]
pub struct Call {
    /// Who is calling (shared with the transport's request, not copied).
    pub principal: Arc<Principal>,
    /// The request id (echoed by the transport, named in 5xx messages and log lines).
    pub request_id: Arc<str>,
    /// The span of the request: work done off its task (worker threads) can enter it.
    pub span: tracing::Span,
    /// The request's usage record, once admitted ([`InferenceService::admit`]).
    pub usage: Option<UsageCell>,
    /// When the request must be answered by: set at admission from `request_timeout`, so time spent reading
    /// and decoding the request counts; tensor inference answers `timeout` (504) once it has passed.
    pub deadline: Option<Instant>,
}

impl Call {
    /// A call by `principal` with `request_id`, in the current span.
    pub fn new(principal: Arc<Principal>, request_id: impl Into<Arc<str>>) -> Call {
        Call { principal, request_id: request_id.into(), span: tracing::Span::current(), usage: None, deadline: None }
    }

    /// Records what served the request and how long it took.
    pub(crate) fn record_served(&self, model: &str, version: u64, queue_us: u64, compute_us: u64) {
        if let Some(usage) = &self.usage {
            usage.set_model(model, version);
            usage.add_time_us(queue_us, compute_us);
        }
    }
}

/// A model a caller may act on: made only by [`InferenceService::authorize`], for one caller and one action.
#[derive(Clone)]
pub struct Target {
    model: Arc<ModelRecord>,
    version: Option<u64>,
    action: Action,
    principal: Arc<Principal>,
    /// The hash of the value that keeps this caller on one version of a sticky route (a header's).
    sticky: Option<u64>,
}

impl Target {
    /// The model's qualified name (`tenant/name`, or the bare name in the default tenant).
    pub fn name(&self) -> &str {
        &self.model.name
    }

    /// The version the caller asked for (`None`: the model's version policy decides).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The same model with `version` asked for instead (access is per model, not per version).
    pub fn with_version(mut self, version: Option<u64>) -> Target {
        self.version = version;
        self
    }

    /// The request header whose value keeps a caller on one version, if the model's route is sticky by one:
    /// the transport reads it and passes the value to [`Target::with_sticky_value`].
    pub fn sticky_header(&self) -> Option<&str> {
        match &self.model.version_policy {
            yunmo_types::VersionPolicy::Routed(route) => match route.sticky()? {
                yunmo_types::Sticky::Header(name) => Some(name),
                yunmo_types::Sticky::Key => None,
            },
            _ => None,
        }
    }

    /// The same target with the value of its route's sticky header.
    pub fn with_sticky_value(mut self, value: &[u8]) -> Target {
        self.sticky = Some(yunmo_types::sticky_hash(value));
        self
    }

    /// The hash of the sticky header's value, if the transport gave one.
    pub(crate) fn sticky_hash(&self) -> Option<u64> {
        self.sticky
    }

    /// The model's record.
    pub fn record(&self) -> &Arc<ModelRecord> {
        &self.model
    }

    /// Fails unless this target was authorized for `call`'s caller and for an action that covers `action`
    /// (writing or inferring covers reading; nothing else covers another).
    pub(crate) fn permits(&self, call: &Call, action: Action) -> Result<(), ServiceError> {
        if !Arc::ptr_eq(&self.principal, &call.principal) {
            return Err(ServiceError::new(
                Code::PermissionDenied,
                format!("model '{}' was authorized for another caller (key '{}')", self.model.name, self.principal.key_id),
            ));
        }
        if self.action != action && action != Action::Read {
            return Err(ServiceError::new(
                Code::PermissionDenied,
                format!("model '{}' was authorized for {:?}, not {action:?}", self.model.name, self.action),
            ));
        }
        Ok(())
    }
}

impl InferenceService {
    /// The model `call`'s caller means by `model`'s name if it may do `action` on it (a model it cannot see
    /// is "not found"), with the version `model` asks for. `tenant/name` names a model as it is; a short name is resolved by [`yunmo_auth::pick`] (the
    /// caller's own model first). An inference refused here is counted like a request for a missing model;
    /// an allowed one's usage record gets the model.
    pub async fn authorize(&self, call: &Call, model: &ModelRef, action: Action) -> Result<Target, ServiceError> {
        let (name, principal) = (model.name.as_str(), &call.principal);
        let found = match name.split_once('/') {
            Some((tenant, short)) => {
                // `default/name` is how others may qualify a model of the default tenant (stored as `name`).
                let qualified = yunmo_registry::qualified_name(tenant, short);
                match self.model_record(&qualified).await {
                    Ok(model) if yunmo_auth::can_see(principal, &model) => Ok(model),
                    Ok(_) => Err(ServiceError::not_found(format!("model '{name}' not found"))),
                    Err(error) => Err(error),
                }
            }
            None => match self.models_named(name).await {
                Ok(candidates) => yunmo_auth::pick(principal, name, &candidates),
                Err(error) => Err(error),
            },
        };
        let result = found.and_then(|model| yunmo_auth::check(principal, &model, action).map(|()| model));
        match (&result, action, &call.usage) {
            (Err(error), Action::Infer, _) => self.count_refused(error),
            (Ok(model), Action::Infer, Some(usage)) => usage.set_model(&model.name, 0),
            _ => {}
        }
        Ok(Target { model: result?, version: model.version, action, principal: principal.clone(), sticky: None })
    }

    /// Admits `call` past its key's and tenant's rate limits and quotas and starts its usage record, which
    /// the returned guard writes when it is dropped (hold it until the answer has been sent). `protocol`
    /// names the transport in the record.
    pub async fn admit(&self, call: &mut Call, protocol: &'static str) -> Result<UsageGuard, ServiceError> {
        let guard = self.inner.gate.admit(&call.principal, protocol).await?;
        call.usage = Some(guard.cell().clone());
        call.deadline = Some(Instant::now() + self.inner.request_timeout);
        Ok(guard)
    }

    /// Every model the caller can see.
    pub async fn visible_models(&self, call: &Call) -> Result<Vec<ModelRecord>, ServiceError> {
        self.inner.gate.visible_models(&call.principal).await
    }
}

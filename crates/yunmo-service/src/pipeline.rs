//! Pipeline models: a version whose file is a pipeline declaration ([`yunmo_pipeline::spec`]) instead of a
//! model. Uploading one checks the whole graph against the models it names, which the uploader must be
//! allowed to call, and stores it with those models' names and versions pinned. Serving one runs its steps
//! in the plan's order: built-in steps on the blocking pool, model steps through each model's own queue (so
//! they keep their dynamic batching), all under the request's deadline; a caller needs to be allowed to call
//! the pipeline, not the models inside it (they run with its uploader's choice, as a stored procedure does).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use yunmo_auth::Action;
use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_pipeline::run::Resources;
use yunmo_pipeline::spec::{ModelInfo, PipelineSpec, Plan, StepKind};
use yunmo_registry::VersionRecord;
use yunmo_text::embed::EmbedTokenizer;
use yunmo_types::{InferInput, InferOutput, ModelRef, RequestedOutput, Signature, Tensor};

use crate::{Call, InferenceService, ServiceError};

/// The format name of pipeline versions.
pub const FORMAT: &str = "pipeline";
/// Largest pipeline declaration, bytes.
pub const MAX_DECLARATION_BYTES: usize = 1 << 20;

/// Whether an uploaded file's first bytes are a JSON object (a pipeline declaration).
pub(crate) fn is_declaration(head: &[u8]) -> bool {
    head.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{')
}

/// A loaded pipeline: the declaration, its plan and the model each model step calls.
pub(crate) struct Pipeline {
    spec: PipelineSpec,
    plan: Plan,
    /// Step index → (stored model name, version).
    models: HashMap<usize, (String, u64)>,
    resources: Resources,
}

/// The runtime entry for the format, so metadata and load paths find one: a pipeline is run by the
/// service, never by a backend.
pub(crate) struct PipelineFormat;

impl BackendFactory for PipelineFormat {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn platform(&self) -> &'static str {
        "yunmo_pipeline"
    }

    fn sniff(&self, _head: &[u8]) -> bool {
        false
    }

    fn inspect(&self, _path: &std::path::Path) -> Result<Signature, BackendError> {
        Err(BackendError::Runtime("a pipeline is checked by the service".into()))
    }

    fn load(&self, _path: &std::path::Path, _options: &LoadOptions) -> Result<Box<dyn BatchBackend>, BackendError> {
        Err(BackendError::Runtime("a pipeline is run by the service".into()))
    }
}

fn declaration_error(error: yunmo_pipeline::StepError) -> ServiceError {
    ServiceError::invalid(format!("pipeline: {error}"))
}

fn step_failed(step: &str, error: ServiceError) -> ServiceError {
    ServiceError { message: format!("step '{step}': {}", error.message), ..error }
}

impl InferenceService {
    /// Looks up the models a declaration names: `lookup` gives each `(name, version)`'s stored record.
    async fn model_infos<F, Fut>(
        &self,
        spec: &PipelineSpec,
        lookup: F,
    ) -> Result<HashMap<(String, Option<u64>), (String, ModelInfo)>, ServiceError>
    where
        F: Fn(String, Option<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Arc<VersionRecord>, ServiceError>>,
    {
        let mut infos = HashMap::new();
        for (name, version) in spec.models() {
            let record = lookup(name.clone(), version)
                .await
                .map_err(|error| ServiceError { message: format!("pipeline: model step '{name}': {}", error.message), ..error })?;
            if record.format == FORMAT || self.factory(&record.format)?.kind() != yunmo_backend::RuntimeKind::Tensor {
                return Err(ServiceError::invalid(format!(
                    "pipeline: model step '{name}': version {} is a {} model; a step calls tensor models (ONNX)",
                    record.version, record.format
                )));
            }
            let info = ModelInfo { version: record.version, signature: record.signature.clone(), labels: record.config.labels.clone() };
            infos.insert((name, version), (record.model.clone(), info));
        }
        Ok(infos)
    }

    /// Checks an uploaded declaration (at most [`MAX_DECLARATION_BYTES`]: the upload checks the size before
    /// reading the file) for `call` and rewrites it with every model's stored name and version pinned;
    /// returns the rewritten declaration and the pipeline's signature.
    pub(crate) async fn check_declaration(
        &self,
        call: &Call,
        bytes: &[u8],
        has_tokenizer: bool,
    ) -> Result<(Vec<u8>, Signature), ServiceError> {
        let spec = PipelineSpec::parse(bytes).map_err(declaration_error)?;
        if spec.needs_tokenizer() && !has_tokenizer {
            return Err(ServiceError::invalid(
                "pipeline: a tokenize step needs the version's tokenizer.json: upload it with the declaration (the `tokenizer` form field, or `yunmo models push --tokenizer`)",
            ));
        }
        let infos = self
            .model_infos(&spec, |name, version| async move {
                let target = self.authorize(call, &ModelRef::new(name, version), Action::Infer).await?;
                self.resolve(target.name(), target.version()).await
            })
            .await?;
        let plan_infos = infos.iter().map(|(key, (_, info))| (key.clone(), info.clone())).collect();
        let plan = spec.plan(&plan_infos, &self.inner.image_limits).map_err(declaration_error)?;
        // The same JSON with `model: {name, version}` of every step set to the stored name and version.
        let mut document: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| ServiceError::invalid(format!("pipeline: {error}")))?;
        for step in document["steps"].as_array_mut().into_iter().flatten() {
            let Some(model) = step.get_mut("model") else { continue };
            let key = (model["name"].as_str().unwrap_or_default().to_string(), model["version"].as_u64());
            if let Some((stored, info)) = infos.get(&key) {
                *model = serde_json::json!({ "name": stored, "version": info.version });
            }
        }
        let rewritten = serde_json::to_vec_pretty(&document).map_err(|error| ServiceError::internal(error.to_string()))?;
        Ok((rewritten, plan.signature))
    }

    /// Reads a stored declaration (names and versions already pinned) into a runnable pipeline, with the
    /// version's tokenizer.
    pub(crate) async fn open_pipeline(&self, bytes: &[u8], tokenizer: Option<&str>) -> Result<Pipeline, ServiceError> {
        let spec = PipelineSpec::parse(bytes).map_err(declaration_error)?;
        let tokenizer = match tokenizer {
            Some(json) => Some(EmbedTokenizer::from_json(json.as_bytes()).map_err(|error| ServiceError::invalid(error.to_string()))?),
            None if spec.needs_tokenizer() => return Err(ServiceError::invalid("a tokenize step needs the version's tokenizer.json")),
            None => None,
        };
        let infos = self.model_infos(&spec, |name, version| async move { self.resolve(&name, version).await }).await?;
        let plan_infos = infos.iter().map(|(key, (_, info))| (key.clone(), info.clone())).collect();
        let limits = self.inner.image_limits;
        let plan = spec.plan(&plan_infos, &limits).map_err(declaration_error)?;
        let mut models = HashMap::new();
        for (index, step) in spec.steps.iter().enumerate() {
            if let StepKind::Model(model) = &step.kind {
                let (stored, info) = &infos[&(model.name.clone(), model.version)];
                models.insert(index, (stored.clone(), info.version));
            }
        }
        Ok(Pipeline { spec, plan, models, resources: Resources { limits, tokenizer } })
    }

    /// Runs `pipeline` (version `version`) on a checked request.
    pub(crate) async fn run_pipeline(
        &self,
        version: &VersionRecord,
        pipeline: &Arc<Pipeline>,
        input: InferInput,
        output_names: Vec<String>,
        deadline: Instant,
    ) -> Result<InferOutput, ServiceError> {
        let started = Instant::now();
        let InferInput { id, inputs, outputs: requested } = input;
        let mut values: HashMap<String, Tensor> = inputs.into_iter().map(|tensor| (tensor.name().to_string(), tensor)).collect();
        for &index in &pipeline.plan.order {
            let step = &pipeline.spec.steps[index];
            let step_started = Instant::now();
            let made = match &step.kind {
                StepKind::Model(_) => {
                    self.run_model_step(pipeline, index, &values, deadline).await.map_err(|error| step_failed(&step.name, error))?
                }
                _ => {
                    let needed: HashMap<String, Tensor> =
                        step.inputs.values().filter_map(|value| values.get(value).map(|tensor| (value.clone(), tensor.clone()))).collect();
                    let running = pipeline.clone();
                    tokio::task::spawn_blocking(move || {
                        let step = &running.spec.steps[index];
                        yunmo_pipeline::run::run_builtin(
                            step,
                            running.plan.labels.get(&index).map(Vec::as_slice),
                            &needed,
                            &running.resources,
                        )
                    })
                    .await
                    .map_err(|error| ServiceError::internal(format!("step '{}' panicked: {error}", step.name)))?
                    .map_err(|error| match error {
                        yunmo_pipeline::StepError::Invalid(message) => ServiceError::invalid(message),
                        yunmo_pipeline::StepError::Config(message) => ServiceError::internal(message),
                    })?
                }
            };
            crate::metrics::pipeline_step(&version.model, version.version, &step.name, step_started.elapsed());
            for tensor in made {
                values.insert(tensor.name().to_string(), tensor);
            }
        }
        let mut outputs = Vec::with_capacity(output_names.len());
        for name in &output_names {
            let tensor = values.remove(name).ok_or_else(|| ServiceError::internal(format!("the pipeline produced no '{name}'")))?;
            outputs.push(tensor);
        }
        for (tensor, request) in outputs.iter_mut().zip(&requested) {
            if let Some(class_count) = request.class_count {
                *tensor = crate::classify::classify(tensor, class_count, &version.config.labels)?;
            }
        }
        Ok(InferOutput { model_version: version.version, id, outputs, queue_us: 0, compute_us: started.elapsed().as_micros() as u64 })
    }

    async fn run_model_step(
        &self,
        pipeline: &Pipeline,
        index: usize,
        values: &HashMap<String, Tensor>,
        deadline: Instant,
    ) -> Result<Vec<Tensor>, ServiceError> {
        let step = &pipeline.spec.steps[index];
        let (name, number) = &pipeline.models[&index];
        let record = self.resolve(name, Some(*number)).await?;
        let loaded = self.loaded(&record).await?;
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for (own, value) in &step.inputs {
            let tensor = values.get(value).ok_or_else(|| ServiceError::internal(format!("the value '{value}' was not produced")))?;
            inputs.push(tensor.clone().with_name(own.as_str()));
        }
        let outputs = step.outputs.keys().map(|own| RequestedOutput { name: own.clone(), class_count: None }).collect();
        let answer = Box::pin(self.infer_loaded(&record, &loaded, InferInput { id: None, inputs, outputs }, deadline)).await?;
        Ok(step.outputs.values().zip(answer.outputs).map(|(value, tensor)| tensor.with_name(value.as_str())).collect())
    }
}

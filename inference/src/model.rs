//! The ONNX seizure model: input `x` f32 `[batch, 100, time]`, output `probs` f32
//! `[time, batch, 4]` (time-major); the seizure probability is class 3.
//!
//! Two engines serve it ([`ModelEngine`]): the native runtime ([`crate::runtime`]) when it
//! recognises the graph's structure, and tract for any other ONNX model. With tract, plans are
//! optimised once per (batch, time) shape and shared (`Arc`) by every worker: tract 0.23
//! cannot run this graph with a symbolic batch > 1, so each plan has a concrete shape.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

pub use vigil_core::config::ModelEngine;

use crate::runtime::{NativeModel, UnsupportedModel};
use crate::spectrogram::N_BINS;
use crate::InferenceError;

/// Index of the seizure class in the model's softmax output.
pub const SEIZURE_CLASS: usize = 3;

type Plan = Arc<TypedRunnableModel>;

/// The loaded model, served by one engine.
pub struct SeizureModel {
    backend: Backend,
    /// Why the native runtime refused the model, when native was asked for.
    refusal: Option<UnsupportedModel>,
}

enum Backend {
    Native(NativeModel),
    Tract(TractModel),
}

/// The decoded graph with the `probs` output selected, and its optimised plans.
struct TractModel {
    graph: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl std::fmt::Debug for SeizureModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeizureModel")
            .field("engine", &self.engine())
            .finish_non_exhaustive()
    }
}

fn model_err(context: &'static str) -> impl FnOnce(TractError) -> InferenceError {
    move |e| InferenceError::Model {
        context,
        reason: format!("{e:#}"),
    }
}

impl SeizureModel {
    /// Loads the ONNX file (verify its checksum first: `vigil_core::model::ModelEntry::verify`)
    /// on the native runtime if it recognises the model, else on tract.
    pub fn load(path: &Path) -> Result<Self, InferenceError> {
        Self::load_with(path, ModelEngine::Native)
    }

    /// Loads the ONNX file on `engine`; `Native` falls back to tract (with a warning saying
    /// why) when the native runtime does not recognise the model's structure.
    pub fn load_with(path: &Path, engine: ModelEngine) -> Result<Self, InferenceError> {
        if engine == ModelEngine::Native {
            match NativeModel::load(path) {
                Ok(native) if native.bins() == N_BINS => {
                    return Ok(Self {
                        backend: Backend::Native(native),
                        refusal: None,
                    })
                }
                Ok(native) => {
                    let why = UnsupportedModel::Graph(format!(
                        "the model takes {} frequency bins, Vigil's spectrogram has {N_BINS}",
                        native.bins()
                    ));
                    return Self::fallback(path, why);
                }
                Err(why) => return Self::fallback(path, why),
            }
        }
        Ok(Self {
            backend: Backend::Tract(TractModel::load(path)?),
            refusal: None,
        })
    }

    fn fallback(path: &Path, why: UnsupportedModel) -> Result<Self, InferenceError> {
        tracing::warn!(
            model = %path.display(),
            reason = %why,
            "the native runtime does not recognise this model; running it on tract"
        );
        Ok(Self {
            backend: Backend::Tract(TractModel::load(path)?),
            refusal: Some(why),
        })
    }

    /// The engine serving the model.
    pub fn engine(&self) -> ModelEngine {
        match self.backend {
            Backend::Native(_) => ModelEngine::Native,
            Backend::Tract(_) => ModelEngine::Tract,
        }
    }

    /// Why the native runtime refused the model, if native was asked for and tract serves it.
    pub fn native_refusal(&self) -> Option<&UnsupportedModel> {
        self.refusal.as_ref()
    }

    /// Prepares for calls of `batch` windows of `n_cols` columns (tract optimises a plan per
    /// shape; the native runtime sizes this thread's buffers), so the first real call is not slow.
    pub fn warm_up(&self, batch: usize, n_cols: usize) -> Result<(), InferenceError> {
        match &self.backend {
            Backend::Tract(t) => t.plan(batch, n_cols).map(|_| ()),
            Backend::Native(n) => n
                .predict(&vec![vec![0.0; N_BINS * n_cols]; batch], n_cols)
                .map(|_| ()),
        }
    }

    /// Seizure probability per column for each window. `windows[i]` is a bin-major
    /// `[N_BINS x n_cols]` normalised spectrogram.
    pub fn predict(
        &self,
        windows: &[Vec<f32>],
        n_cols: usize,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        match &self.backend {
            Backend::Native(n) => n.predict(windows, n_cols),
            Backend::Tract(t) => t.predict(windows, n_cols),
        }
    }
}

impl TractModel {
    fn load(path: &Path) -> Result<Self, InferenceError> {
        let mut graph = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(model_err("load ONNX model"))?;
        let outputs = graph
            .output_outlets()
            .map_err(model_err("read outputs"))?
            .to_vec();
        let probs = outputs
            .iter()
            .copied()
            .find(|o| graph.outlet_label(*o) == Some("probs") || graph.node(o.node).name == "probs")
            .ok_or_else(|| InferenceError::Model {
                context: "select output",
                reason: "the model has no `probs` output".into(),
            })?;
        graph
            .select_output_outlets(&[probs])
            .map_err(model_err("select probs output"))?;
        Ok(Self {
            graph,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The optimised plan for `batch` windows of `n_cols` columns, built on first use.
    fn plan(&self, batch: usize, n_cols: usize) -> Result<Plan, InferenceError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(&(batch, n_cols)) {
            return Ok(plan.clone());
        }
        let plan = self
            .graph
            .clone()
            .with_input_fact(0, f32::fact([batch, N_BINS, n_cols]).into())
            .map_err(model_err("fix input shape"))?
            .into_optimized()
            .map_err(model_err("optimise"))?
            .into_runnable()
            .map_err(model_err("build plan"))?;
        plans.insert((batch, n_cols), plan.clone());
        Ok(plan)
    }

    fn predict(
        &self,
        windows: &[Vec<f32>],
        n_cols: usize,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let batch = windows.len();
        if batch == 0 {
            return Ok(Vec::new());
        }
        if batch > 1 {
            // tract runs a batch at the same cost per window as one window, and every batch
            // size would cache its own plan with activations sized for it (~110 MB at 23):
            // one window at a time keeps one plan.
            let mut out = Vec::with_capacity(batch);
            for window in windows {
                out.extend(self.predict(std::slice::from_ref(window), n_cols)?);
            }
            return Ok(out);
        }
        let mut input = Vec::with_capacity(batch * N_BINS * n_cols);
        for w in windows {
            if w.len() != N_BINS * n_cols {
                return Err(InferenceError::Shape {
                    expected: N_BINS * n_cols,
                    found: w.len(),
                });
            }
            input.extend_from_slice(w);
        }
        let tensor = Tensor::from_shape(&[batch, N_BINS, n_cols], &input)
            .map_err(model_err("build input tensor"))?;
        let plan = self.plan(batch, n_cols)?;
        let outputs = plan
            .run(tvec!(tensor.into()))
            .map_err(model_err("run model"))?;
        let probs = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(model_err("read output"))?;
        let shape = probs.shape();
        if shape != [n_cols, batch, 4] {
            return Err(InferenceError::Model {
                context: "output shape",
                reason: format!("expected [{n_cols}, {batch}, 4], got {shape:?}"),
            });
        }
        Ok((0..batch)
            .map(|b| (0..n_cols).map(|t| probs[[t, b, SEIZURE_CLASS]]).collect())
            .collect())
    }
}

//! A shard's model thread: it runs the shard's window batches, so the shard goes on taking
//! records (and sending their display traces) while the model works.
//!
//! Batches are evaluated in the order they were sent, and their results come back in that
//! order. The thread stops when the shard drops its handle.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc as async_mpsc;

use crate::model::SeizureModel;
use crate::InferenceError;

type BatchResult = Result<Vec<Vec<f32>>, InferenceError>;

/// Model inputs of one batch: normalised spectrograms of `n_cols` columns each.
struct ModelBatch {
    inputs: Vec<Vec<f32>>,
    n_cols: usize,
}

/// The handle a shard holds on its model thread.
pub(crate) struct ModelThread {
    batches: mpsc::Sender<ModelBatch>,
    results: async_mpsc::UnboundedReceiver<BatchResult>,
}

fn stopped() -> InferenceError {
    InferenceError::ModelThread("the model thread stopped".into())
}

impl ModelThread {
    /// Starts the model thread of shard `shard`.
    pub(crate) fn spawn(model: Arc<SeizureModel>, shard: usize) -> Result<Self, InferenceError> {
        let (batches, inbox) = mpsc::channel::<ModelBatch>();
        let (outbox, results) = async_mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("vigil-model-{shard}"))
            .spawn(move || {
                for batch in inbox {
                    let started = Instant::now();
                    let result = model.predict(&batch.inputs, batch.n_cols);
                    metrics::histogram!("vigil_inference_model_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("vigil_inference_model_batch_windows")
                        .record(batch.inputs.len() as f64);
                    if outbox.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| InferenceError::ModelThread(e.to_string()))?;
        Ok(Self { batches, results })
    }

    /// Queues a batch behind those sent before.
    pub(crate) fn submit(
        &self,
        inputs: Vec<Vec<f32>>,
        n_cols: usize,
    ) -> Result<(), InferenceError> {
        self.batches
            .send(ModelBatch { inputs, n_cols })
            .map_err(|_| stopped())
    }

    /// The outputs of the oldest batch not yet returned, one per input window.
    pub(crate) async fn next(&mut self) -> BatchResult {
        self.results.recv().await.unwrap_or_else(|| Err(stopped()))
    }

    /// [`Self::next`] from a thread outside any async runtime.
    pub(crate) fn next_blocking(&mut self) -> BatchResult {
        self.results
            .blocking_recv()
            .unwrap_or_else(|| Err(stopped()))
    }
}

//! A shard's model thread: it builds the spectrograms of the shard's window batches and runs
//! the model on them, so the shard goes on taking records (and sending their display traces)
//! while that work is done.
//!
//! Batches are evaluated in the order they were sent, and their results come back in that
//! order. The thread stops when the shard drops its handle.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc as async_mpsc;

use crate::model::SeizureModel;
use crate::windowing::WindowInput;
use crate::InferenceError;

type BatchResult = Result<Vec<Vec<f32>>, InferenceError>;

/// The handle a shard holds on its model thread.
pub(crate) struct ModelThread {
    batches: mpsc::Sender<Vec<WindowInput>>,
    results: async_mpsc::UnboundedReceiver<BatchResult>,
}

fn stopped() -> InferenceError {
    InferenceError::ModelThread("the model thread stopped".into())
}

impl ModelThread {
    /// Starts the model thread of shard `shard`.
    pub(crate) fn spawn(model: Arc<SeizureModel>, shard: usize) -> Result<Self, InferenceError> {
        let (batches, inbox) = mpsc::channel::<Vec<WindowInput>>();
        let (outbox, results) = async_mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("vigil-model-{shard}"))
            .spawn(move || {
                for batch in inbox {
                    let started = Instant::now();
                    let n_cols = batch.first().map_or(0, WindowInput::n_cols);
                    let inputs: Vec<Vec<f32>> =
                        batch.iter().map(WindowInput::spectrogram).collect();
                    drop(batch);
                    metrics::histogram!("vigil_inference_spectrogram_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    let started = Instant::now();
                    let result = model.predict(&inputs, n_cols);
                    metrics::histogram!("vigil_inference_model_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("vigil_inference_model_batch_windows")
                        .record(inputs.len() as f64);
                    if outbox.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| InferenceError::ModelThread(e.to_string()))?;
        Ok(Self { batches, results })
    }

    /// Queues a batch of windows (of one length) behind those sent before.
    pub(crate) fn submit(&self, windows: Vec<WindowInput>) -> Result<(), InferenceError> {
        self.batches.send(windows).map_err(|_| stopped())
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

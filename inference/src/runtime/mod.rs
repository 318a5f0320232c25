//! Native runtime for the seizure-model graph family (Conv2d+ReLU, Conv2d+ReLU collapsing
//! frequency, stacked bidirectional LSTMs, Linear, Softmax) in ONNX semantics.
//!
//! The graph is read from the ONNX protobuf and checked node by node ([`graph`]); a model that
//! is not of this family is refused with [`UnsupportedModel`], and
//! [`crate::model::SeizureModel`] then serves it with tract. The convolutions are GEMMs through
//! ndarray (matrixmultiply picks AVX/FMA kernels at run time): conv1 as im2col + GEMM, conv2 in
//! Winograd F(4, 3) (one GEMM per tap for other time kernels). The LSTM's input projections
//! are GEMMs too, one per direction and block of time steps; its recurrence (across every
//! sequence of the call) and the element-wise loops run in [`simd`]'s register-blocked
//! kernels, compiled for AVX-512, AVX2 + FMA and the baseline and chosen at run time.
//!
//! Buffers live in a per-thread scratch reused across calls, so steady-state calls allocate
//! only their result.

mod conv;
mod gemm;
mod graph;
mod lstm;
mod math;
mod simd;
mod winograd;

/// Deterministic test inputs and comparisons shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_values {
    /// `n` values uniform in `[-scale / 2, scale / 2)` from an LCG seeded with `seed`.
    pub(crate) fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    /// Largest absolute difference.
    pub(crate) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }
}

use std::cell::RefCell;
use std::path::Path;

use gemm::{gemm as gemm_into, View};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::model::SEIZURE_CLASS;
use crate::InferenceError;
use conv::ConvShape;
use graph::Structure;
use lstm::LstmScratch;

/// Why the native runtime does not run a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UnsupportedModel {
    /// The file could not be read or decoded as ONNX.
    #[error("cannot read the ONNX model: {0}")]
    Read(String),
    /// The graph as a whole is not of the recognised family.
    #[error("graph not recognised: {0}")]
    Graph(String),
    /// A node differs from what the native kernels implement.
    #[error("node {node:?} ({op}) not supported: {reason}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op: String,
        /// What differs.
        reason: String,
    },
}

/// Most windows run through the LSTM together; larger calls are split into even chunks, which
/// bounds the per-thread scratch (~0.5 MB per window) without losing GEMM efficiency.
const MAX_CHUNK: usize = 32;

/// The recognised model with its weights laid out for the native kernels.
#[derive(Debug)]
pub struct NativeModel {
    s: Structure,
    /// conv2 weight as one matrix per time tap (any odd time kernel).
    conv2_taps: Vec<f32>,
    /// conv2 weight transformed for Winograd F(4, 3) (one matrix per transformed point), when
    /// the time kernel is 3 wide.
    conv2_winograd: Option<Vec<gemm::Weights>>,
}

/// Per-thread buffers, grown to the largest call seen and reused.
#[derive(Debug, Default)]
struct Scratch {
    padded_input: Vec<f32>,
    im2col: Vec<f32>,
    conv1: Vec<f32>,
    seq_a: Vec<f32>,
    seq_b: Vec<f32>,
    logits: Vec<f32>,
    lstm: LstmScratch,
    winograd: winograd::WinogradScratch,
    /// conv1's output in column order, for the per-tap conv2.
    plain: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl NativeModel {
    /// Reads and recognises an ONNX file.
    pub fn load(path: &Path) -> Result<Self, UnsupportedModel> {
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| UnsupportedModel::Read(format!("{e:#}")))?;
        Self::from_proto(&proto)
    }

    /// Recognises a decoded ONNX model.
    pub fn from_proto(proto: &pb::ModelProto) -> Result<Self, UnsupportedModel> {
        let s = graph::recognise(proto)?;
        let conv2_taps = conv::conv2_taps(&s.conv2);
        let conv2_winograd = (s.conv2.kw == 3).then(|| winograd::transform_weights(&s.conv2));
        Ok(Self {
            s,
            conv2_taps,
            conv2_winograd,
        })
    }

    /// Frequency rows each input column has.
    pub fn bins(&self) -> usize {
        self.s.bins
    }

    /// Seizure probability per column for each window (`[bins x n_cols]`, bin-major), as
    /// [`crate::model::SeizureModel::predict`].
    pub fn predict(
        &self,
        windows: &[Vec<f32>],
        n_cols: usize,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let expected = self.s.bins * n_cols;
        if let Some(w) = windows.iter().find(|w| w.len() != expected) {
            return Err(InferenceError::Shape {
                expected,
                found: w.len(),
            });
        }
        if windows.is_empty() || n_cols == 0 {
            return Ok(vec![Vec::new(); windows.len()]);
        }
        let chunks = windows.len().div_ceil(MAX_CHUNK);
        let size = windows.len().div_ceil(chunks);
        let mut out = Vec::with_capacity(windows.len());
        SCRATCH.with_borrow_mut(|scratch| {
            for chunk in windows.chunks(size) {
                self.predict_chunk(chunk, n_cols, scratch, &mut out);
            }
        });
        Ok(out)
    }

    /// Runs conv1 + ReLU alone on one window (this thread's scratch); for per-piece benchmarks.
    pub fn run_conv1(&self, window: &[f32], n_cols: usize) {
        let (c1, c2) = (&self.s.conv1, &self.s.conv2);
        let shape = ConvShape::new(self.s.bins, n_cols, c1, c2);
        SCRATCH.with_borrow_mut(|sc| {
            conv::conv1(
                c1,
                c2.pad_w,
                shape,
                window,
                &mut sc.padded_input,
                &mut sc.im2col,
                &mut sc.conv1,
            );
        });
    }

    /// Runs conv2 + ReLU alone on this thread's last conv1 output (zeros if none); for
    /// per-piece benchmarks.
    pub fn run_conv2(&self, n_cols: usize) {
        let (c1, c2) = (&self.s.conv1, &self.s.conv2);
        let shape = ConvShape::new(self.s.bins, n_cols, c1, c2);
        SCRATCH.with_borrow_mut(|sc| {
            sc.conv1.resize(shape.a1_len(c1), 0.0);
            sc.seq_a.resize(n_cols * c2.out_ch, 0.0);
            let out = &mut sc.seq_a[..];
            self.conv2(
                shape,
                &sc.conv1,
                out,
                c2.out_ch,
                &mut sc.winograd,
                &mut sc.plain,
            );
        });
    }

    /// Runs the LSTM layers alone on `batch` sequences of `n_cols` steps (this thread's
    /// scratch, zero input if none); for per-piece benchmarks.
    pub fn run_lstm(&self, batch: usize, n_cols: usize) {
        SCRATCH.with_borrow_mut(|sc| {
            sc.seq_a.resize(n_cols * batch * self.s.conv2.out_ch, 0.0);
            self.lstm_stack(batch, n_cols, sc);
        });
    }

    /// The LSTM layers over `seq_a` (`[n_cols][batch][conv2.out_ch]`); returns the output width,
    /// the output being in `seq_a`.
    fn lstm_stack(&self, batch: usize, n_cols: usize, sc: &mut Scratch) -> usize {
        let mut width = self.s.conv2.out_ch;
        for layer in &self.s.lstm {
            sc.seq_b.resize(n_cols * batch * 2 * layer.hidden, 0.0);
            lstm::bilstm(
                layer,
                &sc.seq_a[..n_cols * batch * width],
                n_cols,
                batch,
                &mut sc.seq_b,
                &mut sc.lstm,
            );
            std::mem::swap(&mut sc.seq_a, &mut sc.seq_b);
            width = 2 * layer.hidden;
        }
        width
    }

    fn predict_chunk(
        &self,
        windows: &[Vec<f32>],
        n_cols: usize,
        sc: &mut Scratch,
        out: &mut Vec<Vec<f32>>,
    ) {
        let batch = windows.len();
        self.features(windows, n_cols, sc);
        let width = self.lstm_stack(batch, n_cols, sc);
        let rows = n_cols * batch;
        self.head(&sc.seq_a[..rows * width], rows, &mut sc.logits);
        let classes = self.s.classes;
        out.extend((0..batch).map(|b| {
            (0..n_cols)
                .map(|t| sc.logits[(t * batch + b) * classes + SEIZURE_CLASS])
                .collect()
        }));
    }

    /// Both convolutions of every window into `seq_a` (`[n_cols][batch][conv2.out_ch]`).
    fn features(&self, windows: &[Vec<f32>], n_cols: usize, sc: &mut Scratch) {
        let (c1, c2) = (&self.s.conv1, &self.s.conv2);
        let shape = ConvShape::new(self.s.bins, n_cols, c1, c2);
        let stride = windows.len() * c2.out_ch;
        sc.seq_a.resize(n_cols * stride, 0.0);
        for (b, x) in windows.iter().enumerate() {
            conv::conv1(
                c1,
                c2.pad_w,
                shape,
                x,
                &mut sc.padded_input,
                &mut sc.im2col,
                &mut sc.conv1,
            );
            let out = &mut sc.seq_a[b * c2.out_ch..];
            self.conv2(
                shape,
                &sc.conv1,
                out,
                stride,
                &mut sc.winograd,
                &mut sc.plain,
            );
        }
    }

    /// conv2 + ReLU of one window: Winograd when the time kernel is 3 wide, else one GEMM
    /// per tap.
    fn conv2(
        &self,
        shape: ConvShape,
        a1: &[f32],
        out: &mut [f32],
        stride: usize,
        wsc: &mut winograd::WinogradScratch,
        plain: &mut Vec<f32>,
    ) {
        let c2 = &self.s.conv2;
        match &self.conv2_winograd {
            Some(u) => winograd::conv2(c2, u, shape, a1, out, stride, wsc),
            None => conv::conv2(c2, &self.conv2_taps, shape, a1, out, stride, plain),
        }
    }

    /// Linear + softmax over the classes, in place in `logits` (`[rows][classes]`).
    fn head(&self, x: &[f32], rows: usize, logits: &mut Vec<f32>) {
        let classes = self.s.classes;
        let features = self.s.fc_weight.len() / classes;
        logits.resize(rows * classes, 0.0);
        for row in logits.chunks_exact_mut(classes) {
            row.copy_from_slice(&self.s.fc_bias);
        }
        let a = View::rows(x, rows, features);
        let w = View::rows(&self.s.fc_weight, features, classes);
        gemm_into(logits, classes, true, a, w);
        for row in logits.chunks_exact_mut(classes) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }
}

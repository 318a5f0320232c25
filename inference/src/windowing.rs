//! Streaming windowing with the reference semantics of
//! `brainmaze_eeg_models.seizure.predict_channel_seizure_probability` (published method,
//! `min_valid_fraction = 0`, `fill_recording_edges = True`), computed incrementally as samples
//! arrive.
//!
//! Output grid: point `k` (time `k * 0.5 s` from the stream's first sample) is the 1 s segment
//! of half-second blocks `k-1` and `k`. A point is *valid* when its segment has only finite
//! samples and is not flat; invalid points are NaN ("not evaluated"), as is point 0.
//! Regular windows of `window_s` start every `step_s` from the first sample; each keeps its
//! columns except `discard_edges_s` at both ends (the first window keeps its left edge);
//! overlapping windows combine with a NaN-ignoring max. At the end of a recording
//! ([`ChannelStream::finish`]) the last window keeps its right edge, or, when the end is off
//! the step grid, one extra window aligned to the end fills only what no regular window
//! covered.
//!
//! Finality: once the regular window starting at block `b` is processed, no later window can
//! change points before `b + step + 1 + discard`, so those are emitted as final. With the
//! defaults (300/20/10 s) a point is final about 270 s after it was recorded, and the first
//! points need 300 s of signal: the model's 300 s context is the price of its accuracy.
//! [`ChannelStream::provisional`] exposes earlier, partial maxima for low-latency alerting.

use std::collections::VecDeque;

use crate::model::SeizureModel;
use crate::raw_samples::RawSamples;
use crate::spectrogram::{SpectrogramPlan, WindowSpectrogram};
use crate::InferenceError;

/// Window configuration in seconds (multiples of 0.5 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowParams {
    /// Window length; the model was designed for 300 s.
    pub window_s: f64,
    /// Step between window starts; smaller = lower latency, more compute.
    pub step_s: f64,
    /// Seconds dropped at each window edge (the BiLSTM has little context there).
    pub discard_edges_s: f64,
}

impl WindowParams {
    /// Seconds of signal before a stream position that its not yet final points depend on:
    /// the points up to `window - edge` old are not final there, and the oldest window that
    /// covers them started `window - edge` before them (`crate::handover`).
    pub fn handover_lookback_s(&self) -> f64 {
        2.0 * (self.window_s - self.discard_edges_s)
    }
}

impl Default for WindowParams {
    fn default() -> Self {
        Self {
            window_s: 300.0,
            step_s: 20.0,
            discard_edges_s: 10.0,
        }
    }
}

/// Validated window geometry in half-second blocks and samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGeometry {
    /// Sampling rate (even integer >= 200).
    pub fs: usize,
    /// Samples per half-second block (fs / 2).
    pub hop: usize,
    /// Window length in blocks.
    pub window_blocks: usize,
    /// Step in blocks.
    pub step_blocks: usize,
    /// Discarded blocks at each edge.
    pub edge_blocks: usize,
    /// Spectrogram columns (and model outputs) per window.
    pub n_cols: usize,
}

fn half_seconds(value: f64, name: &'static str, minimum: usize) -> Result<usize, InferenceError> {
    let v2 = value * 2.0;
    if !v2.is_finite() || (v2 - v2.round()).abs() > 1e-9 || v2.round() < minimum as f64 {
        return Err(InferenceError::Params(format!(
            "{name} = {value} must be a multiple of 0.5 s and >= {} s",
            minimum as f64 / 2.0
        )));
    }
    Ok(v2.round() as usize)
}

/// The sampling rate as the model accepts it: an even whole number of Hz >= 200.
pub fn model_sample_rate(fs: f64) -> Result<usize, InferenceError> {
    if fs.is_finite()
        && fs.fract() == 0.0
        && fs >= 200.0
        && (fs as u64).is_multiple_of(2)
        && fs <= 65_536.0
    {
        Ok(fs as usize)
    } else {
        Err(InferenceError::SampleRate(fs))
    }
}

impl WindowGeometry {
    /// Checks the parameters as the reference does.
    pub fn new(fs: f64, params: WindowParams) -> Result<Self, InferenceError> {
        let fs = model_sample_rate(fs)?;
        let window_blocks = half_seconds(params.window_s, "window_s", 4)?;
        let step_blocks = half_seconds(params.step_s, "step_s", 1)?;
        let edge_blocks = half_seconds(params.discard_edges_s, "discard_edges_s", 0)?;
        let n_cols = window_blocks - 1;
        if n_cols <= 2 * edge_blocks {
            return Err(InferenceError::Params(format!(
                "discard_edges_s = {} leaves nothing of window_s = {}",
                params.discard_edges_s, params.window_s
            )));
        }
        if step_blocks > n_cols - 2 * edge_blocks {
            return Err(InferenceError::Params(format!(
                "step_s = {} leaves uncovered time: need step_s <= window_s - 2 * discard_edges_s - 0.5",
                params.step_s
            )));
        }
        Ok(Self {
            fs,
            hop: fs / 2,
            window_blocks,
            step_blocks,
            edge_blocks,
            n_cols,
        })
    }

    /// Blocks a live stream holds: a window and a step (the end-aligned window starts up to
    /// a step before the next regular one), and the segment's other block.
    pub fn retained_blocks(&self) -> usize {
        self.window_blocks + self.step_blocks + 2
    }

    /// Window length in samples.
    pub fn window_samples(&self) -> usize {
        self.window_blocks * self.hop
    }
}

/// A deque addressed by absolute index, dropping its front as data stops being needed.
#[derive(Debug, Default)]
struct Indexed<T> {
    offset: usize,
    items: VecDeque<T>,
}

impl<T> Indexed<T> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            offset: 0,
            items: VecDeque::with_capacity(capacity),
        }
    }
    fn end(&self) -> usize {
        self.offset + self.items.len()
    }
    fn get(&self, index: usize) -> Option<&T> {
        index
            .checked_sub(self.offset)
            .and_then(|i| self.items.get(i))
    }
    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        index
            .checked_sub(self.offset)
            .and_then(|i| self.items.get_mut(i))
    }
    fn push(&mut self, item: T) {
        self.items.push_back(item);
    }
    fn drop_before(&mut self, index: usize) {
        while self.offset < index && self.items.pop_front().is_some() {
            self.offset += 1;
        }
    }
    /// Gives back capacity a backlog (or a whole recording pushed at once) grew it to.
    fn fit(&mut self, capacity: usize) {
        if self.items.capacity() > capacity * 3 / 2 && self.items.len() <= capacity {
            self.items.shrink_to(capacity);
        }
    }
}

/// Finalized probabilities for consecutive grid points.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalizedPoints {
    /// Grid index of `values[0]` (time = index * 0.5 s from the stream start).
    pub first_index: usize,
    /// Seizure probability per point; NaN = not evaluated.
    pub values: Vec<f32>,
}

/// Blocks a stream's `blocks` holds between chunks: the latest, plus room for a chunk's own.
const LATEST_BLOCKS: usize = 4;

/// Incremental seizure probability for one channel of one stream.
pub struct ChannelStream {
    geometry: WindowGeometry,
    spectrogram: SpectrogramPlan,
    /// Raw samples as received, from the oldest a window may still need (f32 widens to f64
    /// exactly, so keeping f32 halves the memory at no cost in parity). A window needs all of
    /// its own: the reference's flat-segment column is rounding noise that depends on the
    /// exact bits of the window's mean and standard deviation, so those are computed as numpy
    /// does, over the raw window, and its columns are built from them when it is batched.
    samples: RawSamples,
    /// Per completed block: (all finite, min, max); only the latest is kept, for the validity
    /// of the segment the next block completes.
    blocks: Indexed<(bool, f32, f32)>,
    /// Per grid point: segment validity.
    valid: Indexed<bool>,
    /// Per grid point not yet final: max over regular windows so far.
    prob: Indexed<f32>,
    /// Next regular window start, in blocks.
    next_start: usize,
    /// Starts of evaluated windows handed out whose input is not built yet.
    awaiting: VecDeque<usize>,
    /// Model output of the latest regular window, for the recording-end edge.
    last_window: Option<(usize, Option<Vec<f32>>)>,
    /// A regular window has been handed out as a job (its points can start to be final).
    windowed: bool,
}

/// One regular window ready for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowJob {
    /// First block of the window.
    pub start: usize,
    /// Some point of the window is valid, so the model runs on it: its input is taken by
    /// [`ChannelStream::take_input`] when the job is batched, not when it is queued (a queued
    /// input would hold ~300 KB; the stream keeps the window's samples until then).
    pub evaluate: bool,
}

/// A window's raw samples, copied from its stream when the window is batched; the thread
/// that runs the model builds the spectrogram ([`WindowInput::spectrogram`]).
pub struct WindowInput {
    plan: SpectrogramPlan,
    samples: Vec<f32>,
    hop: usize,
}

impl WindowInput {
    fn view(&self) -> WindowSpectrogram<'_> {
        WindowSpectrogram {
            plan: &self.plan,
            samples: &self.samples,
            hop: self.hop,
        }
    }

    /// Spectrogram columns (and model outputs) of the window.
    pub fn n_cols(&self) -> usize {
        self.view().n_cols()
    }

    /// The model input: the normalised spectrogram, bin-major `[N_BINS x n_cols]`.
    pub fn spectrogram(&self) -> Vec<f32> {
        self.view().normalised()
    }
}

/// The windows one pushed chunk made ready, and how far points are final once they are done.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedChunk {
    /// Windows to evaluate, in start order.
    pub jobs: Vec<WindowJob>,
    /// Points before this grid index are final once `jobs` are merged.
    pub final_end: usize,
}

/// NaN-ignoring max (`np.fmax`): NaN only when both are NaN.
pub fn fmax(a: f32, b: f32) -> f32 {
    if a.is_nan() {
        b
    } else if b.is_nan() {
        a
    } else {
        a.max(b)
    }
}

impl ChannelStream {
    /// A stream at sampling rate `fs` with the given windows.
    pub fn new(fs: f64, params: WindowParams) -> Result<Self, InferenceError> {
        let geometry = WindowGeometry::new(fs, params)?;
        Ok(Self::with_plan(geometry, SpectrogramPlan::new(geometry.fs)))
    }

    /// A stream with a spectrogram plan shared with the patient's other channels.
    pub fn with_plan(geometry: WindowGeometry, spectrogram: SpectrogramPlan) -> Self {
        // Sized once, so a live stream's deques never double past what they need.
        let retained = geometry.retained_blocks();
        Self {
            spectrogram,
            geometry,
            samples: RawSamples::default(),
            blocks: Indexed::with_capacity(LATEST_BLOCKS),
            valid: Indexed::with_capacity(retained),
            prob: Indexed::with_capacity(retained),
            next_start: 0,
            awaiting: VecDeque::new(),
            last_window: None,
            windowed: false,
        }
    }

    /// Appends samples (NaN = missing), runs every window that became complete, and returns
    /// the points that became final.
    pub fn push(
        &mut self,
        model: &SeizureModel,
        chunk: &[f32],
    ) -> Result<FinalizedPoints, InferenceError> {
        let mut points = push_all(model, std::slice::from_mut(self), &[chunk], usize::MAX)?;
        Ok(points
            .pop()
            .expect("push_all returns one result per stream"))
    }

    /// Appends samples (NaN = missing) and returns the regular windows that became complete,
    /// as model jobs. Their inputs come from [`ChannelStream::take_input`] and their outputs
    /// go back through [`ChannelStream::complete`], in order, before
    /// [`ChannelStream::finish`]; later chunks may be pushed in between.
    pub fn push_samples(&mut self, chunk: &[f32]) -> PushedChunk {
        let hop = self.geometry.hop;
        for &x in chunk {
            self.samples.push(x);
            if self.samples.end().is_multiple_of(hop) {
                self.complete_block();
            }
        }
        let mut jobs = Vec::new();
        while (self.next_start * hop + self.geometry.window_samples()) <= self.samples.end() {
            let start = self.next_start;
            let evaluate = self.worth_evaluating(start);
            if evaluate {
                self.awaiting.push_back(start);
            }
            jobs.push(WindowJob { start, evaluate });
            self.windowed = true;
            self.next_start += self.geometry.step_blocks;
        }
        let final_end = if self.windowed {
            self.next_start + 1 + self.geometry.edge_blocks
        } else {
            0
        };
        self.trim();
        PushedChunk { jobs, final_end }
    }

    /// Merges the model outputs of one pushed chunk's jobs (`(start, output)` in job order)
    /// and returns the points that became final.
    pub fn complete(
        &mut self,
        results: Vec<(usize, Option<Vec<f32>>)>,
        final_end: usize,
    ) -> FinalizedPoints {
        for (start, output) in results {
            // A job completed without its input (nothing to evaluate after all) frees its window.
            self.awaiting.retain(|&s| s != start);
            let lo = if start == 0 {
                0
            } else {
                self.geometry.edge_blocks
            };
            let hi = self.geometry.n_cols - self.geometry.edge_blocks;
            self.merge(start, lo, hi, output.as_deref(), false);
            self.last_window = Some((start, output));
        }
        self.take_final(final_end)
    }

    /// Ends the recording: applies the reference's end-of-recording rules and returns every
    /// remaining point (through the last complete 1 s segment).
    pub fn finish(&mut self, model: &SeizureModel) -> Result<FinalizedPoints, InferenceError> {
        let g = self.geometry;
        let n = self.samples.end();
        let n_out = n / g.hop;
        if n >= g.window_samples() {
            let last_start = (n - g.window_samples()) / g.hop;
            match self.last_window.take() {
                Some((start, output)) if start == last_start => {
                    // The last regular window also keeps its right edge.
                    let edge = g.n_cols - g.edge_blocks;
                    self.merge(start, edge, g.n_cols, output.as_deref(), false);
                }
                _ => {
                    // A window aligned to the end fills only what no regular window covered.
                    let output = if self.worth_evaluating(last_start) {
                        let input = self.build_input(last_start).spectrogram();
                        model.predict(&[input], g.n_cols)?.pop()
                    } else {
                        None
                    };
                    self.merge(last_start, g.edge_blocks, g.n_cols, output.as_deref(), true);
                }
            }
        }
        while self.prob.end() < n_out {
            self.prob.push(f32::NAN);
        }
        Ok(self.take_final(n_out))
    }

    /// Current (possibly partial) maxima of points not yet final: `(first_index, values)`.
    /// A value can only grow until final; NaN = no window has covered the point yet.
    pub fn provisional(&self) -> (usize, Vec<f32>) {
        (self.prob.offset, self.prob.items.iter().copied().collect())
    }

    fn complete_block(&mut self) {
        let hop = self.geometry.hop;
        let block = self.blocks.end();
        let start = block * hop;
        let stats = (start..start + hop)
            .filter_map(|i| self.samples.get(i))
            .fold((true, f32::NAN, f32::NAN), |(finite, lo, hi), x| {
                (finite && x.is_finite(), lo.min(x), hi.max(x))
            });
        self.blocks.push(stats);
        // Grid point `block` is the segment of blocks block-1 and block.
        let point = block;
        let valid = point >= 1
            && match (self.blocks.get(point - 1), self.blocks.get(point)) {
                (Some(&(f1, lo1, hi1)), Some(&(f2, lo2, hi2))) => {
                    f1 && f2 && hi1.max(hi2) > lo1.min(lo2)
                }
                _ => false,
            };
        self.valid.push(valid);
        self.prob.push(f32::NAN);
    }

    /// The input of a job from [`ChannelStream::push_samples`] that is to be evaluated: the
    /// window's raw samples. `None` for a window that needs no model call (checked when it
    /// was handed out; its points' validity is known by then) or was already taken.
    pub fn take_input(&mut self, start: usize) -> Option<WindowInput> {
        let at = self.awaiting.iter().position(|&s| s == start)?;
        self.awaiting.remove(at);
        Some(self.build_input(start))
    }

    /// Some point the window at block `start` keeps is valid.
    fn worth_evaluating(&self, start: usize) -> bool {
        let g = self.geometry;
        let lo = if start == 0 { 0 } else { g.edge_blocks };
        (start + 1 + lo..start + 1 + g.n_cols).any(|k| self.valid.get(k).copied().unwrap_or(false))
    }

    /// The input of the window starting at block `start`.
    fn build_input(&self, start: usize) -> WindowInput {
        let g = self.geometry;
        WindowInput {
            plan: self.spectrogram.clone(),
            samples: self.samples.range(start * g.hop, g.window_samples()),
            hop: g.hop,
        }
    }

    /// Combines window output columns `lo..hi` into the pending points; `fill_only` writes
    /// only points still NaN (the end-aligned window).
    fn merge(
        &mut self,
        start: usize,
        lo: usize,
        hi: usize,
        output: Option<&[f32]>,
        fill_only: bool,
    ) {
        let Some(output) = output else { return };
        for (j, &p) in output.iter().enumerate().take(hi).skip(lo) {
            let k = start + 1 + j;
            let value = if self.valid.get(k).copied().unwrap_or(false) {
                p
            } else {
                f32::NAN
            };
            if let Some(slot) = self.prob.get_mut(k) {
                *slot = if fill_only {
                    if slot.is_nan() {
                        value
                    } else {
                        *slot
                    }
                } else {
                    fmax(*slot, value)
                };
            }
        }
    }

    fn take_final(&mut self, end: usize) -> FinalizedPoints {
        let end = end.min(self.prob.end());
        let first_index = self.prob.offset;
        let count = end.saturating_sub(first_index);
        let values: Vec<f32> = self.prob.items.drain(..count).collect();
        self.prob.offset += count;
        FinalizedPoints {
            first_index,
            values,
        }
    }

    /// Drops what no future window needs: the end-aligned window may start up to one step
    /// before the next regular one, and a queued job's input is taken from its window later.
    /// Raw samples go sooner: the end-aligned window starts at most a window before the
    /// last sample, never earlier.
    fn trim(&mut self) {
        let g = self.geometry;
        let oldest_queued = self.awaiting.front().copied().unwrap_or(usize::MAX);
        let keep_block = self
            .next_start
            .saturating_sub(g.step_blocks)
            .min(oldest_queued);
        let end_window = self.samples.end().saturating_sub(g.window_samples()) / g.hop;
        self.samples
            .drop_before(end_window.min(oldest_queued) * g.hop);
        self.blocks.drop_before(self.blocks.end().saturating_sub(1));
        self.valid
            .drop_before((keep_block + 1).min(self.prob.offset));
        let retained = g.retained_blocks();
        self.blocks.fit(LATEST_BLOCKS);
        self.valid.fit(retained);
        self.prob.fit(retained);
    }
}

/// Pushes `chunks[i]` into `streams[i]`, runs the windows that became complete `batch` per
/// model call in stream and job order (the order a shard takes queued windows into a batch,
/// here in one synchronous call), and returns each stream's newly final points. The streams
/// share one window geometry.
pub fn push_all(
    model: &SeizureModel,
    streams: &mut [ChannelStream],
    chunks: &[&[f32]],
    batch: usize,
) -> Result<Vec<FinalizedPoints>, InferenceError> {
    let pushed: Vec<PushedChunk> = streams
        .iter_mut()
        .zip(chunks)
        .map(|(stream, chunk)| stream.push_samples(chunk))
        .collect();
    // (stream, job) of each input, in the order the model gets them.
    let mut places = Vec::new();
    let mut inputs = Vec::new();
    for (ch, p) in pushed.iter().enumerate() {
        for (j, job) in p.jobs.iter().enumerate() {
            if let Some(input) = streams[ch].take_input(job.start) {
                places.push((ch, j));
                inputs.push(input);
            }
        }
    }
    let mut results: Vec<Vec<(usize, Option<Vec<f32>>)>> = pushed
        .iter()
        .map(|p| p.jobs.iter().map(|job| (job.start, None)).collect())
        .collect();
    let mut places = places.into_iter();
    for group in inputs.chunks(batch.max(1)) {
        let n_cols = group[0].n_cols();
        let group: Vec<Vec<f32>> = group.iter().map(WindowInput::spectrogram).collect();
        for (output, (ch, j)) in model.predict(&group, n_cols)?.into_iter().zip(&mut places) {
            results[ch][j].1 = Some(output);
        }
    }
    Ok(streams
        .iter_mut()
        .zip(results)
        .zip(&pushed)
        .map(|((stream, done), p)| stream.complete(done, p.final_end))
        .collect())
}

/// The whole-recording prediction (the reference function), through the streaming path.
pub fn predict_channel(
    model: &SeizureModel,
    samples: &[f32],
    fs: f64,
    params: WindowParams,
) -> Result<Vec<f32>, InferenceError> {
    let mut stream = ChannelStream::new(fs, params)?;
    let mut out = stream.push(model, samples)?.values;
    out.extend(stream.finish(model)?.values);
    Ok(out)
}

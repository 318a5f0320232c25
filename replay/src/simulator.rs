//! Simulated patients made from a real recording: what a wearable would send if it had
//! recorded that EEG.
//!
//! [`PatientSimulator::new`] turns a [`Recording`] into a montage in microvolts at a model
//! rate: channel selection, optional bipolar derivations from referential labels
//! (`Fp1-F7` = `Fp1` - `F7`), unit conversion from the file's physical dimension, resampling
//! with the anti-aliasing filter of [`crate::resample`] when the file's rate is not one the
//! model accepts, and optional synthetic seizure-like bursts
//! ([`vigil_inference::synthetic::add_burst`], 3 Hz spike-and-wave-like, 150 uV, 2 s ramps)
//! added at given times on every channel. Bursts are documented test signals, not seizures.
//!
//! [`PatientSimulator::patient`] then makes one device stream: the samples cut into
//! [`EegChunk`]s of `chunk_s` (0.25-1 s like real devices), optionally looped, with the
//! device's clock offset added to `start_ns`, random chunk dropouts (a chunk lost in transit:
//! its `seq` is skipped so the gateway sees a gap) and send-time jitter. Several patients
//! from one recording start at different offsets into it, so they do not send identical
//! samples at the same moment.

use rand::{Rng, SeedableRng};
use uuid::Uuid;
use vigil_core::record::{EegChunk, SignalUnit};

use crate::edf::Recording;
use crate::resample::{model_rate_for, ResampleError, Resampler};

/// Which channels, and how.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Montage {
    /// Every ordinary signal, labels as in the file.
    #[default]
    AsRecorded,
    /// These signals, by label, in this order.
    Select(Vec<String>),
    /// Bipolar derivations `A-B` = signal `A` minus signal `B` (referential labels; a
    /// trailing `.` or a `EEG ` prefix / `-REF` suffix in the file's labels is ignored).
    Bipolar(Vec<(String, String)>),
}

/// How a recording becomes simulated patients.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    /// Channel selection / montage.
    pub montage: Montage,
    /// Rate sent to the gateway; `None` = the file's rate if the model accepts it, else the
    /// next accepted rate ([`model_rate_for`]).
    pub rate_hz: Option<f64>,
    /// Factor from the file's physical values to microvolts; `None` = from the physical
    /// dimension (`uV`, `mV`, `V`, `nV`), and an error when that is empty or unknown.
    pub unit_scale: Option<f64>,
    /// Times the recording is repeated end to end before bursts are added (1 = as is), to
    /// reach the model's 300 s context with short recordings. Each join is a discontinuity.
    pub repeat: usize,
    /// Synthetic bursts `(from_s, to_s)` to inject, in time of the (repeated) recording.
    pub bursts: Vec<(f64, f64)>,
    /// Burst amplitude in microvolts.
    pub burst_amplitude_uv: f64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            montage: Montage::AsRecorded,
            rate_hz: None,
            unit_scale: None,
            repeat: 1,
            bursts: Vec::new(),
            burst_amplitude_uv: vigil_inference::synthetic::BURST_AMPLITUDE_UV,
        }
    }
}

/// Why a recording cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A channel the montage names is not in the file.
    #[error("no signal labelled {0:?} in the recording (labels: {1})")]
    UnknownChannel(String, String),
    /// Signals of the montage have different rates or lengths.
    #[error("signals {0:?} and {1:?} differ in rate or length: cannot form one EEG stream")]
    Mismatch(String, String),
    /// The unit cannot be converted to microvolts.
    #[error(
        "signal {label:?} has physical dimension {dimension:?}: give a unit scale to microvolts"
    )]
    Unit {
        /// Signal label.
        label: String,
        /// Its dimension.
        dimension: String,
    },
    /// Resampling is impossible.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The recording has no ordinary signal or no samples.
    #[error("the recording has no samples to send")]
    Empty,
    /// Two channels of the montage have the same label (EegChunk labels must be unique).
    #[error("channel label {0:?} appears twice: select channels or use a bipolar montage")]
    DuplicateLabel(String),
    /// Discontinuous file with overlapping records.
    #[error("signal {0:?}: records overlap in time (broken EDF+D file)")]
    Overlap(String),
}

/// Microvolts per physical unit.
pub fn microvolts_per(dimension: &str) -> Option<f64> {
    match dimension.trim() {
        "uV" | "µV" | "μV" | "microV" | "uv" => Some(1.0),
        "mV" | "mv" => Some(1e3),
        "V" | "v" => Some(1e6),
        "nV" | "nv" => Some(1e-3),
        _ => None,
    }
}

fn normalise_label(label: &str) -> String {
    let l = label.trim().trim_end_matches('.');
    let l = l.strip_prefix("EEG ").unwrap_or(l);
    let l = l.strip_suffix("-REF").unwrap_or(l);
    l.to_ascii_lowercase()
}

/// A recording prepared for streaming: montage in microvolts at a model rate, bursts added.
#[derive(Debug, Clone)]
pub struct PatientSimulator {
    channels: Vec<String>,
    rate_hz: f64,
    /// `samples[channel][i]`, microvolts, f32 as carried on the bus.
    samples: Vec<Vec<f32>>,
    bursts: Vec<(f64, f64)>,
}

impl PatientSimulator {
    /// Prepares `recording` as `config` says.
    pub fn new(recording: &Recording, config: &SimulatorConfig) -> Result<Self, SimulatorError> {
        let labels = || {
            recording
                .signals
                .iter()
                .map(|s| s.header.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |label: &str| -> Result<usize, SimulatorError> {
            recording
                .signal_index(label)
                .or_else(|| {
                    let want = normalise_label(label);
                    recording
                        .signals
                        .iter()
                        .position(|s| normalise_label(&s.header.label) == want)
                })
                .ok_or_else(|| SimulatorError::UnknownChannel(label.to_owned(), labels()))
        };
        // (output label, + signal, - signal)
        let derivations: Vec<(String, usize, Option<usize>)> = match &config.montage {
            Montage::AsRecorded => recording
                .signals
                .iter()
                .enumerate()
                .map(|(i, s)| (s.header.label.clone(), i, None))
                .collect(),
            Montage::Select(names) => names
                .iter()
                .map(|n| Ok((n.clone(), find(n)?, None)))
                .collect::<Result<_, SimulatorError>>()?,
            Montage::Bipolar(pairs) => pairs
                .iter()
                .map(|(a, b)| Ok((format!("{a}-{b}"), find(a)?, Some(find(b)?))))
                .collect::<Result<_, SimulatorError>>()?,
        };
        for (i, (label, _, _)) in derivations.iter().enumerate() {
            if derivations[..i].iter().any(|(l, _, _)| l == label) {
                return Err(SimulatorError::DuplicateLabel(label.clone()));
            }
        }
        let first = derivations.first().ok_or(SimulatorError::Empty)?;
        let reference = &recording.signals[first.1];
        let fs = reference.sample_rate_hz;
        let mut rows = Vec::with_capacity(derivations.len());
        for (label, plus, minus) in &derivations {
            let signal_uv = |index: usize| -> Result<Vec<f64>, SimulatorError> {
                let s = &recording.signals[index];
                if s.sample_rate_hz != fs || s.samples.len() != reference.samples.len() {
                    return Err(SimulatorError::Mismatch(
                        reference.header.label.clone(),
                        s.header.label.clone(),
                    ));
                }
                let scale = config
                    .unit_scale
                    .or_else(|| microvolts_per(&s.header.physical_dimension))
                    .ok_or_else(|| SimulatorError::Unit {
                        label: s.header.label.clone(),
                        dimension: s.header.physical_dimension.clone(),
                    })?;
                let x = recording
                    .continuous_samples(index)
                    .ok_or_else(|| SimulatorError::Overlap(s.header.label.clone()))?;
                Ok(x.into_iter().map(|v| v * scale).collect())
            };
            let mut x = signal_uv(*plus)?;
            if let Some(minus) = minus {
                for (a, b) in x.iter_mut().zip(signal_uv(*minus)?) {
                    *a -= b;
                }
            }
            rows.push((label.clone(), x));
        }
        let rate_hz = config.rate_hz.unwrap_or_else(|| model_rate_for(fs));
        let resampler = (rate_hz != fs)
            .then(|| Resampler::new(fs, rate_hz))
            .transpose()?;
        let mut channels = Vec::with_capacity(rows.len());
        let mut samples = Vec::with_capacity(rows.len());
        for (label, x) in rows {
            let x = match &resampler {
                Some(r) => r.process(&x),
                None => x,
            };
            let mut x = x.repeat(config.repeat.max(1));
            for &burst in &config.bursts {
                vigil_inference::synthetic::add_burst(
                    &mut x,
                    rate_hz,
                    burst,
                    config.burst_amplitude_uv,
                );
            }
            channels.push(label);
            samples.push(x.into_iter().map(|v| v as f32).collect::<Vec<f32>>());
        }
        if samples.first().is_none_or(Vec::is_empty) {
            return Err(SimulatorError::Empty);
        }
        Ok(Self {
            channels,
            rate_hz,
            samples,
            bursts: config.bursts.clone(),
        })
    }

    /// Channel labels sent.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Rate sent, in Hz.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// `samples[channel][i]` in microvolts, as sent (bursts included).
    pub fn samples(&self) -> &[Vec<f32>] {
        &self.samples
    }

    /// Injected bursts `(from_s, to_s)`.
    pub fn bursts(&self) -> &[(f64, f64)] {
        &self.bursts
    }

    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.len() as f64 / self.rate_hz
    }

    /// One simulated device stream (see [`DeviceProfile`]).
    pub fn patient(&self, profile: DeviceProfile) -> SimulatedPatient<'_> {
        SimulatedPatient {
            source: self,
            profile,
        }
    }
}

/// How one simulated device behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    /// Patient id the device is bound to.
    pub patient_id: String,
    /// Device id.
    pub device_id: String,
    /// Stream id of this session.
    pub stream_id: Uuid,
    /// First `seq`.
    pub first_seq: u64,
    /// True time of the first sample, UTC ns.
    pub start_ns: i64,
    /// Chunk length in seconds (real devices send 0.25-1 s).
    pub chunk_s: f64,
    /// Where in the recording this patient starts, seconds (wraps around).
    pub offset_s: f64,
    /// Times the recording is played (1 = once).
    pub loops: usize,
    /// Device clock minus true time, ns, added to every `start_ns` the device sends.
    pub clock_offset_ns: i64,
    /// Probability that a chunk is lost in transit (its `seq` is skipped).
    pub dropout_probability: f64,
    /// Largest random delay added to each chunk's send time, seconds.
    pub jitter_s: f64,
    /// Seed of the dropout and jitter draws.
    pub seed: u64,
}

impl DeviceProfile {
    /// A well-behaved device: 0.5 s chunks, played once, no offset, loss or jitter.
    pub fn new(patient_id: impl Into<String>, device_id: impl Into<String>, start_ns: i64) -> Self {
        Self {
            patient_id: patient_id.into(),
            device_id: device_id.into(),
            stream_id: Uuid::new_v4(),
            first_seq: 0,
            start_ns,
            chunk_s: 0.5,
            offset_s: 0.0,
            loops: 1,
            clock_offset_ns: 0,
            dropout_probability: 0.0,
            jitter_s: 0.0,
            seed: 0,
        }
    }
}

/// One chunk as the device would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChunk {
    /// Seconds after the stream's first sample at which the chunk is complete and sent
    /// (its end time plus jitter).
    pub send_at_s: f64,
    /// The record, or `None` when this chunk is lost in transit (its `seq` is used up).
    pub chunk: Option<EegChunk>,
}

/// A device stream over a [`PatientSimulator`]'s samples.
#[derive(Debug, Clone)]
pub struct SimulatedPatient<'a> {
    source: &'a PatientSimulator,
    profile: DeviceProfile,
}

impl SimulatedPatient<'_> {
    /// The device profile.
    pub fn profile(&self) -> &DeviceProfile {
        &self.profile
    }

    /// Samples per chunk (at least one).
    pub fn chunk_samples(&self) -> usize {
        ((self.profile.chunk_s * self.source.rate_hz).round() as usize).max(1)
    }

    /// Samples per channel sent over the whole stream (all loops).
    pub fn total_samples(&self) -> usize {
        self.source.len() * self.profile.loops
    }

    /// The chunks in send order. The last chunk may be shorter.
    pub fn chunks(&self) -> impl Iterator<Item = PlannedChunk> + '_ {
        let n = self.source.len();
        let per = self.chunk_samples();
        let total = self.total_samples();
        let offset = ((self.profile.offset_s * self.source.rate_hz).round() as usize) % n.max(1);
        let rate = self.source.rate_hz;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.profile.seed);
        (0..total.div_ceil(per)).map(move |k| {
            let from = k * per;
            let to = (from + per).min(total);
            let lost = self.profile.dropout_probability > 0.0
                && rng.random::<f64>() < self.profile.dropout_probability;
            let jitter = if self.profile.jitter_s > 0.0 {
                rng.random::<f64>() * self.profile.jitter_s
            } else {
                0.0
            };
            let send_at_s = to as f64 / rate + jitter;
            let chunk = (!lost).then(|| EegChunk {
                patient_id: self.profile.patient_id.clone(),
                device_id: self.profile.device_id.clone(),
                stream_id: self.profile.stream_id,
                seq: self.profile.first_seq + k as u64,
                start_ns: self.profile.start_ns
                    + self.profile.clock_offset_ns
                    + (from as f64 * 1e9 / rate).round() as i64,
                received_ns: 0,
                sample_rate_hz: rate,
                channels: self.source.channels.clone(),
                unit: SignalUnit::Microvolt,
                samples: self
                    .source
                    .samples
                    .iter()
                    .map(|row| (from..to).map(|i| row[(i + offset) % n]).collect())
                    .collect(),
            });
            PlannedChunk { send_at_s, chunk }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edf::{EdfHeader, EdfVariant, Signal, SignalHeader};

    fn recording(labels: &[&str], fs: f64, n: usize, dimension: &str) -> Recording {
        let header = |label: &str| SignalHeader {
            label: label.into(),
            transducer: String::new(),
            physical_dimension: dimension.into(),
            physical_min: -1.0,
            physical_max: 1.0,
            digital_min: -1,
            digital_max: 1,
            prefilter: String::new(),
            samples_per_record: fs as usize,
        };
        Recording {
            header: EdfHeader {
                variant: EdfVariant::Edf,
                patient: String::new(),
                recording: String::new(),
                start_date: "01.01.24".into(),
                start_time: "00.00.00".into(),
                n_records: n / fs as usize,
                record_duration_s: 1.0,
                signals: labels.iter().map(|l| header(l)).collect(),
            },
            signals: labels
                .iter()
                .enumerate()
                .map(|(c, l)| Signal {
                    header: header(l),
                    sample_rate_hz: fs,
                    samples: (0..n).map(|i| (c * 1000 + i) as f64).collect(),
                })
                .collect(),
            annotations: Vec::new(),
            record_onsets_s: (0..n / fs as usize).map(|r| r as f64).collect(),
        }
    }

    #[test]
    fn bipolar_montage_units_and_chunking() {
        let rec = recording(&["Fp1.", "F7.", "Cz."], 256.0, 1024, "mV");
        let sim = PatientSimulator::new(
            &rec,
            &SimulatorConfig {
                montage: Montage::Bipolar(vec![("Fp1".into(), "F7".into())]),
                ..Default::default()
            },
        )
        .expect("sim");
        assert_eq!(sim.channels(), ["Fp1-F7"]);
        // (0*1000 + i) - (1000 + i) = -1000 mV = -1e6 uV.
        assert!(sim.samples()[0].iter().all(|&v| v == -1e6));
        let patient = sim.patient(DeviceProfile {
            chunk_s: 0.3,
            loops: 2,
            offset_s: 1.0,
            ..DeviceProfile::new("p1", "d1", 1_000_000_000)
        });
        let chunks: Vec<_> = patient.chunks().collect();
        assert_eq!(patient.chunk_samples(), 77);
        assert_eq!(chunks.len(), 2048usize.div_ceil(77));
        let sent: usize = chunks
            .iter()
            .map(|c| c.chunk.as_ref().map_or(0, EegChunk::samples_per_channel))
            .sum();
        assert_eq!(sent, 2048);
        let last = chunks.last().and_then(|c| c.chunk.as_ref()).expect("last");
        assert_eq!(last.seq, chunks.len() as u64 - 1);
        assert_eq!(
            last.start_ns,
            1_000_000_000 + (77.0 * 26.0 * 1e9 / 256.0) as i64
        );
    }

    #[test]
    fn unknown_units_and_labels_are_errors() {
        let dup = recording(&["T8-P8", "T8-P8"], 256.0, 256, "uV");
        let err = PatientSimulator::new(&dup, &SimulatorConfig::default()).expect_err("dup");
        assert!(err.to_string().contains("appears twice"), "{err}");
        let rec = recording(&["RAW", "X"], 1000.0, 1000, "");
        let err = PatientSimulator::new(&rec, &SimulatorConfig::default()).expect_err("unit");
        assert!(err.to_string().contains("physical dimension"), "{err}");
        let ok = PatientSimulator::new(
            &rec,
            &SimulatorConfig {
                unit_scale: Some(2.0),
                ..Default::default()
            },
        )
        .expect("scaled");
        assert_eq!(ok.rate_hz(), 1000.0);
        assert_eq!(ok.samples()[1][3], 2006.0);
        let err = PatientSimulator::new(
            &rec,
            &SimulatorConfig {
                montage: Montage::Select(vec!["Cz".into()]),
                unit_scale: Some(1.0),
                ..Default::default()
            },
        )
        .expect_err("label");
        assert!(err.to_string().contains("RAW, X"), "{err}");
    }

    #[test]
    fn dropouts_skip_seq_and_jitter_delays_sends() {
        let rec = recording(&["Cz"], 256.0, 256 * 20, "uV");
        let sim = PatientSimulator::new(&rec, &SimulatorConfig::default()).expect("sim");
        let patient = sim.patient(DeviceProfile {
            dropout_probability: 0.2,
            jitter_s: 0.1,
            seed: 7,
            ..DeviceProfile::new("p1", "d1", 0)
        });
        let chunks: Vec<_> = patient.chunks().collect();
        let lost = chunks.iter().filter(|c| c.chunk.is_none()).count();
        assert!(lost > 0 && lost < chunks.len() / 2, "lost {lost}");
        for (k, c) in chunks.iter().enumerate() {
            let end = (k + 1) as f64 * 0.5;
            assert!(c.send_at_s >= end && c.send_at_s <= end + 0.1);
            if let Some(chunk) = &c.chunk {
                assert_eq!(chunk.seq, k as u64);
            }
        }
    }
}

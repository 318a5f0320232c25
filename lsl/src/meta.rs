//! What the bridge reads from an LSL stream's info: rate, channel labels and units (from the
//! XML description, `desc/channels/channel/{label,unit}` as in the XDF meta-data
//! conventions), and the checks that refuse a stream Vigil cannot carry faithfully.

use vigil_core::config::LslKind;
use vigil_core::record::RecordLimits;

use crate::error::LslError;

/// One channel as the stream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDesc {
    /// `label`, empty when absent.
    pub label: String,
    /// `unit`, empty when absent.
    pub unit: String,
}

/// The parts of a stream's info the bridge uses, independent of liblsl's types.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDesc {
    /// LSL `name`.
    pub name: String,
    /// LSL `type`.
    pub lsl_type: String,
    /// LSL `source_id`.
    pub source_id: String,
    /// Nominal rate in Hz; 0 = irregular.
    pub nominal_rate_hz: f64,
    /// Channel count of the stream.
    pub channel_count: usize,
    /// `true` for `string` channels.
    pub string_format: bool,
    /// `desc/channels/channel` entries (may be empty or shorter than `channel_count`).
    pub channels: Vec<ChannelDesc>,
}

/// An EEG stream as it will be sent: labels and the factor from its units to µV.
#[derive(Debug, Clone, PartialEq)]
pub struct EegLayout {
    /// Sample rate in Hz.
    pub rate_hz: f64,
    /// Channel labels (unique).
    pub labels: Vec<String>,
    /// Per channel, the factor to µV.
    pub scales: Vec<f64>,
}

/// A heart-rate stream: where bpm and RR are.
#[derive(Debug, Clone, PartialEq)]
pub struct HrLayout {
    /// Channel of beats per minute.
    pub bpm: usize,
    /// Channel of the RR interval, with its factor to ms.
    pub rr: Option<(usize, f64)>,
}

/// The factor from `unit` to microvolts: µV, mV and V (symbols or words, any case).
pub fn microvolt_scale(unit: &str) -> Option<f64> {
    let unit = unit.trim().to_lowercase();
    match unit.as_str() {
        "uv" | "µv" | "μv" | "microvolt" | "microvolts" => Some(1.0),
        "mv" | "millivolt" | "millivolts" => Some(1e3),
        "v" | "volt" | "volts" => Some(1e6),
        _ => None,
    }
}

fn millisecond_scale(unit: &str) -> Option<f64> {
    match unit.trim().to_lowercase().as_str() {
        "" | "ms" | "millisecond" | "milliseconds" => Some(1.0),
        "s" | "second" | "seconds" => Some(1e3),
        _ => None,
    }
}

impl StreamDesc {
    fn label(&self, index: usize) -> String {
        self.channels
            .get(index)
            .map(|c| c.label.trim().to_owned())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| format!("ch{}", index + 1))
    }

    fn refuse(&self, why: String) -> LslError {
        LslError::Refused {
            stream: self.name.clone(),
            why,
        }
    }

    /// Checks the stream can be sent as `kind` (its LSL type and format).
    pub fn check_kind(&self, kind: LslKind) -> Result<(), LslError> {
        if !self.lsl_type.eq_ignore_ascii_case(kind.lsl_type()) {
            return Err(self.refuse(format!(
                "its type is {:?}, configured as {}",
                self.lsl_type,
                kind.lsl_type()
            )));
        }
        if self.string_format {
            return Err(self.refuse("its channels are strings, not numbers".to_owned()));
        }
        Ok(())
    }

    /// The EEG layout, or why the stream is refused: irregular rate, too many channels,
    /// duplicate labels, or a unit other than µV, mV, V (`default_unit` stands in for a
    /// missing one).
    pub fn eeg_layout(&self, default_unit: &str) -> Result<EegLayout, LslError> {
        self.check_kind(LslKind::Eeg)?;
        if !(self.nominal_rate_hz.is_finite() && self.nominal_rate_hz > 0.0) {
            return Err(self.refuse(
                "it has an irregular sampling rate; EEG needs the amplifier's nominal rate"
                    .to_owned(),
            ));
        }
        let max = RecordLimits::default().max_channels;
        if self.channel_count == 0 || self.channel_count > max {
            return Err(self.refuse(format!(
                "it has {} channels; Vigil carries 1..={max}",
                self.channel_count
            )));
        }
        let mut labels = Vec::with_capacity(self.channel_count);
        let mut scales = Vec::with_capacity(self.channel_count);
        for index in 0..self.channel_count {
            let label = self.label(index);
            if labels.contains(&label) {
                return Err(self.refuse(format!("channel label {label:?} appears twice")));
            }
            let unit = self
                .channels
                .get(index)
                .map(|c| c.unit.trim())
                .filter(|u| !u.is_empty())
                .unwrap_or(default_unit);
            let Some(scale) = microvolt_scale(unit) else {
                let why = if unit.is_empty() {
                    format!(
                        "channel {label:?} has no unit in the stream's description; set \
                         default_unit (uV, mV or V) for this stream if you know it"
                    )
                } else {
                    format!(
                        "channel {label:?} has unit {unit:?}; Vigil accepts microvolts, \
                         millivolts or volts (uV, mV, V) and converts them to uV"
                    )
                };
                return Err(self.refuse(why));
            };
            labels.push(label);
            scales.push(scale);
        }
        Ok(EegLayout {
            rate_hz: self.nominal_rate_hz,
            labels,
            scales,
        })
    }

    /// The heart-rate layout: the channel labelled `bpm` (or `hr`, `heart_rate`; else the
    /// first) and the one labelled `rr` (or `rr_ms`, `ibi`; else the second, if any), RR in
    /// ms or s.
    pub fn hr_layout(&self) -> Result<HrLayout, LslError> {
        self.check_kind(LslKind::Hr)?;
        if self.channel_count == 0 || self.channel_count > 2 {
            return Err(self.refuse(format!(
                "a heart-rate stream has 1 (bpm) or 2 (bpm, RR) channels, this one {}",
                self.channel_count
            )));
        }
        let find = |names: &[&str]| {
            (0..self.channel_count).find(|&i| {
                let label = self.label(i).to_lowercase();
                names.contains(&label.as_str())
            })
        };
        let bpm = find(&["bpm", "hr", "heart_rate", "heartrate"]).unwrap_or(0);
        let rr = if self.channel_count == 2 {
            let index = find(&["rr", "rr_ms", "ibi", "rri"]).unwrap_or(1 - bpm);
            if index == bpm {
                return Err(self.refuse("bpm and RR are the same channel".to_owned()));
            }
            let unit = self.channels.get(index).map_or("", |c| c.unit.as_str());
            let scale = millisecond_scale(unit).ok_or_else(|| {
                self.refuse(format!("the RR channel has unit {unit:?}; use ms or s"))
            })?;
            Some((index, scale))
        } else {
            None
        };
        Ok(HrLayout { bpm, rr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eeg(units: &[&str], rate: f64) -> StreamDesc {
        StreamDesc {
            name: "amp".into(),
            lsl_type: "EEG".into(),
            source_id: String::new(),
            nominal_rate_hz: rate,
            channel_count: units.len(),
            string_format: false,
            channels: units
                .iter()
                .enumerate()
                .map(|(i, u)| ChannelDesc {
                    label: format!("C{i}"),
                    unit: (*u).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn volts_millivolts_and_microvolts_scale_to_microvolts() {
        let layout = eeg(&["microvolts", "mV", "V", "µV"], 256.0)
            .eeg_layout("")
            .expect("known units");
        assert_eq!(layout.scales, vec![1.0, 1e3, 1e6, 1.0]);
        assert_eq!(layout.labels, vec!["C0", "C1", "C2", "C3"]);
    }

    #[test]
    fn unknown_or_missing_units_are_refused_with_the_channel_named() {
        let err = eeg(&["uV", "mmHg"], 256.0)
            .eeg_layout("")
            .expect_err("mmHg");
        assert!(
            err.to_string().contains("\"C1\" has unit \"mmHg\""),
            "{err}"
        );
        let err = eeg(&["uV", ""], 256.0).eeg_layout("").expect_err("missing");
        assert!(err.to_string().contains("default_unit"), "{err}");
        let layout = eeg(&["", ""], 256.0)
            .eeg_layout("mV")
            .expect("default unit");
        assert_eq!(layout.scales, vec![1e3, 1e3]);
    }

    #[test]
    fn irregular_eeg_and_wrong_types_are_refused() {
        let err = eeg(&["uV"], 0.0).eeg_layout("").expect_err("irregular");
        assert!(err.to_string().contains("irregular"), "{err}");
        let mut markers = eeg(&["uV"], 256.0);
        markers.lsl_type = "Markers".into();
        assert!(markers.eeg_layout("").is_err());
        let mut strings = eeg(&["uV"], 256.0);
        strings.string_format = true;
        assert!(strings.eeg_layout("").is_err());
    }

    #[test]
    fn missing_labels_are_numbered_and_duplicates_refused() {
        let mut desc = eeg(&["uV", "uV"], 250.0);
        desc.channels.clear();
        let layout = desc.eeg_layout("uV").expect("numbered");
        assert_eq!(layout.labels, vec!["ch1", "ch2"]);
        let mut dup = eeg(&["uV", "uV"], 250.0);
        dup.channels[1].label = "C0".into();
        assert!(dup.eeg_layout("").is_err());
    }

    #[test]
    fn heart_rate_channels_are_found_by_label() {
        let desc = StreamDesc {
            name: "polar".into(),
            lsl_type: "HR".into(),
            source_id: String::new(),
            nominal_rate_hz: 0.0,
            channel_count: 2,
            string_format: false,
            channels: vec![
                ChannelDesc {
                    label: "RR".into(),
                    unit: "s".into(),
                },
                ChannelDesc {
                    label: "BPM".into(),
                    unit: "bpm".into(),
                },
            ],
        };
        let layout = desc.hr_layout().expect("hr");
        assert_eq!(layout.bpm, 1);
        assert_eq!(layout.rr, Some((0, 1e3)));
    }
}

//! Seizure annotations from the formats real data sets ship, as one [`SeizureEvent`] list per
//! recording:
//!
//! - EDF+ annotations ([`from_edf_annotations`]), selected by a text predicate;
//! - CHB-MIT `chbNN-summary.txt` ([`parse_chbmit_summary`]);
//! - TUH EEG Seizure Corpus `.csv_bi` ([`parse_tuh_csv_bi`]);
//! - BIDS `*_events.tsv` as written by SzCORE / epilepsy2bids ([`parse_bids_events`]).
//!
//! Times are seconds from the recording's first sample. A malformed line is an error naming
//! the line, never silently skipped: a lost seizure annotation would make a detector look
//! better than it is.

use crate::edf::Annotation;

/// One annotated seizure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeizureEvent {
    /// Onset, seconds from the start of the recording.
    pub onset_s: f64,
    /// Duration in seconds (0 for a point annotation without duration).
    pub duration_s: f64,
    /// Channels involved, when the annotation says (`None` = whole recording / unknown).
    pub channels: Option<Vec<String>>,
    /// Label as written (`seiz`, `sz_foc`, `fnsz`, `seizure`, ...).
    pub label: String,
}

impl SeizureEvent {
    /// End, seconds from the start of the recording.
    pub fn end_s(&self) -> f64 {
        self.onset_s + self.duration_s
    }
}

/// The seizures of one recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordingAnnotations {
    /// Recording name (file name or BIDS/TUH base name).
    pub recording: String,
    /// Recording duration in seconds, when the annotation file states it.
    pub duration_s: Option<f64>,
    /// Seizures, in file order.
    pub events: Vec<SeizureEvent>,
}

/// Why an annotation file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnotationError {
    /// A line does not have the expected form.
    #[error("line {line}: {problem}: {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
        /// The line (cut to 120 chars).
        text: String,
    },
    /// The file is inconsistent as a whole.
    #[error("{0}")]
    File(String),
}

fn line_error(line: usize, problem: impl Into<String>, text: &str) -> AnnotationError {
    AnnotationError::Line {
        line: line + 1,
        problem: problem.into(),
        text: text.chars().take(120).collect(),
    }
}

fn number(value: &str, line: usize, text: &str, what: &str) -> Result<f64, AnnotationError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            line_error(
                line,
                format!("{what} {value:?} is not a finite number"),
                text,
            )
        })
}

/// EDF+ annotations whose text `is_seizure` accepts, e.g.
/// `|t| t.to_lowercase().contains("seiz")`. A missing duration becomes 0.
pub fn from_edf_annotations(
    recording: &str,
    duration_s: f64,
    annotations: &[Annotation],
    is_seizure: impl Fn(&str) -> bool,
) -> RecordingAnnotations {
    RecordingAnnotations {
        recording: recording.to_owned(),
        duration_s: Some(duration_s),
        events: annotations
            .iter()
            .filter(|a| is_seizure(&a.text))
            .map(|a| SeizureEvent {
                onset_s: a.onset_s,
                duration_s: a.duration_s.unwrap_or(0.0).max(0.0),
                channels: None,
                label: a.text.clone(),
            })
            .collect(),
    }
}

/// `hh:mm:ss` (hours may exceed 23: CHB-MIT writes `24:21:32` for 00:21:32 of the next day).
fn clock_s(value: &str) -> Option<f64> {
    let parts: Vec<f64> = value
        .trim()
        .split(':')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [h, m, s] => Some(h * 3600.0 + m * 60.0 + s),
        _ => None,
    }
}

/// A CHB-MIT summary file: one entry per `File Name:` block, with `Number of Seizures in
/// File: N` and N pairs of `Seizure [k ]Start Time: X seconds` / `... End Time: Y seconds`.
/// The duration comes from the block's start and end clock times (wrapping past midnight).
/// The count must match the pairs found.
pub fn parse_chbmit_summary(text: &str) -> Result<Vec<RecordingAnnotations>, AnnotationError> {
    struct Block {
        annotations: RecordingAnnotations,
        declared: Option<usize>,
        start_clock: Option<f64>,
        pending_onset: Option<f64>,
        line: usize,
    }
    let mut blocks: Vec<Block> = Vec::new();
    let finish = |block: &Block| -> Result<(), AnnotationError> {
        let found = block.annotations.events.len();
        match block.declared {
            Some(n) if n == found && block.pending_onset.is_none() => Ok(()),
            declared => Err(AnnotationError::File(format!(
                "{} (line {}): declares {declared:?} seizures, found {found} complete start/end pairs",
                block.annotations.recording,
                block.line + 1
            ))),
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key == "File Name" {
            if let Some(block) = blocks.last() {
                finish(block)?;
            }
            blocks.push(Block {
                annotations: RecordingAnnotations {
                    recording: value.trim().to_owned(),
                    duration_s: None,
                    events: Vec::new(),
                },
                declared: None,
                start_clock: None,
                pending_onset: None,
                line: i,
            });
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            continue; // the channel list before the first file
        };
        let seconds = || {
            let v = value.trim();
            let v = v.strip_suffix("seconds").unwrap_or(v);
            number(v, i, raw, key)
        };
        if key == "File Start Time" {
            block.start_clock =
                Some(clock_s(value).ok_or_else(|| line_error(i, "bad clock time", raw))?);
        } else if key == "File End Time" {
            let end = clock_s(value).ok_or_else(|| line_error(i, "bad clock time", raw))?;
            if let Some(start) = block.start_clock {
                block.annotations.duration_s = Some((end - start).rem_euclid(86_400.0));
            }
        } else if key == "Number of Seizures in File" {
            block.declared = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| line_error(i, "seizure count is not a number", raw))?,
            );
        } else if key.starts_with("Seizure") && key.ends_with("Start Time") {
            if block.pending_onset.is_some() {
                return Err(line_error(i, "a start time follows a start time", raw));
            }
            block.pending_onset = Some(seconds()?);
        } else if key.starts_with("Seizure") && key.ends_with("End Time") {
            let onset = block
                .pending_onset
                .take()
                .ok_or_else(|| line_error(i, "an end time without a start time", raw))?;
            let end = seconds()?;
            if end < onset {
                return Err(line_error(i, "seizure ends before it starts", raw));
            }
            block.annotations.events.push(SeizureEvent {
                onset_s: onset,
                duration_s: end - onset,
                channels: None,
                label: "seizure".into(),
            });
        }
    }
    if let Some(block) = blocks.last() {
        finish(block)?;
    }
    Ok(blocks.into_iter().map(|b| b.annotations).collect())
}

/// A TUH `.csv_bi` (or `.csv`) file: `#` header lines (`# bname = ...`, `# duration = N
/// secs`), a column line `channel,start_time,stop_time,label,confidence`, then one row per
/// labelled interval. Rows labelled `bckg` are background; every other label is a seizure
/// (`seiz` in csv_bi, seizure types such as `fnsz` in per-channel csv). Channel `TERM` means
/// the whole recording.
pub fn parse_tuh_csv_bi(text: &str) -> Result<RecordingAnnotations, AnnotationError> {
    let mut recording = String::new();
    let mut duration_s = None;
    let mut columns: Option<Vec<String>> = None;
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((key, value)) = comment.split_once('=') {
                match key.trim() {
                    "bname" => recording = value.trim().to_owned(),
                    "duration" => {
                        let v = value.trim();
                        let v = v.strip_suffix("secs").unwrap_or(v);
                        duration_s = Some(number(v, i, raw, "duration")?);
                    }
                    _ => {}
                }
            }
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(cols) = &columns else {
            columns = Some(fields.iter().map(|f| f.to_string()).collect());
            continue;
        };
        let col = |name: &str| -> Result<&str, AnnotationError> {
            cols.iter()
                .position(|c| c == name)
                .and_then(|k| fields.get(k).copied())
                .ok_or_else(|| line_error(i, format!("no {name} column"), raw))
        };
        let label = col("label")?;
        if label == "bckg" {
            continue;
        }
        let start = number(col("start_time")?, i, raw, "start_time")?;
        let stop = number(col("stop_time")?, i, raw, "stop_time")?;
        if stop < start {
            return Err(line_error(i, "interval ends before it starts", raw));
        }
        let channel = col("channel")?;
        events.push(SeizureEvent {
            onset_s: start,
            duration_s: stop - start,
            channels: (channel != "TERM").then(|| vec![channel.to_owned()]),
            label: label.to_owned(),
        });
    }
    if columns.is_none() {
        return Err(AnnotationError::File("no column line found".into()));
    }
    Ok(RecordingAnnotations {
        recording,
        duration_s,
        events,
    })
}

/// A BIDS `*_events.tsv` with `onset` and `duration` columns and the event type in
/// `eventType` (SzCORE / epilepsy2bids) or `trial_type`. Seizures are types `sz` or `sz_*`
/// (SzCORE's HED-SCORE names) or `seizure`; `bckg` and other types are skipped. `channels`
/// (comma-separated, `n/a` = unknown) and `recordingDuration` are read when present.
pub fn parse_bids_events(
    recording: &str,
    text: &str,
) -> Result<RecordingAnnotations, AnnotationError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| AnnotationError::File("empty events file".into()))?;
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let onset_col = find("onset").ok_or_else(|| AnnotationError::File("no onset column".into()))?;
    let duration_col =
        find("duration").ok_or_else(|| AnnotationError::File("no duration column".into()))?;
    let type_col = find("eventType")
        .or_else(|| find("trial_type"))
        .ok_or_else(|| AnnotationError::File("no eventType or trial_type column".into()))?;
    let channels_col = find("channels");
    let duration_total_col = find("recordingDuration");
    let mut duration_s = None;
    let mut events = Vec::new();
    for (i, raw) in lines {
        let fields: Vec<&str> = raw.split('\t').map(str::trim).collect();
        let get = |k: usize| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| line_error(i, format!("missing column {}", columns[k]), raw))
        };
        if let Some(k) = duration_total_col {
            let v = get(k)?;
            if v != "n/a" {
                duration_s = Some(number(v, i, raw, "recordingDuration")?);
            }
        }
        let kind = get(type_col)?;
        let is_seizure = kind == "sz" || kind.starts_with("sz_") || kind == "seizure";
        if !is_seizure {
            continue;
        }
        let onset = number(get(onset_col)?, i, raw, "onset")?;
        let duration = number(get(duration_col)?, i, raw, "duration")?;
        if duration < 0.0 {
            return Err(line_error(i, "negative duration", raw));
        }
        let channels = match channels_col.map(get).transpose()? {
            None | Some("n/a") | Some("") => None,
            Some(list) => Some(list.split(',').map(|c| c.trim().to_owned()).collect()),
        };
        events.push(SeizureEvent {
            onset_s: onset,
            duration_s: duration,
            channels,
            label: kind.to_owned(),
        });
    }
    Ok(RecordingAnnotations {
        recording: recording.to_owned(),
        duration_s,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chbmit_counts_must_match_the_pairs() {
        let text = "File Name: a.edf\nFile Start Time: 23:30:00\nFile End Time: 24:30:00\n\
                    Number of Seizures in File: 2\nSeizure 1 Start Time: 10 seconds\n\
                    Seizure 1 End Time: 20 seconds\n";
        let err = parse_chbmit_summary(text).expect_err("1 of 2");
        assert!(err.to_string().contains("declares Some(2)"), "{err}");
        let ok = parse_chbmit_summary(&text.replace("File: 2", "File: 1")).expect("parse");
        assert_eq!(ok[0].duration_s, Some(3600.0));
        assert_eq!(ok[0].events[0].duration_s, 10.0);
        let bad = text.replace("20 seconds", "5 seconds");
        assert!(parse_chbmit_summary(&bad).is_err());
    }

    #[test]
    fn tuh_and_bids_refuse_bad_numbers_with_the_line() {
        let tuh =
            "# bname = x\nchannel,start_time,stop_time,label,confidence\nTERM,1.0,abc,seiz,1\n";
        let err = parse_tuh_csv_bi(tuh).expect_err("bad stop").to_string();
        assert!(err.starts_with("line 3"), "{err}");
        let bids = "onset\tduration\teventType\n1\t-2\tsz\n";
        assert!(parse_bids_events("r", bids).is_err());
        let bids = "onset\tduration\ttrial_type\tchannels\n1\t2\tsz_foc\tC3,C4\n5\t1\tbckg\tn/a\n";
        let ok = parse_bids_events("r", bids).expect("parse");
        assert_eq!(ok.events.len(), 1);
        assert_eq!(
            ok.events[0].channels,
            Some(vec!["C3".to_owned(), "C4".to_owned()])
        );
    }
}

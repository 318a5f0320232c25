//! A read-only EDF / EDF+ / BDF reader.
//!
//! Format (Kemp et al. 1992, EDF+ 2003): a 256-byte ASCII header, 256 bytes per signal of
//! signal headers (fields stored column-wise: all labels, then all transducers, ...), then
//! `n_records` data records, each holding `samples_per_record[s]` little-endian two's-complement
//! integers per signal in signal order (16 bit for EDF, 24 bit for BDF). Physical value =
//! `(digital - dmin) * (pmax - pmin) / (dmax - dmin) + pmin`. EDF+ stores annotations as
//! time-stamped annotation lists (TALs) in signals labelled `EDF Annotations`: `+onset`
//! [`\x15duration`] `\x14` text `\x14` ... `\x00`; the first TAL of each record has no text
//! and gives the record's onset (time keeping, needed for discontinuous `EDF+D` files).
//!
//! Why not the `edf-rs` crate (0.2.0, the obvious choice): read from its source, it is a
//! read/modify/write library whose header parser allocates the signal headers from the
//! untrusted signal count before checking the file size, refuses EDF+ files whose patient
//! field has fewer than four subfields (files in the wild break that convention), and
//! reads record by record with no bounds on what a forged header makes it allocate. Vigil
//! reads untrusted researcher files, so this reader checks every header field and the file
//! size before allocating, never panics, and reports the first inconsistency as an
//! [`EdfError`]. It is tested against pyedflib on the real files (`tests/edf.rs`).

use std::path::Path;

/// Most signals a file may declare (EDF allows 9999; real recordings have < 512).
pub const MAX_SIGNALS: usize = 4096;
/// Largest file read into memory.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EdfError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Shorter than its header says.
    #[error("file is truncated: {what} needs {needed} bytes, the file has {found}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        found: u64,
    },
    /// A header field is not what the format allows.
    #[error("header field {field}{signal}: {value:?} {problem}")]
    Field {
        /// Field name.
        field: &'static str,
        /// `" of signal N"` or empty.
        signal: String,
        /// The raw value (trimmed).
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// File size does not match the header's record count.
    #[error("file has {found} data bytes but the header declares {records} records of {record_bytes} bytes")]
    Size {
        /// Declared record count.
        records: u64,
        /// Bytes per record.
        record_bytes: u64,
        /// Data bytes present.
        found: u64,
    },
    /// An EDF+ annotation list that does not follow the TAL syntax.
    #[error("record {record}: malformed annotation list: {problem}")]
    Annotation {
        /// Data record index.
        record: usize,
        /// What is wrong.
        problem: String,
    },
    /// A Vigil archive file that cannot be replayed as one EEG recording.
    #[error("archive {path}: {problem}")]
    Archive {
        /// File or directory.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Which variant of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdfVariant {
    /// Plain EDF (16 bit, no annotations).
    Edf,
    /// EDF+ continuous (`EDF+C`).
    EdfPlusContinuous,
    /// EDF+ discontinuous (`EDF+D`): records may be separated by gaps.
    EdfPlusDiscontinuous,
    /// BioSemi BDF (24 bit).
    Bdf,
    /// BDF+ (24 bit with annotations), continuous or not.
    BdfPlus {
        /// `BDF+C` (true) or `BDF+D`.
        continuous: bool,
    },
    /// Not a file variant: EEG read from Vigil's Parquet research archive
    /// ([`crate::archive`]), f32 microvolts with NaN for gaps, in one continuous record.
    VigilArchive,
}

impl EdfVariant {
    /// Bytes per sample: 2 (EDF) or 3 (BDF).
    pub fn sample_bytes(self) -> usize {
        match self {
            Self::Bdf | Self::BdfPlus { .. } => 3,
            _ => 2,
        }
    }

    /// Whether records may be separated by gaps (EDF+D / BDF+D).
    pub fn discontinuous(self) -> bool {
        matches!(
            self,
            Self::EdfPlusDiscontinuous | Self::BdfPlus { continuous: false }
        )
    }

    /// Whether annotation signals are expected.
    pub fn is_plus(self) -> bool {
        matches!(
            self,
            Self::EdfPlusContinuous | Self::EdfPlusDiscontinuous | Self::BdfPlus { .. }
        )
    }
}

/// One signal's header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalHeader {
    /// Label, e.g. `Fp2-F4` or `EDF Annotations` (trailing spaces removed).
    pub label: String,
    /// Transducer type.
    pub transducer: String,
    /// Physical dimension (unit), e.g. `uV`.
    pub physical_dimension: String,
    /// Physical minimum.
    pub physical_min: f64,
    /// Physical maximum.
    pub physical_max: f64,
    /// Digital minimum.
    pub digital_min: i32,
    /// Digital maximum.
    pub digital_max: i32,
    /// Prefiltering, e.g. `HP:0.1Hz LP:75Hz`.
    pub prefilter: String,
    /// Samples of this signal in each data record.
    pub samples_per_record: usize,
}

impl SignalHeader {
    /// Whether this is an EDF+/BDF+ annotation signal.
    pub fn is_annotation(&self) -> bool {
        self.label == "EDF Annotations" || self.label == "BDF Annotations"
    }

    /// Physical units per digital step.
    pub fn gain(&self) -> f64 {
        (self.physical_max - self.physical_min)
            / (f64::from(self.digital_max) - f64::from(self.digital_min))
    }

    /// Digital to physical.
    pub fn physical(&self, digital: i32) -> f64 {
        (f64::from(digital) - f64::from(self.digital_min)) * self.gain() + self.physical_min
    }
}

/// The file header.
#[derive(Debug, Clone, PartialEq)]
pub struct EdfHeader {
    /// Format variant.
    pub variant: EdfVariant,
    /// Local patient identification (80 chars, trimmed).
    pub patient: String,
    /// Local recording identification (80 chars, trimmed).
    pub recording: String,
    /// Start date as written, `dd.mm.yy`.
    pub start_date: String,
    /// Start time as written, `hh.mm.ss`.
    pub start_time: String,
    /// Data records in the file.
    pub n_records: usize,
    /// Duration of one data record in seconds (0 only for annotation-only files).
    pub record_duration_s: f64,
    /// Every signal, annotation signals included, in file order.
    pub signals: Vec<SignalHeader>,
}

impl EdfHeader {
    /// Bytes per data record.
    pub fn record_bytes(&self) -> usize {
        self.signals
            .iter()
            .map(|s| s.samples_per_record * self.variant.sample_bytes())
            .sum()
    }

    /// Sampling rate of signal `index` in Hz (samples per record / record duration), rounded
    /// to a whole number when within 1e-9 of one (0.1 s records make 25 / 0.1 inexact).
    pub fn sample_rate_hz(&self, index: usize) -> f64 {
        let rate = self.signals[index].samples_per_record as f64 / self.record_duration_s;
        if (rate - rate.round()).abs() <= 1e-9 * rate.max(1.0) {
            rate.round()
        } else {
            rate
        }
    }

    /// Start of the recording as UTC ns since the Unix epoch. EDF times carry no zone: Vigil
    /// reads them as UTC. Years: EDF+ files give the 4-digit year in the recording field
    /// (`Startdate dd-MMM-yyyy`), which wins; otherwise `yy` 85..99 = 19yy, 00..84 = 20yy.
    pub fn start_ns(&self) -> Option<i64> {
        let date: Vec<i64> = self
            .start_date
            .split('.')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        let time: Vec<i64> = self
            .start_time
            .split(['.', ':'])
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        let ([day, month, yy], [h, m, s]) = (date.as_slice(), time.as_slice()) else {
            return None;
        };
        let mut year = if *yy >= 85 { 1900 + yy } else { 2000 + yy };
        if self.variant.is_plus() {
            if let Some(y) = self
                .recording
                .strip_prefix("Startdate ")
                .and_then(|r| r.split(' ').next())
                .and_then(|d| d.rsplit('-').next())
                .and_then(|y| y.parse::<i64>().ok())
                .filter(|y| (1985..=9999).contains(y))
            {
                year = y;
            }
        }
        if !(1..=12).contains(month) || !(1..=31).contains(day) || *h > 23 || *m > 59 || *s > 60 {
            return None;
        }
        let days = days_from_civil(year, *month, *day);
        (days * 86_400 + h * 3600 + m * 60 + s).checked_mul(1_000_000_000)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One EDF+ annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Onset in seconds from the file's start time.
    pub onset_s: f64,
    /// Duration in seconds, when given.
    pub duration_s: Option<f64>,
    /// Text (UTF-8).
    pub text: String,
}

/// One ordinary (non-annotation) signal with its samples in physical units.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The signal's header.
    pub header: SignalHeader,
    /// Sampling rate in Hz.
    pub sample_rate_hz: f64,
    /// Physical values, in `header.physical_dimension`.
    pub samples: Vec<f64>,
}

/// A whole recording read into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// File header.
    pub header: EdfHeader,
    /// Ordinary signals in file order (annotation signals removed).
    pub signals: Vec<Signal>,
    /// EDF+ annotations of every annotation signal, in file order.
    pub annotations: Vec<Annotation>,
    /// Onset of each data record in seconds from the start time: from the time-keeping TALs
    /// in EDF+, else `record * record_duration`.
    pub record_onsets_s: Vec<f64>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EdfError> {
        let end = self.at + n;
        let out = self.bytes.get(self.at..end).ok_or(EdfError::Truncated {
            what,
            needed: end as u64,
            found: self.bytes.len() as u64,
        })?;
        self.at = end;
        Ok(out)
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, EdfError> {
        // The format says ASCII; real files carry Latin-1, so decode bytes as Latin-1.
        Ok(self
            .take(n, what)?
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .trim()
            .to_owned())
    }
}

fn field_error(
    field: &'static str,
    signal: Option<usize>,
    value: &str,
    problem: &'static str,
) -> EdfError {
    EdfError::Field {
        field,
        signal: signal.map_or_else(String::new, |s| format!(" of signal {s}")),
        value: value.chars().take(80).collect(),
        problem,
    }
}

fn parse_num<T: std::str::FromStr>(
    value: &str,
    field: &'static str,
    signal: Option<usize>,
) -> Result<T, EdfError> {
    value
        .parse()
        .map_err(|_| field_error(field, signal, value, "is not a number"))
}

/// Parses the header from the start of `bytes` (the whole file or at least its header).
pub fn parse_header(bytes: &[u8]) -> Result<EdfHeader, EdfError> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.take(8, "fixed header")?;
    let is_biosemi = version[0] == 0xFF && &version[1..8] == b"BIOSEMI";
    if !is_biosemi && version != b"0       " {
        let shown: String = version.iter().map(|&b| char::from(b)).collect();
        return Err(field_error(
            "version",
            None,
            &shown,
            "is neither `0` (EDF) nor 0xFF BIOSEMI (BDF)",
        ));
    }
    let patient = c.text(80, "fixed header")?;
    let recording = c.text(80, "fixed header")?;
    let start_date = c.text(8, "fixed header")?;
    let start_time = c.text(8, "fixed header")?;
    let header_bytes_s = c.text(8, "fixed header")?;
    let reserved = c.text(44, "fixed header")?;
    let n_records_s = c.text(8, "fixed header")?;
    let duration_s = c.text(8, "fixed header")?;
    let n_signals_s = c.text(4, "fixed header")?;

    let variant = match (is_biosemi, reserved.get(..5)) {
        (false, Some("EDF+C")) => EdfVariant::EdfPlusContinuous,
        (false, Some("EDF+D")) => EdfVariant::EdfPlusDiscontinuous,
        (false, _) => EdfVariant::Edf,
        (true, Some("BDF+C")) => EdfVariant::BdfPlus { continuous: true },
        (true, Some("BDF+D")) => EdfVariant::BdfPlus { continuous: false },
        (true, _) => EdfVariant::Bdf,
    };
    let n_signals: usize = parse_num(&n_signals_s, "number of signals", None)?;
    if n_signals == 0 || n_signals > MAX_SIGNALS {
        return Err(field_error(
            "number of signals",
            None,
            &n_signals_s,
            "must be 1..=4096",
        ));
    }
    let header_bytes: usize = parse_num(&header_bytes_s, "header bytes", None)?;
    if header_bytes != 256 * (n_signals + 1) {
        return Err(field_error(
            "header bytes",
            None,
            &header_bytes_s,
            "is not 256 * (signals + 1)",
        ));
    }
    // Checked before allocating anything per signal.
    if bytes.len() < header_bytes {
        return Err(EdfError::Truncated {
            what: "signal headers",
            needed: header_bytes as u64,
            found: bytes.len() as u64,
        });
    }
    let record_duration_s: f64 = parse_num(&duration_s, "record duration", None)?;
    if !(record_duration_s.is_finite() && record_duration_s >= 0.0) {
        return Err(field_error(
            "record duration",
            None,
            &duration_s,
            "must be a finite number >= 0",
        ));
    }
    // -1 = unknown (a recording still being written): derived from the file size below.
    let n_records: i64 = parse_num(&n_records_s, "number of records", None)?;
    if n_records < -1 {
        return Err(field_error(
            "number of records",
            None,
            &n_records_s,
            "must be >= 0 (or -1 = unknown)",
        ));
    }

    let signals = parse_signal_headers(&mut c, n_signals, record_duration_s, &duration_s)?;
    let mut header = EdfHeader {
        variant,
        patient,
        recording,
        start_date,
        start_time,
        n_records: 0,
        record_duration_s,
        signals,
    };
    let record_bytes = header.record_bytes() as u64;
    let data_bytes = bytes.len() as u64 - header_bytes as u64;
    header.n_records = if n_records == -1 {
        (data_bytes / record_bytes) as usize
    } else {
        let n = n_records as u64;
        if n.checked_mul(record_bytes) != Some(data_bytes) {
            return Err(EdfError::Size {
                records: n,
                record_bytes,
                found: data_bytes,
            });
        }
        n as usize
    };
    Ok(header)
}

/// The per-signal header columns (each field for every signal in turn), checked signal by
/// signal.
fn parse_signal_headers(
    c: &mut Cursor<'_>,
    n_signals: usize,
    record_duration_s: f64,
    duration_s: &str,
) -> Result<Vec<SignalHeader>, EdfError> {
    let mut column = |width: usize| -> Result<Vec<String>, EdfError> {
        (0..n_signals)
            .map(|_| c.text(width, "signal headers"))
            .collect()
    };
    let labels = column(16)?;
    let transducers = column(80)?;
    let dimensions = column(8)?;
    let pmins = column(8)?;
    let pmaxs = column(8)?;
    let dmins = column(8)?;
    let dmaxs = column(8)?;
    let prefilters = column(80)?;
    let counts = column(8)?;
    let _reserved = column(32)?;

    let mut signals = Vec::with_capacity(n_signals);
    for i in 0..n_signals {
        let s = Some(i);
        let header = SignalHeader {
            label: labels[i].clone(),
            transducer: transducers[i].clone(),
            physical_dimension: dimensions[i].clone(),
            physical_min: parse_num(&pmins[i], "physical minimum", s)?,
            physical_max: parse_num(&pmaxs[i], "physical maximum", s)?,
            digital_min: parse_num(&dmins[i], "digital minimum", s)?,
            digital_max: parse_num(&dmaxs[i], "digital maximum", s)?,
            prefilter: prefilters[i].clone(),
            samples_per_record: parse_num(&counts[i], "samples per record", s)?,
        };
        if header.digital_max <= header.digital_min {
            return Err(field_error(
                "digital maximum",
                s,
                &dmaxs[i],
                "must exceed the digital minimum",
            ));
        }
        if !(header.physical_min.is_finite() && header.physical_max.is_finite())
            || header.physical_min == header.physical_max
        {
            return Err(field_error(
                "physical maximum",
                s,
                &pmaxs[i],
                "must be finite and differ from the physical minimum",
            ));
        }
        if header.samples_per_record == 0 || header.samples_per_record > 1 << 24 {
            return Err(field_error(
                "samples per record",
                s,
                &counts[i],
                "must be 1..=16777216",
            ));
        }
        if record_duration_s == 0.0 && !header.is_annotation() {
            return Err(field_error(
                "record duration",
                None,
                duration_s,
                "is 0 but the file has ordinary signals",
            ));
        }
        signals.push(header);
    }
    Ok(signals)
}

fn read_sample(bytes: &[u8], width: usize, i: usize) -> i32 {
    let b = &bytes[i * width..(i + 1) * width];
    if width == 2 {
        i32::from(i16::from_le_bytes([b[0], b[1]]))
    } else {
        // 24-bit two's complement: place in the top bytes and shift back (sign-extends).
        i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8
    }
}

/// One time-stamped annotation list: onset, duration, texts.
type Tal = (f64, Option<f64>, Vec<String>);

/// Parses one annotation signal's bytes of one record into TALs.
fn parse_tals(bytes: &[u8], record: usize) -> Result<Vec<Tal>, EdfError> {
    let bad = |problem: String| EdfError::Annotation { record, problem };
    let mut out = Vec::new();
    for tal in bytes.split(|&b| b == 0).filter(|t| !t.is_empty()) {
        let mut parts = tal.split(|&b| b == 0x14);
        let timing = parts.next().unwrap_or_default();
        let timing = std::str::from_utf8(timing).map_err(|_| bad("onset is not ASCII".into()))?;
        let (onset, duration) = match timing.split_once('\u{15}') {
            Some((o, d)) => (o, Some(d)),
            None => (timing, None),
        };
        if !(onset.starts_with('+') || onset.starts_with('-')) {
            return Err(bad(format!("onset {onset:?} does not start with + or -")));
        }
        let onset: f64 = onset
            .parse()
            .map_err(|_| bad(format!("onset {onset:?} is not a number")))?;
        let duration = duration
            .map(|d| {
                d.parse::<f64>()
                    .map_err(|_| bad(format!("duration {d:?} is not a number")))
            })
            .transpose()?;
        let texts: Vec<String> = parts
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        // Every TAL ends with \x14 (so the last split part is empty); drop that part only.
        let texts = match texts.split_last() {
            Some((last, rest)) if last.is_empty() => rest.to_vec(),
            _ => return Err(bad("a TAL does not end with 0x14".into())),
        };
        out.push((onset, duration, texts));
    }
    Ok(out)
}

impl Recording {
    /// Reads and checks a whole file. A `.parquet` file or a directory is read as EEG from
    /// Vigil's research archive instead ([`crate::archive::read_eeg`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EdfError> {
        let path = path.as_ref();
        if path.is_dir() || path.extension().is_some_and(|e| e == "parquet") {
            return crate::archive::read_eeg(path);
        }
        let io = |source| EdfError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(EdfError::Truncated {
                what: "file (larger than the 4 GiB read limit)",
                needed: MAX_FILE_BYTES,
                found: len,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&bytes)
    }

    /// Reads a whole file from memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EdfError> {
        let header = parse_header(bytes)?;
        let width = header.variant.sample_bytes();
        let record_bytes = header.record_bytes();
        let data = &bytes[256 * (header.signals.len() + 1)..];
        let mut signals: Vec<Signal> = header
            .signals
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_annotation())
            .map(|(i, s)| Signal {
                header: s.clone(),
                sample_rate_hz: header.sample_rate_hz(i),
                samples: Vec::with_capacity(s.samples_per_record * header.n_records),
            })
            .collect();
        let mut annotations = Vec::new();
        let mut record_onsets_s = Vec::with_capacity(header.n_records);
        for r in 0..header.n_records {
            let record = &data[r * record_bytes..(r + 1) * record_bytes];
            let mut offset = 0;
            let mut ordinary = 0;
            let mut first_annotation_signal = true;
            let mut onset = None;
            for s in &header.signals {
                let block = &record[offset..offset + s.samples_per_record * width];
                offset += block.len();
                if s.is_annotation() {
                    let tals = parse_tals(block, r)?;
                    let mut tals = tals.into_iter();
                    if first_annotation_signal {
                        // The record's first TAL keeps time (it may carry texts too).
                        let (t, duration, texts) = tals.next().ok_or(EdfError::Annotation {
                            record: r,
                            problem: "no time-keeping TAL".into(),
                        })?;
                        onset = Some(t);
                        annotations.extend(texts.into_iter().filter(|x| !x.is_empty()).map(
                            |text| Annotation {
                                onset_s: t,
                                duration_s: duration,
                                text,
                            },
                        ));
                        first_annotation_signal = false;
                    }
                    for (t, duration, texts) in tals {
                        annotations.extend(texts.into_iter().map(|text| Annotation {
                            onset_s: t,
                            duration_s: duration,
                            text,
                        }));
                    }
                } else {
                    let signal = &mut signals[ordinary];
                    ordinary += 1;
                    let h = &signal.header;
                    signal.samples.extend(
                        (0..s.samples_per_record).map(|i| h.physical(read_sample(block, width, i))),
                    );
                }
            }
            record_onsets_s.push(onset.unwrap_or(r as f64 * header.record_duration_s));
        }
        Ok(Self {
            header,
            signals,
            annotations,
            record_onsets_s,
        })
    }

    /// Duration covered by the data records, in seconds (gaps of EDF+D included).
    pub fn duration_s(&self) -> f64 {
        self.record_onsets_s
            .last()
            .map_or(0.0, |t| t + self.header.record_duration_s)
    }

    /// Index of the ordinary signal with this label.
    pub fn signal_index(&self, label: &str) -> Option<usize> {
        self.signals.iter().position(|s| s.header.label == label)
    }

    /// Signal `index` on a continuous time axis from the start time: for EDF+D files,
    /// samples between records that are not contiguous are NaN (missing), as Vigil marks
    /// gaps. Records that overlap a previous one are an error in the file; they are reported
    /// as `None`.
    pub fn continuous_samples(&self, index: usize) -> Option<Vec<f64>> {
        let signal = self.signals.get(index)?;
        if !self.header.variant.discontinuous() {
            return Some(signal.samples.clone());
        }
        let per_record = signal.header.samples_per_record;
        let rate = signal.sample_rate_hz;
        let mut out: Vec<f64> = Vec::with_capacity(signal.samples.len());
        for (r, &onset) in self.record_onsets_s.iter().enumerate() {
            let first = (onset * rate).round();
            if first < out.len() as f64 || !first.is_finite() {
                return None;
            }
            out.resize(first as usize, f64::NAN);
            out.extend_from_slice(&signal.samples[r * per_record..(r + 1) * per_record]);
        }
        Some(out)
    }
}

#[cfg(test)]
#[path = "edf_tests.rs"]
mod tests;

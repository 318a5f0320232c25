//! Which derivations feed which trend region, from the channel labels (docs/TRENDS.md).
//!
//! Resolution order, first match wins:
//! 1. [`MontageKind::DoubleBanana`]: at least one label is a derivation of the bipolar double
//!    banana (`Fp1-F7`, `FP1-F7`, `EEG Fp1-F7`, CHB-MIT's `FP1-F7-0`, or reversed `F7-Fp1`).
//! 2. [`MontageKind::ReferentialToBipolar`]: at least one derivation's two electrodes are
//!    present as referential labels (`Fp1`, `EEG Fp1-Ref`, `FP1-A1`, `Fp1-LE`, `Fp1.`); the
//!    derivation is their difference (the common reference cancels).
//! 3. [`MontageKind::Configured`]: a configured region map names at least one present label.
//! 4. [`MontageKind::ChannelGroups`]: one region, `all`, holding every channel.
//!
//! Old names T3/T4/T5/T6 are read as T7/T8/P7/P8. Labels compare case-insensitively. A label
//! that appears twice is used once (its first occurrence).

pub use vigil_core::config::RegionMap;

pub use vigil_core::record::MontageKind;

/// Side of the head a derivation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Left hemisphere (odd 10-20 numbers).
    Left,
    /// Right hemisphere (even 10-20 numbers).
    Right,
}

/// One signal the trends are computed on: `channel[plus] - channel[minus]`, or `channel[plus]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// Display name, e.g. `Fp1-F7`, or the channel label.
    pub name: String,
    /// Index of the channel added.
    pub plus: usize,
    /// Index of the channel subtracted (re-referencing), if any.
    pub minus: Option<usize>,
    /// Hemisphere, if known.
    pub side: Option<Side>,
    /// For the double banana: index of the homologous derivation on the other side, when
    /// present (asymmetry compares homologous pairs only).
    pub homolog: Option<usize>,
}

/// The resolved montage: derivations and the regions over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Montage {
    /// Which rule applied.
    pub kind: MontageKind,
    /// The derivations computed.
    pub derivations: Vec<Derivation>,
    /// Regions in output order: name and derivation indices (a region may be empty: its
    /// trends are NaN).
    pub regions: Vec<(String, Vec<usize>)>,
}

/// Names of the double-banana regions, in output order.
pub const DOUBLE_BANANA_REGIONS: [&str; 4] = [
    "left lateral",
    "left parasagittal",
    "right parasagittal",
    "right lateral",
];

/// The four chains, in the order of [`DOUBLE_BANANA_REGIONS`]: electrode pairs (canonical
/// upper-case modern names). Chain `i` and chain `3 - i` are homologous, link by link.
pub const CHAINS: [[(&str, &str); 4]; 4] = [
    [("FP1", "F7"), ("F7", "T7"), ("T7", "P7"), ("P7", "O1")],
    [("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1")],
    [("FP2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2")],
    [("FP2", "F8"), ("F8", "T8"), ("T8", "P8"), ("P8", "O2")],
];

/// Reference names stripped from referential labels.
const REFERENCES: [&str; 7] = ["REF", "A1", "A2", "LE", "AVG", "AR", "M1"];

/// Canonical upper-case electrode name (old temporal names mapped to modern ones).
fn canonical(electrode: &str) -> String {
    let e = electrode.trim().trim_end_matches('.').to_ascii_uppercase();
    match e.as_str() {
        "T3" => "T7".into(),
        "T4" => "T8".into(),
        "T5" => "P7".into(),
        "T6" => "P8".into(),
        _ => e,
    }
}

/// Label parts after removing the `EEG ` prefix, dots and spaces, split at `-`, with a
/// trailing all-digit part (CHB-MIT's `-0`) dropped.
fn parts(label: &str) -> Vec<String> {
    let mut l = label.trim();
    if l.len() >= 4 && l[..4].eq_ignore_ascii_case("EEG ") {
        l = &l[4..];
    }
    let mut p: Vec<String> = l.split('-').map(canonical).collect();
    if p.len() > 1
        && p.last()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()))
    {
        p.pop();
    }
    p
}

/// `(a, b)` if the label is a bipolar pair of electrodes (not a referential label).
pub fn bipolar_pair(label: &str) -> Option<(String, String)> {
    let p = parts(label);
    match p.as_slice() {
        [a, b] if !REFERENCES.contains(&b.as_str()) && !a.is_empty() && !b.is_empty() => {
            Some((a.clone(), b.clone()))
        }
        _ => None,
    }
}

/// The electrode of a referential label (`Fp1`, `Fp1-Ref`, `EEG FP1-LE`, `Fp1.`).
pub fn referential_electrode(label: &str) -> Option<String> {
    let p = parts(label);
    match p.as_slice() {
        [a] if !a.is_empty() => Some(a.clone()),
        [a, r] if REFERENCES.contains(&r.as_str()) && !a.is_empty() => Some(a.clone()),
        _ => None,
    }
}

/// Letter prefixes of 10-20 / 10-10 electrode names (upper case).
const TEN_TWENTY_PREFIXES: [&str; 13] = [
    "FP", "AF", "F", "FT", "FC", "T", "TP", "C", "CP", "P", "PO", "O", "I",
];

/// Hemisphere of one 10-20 / 10-10 electrode name: odd number left, even right.
fn electrode_side(e: &str) -> Option<Side> {
    let digits: String = e.chars().skip_while(|c| !c.is_ascii_digit()).collect();
    let letters = &e[..e.len() - digits.len()];
    if !TEN_TWENTY_PREFIXES.contains(&letters) {
        return None;
    }
    match digits.parse::<u32>().ok()? % 2 {
        1 => Some(Side::Left),
        _ => Some(Side::Right),
    }
}

/// Hemisphere of a label: every electrode it names must be on the same side.
pub fn label_side(label: &str) -> Option<Side> {
    let p = parts(label);
    let electrodes: Vec<&String> = p
        .iter()
        .filter(|e| !REFERENCES.contains(&e.as_str()))
        .collect();
    let first = electrode_side(electrodes.first()?)?;
    electrodes
        .iter()
        .all(|e| electrode_side(e) == Some(first))
        .then_some(first)
}

fn chain_side(chain: usize) -> Side {
    if chain < 2 {
        Side::Left
    } else {
        Side::Right
    }
}

/// Builds the double-banana montage from a finder of each link, or `None` if no link exists.
fn banana(
    kind: MontageKind,
    find: impl Fn(&str, &str) -> Option<(usize, Option<usize>)>,
) -> Option<Montage> {
    let mut derivations = Vec::new();
    let mut slot = [[None::<usize>; 4]; 4];
    for (c, chain) in CHAINS.iter().enumerate() {
        for (l, (a, b)) in chain.iter().enumerate() {
            if let Some((plus, minus)) = find(a, b) {
                slot[c][l] = Some(derivations.len());
                derivations.push(Derivation {
                    name: format!("{}-{}", display(a), display(b)),
                    plus,
                    minus,
                    side: Some(chain_side(c)),
                    homolog: None,
                });
            }
        }
    }
    if derivations.is_empty() {
        return None;
    }
    for (c, links) in slot.iter().enumerate() {
        for (l, link) in links.iter().enumerate() {
            if let (Some(d), Some(h)) = (*link, slot[3 - c][l]) {
                derivations[d].homolog = Some(h);
            }
        }
    }
    let regions = DOUBLE_BANANA_REGIONS
        .iter()
        .zip(slot.iter())
        .map(|(name, links)| (name.to_string(), links.iter().flatten().copied().collect()))
        .collect();
    Some(Montage {
        kind,
        derivations,
        regions,
    })
}

/// `FP1` -> `Fp1` for display.
fn display(e: &str) -> String {
    if let Some(rest) = e.strip_prefix("FP") {
        format!("Fp{rest}")
    } else {
        e.to_string()
    }
}

impl Montage {
    /// Resolves the montage of `labels` (see the module doc for the order of the rules).
    pub fn resolve(labels: &[String], configured: Option<&RegionMap>) -> Montage {
        let first = |pred: &dyn Fn(&str) -> bool| labels.iter().position(|l| pred(l));
        let bipolar = banana(MontageKind::DoubleBanana, |a, b| {
            let same = |l: &str| bipolar_pair(l).is_some_and(|(x, y)| x == a && y == b);
            let reversed = |l: &str| bipolar_pair(l).is_some_and(|(x, y)| x == b && y == a);
            first(&same).or_else(|| first(&reversed)).map(|i| (i, None))
        });
        if let Some(m) = bipolar {
            return m;
        }
        let referential = banana(MontageKind::ReferentialToBipolar, |a, b| {
            let find = |e: &str| {
                labels
                    .iter()
                    .position(|l| referential_electrode(l).as_deref() == Some(e))
            };
            Some((find(a)?, Some(find(b)?)))
        });
        if let Some(m) = referential {
            return m;
        }
        if let Some(m) = configured.and_then(|map| Self::configured(labels, map)) {
            return m;
        }
        Self::channel_groups(labels)
    }

    fn configured(labels: &[String], map: &RegionMap) -> Option<Montage> {
        let mut derivations: Vec<Derivation> = Vec::new();
        let mut regions = Vec::new();
        for (name, members) in map {
            let lower = name.to_ascii_lowercase();
            let side = if lower.starts_with("left") {
                Some(Side::Left)
            } else if lower.starts_with("right") {
                Some(Side::Right)
            } else {
                None
            };
            let mut idx = Vec::new();
            for member in members {
                let Some(ch) = labels.iter().position(|l| l.eq_ignore_ascii_case(member)) else {
                    continue;
                };
                let d = match derivations.iter().position(|d| d.plus == ch) {
                    Some(d) => d,
                    None => {
                        derivations.push(Derivation {
                            name: labels[ch].clone(),
                            plus: ch,
                            minus: None,
                            side,
                            homolog: None,
                        });
                        derivations.len() - 1
                    }
                };
                if !idx.contains(&d) {
                    idx.push(d);
                }
            }
            regions.push((name.clone(), idx));
        }
        (!derivations.is_empty()).then_some(Montage {
            kind: MontageKind::Configured,
            derivations,
            regions,
        })
    }

    fn channel_groups(labels: &[String]) -> Montage {
        let mut derivations: Vec<Derivation> = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            if labels[..i].iter().any(|l| l.eq_ignore_ascii_case(label)) {
                continue;
            }
            derivations.push(Derivation {
                name: label.clone(),
                plus: i,
                minus: None,
                side: label_side(label),
                homolog: None,
            });
        }
        let all = (0..derivations.len()).collect();
        Montage {
            kind: MontageKind::ChannelGroups,
            derivations,
            regions: vec![("all".to_string(), all)],
        }
    }

    /// Derivation indices on `side`. For the double banana only those with a homologous
    /// partner present, so both sides compare the same links.
    pub fn side_members(&self, side: Side) -> Vec<usize> {
        let banana = matches!(
            self.kind,
            MontageKind::DoubleBanana | MontageKind::ReferentialToBipolar
        );
        (0..self.derivations.len())
            .filter(|&i| {
                let d = &self.derivations[i];
                d.side == Some(side) && (!banana || d.homolog.is_some())
            })
            .collect()
    }

    /// Derivation indices of one hemisphere for aEEG and burst suppression (all of its
    /// derivations, homologous or not).
    pub fn hemisphere(&self, side: Side) -> Vec<usize> {
        (0..self.derivations.len())
            .filter(|&i| self.derivations[i].side == Some(side))
            .collect()
    }
}

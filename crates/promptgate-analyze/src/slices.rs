//! `analyze --by`: every comparison once per slice of the population (a
//! tag's value, the model, the variant version or the client), with Holm's
//! correction over the comparisons of *all* slices, so looking at ten slices
//! does not buy ten chances of a false positive. Each slice is analysed by a
//! collector of its own, exactly as a whole experiment is.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Serialize;

use crate::collect::Collector;
use crate::records::{FeedbackRow, RequestRow};
use crate::report::{self, Comparison, Header, Settings};
use crate::stats::multiple::holm_adjust;

/// More distinct values than this go to one `(other)` slice: each slice
/// holds its own spill files, and a slice per request id says nothing.
pub const MAX_SLICES: usize = 32;
/// The slice of records without the sliced field (no such tag, no client).
pub const NONE_SLICE: &str = "(none)";
pub const OTHER_SLICE: &str = "(other)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceBy {
    Tag(String),
    Model,
    VariantVersion,
    ClientId,
}

impl std::str::FromStr for SliceBy {
    type Err = String;

    fn from_str(text: &str) -> Result<SliceBy, String> {
        match text {
            "model" => Ok(SliceBy::Model),
            "variant_version" => Ok(SliceBy::VariantVersion),
            "client_id" => Ok(SliceBy::ClientId),
            _ => match text.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => Ok(SliceBy::Tag(key.to_owned())),
                _ => Err(format!(
                    "`{text}`: expected tag:KEY, model, variant_version or client_id"
                )),
            },
        }
    }
}

impl std::fmt::Display for SliceBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SliceBy::Tag(key) => write!(f, "tag:{key}"),
            SliceBy::Model => f.write_str("model"),
            SliceBy::VariantVersion => f.write_str("variant_version"),
            SliceBy::ClientId => f.write_str("client_id"),
        }
    }
}

impl SliceBy {
    fn value_of<'r>(&self, row: &'r RequestRow) -> Option<&'r str> {
        match self {
            SliceBy::Tag(key) => row.tags.as_ref()?.get(key).map(String::as_str),
            SliceBy::Model => row.model.as_deref(),
            SliceBy::VariantVersion => row.variant_version.as_deref(),
            SliceBy::ClientId => row.client_id.as_deref(),
        }
    }
}

/// One collector per slice value, fed beside the whole experiment's.
pub struct Slicer {
    by: SliceBy,
    make: Box<dyn Fn() -> std::io::Result<Collector>>,
    collectors: BTreeMap<String, Collector>,
}

impl Slicer {
    pub fn new(by: SliceBy, make: Box<dyn Fn() -> std::io::Result<Collector>>) -> Slicer {
        Slicer {
            by,
            make,
            collectors: BTreeMap::new(),
        }
    }

    fn slice_of(&mut self, row: &RequestRow) -> std::io::Result<&mut Collector> {
        let value = self.by.value_of(row).unwrap_or(NONE_SLICE);
        let key = if self.collectors.contains_key(value) || self.collectors.len() < MAX_SLICES {
            value
        } else {
            OTHER_SLICE
        };
        Ok(match self.collectors.entry(key.to_owned()) {
            Entry::Occupied(slice) => slice.into_mut(),
            Entry::Vacant(slice) => slice.insert((self.make)()?),
        })
    }

    pub fn add(&mut self, row: &RequestRow) -> std::io::Result<()> {
        self.slice_of(row)?.add(row.clone());
        Ok(())
    }

    /// Feedback joins by request id, so every slice sees every event and
    /// keeps those of its own requests.
    pub fn add_feedback(&mut self, row: &FeedbackRow, trusted: bool) {
        for collector in self.collectors.values_mut() {
            collector.add_feedback(row.clone(), trusted);
        }
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        for collector in self.collectors.values_mut() {
            collector.finish()?;
        }
        Ok(())
    }

    pub fn report(&self, header: &Header, settings: &Settings) -> Slices {
        let mut slices: Vec<SliceReport> = self
            .collectors
            .iter()
            .map(|(value, collector)| {
                let report = report::build(header.clone(), collector, settings);
                SliceReport {
                    value: value.clone(),
                    requests: report.population.analysed_requests,
                    units: report
                        .variants
                        .iter()
                        .map(|v| (v.name.clone(), v.units))
                        .collect(),
                    sample_ratio_mismatch: report.srm.as_ref().is_some_and(|s| s.mismatch),
                    comparisons: report.comparisons,
                    too_small: None,
                }
            })
            .collect();
        let p_values: Vec<f64> = slices
            .iter()
            .flat_map(|s| s.comparisons.iter().map(|c| c.p_value))
            .collect();
        let adjusted = holm_adjust(&p_values).unwrap_or(p_values);
        let mut adjusted = adjusted.into_iter();
        let alpha = 1.0 - settings.confidence;
        for slice in &mut slices {
            for c in &mut slice.comparisons {
                c.settle(adjusted.next().unwrap_or(1.0), alpha);
            }
            slice.too_small = too_small(&slice.comparisons, settings.target_lift);
        }
        Slices {
            by: self.by.to_string(),
            correction: "holm over every comparison of every slice",
            slices,
        }
    }
}

/// Why a slice cannot say anything about the target lift: no comparison at
/// all, or none whose minimum detectable difference (80 % power) is within
/// the target relative lift of its baseline.
fn too_small(comparisons: &[Comparison], target_lift: f64) -> Option<String> {
    if comparisons.is_empty() {
        return Some("too few requests in this slice for any comparison".into());
    }
    let detectable = |c: &Comparison| {
        c.minimum_detectable_difference
            .is_some_and(|mdd| mdd <= (target_lift * c.estimate_baseline).abs())
    };
    if comparisons.iter().any(|c| c.significant || detectable(c)) {
        return None;
    }
    let smallest = comparisons
        .iter()
        .filter_map(|c| {
            let mdd = c.minimum_detectable_difference?;
            (c.estimate_baseline != 0.0).then(|| (mdd / c.estimate_baseline).abs())
        })
        .min_by(f64::total_cmp);
    Some(match smallest {
        Some(relative) => format!(
            "too small to detect a {:.0} % lift: the smallest detectable relative difference here is {:.0} %",
            target_lift * 100.0,
            relative * 100.0
        ),
        None => format!("too small to detect a {:.0} % lift", target_lift * 100.0),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Slices {
    /// What the population was sliced by: `tag:KEY`, `model`,
    /// `variant_version` or `client_id`.
    pub by: String,
    pub correction: &'static str,
    pub slices: Vec<SliceReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SliceReport {
    /// The sliced field's value; `(none)` without it, `(other)` past
    /// `MAX_SLICES` distinct values.
    pub value: String,
    pub requests: u64,
    /// Units per variant.
    pub units: BTreeMap<String, u64>,
    pub sample_ratio_mismatch: bool,
    /// As the report's comparisons, `p_adjusted` by Holm over every slice.
    pub comparisons: Vec<Comparison>,
    /// Set when the slice is too small to say anything.
    pub too_small: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_names_parse_and_print_back() {
        for text in ["tag:doc_type", "model", "variant_version", "client_id"] {
            assert_eq!(text.parse::<SliceBy>().unwrap().to_string(), text);
        }
        for text in ["tag:", "tags:doc_type", "variant"] {
            assert!(
                text.parse::<SliceBy>()
                    .unwrap_err()
                    .starts_with(&format!("`{text}`"))
            );
        }
    }
}

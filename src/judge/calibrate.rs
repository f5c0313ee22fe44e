//! `--calibrate LABELS.jsonl`: how well the judge agrees with people who
//! labelled some of the same items. Each line is
//! `{"request_id": "…", "label": "…"}` with the served request's id and a
//! label in the judge's own vocabulary: `served`, `shadow` or `tie` for
//! pairwise rubrics, `pass` or `fail` for pointwise ones.
//!
//! Agreement is the share of items labelled alike; Cohen's kappa corrects it
//! for the agreement two raters with these label frequencies would reach by
//! chance: κ = (p_o − p_e) / (1 − p_e), p_e = Σ_k p_judge(k)·p_human(k)
//! (Cohen 1960, "A coefficient of agreement for nominal scales").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelLine {
    request_id: String,
    label: String,
}

/// Reads the human labels, by request id; every label must be one of `allowed`.
pub fn load(file: &Path, allowed: &[&str]) -> Result<HashMap<String, String>, LabelError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| LabelError::Read {
        file: name.clone(),
        source,
    })?;
    let mut labels = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let problem = |message: String| LabelError::Line {
            file: name.clone(),
            line: index + 1,
            message,
        };
        let parsed: LabelLine = serde_json::from_str(line).map_err(|e| problem(e.to_string()))?;
        if !allowed.contains(&parsed.label.as_str()) {
            return Err(problem(format!(
                "label `{}` is not one of {}",
                parsed.label,
                allowed.join(", ")
            )));
        }
        if labels
            .insert(parsed.request_id.clone(), parsed.label)
            .is_some()
        {
            return Err(problem(format!(
                "`{}` is labelled twice",
                parsed.request_id
            )));
        }
    }
    Ok(labels)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Items both the judge and a person labelled.
    pub items: u64,
    /// Human labels of items the judge has no verdict for.
    pub unmatched_labels: u64,
    pub agreement: Option<f64>,
    /// `None` with no item, or when chance agreement is already 1 (both
    /// raters always gave the same single label).
    pub cohen_kappa: Option<f64>,
    /// judge label → human label → count.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Compares the judge's labels with the humans', on the items both labelled.
pub fn calibrate(judge: &HashMap<String, String>, humans: &HashMap<String, String>) -> Calibration {
    let pairs: Vec<(&str, &str)> = humans
        .iter()
        .filter_map(|(id, human)| judge.get(id).map(|j| (j.as_str(), human.as_str())))
        .collect();
    let n = pairs.len() as f64;
    let mut confusion: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for &(j, h) in &pairs {
        *confusion
            .entry(j.to_owned())
            .or_default()
            .entry(h.to_owned())
            .or_default() += 1;
    }
    let agreement =
        (!pairs.is_empty()).then(|| pairs.iter().filter(|(j, h)| j == h).count() as f64 / n);
    let labels: BTreeSet<&str> = pairs.iter().flat_map(|&(j, h)| [j, h]).collect();
    let chance: f64 = labels
        .iter()
        .map(|&k| {
            let by_judge = pairs.iter().filter(|p| p.0 == k).count() as f64 / n;
            let by_human = pairs.iter().filter(|p| p.1 == k).count() as f64 / n;
            by_judge * by_human
        })
        .sum();
    let cohen_kappa = agreement
        .filter(|_| chance < 1.0)
        .map(|observed| (observed - chance) / (1.0 - chance));
    Calibration {
        items: pairs.len() as u64,
        unmatched_labels: (humans.len() - pairs.len()) as u64,
        agreement,
        cohen_kappa,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn perfect_agreement_is_kappa_one_and_chance_level_is_zero() {
        let judge = map(&[("a", "pass"), ("b", "fail"), ("c", "pass")]);
        let same = calibrate(&judge, &judge);
        assert_eq!((same.agreement, same.cohen_kappa), (Some(1.0), Some(1.0)));
        // Judge and human each say pass half the time, independently.
        let judge = map(&[("a", "pass"), ("b", "pass"), ("c", "fail"), ("d", "fail")]);
        let humans = map(&[
            ("a", "pass"),
            ("b", "fail"),
            ("c", "pass"),
            ("d", "fail"),
            ("e", "pass"),
        ]);
        let found = calibrate(&judge, &humans);
        assert_eq!(found.items, 4);
        assert_eq!(found.unmatched_labels, 1);
        assert_eq!(found.agreement, Some(0.5));
        assert_eq!(found.cohen_kappa, Some(0.0));
        assert_eq!(found.confusion["pass"]["fail"], 1);
    }

    #[test]
    fn one_label_everywhere_has_no_kappa() {
        let judge = map(&[("a", "tie"), ("b", "tie")]);
        let found = calibrate(&judge, &judge);
        assert_eq!(found.cohen_kappa, None);
        assert_eq!(calibrate(&judge, &HashMap::new()).agreement, None);
    }
}

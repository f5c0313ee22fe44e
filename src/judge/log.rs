//! What the judge reads from the audit log: an experiment's answers, as
//! served/shadow pairs (pairwise) or single served answers (pointwise), and
//! the judge feedback already written (a re-run skips what it finds).
//!
//! Pairwise needs the same input on both sides, and only a shadow call has
//! it: it ran the served request's own body through another variant. Two
//! served answers of different variants answered different requests, so
//! they can only be scored one by one (pointwise).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use promptgate_analyze::records::FeedbackRow;
use promptgate_analyze::source::{ObjectError, Table};
use promptgate_analyze::{AnalyzeError, DateRange, Source};

use super::rubric::Mode;
use crate::providers::demo::last_user_text;

/// The audit-record fields the judge reads (schema v1, docs/audit-schema.md).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JudgeRow {
    request_id: String,
    role: String,
    shadow_of: Option<String>,
    experiment: Option<String>,
    served_variant: Option<String>,
    outcome: Option<String>,
    upstream_model: Option<String>,
    /// Kept as text: only served records' requests are ever parsed.
    request: Option<Box<RawValue>>,
    response_text: Option<String>,
}

/// One answer as the judge sees it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub request_id: String,
    pub variant: String,
    pub model: Option<String>,
    pub text: String,
}

/// What the judge is asked about once.
#[derive(Debug, Clone)]
pub enum Item {
    Pair {
        request: String,
        served: Answer,
        shadow: Answer,
    },
    Single {
        request: String,
        answer: Answer,
    },
}

impl Item {
    /// The request ids the item's verdict is written on.
    pub fn request_ids(&self) -> Vec<&str> {
        match self {
            Item::Pair { served, shadow, .. } => vec![&served.request_id, &shadow.request_id],
            Item::Single { answer, .. } => vec![&answer.request_id],
        }
    }

    /// The id labels and reports name the item by: the served request's.
    pub fn key(&self) -> &str {
        match self {
            Item::Pair { served, .. } => &served.request_id,
            Item::Single { answer, .. } => &answer.request_id,
        }
    }
}

/// Which items a run takes, decided while the log is read so that only
/// those are kept: memory follows `max_items`, not the size of the log.
pub struct Selection<'a> {
    /// Verdicts already in the log (`judged`): such items are skipped.
    pub judged: &'a HashMap<String, f64>,
    /// Share of the items drawn, by a hash of the served request id.
    pub sample_rate: f64,
    /// At most this many are taken, in log order; the rest are deferred.
    pub max_items: Option<usize>,
}

/// What reading found: the items taken, and what became of the others.
#[derive(Debug, Default)]
pub struct Read {
    pub items: Vec<Item>,
    pub records: u64,
    /// Answers that could not be judged: no logged bodies, a failed call,
    /// a shadow whose served request was not read.
    pub unusable: u64,
    pub already_judged: u64,
    pub sampled_out: u64,
    pub deferred: u64,
    pub corrupt_objects: Vec<ObjectError>,
    /// Request ids of the items taken or counted: an item seen twice (a
    /// caller reusing its ids, a record uploaded twice after a crash) is
    /// taken once. Only taken items are remembered, so a repeated skipped
    /// one is counted again.
    taken: HashSet<Vec<String>>,
}

impl Read {
    /// Whether an item of these request ids (served first) is taken,
    /// counting it where it is not.
    fn select(&mut self, ids: &[&str], selection: &Selection<'_>) -> bool {
        if ids.iter().all(|id| selection.judged.contains_key(*id)) {
            self.already_judged += 1;
            return false;
        }
        if draw(ids[0]) >= selection.sample_rate {
            self.sampled_out += 1;
            return false;
        }
        let key: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        if self.taken.contains(&key) {
            return false;
        }
        if selection
            .max_items
            .is_some_and(|max| self.taken.len() >= max)
        {
            self.deferred += 1;
            return false;
        }
        self.taken.insert(key)
    }
}

/// A uniform draw in [0, 1) from a request id: the same id is always in or
/// out of a sample, across runs and machines.
pub fn draw(key: &str) -> f64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Source(#[from] AnalyzeError),
    #[error(
        "cannot read {}: {} (pass --skip-corrupt to report it and go on)",
        .0.object, .0.reason
    )]
    Corrupt(ObjectError),
}

async fn objects<T: serde::de::DeserializeOwned>(
    source: &Source,
    object: &str,
    skip_corrupt: bool,
    corrupt: &mut Vec<ObjectError>,
) -> Result<Vec<T>, ReadError> {
    match source.read::<T>(object).await {
        Ok(rows) => Ok(rows),
        Err(error) if skip_corrupt => {
            corrupt.push(error);
            Ok(Vec::new())
        }
        Err(error) => Err(ReadError::Corrupt(error)),
    }
}

impl JudgeRow {
    /// The answer, when the call completed and its bodies were logged.
    fn answer(&self) -> Option<Answer> {
        if matches!(self.outcome.as_deref(), Some("abandoned" | "refused")) {
            return None;
        }
        Some(Answer {
            request_id: self.request_id.clone(),
            variant: self.served_variant.clone()?,
            model: self.upstream_model.clone(),
            text: self.response_text.clone()?,
        })
    }

    /// What the caller asked: the user's text of the logged request.
    fn request_text(&self) -> Option<String> {
        let request: Value = serde_json::from_str(self.request.as_ref()?.get()).ok()?;
        let text = last_user_text(&request);
        (!text.is_empty()).then_some(text)
    }
}

/// The experiment's items for `mode` that `selection` takes, in the log's
/// order. Pointwise reads the log once. Pairwise reads it twice: first the
/// shadow records (each names its served request in `shadow_of`), then the
/// served records of the pairs taken, so that no served answer is held
/// waiting for a shadow that may never come.
pub async fn items(
    source: &Source,
    range: &DateRange,
    experiment: &str,
    mode: Mode,
    skip_corrupt: bool,
    selection: &Selection<'_>,
) -> Result<Read, ReadError> {
    let listed = source.list(Table::Requests, range).await?;
    if listed.is_empty() {
        return Err(source.explain_empty(range).await?.into());
    }
    let mut read = Read::default();
    // Pairwise: the shadows taken, by the id of the served request they copy.
    let mut shadows: HashMap<String, Vec<Answer>> = HashMap::new();
    for object in &listed {
        let rows: Vec<JudgeRow> =
            objects(source, object, skip_corrupt, &mut read.corrupt_objects).await?;
        for row in rows {
            read.records += 1;
            if row.experiment.as_deref() != Some(experiment) {
                continue;
            }
            match (row.role.as_str(), mode) {
                ("served", Mode::Pointwise) => {
                    let (Some(answer), Some(request)) = (row.answer(), row.request_text()) else {
                        read.unusable += 1;
                        continue;
                    };
                    if read.select(&[&answer.request_id], selection) {
                        read.items.push(Item::Single { request, answer });
                    }
                }
                ("shadow", Mode::Pairwise) => {
                    let (Some(answer), Some(of)) = (row.answer(), row.shadow_of) else {
                        read.unusable += 1;
                        continue;
                    };
                    if read.select(&[&of, &answer.request_id], selection) {
                        shadows.entry(of).or_default().push(answer);
                    }
                }
                _ => {}
            }
        }
    }
    if mode == Mode::Pairwise && !shadows.is_empty() {
        pair_with_served(source, &listed, skip_corrupt, shadows, &mut read).await?;
    }
    Ok(read)
}

/// The second pass of pairwise reading: each taken shadow beside its served
/// answer, in the log's order of the served records.
async fn pair_with_served(
    source: &Source,
    listed: &[String],
    skip_corrupt: bool,
    mut shadows: HashMap<String, Vec<Answer>>,
    read: &mut Read,
) -> Result<(), ReadError> {
    for object in listed {
        let rows: Vec<JudgeRow> =
            objects(source, object, skip_corrupt, &mut read.corrupt_objects).await?;
        for row in rows {
            if row.role != "served" {
                continue;
            }
            let Some(waiting) = shadows.remove(&row.request_id) else {
                continue;
            };
            let (Some(served), Some(request)) = (row.answer(), row.request_text()) else {
                read.unusable += waiting.len() as u64;
                continue;
            };
            for shadow in waiting {
                read.items.push(Item::Pair {
                    request: request.clone(),
                    served: served.clone(),
                    shadow,
                });
            }
        }
    }
    // Shadows whose served request is not in the range that was read.
    read.unusable += shadows
        .values()
        .map(|waiting| waiting.len() as u64)
        .sum::<u64>();
    Ok(())
}

/// The values of `metric` already in the feedback table, by request id (the
/// latest wins, as in `analyze`'s join).
pub async fn judged(
    source: &Source,
    range: &DateRange,
    metric: &str,
    skip_corrupt: bool,
    corrupt: &mut Vec<ObjectError>,
) -> Result<HashMap<String, f64>, ReadError> {
    // Feedback arrives after its request: from `--from` on, whatever `--to` says.
    let range = DateRange {
        from: range.from.clone(),
        to: None,
    };
    let mut latest: HashMap<String, (String, f64)> = HashMap::new();
    for object in source.list(Table::Feedback, &range).await? {
        let rows: Vec<FeedbackRow> = objects(source, &object, skip_corrupt, corrupt).await?;
        for row in rows {
            let Some(value) = row.value_number.filter(|_| row.metric == metric) else {
                continue;
            };
            match latest.get(&row.request_id) {
                Some((ts, _)) if *ts > row.ts_received => {}
                _ => {
                    latest.insert(row.request_id, (row.ts_received, value));
                }
            }
        }
    }
    Ok(latest.into_iter().map(|(id, (_, v))| (id, v)).collect())
}

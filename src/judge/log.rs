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

/// What reading found besides the items.
#[derive(Debug, Default)]
pub struct Read {
    pub items: Vec<Item>,
    pub records: u64,
    /// Answers that could not be judged: no logged bodies, a failed call,
    /// a shadow whose served request was not read.
    pub unusable: u64,
    pub corrupt_objects: Vec<ObjectError>,
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

/// The experiment's items for `mode`, in the log's order.
pub async fn items(
    source: &Source,
    range: &DateRange,
    experiment: &str,
    mode: Mode,
    skip_corrupt: bool,
) -> Result<Read, ReadError> {
    let listed = source.list(Table::Requests, range).await?;
    if listed.is_empty() {
        return Err(source.explain_empty(range).await?.into());
    }
    let mut read = Read::default();
    // Served answers wait here for their shadows (pairwise only).
    let mut served: HashMap<String, (String, Answer)> = HashMap::new();
    let mut shadows: Vec<(String, Answer)> = Vec::new();
    for object in &listed {
        let rows: Vec<JudgeRow> =
            objects(source, object, skip_corrupt, &mut read.corrupt_objects).await?;
        for row in rows {
            read.records += 1;
            if row.experiment.as_deref() != Some(experiment) {
                continue;
            }
            let Some(answer) = row.answer() else {
                read.unusable += 1;
                continue;
            };
            match (row.role.as_str(), mode) {
                ("served", Mode::Pointwise) => match row.request_text() {
                    Some(request) => read.items.push(Item::Single { request, answer }),
                    None => read.unusable += 1,
                },
                ("served", Mode::Pairwise) => match row.request_text() {
                    Some(request) => {
                        served.insert(row.request_id.clone(), (request, answer));
                    }
                    None => read.unusable += 1,
                },
                ("shadow", Mode::Pairwise) => match row.shadow_of {
                    Some(of) => shadows.push((of, answer)),
                    None => read.unusable += 1,
                },
                _ => {}
            }
        }
    }
    for (of, shadow) in shadows {
        match served.get(&of) {
            Some((request, answer)) => read.items.push(Item::Pair {
                request: request.clone(),
                served: answer.clone(),
                shadow,
            }),
            None => read.unusable += 1,
        }
    }
    Ok(read)
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

/// Whether every request id of `item` already has a verdict.
pub fn already_judged(item: &Item, judged: &HashMap<String, f64>) -> bool {
    item.request_ids().iter().all(|id| judged.contains_key(*id))
}

/// An item seen twice is judged once (a caller may reuse its own request
/// ids, and a record may be uploaded twice after a crash).
pub fn dedup(items: &mut Vec<Item>) {
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    items.retain(|item| {
        let ids = item.request_ids().into_iter().map(str::to_owned).collect();
        seen.insert(ids)
    });
}

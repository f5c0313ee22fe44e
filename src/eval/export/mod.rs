//! `promptgate export-dataset`: golden-set candidates from production traffic.
//!
//! Reads the audit log through `analyze`'s source (a directory or S3, the
//! same options), keeps the served chat requests that pass the filters
//! (experiment, variant, error class, feedback), samples them
//! deterministically (`sample`) and writes one candidate per line
//! (`candidate`). With `--feedback` conditions the request table is read
//! twice: once to register requests with `analyze`'s feedback join (bounded
//! memory, spill files), once to write the ones the join kept.

mod candidate;
mod filter;
mod sample;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde_json::{Map, Value};

use promptgate_analyze::join::{FeedbackJoin, Joined, trusted_reporter};
use promptgate_analyze::records::FeedbackRow;
use promptgate_analyze::source::{ObjectError, Table};
use promptgate_analyze::{AnalyzeError, DateRange, Source};

pub use candidate::ExportRow;
pub use filter::{FeedbackFilter, TagFilter};

use candidate::Unusable;
use sample::{Sampler, allocate};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Source(#[from] AnalyzeError),
    #[error(
        "cannot read {}: {} (pass --skip-corrupt to report it and go on)",
        .0.object, .0.reason
    )]
    Corrupt(ObjectError),
    #[error("spilling the feedback join to a temporary directory: {0}")]
    Spill(std::io::Error),
    #[error("writing the candidates: {0}")]
    Write(std::io::Error),
}

/// What a stratum is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stratify {
    /// The served variant.
    Variant,
    Experiment,
    /// The error class, `none` for a success.
    ErrorClass,
}

impl Stratify {
    fn of(self, row: &ExportRow) -> &str {
        let value = match self {
            Stratify::Variant => &row.served_variant,
            Stratify::Experiment => &row.experiment,
            Stratify::ErrorClass => &row.error_class,
        };
        value.as_deref().unwrap_or("none")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every matching record, in the log's order.
    All,
    /// Up to `per` records of each stratum.
    PerStratum { per: usize, by: Stratify },
    /// `total` records, split equally across strata when `by` is given.
    Total { total: usize, by: Option<Stratify> },
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub range: DateRange,
    pub experiment: Option<String>,
    /// Served variants kept; empty: all.
    pub variants: Vec<String>,
    /// Error classes kept (`none`: no error); empty: all.
    pub error_classes: Vec<String>,
    /// All must hold, each on the latest value of its metric.
    pub feedback: Vec<FeedbackFilter>,
    /// All must hold: the record's tag equals the value.
    pub tags: Vec<TagFilter>,
    pub sampling: Sampling,
    pub seed: u64,
    pub skip_corrupt: bool,
}

/// What was read and written, for the person running the export.
#[derive(Debug, Default)]
pub struct Summary {
    pub records: u64,
    /// Records that passed every filter, by stratum (`all` when unstratified).
    pub matched: BTreeMap<String, u64>,
    pub exported: BTreeMap<String, u64>,
    /// Records that could not be candidates, by reason.
    pub unusable: BTreeMap<&'static str, u64>,
    pub corrupt_objects: Vec<ObjectError>,
}

/// Where a record was read: object index in the high half, line in the low
/// one. Objects are never modified, so both passes see the same positions.
fn position(object: usize, line: usize) -> u64 {
    ((object as u64) << 32) | line as u64
}

pub async fn export(
    source: &Source,
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<Summary, ExportError> {
    let objects = source.list(Table::Requests, &options.range).await?;
    if objects.is_empty() {
        return Err(source.explain_empty(&options.range).await?.into());
    }
    let mut summary = Summary::default();
    let feedback = if options.feedback.is_empty() {
        None
    } else {
        Some(join_feedback(source, options, &objects, &mut summary).await?)
    };
    let mut sampler = match options.sampling {
        Sampling::All => None,
        Sampling::PerStratum { per, .. } => Some(Sampler::new(options.seed, per)),
        Sampling::Total { total, .. } => Some(Sampler::new(options.seed, total)),
    };
    let stratify = match options.sampling {
        Sampling::All | Sampling::Total { by: None, .. } => None,
        Sampling::PerStratum { by, .. } | Sampling::Total { by: Some(by), .. } => Some(by),
    };
    let mut writer = CandidateWriter::new(out);
    for (index, object) in objects.iter().enumerate() {
        let Some(rows) = read::<ExportRow>(source, object, options, &mut summary).await? else {
            continue;
        };
        for (line, row) in rows.into_iter().enumerate() {
            summary.records += 1;
            if let Err(reason) = row.usable() {
                *summary.unusable.entry(reason.label()).or_default() += 1;
                continue;
            }
            if !selected(&row, options) {
                continue;
            }
            let at = position(index, line);
            let values = match &feedback {
                Some(kept) => match kept.get(&at) {
                    Some(values) => Some(values.clone()),
                    None => continue,
                },
                None => None,
            };
            let stratum = stratify.map_or("all", |by| by.of(&row)).to_owned();
            *summary.matched.entry(stratum.clone()).or_default() += 1;
            match &mut sampler {
                Some(sampler) => {
                    let request_id = row.request_id.clone();
                    sampler.offer(&stratum, &request_id, at, (row, values));
                }
                None => writer.write(&stratum, &row, values, &mut summary)?,
            }
        }
    }
    if let Some(sampler) = sampler {
        let quota = match options.sampling {
            Sampling::Total { total, by: Some(_) } => allocate(&sampler.kept(), total),
            _ => BTreeMap::new(),
        };
        let mut chosen = sampler.take(&quota);
        // Reviewers read them in time order.
        chosen.sort_by(|(_, (a, _)), (_, (b, _))| {
            (&a.ts_start, &a.request_id).cmp(&(&b.ts_start, &b.request_id))
        });
        for (stratum, (row, values)) in chosen {
            writer.write(&stratum, &row, values, &mut summary)?;
        }
    }
    writer.out.flush().map_err(ExportError::Write)?;
    Ok(summary)
}

/// The filters on the record's own fields.
fn selected(row: &ExportRow, options: &ExportOptions) -> bool {
    let experiment = options
        .experiment
        .as_ref()
        .is_none_or(|wanted| row.experiment.as_ref() == Some(wanted));
    let variant = options.variants.is_empty()
        || row
            .served_variant
            .as_ref()
            .is_some_and(|served| options.variants.contains(served));
    let error_class = options.error_classes.is_empty()
        || options
            .error_classes
            .iter()
            .any(|wanted| row.error_class.as_deref().unwrap_or("none") == wanted);
    let tags = options
        .tags
        .iter()
        .all(|wanted| wanted.meets(row.tags.as_ref()));
    experiment && variant && error_class && tags
}

/// The positions of the selected records whose feedback meets every
/// condition, with the values that met them.
async fn join_feedback(
    source: &Source,
    options: &ExportOptions,
    objects: &[String],
    summary: &mut Summary,
) -> Result<HashMap<u64, Map<String, Value>>, ExportError> {
    let mut join = FeedbackJoin::new().map_err(ExportError::Spill)?;
    for (index, object) in objects.iter().enumerate() {
        let Some(rows) = read::<ExportRow>(source, object, options, summary).await? else {
            continue;
        };
        for (line, row) in rows.iter().enumerate() {
            if row.usable().is_ok() && selected(row, options) {
                // The join carries a variant and a unit per request; the
                // unit slot carries the record's position instead.
                join.request(
                    &row.request_id,
                    row.client_id.as_deref(),
                    0,
                    position(index, line),
                )
                .map_err(ExportError::Spill)?;
            }
        }
    }
    // Feedback arrives after its request: from `--from` on, whatever `--to` says.
    let feedback_range = DateRange {
        from: options.range.from.clone(),
        to: None,
    };
    for object in source.list(Table::Feedback, &feedback_range).await? {
        let Some(rows) = read::<FeedbackRow>(source, &object, options, summary).await? else {
            continue;
        };
        for row in rows {
            // The requesting client's own feedback selects a request, and
            // the judge's; export-dataset has no trusted-reporter list
            // (docs/security.md).
            let trusted = trusted_reporter(row.client_id.as_deref(), &[]);
            join.feedback(row, trusted).map_err(ExportError::Spill)?;
        }
    }
    let mut met: HashMap<u64, Map<String, Value>> = HashMap::new();
    join.join(|joined| {
        let Joined::Value {
            unit: at,
            metric,
            boolean,
            value,
            ..
        } = joined
        else {
            return;
        };
        let conditions: Vec<&FeedbackFilter> = options
            .feedback
            .iter()
            .filter(|f| f.metric == metric)
            .collect();
        if !conditions.is_empty() && conditions.iter().all(|condition| condition.meets(value)) {
            let shown = if boolean {
                Value::from(value != 0.0)
            } else {
                Value::from(value)
            };
            met.entry(at).or_default().insert(metric.to_owned(), shown);
        }
    })
    .map_err(ExportError::Spill)?;
    // Every condition's metric must have met its condition.
    met.retain(|_, values| {
        options
            .feedback
            .iter()
            .all(|f| values.contains_key(&f.metric))
    });
    Ok(met)
}

async fn read<T: serde::de::DeserializeOwned>(
    source: &Source,
    object: &str,
    options: &ExportOptions,
    summary: &mut Summary,
) -> Result<Option<Vec<T>>, ExportError> {
    match source.read::<T>(object).await {
        Ok(rows) => Ok(Some(rows)),
        Err(error) if options.skip_corrupt => {
            if !summary.corrupt_objects.contains(&error) {
                summary.corrupt_objects.push(error);
            }
            Ok(None)
        }
        Err(error) => Err(ExportError::Corrupt(error)),
    }
}

/// Writes candidate lines, giving a repeated request id (callers may send
/// their own ids) a `-2`, `-3`… suffix so every case id is unique.
struct CandidateWriter<'a> {
    out: &'a mut dyn Write,
    ids: HashMap<String, u32>,
}

impl<'a> CandidateWriter<'a> {
    fn new(out: &'a mut dyn Write) -> CandidateWriter<'a> {
        CandidateWriter {
            out,
            ids: HashMap::new(),
        }
    }

    fn write(
        &mut self,
        stratum: &str,
        row: &ExportRow,
        feedback: Option<Map<String, Value>>,
        summary: &mut Summary,
    ) -> Result<(), ExportError> {
        let seen = self.ids.entry(row.request_id.clone()).or_default();
        *seen += 1;
        let id = match *seen {
            1 => row.request_id.clone(),
            n => format!("{}-{n}", row.request_id),
        };
        let Some(candidate) = row.candidate(&id, feedback) else {
            *summary
                .unusable
                .entry(Unusable::NotChat.label())
                .or_default() += 1;
            return Ok(());
        };
        serde_json::to_writer(&mut *self.out, &candidate)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(ExportError::Write)?;
        *summary.exported.entry(stratum.to_owned()).or_default() += 1;
        Ok(())
    }
}

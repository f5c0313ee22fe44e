//! `promptgate analyze`: compare an experiment's variants from the audit log
//! alone. Reads the feedback table, then streams the request table partition
//! by partition (`source`), summarises each variant in bounded memory
//! (`collect`), runs the statistics (`stats`, pure, checked against scipy)
//! into a report (`report`), and writes it as a table, JSON or HTML
//! (`render`, `html`).
//!
//! Memory: bounded per variant (moments, a 20,000-value sample per skewed
//! metric, distinct units sampled by hash beyond 2^20), plus the records of
//! the object being read. Feedback is joined to requests by a grace hash
//! join through 64 spill files (`join`), so it never has to fit in memory at
//! once; every observation of a mean/proportion metric goes through 64 more,
//! by unit (`units`), so that variants are compared on unit means
//! (randomisation is per unit) without a map of every unit; served requests
//! and shadows meet through 64 more, by the served request's id (`pairing`).
//! Each of these spills is processed bucket by bucket, a bucket above a fixed
//! budget in parts (`spill`).

pub(crate) mod collect;
pub mod drift;
pub mod html;
pub mod join;
mod pairing;
pub(crate) mod pairs;
pub mod records;
pub mod render;
pub mod report;
mod sample_ratio;
pub mod slices;
pub mod source;
mod spill;
pub mod stats;
pub mod synthetic;
mod units;

use indicatif::{ProgressBar, ProgressStyle};

pub use report::{Report, Settings};
pub use source::{DateRange, S3Options, Source, parse_date, parse_day};

use collect::Collector;
use records::{FeedbackRow, RequestRow};
use report::{Header, ReadSummary};
use source::Table;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{0}")]
    Source(String),
    #[error(
        "cannot read {}: {} (pass --skip-corrupt to report it and go on)",
        .0.object, .0.reason
    )]
    Corrupt(source::ObjectError),
    #[error("no request of experiment `{0}` in the analysed window")]
    NoData(String),
    #[error("the JSON schema is not valid: {0}")]
    Schema(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub experiment: String,
    pub range: DateRange,
    /// Assignment reasons kept (by their group: `hash`, `override`, `flag`,
    /// `not_enrolled`, `killswitch`, `disabled`); intent to treat: `hash`.
    pub assignment_reasons: Vec<String>,
    pub skip_corrupt: bool,
    pub progress: bool,
    /// JSON answers are checked against it (schema compliance).
    pub json_schema: Option<serde_json::Value>,
    /// Clients whose feedback counts on any client's request.
    pub trusted_clients: Vec<String>,
    pub settings: Settings,
    /// `--by`: also analyse each slice of the population.
    pub by: Option<slices::SliceBy>,
}

pub async fn analyze(source: &Source, options: &Options) -> Result<Report, AnalyzeError> {
    // Feedback arrives after its request: read it from `--from` on, whatever
    // `--to` says, or outcomes posted after the last day would be lost.
    let feedback_range = DateRange {
        from: options.range.from.clone(),
        to: None,
    };
    let feedback_objects = source.list(Table::Feedback, &feedback_range).await?;
    let request_objects = source.list(Table::Requests, &options.range).await?;
    if request_objects.is_empty() {
        return Err(source.explain_empty(&options.range).await?);
    }
    let progress = if options.progress {
        let bar = ProgressBar::new((feedback_objects.len() + request_objects.len()) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} objects, {msg} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut read = ReadSummary::default();

    let mut collector = new_collector(options)?;
    let mut slicer = options.by.clone().map(|by| {
        let options = options.clone();
        slices::Slicer::new(
            by,
            Box::new(move || {
                new_collector(&options)
                    .map(Collector::for_slice)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }),
        )
    });
    for object in &request_objects {
        if let Some(rows) = read_object::<RequestRow>(source, object, options, &mut read).await? {
            read.request_records += rows.len() as u64;
            if let Some(slicer) = &mut slicer {
                for row in &rows {
                    slicer.add(row).map_err(spill)?;
                }
            }
            rows.into_iter().for_each(|row| collector.add(row));
        }
        progress.inc(1);
        progress.set_message(format!("{} records", read.request_records));
    }
    for object in &feedback_objects {
        if let Some(rows) = read_object::<FeedbackRow>(source, object, options, &mut read).await? {
            for row in rows {
                let trusted =
                    join::trusted_reporter(row.client_id.as_deref(), &options.trusted_clients);
                if let Some(slicer) = &mut slicer {
                    slicer.add_feedback(&row, trusted);
                }
                collector.add_feedback(row, trusted);
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (feedback_records, joined) = collector.finish().map_err(spill)?;
    read.feedback_records = feedback_records;
    read.feedback_unmatched = joined.unmatched;
    read.feedback_excluded = joined.excluded;
    read.unpaired_shadows = collector.unpaired_shadows;
    if collector.variants.is_empty() {
        return Err(AnalyzeError::NoData(options.experiment.clone()));
    }
    let header = Header {
        experiment: options.experiment.clone(),
        source: source.describe(),
        from: options.range.from.clone(),
        to: options.range.to.clone(),
        assignment_reasons: options.assignment_reasons.clone(),
        read,
    };
    let slices = match &mut slicer {
        Some(slicer) => {
            slicer.finish().map_err(spill)?;
            Some(slicer.report(&header, &options.settings))
        }
        None => None,
    };
    let mut report = report::build(header, &collector, &options.settings);
    report.slices = slices;
    Ok(report)
}

fn spill(e: std::io::Error) -> AnalyzeError {
    AnalyzeError::Source(format!(
        "spilling the feedback join to a temporary directory: {e}"
    ))
}

/// A collector for the whole experiment or one slice of it.
fn new_collector(options: &Options) -> Result<Collector, AnalyzeError> {
    let mut collector = Collector::new(
        &options.experiment,
        options.assignment_reasons.clone(),
        options.settings.seed,
    )
    .map_err(spill)?;
    if let Some(schema) = &options.json_schema {
        collector.schema = Some(
            jsonschema::validator_for(schema).map_err(|e| AnalyzeError::Schema(e.to_string()))?,
        );
    }
    Ok(collector)
}

async fn read_object<T: serde::de::DeserializeOwned>(
    source: &Source,
    object: &str,
    options: &Options,
    read: &mut ReadSummary,
) -> Result<Option<Vec<T>>, AnalyzeError> {
    read.objects += 1;
    match source.read::<T>(object).await {
        Ok(rows) => Ok(Some(rows)),
        Err(error) if options.skip_corrupt => {
            read.corrupt_objects.push(error);
            Ok(None)
        }
        Err(error) => Err(AnalyzeError::Corrupt(error)),
    }
}

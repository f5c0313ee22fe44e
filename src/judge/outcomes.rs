//! Verdicts as they arrive: each is written as feedback at once and counted
//! for the report (tallies per variant pair, scores per variant, the lengths
//! of preferred and other answers).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, json};

use super::ask::Verdict;
use super::log::Item;
use super::rubric::RubricFile;
use super::write::FeedbackWriter;
use super::{JudgeReport, VariantScores, Verbosity, mean};
use crate::eval::judge::{JudgeError, Outcome, PairwiseTally};
use crate::feedback::FeedbackValue;

/// Item errors quoted in the report's warnings (the rest are counted).
const QUOTED_ERRORS: u64 = 3;

pub struct Outcomes<'a> {
    rubric: &'a RubricFile,
    metric: String,
    judge_model: &'a str,
    tallies: BTreeMap<String, PairwiseTally>,
    /// Per variant: scores and how many passed.
    scores: BTreeMap<String, (Vec<f64>, u64)>,
    winners: Vec<f64>,
    losers: Vec<f64>,
    judged: u64,
    errors: u64,
    deferred: u64,
    feedback_written: u64,
    warnings: Vec<String>,
}

impl<'a> Outcomes<'a> {
    pub fn new(rubric: &'a RubricFile, judge_model: &'a str) -> Outcomes<'a> {
        Outcomes {
            rubric,
            metric: rubric.metric(),
            judge_model,
            tallies: BTreeMap::new(),
            scores: BTreeMap::new(),
            winners: Vec::new(),
            losers: Vec::new(),
            judged: 0,
            errors: 0,
            deferred: 0,
            feedback_written: 0,
            warnings: Vec::new(),
        }
    }

    /// One item's result (`None`: the budget kept it from starting); its
    /// verdict is written and recorded in `values` (the metric by request id).
    pub fn add(
        &mut self,
        item: &Item,
        result: Option<Result<Verdict, JudgeError>>,
        writer: &FeedbackWriter,
        values: &mut HashMap<String, f64>,
    ) {
        let verdict = match result {
            None => {
                self.deferred += 1;
                return;
            }
            Some(Err(error)) => {
                self.errors += 1;
                if self.errors <= QUOTED_ERRORS {
                    self.warnings.push(format!("{}: {error}", item.key()));
                }
                return;
            }
            Some(Ok(verdict)) => verdict,
        };
        self.judged += 1;
        let mut metadata = Map::new();
        metadata.insert("rubric".into(), json!(self.rubric.name));
        metadata.insert("judge_model".into(), json!(self.judge_model));
        match (item, &verdict) {
            (Item::Pair { served, shadow, .. }, Verdict::Pairwise(found)) => {
                self.tallies
                    .entry(format!("{} → {}", served.variant, shadow.variant))
                    .or_default()
                    .add(found);
                let (served_won, shadow_won) = match found.outcome {
                    Outcome::BaselineWins => (true, false),
                    Outcome::CandidateWins => (false, true),
                    Outcome::Tie => (false, false),
                };
                if served_won || shadow_won {
                    let (won, lost) = if served_won {
                        (served, shadow)
                    } else {
                        (shadow, served)
                    };
                    self.winners.push(won.text.chars().count() as f64);
                    self.losers.push(lost.text.chars().count() as f64);
                }
                metadata.insert("consistent".into(), json!(found.consistent));
                metadata.insert("served_first".into(), json!(found.baseline_first));
                metadata.insert("shadow_first".into(), json!(found.candidate_first));
                for (answer, won) in [(served, served_won), (shadow, shadow_won)] {
                    writer.write(
                        &answer.request_id,
                        &self.metric,
                        FeedbackValue::Boolean(won),
                        None,
                        metadata.clone(),
                    );
                    values.insert(answer.request_id.clone(), f64::from(u8::from(won)));
                    self.feedback_written += 1;
                }
            }
            (Item::Single { answer, .. }, Verdict::Pointwise(score)) => {
                let entry = self.scores.entry(answer.variant.clone()).or_default();
                entry.0.push(f64::from(score.score));
                entry.1 += u64::from(score.passed);
                let length = answer.text.chars().count() as f64;
                if score.passed {
                    self.winners.push(length);
                } else {
                    self.losers.push(length);
                }
                writer.write(
                    &answer.request_id,
                    &self.metric,
                    FeedbackValue::Number(f64::from(score.score)),
                    Some(score.reason.clone()).filter(|r| !r.is_empty()),
                    metadata,
                );
                values.insert(answer.request_id.clone(), f64::from(score.score));
                self.feedback_written += 1;
            }
            // `ask::judge_item` answers a pair pairwise and a single answer
            // pointwise; no other combination is made.
            _ => {}
        }
    }

    pub fn finish(self, report: &mut JudgeReport) {
        let total = self
            .tallies
            .values()
            .fold(PairwiseTally::default(), |mut sum, t| {
                sum.wins += t.wins;
                sum.losses += t.losses;
                sum.ties += t.ties;
                sum.consistent += t.consistent;
                sum
            });
        report.position_consistency = total.consistency_rate();
        report.pairwise = self.tallies;
        report.pointwise = self
            .scores
            .into_iter()
            .map(|(variant, (values, passed))| {
                let n = values.len() as u64;
                let scores = VariantScores {
                    judged: n,
                    mean_score: mean(&values),
                    pass_rate: (n > 0).then(|| passed as f64 / n as f64),
                };
                (variant, scores)
            })
            .collect();
        report.verbosity = Verbosity {
            decided: self.winners.len() as u64,
            winner_mean_chars: mean(&self.winners),
            loser_mean_chars: mean(&self.losers),
        };
        report.judged += self.judged;
        report.errors += self.errors;
        report.deferred += self.deferred;
        report.feedback_written += self.feedback_written;
        report.warnings.extend(self.warnings);
    }
}

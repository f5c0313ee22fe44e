//! Turns answers into per-case scores: every suite scorer on every answer,
//! and the judge's rubric scores and pairwise verdicts.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::stream;

use super::call::RoutedModel;
use super::golden::GoldenCase;
use super::judge::{self, PairwiseTally, PairwiseVerdict, Rubric};
use super::run::{Attempt, VariantAnswers, request_text};
use super::scorers::{ScoreInput, Scorer};

/// One case's verdict from one scorer (over its repeats).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaseScore {
    /// Mean over the repeats, 0–1.
    pub value: f64,
    /// Every repeat passed.
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CaseScore {
    fn no_answer(error: &str) -> CaseScore {
        CaseScore {
            value: 0.0,
            passed: false,
            detail: Some(format!("no answer: {error}")),
        }
    }
}

/// Summed parts of a scorer's ratios (`name → (numerator, denominator)`).
pub type RatioSums = BTreeMap<&'static str, (f64, f64)>;

/// Scores `attempts` (one case's repeats) with `scorer`.
fn score_case(
    scorer: &Scorer,
    case: &GoldenCase,
    attempts: &[Attempt],
    sums: &mut RatioSums,
) -> CaseScore {
    let mut total = 0.0;
    let mut passed = true;
    let mut detail = None;
    for attempt in attempts {
        let score = match &attempt.answer {
            Ok(answer) => scorer.score(&ScoreInput {
                answer: &answer.text,
                expected: case.expected.as_ref(),
                source: case.source.as_deref(),
            }),
            Err(error) => return CaseScore::no_answer(error),
        };
        for ratio in &score.ratios {
            let sum = sums.entry(ratio.name).or_default();
            sum.0 += ratio.numerator;
            sum.1 += ratio.denominator;
        }
        total += score.value;
        if !score.passed && passed {
            passed = false;
            detail = score.detail;
        }
    }
    CaseScore {
        value: if attempts.is_empty() {
            0.0
        } else {
            total / attempts.len() as f64
        },
        passed: passed && !attempts.is_empty(),
        detail,
    }
}

/// `scores[case]` of one scorer for one variant, and its summed ratios.
pub fn score_variant(
    scorer: &Scorer,
    cases: &[GoldenCase],
    answers: &VariantAnswers,
) -> (Vec<CaseScore>, RatioSums) {
    let mut sums = RatioSums::new();
    let scores = cases
        .iter()
        .zip(&answers.attempts)
        .map(|(case, attempts)| score_case(scorer, case, attempts, &mut sums))
        .collect();
    (scores, sums)
}

/// The first answer of a case, or why there is none.
pub fn first_answer(attempts: &[Attempt]) -> Result<&str, &str> {
    match attempts.first().map(|a| &a.answer) {
        Some(Ok(answer)) => Ok(&answer.text),
        Some(Err(error)) => Err(error),
        None => Err("not asked"),
    }
}

/// The judge's rubric score of each case's first answer.
pub async fn rubric_scores(
    model: &RoutedModel<'_>,
    rubric: &Rubric,
    cases: &[GoldenCase],
    answers: &VariantAnswers,
    concurrency: usize,
) -> Vec<CaseScore> {
    stream::iter(cases.iter().zip(&answers.attempts))
        .map(|(case, attempts)| async move {
            let answer = match first_answer(attempts) {
                Ok(answer) => answer,
                Err(error) => return CaseScore::no_answer(error),
            };
            let reference = case.expected.as_ref().map(|e| match e {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            });
            match judge::score_rubric(
                model,
                rubric,
                &request_text(case),
                answer,
                reference.as_deref(),
            )
            .await
            {
                Ok(score) => CaseScore {
                    value: score.value,
                    passed: score.passed,
                    detail: Some(format!("judge score {}/10: {}", score.score, score.reason)),
                },
                Err(error) => CaseScore {
                    value: 0.0,
                    passed: false,
                    detail: Some(error.to_string()),
                },
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The judge's pairwise verdict on each case (baseline vs candidate, both
/// orders); `None` where an answer is missing or the judge failed.
pub async fn pairwise_verdicts(
    model: &RoutedModel<'_>,
    cases: &[GoldenCase],
    baseline: &VariantAnswers,
    candidate: &VariantAnswers,
    concurrency: usize,
) -> (Vec<Option<PairwiseVerdict>>, PairwiseTally) {
    let verdicts: Vec<Option<PairwiseVerdict>> = stream::iter(cases.iter().enumerate())
        .map(|(i, case)| async move {
            let (Ok(a), Ok(b)) = (
                first_answer(&baseline.attempts[i]),
                first_answer(&candidate.attempts[i]),
            ) else {
                return None;
            };
            judge::compare(model, None, &request_text(case), a, b)
                .await
                .ok()
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut tally = PairwiseTally::default();
    for verdict in &verdicts {
        match verdict {
            Some(verdict) => tally.add(verdict),
            None => tally.errors += 1,
        }
    }
    (verdicts, tally)
}

//! The LLM judge: a model that scores an answer against a rubric, or says
//! which of two answers is better. Independent of how the answers were
//! produced (an eval run, the audit log), so `promptgate eval` and any other
//! command ask it the same questions and read its replies the same way.
//!
//! Pairwise comparisons are asked twice, with the answers' positions
//! swapped: judges favour a position (usually the first), and a preference
//! that flips with the order is that bias, not a judgement. A win counts only
//! when the judge prefers the same answer in both orders; anything else is a
//! tie (Zheng et al. 2023, "Judging LLM-as-a-judge with MT-Bench and Chatbot
//! Arena", §3.3), and the share of comparisons that survived the swap is
//! reported as the position-consistency rate.

use std::future::Future;

use serde::Serialize;

pub use crate::judge_prompts::{
    PAIRWISE_SYSTEM, RUBRIC_SYSTEM, Rubric, pairwise_answers, pairwise_prompt, rubric_answer,
    rubric_prompt,
};

/// A model the judge can ask: a system prompt and a user prompt in, the
/// reply's text out (an error says why there is none).
pub trait JudgeModel: Send + Sync {
    fn ask(&self, system: &str, user: &str) -> impl Future<Output = Result<String, String>> + Send;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JudgeError {
    #[error("the judge model gave no answer: {0}")]
    NoAnswer(String),
    #[error("the judge's reply has no {expected}: {reply:?}")]
    Unreadable {
        expected: &'static str,
        reply: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RubricScore {
    /// 1–10, as the judge said.
    pub score: u8,
    /// The score on 0–1: `(score − 1) / 9`.
    pub value: f64,
    pub passed: bool,
    /// The judge's reply after the score line.
    pub reason: String,
}

/// Reads `Score: N` (1–10) from a rubric reply.
pub fn parse_rubric_reply(reply: &str, pass_score: u8) -> Result<RubricScore, JudgeError> {
    let unreadable = || JudgeError::Unreadable {
        expected: "`Score: N` with N from 1 to 10",
        reply: reply.chars().take(200).collect(),
    };
    let lower = reply.to_ascii_lowercase();
    let at = lower.find("score").ok_or_else(unreadable)?;
    let after = lower[at + "score".len()..]
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace() || c == '*');
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let score: u8 = digits.parse().map_err(|_| unreadable())?;
    if !(1..=10).contains(&score) {
        return Err(unreadable());
    }
    let reason = reply
        .split_once('\n')
        .map_or("", |(_, rest)| rest)
        .trim()
        .to_owned();
    Ok(RubricScore {
        score,
        value: f64::from(score - 1) / 9.0,
        passed: score >= pass_score,
        reason,
    })
}

/// Asks `model` to score `answer` against `rubric`.
pub async fn score_rubric(
    model: &impl JudgeModel,
    rubric: &Rubric,
    request: &str,
    answer: &str,
    reference: Option<&str>,
) -> Result<RubricScore, JudgeError> {
    let reply = model
        .ask(
            RUBRIC_SYSTEM,
            &rubric_prompt(rubric, request, answer, reference),
        )
        .await
        .map_err(JudgeError::NoAnswer)?;
    parse_rubric_reply(&reply, rubric.pass_score)
}

/// Which position a judge preferred in one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    First,
    Second,
    Tie,
}

/// Reads `A`, `B` or `TIE` (its first word, any case or emphasis).
pub fn parse_preference(reply: &str) -> Result<Preference, JudgeError> {
    let word: String = reply
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    match word.to_ascii_uppercase().as_str() {
        "A" => Ok(Preference::First),
        "B" => Ok(Preference::Second),
        "TIE" => Ok(Preference::Tie),
        _ => Err(JudgeError::Unreadable {
            expected: "A, B or TIE",
            reply: reply.chars().take(200).collect(),
        }),
    }
}

/// The result of a comparison of a candidate with a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    CandidateWins,
    BaselineWins,
    Tie,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PairwiseVerdict {
    pub outcome: Outcome,
    /// The judge preferred the same answer (or a tie) in both orders.
    pub consistent: bool,
    /// Baseline shown first.
    pub baseline_first: Preference,
    /// Candidate shown first.
    pub candidate_first: Preference,
}

/// Combines the two orders: a win only when both name the same answer.
pub fn verdict(baseline_first: Preference, candidate_first: Preference) -> PairwiseVerdict {
    use Preference::*;
    let (outcome, consistent) = match (baseline_first, candidate_first) {
        (Second, First) => (Outcome::CandidateWins, true),
        (First, Second) => (Outcome::BaselineWins, true),
        (Tie, Tie) => (Outcome::Tie, true),
        _ => (Outcome::Tie, false),
    };
    PairwiseVerdict {
        outcome,
        consistent,
        baseline_first,
        candidate_first,
    }
}

/// Asks `model` which of two answers to `request` is better (by `criteria`
/// when given), in both orders.
pub async fn compare(
    model: &impl JudgeModel,
    criteria: Option<&str>,
    request: &str,
    baseline: &str,
    candidate: &str,
) -> Result<PairwiseVerdict, JudgeError> {
    let ask = |first: &str, second: &str| {
        let prompt = pairwise_prompt(criteria, request, first, second);
        async move {
            let reply = model
                .ask(PAIRWISE_SYSTEM, &prompt)
                .await
                .map_err(JudgeError::NoAnswer)?;
            parse_preference(&reply)
        }
    };
    let baseline_first = ask(baseline, candidate).await?;
    let candidate_first = ask(candidate, baseline).await?;
    Ok(verdict(baseline_first, candidate_first))
}

/// Pairwise outcomes counted over many comparisons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PairwiseTally {
    pub wins: u64,
    pub losses: u64,
    pub ties: u64,
    /// Comparisons whose preference survived the swap.
    pub consistent: u64,
    /// Comparisons the judge could not complete (no or unreadable reply).
    pub errors: u64,
}

impl PairwiseTally {
    pub fn add(&mut self, verdict: &PairwiseVerdict) {
        match verdict.outcome {
            Outcome::CandidateWins => self.wins += 1,
            Outcome::BaselineWins => self.losses += 1,
            Outcome::Tie => self.ties += 1,
        }
        self.consistent += u64::from(verdict.consistent);
    }

    pub fn compared(&self) -> u64 {
        self.wins + self.losses + self.ties
    }

    /// Share of completed comparisons whose preference survived the swap
    /// (`None` before any).
    pub fn consistency_rate(&self) -> Option<f64> {
        let compared = self.compared();
        (compared > 0).then(|| self.consistent as f64 / compared as f64)
    }
}

/// A warning when the judge is the model being judged: models rate their
/// own answers higher (self-preference bias).
pub fn self_judging_warning(
    judge_model: &str,
    candidate: &str,
    candidate_model: &str,
) -> Option<String> {
    (judge_model == candidate_model).then(|| {
        format!(
            "the judge model `{judge_model}` is also the model of `{candidate}`: a model tends to prefer its own answers; use another judge model"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge that always picks position A, whatever it is shown.
    struct PositionBiased;
    impl JudgeModel for PositionBiased {
        async fn ask(&self, _system: &str, _user: &str) -> Result<String, String> {
            Ok("A".into())
        }
    }

    /// A judge that prefers the answer containing `marker`, in any position.
    struct Prefers(&'static str);
    impl JudgeModel for Prefers {
        async fn ask(&self, _system: &str, user: &str) -> Result<String, String> {
            let (a, b) = pairwise_answers(user).ok_or("no answers")?;
            Ok(match (a.contains(self.0), b.contains(self.0)) {
                (true, false) => "A",
                (false, true) => "**B**",
                _ => "tie",
            }
            .into())
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn position_bias_yields_ties_never_wins() {
        let mut tally = PairwiseTally::default();
        for (baseline, candidate) in [("x", "y"), ("good", "bad"), ("bad", "good")] {
            let verdict = block_on(compare(&PositionBiased, None, "q", baseline, candidate))
                .expect("verdict");
            assert_eq!(verdict.outcome, Outcome::Tie);
            assert!(!verdict.consistent);
            tally.add(&verdict);
        }
        assert_eq!((tally.wins, tally.losses, tally.ties), (0, 0, 3));
        assert_eq!(tally.consistency_rate(), Some(0.0));
    }

    #[test]
    fn a_consistent_preference_wins_for_the_preferred_answer() {
        let mut tally = PairwiseTally::default();
        let judge = Prefers("good");
        for (baseline, candidate, expected) in [
            ("bad", "good", Outcome::CandidateWins),
            ("good", "bad", Outcome::BaselineWins),
            ("bad", "bad", Outcome::Tie),
        ] {
            let verdict =
                block_on(compare(&judge, None, "q", baseline, candidate)).expect("verdict");
            assert_eq!(verdict.outcome, expected, "{baseline} vs {candidate}");
            assert!(verdict.consistent);
            tally.add(&verdict);
        }
        assert_eq!((tally.wins, tally.losses, tally.ties), (1, 1, 1));
        assert_eq!(tally.consistency_rate(), Some(1.0));
    }

    #[test]
    fn replies_are_read_leniently_but_never_guessed() {
        assert_eq!(parse_preference(" [[B]] because"), Ok(Preference::Second));
        assert_eq!(parse_preference("Tie."), Ok(Preference::Tie));
        assert!(parse_preference("Both are fine").is_err());
        let score = parse_rubric_reply("**Score: 8**\nClear and correct.", 7).expect("score");
        assert_eq!(
            (score.score, score.passed, score.reason.as_str()),
            (8, true, "Clear and correct.")
        );
        assert!((score.value - 7.0 / 9.0).abs() < 1e-12);
        assert!(parse_rubric_reply("Score: 11", 7).is_err());
        assert!(parse_rubric_reply("great answer", 7).is_err());
    }

    #[test]
    fn the_prompt_round_trips_its_answers() {
        let prompt = pairwise_prompt(Some("c"), "q", "first\nline", "second");
        assert_eq!(pairwise_answers(&prompt), Some(("first\nline", "second")));
        let rubric = Rubric {
            criteria: "names the model".into(),
            pass_score: 7,
        };
        let prompt = rubric_prompt(&rubric, "q", "the answer", Some("ref"));
        assert_eq!(rubric_answer(&prompt), Some("the answer"));
    }
}

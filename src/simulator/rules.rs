//! Answers the simulator gives instead of the demo provider's, for eval
//! tests: one model answering wrong on a fixed share of inputs (an injected
//! regression), and a judge with a known behaviour.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::eval::judge;
use crate::providers::demo::{self, DemoAnswer};

/// What a wrong answer says: passes no reasonable scorer of the tests' cases.
pub const WRONG_ANSWER: &str = "Sorry, I could not find that.";

/// Makes `model` answer wrong on about `percent` % of inputs. The choice is
/// a hash of the request's last user message, so the same case is wrong on
/// every run (and in a cache), and other models are untouched.
#[derive(Debug, Clone)]
pub struct WrongAnswers {
    pub model: String,
    pub percent: u32,
}

impl WrongAnswers {
    /// Whether an input (the last user message) gets a wrong answer.
    pub fn hits(&self, input: &str) -> bool {
        let digest = Sha256::digest(input.as_bytes());
        u32::from(u16::from_be_bytes([digest[0], digest[1]])) % 100 < self.percent
    }
}

/// How the simulator answers the judge's prompts (`eval::judge`).
#[derive(Debug, Clone)]
pub enum SimJudge {
    /// Always prefers the answer shown first; gives every answer 7/10.
    PositionBias,
    /// Prefers the answer containing this text, wherever it is shown (a tie
    /// when both or neither do); 9/10 to an answer with it, 2/10 without.
    Prefers(String),
}

impl SimJudge {
    fn pairwise(&self, prompt: &str) -> &'static str {
        match self {
            SimJudge::PositionBias => "A",
            SimJudge::Prefers(marker) => match judge::pairwise_answers(prompt) {
                Some((a, b)) => match (a.contains(marker.as_str()), b.contains(marker.as_str())) {
                    (true, false) => "A",
                    (false, true) => "B",
                    _ => "TIE",
                },
                None => "TIE",
            },
        }
    }

    fn rubric(&self, prompt: &str) -> &'static str {
        match self {
            SimJudge::PositionBias => "Score: 7\nAcceptable.",
            SimJudge::Prefers(marker)
                if judge::rubric_answer(prompt).is_some_and(|a| a.contains(marker.as_str())) =>
            {
                "Score: 9\nIt has what the rubric asks."
            }
            SimJudge::Prefers(_) => "Score: 2\nIt lacks what the rubric asks.",
        }
    }
}

/// Replaces the demo answer's text where a rule applies.
pub fn apply(
    wrong: Option<&WrongAnswers>,
    sim_judge: Option<&SimJudge>,
    request: &Value,
    answer: &mut DemoAnswer,
) {
    if let Some(sim_judge) = sim_judge {
        let reply = match demo::system_text(request) {
            Some(judge::PAIRWISE_SYSTEM) => {
                Some(sim_judge.pairwise(&demo::last_user_text(request)))
            }
            Some(judge::RUBRIC_SYSTEM) => Some(sim_judge.rubric(&demo::last_user_text(request))),
            _ => None,
        };
        if let Some(reply) = reply {
            answer.text = reply.to_owned();
            return;
        }
    }
    if let Some(wrong) = wrong
        && request.get("model").and_then(Value::as_str) == Some(wrong.model.as_str())
        && wrong.hits(&demo::last_user_text(request))
    {
        answer.text = WRONG_ANSWER.to_owned();
    }
}

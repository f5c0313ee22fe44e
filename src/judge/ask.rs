//! Asking the judge about one item, priced: every question's tokens are
//! costed with `[prices]` of the judge model, and a budget stops new items
//! before the spend could pass `--max-usd`.

use std::sync::{Mutex, PoisonError};

use crate::eval::call::RoutedModel;
use crate::eval::judge::{self, JudgeModel, PairwiseVerdict, RubricScore};
use promptgate_core::config::audit::Price;

use super::log::Item;
use super::rubric::{Mode, RubricFile};

/// What a reply is assumed to cost before it is known: a pairwise reply is
/// one word, a rubric reply a score line and a sentence.
const ASSUMED_REPLY_TOKENS: (u64, u64) = (4, 64);

/// About four characters a token (the providers' rule of thumb), for
/// estimates only; actual spend uses the provider's counts.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The questions an item asks: (system, user) prompts.
pub fn prompts(rubric: &RubricFile, item: &Item) -> Vec<(&'static str, String)> {
    match (item, rubric.mode) {
        (
            Item::Pair {
                request,
                served,
                shadow,
            },
            _,
        ) => {
            let criteria = Some(rubric.rubric.criteria.as_str());
            vec![
                (
                    judge::PAIRWISE_SYSTEM,
                    judge::pairwise_prompt(criteria, request, &served.text, &shadow.text),
                ),
                (
                    judge::PAIRWISE_SYSTEM,
                    judge::pairwise_prompt(criteria, request, &shadow.text, &served.text),
                ),
            ]
        }
        (Item::Single { request, answer }, _) => vec![(
            judge::RUBRIC_SYSTEM,
            judge::rubric_prompt(&rubric.rubric, request, &answer.text, None),
        )],
    }
}

/// The estimated USD of an item's questions; `None` without a price.
pub fn estimate_usd(rubric: &RubricFile, price: Option<&Price>, item: &Item) -> Option<f64> {
    let reply = match rubric.mode {
        Mode::Pairwise => ASSUMED_REPLY_TOKENS.0,
        Mode::Pointwise => ASSUMED_REPLY_TOKENS.1,
    };
    let price = price?;
    prompts(rubric, item)
        .iter()
        .map(|(system, user)| {
            price.cost_usd(
                Some(estimate_tokens(system) + estimate_tokens(user)),
                Some(reply),
            )
        })
        .sum()
}

/// Spend so far and spend promised to items in flight.
#[derive(Debug, Default)]
pub struct Budget {
    limit: Option<f64>,
    state: Mutex<(f64, f64)>,
}

impl Budget {
    pub fn new(limit: Option<f64>) -> Budget {
        Budget {
            limit,
            state: Mutex::new((0.0, 0.0)),
        }
    }

    /// Reserves `estimate` for an item; false when it would pass the limit.
    pub fn reserve(&self, estimate: f64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (spent, reserved) = *state;
        if self
            .limit
            .is_some_and(|limit| spent + reserved + estimate > limit)
        {
            return false;
        }
        state.1 += estimate;
        true
    }

    /// Replaces an item's reservation with what it cost.
    pub fn settle(&self, estimate: f64, cost: f64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 -= estimate;
        state.0 += cost;
    }

    pub fn spent(&self) -> f64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

/// The judge model with a meter: what each answer cost is added up (by the
/// provider's token counts, else by the estimate of its prompt).
pub struct Metered<'a> {
    pub model: &'a RoutedModel<'a>,
    pub price: Option<&'a Price>,
    pub cost: Mutex<f64>,
}

impl JudgeModel for Metered<'_> {
    async fn ask(&self, system: &str, user: &str) -> Result<String, String> {
        let answer = self.model.answer(system, user).await?;
        if let Some(price) = self.price {
            let input = answer
                .input_tokens
                .unwrap_or_else(|| estimate_tokens(system) + estimate_tokens(user));
            let output = answer
                .output_tokens
                .unwrap_or_else(|| estimate_tokens(&answer.text));
            let cost = price.cost_usd(Some(input), Some(output)).unwrap_or(0.0);
            *self.cost.lock().unwrap_or_else(PoisonError::into_inner) += cost;
        }
        Ok(answer.text)
    }
}

/// The judge's verdict on one item.
#[derive(Debug, Clone)]
pub enum Verdict {
    Pairwise(PairwiseVerdict),
    Pointwise(RubricScore),
}

/// Asks the judge about `item`.
pub async fn judge_item(
    model: &Metered<'_>,
    rubric: &RubricFile,
    item: &Item,
) -> Result<Verdict, judge::JudgeError> {
    match item {
        Item::Pair {
            request,
            served,
            shadow,
        } => judge::compare(
            model,
            Some(&rubric.rubric.criteria),
            request,
            &served.text,
            &shadow.text,
        )
        .await
        .map(Verdict::Pairwise),
        Item::Single { request, answer } => {
            judge::score_rubric(model, &rubric.rubric, request, &answer.text, None)
                .await
                .map(Verdict::Pointwise)
        }
    }
}

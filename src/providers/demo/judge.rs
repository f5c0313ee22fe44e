//! The demo provider as an LLM judge, so `promptgate judge` and `eval`'s
//! judge run in the quickstart with no key. Not a judgement: a fixed,
//! position-independent stand-in — the answer sharing more words with the
//! request wins; with equal shares the shorter one does ("without padding",
//! so the quickstart's two variants, which both echo the request, get a
//! verdict); a tie when both are equal. A rubric score grows with the share.

use std::collections::HashSet;

use crate::judge_prompts as judge;

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// The share of the request's words an answer uses.
fn overlap(request: &HashSet<String>, answer: &str) -> f64 {
    if request.is_empty() {
        return 0.0;
    }
    let answer = words(answer);
    request.iter().filter(|w| answer.contains(*w)).count() as f64 / request.len() as f64
}

/// The text between `[Request]` and its end marker.
fn request_of(prompt: &str) -> &str {
    prompt
        .split_once("[Request]\n")
        .and_then(|(_, rest)| rest.split_once("\n[End of request]"))
        .map_or("", |(request, _)| request)
}

/// The demo judge's reply to a judge prompt, `None` for any other request.
pub fn reply(system: &str, prompt: &str) -> Option<String> {
    let request = words(request_of(prompt));
    match system {
        judge::PAIRWISE_SYSTEM => {
            let (a, b) = judge::pairwise_answers(prompt)?;
            // Higher share first, then fewer characters.
            let rank = |answer: &str| (overlap(&request, answer), -(answer.chars().count() as f64));
            let (a, b) = (rank(a), rank(b));
            Some(
                match a.partial_cmp(&b) {
                    Some(std::cmp::Ordering::Greater) => "A",
                    Some(std::cmp::Ordering::Less) => "B",
                    _ => "TIE",
                }
                .to_owned(),
            )
        }
        judge::RUBRIC_SYSTEM => {
            let answer = judge::rubric_answer(prompt)?;
            let score = 1 + (overlap(&request, answer) * 9.0).round() as u8;
            Some(format!(
                "Score: {score}\nThe demo judge scores by the share of the request's words the answer uses."
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_judge_ignores_positions() {
        let first =
            judge::pairwise_prompt(None, "tell me about otters", "otters are great", "hello");
        let second =
            judge::pairwise_prompt(None, "tell me about otters", "hello", "otters are great");
        assert_eq!(reply(judge::PAIRWISE_SYSTEM, &first).as_deref(), Some("A"));
        assert_eq!(reply(judge::PAIRWISE_SYSTEM, &second).as_deref(), Some("B"));
        // The same share: the shorter answer wins, in either position; the
        // same text is a tie.
        let padded = "otters, truly and without any doubt, are great";
        for (a, b, verdict) in [
            ("otters are great", padded, "A"),
            (padded, "otters are great", "B"),
            ("otters are great", "otters are great", "TIE"),
        ] {
            let prompt = judge::pairwise_prompt(None, "tell me about otters", a, b);
            assert_eq!(
                reply(judge::PAIRWISE_SYSTEM, &prompt).as_deref(),
                Some(verdict)
            );
        }
        let rubric = judge::Rubric {
            criteria: "on topic".into(),
            pass_score: 7,
        };
        let prompt = judge::rubric_prompt(&rubric, "tell me about otters", "otters otters", None);
        let scored = reply(judge::RUBRIC_SYSTEM, &prompt).unwrap();
        // One of the request's three words longer than two letters (tell,
        // about, otters): 1 + 9/3.
        assert!(scored.starts_with("Score: 4\n"), "{scored}");
        assert_eq!(reply("You are helpful.", "hi"), None);
    }
}

//! The judge's questions as text: its system prompts, the layout of its
//! user prompts, and reading the answers back out of a prompt (which the
//! demo provider and the simulator do to play the judge). A module of its
//! own, depending on nothing, so that the providers can answer the judge
//! without depending on `eval`, which calls them.

/// The system prompt of a rubric question.
pub const RUBRIC_SYSTEM: &str = "You are a strict evaluator of AI assistant answers. \
Score the answer against the rubric. Reply with `Score: N` on the first line, N a whole \
number from 1 (fails the rubric) to 10 (fully meets it), then one sentence saying why.";

/// The system prompt of a pairwise question; the simulator recognises it.
pub const PAIRWISE_SYSTEM: &str = "You are an impartial judge comparing two AI assistant \
answers to the same request. Ignore the order in which they are shown and their length. \
Reply with exactly one of: A, B, TIE.";

const ANSWER: (&str, &str) = ("[Answer]\n", "\n[End of answer]");
const ANSWER_A: (&str, &str) = ("[Answer A]\n", "\n[End of answer A]");
const ANSWER_B: (&str, &str) = ("[Answer B]\n", "\n[End of answer B]");

/// A rubric and the score (1–10) from which an answer passes.
#[derive(Debug, Clone)]
pub struct Rubric {
    pub criteria: String,
    pub pass_score: u8,
}

/// The user prompt of a rubric question.
pub fn rubric_prompt(
    rubric: &Rubric,
    request: &str,
    answer: &str,
    reference: Option<&str>,
) -> String {
    let mut prompt = format!(
        "[Rubric]\n{}\n[End of rubric]\n\n[Request]\n{request}\n[End of request]\n\n",
        rubric.criteria
    );
    if let Some(reference) = reference {
        prompt.push_str(&format!(
            "[Reference answer]\n{reference}\n[End of reference answer]\n\n"
        ));
    }
    prompt.push_str(&format!("{}{answer}{}", ANSWER.0, ANSWER.1));
    prompt
}

/// The user prompt of a pairwise question: `first` is shown as A; the
/// criteria, when given, say what "better" means.
pub fn pairwise_prompt(criteria: Option<&str>, request: &str, first: &str, second: &str) -> String {
    let criteria = criteria.map_or_else(String::new, |text| {
        format!("[Criteria]\n{text}\n[End of criteria]\n\n")
    });
    format!(
        "{criteria}[Request]\n{request}\n[End of request]\n\n{}{first}{}\n\n{}{second}{}\n\nWhich answer is better: A, B or TIE?",
        ANSWER_A.0, ANSWER_A.1, ANSWER_B.0, ANSWER_B.1
    )
}

/// The text of `prompt` between the markers (the last opening one, so an
/// answer quoting a marker cannot move it).
fn between<'a>(prompt: &'a str, (open, close): (&str, &str)) -> Option<&'a str> {
    let start = prompt.rfind(open)? + open.len();
    let end = start + prompt[start..].find(close)?;
    Some(&prompt[start..end])
}

/// The two answers of a pairwise prompt (A, B), for a simulated judge.
pub fn pairwise_answers(prompt: &str) -> Option<(&str, &str)> {
    Some((between(prompt, ANSWER_A)?, between(prompt, ANSWER_B)?))
}

/// The answer of a rubric prompt, for a simulated judge.
pub fn rubric_answer(prompt: &str) -> Option<&str> {
    between(prompt, ANSWER)
}

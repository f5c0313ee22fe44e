//! A variant applied to request bodies of each dialect, on experiments loaded
//! through the real config loader; each rendered body is compared as JSON
//! with the body the variant must produce.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::*;
use crate::experiments::test_config::first_experiment;

/// Experiment `x` with one variant `v` whose table has `variant` lines.
fn experiment(variant: &str) -> Experiment {
    first_experiment(&format!(
        r#"[auth]
open = true

[providers.demo]
kind = "demo"

[experiments.x]
unit_key = {{ header = "x-user-id" }}

[[experiments.x.variants]]
name = "v"
weight = 1
model = "m-v"
providers = ["demo"]
{variant}
"#
    ))
}

fn render(variant: &str, endpoint: Endpoint, body: Value) -> Result<Value, ExperimentError> {
    let experiment = experiment(variant);
    let bytes = serde_json::to_vec(&body).unwrap();
    let fields = BodyFields::parse(&bytes).unwrap();
    let variables = Variables::of(&fields, endpoint)?;
    let rendered = apply(
        &experiment,
        &experiment.variants[0],
        endpoint,
        &fields,
        &variables,
    )?;
    Ok(serde_json::from_slice(&rendered.to_vec().unwrap()).unwrap())
}

#[test]
fn chat_system_template_replaces_the_callers_and_the_user_template_goes_first() {
    let rendered = render(
        r#"system = "Answer for {{audience}}."
user = "Task: {{input}}"
messages = "prepend"
params = { temperature = 0.2, max_tokens = 30 }"#,
        Endpoint::ChatCompletions,
        json!({
            "model": "x",
            "temperature": 1,
            "user": "end-user-7",
            "messages": [
                {"role": "system", "content": "caller's system"},
                {"role": "developer", "content": "caller's developer"},
                {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
                {"role": "assistant", "content": "ok", "extra": {"kept": [1, 2]}},
            ],
            "promptgate": {"variables": {"audience": "students"}},
        }),
    )
    .unwrap();
    assert_eq!(
        rendered,
        json!({
            "model": "m-v",
            "temperature": 0.2,
            "max_tokens": 30,
            "user": "end-user-7",
            "messages": [
                {"role": "system", "content": "Answer for students."},
                {"role": "user", "content": "Task: part one\npart two"},
                {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
                {"role": "assistant", "content": "ok", "extra": {"kept": [1, 2]}},
            ],
        })
    );
}

#[test]
fn chat_without_a_system_template_keeps_the_callers_system_messages_first() {
    let rendered = render(
        "",
        Endpoint::ChatCompletions,
        json!({
            "model": "x",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "late system"},
                "not an object",
            ],
        }),
    )
    .unwrap();
    assert_eq!(
        rendered,
        json!({
            "model": "m-v",
            "messages": [
                {"role": "system", "content": "late system"},
                {"role": "user", "content": "hi"},
                "not an object",
            ],
        })
    );
}

#[test]
fn messages_replace_mode_sends_only_the_template_and_sets_the_system_field() {
    let rendered = render(
        r#"system = "Be brief."
user = "Invoice:\n{{input}}"
messages = "replace""#,
        Endpoint::Messages,
        json!({
            "model": "x",
            "max_tokens": 100,
            "system": "caller's",
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "INV-1"},
            ],
        }),
    )
    .unwrap();
    assert_eq!(
        rendered,
        json!({
            "model": "m-v",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Invoice:\nINV-1"}],
        })
    );
}

#[test]
fn responses_input_text_becomes_a_message_after_the_template() {
    let rendered = render(
        r#"system = "Be brief."
user = "Context for {{input}}"
messages = "prepend""#,
        Endpoint::Responses,
        json!({"model": "x", "input": "the question"}),
    )
    .unwrap();
    assert_eq!(
        rendered,
        json!({
            "model": "m-v",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Context for the question"},
                {"role": "user", "content": "the question"},
            ],
        })
    );
    let untouched = render(
        "",
        Endpoint::Responses,
        json!({"model": "x", "input": [{"role": "user", "content": "q"}]}),
    )
    .unwrap();
    assert_eq!(
        untouched,
        json!({"model": "m-v", "input": [{"role": "user", "content": "q"}]})
    );
    let refused = render(
        r#"user = "x"
messages = "prepend""#,
        Endpoint::Responses,
        json!({"model": "x", "input": 3}),
    );
    assert!(
        matches!(&refused, Err(ExperimentError::InvalidVariables { field, .. }) if field == "input"),
        "{refused:?}"
    );
}

#[test]
fn variables_are_checked_and_an_explicit_input_wins() {
    let rendered = render(
        r#"user = "{{input}} / {{n}}"
messages = "replace""#,
        Endpoint::ChatCompletions,
        json!({
            "model": "x",
            "messages": [{"role": "user", "content": "from messages"}],
            "promptgate": {"variables": {"input": "explicit", "n": 3}},
        }),
    )
    .unwrap();
    assert_eq!(
        rendered["messages"],
        json!([{"role": "user", "content": "explicit / 3"}])
    );
    for (variables, field) in [
        (json!([1]), "promptgate.variables"),
        (json!({"n": {"deep": 1}}), "promptgate.variables.n"),
    ] {
        let refused = render(
            "",
            Endpoint::ChatCompletions,
            json!({"model": "x", "messages": [], "promptgate": {"variables": variables}}),
        );
        assert!(
            matches!(&refused, Err(ExperimentError::InvalidVariables { field: f, .. }) if f == field),
            "{refused:?}"
        );
    }
    let missing = render(
        r#"user = "{{absent}}"
messages = "prepend""#,
        Endpoint::ChatCompletions,
        json!({"model": "x", "messages": []}),
    );
    assert!(
        matches!(missing, Err(ExperimentError::MissingVariable { .. })),
        "{missing:?}"
    );
}

#[test]
fn bodies_without_messages_and_other_endpoints_are_refused() {
    let no_messages = render("", Endpoint::ChatCompletions, json!({"model": "x"}));
    assert!(
        matches!(&no_messages, Err(ExperimentError::InvalidVariables { field, .. }) if field == "messages"),
        "{no_messages:?}"
    );
    let embeddings = render(
        "",
        Endpoint::Embeddings,
        json!({"model": "x", "input": "t"}),
    );
    assert!(
        matches!(
            embeddings,
            Err(ExperimentError::ExperimentNotApplicable { .. })
        ),
        "{embeddings:?}"
    );
}

#[test]
fn variable_values_read_as_a_json_tree_would_print_them() {
    for (raw, text) in [
        (r#""plain""#, Some("plain")),
        (r#""esc\"aped \u00e9""#, Some("esc\"aped é")),
        ("3", Some("3")),
        ("-3", Some("-3")),
        ("0", Some("0")),
        ("1.50", Some("1.5")),
        ("1e2", Some("100.0")),
        // Beyond 64 bits: a float, spelled as `serde_json` prints it (its
        // digits depend on the build's features), checked against the tree.
        ("123456789012345678901234", None),
        ("true", Some("true")),
        ("false", Some("false")),
        ("null", None),
        ("[1]", None),
        (r#"{"a":1}"#, None),
    ] {
        let value: Box<RawValue> = serde_json::from_str(raw).unwrap();
        // What reading a `Value` tree gave before (`decide::scalar_text`).
        let tree: Value = serde_json::from_str(raw).unwrap();
        let from_tree = super::super::decide::scalar_text(&tree);
        assert_eq!(
            scalar_text(&value).as_deref(),
            from_tree.as_deref(),
            "{raw}"
        );
        if tree.is_f64() && raw.len() > 18 {
            assert!(from_tree.is_some(), "{raw}");
        } else {
            assert_eq!(from_tree.as_deref(), text, "{raw}");
        }
    }
}

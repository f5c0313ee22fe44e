//! Load-time checks of `[experiments.*]`: every rejection names its field path
//! and the line it was written on; prompt files resolve against the config
//! directory and take part in the config version.

use std::collections::HashMap;
use std::path::Path;

use super::validate::Environment;
use super::*;

fn parse_in(source: &str, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let vars: HashMap<String, String> = HashMap::new();
    let read_env = move |name: &str| vars.get(name).cloned();
    parse(
        source,
        &Environment {
            base_dir,
            listen_override: None,
            admin_listen_override: None,
            read_env: &read_env,
            read_prompt: &|name| super::read_local_prompt(base_dir, name),
        },
    )
}

fn parse_with_env(source: &str) -> Result<Config, Vec<Problem>> {
    parse_in(source, Path::new("/nonexistent"))
}

/// Providers `demo` and `sim`, and a route for the exact model `gpt-4o`.
const BASE: &str = r#"[auth]
open = true

[providers.demo]
kind = "demo"

[providers.sim]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[routes]]
models = ["gpt-4o", "claude-*"]
providers = ["demo"]
"#;

/// A valid experiment `x` with variants `a` and `b`.
const VALID: &str = r#"
[experiments.x]
unit_key = { header = "x-user-id" }

[[experiments.x.variants]]
name = "a"
weight = 50
model = "gpt-4o"
providers = ["demo"]

[[experiments.x.variants]]
name = "b"
weight = 50
model = "gpt-4o-mini"
providers = ["sim", "demo"]
system = "Be brief, {{name}}."
"#;

fn config(experiments: &str) -> String {
    format!("{BASE}{experiments}")
}

/// 1-based line of the only line of `source` containing `needle`.
fn line_with(source: &str, needle: &str) -> usize {
    let found: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "`{needle}` must be on exactly one line");
    found[0]
}

/// 1-based line of the `n`th (0-based) line of `source` equal to `line`.
fn nth_line(source: &str, line: &str, n: usize) -> usize {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .nth(n)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no line #{n} `{line}`"))
}

fn problems(source: &str) -> Vec<Problem> {
    match parse_with_env(source) {
        Ok(_) => panic!("config should be invalid:\n{source}"),
        Err(problems) => problems,
    }
}

/// Asserts that loading `source` fails with exactly one problem, at `path`,
/// on the line holding `line_needle`, whose message contains `message`.
#[track_caller]
fn rejects(source: &str, path: &str, line_needle: &str, message: &str) {
    rejects_at(source, path, line_with(source, line_needle), message);
}

/// Like `rejects`, with the expected line given as a number.
#[track_caller]
fn rejects_at(source: &str, path: &str, line: usize, message: &str) {
    let found = problems(source);
    assert_eq!(found.len(), 1, "expected exactly one problem: {found:#?}");
    let problem = &found[0];
    assert_eq!(problem.path, path, "{problem:#?}");
    assert_eq!(problem.line, Some(line), "wrong line for {problem:#?}");
    assert!(
        problem.message.contains(message),
        "message `{}` lacks `{message}`",
        problem.message
    );
}

#[test]
fn the_valid_experiment_loads_with_its_settings() {
    let config = parse_with_env(&config(VALID)).expect("valid");
    assert_eq!(config.experiments.len(), 1);
    let x = &config.experiments[0];
    assert_eq!(&*x.id, "x");
    assert_eq!(&*x.salt, "x", "the salt defaults to the id");
    assert!(x.enabled);
    assert_eq!(x.enrolment_percent, 100.0);
    assert_eq!(x.default_variant, 0, "the default is the first variant");
    assert_eq!(x.fallback_variant, None);
    assert_eq!(x.killswitch, None);
    let names: Vec<&str> = x.variants.iter().map(|v| &*v.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(x.variants[1].model(), "gpt-4o-mini");
    assert_eq!(x.variants[1].route.providers.len(), 2);
    let system = x.variants[1]
        .system
        .as_ref()
        .expect("b has a system prompt");
    assert_eq!(
        system
            .render(|n| (n == "name").then_some("Ada"))
            .expect("renders"),
        "Be brief, Ada."
    );
    assert!(x.variants[0].system.is_none());
}

#[test]
fn negative_weight() {
    let source = config(&VALID.replacen("weight = 50", "weight = -1", 1));
    rejects(
        &source,
        "experiments.x.variants[0].weight",
        "weight = -1",
        "-1 is not a finite number ≥ 0",
    );
}

#[test]
fn infinite_weight() {
    let source = config(&VALID.replacen("weight = 50", "weight = inf", 1));
    rejects(
        &source,
        "experiments.x.variants[0].weight",
        "weight = inf",
        "is not a finite number ≥ 0",
    );
}

#[test]
fn all_zero_weights() {
    let source = config(&VALID.replace("weight = 50", "weight = 0"));
    // A problem of the whole array points at its first element's header.
    rejects_at(
        &source,
        "experiments.x.variants",
        nth_line(&source, "[[experiments.x.variants]]", 0),
        "every weight is 0",
    );
}

#[test]
fn weight_that_is_not_a_number_is_a_syntax_problem_at_its_path() {
    let source = config(&VALID.replacen("weight = 50", "weight = \"half\"", 1));
    rejects(
        &source,
        "experiments.x.variants[0].weight",
        "weight = \"half\"",
        "invalid type: string \"half\"",
    );
}

#[test]
fn duplicate_variant_names() {
    let source = config(&VALID.replacen("name = \"b\"", "name = \"a\" # again", 1));
    rejects(
        &source,
        "experiments.x.variants[1].name",
        "# again",
        "duplicate variant name `a` (also experiments.x.variants[0])",
    );
}

#[test]
fn unclosed_template_placeholder() {
    let source = config(&VALID.replace("Be brief, {{name}}.", "Be brief, {{name"));
    rejects(
        &source,
        "experiments.x.variants[1].system",
        "system = ",
        "invalid template: `{{` at character 10 is never closed with `}}`",
    );
}

#[test]
fn template_closing_nothing() {
    let source = config(&VALID.replace("Be brief, {{name}}.", "Be brief, name}}."));
    rejects(
        &source,
        "experiments.x.variants[1].system",
        "system = ",
        "invalid template: `}}` at character 14 closes nothing",
    );
}

#[test]
fn unbalanced_user_template() {
    let source = config(&format!(
        "{VALID}user = \"Answer {{{{input\"\nmessages = \"prepend\"\n"
    ));
    rejects(
        &source,
        "experiments.x.variants[1].user",
        "user = ",
        "is never closed",
    );
}

#[test]
fn rule_naming_a_missing_variant() {
    let source = config(&format!(
        "{VALID}\n[[experiments.x.rules]]\nname = \"beta\"\nvariant = \"c\"\nattribute = \"header:x-beta\"\nequals = \"1\"\n"
    ));
    rejects(
        &source,
        "experiments.x.rules[0].variant",
        "variant = \"c\"",
        "unknown variant `c` (variants: a, b)",
    );
}

#[test]
fn killswitch_naming_a_missing_variant() {
    let source = config(&VALID.replacen("unit_key = ", "killswitch = \"off\"\nunit_key = ", 1));
    rejects(
        &source,
        "experiments.x.killswitch",
        "killswitch = ",
        "unknown variant `off` (variants: a, b)",
    );
}

#[test]
fn default_variant_naming_a_missing_variant() {
    let source = config(&VALID.replacen(
        "unit_key = ",
        "default_variant = \"control\"\nunit_key = ",
        1,
    ));
    rejects(
        &source,
        "experiments.x.default_variant",
        "default_variant = ",
        "unknown variant `control` (variants: a, b)",
    );
}

#[test]
fn fallback_variant_naming_a_missing_variant() {
    let source =
        config(&VALID.replacen("unit_key = ", "fallback_variant = \"safe\"\nunit_key = ", 1));
    rejects(
        &source,
        "experiments.x.fallback_variant",
        "fallback_variant = ",
        "unknown variant `safe` (variants: a, b)",
    );
}

/// validate.rs promises that every problem is collected, not just the first:
/// a wrong `default_variant` must not hide the others in the same experiment.
#[test]
fn a_wrong_default_variant_does_not_hide_other_problems() {
    let source = config(&format!(
        "{}\n[[experiments.x.rules]]\nname = \"beta\"\nvariant = \"c\"\nattribute = \"model\"\nequals = \"1\"\n",
        VALID.replacen(
            "unit_key = ",
            "default_variant = \"control\"\nfallback_variant = \"safe\"\nkillswitch = \"off\"\nunit_key = ",
            1,
        )
    ));
    let found = problems(&source);
    let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "experiments.x.default_variant",
            "experiments.x.fallback_variant",
            "experiments.x.killswitch",
            "experiments.x.rules[0].variant",
        ],
        "{found:#?}"
    );
}

#[test]
fn unit_key_without_a_source() {
    let source = config(&VALID.replace("unit_key = { header = \"x-user-id\" }", "unit_key = {}"));
    rejects(
        &source,
        "experiments.x.unit_key",
        "unit_key = {}",
        "set exactly one of `header`, `body` or `client_id = true`",
    );
}

#[test]
fn unit_key_with_two_sources() {
    let source = config(&VALID.replace(
        "unit_key = { header = \"x-user-id\" }",
        "unit_key = { header = \"x-user-id\", body = \"user\" }",
    ));
    rejects(
        &source,
        "experiments.x.unit_key",
        "unit_key = {",
        "set exactly one of `header`, `body` or `client_id = true`",
    );
    let source = config(&VALID.replace(
        "unit_key = { header = \"x-user-id\" }",
        "unit_key = { body = \"user\", client_id = true }",
    ));
    rejects(
        &source,
        "experiments.x.unit_key",
        "unit_key = {",
        "set exactly one of",
    );
}

#[test]
fn rule_with_both_equals_and_prefix() {
    let source = config(&format!(
        "{VALID}\n[[experiments.x.rules]] # the rule\nname = \"beta\"\nvariant = \"b\"\nattribute = \"header:x-beta\"\nequals = \"1\"\nprefix = \"1\"\n"
    ));
    rejects(
        &source,
        "experiments.x.rules[0]",
        "# the rule",
        "set exactly one of `equals`, `in` (a non-empty list) or `prefix`",
    );
}

#[test]
fn rule_with_an_unknown_attribute() {
    let source = config(&format!(
        "{VALID}\n[[experiments.x.rules]]\nname = \"beta\"\nvariant = \"b\"\nattribute = \"cookie:x\"\nequals = \"1\"\n"
    ));
    rejects(
        &source,
        "experiments.x.rules[0].attribute",
        "attribute = ",
        "`cookie:x` is not one of",
    );
}

#[test]
fn replace_without_a_user_template() {
    let source = config(&format!("{VALID}messages = \"replace\"\n"));
    // The field is absent: the problem points at the variant's header.
    rejects_at(
        &source,
        "experiments.x.variants[1].user",
        nth_line(&source, "[[experiments.x.variants]]", 1),
        "`messages = \"replace\"` needs a `user` template",
    );
}

#[test]
fn user_template_with_keep_mode() {
    let source = config(&format!(
        "{VALID}user = \"Q: {{{{input}}}}\"\nmessages = \"keep\"\n"
    ));
    rejects(
        &source,
        "experiments.x.variants[1].messages",
        "messages = \"keep\"",
        "a `user` template needs `messages = \"prepend\"` or `\"replace\"`",
    );
    // Keep is the default: leaving `messages` out is the same mistake, reported
    // at the variant.
    let source = config(&format!("{VALID}user = \"Q: {{{{input}}}}\"\n"));
    rejects_at(
        &source,
        "experiments.x.variants[1].messages",
        nth_line(&source, "[[experiments.x.variants]]", 1),
        "a `user` template needs",
    );
}

#[test]
fn params_may_not_set_the_model() {
    let source = config(&format!(
        "{VALID}params = {{ temperature = 0.2, model = \"gpt-5\" }}\n"
    ));
    rejects(
        &source,
        "experiments.x.variants[1].params.model",
        "params = ",
        "`model` is set by the gateway, not by params",
    );
    for reserved in ["messages", "stream", "system", "input", "promptgate"] {
        let source = config(&format!("{VALID}params = {{ {reserved} = 1 }}\n"));
        rejects(
            &source,
            &format!("experiments.x.variants[1].params.{reserved}"),
            "params = ",
            &format!("`{reserved}` is set by the gateway"),
        );
    }
}

#[test]
fn experiment_id_equal_to_an_exact_route_model() {
    let source = config(&VALID.replace("experiments.x", "experiments.gpt-4o"));
    rejects(
        &source,
        "experiments.gpt-4o",
        "[experiments.gpt-4o]",
        "the experiment id `gpt-4o` is also a model name in [[routes]]",
    );
    // A pattern is not an exact name: `claude-x` is fine.
    let source = config(&VALID.replace("experiments.x", "experiments.claude-x"));
    assert!(parse_with_env(&source).is_ok());
}

#[test]
fn experiment_id_with_invalid_characters() {
    let source = config(&VALID.replace("experiments.x", "experiments.\"new prompt!\""));
    rejects(
        &source,
        "experiments.new prompt!",
        "[experiments.\"new prompt!\"]",
        "the experiment id `new prompt!` must be 1–64 characters",
    );
    let source = config(&VALID.replace("experiments.x", "experiments._hidden"));
    rejects(
        &source,
        "experiments._hidden",
        "[experiments._hidden]",
        "starting with a letter or digit",
    );
}

/// `.` is allowed in an experiment id (LABEL_RULE), so a problem inside such
/// an experiment must still point at its line.
#[test]
fn problems_in_an_experiment_whose_id_has_a_dot_keep_their_line() {
    let source = config(&format!(
        "{}{}",
        VALID.replace("experiments.x", "experiments.first"),
        VALID
            .replace("experiments.x", "experiments.\"prompt.v2\"")
            .replacen("weight = 50", "weight = -1", 1),
    ));
    let found = problems(&source);
    assert_eq!(found.len(), 1, "{found:#?}");
    // However the id is spelled in the path (quoted or not), the line must be
    // the weight's, not the header of another experiment.
    assert!(
        found[0].path.contains("prompt.v2") && found[0].path.ends_with(".variants[0].weight"),
        "{found:#?}"
    );
    assert!(
        found[0].message.contains("is not a finite number"),
        "{found:#?}"
    );
    assert_eq!(
        found[0].line,
        Some(line_with(&source, "weight = -1")),
        "reported at line {:?}, which is `{}`",
        found[0].line,
        found[0]
            .line
            .and_then(|l| source.lines().nth(l - 1))
            .unwrap_or_default()
    );
}

#[test]
fn unknown_provider_in_a_variant() {
    let source = config(&VALID.replace(
        "providers = [\"sim\", \"demo\"]",
        "providers = [\"demo\", \"nope\"]",
    ));
    rejects(
        &source,
        "experiments.x.variants[1].providers[1]",
        "\"nope\"",
        "unknown provider `nope`",
    );
}

#[test]
fn invalid_variant_name() {
    let source = config(&VALID.replacen("name = \"b\"", "name = \"b c\"", 1));
    rejects(
        &source,
        "experiments.x.variants[1].name",
        "name = \"b c\"",
        "`b c` must be 1–64 characters",
    );
}

#[test]
fn enrolment_outside_0_to_100() {
    let source = config(&VALID.replacen("unit_key = ", "enrolment_percent = 101\nunit_key = ", 1));
    rejects(
        &source,
        "experiments.x.enrolment_percent",
        "enrolment_percent = ",
        "101 is not between 0 and 100",
    );
}

#[test]
fn missing_prompt_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let source = config(&VALID.replace(
        "system = \"Be brief, {{name}}.\"",
        "system_file = \"prompts/missing.txt\"",
    ));
    let found = parse_in(&source, dir.path()).expect_err("the prompt file is missing");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path, "experiments.x.variants[1].system_file");
    assert_eq!(found[0].line, Some(line_with(&source, "system_file = ")));
    let expected = dir.path().join("prompts/missing.txt");
    assert!(
        found[0]
            .message
            .starts_with(&format!("cannot read {}: ", expected.display())),
        "{}",
        found[0].message
    );
}

#[test]
fn both_inline_and_file_template() {
    let source = config(&format!("{VALID}system_file = \"p.txt\"\n"));
    rejects(
        &source,
        "experiments.x.variants[1].system_file",
        "system_file = ",
        "set either `system` or `system_file`, not both",
    );
}

#[test]
fn a_broken_template_in_a_prompt_file_names_the_file_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), "Hi {{who").unwrap();
    let source = config(&VALID.replace(
        "system = \"Be brief, {{name}}.\"",
        "system_file = \"bad.txt\"",
    ));
    let found = parse_in(&source, dir.path()).expect_err("invalid template");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path, "experiments.x.variants[1].system_file");
    assert_eq!(found[0].line, Some(line_with(&source, "system_file = ")));
    assert!(
        found[0].message.contains("never closed"),
        "{}",
        found[0].message
    );
}

#[test]
fn prompt_files_resolve_against_the_config_dir_and_change_the_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    let prompt = dir.path().join("prompts/concise.txt");
    std::fs::write(&prompt, "Answer in one sentence, {{name}}.").unwrap();
    let source = config(&VALID.replace(
        "system = \"Be brief, {{name}}.\"",
        "system_file = \"prompts/concise.txt\"",
    ));

    let first = parse_in(&source, dir.path()).expect("valid with the prompt file");
    assert_eq!(first.prompt_files, vec![prompt.clone()]);
    let system = first.experiments[0].variants[1].system.as_ref().unwrap();
    assert_eq!(
        system.render(|_| Some("Ada")).unwrap(),
        "Answer in one sentence, Ada."
    );
    let again = parse_in(&source, dir.path()).unwrap();
    assert_eq!(first.version, again.version, "same files, same version");

    std::fs::write(&prompt, "Answer in two sentences, {{name}}.").unwrap();
    let changed = parse_in(&source, dir.path()).unwrap();
    assert_ne!(
        first.version, changed.version,
        "editing the prompt file must change the config version"
    );
    assert_eq!(
        changed.experiments[0].variants[1]
            .system
            .as_ref()
            .unwrap()
            .render(|_| Some("Ada"))
            .unwrap(),
        "Answer in two sentences, Ada."
    );
    // The default version label of the variant follows its prompt too.
    assert_ne!(
        first.experiments[0].variants[1].version,
        changed.experiments[0].variants[1].version
    );
    assert_eq!(
        first.experiments[0].variants[0].version, changed.experiments[0].variants[0].version,
        "the untouched variant keeps its label"
    );
}

fn with_shadow(shadow: &str) -> String {
    config(&format!("{VALID}\n[experiments.x.shadow]\n{shadow}\n"))
}

#[test]
fn a_shadow_loads_with_its_defaults() {
    let config =
        parse_with_env(&with_shadow("variants = [\"b\"]\nsample_percent = 10")).expect("valid");
    let shadow = config.experiments[0].shadow.as_ref().expect("shadow");
    assert_eq!(shadow.variants, [1]);
    assert_eq!(shadow.sample_percent, 10.0);
    assert!(shadow.sticky, "sampling is sticky per unit by default");
    assert_eq!(shadow.max_concurrent, 16);
    assert_eq!(shadow.timeout, std::time::Duration::from_secs(60));
    assert_eq!(
        shadow.budget,
        crate::experiments::model::DailyBudget::default()
    );
}

#[test]
fn a_shadow_naming_a_missing_variant() {
    rejects(
        &with_shadow("variants = [\"c\"]\nsample_percent = 10"),
        "experiments.x.shadow.variants[0]",
        "variants = [\"c\"]",
        "unknown variant `c` (variants: a, b)",
    );
}

#[test]
fn a_shadow_variant_listed_twice() {
    rejects(
        &with_shadow("variants = [\"b\", \"b\"]\nsample_percent = 10"),
        "experiments.x.shadow.variants[1]",
        "variants = [\"b\", \"b\"]",
        "listed twice",
    );
}

#[test]
fn a_shadow_sample_outside_0_to_100() {
    rejects(
        &with_shadow("variants = [\"b\"]\nsample_percent = 150"),
        "experiments.x.shadow.sample_percent",
        "sample_percent = 150",
        "not between 0 and 100",
    );
}

#[test]
fn a_shadow_cap_of_zero() {
    rejects(
        &with_shadow("variants = [\"b\"]\nsample_percent = 10\nmax_concurrent = 0"),
        "experiments.x.shadow.max_concurrent",
        "max_concurrent = 0",
        "at least 1",
    );
}

#[test]
fn a_usd_budget_needs_a_price_for_the_shadow_model() {
    rejects(
        &with_shadow("variants = [\"b\"]\nsample_percent = 10\nmax_usd_per_day = 5.0"),
        "experiments.x.shadow.max_usd_per_day",
        "max_usd_per_day = 5.0",
        "`gpt-4o-mini`, which has no [prices] entry",
    );
}

#[test]
fn an_unknown_shadow_setting_is_named() {
    let found = problems(&with_shadow(
        "variants = [\"b\"]\nsample_percent = 10\nsample_rate = 0.1",
    ));
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("unknown field `sample_rate`")),
        "{found:#?}"
    );
}

//! `decide`'s precedence, one rule at a time, on experiments loaded through
//! the real config loader (so the tests see what a config file produces):
//! disabled → kill switch → override → flag rules → enrolment → hash.

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;
use crate::experiments::test_config::first_experiment;

/// An experiment `x` (variants `a`, `b`, `c`; unit key `x-user-id`) with
/// `extra` lines in its table and `rules` after its variants.
fn experiment(extra: &str, rules: &str) -> Experiment {
    first_experiment(&format!(
        r#"[auth]
open = true

[providers.demo]
kind = "demo"

[experiments.x]
unit_key = {{ header = "x-user-id" }}
{extra}

[[experiments.x.variants]]
name = "a"
weight = 1
model = "m-a"
providers = ["demo"]

[[experiments.x.variants]]
name = "b"
weight = 1
model = "m-b"
providers = ["demo"]

[[experiments.x.variants]]
name = "c"
weight = 0
model = "m-c"
providers = ["demo"]
{rules}"#
    ))
}

struct Request {
    headers: HeaderMap,
    client_id: Option<&'static str>,
    body: Vec<u8>,
}

impl Request {
    fn new() -> Request {
        Request {
            headers: HeaderMap::new(),
            client_id: Some("app"),
            body: br#"{"model": "x"}"#.to_vec(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Request {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    fn decide(&self, experiment: &Experiment) -> Result<Assignment, ExperimentError> {
        decide(
            experiment,
            &RequestFacts {
                headers: &self.headers,
                client_id: self.client_id,
                model: "x",
                body: &BodyFields::parse(&self.body).unwrap(),
                request_id: "req-1",
            },
        )
    }
}

fn name(experiment: &Experiment, assignment: &Assignment) -> String {
    experiment.variants[assignment.variant].name.to_string()
}

const TIER_RULE: &str = r#"
[[experiments.x.rules]]
name = "enterprise"
variant = "c"
attribute = "metadata:tier"
equals = "enterprise"
"#;

#[test]
fn a_unit_is_hashed_to_a_weighted_variant_and_stays_there() {
    let x = experiment("", "");
    let first = Request::new()
        .header("x-user-id", "alice")
        .decide(&x)
        .unwrap();
    assert_eq!(first.reason, Reason::Hash);
    assert!(first.sticky);
    assert_eq!(&*first.unit_key, "alice");
    assert_ne!(name(&x, &first), "c", "a zero weight is never drawn");
    for _ in 0..5 {
        let again = Request::new()
            .header("x-user-id", "alice")
            .decide(&x)
            .unwrap();
        assert_eq!(again, first);
    }
}

#[test]
fn without_its_unit_key_a_request_is_assigned_by_its_request_id_and_not_sticky() {
    let x = experiment("", "");
    let assignment = Request::new().decide(&x).unwrap();
    assert_eq!(&*assignment.unit_key, "req-1");
    assert!(!assignment.sticky);
    // A blank header counts as absent.
    let blank = Request::new().header("x-user-id", "  ").decide(&x).unwrap();
    assert_eq!(&*blank.unit_key, "req-1");
}

#[test]
fn a_disabled_experiment_serves_its_default_to_everyone_even_an_override() {
    let x = experiment(
        "enabled = false\ndefault_variant = \"b\"\noverride_clients = [\"*\"]",
        TIER_RULE,
    );
    let mut request = Request::new()
        .header("x-user-id", "alice")
        .header("x-promptgate-variant", "a");
    request.body = json!({"model": "x", "metadata": {"tier": "enterprise"}})
        .to_string()
        .into_bytes();
    let assignment = request.decide(&x).unwrap();
    assert_eq!(assignment.reason, Reason::Disabled);
    assert_eq!(name(&x, &assignment), "b");
}

#[test]
fn the_kill_switch_beats_overrides_rules_and_hashing() {
    let x = experiment("killswitch = \"a\"\noverride_clients = [\"*\"]", TIER_RULE);
    let mut request = Request::new()
        .header("x-user-id", "bob")
        .header("x-promptgate-variant", "b");
    request.body = json!({"model": "x", "metadata": {"tier": "enterprise"}})
        .to_string()
        .into_bytes();
    let assignment = request.decide(&x).unwrap();
    assert_eq!(assignment.reason, Reason::Killswitch);
    assert_eq!(name(&x, &assignment), "a");
}

#[test]
fn an_override_beats_flag_rules_when_the_client_may_override() {
    let x = experiment("override_clients = [\"app\"]", TIER_RULE);
    let mut request = Request::new().header("x-promptgate-variant", " b ");
    request.body = json!({"model": "x", "metadata": {"tier": "enterprise"}})
        .to_string()
        .into_bytes();
    let assignment = request.decide(&x).unwrap();
    assert_eq!(assignment.reason, Reason::Override);
    assert_eq!(name(&x, &assignment), "b");

    request.client_id = Some("someone-else");
    assert!(matches!(
        request.decide(&x),
        Err(ExperimentError::OverrideForbidden { experiment }) if experiment == "x"
    ));
    request.client_id = None;
    assert!(matches!(
        request.decide(&x),
        Err(ExperimentError::OverrideForbidden { .. })
    ));
}

#[test]
fn an_override_naming_no_variant_is_refused_with_the_name() {
    let x = experiment("override_clients = [\"*\"]", "");
    let request = Request::new().header("x-promptgate-variant", "nope");
    assert!(matches!(
        request.decide(&x),
        Err(ExperimentError::UnknownVariant { variant, .. }) if variant == "nope"
    ));
}

#[test]
fn flag_rules_match_in_config_order_before_hashing() {
    let rules = format!(
        "{TIER_RULE}
[[experiments.x.rules]]
name = \"beta\"
variant = \"b\"
attribute = \"header:x-beta\"
in = [\"yes\", \"1\"]
"
    );
    let x = experiment("", &rules);
    let mut both = Request::new()
        .header("x-user-id", "carol")
        .header("x-beta", "1");
    both.body = json!({"model": "x", "metadata": {"tier": "enterprise"}})
        .to_string()
        .into_bytes();
    let assignment = both.decide(&x).unwrap();
    assert_eq!(assignment.reason, Reason::Flag("enterprise".into()));
    assert_eq!(
        name(&x, &assignment),
        "c",
        "a rule may pick a zero-weight variant"
    );

    let beta = Request::new()
        .header("x-user-id", "carol")
        .header("x-beta", "yes");
    let assignment = beta.decide(&x).unwrap();
    assert_eq!(assignment.reason, Reason::Flag("beta".into()));
    assert_eq!(assignment.reason.to_string(), "flag:beta");

    // A metadata value that is not a string, number or boolean never matches.
    let mut listed = Request::new().header("x-user-id", "carol");
    listed.body = json!({"model": "x", "metadata": {"tier": ["enterprise"]}})
        .to_string()
        .into_bytes();
    assert_eq!(listed.decide(&x).unwrap().reason, Reason::Hash);
}

#[test]
fn units_outside_the_enrolment_get_the_default_variant() {
    let x = experiment("enrolment_percent = 30\ndefault_variant = \"c\"", "");
    let mut enrolled = 0;
    for i in 0..400 {
        let unit = format!("user-{i}");
        let assignment = Request::new()
            .header("x-user-id", &unit)
            .decide(&x)
            .unwrap();
        let expected = assign::is_enrolled(&x.salt, &unit, 30.0);
        if expected {
            enrolled += 1;
            assert_eq!(assignment.reason, Reason::Hash, "{unit}");
            assert_ne!(name(&x, &assignment), "c");
        } else {
            assert_eq!(assignment.reason, Reason::NotEnrolled, "{unit}");
            assert_eq!(name(&x, &assignment), "c");
        }
    }
    // Binomial(400, 0.3): sd ≈ 9.2; ±5 sd.
    assert!(
        (74..=166).contains(&enrolled),
        "{enrolled} of 400 enrolled at 30 %"
    );
}

#[test]
fn for_unit_answers_what_a_unit_sees_without_request_specific_inputs() {
    let x = experiment("override_clients = [\"*\"]", TIER_RULE);
    let request = Request::new()
        .header("x-user-id", "dave")
        .header("x-promptgate-variant", "c");
    assert_eq!(request.decide(&x).unwrap().reason, Reason::Override);
    let plain = for_unit(&x, "dave".into(), true);
    assert_eq!(plain.reason, Reason::Hash);
    assert_eq!(
        plain.variant,
        Request::new()
            .header("x-user-id", "dave")
            .decide(&x)
            .unwrap()
            .variant
    );
}

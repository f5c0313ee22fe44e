//! JUnit XML, so CI systems show failures natively: one test suite per
//! variant with one test case per golden case × scorer, and one suite for
//! the gate with one test case per scorer × variant check.

use std::fmt::Write;

use super::report::Report;

/// Text safe in XML 1.0 (and HTML) attributes and content: escaped, control characters
/// (which XML 1.0 cannot carry at all) replaced.
pub(super) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub fn junit(report: &Report) -> String {
    let mut body = String::new();
    let (mut total_tests, mut total_failures) = (0usize, 0usize);
    for (position, summary) in report.variants.iter().enumerate() {
        let mut cases = String::new();
        let (mut tests, mut failures) = (0, 0);
        for case in &report.results {
            let Some(variant) = case.variants.get(position) else {
                continue;
            };
            for (scorer, score) in report.scorers.iter().zip(&variant.scores) {
                tests += 1;
                let _ = write!(
                    cases,
                    "    <testcase classname=\"{}\" name=\"{} [{}]\" time=\"{:.3}\"",
                    xml(&format!("{}.{}.{}", report.suite, summary.name, scorer)),
                    xml(&case.id),
                    xml(scorer),
                    variant.latency_ms.unwrap_or(0.0) / 1e3
                );
                if score.passed {
                    cases.push_str("/>\n");
                    continue;
                }
                failures += 1;
                let message = score
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("score {:.3}", score.value));
                let expected = case.expected.as_ref().map_or_else(
                    || "(none)".to_owned(),
                    |e| match e {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    },
                );
                let actual = match (&variant.answer, &variant.error) {
                    (Some(answer), _) => answer.clone(),
                    (None, Some(error)) => format!("(no answer: {error})"),
                    (None, None) => "(no answer)".to_owned(),
                };
                let _ = writeln!(
                    cases,
                    ">\n      <failure message=\"{}\" type=\"{}\">golden set line {}\nexpected: {}\nactual: {}</failure>\n    </testcase>",
                    xml(&message),
                    xml(scorer),
                    case.line,
                    xml(&expected),
                    xml(&actual)
                );
            }
        }
        total_tests += tests;
        total_failures += failures;
        let _ = write!(
            body,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">\n{cases}  </testsuite>\n",
            xml(&format!("{} / {}", report.suite, summary.name))
        );
    }
    let mut gate = String::new();
    let mut gate_failures = 0;
    for check in &report.gate {
        let _ = write!(
            gate,
            "    <testcase classname=\"{}\" name=\"{}\"",
            xml(&format!("{}.gate", report.suite)),
            xml(&format!("{} [{}]", check.scorer, check.variant))
        );
        if check.passed {
            gate.push_str("/>\n");
        } else {
            gate_failures += 1;
            let _ = writeln!(
                gate,
                ">\n      <failure message=\"{}\" type=\"gate\"/>\n    </testcase>",
                xml(&check.failures.join("; "))
            );
        }
    }
    total_tests += report.gate.len();
    total_failures += gate_failures;
    let _ = write!(
        body,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{gate_failures}\">\n{gate}  </testsuite>\n",
        xml(&format!("{} / gate", report.suite)),
        report.gate.len()
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{total_tests}\" failures=\"{total_failures}\">\n{body}</testsuites>\n",
        xml(&format!("promptgate eval {}", report.suite))
    )
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn text_is_escaped_and_control_characters_replaced() {
        assert_eq!(
            xml("a<b & \"c\" 'd'\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;\u{fffd}"
        );
    }
}

//! The one Prometheus text parser of the tests: strict (a line it cannot
//! read fails the test, naming the line), and a query that fails when the
//! series asked for is not exposed at all, so `== 0.0` cannot pass on a
//! missing series.

use std::collections::{BTreeMap, BTreeSet};

use http::Method;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// `GET /metrics` on an admin listener.
    pub async fn scrape(admin_metrics_url: &str) -> Metrics {
        let reply = super::send(&super::client(), Method::GET, admin_metrics_url, &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        Metrics::parse(&reply.text())
    }

    /// Every sample of a text exposition; panics on a line that is neither a
    /// comment, blank, nor `name{label="value",…} value [timestamp]`.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                parse_line(line)
                    .unwrap_or_else(|why| panic!("bad exposition line ({why}): {line:?}"))
            })
            .collect();
        Metrics { samples }
    }

    /// The names of every exposed series.
    pub fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }

    /// The samples of `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        assert!(
            self.samples.iter().any(|s| s.name == name),
            "{name} is not exposed at all; exposed: {:?}",
            self.names()
        );
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of `name`'s samples whose labels include all of `labels`
    /// (0 when the series exists but no sample has those labels).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The value of the one sample of `name` with `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one sample of {name} with {labels:?}, found {found:#?}"
        );
        found[0].value
    }
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err("bad label name");
            }
            let (value, after) = label_value(after)?;
            labels.insert(key.to_owned(), value);
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().map_err(|_| "value is not a number")?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "timestamp is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("trailing fields");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A quoted label value up to its closing quote, unescaped; and what follows.
fn label_value(text: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next().ok_or("dangling escape")?.1 {
                'n' => value.push('\n'),
                escaped @ ('\\' | '"') => value.push(escaped),
                _ => return Err("unknown escape"),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value")
}

#[test]
fn the_parser_reads_labels_escapes_and_special_values() {
    let metrics = Metrics::parse(
        "# HELP x y\n# TYPE a counter\na_total{k=\"v\",q=\"a \\\"b\\\",c\"} 2\nb 1.5e3 1700000000\nc{} +Inf\n",
    );
    assert_eq!(metrics.value("a_total", &[("q", "a \"b\",c")]), 2.0);
    assert_eq!(metrics.value("b", &[]), 1500.0);
    assert_eq!(metrics.sum("c", &[]), f64::INFINITY);
    assert_eq!(metrics.sum("a_total", &[("k", "other")]), 0.0);
}

#[test]
#[should_panic(expected = "is not exposed at all")]
fn a_missing_series_fails_instead_of_summing_to_zero() {
    Metrics::parse("a 1\n").sum("b", &[]);
}

#[test]
#[should_panic(expected = "bad exposition line")]
fn a_malformed_line_fails() {
    Metrics::parse("a{k=\"v\" 1\n");
}

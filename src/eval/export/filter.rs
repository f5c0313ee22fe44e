//! `--feedback` conditions (`thumbs_up=false`, `rating<3`, `rating>=4.5`)
//! and `--tag` conditions (`doc_type=invoice`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// One condition on the latest value of a feedback metric for a request. A
/// request without feedback on the metric does not meet it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackFilter {
    pub metric: String,
    comparison: Comparison,
    /// Booleans as the feedback table stores them in `value_number`: 1 or 0.
    value: f64,
}

impl FeedbackFilter {
    pub fn meets(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Equal => value == self.value,
            Comparison::NotEqual => value != self.value,
            Comparison::Less => value < self.value,
            Comparison::LessOrEqual => value <= self.value,
            Comparison::Greater => value > self.value,
            Comparison::GreaterOrEqual => value >= self.value,
        }
    }
}

/// Longest operators first, so `<=` is not read as `<` followed by `=…`.
const OPERATORS: [(&str, Comparison); 6] = [
    ("!=", Comparison::NotEqual),
    ("<=", Comparison::LessOrEqual),
    (">=", Comparison::GreaterOrEqual),
    ("=", Comparison::Equal),
    ("<", Comparison::Less),
    (">", Comparison::Greater),
];

impl std::str::FromStr for FeedbackFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<FeedbackFilter, String> {
        let usage = || {
            format!(
                "`{text}`: expected METRIC=VALUE (or != < <= > >=), e.g. thumbs_up=false or rating<3"
            )
        };
        let (at, operator, comparison) = OPERATORS
            .iter()
            .filter_map(|(operator, comparison)| {
                text.find(operator).map(|at| (at, *operator, *comparison))
            })
            .min_by_key(|(at, operator, _)| (*at, std::cmp::Reverse(operator.len())))
            .ok_or_else(usage)?;
        let metric = text[..at].trim();
        let value = text[at + operator.len()..].trim();
        if metric.is_empty() || value.is_empty() {
            return Err(usage());
        }
        let value = match value {
            "true" => 1.0,
            "false" => 0.0,
            number => number
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    format!("`{text}`: `{number}` is neither true, false nor a number")
                })?,
        };
        Ok(FeedbackFilter {
            metric: metric.to_owned(),
            comparison,
            value,
        })
    }
}

impl fmt::Display for FeedbackFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = OPERATORS
            .iter()
            .find(|(_, comparison)| *comparison == self.comparison)
            .map_or("?", |(operator, _)| operator);
        write!(f, "{}{operator}{}", self.metric, self.value)
    }
}

/// `--tag KEY=VALUE`: the record's tag `KEY` is `VALUE` exactly. A record
/// without the tag does not meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    pub value: String,
}

impl TagFilter {
    pub fn meets(&self, tags: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        tags.and_then(|tags| tags.get(&self.key)) == Some(&self.value)
    }
}

impl std::str::FromStr for TagFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<TagFilter, String> {
        text.split_once('=')
            .map(|(key, value)| (key.trim(), value.trim()))
            .filter(|(key, value)| !key.is_empty() && !value.is_empty())
            .map(|(key, value)| TagFilter {
                key: key.to_owned(),
                value: value.to_owned(),
            })
            .ok_or_else(|| format!("`{text}`: expected KEY=VALUE, e.g. doc_type=invoice"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> FeedbackFilter {
        text.parse().unwrap()
    }

    #[test]
    fn booleans_and_numbers_with_every_operator() {
        let down = filter("thumbs_up=false");
        assert_eq!(down.metric, "thumbs_up");
        assert!(down.meets(0.0) && !down.meets(1.0));
        assert!(filter("thumbs_up = true").meets(1.0));
        assert!(filter("rating<3").meets(2.5) && !filter("rating<3").meets(3.0));
        assert!(filter("rating<=3").meets(3.0));
        assert!(filter("rating>=4.5").meets(4.5) && !filter("rating>=4.5").meets(4.4));
        assert!(filter("rating>4").meets(5.0));
        assert!(filter("rating!=3").meets(2.0) && !filter("rating!=3").meets(3.0));
        assert_eq!(filter("rating<=3").to_string(), "rating<=3");
    }

    #[test]
    fn a_tag_condition_needs_the_exact_value() {
        let wanted: TagFilter = " doc_type = invoice".parse().unwrap();
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(wanted.meets(Some(&tags(&[("doc_type", "invoice"), ("channel", "web")]))));
        assert!(!wanted.meets(Some(&tags(&[("doc_type", "receipt")]))));
        assert!(!wanted.meets(Some(&tags(&[("channel", "web")]))));
        assert!(!wanted.meets(None));
        for text in ["doc_type", "=invoice", "doc_type="] {
            let error = text.parse::<TagFilter>().unwrap_err();
            assert!(error.starts_with(&format!("`{text}`")), "{error}");
        }
    }

    #[test]
    fn malformed_conditions_say_what_is_expected() {
        for text in [
            "thumbs_up",
            "=true",
            "rating<",
            "rating=maybe",
            "rating=inf",
        ] {
            let error = text.parse::<FeedbackFilter>().unwrap_err();
            assert!(error.starts_with(&format!("`{text}`")), "{error}");
        }
    }
}

//! Which route answers a model name: exact names first (a hash lookup), then
//! `*` patterns in the order the config lists them.

use std::collections::HashMap;
use std::sync::Arc;

/// Index of a provider in `Config::providers`.
pub type ProviderId = usize;

#[derive(Debug)]
pub struct RouteConfig {
    pub patterns: Vec<ModelPattern>,
    pub upstream_model: Option<Arc<str>>,
    /// Non-empty, in fallback order.
    pub providers: Vec<ProviderId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(Arc<str>),
    /// Contains at least one `*`, which matches any run of characters.
    Wildcard(Arc<str>),
}

impl ModelPattern {
    pub fn parse(text: &str) -> ModelPattern {
        if text.contains('*') {
            ModelPattern::Wildcard(text.into())
        } else {
            ModelPattern::Exact(text.into())
        }
    }
}

#[derive(Debug)]
pub struct RouteTable {
    exact: HashMap<Arc<str>, usize>,
    wildcards: Vec<(Arc<str>, usize)>,
    routes: Vec<RouteConfig>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteConfig>) -> RouteTable {
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            for pattern in &route.patterns {
                match pattern {
                    ModelPattern::Exact(name) => {
                        exact.entry(name.clone()).or_insert(index);
                    }
                    ModelPattern::Wildcard(glob) => wildcards.push((glob.clone(), index)),
                }
            }
        }
        RouteTable {
            exact,
            wildcards,
            routes,
        }
    }

    pub fn resolve(&self, model: &str) -> Option<&RouteConfig> {
        let index = self.exact.get(model).copied().or_else(|| {
            self.wildcards
                .iter()
                .find(|(glob, _)| wildcard_match(glob, model))
                .map(|(_, index)| *index)
        })?;
        self.routes.get(index)
    }

    /// The model names callers can use verbatim (patterns are not listable).
    pub fn listable_models(&self) -> impl Iterator<Item = (&str, &RouteConfig)> {
        self.routes.iter().flat_map(|route| {
            route.patterns.iter().filter_map(move |p| match p {
                ModelPattern::Exact(name) => Some((name.as_ref(), route)),
                ModelPattern::Wildcard(_) => None,
            })
        })
    }
}

/// `*` matches any run of characters (also none); everything else literally.
/// Runs on every request (routing, permissions, the metric label): it
/// allocates nothing.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let Some((first, tail)) = pattern.split_once('*') else {
        return pattern == text; // no `*` at all
    };
    let Some(rest) = text.strip_prefix(first) else {
        return false;
    };
    // The part after the last `*` ends the text; the parts between stars
    // appear in order, leftmost first, in what lies between.
    let (middle, last) = match tail.rsplit_once('*') {
        Some((middle, last)) => (Some(middle), last),
        None => (None, tail),
    };
    let Some(mut rest) = rest.strip_suffix(last) else {
        return false;
    };
    for part in middle.into_iter().flat_map(|middle| middle.split('*')) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("gpt-4o*", "gpt-4o"));
        assert!(wildcard_match("gpt-4o*", "gpt-4o-mini"));
        assert!(!wildcard_match("gpt-4o*", "gpt-4"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match(
            "claude-*-sonnet*",
            "claude-3-5-sonnet-latest"
        ));
        assert!(!wildcard_match(
            "claude-*-sonnet",
            "claude-3-5-sonnet-latest"
        ));
        assert!(wildcard_match("a*a", "aa"));
        assert!(!wildcard_match("a*a", "a"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exact2"));
    }

    /// Every pattern over `a`, `b`, `*` and every text over `a`, `b` up to
    /// five characters, against a by-the-definition matcher.
    #[test]
    fn wildcards_agree_with_the_definition_everywhere_small() {
        fn by_definition(pattern: &[u8], text: &[u8]) -> bool {
            match pattern.split_first() {
                None => text.is_empty(),
                Some((b'*', rest)) => {
                    (0..=text.len()).any(|skip| by_definition(rest, &text[skip..]))
                }
                Some((c, rest)) => text.first() == Some(c) && by_definition(rest, &text[1..]),
            }
        }
        fn words(alphabet: &[u8], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |&c| format!("{w}{}", c as char)))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let texts = words(b"ab", 5);
        for pattern in words(b"ab*", 5) {
            for text in &texts {
                assert_eq!(
                    wildcard_match(&pattern, text),
                    by_definition(pattern.as_bytes(), text.as_bytes()),
                    "{pattern:?} {text:?}"
                );
            }
        }
    }

    fn route(patterns: &[&str], provider: usize) -> RouteConfig {
        RouteConfig {
            patterns: patterns.iter().map(|p| ModelPattern::parse(p)).collect(),
            upstream_model: None,
            providers: vec![provider],
        }
    }

    #[test]
    fn exact_names_win_over_earlier_patterns() {
        let table = RouteTable::new(vec![
            route(&["gpt-*"], 0),
            route(&["gpt-4o-mini"], 1),
            route(&["gpt-4*"], 2),
        ]);
        assert_eq!(table.resolve("gpt-4o-mini").unwrap().providers, vec![1]);
        assert_eq!(table.resolve("gpt-4o").unwrap().providers, vec![0]);
        assert!(table.resolve("claude").is_none());
        let listed: Vec<&str> = table.listable_models().map(|(m, _)| m).collect();
        assert_eq!(listed, vec!["gpt-4o-mini"]);
    }
}

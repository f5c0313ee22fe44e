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
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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

//! Maps a dotted field path (`routes[1].providers[0]`) back to the line of the
//! config file it was written on, so every error can say `file:line`.

use toml_edit::{Document, Item};

/// Line (1-based) of the deepest part of `path` present in `source`.
pub fn line_of(source: &str, path: &str) -> Option<usize> {
    let doc = Document::parse(source).ok()?;
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for segment in parse(path) {
        let next = match segment {
            Segment::Key(key) => item.get(key.as_str()),
            Segment::Index(index) => item.get(index),
        };
        let Some(next) = next else { break };
        if let Some(span) = next.span().or_else(|| table_span(next)) {
            best = Some(span.start);
        }
        item = next;
    }
    best.map(|offset| line_at(source, offset))
}

pub fn line_at(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn table_span(item: &Item) -> Option<std::ops::Range<usize>> {
    match item {
        Item::Table(table) => table.span(),
        _ => None,
    }
}

/// One step of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// `parent.key`, with the key quoted (`parent."a.b"`) when it contains a dot,
/// so the path can be walked back unambiguously.
pub fn child_path(parent: &str, key: &str) -> String {
    if key.contains('.') {
        format!("{parent}.\"{key}\"")
    } else {
        format!("{parent}.{key}")
    }
}

/// Splits on dots outside double quotes.
fn parts(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in path.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// `routes[1].providers[0]` → its segments (the inverse of `render`).
pub fn parse(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in parts(path) {
        let (key, mut rest) = match part.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((key, after)) => (key, after.trim_start_matches('[')),
                None => (quoted, ""),
            },
            None => part.split_once('[').map_or((part, ""), |(k, r)| (k, r)),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(index) = index.parse() {
                out.push(Segment::Index(index));
            }
            rest = after.trim_start_matches('[');
        }
    }
    out
}

/// Segments → `routes[1].providers[0]`, keys with a dot quoted as `child_path` does.
pub fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(&child_path("", key)[1..]),
            Segment::Key(key) => out = child_path(&out, key),
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "[server]\nlisten = \"x\"\n\n[providers.openai]\nkind = \"openai\"\nbase_url = \"nope\"\n\n[[routes]]\nmodels = [\"a\"]\n\n[[routes]]\nmodels = [\"b\"]\nproviders = [\"x\", \"y\"]\n";

    #[test]
    fn finds_lines_of_nested_keys_and_array_elements() {
        assert_eq!(line_of(SOURCE, "server.listen"), Some(2));
        assert_eq!(line_of(SOURCE, "providers.openai.base_url"), Some(6));
        assert_eq!(line_of(SOURCE, "routes[1].providers[1]"), Some(13));
        assert_eq!(line_of(SOURCE, "routes[1].models"), Some(12));
    }

    #[test]
    fn quoted_keys_with_dots() {
        let source = "[experiments.\"a.b\"]\nsalt = \"x\"\n\n[[experiments.\"a.b\".variants]]\nweight = -1\n";
        assert_eq!(child_path("experiments", "a.b"), "experiments.\"a.b\"");
        assert_eq!(line_of(source, "experiments.\"a.b\".salt"), Some(2));
        assert_eq!(
            line_of(source, "experiments.\"a.b\".variants[0].weight"),
            Some(5)
        );
    }

    #[test]
    fn paths_render_back_to_the_text_they_were_parsed_from() {
        for path in [
            "routes[1].providers[0]",
            "experiments.\"a.b\".variants[0].weight",
            "\"a.b\".c",
            "server",
        ] {
            assert_eq!(render(&parse(path)), path);
        }
    }

    #[test]
    fn falls_back_to_the_deepest_existing_parent() {
        // `max_retries` is absent: the error points at the provider's table.
        assert_eq!(line_of(SOURCE, "providers.openai.max_retries"), Some(4));
        assert_eq!(line_of(SOURCE, "nothing.here"), None);
    }
}

//! Maps a dotted field path (`routes[1].providers[0]`) back to the line of the
//! config file it was written on, so every error can say `file:line`.

use toml_edit::{Document, Item};

/// Line (1-based) of the deepest part of `path` present in `source`.
pub fn line_of(source: &str, path: &str) -> Option<usize> {
    let doc = Document::parse(source).ok()?;
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for segment in segments(path) {
        let next = match segment {
            Segment::Key(key) => item.get(key),
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

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
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
    fn falls_back_to_the_deepest_existing_parent() {
        // `max_retries` is absent: the error points at the provider's table.
        assert_eq!(line_of(SOURCE, "providers.openai.max_retries"), Some(4));
        assert_eq!(line_of(SOURCE, "nothing.here"), None);
    }
}

//! TOML text → `RawConfig`, collecting every syntax, type and unknown-key
//! problem instead of stopping at the first.
//!
//! serde stops at the first error, so the document is parsed once into a tree
//! that keeps every value's position in the file; deserializing it either
//! succeeds or names one bad value, which is recorded and taken out of the
//! tree before the next attempt. Positions come from the untouched parse, so
//! every problem keeps its line.

use std::collections::{HashMap, HashSet};

use toml::de::{DeArray, DeTable, DeValue};

use super::Problem;
use super::location::{self, Segment};
use super::raw::RawConfig;
use serde::de::DeserializeOwned;

/// More attempts than any real file needs; ends the loop on a pathological one.
const MAX_ATTEMPTS: usize = 1_000;

/// What deserializing found.
pub(super) struct Reading<T = RawConfig> {
    /// `None`: the file could not be read into a config at all (TOML syntax),
    /// or an entry had to be set aside because a required field was missing or
    /// unusable — checking the rest would report consequences of that, not
    /// mistakes.
    pub raw: Option<T>,
    pub problems: Vec<Problem>,
    /// Maps paths of the config read (after bad values were taken out of
    /// arrays) back to the positions written in the file.
    pub paths: PathMap,
}

/// Reads `source` into a `RawConfig` (or another `deny_unknown_fields` type,
/// such as an eval suite), listing every problem found on the way.
pub(super) fn read<T: DeserializeOwned>(source: &str) -> Reading<T> {
    let (mut root, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        let problems = syntax_errors
            .iter()
            .map(|err| Problem {
                line: err.span().map(|span| location::line_at(source, span.start)),
                path: String::new(),
                message: err.message().to_owned(),
            })
            .collect();
        // The parser resumes after each syntax error, so several are listed;
        // types and values are only checked once the file parses.
        return Reading {
            raw: None,
            problems: in_file_order(problems),
            paths: PathMap::default(),
        };
    }
    let mut problems = Vec::new();
    let mut paths = PathMap::default();
    // Original paths of values already reported and taken out.
    let mut reported: HashSet<Vec<Segment>> = HashSet::new();
    let mut complete = true;
    for _ in 0..MAX_ATTEMPTS {
        let error = match serde_path_to_error::deserialize::<_, T>(toml::de::Deserializer::from(
            root.clone(),
        )) {
            Ok(raw) => {
                return Reading {
                    raw: complete.then_some(raw),
                    problems: in_file_order(problems),
                    paths,
                };
            }
            Err(error) => error,
        };
        let current = segments(error.path());
        let original = paths.original(&current);
        if let Some(field) = missing_field(error.inner().message()) {
            // A required field that is absent: the entry holding it cannot be
            // read. Set it aside; if the field was only absent because its bad
            // value was taken out, that value's problem already says so.
            complete = false;
            let mut field_path = original.clone();
            field_path.push(Segment::Key(field.to_owned()));
            if !reported.contains(&field_path) {
                problems.push(problem(source, &original, error.inner()));
            }
        } else {
            problems.push(problem(source, &original, error.inner()));
            reported.insert(original.clone());
        }
        if current.is_empty() || !remove(root.get_mut(), &current) {
            // Nothing left to take out (an error on the whole document).
            break;
        }
        paths.record_removal(&original);
    }
    Reading {
        raw: None,
        problems: in_file_order(problems),
        paths,
    }
}

/// Sorted by line, as an editor walks them (serde visits keys alphabetically);
/// problems without a line last.
pub(super) fn in_file_order(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    problems
}

fn problem(source: &str, path: &[Segment], error: &toml::de::Error) -> Problem {
    let path_text = location::render(path);
    Problem {
        line: error
            .span()
            .map(|span| location::line_at(source, span.start))
            .or_else(|| location::line_of(source, &path_text)),
        path: path_text,
        message: plain_words(error.message()),
    }
}

/// serde's "missing field `name`" → `name`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|name| !name.contains('`'))
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|segment| match segment {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

/// Takes the value at `path` out of the tree; false when there is none.
fn remove(table: &mut DeTable<'_>, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut value: Option<&mut DeValue<'_>> = None;
    for (i, segment) in parents.iter().enumerate() {
        let next = match (i, value, segment) {
            (0, _, Segment::Key(key)) => table.get_mut(key.as_str()),
            (_, Some(DeValue::Table(inner)), Segment::Key(key)) => inner.get_mut(key.as_str()),
            (_, Some(DeValue::Array(items)), Segment::Index(index)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        value = Some(next.get_mut());
    }
    match (parents.is_empty(), value, last) {
        (true, _, Segment::Key(key)) => table.remove(key.as_str()).is_some(),
        (false, Some(DeValue::Table(inner)), Segment::Key(key)) => {
            inner.remove(key.as_str()).is_some()
        }
        (false, Some(DeValue::Array(items)), Segment::Index(index)) if *index < items.len() => {
            *items = std::mem::replace(items, DeArray::new())
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i != index)
                .map(|(_, item)| item)
                .collect();
            true
        }
        _ => false,
    }
}

/// Which array elements were taken out, so that the index of an element in
/// the shortened array can be turned back into its index in the file.
#[derive(Default)]
pub(super) struct PathMap {
    /// Original path of an array → original indexes taken out of it.
    removed: HashMap<Vec<Segment>, Vec<usize>>,
}

impl PathMap {
    fn record_removal(&mut self, original: &[Segment]) {
        if let Some((Segment::Index(index), array)) = original.split_last() {
            self.removed.entry(array.to_vec()).or_default().push(*index);
        }
    }

    fn original(&self, current: &[Segment]) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::with_capacity(current.len());
        for segment in current {
            let segment = match (segment, self.removed.get(&out)) {
                (Segment::Index(index), Some(removed)) => {
                    // The index-th element still present.
                    let original = (0..)
                        .filter(|i| !removed.contains(i))
                        .nth(*index)
                        .unwrap_or(*index);
                    Segment::Index(original)
                }
                (segment, _) => segment.clone(),
            };
            out.push(segment);
        }
        out
    }

    /// `path` as written by validation (`routes[1].models[0]`), in the file's indexes.
    pub(super) fn original_text(&self, path: &str) -> String {
        if self.removed.is_empty() {
            return path.to_owned();
        }
        location::render(&self.original(&location::parse(path)))
    }
}

/// serde names Rust types ("expected u64"); a config author needs TOML's words.
pub(super) fn plain_words(message: &str) -> String {
    let message = match message.strip_prefix("unknown variant ") {
        // `kind = "gemini"`: a value not among the allowed ones. "Variant" would
        // also be confused with an experiment's variants.
        Some(rest) => format!("unknown value {rest}"),
        None => message.to_owned(),
    };
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message;
    };
    let plain = match expected {
        "f64" | "f32" => "a number",
        "u64" | "usize" => "a whole number ≥ 0",
        "u32" => "a whole number from 0 to 4294967295",
        "u16" => "a whole number from 0 to 65535",
        "u8" => "a whole number from 0 to 255",
        "i64" | "i32" | "isize" => "a whole number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" => "a string in quotes",
        "a sequence" => "a list such as [\"a\", \"b\"]",
        "a map" => "a table",
        other if other.starts_with("struct ") => "a table",
        _ => return message,
    };
    format!("{head}, expected {plain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_problems(source: &str) -> Vec<(Option<usize>, String, String)> {
        read::<RawConfig>(source)
            .problems
            .into_iter()
            .map(|p| (p.line, p.path, p.message))
            .collect()
    }

    #[test]
    fn every_unknown_key_and_type_error_is_listed_in_file_order() {
        let source = "[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\ncolour = \"red\"\n\n[admin]\nlisen = \"x\"\nreadiness_audit_failure_ms = \"soon\"\n";
        let reading = read::<RawConfig>(source);
        let found: Vec<_> = reading
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(3), "server.listen_port"),
                (Some(4), "server.colour"),
                (Some(7), "admin.lisen"),
                (Some(8), "admin.readiness_audit_failure_ms"),
            ]
        );
        assert!(reading.raw.is_some(), "only optional values were taken out");
    }

    #[test]
    fn a_bad_required_value_is_reported_once_and_its_entry_set_aside() {
        let source = "[[routes]]\nmodels = \"gpt\"\nproviders = [\"a\"]\n\n[[routes]]\nmodels = [\"b\"]\nproviders = [\"a\"]\nextra = 1\n";
        let found = read_problems(source);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(
            (found[0].0, found[0].1.as_str()),
            (Some(2), "routes[0].models")
        );
        assert!(
            found[0]
                .2
                .ends_with("expected a list such as [\"a\", \"b\"]")
        );
        // routes[0] was set aside: the second route keeps its own index.
        assert_eq!(
            (found[1].0, found[1].1.as_str()),
            (Some(8), "routes[1].extra")
        );
        assert!(read::<RawConfig>(source).raw.is_none());
    }

    #[test]
    fn a_missing_required_field_is_reported() {
        let found = read_problems("[[routes]]\nproviders = [\"a\"]\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "routes[0]");
        assert_eq!(found[0].2, "missing field `models`");
    }

    #[test]
    fn elements_taken_out_of_a_list_keep_the_next_ones_indexes() {
        let source = "[[routes]]\nmodels = [1, \"b\", 2]\nproviders = [\"a\"]\n";
        let reading = read::<RawConfig>(source);
        let found: Vec<_> = reading.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(found, ["routes[0].models[0]", "routes[0].models[2]"]);
        assert_eq!(reading.raw.unwrap().routes[0].models, ["b"]);
        assert_eq!(
            reading.paths.original_text("routes[0].models[0]"),
            "routes[0].models[1]"
        );
    }

    #[test]
    fn syntax_errors_are_listed_as_far_as_the_parser_recovers() {
        let found = read_problems("[server]\nlisten = \n\n[auth]\nopen = tru\n[[routes]\n");
        let lines: Vec<_> = found.iter().map(|(line, _, _)| *line).collect();
        assert_eq!(lines, [Some(2), Some(5), Some(6)], "{found:#?}");
    }

    #[test]
    fn any_cut_or_changed_line_of_the_shipped_configs_is_reported_not_panicked_on() {
        for shipped in [
            include_str!("../../../../config/example.toml"),
            include_str!("../../../../config/experiments-example.toml"),
            include_str!("../../../../config/container.toml"),
        ] {
            let lines: Vec<&str> = shipped.lines().collect();
            for i in 0..lines.len() {
                let mut variants = vec![lines[..i].join("\n")];
                for replacement in ["", "x = 1", "[x]", "= 1", "models = 7"] {
                    let mut changed = lines.clone();
                    changed[i] = replacement;
                    variants.push(changed.join("\n"));
                }
                for source in variants {
                    let reading = read::<RawConfig>(&source);
                    for problem in &reading.problems {
                        assert!(!problem.message.is_empty(), "{source}");
                    }
                }
            }
        }
    }

    #[test]
    fn type_names_become_plain_words() {
        for (message, plain) in [
            (
                "invalid type: string \"x\", expected f64",
                "invalid type: string \"x\", expected a number",
            ),
            (
                "invalid value: integer `-5`, expected u64",
                "invalid value: integer `-5`, expected a whole number ≥ 0",
            ),
            (
                "invalid type: integer `1`, expected a boolean",
                "invalid type: integer `1`, expected true or false",
            ),
            (
                "invalid type: integer `1`, expected struct RawUnitKey",
                "invalid type: integer `1`, expected a table",
            ),
            (
                "unknown variant `gemini`, expected one of `openai`, `anthropic`, `demo`",
                "unknown value `gemini`, expected one of `openai`, `anthropic`, `demo`",
            ),
            (
                "unknown field `x`, expected one of `a`, `b`",
                "unknown field `x`, expected one of `a`, `b`",
            ),
        ] {
            assert_eq!(plain_words(message), plain);
        }
    }

    #[test]
    fn messages_from_a_real_file_use_plain_words() {
        let found = read_problems(
            "[server]\nmax_body_bytes = -1\nshutdown_grace_ms = 1.5\n[telemetry]\nsample_ratio = \"all\"\n[auth]\nopen = \"yes\"\n",
        );
        let messages: Vec<&str> = found.iter().map(|(_, _, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "invalid value: integer `-1`, expected a whole number ≥ 0",
                "invalid type: floating point `1.5`, expected a whole number ≥ 0",
                "invalid type: string \"all\", expected a number",
                "invalid type: string \"yes\", expected true or false",
            ]
        );
    }
}

//! Prompt templates: text with `{{variable}}` placeholders, parsed once at
//! config load (so unbalanced braces are a load error, not a request error) and
//! rendered per request, where a variable the request does not supply is an
//! error naming it, never a silent empty string.
//!
//! Syntax: `{{ name }}` (spaces optional; names of letters, digits, `_`, `-`,
//! `.`). A single `{` or `}` is literal; `\{{` and `\}}` write literal `{{` and `}}`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at character {at} is never closed with `}}}}`")]
    Unclosed { at: usize },
    #[error("`}}}}` at character {at} closes nothing (write `\\}}}}` for a literal `}}}}`)")]
    UnexpectedClose { at: usize },
    #[error("empty placeholder `{{{{}}}}` at character {at}")]
    EmptyName { at: usize },
    #[error(
        "invalid variable name `{name}` at character {at}: use letters, digits, `_`, `-` or `.`"
    )]
    InvalidName { name: String, at: usize },
}

/// A variable the template needs and the request did not supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVariable(pub String);

impl fmt::Display for MissingVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the prompt template needs the variable `{}`", self.0)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let chars_before = |byte: usize| text[..byte].chars().count();
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some(escaped) = ["\\{{", "\\}}"].iter().find(|e| rest.starts_with(**e)) {
                literal.push_str(&escaped[1..]);
                i += 3;
            } else if let Some(inner) = rest.strip_prefix("{{") {
                let Some(end) = inner.find("}}") else {
                    return Err(TemplateError::Unclosed {
                        at: chars_before(i),
                    });
                };
                let name = inner[..end].trim();
                if name.is_empty() {
                    return Err(TemplateError::EmptyName {
                        at: chars_before(i),
                    });
                }
                if !valid_name(name) {
                    return Err(TemplateError::InvalidName {
                        name: name.to_owned(),
                        at: chars_before(i),
                    });
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Variable(name.to_owned()));
                i += 2 + end + 2;
            } else if rest.starts_with("}}") {
                return Err(TemplateError::UnexpectedClose {
                    at: chars_before(i),
                });
            } else {
                // Copy up to the next character that could start a token.
                let first = rest.chars().next().map_or(1, char::len_utf8);
                let run = rest[first..]
                    .find(['{', '}', '\\'])
                    .map_or(rest.len(), |n| n + first);
                literal.push_str(&rest[..run]);
                i += run;
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// The variables this template reads, in order of first use.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Renders with `lookup` supplying variable values.
    pub fn render<'v>(
        &self,
        lookup: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<String, MissingVariable> {
        let mut out = String::with_capacity(self.len_hint());
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Variable(name) => match lookup(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(MissingVariable(name.clone())),
                },
            }
        }
        Ok(out)
    }

    fn len_hint(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len(),
                Segment::Variable(_) => 32,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, MissingVariable> {
        Template::parse(template)
            .unwrap()
            .render(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    #[test]
    fn renders_variables_with_or_without_spaces() {
        assert_eq!(
            render(
                "Hi {{name}}, you are {{ tier }}.",
                &[("name", "Ada"), ("tier", "gold")]
            )
            .unwrap(),
            "Hi Ada, you are gold."
        );
        assert_eq!(render("{{a}}{{a}}", &[("a", "x")]).unwrap(), "xx");
        assert_eq!(render("no placeholders", &[]).unwrap(), "no placeholders");
        assert_eq!(render("", &[]).unwrap(), "");
    }

    #[test]
    fn values_are_not_re_expanded() {
        assert_eq!(render("{{a}}", &[("a", "{{b}}")]).unwrap(), "{{b}}");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = render("Hello {{user.name}} from {{city}}", &[("user.name", "x")]).unwrap_err();
        assert_eq!(err, MissingVariable("city".into()));
        assert_eq!(
            err.to_string(),
            "the prompt template needs the variable `city`"
        );
    }

    #[test]
    fn single_braces_are_literal_and_escapes_work() {
        assert_eq!(
            render("JSON: {\"a\": {{v}}}", &[("v", "1")]).unwrap(),
            "JSON: {\"a\": 1}"
        );
        assert_eq!(
            render(r"literal \{{not a var\}} and {{v}}", &[("v", "2")]).unwrap(),
            "literal {{not a var}} and 2"
        );
        assert_eq!(render(r"a \ b", &[]).unwrap(), r"a \ b");
    }

    #[test]
    fn unbalanced_braces_are_load_errors_with_positions() {
        assert_eq!(
            Template::parse("Hi {{name"),
            Err(TemplateError::Unclosed { at: 3 })
        );
        assert_eq!(
            Template::parse("Hi name}}"),
            Err(TemplateError::UnexpectedClose { at: 7 })
        );
        assert_eq!(
            Template::parse("é {{ }}"),
            Err(TemplateError::EmptyName { at: 2 })
        );
        assert!(matches!(
            Template::parse("{{a b}}"),
            Err(TemplateError::InvalidName { .. })
        ));
        assert_eq!(
            Template::parse("x {{").unwrap_err().to_string(),
            "`{{` at character 2 is never closed with `}}`"
        );
    }

    #[test]
    fn lists_variables() {
        let t = Template::parse("{{a}} {{b}} {{a}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), vec!["a", "b", "a"]);
    }
}

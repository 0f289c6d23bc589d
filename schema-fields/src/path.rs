//! Which fields to protect: by tag (`confluent:tags` in the schema) or by configured
//! path, and the located paths of fields found in a record.
//!
//! A configured path is a JSON Pointer over the record's logical shape, by schema field
//! names: `/customer/ssn`, with `*` for every element of an array, every value of a map,
//! or every field of a record (`/phones/*/number`). A union or `oneof` adds no step. A
//! path is matched against the schema, once, not against each record.

/// One step from a record's root to a field, in schema terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// A record's (message's, object's) field of this name.
    Field(&'a str),
    /// An array's (repeated field's) element.
    Element,
    /// A map's value.
    MapValue,
}

/// A configured field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Any,
    Name(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "field path \"{text}\" must start with \"/\" (a JSON Pointer such as \"/customer/ssn\")"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|raw| {
                if raw == "*" {
                    Ok(Token::Any)
                } else {
                    unescape(raw).map(Token::Name)
                }
            })
            .collect::<Result<_, String>>()
            .map_err(|e| format!("field path \"{text}\": {e}"))?;
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    /// As configured, for reasons and logs.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn matches(&self, path: &[Step]) -> bool {
        self.tokens.len() == path.len()
            && self
                .tokens
                .iter()
                .zip(path)
                .all(|(token, step)| match token {
                    Token::Any => true,
                    Token::Name(name) => *step == Step::Field(name),
                })
    }

    /// Whether some path that starts with `path` could match.
    fn may_extend(&self, path: &[Step]) -> bool {
        self.tokens.len() > path.len()
            && self
                .tokens
                .iter()
                .zip(path)
                .all(|(token, step)| match token {
                    Token::Any => true,
                    Token::Name(name) => *step == Step::Field(name),
                })
    }
}

/// A JSON Pointer reference token decoded (RFC 6901: `~0` is `~`, `~1` is `/`): the
/// one decoder of configured paths, shared with the policy SDK's JSON field pointers.
pub fn unescape(raw: &str) -> Result<String, String> {
    let mut name = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            name.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => name.push('~'),
            Some('1') => name.push('/'),
            _ => return Err("`~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)".into()),
        }
    }
    Ok(name)
}

/// The fields a policy protects: any field carrying one of `tags`, and any field at one
/// of `patterns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    tags: Vec<String>,
    patterns: Vec<Pattern>,
}

impl Selection {
    pub fn new(tags: Vec<String>, patterns: Vec<Pattern>) -> Selection {
        Selection { tags, patterns }
    }

    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether the field at `path`, carrying `field_tags` in its schema, is selected.
    pub fn selects<S: AsRef<str>>(&self, path: &[Step], field_tags: &[S]) -> bool {
        field_tags
            .iter()
            .any(|tag| self.tags.iter().any(|t| t == tag.as_ref()))
            || self.patterns.iter().any(|p| p.matches(path))
    }

    /// Whether a configured path could select something below `path` (tags aside): a
    /// walker that meets a recursive type needs to follow paths only this deep.
    pub fn may_select_below(&self, path: &[Step]) -> bool {
        self.patterns.iter().any(|p| p.may_extend(path))
    }
}

/// Appends one RFC 6901 reference token to a located path (`~` as `~0`, `/` as `~1`).
pub fn push_token(path: &mut String, name: &str) {
    path.push('/');
    for c in name.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Appends an array index to a located path.
pub fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "/{index}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_schema_paths() {
        let p = Pattern::parse("/phones/*/number").unwrap();
        assert!(p.matches(&[Step::Field("phones"), Step::Element, Step::Field("number")]));
        assert!(p.matches(&[Step::Field("phones"), Step::MapValue, Step::Field("number")]));
        assert!(!p.matches(&[Step::Field("phones"), Step::Element]));
        assert!(p.may_extend(&[Step::Field("phones"), Step::Element]));
        assert!(!p.may_extend(&[Step::Field("emails")]));
        assert_eq!(
            Pattern::parse("/a~1b/c~0").unwrap().tokens,
            [Token::Name("a/b".into()), Token::Name("c~".into())]
        );
        assert!(Pattern::parse("ssn").is_err());
        assert!(Pattern::parse("/a~2").is_err());
    }

    #[test]
    fn tags_or_patterns_select() {
        let s = Selection::new(vec!["PII".into()], vec![Pattern::parse("/ssn").unwrap()]);
        assert!(s.selects(&[Step::Field("name")], &["PII"]));
        assert!(s.selects::<&str>(&[Step::Field("ssn")], &[]));
        assert!(!s.selects(&[Step::Field("name")], &["PHI"]));
        let mut path = String::new();
        push_token(&mut path, "a/b~");
        push_index(&mut path, 3);
        assert_eq!(path, "/a~1b~0/3");
    }
}

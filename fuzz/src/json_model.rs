//! An independent model of what a JSON reader downstream sees, for the oracles of the
//! field-level targets: `serde_json` reads the document, every duplicate member kept in
//! order, and JSON Pointers (RFC 6901 plus `*`) are walked over it here, without the
//! SDK's scanner or selection. Where the model and the SDK disagree, one of them is wrong.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value as a reader sees it, objects as written (duplicates included).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The document as `serde_json` reads it (strict UTF-8, one value, no trailing text
    /// but whitespace), or `None` if `serde_json` refuses it.
    pub fn read(bytes: &[u8]) -> Option<Json> {
        serde_json::from_slice(bytes).ok()
    }

    fn child(&self, position: usize) -> Option<&Json> {
        match self {
            Json::Arr(elements) => elements.get(position),
            Json::Obj(members) => members.get(position).map(|(_, value)| value),
            _ => None,
        }
    }

    /// The value at `path` (child positions), if there is one.
    pub fn at(&self, path: &[usize]) -> Option<&Json> {
        path.iter()
            .try_fold(self, |node, &position| node.child(position))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element()? {
            elements.push(element);
        }
        Ok(Json::Arr(elements))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Json>()? {
            members.push((name, value));
        }
        Ok(Json::Obj(members))
    }
}

/// One reference token of a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Any,
    Name(String),
}

/// A pointer's tokens, or `None` if it is no JSON Pointer (`""`, or `/` and tokens with
/// `~0` and `~1` as the only escapes).
pub fn pointer(text: &str) -> Option<Vec<Token>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.strip_prefix('/')?
        .split('/')
        .map(|raw| {
            if raw == "*" {
                return Some(Token::Any);
            }
            let mut name = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next()? {
                        '0' => name.push('~'),
                        '1' => name.push('/'),
                        _ => return None,
                    },
                    c => name.push(c),
                }
            }
            Some(Token::Name(name))
        })
        .collect()
}

/// RFC 6901's array index: `0`, or digits without a leading zero.
fn index(name: &str) -> Option<usize> {
    let canonical = name == "0"
        || (!name.is_empty() && !name.starts_with('0') && name.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| name.parse().ok()).flatten()
}

/// Every path (child positions) in `doc` that `tokens` reach: every member whose name
/// matches (duplicates too), array elements by canonical index, `*` for all.
pub fn select(doc: &Json, tokens: &[Token]) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    walk(doc, tokens, &mut Vec::new(), &mut found);
    found
}

fn walk(node: &Json, tokens: &[Token], path: &mut Vec<usize>, found: &mut Vec<Vec<usize>>) {
    let Some((token, rest)) = tokens.split_first() else {
        found.push(path.clone());
        return;
    };
    let mut follow = |position: usize, child: &Json| {
        path.push(position);
        walk(child, rest, path, found);
        path.pop();
    };
    match (node, token) {
        (Json::Obj(members), token) => {
            for (position, (name, child)) in members.iter().enumerate() {
                if matches!(token, Token::Any) || matches!(token, Token::Name(n) if n == name) {
                    follow(position, child);
                }
            }
        }
        (Json::Arr(elements), Token::Any) => {
            for (position, child) in elements.iter().enumerate() {
                follow(position, child);
            }
        }
        (Json::Arr(elements), Token::Name(name)) => {
            if let Some(position) = index(name).filter(|&i| i < elements.len()) {
                follow(position, &elements[position]);
            }
        }
        _ => {}
    }
}

/// The selected paths of `doc` that have no selected ancestor: the values a correct
/// field policy replaces (a selected value's insides go with it).
pub fn outermost(doc: &Json, pointers: &[Vec<Token>]) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = pointers.iter().flat_map(|p| select(doc, p)).collect();
    all.sort();
    all.dedup();
    let outer: Vec<Vec<usize>> = all
        .iter()
        .filter(|path| {
            !all.iter()
                .any(|other| other.len() < path.len() && path.starts_with(other))
        })
        .cloned()
        .collect();
    outer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_kept_and_selected() {
        let doc = Json::read(br#"{"ssn":1,"a":[{"x":2},{"x":3}],"ssn":4}"#).unwrap();
        let ssn = pointer("/ssn").unwrap();
        assert_eq!(select(&doc, &ssn), [vec![0], vec![2]]);
        let xs = pointer("/a/*/x").unwrap();
        assert_eq!(select(&doc, &xs), [vec![1, 0, 0], vec![1, 1, 0]]);
        assert_eq!(
            outermost(&doc, &[pointer("").unwrap(), ssn]),
            [Vec::<usize>::new()]
        );
    }
}

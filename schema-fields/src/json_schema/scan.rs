//! A strict RFC 8259 scanner that walks a record along the compiled tree in one pass,
//! noting where each selected string value is. Nothing is parsed into numbers or
//! re-serialised: a replacement rewrites the selected values' bytes and keeps every
//! other byte as it came.
//!
//! Strict: exactly one value, optionally surrounded by whitespace; valid UTF-8; no byte
//! order mark; no lone surrogate escapes; at most [`MAX_DEPTH`] nested arrays and
//! objects (refused before anything recurses further, so no record can exhaust the
//! stack). Every member is visited, so every duplicate of a selected member is selected
//! (a reader may keep either), and names are compared decoded (`"\u0073sn"` is `ssn`).
//! Reasons give byte offsets and schema paths, never record data.

use std::borrow::Cow;

use super::compile::{shown, Children, Collection, Kind, NodeId, Tree};
use crate::path::{push_index, push_token};
use crate::{Error, Field, FieldType};

/// The deepest nesting of arrays and objects a record may have.
pub(super) const MAX_DEPTH: usize = 128;

/// A selected string value's bytes, quotes included.
pub(super) type Span = (usize, usize);

pub(super) fn locate(tree: &Tree, text: &[u8]) -> Result<(Vec<Field>, Vec<Span>), Error> {
    if let Err(e) = std::str::from_utf8(text) {
        return Err(Error::Decode(format!(
            "the record is not UTF-8 from byte {}",
            e.valid_up_to()
        )));
    }
    let mut scanner = Scanner {
        tree,
        text,
        at: 0,
        path: String::new(),
        fields: Vec::new(),
        spans: Vec::new(),
    };
    scanner.value(0, tree.root)?;
    scanner.skip_whitespace();
    if scanner.at != text.len() {
        return Err(scanner.expected("the end of the record"));
    }
    Ok((scanner.fields, scanner.spans))
}

struct Scanner<'a> {
    tree: &'a Tree,
    text: &'a [u8],
    at: usize,
    /// The located path of the value being visited, while on a selected field's way.
    path: String,
    fields: Vec<Field>,
    spans: Vec<Span>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expected(&self, expected: &str) -> Error {
        Error::Decode(format!("not JSON: expected {expected} at byte {}", self.at))
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value at nesting `depth` (the number of containers around it), walked under
    /// `node`.
    fn value(&mut self, depth: usize, node: Option<NodeId>) -> Result<(), Error> {
        self.skip_whitespace();
        let tree: &'a Tree = self.tree;
        let children = match node.map(|id| &tree.nodes[id]) {
            None => None,
            Some(node) => match &node.kind {
                Kind::Container(children) => {
                    if let Some(collection) = children.collection {
                        self.check_collection(depth, &node.at, collection)?;
                    }
                    Some(children)
                }
                Kind::Selected => return self.selected(depth, &node.at),
            },
        };
        match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::Decode(format!(
                        "arrays and objects are nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                self.at += 1;
                if open == b'{' {
                    self.object(depth + 1, children)
                } else {
                    self.array(depth + 1, children)
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.expected("a JSON value")),
        }
    }

    /// A selected field's value: a string to report, null for none, nothing else.
    fn selected(&mut self, depth: usize, at: &str) -> Result<(), Error> {
        let start = self.at;
        let found = match self.peek() {
            Some(b'"') => {
                let escaped = self.string()?;
                let text: &'a [u8] = self.text;
                let raw = &text[start + 1..self.at - 1];
                let content = if escaped {
                    decode(raw)
                        .ok_or_else(|| Error::Decode(format!("field {}: a bad escape", shown(at))))?
                        .into_bytes()
                } else {
                    raw.to_vec()
                };
                self.fields.push(Field {
                    path: self.path.clone(),
                    field_type: FieldType::String,
                    content,
                });
                self.spans.push((start, self.at));
                return Ok(());
            }
            Some(b'n') => return self.literal(b"null"),
            _ => self.kind_of_value()?,
        };
        // Checked as JSON first: a broken record is reported as broken.
        self.value(depth, None)?;
        Err(Error::Decode(format!(
            "field {} is selected for protection but holds {found}, not a string",
            shown(at)
        )))
    }

    /// What the value ahead is, for reasons.
    fn kind_of_value(&self) -> Result<&'static str, Error> {
        Ok(match self.peek() {
            Some(b'"') => "a string",
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "a number",
            _ => return Err(self.expected("a JSON value")),
        })
    }

    /// A selected array or map of strings must be one in the record (or null): its
    /// value is refused otherwise, never passed on in clear.
    fn check_collection(
        &mut self,
        depth: usize,
        at: &str,
        collection: Collection,
    ) -> Result<(), Error> {
        let (open, expected) = match collection {
            Collection::Array => (b'[', "an array"),
            Collection::Map => (b'{', "an object"),
        };
        let found = self.kind_of_value()?;
        if self.peek() == Some(open) || self.peek() == Some(b'n') {
            return Ok(());
        }
        self.value(depth, None)?;
        Err(Error::Decode(format!(
            "field {} is selected for protection but holds {found}, not {expected} of strings",
            shown(at)
        )))
    }

    /// After `{`.
    fn object(&mut self, depth: usize, children: Option<&Children>) -> Result<(), Error> {
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.expected("a member name in quotes"));
            }
            let start = self.at + 1;
            let escaped = self.string()?;
            let text: &'a [u8] = self.text;
            let raw = &text[start..self.at - 1];
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.expected("':' after a member name"));
            }
            self.at += 1;
            let mut child = None;
            let mut name = Cow::Borrowed("");
            if let Some(children) = children {
                name = if escaped {
                    Cow::Owned(decode(raw).ok_or_else(|| self.expected("a valid escape"))?)
                } else {
                    // The whole record is UTF-8 and a name ends at an ASCII quote.
                    String::from_utf8_lossy(raw)
                };
                child = children.member(&name);
            }
            if child.is_some() {
                let length = self.path.len();
                push_token(&mut self.path, &name);
                let visited = self.value(depth, child);
                self.path.truncate(length);
                visited?;
            } else {
                self.value(depth, None)?;
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.expected("',' or '}' after a member")),
            }
        }
    }

    /// After `[`.
    fn array(&mut self, depth: usize, children: Option<&Children>) -> Result<(), Error> {
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            let child = children.and_then(|children| children.element(index));
            if child.is_some() {
                let length = self.path.len();
                push_index(&mut self.path, index);
                let visited = self.value(depth, child);
                self.path.truncate(length);
                visited?;
            } else {
                self.value(depth, None)?;
            }
            index += 1;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.expected("',' or ']' after an element")),
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Error> {
        if !self.text[self.at..].starts_with(word) {
            return Err(self.expected(match word {
                b"null" => "null",
                _ => "true or false",
            }));
        }
        self.at += word.len();
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), Error> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.expected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Error> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.expected("a digit"));
        }
        self.digits();
        Ok(())
    }

    /// At `"`: through the closing quote; whether the string has an escape. The text is
    /// UTF-8 already.
    fn string(&mut self) -> Result<bool, Error> {
        self.at += 1;
        let mut escaped = false;
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.expected("'\"' to end the string"));
            };
            match byte {
                b'"' => {
                    self.at += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0x00..=0x1f => return Err(self.expected("no control character in a string")),
                _ => self.at += 1,
            }
        }
    }

    /// At `\`.
    fn escape(&mut self) -> Result<(), Error> {
        self.at += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => match self.hex4()? {
                0xd800..=0xdbff => {
                    // A high surrogate must be followed by a low one: together they are
                    // one character; alone, no character at all.
                    if self.text[self.at..].starts_with(b"\\u") {
                        self.at += 1;
                        if let 0xdc00..=0xdfff = self.hex4()? {
                            return Ok(());
                        }
                    }
                    Err(self.expected("a low surrogate escape after a high one"))
                }
                0xdc00..=0xdfff => Err(self.expected("a high surrogate escape first")),
                _ => Ok(()),
            },
            _ => Err(self.expected("an escape: \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX")),
        }
    }

    /// At `u` of `\uXXXX`: the code unit.
    fn hex4(&mut self) -> Result<u32, Error> {
        self.at += 1;
        let mut unit = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.expected("four hex digits after \\u"))?;
            unit = unit * 16 + digit;
            self.at += 1;
        }
        Ok(unit)
    }
}

/// The text of a string's contents (between the quotes), escapes decoded; `None` if
/// they are not what the scanner accepts.
fn decode(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at + 1..];
        let (c, used) = match escape.as_bytes().first()? {
            b'"' => ('"', 1),
            b'\\' => ('\\', 1),
            b'/' => ('/', 1),
            b'b' => ('\u{8}', 1),
            b'f' => ('\u{c}', 1),
            b'n' => ('\n', 1),
            b'r' => ('\r', 1),
            b't' => ('\t', 1),
            b'u' => {
                let unit = hex4(escape.get(1..5)?)?;
                match unit {
                    0xd800..=0xdbff => {
                        let low = escape.get(5..11)?.strip_prefix("\\u").and_then(hex4)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return None;
                        }
                        let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        (char::from_u32(code)?, 11)
                    }
                    unit => (char::from_u32(unit)?, 5),
                }
            }
            _ => return None,
        };
        out.push(c);
        rest = &escape[used..];
    }
    out.push_str(rest);
    Some(out)
}

fn hex4(digits: &str) -> Option<u32> {
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// `text` as a JSON string, quotes included: `"`, `\` and control characters escaped,
/// every other character as it is.
pub(super) fn push_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

//! A strict RFC 8259 JSON scanner that keeps where every value is: the field policies
//! replace the selected values' bytes and leave every other byte as it came, so nothing
//! is parsed into numbers or re-serialised.
//!
//! Strict: exactly one value, optionally surrounded by whitespace; valid UTF-8; no byte
//! order mark; no lone surrogate escapes; at most [`MAX_DEPTH`] nested arrays and
//! objects. Objects keep their members in order, duplicates included.

use std::fmt;

/// The deepest nesting of arrays and objects a record may have. Deeper documents are
/// refused before anything recurses further, so no input can exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The kind, as a reason names it.
    pub(crate) fn article(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// One value of a document, in document order (a container before its contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The value's bytes, `start..end` (a string's include its quotes).
    pub start: usize,
    pub end: usize,
    /// A string value written with a `\` escape.
    pub escaped: bool,
    /// For an object member: its name's bytes between the quotes, and whether the name
    /// has an escape. `name_start == name_end` for an empty name and for non-members.
    pub name_start: usize,
    pub name_end: usize,
    pub name_escaped: bool,
    /// The index of the first node after this one's contents.
    pub next: usize,
}

/// A document and its values.
pub(crate) struct Document<'a> {
    pub text: &'a [u8],
    /// Every value; the root is the first.
    pub nodes: Vec<Node>,
}

impl<'a> Document<'a> {
    /// The indices of the elements or members of container `index`, in order.
    pub fn children(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.nodes[index].next;
        let mut at = index + 1;
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let child = at;
                at = self.nodes[child].next;
                child
            })
        })
    }

    /// The raw bytes of member `index`'s name, between the quotes.
    pub fn raw_name(&self, index: usize) -> &'a [u8] {
        let node = &self.nodes[index];
        &self.text[node.name_start..node.name_end]
    }

    /// Whether member `index`'s name, decoded, is `name`.
    pub fn name_is(&self, index: usize, name: &str) -> bool {
        let raw = self.raw_name(index);
        if self.nodes[index].name_escaped {
            decode(raw).is_some_and(|decoded| decoded == name)
        } else {
            raw == name.as_bytes()
        }
    }

    /// The bytes of value `index`.
    #[cfg(test)]
    pub fn bytes(&self, index: usize) -> &'a [u8] {
        let node = &self.nodes[index];
        &self.text[node.start..node.end]
    }

    /// The decoded text of string value `index`.
    pub fn string(&self, index: usize) -> Option<String> {
        let node = &self.nodes[index];
        if node.kind != Kind::String {
            return None;
        }
        let raw = &self.text[node.start + 1..node.end - 1];
        if node.escaped {
            decode(raw)
        } else {
            std::str::from_utf8(raw).ok().map(str::to_owned)
        }
    }
}

/// Why a value is not JSON this scanner accepts. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// Not JSON: what was expected, at which byte offset.
    Syntax { at: usize, expected: &'static str },
    /// Not UTF-8, from this byte offset.
    NotUtf8 { at: usize },
    /// JSON, but nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Syntax { at, expected } => write!(f, "expected {expected} at byte {at}"),
            Error::NotUtf8 { at } => write!(f, "not UTF-8 at byte {at}"),
            Error::TooDeep => write!(
                f,
                "arrays and objects are nested deeper than {MAX_DEPTH} levels"
            ),
        }
    }
}

/// Scans `text` as one JSON value and lists its values.
pub(crate) fn parse(text: &[u8]) -> Result<Document<'_>, Error> {
    let mut scanner = Scanner::new(text, true)?;
    scanner.document()?;
    Ok(Document {
        text,
        nodes: scanner.nodes,
    })
}

/// Whether `text` is exactly one JSON value, without listing its values.
pub(crate) fn validate(text: &[u8]) -> Result<(), Error> {
    Scanner::new(text, false)?.document()
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    /// Whether to list the values (`parse`) or only check them (`validate`).
    record: bool,
    nodes: Vec<Node>,
}

/// Where a member's name is, for the member's node.
#[derive(Clone, Copy, Default)]
struct Name {
    start: usize,
    end: usize,
    escaped: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8], record: bool) -> Result<Self, Error> {
        if let Err(e) = std::str::from_utf8(text) {
            return Err(Error::NotUtf8 {
                at: e.valid_up_to(),
            });
        }
        Ok(Scanner {
            text,
            at: 0,
            record,
            nodes: Vec::new(),
        })
    }

    fn document(&mut self) -> Result<(), Error> {
        self.value(0, Name::default())?;
        self.skip_whitespace();
        if self.at != self.text.len() {
            return Err(self.expected("the end of the value"));
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expected(&self, expected: &'static str) -> Error {
        Error::Syntax {
            at: self.at,
            expected,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value at nesting `depth` (the number of containers around it).
    fn value(&mut self, depth: usize, name: Name) -> Result<(), Error> {
        self.skip_whitespace();
        let index = self.nodes.len();
        if self.record {
            // Filled in once the value's end (and its contents' nodes) are known.
            self.nodes.push(Node {
                kind: Kind::Null,
                start: 0,
                end: 0,
                escaped: false,
                name_start: name.start,
                name_end: name.end,
                name_escaped: name.escaped,
                next: 0,
            });
        }
        let start = self.at;
        let mut escaped = false;
        let kind = match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                self.at += 1;
                if open == b'{' {
                    self.object(depth + 1)?;
                    Kind::Object
                } else {
                    self.array(depth + 1)?;
                    Kind::Array
                }
            }
            Some(b'"') => {
                escaped = self.string()?;
                Kind::String
            }
            Some(b't') => self.literal(b"true", Kind::Bool)?,
            Some(b'f') => self.literal(b"false", Kind::Bool)?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            _ => return Err(self.expected("a JSON value")),
        };
        if self.record {
            let next = self.nodes.len();
            let node = &mut self.nodes[index];
            node.kind = kind;
            node.start = start;
            node.end = self.at;
            node.escaped = escaped;
            node.next = next;
        }
        Ok(())
    }

    /// After `{`.
    fn object(&mut self, depth: usize) -> Result<(), Error> {
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
            let name = Name {
                start,
                end: self.at - 1,
                escaped,
            };
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.expected("':' after a member name"));
            }
            self.at += 1;
            self.value(depth, name)?;
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
    fn array(&mut self, depth: usize) -> Result<(), Error> {
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value(depth, Name::default())?;
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

    fn literal(&mut self, word: &'static [u8], kind: Kind) -> Result<Kind, Error> {
        if !self.text[self.at..].starts_with(word) {
            return Err(self.expected(match kind {
                Kind::Null => "null",
                _ => "true or false",
            }));
        }
        self.at += word.len();
        Ok(kind)
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

    /// At `"`; returns whether the string has an escape. The text is UTF-8 already.
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
            Some(b'u') => {
                let unit = self.hex4()?;
                match unit {
                    0xd800..=0xdbff => {
                        // A high surrogate must be followed by a low one: together they
                        // are one character; alone, no character at all.
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
                }
            }
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
pub(crate) fn decode(raw: &[u8]) -> Option<String> {
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

/// `value` (one valid JSON value) without insignificant whitespace; every token is kept
/// byte for byte (numbers as written, strings with their escapes).
pub(crate) fn minified(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in value {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else if byte == b'"' {
            in_string = true;
        }
        out.push(byte);
    }
    out
}

/// `text` as a JSON string, quotes included.
pub(crate) fn push_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &'static str)> {
        let text: &'static str = Box::leak(text.to_string().into_boxed_str());
        let doc = parse(text.as_bytes()).unwrap();
        (0..doc.nodes.len())
            .map(move |i| {
                (
                    doc.nodes[i].kind,
                    std::str::from_utf8(doc.bytes(i)).unwrap(),
                )
            })
            .collect()
    }

    fn error(text: &[u8]) -> Error {
        match parse(text) {
            Ok(_) => panic!("{} was accepted", String::from_utf8_lossy(text)),
            Err(e) => e,
        }
    }

    #[test]
    fn values_keep_their_bytes_and_members_their_order_and_duplicates() {
        let text = " {\"b\" : [1, -0.5e+3 ,\"x\\u00e9\"], \"a\":{}, \"b\":null,\"t\":true} \n";
        assert_eq!(
            kinds(text),
            [
                (
                    Kind::Object,
                    "{\"b\" : [1, -0.5e+3 ,\"x\\u00e9\"], \"a\":{}, \"b\":null,\"t\":true}"
                ),
                (Kind::Array, "[1, -0.5e+3 ,\"x\\u00e9\"]"),
                (Kind::Number, "1"),
                (Kind::Number, "-0.5e+3"),
                (Kind::String, "\"x\\u00e9\""),
                (Kind::Object, "{}"),
                (Kind::Null, "null"),
                (Kind::Bool, "true"),
            ]
        );
        let doc = parse(text.as_bytes()).unwrap();
        let members: Vec<&[u8]> = doc.children(0).map(|m| doc.raw_name(m)).collect();
        assert_eq!(members, [&b"b"[..], b"a", b"b", b"t"]);
        assert_eq!(doc.children(1).count(), 3);
        assert_eq!(doc.children(5).count(), 0);
        assert_eq!(doc.string(4).as_deref(), Some("x\u{e9}"));
    }

    #[test]
    fn numbers_are_held_to_the_grammar_and_never_converted() {
        for good in [
            "0",
            "-0",
            "12345678901234567.89",
            "123456789012345678901234567890",
            "1e400",
            "1E-7",
            "2.50",
        ] {
            assert_eq!(kinds(good), [(Kind::Number, good)]);
        }
        for bad in [
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "1.e3",
            "0x1",
            "NaN",
            "-Infinity",
        ] {
            assert!(
                matches!(error(bad.as_bytes()), Error::Syntax { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn strings_are_held_to_the_grammar() {
        assert_eq!(
            kinds(r#""\ud83d\ude00 \" \\ \/ \b\f\n\r\t""#)[0].0,
            Kind::String
        );
        for bad in [
            &br#""\ud800""#[..],
            br#""\ud800\u0041""#,
            br#""\udc00""#,
            br#""\x""#,
            br#""\u12""#,
            b"\"tab\there\"",
            b"\"open",
            b"\"\xc3\x28\"",
        ] {
            let e = error(bad);
            assert!(
                matches!(e, Error::Syntax { .. } | Error::NotUtf8 { .. }),
                "{e:?}"
            );
        }
    }

    #[test]
    fn exactly_one_value_and_nothing_else() {
        for bad in [
            &b""[..],
            b"   ",
            b"\xef\xbb\xbf{}",
            b"{} x",
            b"{}{}",
            b"1 2",
            b"{\"a\":1,}",
            b"[1,]",
            b"{'a':1}",
            b"{a:1}",
            b"[1 2]",
            b"{\"a\" 1}",
            b"nul",
            b"truex",
        ] {
            assert!(validate(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(validate(b" \t\r\n[] \n").is_ok());
        // A byte order mark is no JSON value (RFC 8259 lets a parser ignore one; a
        // protecting policy does not guess).
        assert_eq!(
            error(b"\xef\xbb\xbf{}"),
            Error::Syntax {
                at: 0,
                expected: "a JSON value"
            }
        );
    }

    #[test]
    fn nesting_is_limited_without_recursing_past_the_limit() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_DEPTH + 1).as_bytes()).err(),
            Some(Error::TooDeep)
        );
        // Far deeper than any stack would take, and unbalanced: still just refused.
        assert_eq!(
            validate("[{\"a\":".repeat(1_000_000).as_bytes()),
            Err(Error::TooDeep)
        );
    }

    #[test]
    fn errors_say_where_not_what() {
        let e = error(br#"{"secret-name": "secret value" x}"#);
        assert_eq!(
            e.to_string(),
            "expected ',' or '}' after a member at byte 31"
        );
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn names_are_compared_decoded() {
        let doc = parse(br#"{"\u0073sn":1,"ssn":2,"a\/b":3,"\ud83d\ude00":4}"#).unwrap();
        let members: Vec<usize> = doc.children(0).collect();
        assert!(doc.name_is(members[0], "ssn"));
        assert!(doc.name_is(members[1], "ssn"));
        assert!(doc.name_is(members[2], "a/b"));
        assert!(doc.name_is(members[3], "\u{1f600}"));
        assert!(!doc.name_is(members[0], "\\u0073sn"));
    }

    #[test]
    fn minify_drops_only_insignificant_whitespace() {
        assert_eq!(
            minified(b"{ \"a b\" : [ 1.50 , \"x \\\" y\\\\\" ,\n\tnull ] }"),
            b"{\"a b\":[1.50,\"x \\\" y\\\\\",null]}"
        );
    }

    #[test]
    fn strings_are_written_so_they_read_back() {
        let text = "vault:v1:ab/c+= \" \\ \u{1} \u{e9}";
        let mut out = Vec::new();
        push_string(&mut out, text);
        let doc = parse(&out).unwrap();
        assert_eq!(doc.string(0).as_deref(), Some(text));
        assert_eq!(decode(br"\u00"), None);
        assert_eq!(decode(br"\ud800"), None);
    }
}

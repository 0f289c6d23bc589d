//! The schema as `.proto` text (proto3, proto2, editions), as Confluent's Schema Registry
//! stores it. Only what walking records needs is kept: packages, messages (nested, map
//! entries, groups), fields with their labels, types and Confluent tags, enum names.
//! Services, extensions, reserved ranges and other options are read past.
//!
//! Hand-written rather than a dependency: `protox-parse` would bring its own error
//! reporting stack (miette, logos) into every WebAssembly policy, and still leave its
//! uninterpreted options (the tags) to interpret here.

use super::model::{Hint, RawField, RawFile, RawMessage, RawType, Scalar};

/// Nesting of messages and of option values in the text: recursion stays bounded.
const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A number as written: field numbers are parsed when needed, the rest skipped.
    Number(String),
    Str(String),
    Sym(u8),
    Eof,
}

struct Token {
    tok: Tok,
    line: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while let Some(&c) = b.get(i) {
        let next = b.get(i + 1).copied();
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            // `#` starts a comment in option values (text format), and nowhere else means
            // anything.
            b'#' | b'/' if c == b'#' || next == Some(b'/') => {
                while b.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                i += 2;
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (Some(b'*'), Some(b'/')) => break,
                        (Some(b'\n'), _) => line += 1,
                        (None, _) => return Err(format!("line {line}: unterminated comment")),
                        _ => {}
                    }
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(src[start..i].to_string()),
                    line,
                });
            }
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let start = i;
                let hex = c == b'0' && matches!(next, Some(b'x' | b'X'));
                i += 1;
                while let Some(&d) = b.get(i) {
                    let exponent_sign =
                        matches!(d, b'+' | b'-') && !hex && matches!(b[i - 1], b'e' | b'E');
                    if d.is_ascii_alphanumeric() || d == b'.' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Token {
                    tok: Tok::Number(src[start..i].to_string()),
                    line,
                });
            }
            b'"' | b'\'' => {
                let (text, end) = string(b, i, line)?;
                out.push(Token {
                    tok: Tok::Str(text),
                    line,
                });
                i = end;
            }
            c if c.is_ascii_punctuation() => {
                out.push(Token {
                    tok: Tok::Sym(c),
                    line,
                });
                i += 1;
            }
            _ => return Err(format!("line {line}: unexpected character")),
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
    });
    Ok(out)
}

/// A quoted string starting at `start`: its text and the index past its closing quote.
fn string(b: &[u8], start: usize, line: usize) -> Result<(String, usize), String> {
    let quote = b[start];
    let mut bytes = Vec::new();
    let mut i = start + 1;
    let err = |what: &str| Err(format!("line {line}: {what}"));
    loop {
        let Some(&c) = b.get(i) else {
            return err("unterminated string");
        };
        i += 1;
        match c {
            c if c == quote => break,
            b'\n' => return err("unterminated string"),
            b'\\' => {
                let Some(&e) = b.get(i) else {
                    return err("unterminated string");
                };
                i += 1;
                let simple = match e {
                    b'n' => Some(b'\n'),
                    b't' => Some(b'\t'),
                    b'r' => Some(b'\r'),
                    b'a' => Some(7),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'v' => Some(11),
                    b'\\' | b'\'' | b'"' | b'?' => Some(e),
                    _ => None,
                };
                if let Some(byte) = simple {
                    bytes.push(byte);
                    continue;
                }
                let (radix, max, unicode) = match e {
                    b'x' | b'X' => (16, 2, false),
                    b'0'..=b'7' => {
                        i -= 1;
                        (8, 3, false)
                    }
                    b'u' => (16, 4, true),
                    b'U' => (16, 8, true),
                    _ => return err("unknown escape in a string"),
                };
                let digits = b[i..]
                    .iter()
                    .take(max)
                    .take_while(|d| char::from(**d).is_digit(radix))
                    .count();
                let value = std::str::from_utf8(&b[i..i + digits])
                    .ok()
                    .and_then(|d| u32::from_str_radix(d, radix).ok());
                i += digits;
                match (value, unicode) {
                    (Some(v), false) => bytes.push(v as u8),
                    (Some(v), true) => match char::from_u32(v) {
                        Some(ch) => bytes.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
                        None => return err("invalid unicode escape"),
                    },
                    (None, _) => return err("invalid escape in a string"),
                }
            }
            c => bytes.push(c),
        }
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), i))
}

/// An option's value, kept only as far as Confluent's tags need.
#[derive(Debug)]
enum OptionValue {
    Str(String),
    List(Vec<OptionValue>),
    Message(Vec<(String, OptionValue)>),
    Ident(String),
    Other,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

pub(super) fn parse(text: &str) -> Result<RawFile, String> {
    let mut parser = Parser {
        toks: lex(text)?,
        pos: 0,
    };
    parser.file()
}

fn field_number(text: &str) -> Option<u32> {
    let value = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()?
    } else {
        text.parse().ok()?
    };
    (1..(1 << 29)).contains(&value).then_some(value)
}

/// protoc's name for a map field's entry message: `old_addresses` → `OldAddressesEntry`.
fn map_entry_name(field: &str) -> String {
    let mut name = String::with_capacity(field.len() + 5);
    let mut upper = true;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            name.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            name.push(c);
        }
    }
    name.push_str("Entry");
    name
}

impl Parser {
    fn peek_at(&self, n: usize) -> &Tok {
        self.toks
            .get(self.pos + n)
            .map_or(&Tok::Eof, |token| &token.tok)
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn is_sym_at(&self, n: usize, c: u8) -> bool {
        *self.peek_at(n) == Tok::Sym(c)
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        tok
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        let line = self
            .toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.line);
        Err(format!("line {line}: {what}"))
    }

    fn eat_sym(&mut self, c: u8) -> bool {
        let found = self.is_sym_at(0, c);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_sym(&mut self, c: u8) -> Result<(), String> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            self.err(&format!("expected `{}`", c as char))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.bump() {
            Tok::Ident(word) => Ok(word),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                self.err("expected a name")
            }
        }
    }

    /// `a.b.C`, or `.a.b.C` fully qualified.
    fn full_ident(&mut self) -> Result<String, String> {
        let mut name = String::new();
        if self.eat_sym(b'.') {
            name.push('.');
        }
        name.push_str(&self.ident()?);
        while self.is_sym_at(0, b'.') {
            self.pos += 1;
            name.push('.');
            name.push_str(&self.ident()?);
        }
        Ok(name)
    }

    fn string(&mut self) -> Result<String, String> {
        match self.bump() {
            Tok::Str(mut text) => {
                // Adjacent literals concatenate, as in C.
                while let Tok::Str(more) = self.peek() {
                    text.push_str(more);
                    self.pos += 1;
                }
                Ok(text)
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                self.err("expected a string")
            }
        }
    }

    /// Past the next `;` outside braces (an option's value may be a `{...}` message).
    fn skip_statement(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        loop {
            match self.bump() {
                Tok::Eof => return self.err("unexpected end of the schema"),
                Tok::Sym(b'{') => depth += 1,
                Tok::Sym(b'}') => {
                    if depth == 0 {
                        return self.err("unbalanced `}`");
                    }
                    depth -= 1;
                }
                Tok::Sym(b';') if depth == 0 => return Ok(()),
                _ => {}
            }
        }
    }

    /// A `{...}` block, read past.
    fn skip_block(&mut self) -> Result<(), String> {
        while !self.is_sym_at(0, b'{') {
            if *self.peek() == Tok::Eof || self.is_sym_at(0, b';') {
                return self.err("expected `{`");
            }
            self.pos += 1;
        }
        let mut depth = 0usize;
        loop {
            match self.bump() {
                Tok::Eof => return self.err("unexpected end of the schema"),
                Tok::Sym(b'{') => depth += 1,
                Tok::Sym(b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    fn file(&mut self) -> Result<RawFile, String> {
        let mut file = RawFile::default();
        loop {
            let word = match self.peek() {
                Tok::Eof => return Ok(file),
                Tok::Sym(b';') => {
                    self.pos += 1;
                    continue;
                }
                Tok::Ident(word) => word.clone(),
                _ => return self.err("expected a declaration"),
            };
            match word.as_str() {
                "syntax" | "edition" | "import" | "option" => self.skip_statement()?,
                "package" => {
                    self.pos += 1;
                    file.package = self.full_ident()?;
                    self.expect_sym(b';')?;
                }
                "message" => {
                    self.pos += 1;
                    let name = self.ident()?;
                    file.messages.push(self.message_body(name, 1)?);
                }
                "enum" => {
                    self.pos += 1;
                    file.enums.push(self.ident()?);
                    self.skip_block()?;
                }
                "service" | "extend" => self.skip_block()?,
                _ => return self.err(&format!("unexpected `{word}`")),
            }
        }
    }

    /// A message's `{...}`, its name already read.
    fn message_body(&mut self, name: String, depth: usize) -> Result<RawMessage, String> {
        if depth > MAX_NESTING {
            return self.err("messages nested deeper than 64");
        }
        let mut message = RawMessage {
            name,
            indexed: true,
            ..RawMessage::default()
        };
        self.expect_sym(b'{')?;
        loop {
            let word = match self.peek() {
                Tok::Sym(b'}') => {
                    self.pos += 1;
                    return Ok(message);
                }
                Tok::Sym(b';') => {
                    self.pos += 1;
                    continue;
                }
                Tok::Ident(word) => word.clone(),
                Tok::Sym(b'.') => String::new(),
                Tok::Eof => return self.err("unexpected end of the schema"),
                _ => return self.err("expected a field or a declaration"),
            };
            // A keyword only when what follows is not `= number` (a field of a type so
            // named).
            let declaration = !self.is_sym_at(2, b'=');
            match word.as_str() {
                "message" if declaration => {
                    self.pos += 1;
                    let name = self.ident()?;
                    let nested = self.message_body(name, depth + 1)?;
                    message.nested.push(nested);
                }
                "enum" if declaration => {
                    self.pos += 1;
                    message.enums.push(self.ident()?);
                    self.skip_block()?;
                }
                "extend" if declaration => self.skip_block()?,
                "option" => {
                    // Confluent's registry writes the map entries of a schema registered
                    // as a descriptor as such messages, and the map fields as repeated
                    // fields of them.
                    self.pos += 1;
                    let name = self.option_name()?;
                    self.expect_sym(b'=')?;
                    let value = self.option_value(0)?;
                    self.expect_sym(b';')?;
                    if let ([name], OptionValue::Ident(value)) = (name.as_slice(), &value) {
                        if name == "map_entry" {
                            message.map_entry = value == "true";
                        }
                    }
                }
                "reserved" | "extensions" if declaration => self.skip_statement()?,
                "oneof" if declaration => {
                    self.pos += 1;
                    self.ident()?;
                    self.expect_sym(b'{')?;
                    while !self.eat_sym(b'}') {
                        if self.is_ident("option") {
                            self.skip_statement()?;
                        } else if !self.eat_sym(b';') {
                            self.field(&mut message, depth)?;
                        }
                    }
                }
                _ => self.field(&mut message, depth)?,
            }
        }
    }

    /// A field, a map field or a proto2 group, into `message`.
    fn field(&mut self, message: &mut RawMessage, depth: usize) -> Result<(), String> {
        let mut repeated = false;
        let label = match self.peek() {
            Tok::Ident(word) => matches!(word.as_str(), "optional" | "required" | "repeated"),
            _ => false,
        };
        // A label unless `=` follows the next name: then that is a field of a type
        // named like a label.
        if label && !self.is_sym_at(2, b'=') {
            repeated = self.is_ident("repeated");
            self.pos += 1;
        }
        if self.is_ident("map") && self.is_sym_at(1, b'<') {
            return self.map_field(message);
        }
        let type_name = self.full_ident()?;
        let name = self.ident()?;
        self.expect_sym(b'=')?;
        let number = self.number()?;
        let tags = self.field_options()?;
        if type_name == "group" && self.is_sym_at(0, b'{') {
            // The group's type is a nested message; Java's message indexes do not count it.
            let mut group = self.message_body(name.clone(), depth + 1)?;
            group.indexed = false;
            message.fields.push(RawField {
                name: name.to_ascii_lowercase(),
                number,
                repeated,
                ty: RawType::Named {
                    name: name.clone(),
                    hint: Hint::Message,
                },
                tags,
            });
            message.nested.push(group);
            return Ok(());
        }
        self.expect_sym(b';')?;
        let ty = match Scalar::from_name(&type_name) {
            Some(scalar) => RawType::Scalar(scalar),
            None => RawType::Named {
                name: type_name,
                hint: Hint::Unknown,
            },
        };
        message.fields.push(RawField {
            name,
            number,
            repeated,
            ty,
            tags,
        });
        Ok(())
    }

    fn number(&mut self) -> Result<u32, String> {
        match self.bump() {
            Tok::Number(text) => match field_number(&text) {
                Some(n) => Ok(n),
                None => self.err("field number out of range"),
            },
            _ => self.err("expected a field number"),
        }
    }

    /// `map<K, V> name = N [...];`: a repeated field of a synthetic entry message, as
    /// protoc makes it; Java's message indexes do not count the entry.
    fn map_field(&mut self, message: &mut RawMessage) -> Result<(), String> {
        self.pos += 2;
        let key_name = self.ident()?;
        let key = match Scalar::from_name(&key_name) {
            Some(key) if key.is_map_key() => key,
            _ => return self.err(&format!("`{key_name}` cannot be a map key")),
        };
        self.expect_sym(b',')?;
        let value_name = self.full_ident()?;
        self.expect_sym(b'>')?;
        let name = self.ident()?;
        self.expect_sym(b'=')?;
        let number = self.number()?;
        let tags = self.field_options()?;
        self.expect_sym(b';')?;
        let entry_name = map_entry_name(&name);
        let value = match Scalar::from_name(&value_name) {
            Some(scalar) => RawType::Scalar(scalar),
            None => RawType::Named {
                name: value_name,
                hint: Hint::Unknown,
            },
        };
        message.nested.push(RawMessage {
            name: entry_name.clone(),
            fields: vec![
                RawField {
                    name: "key".into(),
                    number: 1,
                    repeated: false,
                    ty: RawType::Scalar(key),
                    tags: Vec::new(),
                },
                RawField {
                    name: "value".into(),
                    number: 2,
                    repeated: false,
                    ty: value,
                    tags: Vec::new(),
                },
            ],
            indexed: false,
            map_entry: true,
            ..RawMessage::default()
        });
        message.fields.push(RawField {
            name,
            number,
            repeated: true,
            // Looked up from inside `message`, so its own nested entry is found first.
            ty: RawType::Named {
                name: entry_name,
                hint: Hint::Message,
            },
            tags,
        });
        Ok(())
    }

    /// `[name = value, ...]`, if there: the Confluent tags among them.
    fn field_options(&mut self) -> Result<Vec<String>, String> {
        let mut tags = Vec::new();
        if !self.eat_sym(b'[') {
            return Ok(tags);
        }
        loop {
            let name = self.option_name()?;
            self.expect_sym(b'=')?;
            let value = self.option_value(0)?;
            match name.as_slice() {
                [meta, tags_name] if is_field_meta(meta) && tags_name == "tags" => {
                    collect_strings(&value, &mut tags)
                }
                [meta] if is_field_meta(meta) => {
                    if let OptionValue::Message(entries) = &value {
                        for (key, value) in entries {
                            if key == "tags" {
                                collect_strings(value, &mut tags);
                            }
                        }
                    }
                }
                _ => {}
            }
            if self.eat_sym(b']') {
                return Ok(tags);
            }
            self.expect_sym(b',')?;
        }
    }

    /// `packed`, `(confluent.field_meta).tags`: its parts, an extension's in parentheses.
    fn option_name(&mut self) -> Result<Vec<String>, String> {
        let mut parts = Vec::new();
        loop {
            if self.eat_sym(b'(') {
                let name = self.full_ident()?;
                self.expect_sym(b')')?;
                parts.push(format!("({})", name.trim_start_matches('.')));
            } else {
                parts.push(self.ident()?);
            }
            if !self.eat_sym(b'.') {
                return Ok(parts);
            }
        }
    }

    /// A constant, or a text-format message (`{ tags: ["PII"] }`).
    fn option_value(&mut self, depth: usize) -> Result<OptionValue, String> {
        if depth > MAX_NESTING {
            return self.err("option value nested too deeply");
        }
        match self.peek().clone() {
            Tok::Str(_) => Ok(OptionValue::Str(self.string()?)),
            Tok::Sym(b'-' | b'+') => {
                self.pos += 1;
                self.option_value(depth + 1)?;
                Ok(OptionValue::Other)
            }
            Tok::Ident(word) => {
                self.pos += 1;
                Ok(OptionValue::Ident(word))
            }
            Tok::Number(_) => {
                self.pos += 1;
                Ok(OptionValue::Other)
            }
            Tok::Sym(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                while !self.eat_sym(b']') {
                    items.push(self.option_value(depth + 1)?);
                    if !self.eat_sym(b',') && !self.is_sym_at(0, b']') {
                        return self.err("expected `,` or `]`");
                    }
                }
                Ok(OptionValue::List(items))
            }
            Tok::Sym(open @ (b'{' | b'<')) => {
                self.pos += 1;
                let close = if open == b'{' { b'}' } else { b'>' };
                let mut entries = Vec::new();
                while !self.eat_sym(close) {
                    let key = if self.eat_sym(b'[') {
                        // An extension or Any type URL: `[foo.bar]`, `[type.googleapis.com/X]`
                        while !self.eat_sym(b']') {
                            if self.bump() == Tok::Eof {
                                return self.err("unterminated `[`");
                            }
                        }
                        String::new()
                    } else {
                        self.ident()?
                    };
                    self.eat_sym(b':');
                    let value = self.option_value(depth + 1)?;
                    entries.push((key, value));
                    if !self.eat_sym(b',') {
                        self.eat_sym(b';');
                    }
                }
                Ok(OptionValue::Message(entries))
            }
            _ => self.err("expected an option value"),
        }
    }
}

fn is_field_meta(part: &str) -> bool {
    part == "(confluent.field_meta)"
}

fn collect_strings(value: &OptionValue, out: &mut Vec<String>) {
    match value {
        OptionValue::Str(text) => out.push(text.clone()),
        OptionValue::List(items) => items.iter().for_each(|item| collect_strings(item, out)),
        OptionValue::Message(_) | OptionValue::Ident(_) | OptionValue::Other => {}
    }
}

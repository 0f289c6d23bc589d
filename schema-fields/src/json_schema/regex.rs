//! The regular expressions of `patternProperties`, as far as a walker needs them.
//!
//! A member name matched by a pattern is described by the pattern's schema, and by
//! `additionalProperties` only if no pattern (and no property) matches it: to find every
//! selected value, the walker must know exactly which names a pattern matches. No regex
//! crate (policies are WebAssembly; few dependencies), so this supports the patterns
//! schemas use for map keys, exactly, and refuses the rest: a sequence of literal
//! characters, `.`, classes (`[a-z_]`, `[^/]`, `\d`, `\w`, `\s`) each with an optional
//! quantifier (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`), `^` first and `$` last. Groups,
//! alternation, backreferences and lookarounds are refused (an `Err` with the reason).
//!
//! Matching follows ECMA-262 (what JSON Schema specifies): unanchored patterns match
//! anywhere, `.` matches anything but a line terminator. It simulates the pattern as an
//! automaton, so a name costs its length times the pattern's length at most, whatever
//! the name.

/// The longest pattern, in single-character steps after expanding `{n,m}`.
const MAX_STEPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Regex {
    anchored_start: bool,
    anchored_end: bool,
    steps: Vec<Step>,
}

/// One character's worth of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    atom: Atom,
    /// May be skipped (`?`, `*`).
    optional: bool,
    /// May match again (`*`).
    repeats: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `.`
    Dot,
    Class {
        negated: bool,
        items: Vec<Item>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl Regex {
    pub(super) fn parse(pattern: &str) -> Result<Regex, String> {
        Parser {
            chars: pattern.chars().collect(),
            at: 0,
        }
        .regex()
    }

    pub(super) fn is_match(&self, name: &str) -> bool {
        let len = self.steps.len();
        // active[i]: the first i steps can have matched what was read so far.
        let mut active = vec![false; len + 1];
        let mut next = vec![false; len + 1];
        active[0] = true;
        self.close(&mut active);
        for c in name.chars() {
            if active[len] && !self.anchored_end {
                return true;
            }
            next.iter_mut().for_each(|n| *n = false);
            for (i, step) in self.steps.iter().enumerate() {
                if active[i] && step.atom.matches(c) {
                    next[if step.repeats { i } else { i + 1 }] = true;
                }
            }
            if !self.anchored_start {
                // A search: a match may start at any character.
                next[0] = true;
            }
            std::mem::swap(&mut active, &mut next);
            self.close(&mut active);
        }
        active[len]
    }

    /// Adds the positions reachable by skipping optional steps.
    fn close(&self, active: &mut [bool]) {
        for (i, step) in self.steps.iter().enumerate() {
            if active[i] && step.optional {
                active[i + 1] = true;
            }
        }
    }
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(want) => c == *want,
            Atom::Dot => !is_line_terminator(c),
            Atom::Class { negated, items } => items.iter().any(|item| item.matches(c)) != *negated,
        }
    }
}

impl Item {
    fn matches(self, c: char) -> bool {
        match self {
            Item::Range(low, high) => (low..=high).contains(&c),
            Item::Digit(negated) => c.is_ascii_digit() != negated,
            Item::Word(negated) => (c.is_ascii_alphanumeric() || c == '_') != negated,
            Item::Space(negated) => is_space(c) != negated,
        }
    }
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// ECMA-262's `\s`: white space and line terminators.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn regex(&mut self) -> Result<Regex, String> {
        let anchored_start = self.peek() == Some('^');
        if anchored_start {
            self.at += 1;
        }
        let mut steps = Vec::new();
        let mut anchored_end = false;
        while let Some(c) = self.peek() {
            self.at += 1;
            let atom = match c {
                '$' if self.at == self.chars.len() => {
                    anchored_end = true;
                    break;
                }
                '.' => Atom::Dot,
                '[' => self.class()?,
                '\\' => self.escape()?,
                '^' | '$' => return Err(format!("`{c}` in the middle is not supported")),
                '(' | ')' | '|' => return Err("groups and alternatives are not supported".into()),
                '*' | '+' | '?' | '{' => {
                    return Err(format!("`{c}` must follow something to repeat"))
                }
                ']' | '}' => return Err(format!("an unescaped `{c}` is not supported")),
                c => Atom::Char(c),
            };
            self.quantified(atom, &mut steps)?;
            if steps.len() > MAX_STEPS {
                return Err(format!("longer than {MAX_STEPS} characters"));
            }
        }
        Ok(Regex {
            anchored_start,
            anchored_end,
            steps,
        })
    }

    /// After an atom: its quantifier, if any, expanded into steps.
    fn quantified(&mut self, atom: Atom, steps: &mut Vec<Step>) -> Result<(), String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => self.braces()?,
            _ => {
                steps.push(Step {
                    atom,
                    optional: false,
                    repeats: false,
                });
                return Ok(());
            }
        };
        self.at += 1;
        // Laziness changes which match is found, never whether there is one.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
            return Err("a quantifier must follow something to repeat".into());
        }
        if min > MAX_STEPS || max.is_some_and(|max| max > MAX_STEPS) {
            return Err(format!("longer than {MAX_STEPS} characters"));
        }
        for _ in 0..min {
            steps.push(Step {
                atom: atom.clone(),
                optional: false,
                repeats: false,
            });
        }
        match max {
            None => steps.push(Step {
                atom,
                optional: true,
                repeats: true,
            }),
            Some(max) => {
                for _ in min..max {
                    steps.push(Step {
                        atom: atom.clone(),
                        optional: true,
                        repeats: false,
                    });
                }
            }
        }
        Ok(())
    }

    /// At `{` of `{n}`, `{n,}` or `{n,m}`: consumes up to its `}`.
    fn braces(&mut self) -> Result<(usize, Option<usize>), String> {
        let unsupported = || "`{` that is not a quantifier `{n}`, `{n,}` or `{n,m}`".to_string();
        self.at += 1;
        let min = self.number().ok_or_else(unsupported)?;
        let max = if self.peek() == Some(',') {
            self.at += 1;
            if self.peek() == Some('}') {
                None
            } else {
                Some(self.number().ok_or_else(unsupported)?)
            }
        } else {
            Some(min)
        };
        if self.peek() != Some('}') || max.is_some_and(|max| max < min) {
            return Err(unsupported());
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.at;
        let mut value: usize = 0;
        while let Some(digit) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value.checked_mul(10)?.checked_add(digit as usize)?;
            self.at += 1;
        }
        (self.at > start).then_some(value)
    }

    /// After `\` outside a class.
    fn escape(&mut self) -> Result<Atom, String> {
        Ok(match self.escaped()? {
            Item::Range(c, _) => Atom::Char(c),
            item => Atom::Class {
                negated: false,
                items: vec![item],
            },
        })
    }

    /// After `\`: a character (as a one-character range) or a class escape.
    fn escaped(&mut self) -> Result<Item, String> {
        let Some(c) = self.peek() else {
            return Err("a pattern cannot end with `\\`".into());
        };
        self.at += 1;
        let single = |c| Ok(Item::Range(c, c));
        match c {
            'd' => Ok(Item::Digit(false)),
            'D' => Ok(Item::Digit(true)),
            'w' => Ok(Item::Word(false)),
            'W' => Ok(Item::Word(true)),
            's' => Ok(Item::Space(false)),
            'S' => Ok(Item::Space(true)),
            't' => single('\t'),
            'n' => single('\n'),
            'r' => single('\r'),
            'f' => single('\u{c}'),
            'v' => single('\u{b}'),
            'u' => {
                let hex: String = self.chars.iter().skip(self.at).take(4).collect();
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("`\\u` must be followed by four hex digits".into());
                }
                self.at += 4;
                let unit = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                char::from_u32(unit)
                    .map(|c| Item::Range(c, c))
                    .ok_or_else(|| "surrogate escapes are not supported".to_string())
            }
            c if c.is_ascii_punctuation() => single(c),
            c => Err(format!("the escape `\\{c}` is not supported")),
        }
    }

    /// After `[`: through `]`.
    fn class(&mut self) -> Result<Atom, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut items = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("a class `[` without its `]`".into());
            };
            self.at += 1;
            let item = match c {
                ']' => break,
                '\\' => self.escaped()?,
                '[' => return Err("`[` inside a class is not supported".into()),
                c => Item::Range(c, c),
            };
            // A range `a-z`, unless `-` is last.
            if let Item::Range(low, _) = item {
                if self.peek() == Some('-')
                    && self.chars.get(self.at + 1).is_some_and(|&c| c != ']')
                {
                    self.at += 1;
                    let high = match self.peek() {
                        Some('\\') => {
                            self.at += 1;
                            match self.escaped()? {
                                Item::Range(high, _) => high,
                                _ => return Err("a range must end with a character".into()),
                            }
                        }
                        Some(high) => {
                            self.at += 1;
                            high
                        }
                        None => return Err("a class `[` without its `]`".into()),
                    };
                    if high < low {
                        return Err("a range out of order".into());
                    }
                    items.push(Item::Range(low, high));
                    continue;
                }
            }
            items.push(item);
        }
        Ok(Atom::Class { negated, items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Regex::parse(pattern).unwrap().is_match(name)
    }

    #[test]
    fn literal_patterns_search_unless_anchored() {
        assert!(matches("ssn", "ssn"));
        assert!(matches("ssn", "my_ssn_2"));
        assert!(!matches("ssn", "sn"));
        assert!(matches("^x-", "x-a"));
        assert!(!matches("^x-", "ax-"));
        assert!(matches("_id$", "user_id"));
        assert!(!matches("_id$", "user_id2"));
        assert!(matches("^a\\.b$", "a.b"));
        assert!(!matches("^a\\.b$", "axb"));
        assert!(matches("", "anything"));
        assert!(matches("^$", ""));
        assert!(!matches("^$", "a"));
    }

    #[test]
    fn classes_dots_and_quantifiers() {
        assert!(matches("^[a-z_]+$", "snake_case"));
        assert!(!matches("^[a-z_]+$", "Camel"));
        assert!(!matches("^[a-z_]+$", ""));
        assert!(matches("^[^/]*$", ""));
        assert!(!matches("^[^/]*$", "a/b"));
        assert!(matches("^\\d{3}-\\d{2}$", "123-45"));
        assert!(!matches("^\\d{3}-\\d{2}$", "123-456"));
        assert!(matches("^a{2,}$", "aaaa"));
        assert!(!matches("^a{2,}$", "a"));
        assert!(matches("^a{1,2}b?$", "aab"));
        assert!(!matches("^a{1,2}b?$", "aaab"));
        assert!(matches("^.*$", "x y"));
        assert!(!matches("^.*$", "x\ny"), "`.` stops at line terminators");
        assert!(matches("^[\\w-]+$", "a-b_c"));
        assert!(matches("^[+\\-]$", "-"));
        assert!(matches("^a-$", "a-"));
        assert!(matches("^[a-]$", "-"));
        assert!(matches("^\\u00e9+?$", "\u{e9}\u{e9}"));
        assert!(matches("^\\S+\\s\\S+$", "a\u{a0}b"));
    }

    #[test]
    fn the_rest_is_refused() {
        for pattern in [
            "(a)", "a|b", "a**", "*a", "{1}", "a{2,1}", "a{x}", "[a-", "\\b", "\\1", "a$b", "b^",
            "[z-a]", "a{1000}", "\\",
        ] {
            assert!(Regex::parse(pattern).is_err(), "{pattern}");
        }
    }

    #[test]
    fn any_pattern_parses_or_is_refused_without_panicking() {
        let alphabet: Vec<char> = "^$.*+?{},0123[]-\\dwsubntu()|aé".chars().collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let pattern: String = (0..next(10))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let name: String = (0..next(10))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            if let Ok(regex) = Regex::parse(&pattern) {
                regex.is_match(&name);
            }
        }
    }

    #[test]
    fn long_names_cost_their_length() {
        let regex = Regex::parse("^a*a*a*a*a*b$").unwrap();
        assert!(!regex.is_match(&"a".repeat(100_000)));
    }
}

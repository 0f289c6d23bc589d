//! Which values of a document the configured pointers select.
//!
//! One pass over the document in document order, carrying the pointers still on their
//! way down: visiting each value once gives document order and no overlaps for free.
//! Every member whose decoded name matches a token is followed, so duplicate members
//! are all selected, and a name written with escapes (`"\u0073sn"`) is the name it
//! decodes to. A value on a pointer's way that cannot hold what comes next is a wrong
//! shape, not a missing field: a string, number or boolean before the last token, or an
//! array where the next token is a name that is not an index.

use std::sync::Arc;

use super::json::{Document, Kind};
use super::pointer::{Pointer, Token};

/// The configured pointers, validated.
#[derive(Debug, Clone)]
pub struct Fields {
    pointers: Vec<Pointer>,
}

/// What [`Fields::select`] found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// The selected values (node indices) in document order, none inside another, each
    /// with the configured pointer that selected it and the pointer that locates it in
    /// this document (RFC 6901: member names decoded, then `~` as `~0` and `/` as `~1`;
    /// elements by index): what a bound field ciphertext is bound to.
    pub values: Vec<(usize, Arc<str>, String)>,
    /// The configured pointers that selected nothing, as configured.
    pub missing: Vec<Arc<str>>,
}

/// A value on a pointer's way that cannot hold the selected field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrongShape {
    pub pointer: Arc<str>,
    pub found: Kind,
    /// What the pointer's next token needs there.
    pub needs: &'static str,
}

impl WrongShape {
    /// The record's failure reason: the configured pointer and the kinds, never a name
    /// or a value of the record.
    pub fn reason(&self) -> String {
        format!(
            "a field selected by \"{}\" cannot be in this value: on the way to it is {} \
             where {} is needed (the record's shape is not the one policy.config.fields \
             expects)",
            self.pointer,
            self.found.article(),
            self.needs
        )
    }
}

impl Fields {
    /// Validates the configured pointers; an error names the entry to fix.
    pub fn parse(fields: &[String]) -> Result<Self, String> {
        if fields.is_empty() {
            return Err("policy.config.fields: list at least one JSON Pointer".into());
        }
        let pointers = fields
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Pointer::parse(text)
                    .map_err(|why| format!("policy.config.fields[{i}]: {why} (got {text:?})"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { pointers })
    }

    /// The values of `doc` that the pointers select.
    pub(crate) fn select(&self, doc: &Document) -> Result<Selection, WrongShape> {
        let mut walk = Walk {
            doc,
            pointers: &self.pointers,
            matched: vec![false; self.pointers.len()],
            values: Vec::new(),
            path: String::new(),
        };
        let all: Vec<usize> = (0..self.pointers.len()).collect();
        walk.visit(0, 0, &all, false)?;
        let missing = self
            .pointers
            .iter()
            .zip(&walk.matched)
            .filter(|(_, &matched)| !matched)
            .map(|(pointer, _)| pointer.text.clone())
            .collect();
        Ok(Selection {
            values: walk.values,
            missing,
        })
    }
}

struct Walk<'a> {
    doc: &'a Document<'a>,
    pointers: &'a [Pointer],
    matched: Vec<bool>,
    values: Vec<(usize, Arc<str>, String)>,
    /// The located pointer of the node being visited.
    path: String,
}

impl Walk<'_> {
    /// `active`: the pointers whose first `depth` tokens led to `node`. `covered`: an
    /// ancestor is selected already, so this subtree only tells which pointers match
    /// (and nothing in it can be left in clear, so its shape does not matter).
    fn visit(
        &mut self,
        node: usize,
        depth: usize,
        active: &[usize],
        covered: bool,
    ) -> Result<(), WrongShape> {
        let mut covered = covered;
        let mut onward = Vec::new();
        for &p in active {
            if self.pointers[p].tokens.len() == depth {
                self.matched[p] = true;
                if !covered {
                    self.values
                        .push((node, self.pointers[p].text.clone(), self.path.clone()));
                    covered = true;
                }
            } else {
                onward.push(p);
            }
        }
        if covered {
            onward.retain(|&p| !self.matched[p]);
        }
        if onward.is_empty() {
            return Ok(());
        }
        let kind = self.doc.nodes[node].kind;
        match kind {
            Kind::Object => {
                for member in self.doc.children(node) {
                    let next = self.step(&onward, depth, |token| match token {
                        Token::Any => true,
                        Token::Name(name, _) => self.doc.name_is(member, name),
                    });
                    if !next.is_empty() {
                        let length = self.path.len();
                        self.push_name(member);
                        let visited = self.visit(member, depth + 1, &next, covered);
                        self.path.truncate(length);
                        visited?;
                    }
                }
            }
            Kind::Array => {
                if !covered {
                    let named = onward
                        .iter()
                        .find(|&&p| matches!(self.pointers[p].tokens[depth], Token::Name(_, None)));
                    if let Some(&p) = named {
                        return Err(self.wrong_shape(p, kind, "an object"));
                    }
                }
                for (i, element) in self.doc.children(node).enumerate() {
                    let next = self.step(&onward, depth, |token| match token {
                        Token::Any => true,
                        Token::Name(_, index) => *index == Some(i),
                    });
                    if !next.is_empty() {
                        let length = self.path.len();
                        self.path.push('/');
                        self.path.push_str(&i.to_string());
                        let visited = self.visit(element, depth + 1, &next, covered);
                        self.path.truncate(length);
                        visited?;
                    }
                }
            }
            // Nothing there: the field is missing.
            Kind::Null => {}
            Kind::Bool | Kind::Number | Kind::String => {
                if !covered {
                    return Err(self.wrong_shape(onward[0], kind, "an object or an array"));
                }
            }
        }
        Ok(())
    }

    /// Appends member `member`'s decoded name to the located pointer, escaped.
    fn push_name(&mut self, member: usize) {
        let raw = self.doc.raw_name(member);
        // The scanner accepted the document, so its names are UTF-8 and decode.
        let name = if self.doc.nodes[member].name_escaped {
            super::json::decode(raw).unwrap_or_default()
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        self.path.push('/');
        for c in name.chars() {
            match c {
                '~' => self.path.push_str("~0"),
                '/' => self.path.push_str("~1"),
                c => self.path.push(c),
            }
        }
    }

    fn step(&self, onward: &[usize], depth: usize, accepts: impl Fn(&Token) -> bool) -> Vec<usize> {
        onward
            .iter()
            .copied()
            .filter(|&p| accepts(&self.pointers[p].tokens[depth]))
            .collect()
    }

    fn wrong_shape(&self, pointer: usize, found: Kind, needs: &'static str) -> WrongShape {
        WrongShape {
            pointer: self.pointers[pointer].text.clone(),
            found,
            needs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::json;
    use super::*;

    fn fields(pointers: &[&str]) -> Fields {
        Fields::parse(&pointers.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// The selected values' bytes, in order.
    fn selected(pointers: &[&str], text: &str) -> Vec<String> {
        let doc = json::parse(text.as_bytes()).unwrap();
        fields(pointers)
            .select(&doc)
            .unwrap()
            .values
            .iter()
            .map(|(node, _, _)| String::from_utf8(doc.bytes(*node).to_vec()).unwrap())
            .collect()
    }

    fn selection(pointers: &[&str], text: &str) -> Result<Selection, WrongShape> {
        fields(pointers).select(&json::parse(text.as_bytes()).unwrap())
    }

    fn missing(pointers: &[&str], text: &str) -> Vec<String> {
        selection(pointers, text)
            .unwrap()
            .missing
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    fn wrong_shape(pointers: &[&str], text: &str) -> WrongShape {
        selection(pointers, text).expect_err("a wrong shape")
    }

    #[test]
    fn plain_pointers_select_existing_fields() {
        let doc = r#"{"ssn": "1", "card": {"number": "4111", "exp": "12/29"}}"#;
        assert_eq!(
            selected(&["/ssn", "/card/number"], doc),
            [r#""1""#, r#""4111""#]
        );
    }

    #[test]
    fn wildcards_over_elements_members_and_the_root() {
        let doc = r#"{"orders": [{"iban": "A"}, {"no": 1}, {"iban": "C"}]}"#;
        assert_eq!(selected(&["/orders/*/iban"], doc), [r#""A""#, r#""C""#]);
        assert_eq!(
            selected(&["/*"], r#"{"b": 1, "a": {"x": 2}}"#),
            ["1", r#"{"x": 2}"#]
        );
        assert_eq!(selected(&["/*/x"], r#"{"b": {}, "a": {"x": 2}}"#), ["2"]);
        assert_eq!(
            selected(&["/*/*"], r#"[[1, 2], {"k": 3}]"#),
            ["1", "2", "3"]
        );
    }

    #[test]
    fn escaped_pointer_tokens_and_escaped_member_names_meet_decoded() {
        let doc = r#"{"a/b": 1, "m~n": 2, "~1": 3, "\u0073sn": 4, "x\/y": 5}"#;
        assert_eq!(
            selected(&["/a~1b", "/m~0n", "/~01", "/ssn", "/x~1y"], doc),
            ["1", "2", "3", "4", "5"]
        );
    }

    #[test]
    fn every_duplicate_member_is_selected() {
        let doc = r#"{"ssn": 1, "card": {"n": 2}, "ssn": 3, "s\u0073n": 4, "card": {"n": 5}}"#;
        assert_eq!(
            selected(&["/ssn", "/card/n"], doc),
            ["1", "2", "3", "4", "5"]
        );
    }

    #[test]
    fn the_root_pointer_selects_the_whole_document_and_absorbs_the_rest() {
        assert_eq!(selected(&[""], r#"{"a": 1}"#), [r#"{"a": 1}"#]);
        assert_eq!(selected(&["", "/a"], r#"{"a": 1}"#), [r#"{"a": 1}"#]);
        // A scalar root is selected whole, so no other pointer can miss anything in it.
        assert_eq!(
            selected(&["", "/ssn"], r#""333-33-3333""#),
            [r#""333-33-3333""#]
        );
    }

    #[test]
    fn ancestors_absorb_descendants() {
        let doc = r#"{"card": {"number": "4111", "exp": "12/29"}, "ssn": "1"}"#;
        let s = selection(&["/card/number", "/card", "/ssn", "/ssn", "/*/exp"], doc).unwrap();
        assert_eq!(s.values.len(), 2);
        assert_eq!(&*s.values[0].1, "/card", "the pointer that ends there");
        // Absorbed pointers did match: they are not missing.
        assert!(s.missing.is_empty());
    }

    #[test]
    fn null_absent_members_and_indices_past_the_end_are_missing() {
        assert_eq!(
            missing(
                &["/z", "/a/b", "/a/c", "/list/*", "/list/3", "/n/x"],
                r#"{"a": {"b": 1}, "list": [], "n": null}"#
            ),
            ["/z", "/a/c", "/list/*", "/list/3", "/n/x"]
        );
        assert_eq!(missing(&["/ssn"], "null"), ["/ssn"]);
        assert_eq!(missing(&["/*/iban"], r#"[null, {}]"#), ["/*/iban"]);
    }

    #[test]
    fn a_value_that_cannot_hold_the_field_is_a_wrong_shape() {
        for (doc, found) in [
            (r#""333-33-3333""#, Kind::String),
            ("333333333", Kind::Number),
            ("false", Kind::Bool),
            (r#"["333-33-3333"]"#, Kind::Array),
        ] {
            let wrong = wrong_shape(&["/ssn"], doc);
            assert_eq!(wrong.found, found, "{doc}");
            assert_eq!(&*wrong.pointer, "/ssn");
        }
        assert_eq!(wrong_shape(&["/a/*"], r#"{"a": 5}"#).found, Kind::Number);
        let wrong = wrong_shape(
            &["/orders/*/iban"],
            r#"{"orders": [{"iban": "A"}, "DE89"]}"#,
        );
        assert_eq!(
            (wrong.found, &*wrong.pointer),
            (Kind::String, "/orders/*/iban")
        );
        // Names that are not canonical indices do not address array elements.
        for pointer in ["/01", "/+1", "/-", "/x"] {
            assert_eq!(wrong_shape(&[pointer], "[10, 11]").found, Kind::Array);
        }
        // A numeric token still names an object member, and a canonical index an element.
        assert_eq!(selected(&["/01"], r#"{"01": 1}"#), ["1"]);
        assert_eq!(selected(&["/1"], "[10, 11]"), ["11"]);
    }

    #[test]
    fn the_reason_quotes_the_configured_pointer_and_nothing_of_the_record() {
        let reason = wrong_shape(
            &["/users/*/ssn"],
            r#"{"users": {"alice@example.com": "123"}}"#,
        )
        .reason();
        assert!(reason.contains("\"/users/*/ssn\""), "{reason}");
        assert!(
            !reason.contains("alice") && !reason.contains("123"),
            "{reason}"
        );
    }

    #[test]
    fn inside_a_selected_value_shapes_do_not_matter() {
        let s = selection(
            &["/card", "/card/number/x"],
            r#"{"card": {"number": "4111"}}"#,
        )
        .unwrap();
        assert_eq!(s.values.len(), 1);
        assert_eq!(s.missing, [Arc::from("/card/number/x")]);
    }

    #[test]
    fn values_come_in_document_order_not_config_order() {
        let doc = r#"{"z": 1, "y": [{"q": 2}, {"q": 3}], "x": 4}"#;
        assert_eq!(
            selected(&["/x", "/y/1/q", "/z", "/y/0/q"], doc),
            ["1", "2", "3", "4"]
        );
    }

    #[test]
    fn invalid_pointers_are_refused_naming_the_entry() {
        let parse =
            |p: &[&str]| Fields::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = parse(&["/ok", "ssn"]).unwrap_err();
        assert!(err.starts_with("policy.config.fields[1]: "), "{err}");
        let err = parse(&["/a~2b"]).unwrap_err();
        assert!(err.starts_with("policy.config.fields[0]: "), "{err}");
        assert!(parse(&[])
            .unwrap_err()
            .starts_with("policy.config.fields: "));
    }

    #[test]
    fn each_value_is_located_by_its_own_pointer() {
        let located = |pointers: &[&str], text: &str| -> Vec<String> {
            selection(pointers, text)
                .unwrap()
                .values
                .into_iter()
                .map(|(_, _, at)| at)
                .collect()
        };
        assert_eq!(
            located(
                &["/orders/*/iban", "/ssn"],
                r#"{"orders": [{"iban": 1}, {}, {"iban": 2}], "ssn": 3, "s\u0073n": 4}"#
            ),
            ["/orders/0/iban", "/orders/2/iban", "/ssn", "/ssn"]
        );
        assert_eq!(
            located(&["/*"], r#"{"a/b": 1, "m~n": 2, "": 3, "\u00e9": 4}"#),
            ["/a~1b", "/m~0n", "/", "/\u{e9}"]
        );
        assert_eq!(located(&[""], "[1]"), [""]);
    }
}

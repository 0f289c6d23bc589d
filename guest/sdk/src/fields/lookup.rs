//! One member of a record's JSON value, by JSON Pointer, as text: what a `{value:...}`
//! placeholder reads (a data subject's id, docs/forgetting.md).

use std::borrow::Cow;

use kafka_transit_names::ValueAt;

use super::json::{self, Kind};
use super::pointer::{Pointer, Token};

/// The text at `pointer` in `value`: a string's decoded text or a number as written.
/// Ambiguity is refused rather than resolved: a member name that occurs twice on the
/// way is not text, whichever one a reader would pick.
pub(crate) fn text_at(value: &[u8], pointer: &str) -> ValueAt<'static> {
    let Ok(pointer) = Pointer::parse(pointer) else {
        return ValueAt::NotText("the template's pointer is not a JSON Pointer");
    };
    let doc = match json::parse(value) {
        Ok(doc) => doc,
        Err(_) => return ValueAt::NotText("the value is not JSON"),
    };
    let mut at = 0;
    for token in &pointer.tokens {
        let Token::Name(name, index) = token else {
            return ValueAt::NotText("'*' selects many members, a subject is one");
        };
        let node = doc.nodes[at];
        let mut found = match node.kind {
            Kind::Object => doc.children(at).filter(|&child| doc.name_is(child, name)),
            Kind::Array => {
                let Some(child) = index.and_then(|i| doc.children(at).nth(i)) else {
                    return ValueAt::Missing;
                };
                at = child;
                continue;
            }
            Kind::Null => return ValueAt::Missing,
            _ => return ValueAt::NotText("a member is looked for inside a scalar"),
        };
        let Some(first) = found.next() else {
            return ValueAt::Missing;
        };
        if found.next().is_some() {
            return ValueAt::NotText("a member name on the way occurs twice");
        }
        at = first;
    }
    let node = doc.nodes[at];
    match node.kind {
        Kind::String => match doc.string(at) {
            Some(text) if !text.is_empty() => ValueAt::Text(Cow::Owned(text)),
            _ => ValueAt::Missing,
        },
        Kind::Number => ValueAt::Text(Cow::Owned(
            String::from_utf8_lossy(&value[node.start..node.end]).into_owned(),
        )),
        Kind::Null => ValueAt::Missing,
        kind => ValueAt::NotText(kind.article()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str, pointer: &str) -> ValueAt<'static> {
        text_at(value.as_bytes(), pointer)
    }

    #[test]
    fn strings_and_numbers_are_text_everything_else_says_why() {
        let doc = r#"{"customer": {"id": 4711, "email": "a\u0040b.example"},
                      "tags": ["x", "y"], "a/b": "slash", "none": null, "empty": ""}"#;
        let ok = |s: &str| ValueAt::Text(Cow::Owned(s.to_string()));
        assert_eq!(text(doc, "/customer/id"), ok("4711"));
        assert_eq!(text(doc, "/customer/email"), ok("a@b.example"));
        assert_eq!(text(doc, "/tags/1"), ok("y"));
        assert_eq!(text(doc, "/a~1b"), ok("slash"));
        for missing in ["/nope", "/tags/2", "/tags/01", "/none", "/none/x", "/empty"] {
            assert_eq!(text(doc, missing), ValueAt::Missing, "{missing}");
        }
        assert_eq!(text(doc, "/customer"), ValueAt::NotText("an object"));
        assert_eq!(text(doc, "/tags"), ValueAt::NotText("an array"));
        assert!(matches!(text(doc, "/tags/*"), ValueAt::NotText(_)));
        assert!(matches!(text(doc, "/customer/id/x"), ValueAt::NotText(_)));
        assert!(matches!(text("not json", "/a"), ValueAt::NotText(_)));
        assert!(matches!(
            text(r#"{"id": "a", "id": "b"}"#, "/id"),
            ValueAt::NotText(_)
        ));
    }
}

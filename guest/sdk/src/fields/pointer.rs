//! The configured pointers: RFC 6901 (`/card/number`; `~0` for `~` and `~1` for `/`
//! inside a name; `""` for the whole document) plus `*` for every element or member.

use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct Pointer {
    /// As configured: what failure reasons quote (never the names a record used).
    pub text: Arc<str>,
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Any,
    /// A member name, and the array index it also denotes if it is one in RFC 6901's
    /// canonical form (digits only, no leading zero).
    Name(String, Option<usize>),
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Pointer {
            text: text.into(),
            tokens: tokens(text)?,
        })
    }
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err("a JSON Pointer must be \"\" or start with \"/\"".into());
    };
    rest.split('/')
        .map(|raw| {
            if raw == "*" {
                return Ok(Token::Any);
            }
            let name = kafka_transit_schema_fields::unescape(raw)?;
            let canonical = name == "0"
                || (!name.is_empty()
                    && !name.starts_with('0')
                    && name.bytes().all(|b| b.is_ascii_digit()));
            let index = if canonical { name.parse().ok() } else { None };
            Ok(Token::Name(name, index))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unescaped_and_indices_canonical() {
        let name = |n: &str, i: Option<usize>| Token::Name(n.into(), i);
        assert_eq!(
            Pointer::parse("/a~1b/m~0n/~01/*/0/7/01/+1/-")
                .unwrap()
                .tokens,
            [
                name("a/b", None),
                name("m~n", None),
                name("~1", None),
                Token::Any,
                name("0", Some(0)),
                name("7", Some(7)),
                name("01", None),
                name("+1", None),
                name("-", None),
            ]
        );
        assert!(Pointer::parse("").unwrap().tokens.is_empty());
        assert_eq!(Pointer::parse("/").unwrap().tokens, [name("", None)]);
        assert!(Pointer::parse("ssn").is_err());
        assert!(Pointer::parse("/a~2b").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }
}

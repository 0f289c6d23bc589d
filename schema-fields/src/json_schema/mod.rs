//! JSON Schema records: a JSON document (what Confluent's JSON Schema serializer writes
//! after the header) walked under its schema (drafts 7, 2019-09 and 2020-12).
//!
//! Parsing a schema ([`load`]) reads the documents into a graph of subschemas with their
//! `$ref`s resolved (`#/$defs/X`, `#/definitions/X`, anchors, and the registry's
//! references by name or `$id`), then compiles ([`compile`]) the selection into a tree:
//! which members and elements lead to a selected field. A record is then walked in one
//! pass along that tree ([`scan`]), without looking at the schema again.
//!
//! What selects: a field whose subschema carries one of the selected `confluent:tags`,
//! or whose schema path (`/customer/ssn`; `*` for an element, or for a map value:
//! `additionalProperties`, `patternProperties`) is configured. A selected field must be
//! a string (`"type": "string"`, or `["string", "null"]`) with none of the keywords a
//! ciphertext may fail (`pattern`, `maxLength`, `format`, `enum`, `const`,
//! `contentEncoding`, `contentMediaType`), or an array of such strings (`items`) or a map
//! of them (an object with no `properties`, its `additionalProperties` such strings),
//! whose every element or value is then selected: anything else is a schema error when
//! the schema is parsed, and a record whose selected field holds anything else than the
//! schema says (or null) is refused, never passed in clear.
//!
//! Where the schema alone cannot tell which subschema describes a value, every candidate
//! counts (fail closed: more is selected, never less): every branch of `allOf`, `anyOf`,
//! `oneOf`, `if`/`then`/`else` and `dependentSchemas`, whichever a record matches; every
//! target a `$dynamicRef` or `$recursiveRef` could have; `contains` for every element;
//! `unevaluatedProperties` (`unevaluatedItems`) for every member (element) its own schema
//! does not describe, as if it were `additionalProperties` (`items`). `patternProperties`
//! are matched exactly, for the patterns [`regex`] supports; another pattern is a schema
//! error only where a selected field could be among the members.

mod compile;
mod load;
mod regex;
mod scan;

#[cfg(test)]
mod tests;

use crate::{Error, Field, SchemaText, Selection};

#[derive(Debug)]
pub struct Schema {
    tree: compile::Tree,
}

/// Where the selected values of one record are.
#[derive(Debug)]
pub struct Plan {
    /// The length of the record that was located.
    length: usize,
    spans: Vec<scan::Span>,
}

impl Schema {
    pub fn parse(text: &SchemaText, selection: &Selection) -> Result<Schema, Error> {
        let graph = load::load(text)?;
        let tree = compile::compile(&graph, selection)?;
        Ok(Schema { tree })
    }

    pub fn locate(&self, body: &[u8]) -> Result<(Vec<Field>, Plan), Error> {
        let (fields, spans) = scan::locate(&self.tree, body)?;
        let plan = Plan {
            length: body.len(),
            spans,
        };
        Ok((fields, plan))
    }
}

impl Plan {
    /// `body` with each selected value replaced by the JSON string of its new content.
    pub fn apply(&self, body: &[u8], contents: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        if body.len() != self.length {
            return Err(Error::Replace(
                "the record is not the one its fields were located in".into(),
            ));
        }
        if contents.len() != self.spans.len() {
            return Err(Error::Replace(format!(
                "{} replacements for {} fields",
                contents.len(),
                self.spans.len()
            )));
        }
        let grown: usize = contents.iter().map(|c| c.len() + 2).sum();
        let mut out = Vec::with_capacity(body.len() + grown);
        let mut copied = 0;
        for (&(start, end), content) in self.spans.iter().zip(contents) {
            let text = std::str::from_utf8(content)
                .map_err(|_| Error::Replace("a string field's new content is not UTF-8".into()))?;
            let Some(before) = body.get(copied..start) else {
                return Err(Error::Replace(
                    "the record is not the one its fields were located in".into(),
                ));
            };
            out.extend_from_slice(before);
            scan::push_string(&mut out, text);
            copied = end;
        }
        out.extend_from_slice(body.get(copied..).unwrap_or_default());
        Ok(out)
    }
}

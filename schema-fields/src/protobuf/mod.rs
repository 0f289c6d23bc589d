//! Protobuf records: the schema as `.proto` text ([`text`]) or as a base64
//! `FileDescriptorProto` ([`descriptor`]), its references resolved ([`model`]), the
//! selection worked out once ([`select`]), records walked and written again ([`walk`]).
//!
//! Which message a record is comes from Confluent's message indexes, counted as the
//! serializers count them: over a descriptor's `nested_type` (map entries included, as
//! the Python serializer does), over the messages `.proto` text declares (as the Java
//! serializer does over the registry's text: the map entries of a schema registered as a
//! descriptor are declared there, `map_entry` messages; a `map<K, V>` field's are not).
//!
//! Types under `google.protobuf` (the well-known types) and Confluent's own are opaque:
//! never walked, never selected inside, and needed in the references only if given.

mod codec;
mod descriptor;
mod model;
mod select;
mod text;
mod walk;

#[cfg(test)]
mod tests;

use model::{Model, MsgId, RawFile};
use select::Compiled;

use crate::{Error, Field, SchemaText, Selection};

pub use walk::Plan;

#[derive(Debug)]
pub struct Schema {
    /// The schema file's top-level messages, then by message id the nested messages
    /// message indexes count: how an index path finds its message.
    top: Vec<MsgId>,
    nested: Vec<Vec<MsgId>>,
    compiled: Compiled,
}

/// One file, whichever form the registry gave it in.
fn parse_file(text: &str) -> Result<RawFile, String> {
    let Some(bytes) = descriptor::looks_like_base64(text)
        .then(|| descriptor::base64_decode(text))
        .flatten()
    else {
        return text::parse(text);
    };
    // A file of comments alone can look like base64 too.
    descriptor::parse(&bytes).or_else(|e| text::parse(text).map_err(|_| e))
}

impl Schema {
    pub fn parse(text: &SchemaText, selection: &Selection) -> Result<Schema, Error> {
        let root =
            parse_file(&text.text).map_err(|e| Error::Schema(format!("protobuf schema: {e}")))?;
        let references = text
            .references
            .iter()
            .map(|r| {
                parse_file(&r.text)
                    .map_err(|e| Error::Schema(format!("protobuf reference `{}`: {e}", r.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let model = Model::build(root, references).map_err(Error::Schema)?;
        if model.top.is_empty() {
            return Err(Error::Schema("protobuf schema declares no message".into()));
        }
        let compiled = select::compile(&model, selection)?;
        Ok(Schema {
            top: model.top,
            nested: model.messages.into_iter().map(|m| m.indexed).collect(),
            compiled,
        })
    }

    /// The message `indexes` name (none is `[0]`, the first).
    fn message(&self, indexes: &[i64]) -> Result<MsgId, Error> {
        let indexes = if indexes.is_empty() {
            &[0][..]
        } else {
            indexes
        };
        let mut candidates = &self.top;
        let mut found = None;
        for &index in indexes {
            let id = usize::try_from(index)
                .ok()
                .and_then(|i| candidates.get(i).copied())
                .ok_or_else(|| {
                    Error::Decode("the message indexes name no message of the schema".into())
                })?;
            found = Some(id);
            candidates = &self.nested[id];
        }
        found.ok_or_else(|| Error::Decode("no message indexes".into()))
    }

    pub fn locate(&self, body: &[u8], message: &[i64]) -> Result<(Vec<Field>, Plan), Error> {
        let id = self.message(message)?;
        match self.compiled.entries[id] {
            Some(node) => walk::locate(&self.compiled, node, body),
            None => Ok((Vec::new(), Plan::unchanged(body.len()))),
        }
    }
}

//! Walking a record's wire format under its compiled schema ([`locate`]), and writing
//! it again with new contents ([`Plan::apply`]).
//!
//! The walk descends only into fields that lead to selected ones and skips every other
//! field by its length. It notes where each selected field's length prefix and content
//! sit, and where each enclosing length-delimited message (map entries included) sits:
//! a new content changes its own length prefix and those of all its enclosing messages,
//! and every other byte is copied as it came.

use super::codec::{
    self, Malformed, END_GROUP, FIXED32, FIXED64, LEN, MAX_DEPTH, START_GROUP, VARINT,
};
use super::model::Scalar;
use super::select::{Compiled, NodeField, NodeId, Shape, Target};
use crate::path::{push_index, push_token};
use crate::{Error, Field, FieldType};

/// A length-delimited span of the record to write anew: a selected field's content, or a
/// message holding such spans (its `subtree` next ones in the list, pre-order).
#[derive(Debug)]
struct Span {
    /// Where its length prefix starts.
    prefix: usize,
    start: usize,
    end: usize,
    kind: Kind,
    subtree: usize,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The field at this index of the located fields.
    Content(usize),
    Message,
}

/// How to write a located record again.
#[derive(Debug)]
pub struct Plan {
    body_len: usize,
    spans: Vec<Span>,
}

impl Plan {
    pub(super) fn unchanged(body_len: usize) -> Plan {
        Plan {
            body_len,
            spans: Vec::new(),
        }
    }
}

fn decode(e: Malformed) -> Error {
    Error::Decode(e.0.into())
}

pub(super) fn locate(
    compiled: &Compiled,
    root: NodeId,
    body: &[u8],
) -> Result<(Vec<Field>, Plan), Error> {
    let mut walker = Walker {
        compiled,
        body,
        fields: Vec::new(),
        spans: Vec::new(),
        path: String::new(),
        counts: Vec::new(),
    };
    walker.message(root, 0, body.len(), 0, None)?;
    Ok((
        walker.fields,
        Plan {
            body_len: body.len(),
            spans: walker.spans,
        },
    ))
}

struct Walker<'a> {
    compiled: &'a Compiled,
    body: &'a [u8],
    fields: Vec<Field>,
    spans: Vec<Span>,
    /// The located path of the field being walked.
    path: String,
    /// Occurrences so far of each field of each message being walked (a stack: one
    /// slot per node field), for the indexes of repeated fields.
    counts: Vec<usize>,
}

impl Walker<'_> {
    /// The fields of a message of `node` from `pos` to `end`, or in a group up to and
    /// with its end tag; returns where it stopped.
    fn message(
        &mut self,
        node: NodeId,
        pos: usize,
        end: usize,
        depth: usize,
        group: Option<u32>,
    ) -> Result<usize, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Decode("nested deeper than 64".into()));
        }
        let base = self.counts.len();
        let slots = self.compiled.nodes[node].fields.len();
        self.counts.resize(base + slots, 0);
        let result = self.fields_of(node, base, pos, end, depth, group);
        self.counts.truncate(base);
        result
    }

    fn fields_of(
        &mut self,
        node: NodeId,
        base: usize,
        mut pos: usize,
        end: usize,
        depth: usize,
        group: Option<u32>,
    ) -> Result<usize, Error> {
        let compiled = self.compiled;
        let body = self.body;
        let node = &compiled.nodes[node];
        while pos < end {
            let (number, wire) = codec::tag(body, &mut pos, end).map_err(decode)?;
            if wire == END_GROUP {
                return if group == Some(number) {
                    Ok(pos)
                } else {
                    Err(Error::Decode("end-group tag outside its group".into()))
                };
            }
            let Some(index) = node.find(number) else {
                codec::skip(body, &mut pos, end, number, wire, depth).map_err(decode)?;
                continue;
            };
            let field = &node.fields[index];
            let occurrence = self.counts[base + index];
            self.counts[base + index] += 1;
            let mark = self.path.len();
            push_token(&mut self.path, &field.name);
            let walked = match field.shape {
                Shape::Single => self.value(field, number, wire, &mut pos, end, depth),
                Shape::Repeated => {
                    push_index(&mut self.path, occurrence);
                    self.value(field, number, wire, &mut pos, end, depth)
                }
                Shape::Map(key) => self.map_entry(field, key, wire, &mut pos, end, depth),
            };
            self.path.truncate(mark);
            walked?;
        }
        match group {
            Some(_) => Err(Error::Decode("group without its end tag".into())),
            None => Ok(pos),
        }
    }

    /// One value of `field`, its tag just read: located, or walked into.
    fn value(
        &mut self,
        field: &NodeField,
        number: u32,
        wire: u8,
        pos: &mut usize,
        end: usize,
        depth: usize,
    ) -> Result<(), Error> {
        let body = self.body;
        match (field.target, wire) {
            (Target::Protect(field_type), LEN) => {
                let prefix = *pos;
                let len = codec::length(body, pos, end).map_err(decode)?;
                let start = *pos;
                *pos += len;
                let content = &body[start..*pos];
                if field_type == FieldType::String && std::str::from_utf8(content).is_err() {
                    return Err(Error::Decode(format!(
                        "string field `{}` is not UTF-8",
                        field.name
                    )));
                }
                self.spans.push(Span {
                    prefix,
                    start,
                    end: *pos,
                    kind: Kind::Content(self.fields.len()),
                    subtree: 0,
                });
                self.fields.push(Field {
                    path: self.path.clone(),
                    field_type,
                    content: content.to_vec(),
                });
                Ok(())
            }
            (Target::Descend(node), LEN) => {
                let prefix = *pos;
                let len = codec::length(body, pos, end).map_err(decode)?;
                let start = *pos;
                *pos += len;
                let at = self.open(prefix, start, *pos);
                self.message(node, start, *pos, depth + 1, None)?;
                self.close(at);
                Ok(())
            }
            // A group (proto2, or an edition's delimited encoding) has no length to
            // rewrite: what changes inside it belongs to the enclosing message.
            (Target::Descend(node), START_GROUP) => {
                *pos = self.message(node, *pos, end, depth + 1, Some(number))?;
                Ok(())
            }
            _ => Err(Error::Decode(format!(
                "field `{}` has wire type {wire}, which its schema type is not encoded as",
                field.name
            ))),
        }
    }

    /// One entry of map `field`: its key a path step, its value located or walked into.
    fn map_entry(
        &mut self,
        field: &NodeField,
        key: Scalar,
        wire: u8,
        pos: &mut usize,
        end: usize,
        depth: usize,
    ) -> Result<(), Error> {
        if wire != LEN {
            return Err(Error::Decode(format!(
                "map `{}` has an entry of wire type {wire}",
                field.name
            )));
        }
        if depth + 1 > MAX_DEPTH {
            return Err(Error::Decode("nested deeper than 64".into()));
        }
        let body = self.body;
        let prefix = *pos;
        let len = codec::length(body, pos, end).map_err(decode)?;
        let (start, stop) = (*pos, *pos + len);
        *pos = stop;
        let key = map_key(body, field, key, start, stop, depth + 1)?;
        push_token(&mut self.path, &key);
        let at = self.open(prefix, start, stop);
        let mut at_field = start;
        while at_field < stop {
            let (number, wire) = codec::tag(body, &mut at_field, stop).map_err(decode)?;
            if number == 2 {
                self.value(field, number, wire, &mut at_field, stop, depth + 1)?;
            } else {
                codec::skip(body, &mut at_field, stop, number, wire, depth + 1).map_err(decode)?;
            }
        }
        self.close(at);
        Ok(())
    }

    /// A message span, kept by [`Walker::close`] only if spans were noted inside it.
    fn open(&mut self, prefix: usize, start: usize, end: usize) -> usize {
        self.spans.push(Span {
            prefix,
            start,
            end,
            kind: Kind::Message,
            subtree: 0,
        });
        self.spans.len() - 1
    }

    fn close(&mut self, at: usize) {
        let subtree = self.spans.len() - at - 1;
        if subtree == 0 {
            self.spans.pop();
        } else {
            self.spans[at].subtree = subtree;
        }
    }
}

fn fixed<const N: usize>(body: &[u8], pos: &mut usize, end: usize) -> Result<[u8; N], Error> {
    let bytes = body
        .get(*pos..end)
        .and_then(|rest| rest.get(..N))
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| Error::Decode("truncated fixed-width field".into()))?;
    *pos += N;
    Ok(bytes)
}

/// A map entry's key as path text (the last one if repeated, the default if absent, as
/// protobuf reads it).
fn map_key(
    body: &[u8],
    field: &NodeField,
    key: Scalar,
    start: usize,
    stop: usize,
    depth: usize,
) -> Result<String, Error> {
    let mut text = None;
    let mut pos = start;
    while pos < stop {
        let (number, wire) = codec::tag(body, &mut pos, stop).map_err(decode)?;
        if number != 1 {
            codec::skip(body, &mut pos, stop, number, wire, depth).map_err(decode)?;
            continue;
        }
        let varint = |pos: &mut usize| codec::varint(body, pos, stop).map_err(decode);
        text = Some(match (key, wire) {
            (Scalar::String, LEN) => {
                let len = codec::length(body, &mut pos, stop).map_err(decode)?;
                let bytes = &body[pos..pos + len];
                pos += len;
                std::str::from_utf8(bytes)
                    .map_err(|_| {
                        Error::Decode(format!("a key of map `{}` is not UTF-8", field.name))
                    })?
                    .to_string()
            }
            (Scalar::Bool, VARINT) => (varint(&mut pos)? != 0).to_string(),
            // int32 and the like are sign-extended to 64 bits on the wire: the low bits
            // are the value.
            (Scalar::Int32, VARINT) => (varint(&mut pos)? as i32).to_string(),
            (Scalar::Int64, VARINT) => (varint(&mut pos)? as i64).to_string(),
            (Scalar::Uint32, VARINT) => (varint(&mut pos)? as u32).to_string(),
            (Scalar::Uint64, VARINT) => varint(&mut pos)?.to_string(),
            (Scalar::Sint32, VARINT) => {
                let n = varint(&mut pos)? as u32;
                ((n >> 1) as i32 ^ -((n & 1) as i32)).to_string()
            }
            (Scalar::Sint64, VARINT) => {
                let n = varint(&mut pos)?;
                ((n >> 1) as i64 ^ -((n & 1) as i64)).to_string()
            }
            (Scalar::Fixed32, FIXED32) => {
                u32::from_le_bytes(fixed(body, &mut pos, stop)?).to_string()
            }
            (Scalar::Sfixed32, FIXED32) => {
                i32::from_le_bytes(fixed(body, &mut pos, stop)?).to_string()
            }
            (Scalar::Fixed64, FIXED64) => {
                u64::from_le_bytes(fixed(body, &mut pos, stop)?).to_string()
            }
            (Scalar::Sfixed64, FIXED64) => {
                i64::from_le_bytes(fixed(body, &mut pos, stop)?).to_string()
            }
            _ => {
                return Err(Error::Decode(format!(
                    "a key of map `{}` has wire type {wire}, which its type is not encoded as",
                    field.name
                )))
            }
        });
    }
    Ok(text.unwrap_or_else(|| match key {
        Scalar::String => String::new(),
        Scalar::Bool => "false".into(),
        _ => "0".into(),
    }))
}

impl Plan {
    pub fn apply(&self, body: &[u8], contents: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        if body.len() != self.body_len {
            return Err(Error::Replace(
                "the record is not the one its fields were located in".into(),
            ));
        }
        let spans = &self.spans;
        // Each span's new length, its nested spans' first: in pre-order, they come after.
        let mut lens = vec![0usize; spans.len()];
        for i in (0..spans.len()).rev() {
            lens[i] = match spans[i].kind {
                Kind::Content(k) => contents
                    .get(k)
                    .ok_or_else(|| Error::Replace("fewer replacements than fields".into()))?
                    .len(),
                Kind::Message => {
                    let (old, new) = self.children(i + 1, i + 1 + spans[i].subtree, &lens);
                    spans[i].end - spans[i].start - old + new
                }
            };
        }
        let (old, new) = self.children(0, spans.len(), &lens);
        let mut out = Output {
            body,
            contents,
            lens: &lens,
            bytes: Vec::with_capacity(body.len() - old + new),
        };
        out.write(spans, 0, spans.len(), 0, body.len());
        Ok(out.bytes)
    }

    /// The bytes the direct children among `spans[first..stop]` take, length prefixes
    /// included: as they are, and as they will be.
    fn children(&self, first: usize, stop: usize, lens: &[usize]) -> (usize, usize) {
        let (mut old, mut new) = (0, 0);
        let mut i = first;
        while i < stop {
            let span = &self.spans[i];
            old += span.end - span.prefix;
            new += codec::varint_len(lens[i] as u64) + lens[i];
            i += 1 + span.subtree;
        }
        (old, new)
    }
}

struct Output<'a> {
    body: &'a [u8],
    contents: &'a [Vec<u8>],
    /// By span: its new length.
    lens: &'a [usize],
    bytes: Vec<u8>,
}

impl Output<'_> {
    /// `body[from..to]`, the spans among `spans[first..stop]` (direct children of what
    /// that range is) written anew.
    fn write(&mut self, spans: &[Span], first: usize, stop: usize, from: usize, to: usize) {
        let mut pos = from;
        let mut i = first;
        while i < stop {
            let span = &spans[i];
            self.bytes.extend_from_slice(&self.body[pos..span.prefix]);
            codec::put_varint(&mut self.bytes, self.lens[i] as u64);
            match span.kind {
                Kind::Content(k) => self.bytes.extend_from_slice(&self.contents[k]),
                Kind::Message => {
                    self.write(spans, i + 1, i + 1 + span.subtree, span.start, span.end)
                }
            }
            pos = span.end;
            i += 1 + span.subtree;
        }
        self.bytes.extend_from_slice(&self.body[pos..to]);
    }
}

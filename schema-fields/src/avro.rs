//! Avro records (the binary encoding, no container file).
//!
//! Parsing a schema has two stages. The schema's JSON (and its references') becomes a
//! graph of [`Type`]s in which every use of a named type is the index of its definition,
//! so that decoding never looks a name up. The graph is then compiled, with the
//! selection, into a tree of [`Walk`]s: what to do at each place of a record. Whatever
//! holds no selected field is a [`Walk::Skip`], decoded without building paths or
//! recording anything; Avro writes no lengths for records, so even those parts have to be
//! decoded to find where the next value starts.
//!
//! Selection depends on the path (a configured path may pick `/home/street` but not
//! `/work/street`, both of type `Address`), so the same type can compile into several
//! walks. Walks are shared whenever what lies below is decided the same way: by tags
//! alone once no configured path can match any more (which is what ends the expansion of
//! a recursive type), or else by the same configured paths still in play at the same
//! depth.
//!
//! Replacing a field changes its length and nothing else, except in an array or map
//! block written with a negative count: such a block carries its size in bytes, which
//! [`Plan::apply`] writes again.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::path::{push_index, push_token, Step};
use crate::{Error, Field, FieldType, SchemaText, Selection};

/// Records, arrays and maps nested deeper than this in a record are refused: the decoder
/// recurses, and nothing real nests so deep.
const MAX_DEPTH: usize = 64;
/// Types nested deeper than this in a schema are refused (the compiler recurses too).
const MAX_SCHEMA_DEPTH: usize = 256;
/// A record may hold at most this many array and map items in all, or as many as it has
/// bytes if that is more. Only items that take no bytes (nulls, empty records) can
/// exceed its length: a count of 2^62 of those decodes in no time here but would make
/// any reader that builds the array run out of memory.
const MIN_ITEM_BUDGET: usize = 1 << 16;

type TypeId = usize;
type WalkId = usize;

/// A parsed schema, ready to walk records.
#[derive(Debug)]
pub struct Schema {
    types: Vec<Type>,
    walks: Vec<Walk>,
    root: WalkId,
}

/// Where the located fields sit in the record they were found in, to write it again.
#[derive(Debug)]
pub struct Plan {
    body_len: usize,
    /// In the order of their bytes in the body.
    edits: Vec<Edit>,
    /// Whether any edit is a block size (otherwise no new size needs computing).
    blocks: bool,
}

#[derive(Debug)]
enum Edit {
    /// A located field's length and content, `body[start..end]`, replaced by
    /// `contents[index]`.
    Field {
        start: usize,
        end: usize,
        index: usize,
    },
    /// The byte size of a block with a negative count, `body[start..end]`, whose block
    /// holds the edits after this one up to `last` (exclusive).
    BlockSize {
        start: usize,
        end: usize,
        size: usize,
        last: usize,
    },
}

#[derive(Debug)]
enum Type {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// With its logical type, if it has one (`decimal`, `uuid`, ...): the primitive
    /// types' entries have none.
    Bytes(Option<Box<str>>),
    String(Option<Box<str>>),
    Record {
        name: String,
        fields: Vec<RecordField>,
    },
    Enum {
        name: String,
        symbols: usize,
    },
    Fixed {
        name: String,
        size: usize,
    },
    Array(TypeId),
    Map(TypeId),
    Union(Vec<TypeId>),
    /// A use of a named type, until every text is read: its full name, and the name as
    /// written if that has no namespace (also looked up in the null namespace, as Avro's
    /// Java implementation does).
    Name {
        full: String,
        bare: Option<String>,
    },
}

#[derive(Debug)]
struct RecordField {
    name: String,
    tags: Vec<String>,
    ty: TypeId,
}

#[derive(Debug)]
enum Walk {
    /// Holds no selected field: decoded only to get past it.
    Skip(TypeId),
    Record(Box<[FieldWalk]>),
    Array(WalkId),
    Map(WalkId),
    Union(Box<[WalkId]>),
    /// A selected field.
    Protect(Protect),
    /// Being compiled (a recursive type refers to it); never left in a parsed schema.
    Pending,
}

#[derive(Debug)]
enum FieldWalk {
    Skip(TypeId),
    /// The field's name as a located path token (`/name`, escaped), and its walk.
    Walk(Box<str>, WalkId),
}

#[derive(Debug)]
enum Protect {
    Plain(FieldType),
    /// A union of null and strings or bytes; `None` for a null branch (the field is then
    /// absent from the record).
    Union(Box<[Option<FieldType>]>),
}

impl Schema {
    pub fn parse(text: &SchemaText, selection: &Selection) -> Result<Schema, Error> {
        let mut parser = Parser::new();
        // References define named types only; their own top-level types go unused.
        for reference in &text.references {
            parser.text(&reference.text).map_err(|e| match e {
                Error::Schema(reason) => {
                    Error::Schema(format!("reference {}: {reason}", reference.name))
                }
                other => other,
            })?;
        }
        let root = parser.text(&text.text)?;
        let (types, root) = parser.resolve(root)?;
        let mut compiler = Compiler::new(&types, selection);
        let alive: Vec<bool> = compiler
            .patterns
            .iter()
            .map(|p| p.may_select_below(&[]))
            .collect();
        let root = compiler.walk(root, &alive)?;
        let walks = compiler.walks;
        Ok(Schema { types, walks, root })
    }

    pub fn locate(&self, body: &[u8]) -> Result<(Vec<Field>, Plan), Error> {
        let mut decoder = Decoder {
            schema: self,
            body,
            pos: 0,
            depth: 0,
            items_left: body.len().max(MIN_ITEM_BUDGET),
            path: String::new(),
            fields: Vec::new(),
            edits: Vec::new(),
            blocks: false,
        };
        decoder.walk(self.root)?;
        if decoder.pos != body.len() {
            return Err(decode(format!(
                "{} trailing bytes after the record",
                body.len() - decoder.pos
            )));
        }
        let plan = Plan {
            body_len: body.len(),
            edits: decoder.edits,
            blocks: decoder.blocks,
        };
        Ok((decoder.fields, plan))
    }
}

impl Plan {
    pub fn apply(&self, body: &[u8], contents: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        if body.len() != self.body_len {
            return Err(Error::Replace(
                "the record is not the one its fields were located in".into(),
            ));
        }
        let content = |index: usize| {
            contents
                .get(index)
                .ok_or_else(|| Error::Replace("fewer replacements than fields".into()))
        };
        // How much each edit grows its own bytes (negative: shrinks), and the new size of
        // each block. A block's size grows with every edit inside it, its inner blocks'
        // sizes included, which come after it: hence the pass from the end.
        let mut new_sizes = Vec::new();
        let growth = if self.blocks {
            let n = self.edits.len();
            // grown[i]: how much edits i.. grow the body.
            let mut grown = vec![0i64; n + 1];
            new_sizes = vec![0usize; n];
            for i in (0..n).rev() {
                let own = match self.edits[i] {
                    Edit::Field { start, end, index } => {
                        encoded_len(content(index)?.len()) as i64 - (end - start) as i64
                    }
                    Edit::BlockSize {
                        start,
                        end,
                        size,
                        last,
                    } => {
                        let size = usize::try_from(size as i64 + grown[i + 1] - grown[last])
                            .map_err(|_| Error::Replace("a block size went negative".into()))?;
                        new_sizes[i] = size;
                        long_len(size as i64) as i64 - (end - start) as i64
                    }
                };
                grown[i] = grown[i + 1] + own;
            }
            grown[0]
        } else {
            let mut growth = 0i64;
            for edit in &self.edits {
                if let Edit::Field { start, end, index } = *edit {
                    growth += encoded_len(content(index)?.len()) as i64 - (end - start) as i64;
                }
            }
            growth
        };
        let mut out = Vec::with_capacity(usize::try_from(body.len() as i64 + growth).unwrap_or(0));
        let mut pos = 0;
        for (i, edit) in self.edits.iter().enumerate() {
            let (start, end) = match *edit {
                Edit::Field { start, end, .. } | Edit::BlockSize { start, end, .. } => (start, end),
            };
            out.extend_from_slice(body.get(pos..start).ok_or_else(|| {
                Error::Replace("the record is not the one its fields were located in".into())
            })?);
            match *edit {
                Edit::Field { index, .. } => {
                    let content = content(index)?;
                    write_long(&mut out, content.len() as i64);
                    out.extend_from_slice(content);
                }
                Edit::BlockSize { .. } => write_long(&mut out, new_sizes[i] as i64),
            }
            pos = end;
        }
        out.extend_from_slice(body.get(pos..).unwrap_or_default());
        Ok(out)
    }
}

fn decode(reason: impl Into<String>) -> Error {
    Error::Decode(reason.into())
}

fn schema_error(reason: impl Into<String>) -> Error {
    Error::Schema(reason.into())
}

// ---------------------------------------------------------------------------------------
// Schema text to a graph of types

struct Parser {
    types: Vec<Type>,
    names: HashMap<String, TypeId>,
}

/// The primitive types, at these indices in every graph.
const PRIMITIVES: [(&str, TypeId); 8] = [
    ("null", 0),
    ("boolean", 1),
    ("int", 2),
    ("long", 3),
    ("float", 4),
    ("double", 5),
    ("bytes", 6),
    ("string", 7),
];

impl Parser {
    fn new() -> Parser {
        let types = vec![
            Type::Null,
            Type::Boolean,
            Type::Int,
            Type::Long,
            Type::Float,
            Type::Double,
            Type::Bytes(None),
            Type::String(None),
        ];
        Parser {
            types,
            names: HashMap::new(),
        }
    }

    fn text(&mut self, text: &str) -> Result<TypeId, Error> {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            // A schema that is only a type's name, unquoted: `string`, `com.acme.Customer`.
            Err(_) if is_bare_name(text.trim()) => Value::String(text.trim().to_string()),
            Err(e) => return Err(schema_error(format!("not JSON: {e}"))),
        };
        self.schema(&value, "")
    }

    fn add(&mut self, ty: Type) -> TypeId {
        self.types.push(ty);
        self.types.len() - 1
    }

    fn schema(&mut self, value: &Value, namespace: &str) -> Result<TypeId, Error> {
        match value {
            Value::String(name) => Ok(self.name(name, namespace)),
            Value::Array(branches) => {
                let branches = branches
                    .iter()
                    .map(|branch| self.schema(branch, namespace))
                    .collect::<Result<_, _>>()?;
                Ok(self.add(Type::Union(branches)))
            }
            Value::Object(object) => self.object(object, namespace),
            _ => Err(schema_error(
                "a type must be a name, an object or an array (a union)",
            )),
        }
    }

    /// A primitive type's name, or a use of a named type.
    fn name(&mut self, name: &str, namespace: &str) -> TypeId {
        if let Some(&(_, id)) = PRIMITIVES.iter().find(|(primitive, _)| *primitive == name) {
            return id;
        }
        let ty = if name.contains('.') || namespace.is_empty() {
            Type::Name {
                full: name.to_string(),
                bare: None,
            }
        } else {
            Type::Name {
                full: format!("{namespace}.{name}"),
                bare: Some(name.to_string()),
            }
        };
        self.add(ty)
    }

    fn object(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<TypeId, Error> {
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            // `{"type": {"type": "array", ...}}`: the inner object is the type.
            Some(inner) => return self.schema(inner, namespace),
            None => return Err(schema_error("a type object has no \"type\"")),
        };
        // The underlying type is what is encoded. A string's or bytes' logical type is
        // kept (a ciphertext does not fit it, so such a field cannot be protected); other
        // logical types, and any other attribute, are ignored.
        match kind {
            "string" | "bytes" if object.get("logicalType").is_some_and(Value::is_string) => {
                let logical: Box<str> = object
                    .get("logicalType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                Ok(self.add(if kind == "string" {
                    Type::String(Some(logical))
                } else {
                    Type::Bytes(Some(logical))
                }))
            }
            "record" | "error" => self.record(object, namespace),
            "enum" => {
                let (full, _) = full_name(object, namespace)?;
                let symbols = object
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or_else(|| schema_error(format!("enum {full} has no \"symbols\" array")))?
                    .len();
                let id = self.add(Type::Enum {
                    name: full.clone(),
                    symbols,
                });
                self.define(full, id)
            }
            "fixed" => {
                let (full, _) = full_name(object, namespace)?;
                let size = object
                    .get("size")
                    .and_then(Value::as_u64)
                    .and_then(|size| usize::try_from(size).ok())
                    .ok_or_else(|| schema_error(format!("fixed {full} has no valid \"size\"")))?;
                let id = self.add(Type::Fixed {
                    name: full.clone(),
                    size,
                });
                self.define(full, id)
            }
            "array" => {
                let items = object
                    .get("items")
                    .ok_or_else(|| schema_error("an array has no \"items\""))?;
                let items = self.schema(items, namespace)?;
                Ok(self.add(Type::Array(items)))
            }
            "map" => {
                let values = object
                    .get("values")
                    .ok_or_else(|| schema_error("a map has no \"values\""))?;
                let values = self.schema(values, namespace)?;
                Ok(self.add(Type::Map(values)))
            }
            name => Ok(self.name(name, namespace)),
        }
    }

    fn record(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<TypeId, Error> {
        let (full, namespace) = full_name(object, namespace)?;
        let id = self.add(Type::Record {
            name: full.clone(),
            fields: Vec::new(),
        });
        self.define(full.clone(), id)?;
        let Some(Value::Array(list)) = object.get("fields") else {
            return Err(schema_error(format!(
                "record {full} has no \"fields\" array"
            )));
        };
        let mut fields = Vec::with_capacity(list.len());
        for field in list {
            let bad = |what: &str| schema_error(format!("a field of record {full} {what}"));
            let field = field.as_object().ok_or_else(|| bad("is not an object"))?;
            let name = field
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("has no \"name\""))?;
            let ty = field.get("type").ok_or_else(|| bad("has no \"type\""))?;
            let ty = self.schema(ty, &namespace)?;
            let tags = match field.get("confluent:tags") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(tags)) => tags
                    .iter()
                    .map(|tag| tag.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("has a \"confluent:tags\" that is not all strings"))?,
                Some(_) => return Err(bad("has a \"confluent:tags\" that is not an array")),
            };
            fields.push(RecordField {
                name: name.to_string(),
                tags,
                ty,
            });
        }
        if let Type::Record { fields: slot, .. } = &mut self.types[id] {
            *slot = fields;
        }
        Ok(id)
    }

    fn define(&mut self, full: String, id: TypeId) -> Result<TypeId, Error> {
        if self.names.contains_key(&full) {
            return Err(schema_error(format!("type {full} is defined twice")));
        }
        self.names.insert(full, id);
        Ok(id)
    }

    /// Every use of a named type replaced by its definition (the texts may use a type
    /// before defining it: references come in no promised order).
    fn resolve(mut self, root: TypeId) -> Result<(Vec<Type>, TypeId), Error> {
        for id in 0..self.types.len() {
            let mut ty = std::mem::replace(&mut self.types[id], Type::Null);
            match &mut ty {
                Type::Array(child) | Type::Map(child) => *child = self.lookup(*child)?,
                Type::Union(branches) => {
                    for branch in branches {
                        *branch = self.lookup(*branch)?;
                    }
                }
                Type::Record { fields, .. } => {
                    for field in fields {
                        field.ty = self.lookup(field.ty)?;
                    }
                }
                _ => {}
            }
            self.types[id] = ty;
        }
        let root = self.lookup(root)?;
        Ok((self.types, root))
    }

    fn lookup(&self, id: TypeId) -> Result<TypeId, Error> {
        let Type::Name { full, bare } = &self.types[id] else {
            return Ok(id);
        };
        self.names
            .get(full)
            .or_else(|| bare.as_ref().and_then(|bare| self.names.get(bare)))
            .copied()
            .ok_or_else(|| schema_error(format!("type {full} is not defined")))
    }
}

/// A named type's full name and the namespace its fields' types are named in.
fn full_name(object: &Map<String, Value>, enclosing: &str) -> Result<(String, String), Error> {
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return Err(schema_error("a named type has no \"name\"")),
    };
    if let Some((namespace, _)) = name.rsplit_once('.') {
        return Ok((name.clone(), namespace.to_string()));
    }
    let namespace = match object.get("namespace") {
        Some(Value::String(namespace)) => namespace.as_str(),
        None | Some(Value::Null) => enclosing,
        Some(_) => {
            return Err(schema_error(format!(
                "type {name} has a non-string namespace"
            )))
        }
    };
    if namespace.is_empty() {
        Ok((name.clone(), String::new()))
    } else {
        Ok((format!("{namespace}.{name}"), namespace.to_string()))
    }
}

fn is_bare_name(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

// ---------------------------------------------------------------------------------------
// Types and a selection to walks

struct Compiler<'s> {
    types: &'s [Type],
    selection: &'s Selection,
    /// Each configured path alone, to tell which can still match below a place.
    patterns: Vec<Selection>,
    /// Whether a field carrying a selected tag can be reached from each type.
    tagged_below: Vec<bool>,
    walks: Vec<Walk>,
    /// The walk of a type at a depth with the configured paths that can still match
    /// there; depth 0 and none when no path can (only tags decide below).
    shared: HashMap<(TypeId, usize, Vec<bool>), WalkId>,
    skips: Vec<Option<WalkId>>,
    /// The schema path being compiled.
    path: Vec<Step<'s>>,
}

impl<'s> Compiler<'s> {
    fn new(types: &'s [Type], selection: &'s Selection) -> Compiler<'s> {
        Compiler {
            types,
            selection,
            patterns: selection
                .patterns()
                .iter()
                .map(|pattern| Selection::new(Vec::new(), vec![pattern.clone()]))
                .collect(),
            tagged_below: tagged_below(types, selection),
            walks: Vec::new(),
            shared: HashMap::new(),
            skips: vec![None; types.len()],
            path: Vec::new(),
        }
    }

    /// The walk of type `ty` at `self.path`, where the configured paths flagged in
    /// `alive` could still select something below.
    fn walk(&mut self, ty: TypeId, alive: &[bool]) -> Result<WalkId, Error> {
        let types = self.types;
        let tags_only = !alive.contains(&true);
        if tags_only && !self.tagged_below[ty] {
            return Ok(self.skip(ty));
        }
        let key = if tags_only {
            (ty, 0, Vec::new())
        } else {
            (ty, self.path.len(), alive.to_vec())
        };
        if let Some(&id) = self.shared.get(&key) {
            return Ok(id);
        }
        if self.path.len() > MAX_SCHEMA_DEPTH {
            return Err(schema_error(format!(
                "types nest deeper than {MAX_SCHEMA_DEPTH} levels"
            )));
        }
        let id = self.walks.len();
        self.walks.push(Walk::Pending);
        self.shared.insert(key, id);
        let walk = match &types[ty] {
            Type::Record { fields, .. } => {
                let mut walks = Vec::with_capacity(fields.len());
                for field in fields {
                    self.path.push(Step::Field(&field.name));
                    let child = self.child(field.ty, &field.tags, alive)?;
                    self.path.pop();
                    walks.push(match self.walks[child] {
                        Walk::Skip(ty) => FieldWalk::Skip(ty),
                        _ => {
                            let mut token = String::new();
                            push_token(&mut token, &field.name);
                            FieldWalk::Walk(token.into(), child)
                        }
                    });
                }
                if walks.iter().all(|w| matches!(w, FieldWalk::Skip(_))) {
                    Walk::Skip(ty)
                } else {
                    Walk::Record(walks.into())
                }
            }
            Type::Array(items) => {
                self.path.push(Step::Element);
                let child = self.child(*items, &[], alive)?;
                self.path.pop();
                self.unless_skip(child, ty, Walk::Array(child))
            }
            Type::Map(values) => {
                self.path.push(Step::MapValue);
                let child = self.child(*values, &[], alive)?;
                self.path.pop();
                self.unless_skip(child, ty, Walk::Map(child))
            }
            Type::Union(branches) => {
                let branches = branches
                    .iter()
                    .map(|&branch| self.walk(branch, alive))
                    .collect::<Result<Vec<_>, _>>()?;
                if branches
                    .iter()
                    .all(|&b| matches!(self.walks[b], Walk::Skip(_)))
                {
                    Walk::Skip(ty)
                } else {
                    Walk::Union(branches.into())
                }
            }
            _ => Walk::Skip(ty),
        };
        // A walk found to be a skip after all stays a (skip) walk of its own: a recursive
        // type's walks may already refer to it.
        self.walks[id] = walk;
        Ok(id)
    }

    /// The walk of a record field, an array item or a map value at `self.path`.
    fn child(&mut self, ty: TypeId, tags: &[String], alive: &[bool]) -> Result<WalkId, Error> {
        if self.selection.selects(&self.path, tags) {
            return self.selected(ty, tags);
        }
        let below: Vec<bool> = self
            .patterns
            .iter()
            .zip(alive)
            .map(|(pattern, &alive)| alive && pattern.may_select_below(&self.path))
            .collect();
        self.walk(ty, &below)
    }

    fn unless_skip(&self, child: WalkId, ty: TypeId, walk: Walk) -> Walk {
        match self.walks[child] {
            Walk::Skip(_) => Walk::Skip(ty),
            _ => walk,
        }
    }

    fn skip(&mut self, ty: TypeId) -> WalkId {
        if let Some(id) = self.skips[ty] {
            return id;
        }
        self.walks.push(Walk::Skip(ty));
        let id = self.walks.len() - 1;
        self.skips[ty] = Some(id);
        id
    }

    /// The walk of a selected field of type `ty` at `self.path`. A string or bytes, or a
    /// union of them with null, is protected; so is each element of an array and each
    /// value of a map of those (as a Protobuf tag on a `repeated string` field protects
    /// each element), and a union may hold such arrays and maps too. Anything else is
    /// refused, and so is a string or bytes with a logical type, which a ciphertext
    /// does not fit.
    fn selected(&mut self, ty: TypeId, tags: &[String]) -> Result<WalkId, Error> {
        let types = self.types;
        let walk = match self.leaf(ty) {
            Ok(Some(protect)) => Walk::Protect(protect),
            Err(logical) => return Err(self.logical_type(ty, tags, logical)),
            Ok(None) => match &types[ty] {
                Type::Array(_) | Type::Map(_) => match self.collection(ty) {
                    Ok(Some(walk)) => walk,
                    Ok(None) => return Err(self.not_protectable(ty, tags)),
                    Err(logical) => return Err(self.logical_type(ty, tags, logical)),
                },
                Type::Union(branches) => {
                    let mut walks = Vec::with_capacity(branches.len());
                    for &branch in branches {
                        let walk = match &types[branch] {
                            Type::Null => self.skip(branch),
                            _ => {
                                let walk = match self.leaf(branch) {
                                    Ok(Some(protect)) => Ok(Some(Walk::Protect(protect))),
                                    Ok(None) => self.collection(branch),
                                    Err(logical) => Err(logical),
                                };
                                let walk = walk.map_err(|l| self.logical_type(ty, tags, l))?;
                                let Some(walk) = walk else {
                                    return Err(self.not_protectable(ty, tags));
                                };
                                self.walks.push(walk);
                                self.walks.len() - 1
                            }
                        };
                        walks.push(walk);
                    }
                    if branches.iter().all(|&b| matches!(types[b], Type::Null)) {
                        return Err(self.not_protectable(ty, tags));
                    }
                    Walk::Union(walks.into())
                }
                _ => return Err(self.not_protectable(ty, tags)),
            },
        };
        self.walks.push(walk);
        Ok(self.walks.len() - 1)
    }

    /// How a string or bytes, or a union of them with null, is protected; `None` for
    /// another type, the logical type of a string or bytes that has one.
    fn leaf(&self, ty: TypeId) -> Result<Option<Protect>, &'s str> {
        let types = self.types;
        let kind = |ty: TypeId| match &types[ty] {
            Type::String(None) => Ok(Some(FieldType::String)),
            Type::Bytes(None) => Ok(Some(FieldType::Bytes)),
            Type::String(Some(logical)) | Type::Bytes(Some(logical)) => Err(&**logical),
            _ => Ok(None),
        };
        if let Some(kind) = kind(ty)? {
            return Ok(Some(Protect::Plain(kind)));
        }
        let Type::Union(branches) = &types[ty] else {
            return Ok(None);
        };
        let mut kinds = Vec::with_capacity(branches.len());
        for &branch in branches {
            kinds.push(match (&types[branch], kind(branch)?) {
                (Type::Null, _) => None,
                (_, Some(kind)) => Some(kind),
                (_, None) => return Ok(None),
            });
        }
        Ok(kinds
            .iter()
            .any(Option::is_some)
            .then(|| Protect::Union(kinds.into())))
    }

    /// The walk of a selected array or map of type `ty` whose elements or values are
    /// strings or bytes, each protected; `None` if `ty` is not one, the logical type of
    /// its elements or values if they have one.
    fn collection(&mut self, ty: TypeId) -> Result<Option<Walk>, &'s str> {
        let (items, array) = match self.types[ty] {
            Type::Array(items) => (items, true),
            Type::Map(values) => (values, false),
            _ => return Ok(None),
        };
        match self.leaf(items) {
            Ok(Some(protect)) => {
                self.walks.push(Walk::Protect(protect));
                let item = self.walks.len() - 1;
                Ok(Some(if array {
                    Walk::Array(item)
                } else {
                    Walk::Map(item)
                }))
            }
            Ok(None) => Ok(None),
            Err(logical) => Err(logical),
        }
    }

    /// Why the field at `self.path` is selected: `is tagged PII`, `is selected by the
    /// path /x`.
    fn why(&self, tags: &[String]) -> String {
        match tags.iter().find(|tag| self.selection.tags().contains(tag)) {
            Some(tag) => format!("is tagged {tag}"),
            None => {
                let pattern = self
                    .patterns
                    .iter()
                    .position(|p| p.selects::<&str>(&self.path, &[]))
                    .and_then(|i| self.selection.patterns().get(i))
                    .map_or("", |p| p.text());
                format!("is selected by the path {pattern}")
            }
        }
    }

    fn not_protectable(&self, ty: TypeId, tags: &[String]) -> Error {
        schema_error(format!(
            "field {} {} but is {}; only string and bytes fields, and arrays and maps of \
             them, can be protected",
            schema_path(&self.path),
            self.why(tags),
            describe(self.types, ty)
        ))
    }

    /// A selected field of type `ty` is (or holds) a string or bytes of logical type
    /// `logical`: a ciphertext is not one, and a reader that converts logical types
    /// (into a UUID, a decimal number) would fail on it, or read another value.
    fn logical_type(&self, ty: TypeId, tags: &[String], logical: &str) -> Error {
        let what_to_remove = if tags.iter().any(|tag| self.selection.tags().contains(tag)) {
            "the tag"
        } else {
            "the path"
        };
        schema_error(format!(
            "field {} {} but is {}: a ciphertext is not a valid {logical}, so consumers would \
             fail to read the record; remove {what_to_remove} or the logical type",
            schema_path(&self.path),
            self.why(tags),
            describe(self.types, ty),
        ))
    }
}

/// For each type, whether a field carrying one of the selection's tags can be reached
/// from it (its own fields included).
fn tagged_below(types: &[Type], selection: &Selection) -> Vec<bool> {
    let mut parents = vec![Vec::new(); types.len()];
    let mut tagged = vec![false; types.len()];
    let mut work = Vec::new();
    for (id, ty) in types.iter().enumerate() {
        let mut child = |c: TypeId| parents[c].push(id);
        match ty {
            Type::Array(c) | Type::Map(c) => child(*c),
            Type::Union(branches) => branches.iter().for_each(|&b| child(b)),
            Type::Record { fields, .. } => {
                fields.iter().for_each(|f| child(f.ty));
                let selected =
                    |f: &RecordField| f.tags.iter().any(|t| selection.tags().contains(t));
                if fields.iter().any(selected) {
                    tagged[id] = true;
                    work.push(id);
                }
            }
            _ => {}
        }
    }
    while let Some(id) = work.pop() {
        for &parent in &parents[id] {
            if !tagged[parent] {
                tagged[parent] = true;
                work.push(parent);
            }
        }
    }
    tagged
}

/// A schema path as a configured path would name it (`*` for an item or a value).
fn schema_path(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(name) => push_token(&mut text, name),
            Step::Element | Step::MapValue => text.push_str("/*"),
        }
    }
    text
}

fn describe(types: &[Type], ty: TypeId) -> String {
    match &types[ty] {
        Type::Union(branches) => {
            let branches: Vec<String> = branches.iter().map(|&b| describe(types, b)).collect();
            format!("a union of {}", branches.join(", "))
        }
        Type::Record { name, .. } => format!("record {name}"),
        Type::Enum { name, .. } => format!("enum {name}"),
        Type::Fixed { name, .. } => format!("fixed {name}"),
        Type::Array(items) => format!("an array of {}", describe(types, *items)),
        Type::Map(values) => format!("a map of {}", describe(types, *values)),
        Type::Name { full, .. } => full.clone(),
        Type::Null => "null".into(),
        Type::Boolean => "boolean".into(),
        Type::Int => "int".into(),
        Type::Long => "long".into(),
        Type::Float => "float".into(),
        Type::Double => "double".into(),
        Type::Bytes(None) => "bytes".into(),
        Type::String(None) => "string".into(),
        Type::Bytes(Some(logical)) => format!("bytes (logical type {logical})"),
        Type::String(Some(logical)) => format!("string (logical type {logical})"),
    }
}

// ---------------------------------------------------------------------------------------
// Records

struct Decoder<'a> {
    schema: &'a Schema,
    body: &'a [u8],
    pos: usize,
    depth: usize,
    items_left: usize,
    /// The located path of the place being decoded (only along walks, not skips).
    path: String,
    fields: Vec<Field>,
    edits: Vec<Edit>,
    blocks: bool,
}

impl<'a> Decoder<'a> {
    fn walk(&mut self, id: WalkId) -> Result<(), Error> {
        let schema = self.schema;
        match &schema.walks[id] {
            Walk::Skip(ty) => self.skip(*ty),
            Walk::Record(fields) => {
                self.enter()?;
                for field in fields.iter() {
                    match field {
                        FieldWalk::Skip(ty) => self.skip(*ty)?,
                        FieldWalk::Walk(token, walk) => {
                            let len = self.path.len();
                            self.path.push_str(token);
                            self.walk(*walk)?;
                            self.path.truncate(len);
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Walk::Array(item) => self.blocks(true, |d, index| {
                let len = d.path.len();
                push_index(&mut d.path, index);
                d.walk(*item)?;
                d.path.truncate(len);
                Ok(())
            }),
            Walk::Map(value) => self.blocks(true, |d, _| {
                let key = d.string()?;
                let len = d.path.len();
                push_token(&mut d.path, key);
                d.walk(*value)?;
                d.path.truncate(len);
                Ok(())
            }),
            Walk::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.walk(branches[branch])
            }
            Walk::Protect(Protect::Plain(kind)) => self.protect(*kind),
            Walk::Protect(Protect::Union(kinds)) => match kinds[self.branch(kinds.len())?] {
                Some(kind) => self.protect(kind),
                None => Ok(()),
            },
            Walk::Pending => Err(schema_error("a walk was left unfinished")),
        }
    }

    fn skip(&mut self, ty: TypeId) -> Result<(), Error> {
        let schema = self.schema;
        match &schema.types[ty] {
            Type::Null => {}
            Type::Boolean => {
                if self.take(1)?[0] > 1 {
                    return Err(decode("a boolean is neither 0 nor 1"));
                }
            }
            Type::Int => {
                self.int()?;
            }
            Type::Long => {
                self.long()?;
            }
            Type::Float => {
                self.take(4)?;
            }
            Type::Double => {
                self.take(8)?;
            }
            Type::Bytes(_) => {
                let len = self.length()?;
                self.take(len)?;
            }
            Type::String(_) => {
                self.string()?;
            }
            Type::Record { fields, .. } => {
                self.enter()?;
                for field in fields {
                    self.skip(field.ty)?;
                }
                self.depth -= 1;
            }
            Type::Enum { symbols, .. } => {
                let index = self.int()?;
                if !usize::try_from(index).is_ok_and(|index| index < *symbols) {
                    return Err(decode("an enum symbol index out of range"));
                }
            }
            Type::Fixed { size, .. } => {
                self.take(*size)?;
            }
            Type::Array(items) => self.blocks(false, |d, _| d.skip(*items))?,
            Type::Map(values) => self.blocks(false, |d, _| {
                d.string()?;
                d.skip(*values)
            })?,
            Type::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.skip(branches[branch])?;
            }
            Type::Name { .. } => return Err(schema_error("a type name was left unresolved")),
        }
        Ok(())
    }

    /// An array's or a map's blocks, `item` called for each item with its index. With
    /// `track`, a negative-count block's size is recorded when the block holds located
    /// fields, to be written again.
    fn blocks(
        &mut self,
        track: bool,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.enter()?;
        let mut index = 0;
        loop {
            let count = self.long()?;
            if count == 0 {
                break;
            }
            let mut sized = None;
            if count < 0 {
                let start = self.pos;
                let size = self.length()?;
                sized = Some((start, size));
            }
            let count = usize::try_from(count.unsigned_abs())
                .ok()
                .filter(|&count| count <= self.items_left)
                .ok_or_else(|| {
                    decode(format!(
                        "more than {} array and map items",
                        self.body.len().max(MIN_ITEM_BUDGET)
                    ))
                })?;
            self.items_left -= count;
            let mut edit = None;
            if let (true, Some((start, size))) = (track, sized) {
                self.edits.push(Edit::BlockSize {
                    start,
                    end: self.pos,
                    size,
                    last: 0,
                });
                edit = Some(self.edits.len() - 1);
            }
            let items_start = self.pos;
            for _ in 0..count {
                item(self, index)?;
                index += 1;
            }
            if let Some((_, size)) = sized {
                if self.pos - items_start != size {
                    return Err(decode(
                        "an array or map block's byte size is not the size of its items",
                    ));
                }
            }
            if let Some(edit) = edit {
                let end = self.edits.len();
                if end == edit + 1 {
                    self.edits.pop();
                } else if let Edit::BlockSize { last, .. } = &mut self.edits[edit] {
                    *last = end;
                    self.blocks = true;
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn protect(&mut self, kind: FieldType) -> Result<(), Error> {
        let start = self.pos;
        let len = self.length()?;
        let content = self.take(len)?;
        if kind == FieldType::String && std::str::from_utf8(content).is_err() {
            return Err(decode("a string is not UTF-8"));
        }
        self.edits.push(Edit::Field {
            start,
            end: self.pos,
            index: self.fields.len(),
        });
        self.fields.push(Field {
            path: self.path.clone(),
            field_type: kind,
            content: content.to_vec(),
        });
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(decode(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let body = self.body;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| decode("truncated"))?;
        let bytes = &body[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn long(&mut self) -> Result<i64, Error> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            // The tenth byte holds the 64th bit only.
            if shift == 63 && byte > 1 {
                return Err(decode("a varint overflows a long"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(decode("a varint overflows a long"))
    }

    fn int(&mut self) -> Result<i32, Error> {
        i32::try_from(self.long()?).map_err(|_| decode("an int out of range"))
    }

    /// A bytes' or string's length, checked against what is left.
    fn length(&mut self) -> Result<usize, Error> {
        let len = self.long()?;
        if len < 0 {
            return Err(decode("a negative length"));
        }
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.body.len() - self.pos)
            .ok_or_else(|| decode("a length beyond the end of the record"))
    }

    fn string(&mut self) -> Result<&'a str, Error> {
        let len = self.length()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| decode("a string is not UTF-8"))
    }

    fn branch(&mut self, branches: usize) -> Result<usize, Error> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|&index| index < branches)
            .ok_or_else(|| decode("a union branch index out of range"))
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut value = zigzag(n);
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn long_len(n: i64) -> usize {
    let bits = 64 - zigzag(n).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// A bytes or string value's encoded length: its length's varint, then its bytes.
fn encoded_len(len: usize) -> usize {
    long_len(len as i64) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pattern, Reference, SchemaType};

    /// Avro's binary encoding, by hand.
    #[derive(Default)]
    struct Enc(Vec<u8>);

    fn enc() -> Enc {
        Enc::default()
    }

    impl Enc {
        fn long(mut self, n: i64) -> Enc {
            write_long(&mut self.0, n);
            self
        }
        fn raw(mut self, bytes: &[u8]) -> Enc {
            self.0.extend_from_slice(bytes);
            self
        }
        fn bytes(self, bytes: &[u8]) -> Enc {
            self.long(bytes.len() as i64).raw(bytes)
        }
        fn str(self, text: &str) -> Enc {
            self.bytes(text.as_bytes())
        }
    }

    fn text(schema: &str) -> SchemaText {
        SchemaText {
            schema_type: SchemaType::Avro,
            text: schema.to_string(),
            references: Vec::new(),
        }
    }

    fn selection(tags: &[&str], patterns: &[&str]) -> Selection {
        Selection::new(
            tags.iter().map(|t| t.to_string()).collect(),
            patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
        )
    }

    fn parse(schema: &str, tags: &[&str], patterns: &[&str]) -> Schema {
        Schema::parse(&text(schema), &selection(tags, patterns)).unwrap()
    }

    fn schema_error(schema: &str, tags: &[&str], patterns: &[&str]) -> String {
        match Schema::parse(&text(schema), &selection(tags, patterns)) {
            Err(Error::Schema(reason)) => reason,
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    fn decode_error(schema: &Schema, body: &[u8]) -> String {
        match schema.locate(body) {
            Err(Error::Decode(reason)) => reason,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    /// The located fields as (path, content).
    fn located(schema: &Schema, body: &[u8]) -> Vec<(String, Vec<u8>)> {
        let (fields, _) = schema.locate(body).unwrap();
        fields.into_iter().map(|f| (f.path, f.content)).collect()
    }

    fn pairs(expected: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        expected
            .iter()
            .map(|(path, content)| (path.to_string(), content.to_vec()))
            .collect()
    }

    /// Replaces every located field, checks the new record locates the new contents at
    /// the same paths, and returns it.
    fn replace(schema: &Schema, body: &[u8], contents: &[&[u8]]) -> Vec<u8> {
        let (fields, plan) = schema.locate(body).unwrap();
        let contents: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
        let out = plan.apply(body, &contents).unwrap();
        let again = located(schema, &out);
        let expected: Vec<(String, Vec<u8>)> =
            fields.into_iter().map(|f| f.path).zip(contents).collect();
        assert_eq!(again, expected);
        out
    }

    const CUSTOMER: &str = r#"{"type": "record", "name": "Customer", "namespace": "com.acme", "fields": [
        {"name": "name", "type": "string", "confluent:tags": ["PII"]},
        {"name": "age", "type": "int"},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "street", "type": "string", "confluent:tags": ["PII"]},
            {"name": "zip", "type": "int"}]}},
        {"name": "note", "type": "string"}]}"#;

    #[test]
    fn nested_records() {
        let schema = parse(CUSTOMER, &["PII"], &[]);
        let record =
            |name: &str, street: &str| enc().str(name).long(42).str(street).long(12345).str("hi").0;
        let body = record("Zoë", "1 Main St");
        assert_eq!(
            located(&schema, &body),
            pairs(&[
                ("/name", "Zoë".as_bytes()),
                ("/address/street", b"1 Main St")
            ])
        );
        let (fields, _) = schema.locate(&body).unwrap();
        assert!(fields.iter().all(|f| f.field_type == FieldType::String));
        let out = replace(&schema, &body, &[b"vault:v1:abc", b""]);
        assert_eq!(out, record("vault:v1:abc", ""));
        // Another tag selects nothing; the record is still decoded in full.
        let none = parse(CUSTOMER, &["PHI"], &[]);
        assert_eq!(located(&none, &body), []);
        assert!(matches!(
            none.locate(&body[..body.len() - 1]),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn arrays_of_records() {
        let schema = parse(
            r#"{"type": "record", "name": "Contact", "fields": [
                {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone", "fields": [
                    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["HOME", "WORK"]}},
                    {"name": "number", "type": "string", "confluent:tags": ["PII"]}]}}},
                {"name": "emails", "type": {"type": "array", "items": "string"}}]}"#,
            &["PII"],
            &["/emails/*"],
        );
        // Two blocks: indexes run on across them.
        let body = enc()
            .long(1)
            .long(0)
            .str("555-1234")
            .long(1)
            .long(1)
            .str("555-9876")
            .long(0)
            .long(2)
            .str("a@example.com")
            .str("b@example.com")
            .long(0)
            .0;
        assert_eq!(
            located(&schema, &body),
            pairs(&[
                ("/phones/0/number", b"555-1234"),
                ("/phones/1/number", b"555-9876"),
                ("/emails/0", b"a@example.com"),
                ("/emails/1", b"b@example.com"),
            ])
        );
        replace(&schema, &body, &[b"1", b"2", b"3", b"4"]);
        let empty = enc().long(0).long(0).0;
        assert_eq!(located(&schema, &empty), []);
        assert!(
            decode_error(&schema, &enc().long(1).long(2).str("x").long(0).long(0).0)
                .contains("enum")
        );
    }

    #[test]
    fn maps() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "attributes", "type": {"type": "map", "values": "string"}},
                {"name": "addresses", "type": {"type": "map", "values": {"type": "record", "name": "Address",
                    "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "string"}]}}}]}"#,
            &[],
            &["/attributes/*", "/addresses/*/street"],
        );
        let body = enc()
            .long(2)
            .str("plain")
            .str("v1")
            .str("a/b~c")
            .str("v2")
            .long(0)
            .long(1)
            .str("home")
            .str("1 Main St")
            .str("12345")
            .long(0)
            .0;
        assert_eq!(
            located(&schema, &body),
            pairs(&[
                ("/attributes/plain", b"v1"),
                ("/attributes/a~1b~0c", b"v2"),
                ("/addresses/home/street", b"1 Main St"),
            ])
        );
        replace(&schema, &body, &[b"x", b"y", b"z"]);
        let bad_key = enc().long(1).bytes(b"\xff").str("v").long(0).long(0).0;
        assert!(decode_error(&schema, &bad_key).contains("UTF-8"));
    }

    #[test]
    fn nullable_unions() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "ssn", "type": ["null", "string"], "confluent:tags": ["PII"]},
                {"name": "tax", "type": ["string", "null"], "confluent:tags": ["PII"]},
                {"name": "blob", "type": ["null", "string", "bytes"], "confluent:tags": ["PII"]}]}"#,
            &["PII"],
            &[],
        );
        let absent = enc().long(0).long(1).long(0).0;
        assert_eq!(located(&schema, &absent), []);
        let present = enc()
            .long(1)
            .str("123")
            .long(0)
            .str("456")
            .long(2)
            .bytes(b"\0\xff")
            .0;
        assert_eq!(
            located(&schema, &present),
            pairs(&[("/ssn", b"123"), ("/tax", b"456"), ("/blob", b"\0\xff")])
        );
        let (fields, _) = schema.locate(&present).unwrap();
        assert_eq!(fields[2].field_type, FieldType::Bytes);
        let out = replace(&schema, &present, &[b"vault:v1:a", b"vault:v1:b", b"c"]);
        assert_eq!(
            out,
            enc()
                .long(1)
                .str("vault:v1:a")
                .long(0)
                .str("vault:v1:b")
                .long(2)
                .bytes(b"c")
                .0
        );
        for index in [3, -1, 1 << 40] {
            let bad = enc().long(index).long(1).long(0).0;
            assert!(decode_error(&schema, &bad).contains("union branch index"));
        }
    }

    const LIST: &str = r#"{"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "string", "confluent:tags": ["PII"]},
        {"name": "next", "type": ["null", "Node"]}]}"#;

    /// A linked list of `values`.
    fn list(values: &[&str]) -> Vec<u8> {
        let mut body = enc();
        for (i, value) in values.iter().enumerate() {
            body = body
                .str(value)
                .long(if i + 1 < values.len() { 1 } else { 0 });
        }
        body.0
    }

    #[test]
    fn recursive_records() {
        // fastavro's encoding of a, bb, ccc.
        let body = hex("026102046262020663636300");
        assert_eq!(body, list(&["a", "bb", "ccc"]));
        let tagged = parse(LIST, &["PII"], &[]);
        assert_eq!(
            located(&tagged, &body),
            pairs(&[
                ("/value", b"a"),
                ("/next/value", b"bb"),
                ("/next/next/value", b"ccc")
            ])
        );
        let out = replace(&tagged, &body, &[b"1", b"22", b""]);
        assert_eq!(out, list(&["1", "22", ""]));
        // By path, only where the path says; the rest of the list is skipped.
        let by_path = parse(LIST, &[], &["/next/value"]);
        assert_eq!(located(&by_path, &body), pairs(&[("/next/value", b"bb")]));
        let by_wildcard = parse(LIST, &[], &["/*/value"]);
        assert_eq!(
            located(&by_wildcard, &body),
            pairs(&[("/next/value", b"bb")])
        );
        let nothing = parse(LIST, &["PHI"], &[]);
        assert_eq!(located(&nothing, &body), []);
    }

    #[test]
    fn bytes_fields() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "photo", "type": "bytes", "confluent:tags": ["PII"]},
                {"name": "checksum", "type": {"type": "fixed", "name": "Sum", "size": 2}}]}"#,
            &["PII"],
            &[],
        );
        let body = enc().bytes(b"\xff\x00\xfe").raw(b"ok").0;
        let (fields, _) = schema.locate(&body).unwrap();
        assert_eq!(fields[0].field_type, FieldType::Bytes);
        assert_eq!(fields[0].content, b"\xff\x00\xfe");
        let out = replace(&schema, &body, &[b"vault:v1:xyz"]);
        assert_eq!(out, enc().str("vault:v1:xyz").raw(b"ok").0);
    }

    #[test]
    fn a_named_type_is_selected_per_path() {
        let schema = r#"{"type": "record", "name": "Customer", "namespace": "com.acme", "fields": [
            {"name": "home", "type": {"type": "record", "name": "Address", "fields": [
                {"name": "street", "type": "string"}, {"name": "city", "type": "string"}]}},
            {"name": "work", "type": "Address"},
            {"name": "previous", "type": {"type": "array", "items": "com.acme.Address"}}]}"#;
        let body = enc()
            .str("1 Home St")
            .str("Homeville")
            .str("2 Work Rd")
            .str("Worktown")
            .long(1)
            .str("3 Old Ln")
            .str("Oldham")
            .long(0)
            .0;
        let home = parse(schema, &[], &["/home/street"]);
        assert_eq!(
            located(&home, &body),
            pairs(&[("/home/street", b"1 Home St")])
        );
        let streets = parse(schema, &[], &["/*/street"]);
        assert_eq!(
            located(&streets, &body),
            pairs(&[
                ("/home/street", b"1 Home St"),
                ("/work/street", b"2 Work Rd")
            ])
        );
        let all = parse(schema, &[], &["/*/street", "/previous/*/city"]);
        assert_eq!(
            located(&all, &body),
            pairs(&[
                ("/home/street", b"1 Home St"),
                ("/work/street", b"2 Work Rd"),
                ("/previous/0/city", b"Oldham"),
            ])
        );
        replace(&all, &body, &[b"a", b"b", b"c"]);
        // A path that matches nothing selects nothing.
        let nothing = parse(schema, &[], &["/home/zip", "/nowhere"]);
        assert_eq!(located(&nothing, &body), []);
    }

    #[test]
    fn references() {
        // The references come in no particular order: Customer uses Address before it is
        // read.
        let customer = r#"{"type": "record", "name": "Customer", "namespace": "com.acme", "fields": [
            {"name": "name", "type": "string", "confluent:tags": ["PII"]},
            {"name": "address", "type": "Address"}]}"#;
        let address = r#"{"type": "record", "name": "com.acme.Address", "fields": [
            {"name": "street", "type": "string", "confluent:tags": ["PII"]}]}"#;
        let references = vec![
            Reference {
                name: "com.acme.Customer".into(),
                text: customer.into(),
            },
            Reference {
                name: "com.acme.Address".into(),
                text: address.into(),
            },
        ];
        let order = r#"{"type": "record", "name": "Order", "fields": [
            {"name": "customer", "type": "com.acme.Customer"},
            {"name": "total", "type": "long"}]}"#;
        let parsed = |text: &str| {
            let text = SchemaText {
                schema_type: SchemaType::Avro,
                text: text.into(),
                references: references.clone(),
            };
            Schema::parse(&text, &selection(&["PII"], &[])).unwrap()
        };
        let body = enc().str("Ann").str("1 Main St").long(7).0;
        assert_eq!(
            located(&parsed(order), &body),
            pairs(&[
                ("/customer/name", b"Ann"),
                ("/customer/address/street", b"1 Main St")
            ])
        );
        // A schema that is only a referenced type's name, quoted or not.
        let body = enc().str("Ann").str("1 Main St").0;
        for root in ["\"com.acme.Customer\"", "com.acme.Customer"] {
            assert_eq!(
                located(&parsed(root), &body),
                pairs(&[("/name", b"Ann"), ("/address/street", b"1 Main St")])
            );
        }
        let missing = SchemaText {
            schema_type: SchemaType::Avro,
            text: order.into(),
            references: references[..1].to_vec(),
        };
        let Err(Error::Schema(reason)) = Schema::parse(&missing, &Selection::default()) else {
            panic!("a missing reference must be a schema error");
        };
        assert_eq!(reason, "type com.acme.Address is not defined");
    }

    #[test]
    fn names_and_namespaces() {
        // A bare name is looked up in the enclosing namespace, then in the null one.
        let schema = parse(
            r#"{"type": "record", "name": "Top", "fields": [
                {"name": "plain", "type": {"type": "fixed", "name": "Plain", "size": 1}},
                {"name": "inner", "type": {"type": "record", "name": "Inner", "namespace": "x.y", "fields": [
                    {"name": "a", "type": "Plain"},
                    {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["A"]}},
                    {"name": "c", "type": "x.y.E"},
                    {"name": "d", "type": {"type": "record", "name": "z.Deep", "fields": [
                        {"name": "e", "type": "string", "confluent:tags": ["PII"]}]}},
                    {"name": "f", "type": "z.Deep"}]}}]}"#,
            &["PII"],
            &[],
        );
        let body = enc()
            .raw(b"p")
            .raw(b"q")
            .long(0)
            .long(0)
            .str("e1")
            .str("e2")
            .0;
        assert_eq!(
            located(&schema, &body),
            pairs(&[("/inner/d/e", b"e1"), ("/inner/f/e", b"e2")])
        );
        let twice = r#"{"type": "record", "name": "A", "fields": [
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}},
            {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["Y"]}}]}"#;
        assert_eq!(schema_error(twice, &[], &[]), "type E is defined twice");
        let unknown = r#"{"type": "record", "name": "A", "namespace": "n", "fields": [
            {"name": "a", "type": "Nowhere"}]}"#;
        assert_eq!(
            schema_error(unknown, &[], &[]),
            "type n.Nowhere is not defined"
        );
        assert!(schema_error("{not json", &[], &[]).starts_with("not JSON"));
        assert!(schema_error(r#"{"type": "record", "name": "A"}"#, &[], &[]).contains("fields"));
        assert!(schema_error("42", &[], &[]).contains("a type must be"));
    }

    #[test]
    fn deep_schemas_are_refused() {
        // Each reference nests the one before; past the limit the schema is refused
        // rather than compiled with ever deeper recursion.
        let chain = |levels: usize| {
            let mut references = vec![Reference {
                name: "R0".into(),
                text: r#"{"type": "record", "name": "R0", "fields": [
                    {"name": "s", "type": "string", "confluent:tags": ["PII"]}]}"#
                    .into(),
            }];
            for level in 1..levels {
                references.push(Reference {
                    name: format!("R{level}"),
                    text: format!(
                        r#"{{"type": "record", "name": "R{level}", "fields": [{{"name": "f", "type": "R{}"}}]}}"#,
                        level - 1
                    ),
                });
            }
            let text = SchemaText {
                schema_type: SchemaType::Avro,
                text: format!("\"R{}\"", levels - 1),
                references,
            };
            Schema::parse(&text, &selection(&["PII"], &[]))
        };
        let schema = chain(10).unwrap();
        let body = enc().str("deep").0;
        assert_eq!(
            located(&schema, &body),
            pairs(&[("/f/f/f/f/f/f/f/f/f/s", b"deep")])
        );
        assert_eq!(
            chain(300).unwrap_err(),
            Error::Schema("types nest deeper than 256 levels".into())
        );
    }

    #[test]
    fn primitive_schemas_and_logical_types() {
        for text in ["\"string\"", "string", " \"string\"\n"] {
            let schema = parse(text, &["PII"], &[]);
            assert_eq!(located(&schema, &enc().str("x").0), []);
            assert!(decode_error(&schema, &enc().str("x").long(0).0).contains("trailing"));
        }
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
                {"name": "day", "type": {"type": {"type": "int", "logicalType": "date"}}},
                {"name": "name", "type": {"type": "string", "logicalType": 7}, "confluent:tags": ["PII"]}]}"#,
            &["PII"],
            &[],
        );
        let body = enc()
            .str("6f1c3e1a")
            .long(1_700_000_000_000)
            .bytes(b"\x01\x00")
            .long(19000)
            .str("Ann")
            .0;
        // Logical types are decoded as their underlying types; one that is not a name is
        // ignored, as Avro's Java implementation does.
        assert_eq!(located(&schema, &body), pairs(&[("/name", b"Ann")]));
    }

    #[test]
    fn strings_and_bytes_with_a_logical_type_are_refused() {
        let field = |ty: &str| {
            format!(
                r#"{{"type": "record", "name": "R", "fields": [{{"name": "x", "type": {ty}, "confluent:tags": ["PII"]}}]}}"#
            )
        };
        let uuid = field(r#"{"type": "string", "logicalType": "uuid"}"#);
        assert_eq!(
            schema_error(&uuid, &["PII"], &[]),
            "field /x is tagged PII but is string (logical type uuid): a ciphertext is not a \
             valid uuid, so consumers would fail to read the record; remove the tag or the \
             logical type"
        );
        assert_eq!(
            schema_error(&uuid, &[], &["/x"]),
            "field /x is selected by the path /x but is string (logical type uuid): a \
             ciphertext is not a valid uuid, so consumers would fail to read the record; \
             remove the path or the logical type"
        );
        // Not selected: no error.
        parse(&uuid, &["PHI"], &[]);
        for (ty, what) in [
            (
                r#"{"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}"#,
                "is bytes (logical type decimal): a ciphertext is not a valid decimal",
            ),
            (
                r#"{"type": "string", "logicalType": "acme-iban"}"#,
                "is string (logical type acme-iban): a ciphertext is not a valid acme-iban",
            ),
            (
                r#"["null", {"type": "string", "logicalType": "uuid"}]"#,
                "is a union of null, string (logical type uuid): a ciphertext is not a valid uuid",
            ),
            (
                r#"{"type": "array", "items": {"type": "string", "logicalType": "uuid"}}"#,
                "is an array of string (logical type uuid): a ciphertext is not a valid uuid",
            ),
            (
                r#"["null", {"type": "map", "values": ["null", {"type": "bytes", "logicalType": "decimal"}]}]"#,
                "is a union of null, a map of a union of null, bytes (logical type decimal): \
                 a ciphertext is not a valid decimal",
            ),
        ] {
            let reason = schema_error(&field(ty), &["PII"], &[]);
            assert!(reason.contains(what), "{ty}: {reason}");
        }
        // Selected by a path through an array.
        let ids = r#"{"type": "record", "name": "R", "fields": [
            {"name": "ids", "type": {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}}]}"#;
        assert!(schema_error(ids, &[], &["/ids/*"]).starts_with(
            "field /ids/* is selected by the path /ids/* but is string (logical type uuid)"
        ));
    }

    /// Tagged arrays and maps of strings and bytes, and a record of them (the map in a
    /// block with its byte size).
    const COLLECTIONS: &str = r#"{"type": "record", "name": "R", "fields": [
        {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
        {"name": "attrs", "type": {"type": "map", "values": "bytes"}, "confluent:tags": ["PII"]},
        {"name": "notes", "type": ["null", {"type": "array", "items": ["null", "string"]}], "confluent:tags": ["PII"]},
        {"name": "n", "type": "int"}]}"#;

    fn collections_body() -> Vec<u8> {
        enc()
            .long(2)
            .str("a")
            .str("b")
            .long(0)
            .long(-1)
            .long(6)
            .str("k/1")
            .bytes(b"\xff")
            .long(1)
            .str("k2")
            .bytes(b"")
            .long(0)
            .long(1)
            .long(3)
            .long(1)
            .str("n0")
            .long(0)
            .long(1)
            .str("n2")
            .long(0)
            .long(7)
            .0
    }

    #[test]
    fn tagged_arrays_and_maps_of_strings_protect_each_element() {
        let schema = COLLECTIONS;
        let body = collections_body();
        let expected = pairs(&[
            ("/tags/0", b"a"),
            ("/tags/1", b"b"),
            ("/attrs/k~11", b"\xff"),
            ("/attrs/k2", b""),
            ("/notes/0", b"n0"),
            ("/notes/2", b"n2"),
        ]);
        let tagged = parse(schema, &["PII"], &[]);
        assert_eq!(located(&tagged, &body), expected);
        let (fields, _) = tagged.locate(&body).unwrap();
        assert_eq!(fields[2].field_type, FieldType::Bytes);
        // Configured paths to the fields select the same, and so do paths to the elements.
        for patterns in [
            &["/tags", "/attrs", "/notes"],
            &["/tags/*", "/attrs/*", "/notes/*"],
        ] {
            assert_eq!(located(&parse(schema, &[], patterns), &body), expected);
        }
        // `*` selects every field: the int among them too.
        assert!(schema_error(schema, &[], &["/*"]).starts_with(
            "field /n is selected by the path /* but is int; only string and bytes fields, \
             and arrays and maps of them, can be protected"
        ));
        let out = replace(
            &tagged,
            &body,
            &[b"1", b"22", b"333", b"4", b"", b"vault:v1:x"],
        );
        // The sized map block is written with its new size.
        assert_eq!(
            out,
            enc()
                .long(2)
                .str("1")
                .str("22")
                .long(0)
                .long(-1)
                .long(8)
                .str("k/1")
                .str("333")
                .long(1)
                .str("k2")
                .str("4")
                .long(0)
                .long(1)
                .long(3)
                .long(1)
                .str("")
                .long(0)
                .long(1)
                .str("vault:v1:x")
                .long(0)
                .long(7)
                .0
        );
        // Null and empty collections hold nothing to protect.
        let empty = enc().long(0).long(0).long(0).long(7).0;
        assert_eq!(located(&tagged, &empty), []);
        // A union may hold a string and an array of strings: whichever a record has.
        let either = parse(
            r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type":
                ["null", "string", {"type": "array", "items": "bytes"}], "confluent:tags": ["PII"]}]}"#,
            &["PII"],
            &[],
        );
        assert_eq!(located(&either, &enc().long(0).0), []);
        assert_eq!(
            located(&either, &enc().long(1).str("s").0),
            pairs(&[("/x", b"s")])
        );
        let body = enc().long(2).long(2).bytes(b"a").bytes(b"b").long(0).0;
        assert_eq!(
            located(&either, &body),
            pairs(&[("/x/0", b"a"), ("/x/1", b"b")])
        );
        replace(&either, &body, &[b"vault:v1:a", b""]);
    }

    #[test]
    fn only_strings_and_bytes_can_be_selected() {
        let tagged_int = r#"{"type": "record", "name": "R", "fields": [
            {"name": "customer", "type": {"type": "record", "name": "C", "fields": [
                {"name": "age", "type": "int", "confluent:tags": ["PII"]}]}}]}"#;
        assert_eq!(
            schema_error(tagged_int, &["PII"], &[]),
            "field /customer/age is tagged PII but is int; only string and bytes fields, and arrays and maps of them, can be protected"
        );
        // Not selected by this policy: no error.
        parse(tagged_int, &["PHI"], &[]);
        assert_eq!(
            schema_error(tagged_int, &[], &["/customer/*"]),
            "field /customer/age is selected by the path /customer/* but is int; only string and bytes fields, and arrays and maps of them, can be protected"
        );
        // A tagged record is not protected as a whole, nor an array or a map of anything
        // but strings and bytes.
        let tagged = |ty: &str| {
            format!(
                r#"{{"type": "record", "name": "R", "fields": [{{"name": "x", "type": {ty}, "confluent:tags": ["PII"]}}]}}"#
            )
        };
        let cases = [
            (
                r#"{"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}"#,
                "record In",
            ),
            (
                r#"{"type": "array", "items": {"type": "record", "name": "In", "fields": []}}"#,
                "an array of record In",
            ),
            (r#"{"type": "array", "items": "int"}"#, "an array of int"),
            (
                r#"{"type": "array", "items": {"type": "array", "items": "string"}}"#,
                "an array of an array of string",
            ),
            (
                r#"{"type": "map", "values": ["null", "string", "long"]}"#,
                "a map of a union of null, string, long",
            ),
            (
                r#"["null", {"type": "array", "items": "int"}]"#,
                "a union of null, an array of int",
            ),
            (
                r#"["null", "string", {"type": "record", "name": "In", "fields": []}]"#,
                "a union of null, string, record In",
            ),
            (r#"["null"]"#, "a union of null"),
            (r#"{"type": "fixed", "name": "F", "size": 4}"#, "fixed F"),
            (
                r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#,
                "enum E",
            ),
            (r#""long""#, "long"),
        ];
        for (ty, described) in cases {
            let reason = schema_error(&tagged(ty), &["PII"], &[]);
            assert_eq!(
                reason,
                format!("field /x is tagged PII but is {described}; only string and bytes fields, and arrays and maps of them, can be protected")
            );
        }
        // A recursive type reached again: still checked.
        let list = r#"{"type": "record", "name": "N", "fields": [
            {"name": "next", "type": ["null", "N"]},
            {"name": "n", "type": "int"}]}"#;
        assert_eq!(
            schema_error(list, &[], &["/next/next/n"]),
            "field /next/next/n is selected by the path /next/next/n but is int; only string and bytes fields, and arrays and maps of them, can be protected"
        );
    }

    /// `items`, an array of maps of nullable strings selected by path, both written in blocks
    /// with negative counts (with their sizes), then a string.
    fn sized_blocks(values: &[&str]) -> Vec<u8> {
        let mut entries = enc();
        for (i, value) in values.iter().enumerate() {
            entries = entries.str(&format!("k{i}")).long(1).str(value);
        }
        let map = enc()
            .long(-(values.len() as i64))
            .long(entries.0.len() as i64)
            .raw(&entries.0)
            .long(0)
            .0;
        // A first block in positive form, and a sized block with nothing located in it.
        let unselected = enc().long(-1).long(3).str("k").long(0).long(0).0;
        enc()
            .long(1)
            .raw(&unselected)
            .long(-1)
            .long(map.len() as i64)
            .raw(&map)
            .long(0)
            .str("tail")
            .0
    }

    #[test]
    fn negative_count_blocks_get_their_sizes_rewritten() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "items", "type": {"type": "array", "items": {"type": "map", "values": ["null", "string"]}}},
                {"name": "tail", "type": "string"}]}"#,
            &[],
            &["/items/*/*"],
        );
        let body = sized_blocks(&["v0", "v1"]);
        assert_eq!(
            located(&schema, &body),
            pairs(&[("/items/1/k0", b"v0"), ("/items/1/k1", b"v1")])
        );
        // Growing past 63 bytes lengthens the inner size's varint, which the outer size
        // has to count too.
        let long = "x".repeat(100);
        let out = replace(&schema, &body, &[long.as_bytes(), b"y"]);
        assert_eq!(out, sized_blocks(&[&long, "y"]));
        let out = replace(&schema, &out, &[b"", b""]);
        assert_eq!(out, sized_blocks(&["", ""]));
        // A size that is not its block's is an error.
        let mut bad = sized_blocks(&["v0", "v1"]);
        let at = bad.iter().position(|&b| b == zigzag(-2) as u8).unwrap() + 1;
        bad[at] += 2;
        assert!(decode_error(&schema, &bad).contains("byte size"));
    }

    #[test]
    fn sized_blocks_in_records() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "L", "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "note", "type": ["null", "string"], "confluent:tags": ["PII"]}]}}}]}"#,
            &["PII"],
            &[],
        );
        let lines = |notes: &[Option<&str>]| {
            let mut items = enc();
            for (i, note) in notes.iter().enumerate() {
                items = items.str(&format!("sku{i}"));
                items = match note {
                    Some(note) => items.long(1).str(note),
                    None => items.long(0),
                };
            }
            enc()
                .long(-(notes.len() as i64))
                .long(items.0.len() as i64)
                .raw(&items.0)
                .long(0)
                .0
        };
        let body = lines(&[Some("a"), None, Some("c")]);
        assert_eq!(
            located(&schema, &body),
            pairs(&[("/lines/0/note", b"a"), ("/lines/2/note", b"c")])
        );
        let big = "n".repeat(70);
        let out = replace(&schema, &body, &[big.as_bytes(), b"vault:v1:c"]);
        assert_eq!(out, lines(&[Some(&big), None, Some("vault:v1:c")]));
    }

    /// fastavro's encoding of an order (every kind of type), and of the same order with
    /// its PII fields and attributes replaced. Generated with fastavro 1.13.1.
    const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "com.acme", "fields": [{"name": "id", "type": {"type": "string", "logicalType": "uuid"}}, {"name": "flag", "type": "boolean"}, {"name": "count", "type": "int"}, {"name": "total", "type": "long"}, {"name": "ratio", "type": "float"}, {"name": "amount", "type": "double"}, {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}, {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [{"name": "name", "type": "string", "confluent:tags": ["PII"]}, {"name": "ssn", "type": ["null", "string"], "confluent:tags": ["PII"]}, {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["A", "B", "C"]}}, {"name": "photo", "type": "bytes", "confluent:tags": ["PII"]}]}}, {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}, {"name": "note", "type": ["null", "string"], "confluent:tags": ["PII"]}, {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}}]}}}, {"name": "attributes", "type": {"type": "map", "values": "string"}}, {"name": "billing", "type": ["null", "Customer"]}, {"name": "extra", "type": ["null", "int", "string"]}]}"#;
    const ORDER_BODY: &str = "4836663163336531612d396135352d346133372d396332652d31623166376635633861313001539693d89fee470000c03f00000000000002c080a0abfef962145a6fc3ab20536d69746802163132332d34352d363738390406ff00fe040a534b552d31020e66726167696c65000102030a534b552d3200616263640004046b3104763106612f6204763200020842696c6c0206393837000004186e6f742073656c6563746564";
    const ORDER_REPLACED: &str = "4836663163336531612d396135352d346133372d396332652d31623166376635633861313001539693d89fee470000c03f00000000000002c080a0abfef9621a7661756c743a76313a4141414102aa027661756c743a76313a42424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242420400040a534b552d31020244000102030a534b552d3200616263640004046b319003454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454545454506612f62000002024602024700020104186e6f742073656c6563746564";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn order() -> Schema {
        parse(ORDER, &["PII"], &["/attributes/*"])
    }

    #[test]
    fn fastavro_round_trip() {
        let schema = order();
        let body = hex(ORDER_BODY);
        assert_eq!(
            located(&schema, &body),
            pairs(&[
                ("/customer/name", "Zoë Smith".as_bytes()),
                ("/customer/ssn", b"123-45-6789"),
                ("/customer/photo", b"\xff\x00\xfe"),
                ("/lines/0/note", b"fragile"),
                ("/attributes/k1", b"v1"),
                ("/attributes/a~1b", b"v2"),
                ("/billing/name", b"Bill"),
                ("/billing/ssn", b"987"),
                ("/billing/photo", b""),
            ])
        );
        let ssn = format!("vault:v1:{}", "B".repeat(140));
        let attribute = "E".repeat(200);
        let contents: [&[u8]; 9] = [
            b"vault:v1:AAAA",
            ssn.as_bytes(),
            b"",
            b"D",
            attribute.as_bytes(),
            b"",
            b"F",
            b"G",
            b"\x01",
        ];
        let out = replace(&schema, &body, &contents);
        assert_eq!(out, hex(ORDER_REPLACED));
        // And back.
        let back: [&[u8]; 9] = [
            "Zoë Smith".as_bytes(),
            b"123-45-6789",
            b"\xff\x00\xfe",
            b"fragile",
            b"v1",
            b"v2",
            b"Bill",
            b"987",
            b"",
        ];
        assert_eq!(replace(&schema, &out, &back), body);
    }

    #[test]
    fn through_the_crate_interface() {
        let text = text(CUSTOMER);
        let schema = crate::Schema::parse(&text, &selection(&["PII"], &[])).unwrap();
        let body = enc()
            .str("Ann")
            .long(42)
            .str("1 Main St")
            .long(12345)
            .str("hi")
            .0;
        let framed = crate::wire::frame(7, &body);
        let (id, record) = crate::wire::unframe(&framed).unwrap();
        assert_eq!(id, 7);
        let located = schema.locate(record, &[]).unwrap();
        assert_eq!(located.fields().len(), 2);
        assert!(located.replace(record, &[b"x".to_vec()]).is_err());
        assert!(located
            .replace(record, &[b"\xff".to_vec(), b"y".to_vec()])
            .is_err());
        let out = located
            .replace(record, &[b"x".to_vec(), b"y".to_vec()])
            .unwrap();
        assert_eq!(
            out,
            enc().str("x").long(42).str("y").long(12345).str("hi").0
        );
        // A plan belongs to its record.
        let (_, plan) = order().locate(&hex(ORDER_BODY)).unwrap();
        assert!(matches!(plan.apply(&body, &[]), Err(Error::Replace(_))));
    }

    #[test]
    fn truncated_and_trailing() {
        let schema = order();
        let body = hex(ORDER_BODY);
        for end in 0..body.len() {
            assert!(
                matches!(schema.locate(&body[..end]), Err(Error::Decode(_))),
                "{end} bytes of {}",
                body.len()
            );
        }
        let mut long = body.clone();
        long.push(0);
        assert_eq!(
            decode_error(&schema, &long),
            "1 trailing bytes after the record"
        );
    }

    #[test]
    fn bad_values() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "s", "type": "string", "confluent:tags": ["PII"]},
                {"name": "t", "type": "string"},
                {"name": "b", "type": "boolean"},
                {"name": "i", "type": "int"},
                {"name": "l", "type": "long"}]}"#,
            &["PII"],
            &[],
        );
        let good = enc().str("s").str("t").raw(&[1]).long(-5).long(i64::MIN).0;
        assert_eq!(located(&schema, &good), pairs(&[("/s", b"s")]));
        let cases: [(Vec<u8>, &str); 9] = [
            (
                enc().bytes(b"\xc3").str("t").raw(&[1]).long(0).long(0).0,
                "UTF-8",
            ),
            (
                enc().str("s").bytes(b"\xff").raw(&[1]).long(0).long(0).0,
                "UTF-8",
            ),
            (
                enc().str("s").str("t").raw(&[2]).long(0).long(0).0,
                "boolean",
            ),
            (
                enc().str("s").str("t").raw(&[0]).long(1 << 31).long(0).0,
                "int out of range",
            ),
            (enc().long(-1).0, "negative length"),
            (enc().long(5).raw(b"abc").0, "beyond the end"),
            (
                enc()
                    .str("s")
                    .str("t")
                    .raw(&[0])
                    .long(0)
                    .raw(&[0xff; 9])
                    .raw(&[0x02])
                    .0,
                "overflows",
            ),
            (
                enc().str("s").str("t").raw(&[0]).long(0).raw(&[0xff; 11]).0,
                "overflows",
            ),
            (
                enc().str("s").str("t").raw(&[0]).long(0).raw(&[0x80; 4]).0,
                "truncated",
            ),
        ];
        for (body, expected) in cases {
            let reason = decode_error(&schema, &body);
            assert!(reason.contains(expected), "{reason:?} for {body:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let schema = parse(LIST, &["PII"], &[]);
        let values: Vec<&str> = vec!["v"; MAX_DEPTH];
        assert_eq!(located(&schema, &list(&values)).len(), MAX_DEPTH);
        let values: Vec<&str> = vec!["v"; MAX_DEPTH + 1];
        assert_eq!(
            decode_error(&schema, &list(&values)),
            "nested deeper than 64"
        );
        // Skipped parts too.
        let skipped = parse(LIST, &[], &[]);
        assert_eq!(
            decode_error(&skipped, &list(&values)),
            "nested deeper than 64"
        );
        let tree = parse(
            r#"{"type": "record", "name": "T", "fields": [
                {"name": "children", "type": {"type": "array", "items": "T"}}]}"#,
            &[],
            &[],
        );
        let body = vec![zigzag(1) as u8; 10_000];
        assert_eq!(decode_error(&tree, &body), "nested deeper than 64");
    }

    #[test]
    fn huge_counts_of_empty_items() {
        let nulls = parse(r#"{"type": "array", "items": "null"}"#, &[], &[]);
        let empties = parse(
            r#"{"type": "array", "items": {"type": "record", "name": "E", "fields": []}}"#,
            &[],
            &[],
        );
        let start = std::time::Instant::now();
        for schema in [&nulls, &empties] {
            assert_eq!(located(schema, &enc().long(1000).long(0).0), []);
            for count in [i64::MAX, -i64::MAX, 1 << 40, MIN_ITEM_BUDGET as i64 + 1] {
                let body = enc().long(count).long(0).long(0).0;
                assert_eq!(
                    decode_error(schema, &body),
                    "more than 65536 array and map items"
                );
            }
            // The budget is for the whole record.
            let mut body = Vec::new();
            for _ in 0..3 {
                body.extend_from_slice(&enc().long(MIN_ITEM_BUDGET as i64 / 2).0);
            }
            body.push(0);
            let nested = parse(
                r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#,
                &[],
                &[],
            );
            let body = [enc().long(3).0, body.clone(), vec![0, 0, 0]].concat();
            assert!(decode_error(&nested, &body).contains("array and map items"));
        }
        let count = enc().long(i64::MIN).long(0).0;
        assert!(decode_error(&nulls, &count).contains("items"));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn wildcards_over_wide_schemas_stay_small() {
        // Six levels of ten fields each: 10^6 places, which a walk per place would cost.
        let mut ty = r#""string""#.to_string();
        for level in 0..6 {
            let fields: Vec<String> = (0..10)
                .map(|i| {
                    format!(
                        r#"{{"name": "f{i}", "type": {}}}"#,
                        if i == 0 {
                            ty.clone()
                        } else {
                            format!("\"R{}\"", level - 1)
                        }
                    )
                })
                .collect();
            ty = format!(
                r#"{{"type": "record", "name": "R{level}", "fields": [{}]}}"#,
                fields.join(", ")
            );
            if level == 0 {
                // R0's fields are all strings.
                ty = ty.replace(r#""R-1""#, r#""string""#);
            }
        }
        let start = std::time::Instant::now();
        let schema = parse(&ty, &[], &["/*/*/*/*/*/*"]);
        assert!(schema.walks.len() < 100, "{} walks", schema.walks.len());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A small deterministic generator, for hostile bodies.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// Whatever the body, locate either fails, without quoting the record, or finds
    /// fields that can be replaced and found again.
    fn hostile(schema: &Schema, body: &[u8]) {
        let (fields, plan) = match schema.locate(body) {
            Ok(located) => located,
            Err(e) => {
                let reason = e.to_string();
                for data in [
                    "Smith", "6789", "fragile", "SKU", "k1", "a/b", "Bill", "ccc",
                ] {
                    assert!(!reason.contains(data), "{reason}");
                }
                return;
            }
        };
        let contents: Vec<Vec<u8>> = (0..fields.len()).map(|i| vec![b'x'; i * 37]).collect();
        let out = plan.apply(body, &contents).unwrap();
        let (again, _) = schema.locate(&out).unwrap();
        let found: Vec<Vec<u8>> = again.into_iter().map(|f| f.content).collect();
        assert_eq!(found, contents);
    }

    #[test]
    fn hostile_bodies() {
        let mut rng = Rng(7);
        let schemas = [
            order(),
            parse(LIST, &["PII"], &[]),
            parse(COLLECTIONS, &["PII"], &[]),
        ];
        let bodies = [
            hex(ORDER_BODY),
            list(&["a", "bb", "ccc"]),
            collections_body(),
        ];
        for (schema, body) in schemas.iter().zip(&bodies) {
            for at in 0..body.len() {
                for value in [
                    0x00,
                    0x01,
                    0x02,
                    0x7f,
                    0x80,
                    0xff,
                    body[at] ^ 1,
                    body[at].wrapping_add(2),
                ] {
                    let mut mutated = body.clone();
                    mutated[at] = value;
                    hostile(schema, &mutated);
                }
            }
            for _ in 0..2000 {
                let len = rng.next() as usize % 64;
                let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                hostile(schema, &random);
                let mut spliced = body.clone();
                let at = rng.next() as usize % body.len();
                spliced.splice(at..at, random);
                hostile(schema, &spliced);
            }
        }
        let sized = parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "items", "type": {"type": "array", "items": {"type": "map", "values": ["null", "string"]}}},
                {"name": "tail", "type": "string"}]}"#,
            &[],
            &["/items/*/*"],
        );
        let body = sized_blocks(&["v0", "v1", "v2"]);
        for at in 0..body.len() {
            for value in 0..=255u8 {
                let mut mutated = body.clone();
                mutated[at] = value;
                hostile(&sized, &mutated);
            }
        }
    }
}

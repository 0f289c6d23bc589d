//! The schema as both text forms parse it ([`RawFile`]), and the same with every type
//! name resolved across the schema and its references ([`Model`]).

use std::collections::HashMap;

/// A scalar field type, as `.proto` text names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    pub(super) fn from_name(name: &str) -> Option<Scalar> {
        Some(match name {
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "bool" => Scalar::Bool,
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Scalar::Double => "double",
            Scalar::Float => "float",
            Scalar::Int32 => "int32",
            Scalar::Int64 => "int64",
            Scalar::Uint32 => "uint32",
            Scalar::Uint64 => "uint64",
            Scalar::Sint32 => "sint32",
            Scalar::Sint64 => "sint64",
            Scalar::Fixed32 => "fixed32",
            Scalar::Fixed64 => "fixed64",
            Scalar::Sfixed32 => "sfixed32",
            Scalar::Sfixed64 => "sfixed64",
            Scalar::Bool => "bool",
            Scalar::String => "string",
            Scalar::Bytes => "bytes",
        }
    }

    /// Whether protobuf allows it as a map key.
    pub(super) fn is_map_key(self) -> bool {
        !matches!(self, Scalar::Double | Scalar::Float | Scalar::Bytes)
    }
}

/// What a descriptor says a named type is; `.proto` text cannot say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hint {
    Message,
    Enum,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawType {
    Scalar(Scalar),
    Named { name: String, hint: Hint },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawField {
    pub name: String,
    pub number: u32,
    pub repeated: bool,
    pub ty: RawType,
    /// Confluent's `(confluent.field_meta).tags`.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct RawMessage {
    pub name: String,
    pub fields: Vec<RawField>,
    pub nested: Vec<RawMessage>,
    pub enums: Vec<String>,
    /// Whether Confluent's message indexes count it among its parent's nested messages:
    /// all of a descriptor's `nested_type` do; in `.proto` text, declared messages do, and
    /// the entries of `map<K, V>` fields and the types of groups do not.
    pub indexed: bool,
    pub map_entry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct RawFile {
    pub package: String,
    pub messages: Vec<RawMessage>,
    pub enums: Vec<String>,
}

pub(super) type MsgId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Type {
    Scalar(Scalar),
    Enum,
    Message(MsgId),
    /// A well-known type (or one of Confluent's own) whose inside is never walked.
    Opaque(String),
}

#[derive(Debug)]
pub(super) struct Field {
    pub name: String,
    pub number: u32,
    pub repeated: bool,
    pub ty: Type,
    pub tags: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Message {
    pub full_name: String,
    pub fields: Vec<Field>,
    /// The nested messages message indexes count, in order.
    pub indexed: Vec<MsgId>,
    pub map_entry: bool,
}

#[derive(Debug)]
pub(super) struct Model {
    pub messages: Vec<Message>,
    /// The schema file's top-level messages: what a message index path starts from.
    pub top: Vec<MsgId>,
    /// Every message declared in the schema file itself, nested ones too.
    pub own: Vec<MsgId>,
}

#[derive(Debug, Clone, Copy)]
enum Symbol {
    Message(MsgId),
    Enum,
}

/// Types walkers never look inside: the well-known types, Google's common types
/// (`google/type/*.proto`) and Confluent's own (`confluent/meta.proto`,
/// `confluent/type/*.proto`), which Confluent's registry knows without references.
fn is_opaque(full_name: &str) -> bool {
    full_name.starts_with("google.protobuf.")
        || full_name.starts_with("google.type.")
        || full_name.starts_with("confluent.type.")
        || full_name == "confluent.Meta"
        || full_name.starts_with("confluent.Meta.")
        || full_name == "confluent.Rule"
}

struct Builder {
    messages: Vec<Message>,
    symbols: HashMap<String, Symbol>,
    /// Each message's fields, resolved once every file is registered.
    pending: Vec<(MsgId, Vec<RawField>)>,
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

impl Builder {
    fn register_file(&mut self, file: RawFile) -> (Vec<MsgId>, Vec<MsgId>) {
        let mut own = Vec::new();
        for name in &file.enums {
            self.symbols
                .entry(join(&file.package, name))
                .or_insert(Symbol::Enum);
        }
        let top = file
            .messages
            .into_iter()
            .map(|m| self.register_message(&file.package, m, &mut own))
            .collect();
        (top, own)
    }

    fn register_message(&mut self, scope: &str, raw: RawMessage, own: &mut Vec<MsgId>) -> MsgId {
        let full_name = join(scope, &raw.name);
        let id = self.messages.len();
        own.push(id);
        self.messages.push(Message {
            full_name: full_name.clone(),
            fields: Vec::new(),
            indexed: Vec::new(),
            map_entry: raw.map_entry,
        });
        // The first definition of a name wins: the schema's own before its references'.
        self.symbols
            .entry(full_name.clone())
            .or_insert(Symbol::Message(id));
        for name in &raw.enums {
            self.symbols
                .entry(join(&full_name, name))
                .or_insert(Symbol::Enum);
        }
        let mut indexed = Vec::new();
        for nested in raw.nested {
            let counts = nested.indexed;
            let child = self.register_message(&full_name, nested, own);
            if counts {
                indexed.push(child);
            }
        }
        self.messages[id].indexed = indexed;
        self.pending.push((id, raw.fields));
        id
    }

    /// protoc's lookup, simplified: the name relative to the innermost enclosing scope
    /// that defines it.
    fn lookup(&self, name: &str, scope: &str) -> Option<Symbol> {
        if let Some(absolute) = name.strip_prefix('.') {
            return self.symbols.get(absolute).copied();
        }
        let mut scope = scope;
        loop {
            if let Some(symbol) = self.symbols.get(&join(scope, name)) {
                return Some(*symbol);
            }
            if scope.is_empty() {
                return None;
            }
            scope = scope.rsplit_once('.').map_or("", |(outer, _)| outer);
        }
    }

    fn resolve(&self, id: MsgId, raw: RawType, field: &str) -> Result<Type, String> {
        let (name, hint) = match raw {
            RawType::Scalar(scalar) => return Ok(Type::Scalar(scalar)),
            RawType::Named { name, hint } => (name, hint),
        };
        let scope = &self.messages[id].full_name;
        match self.lookup(&name, scope) {
            Some(Symbol::Message(target)) => {
                let full = &self.messages[target].full_name;
                Ok(if is_opaque(full) {
                    Type::Opaque(full.clone())
                } else {
                    Type::Message(target)
                })
            }
            Some(Symbol::Enum) => Ok(Type::Enum),
            None if hint == Hint::Enum => Ok(Type::Enum),
            None if is_opaque(name.trim_start_matches('.')) => {
                Ok(Type::Opaque(name.trim_start_matches('.').to_string()))
            }
            None => Err(format!(
                "type `{name}` of field `{scope}.{field}` is not defined in the schema \
                 or its references"
            )),
        }
    }
}

impl Model {
    /// `root` is the schema's own file; `references` the files it imports.
    pub(super) fn build(root: RawFile, references: Vec<RawFile>) -> Result<Model, String> {
        let mut builder = Builder {
            messages: Vec::new(),
            symbols: HashMap::new(),
            pending: Vec::new(),
        };
        let (top, own) = builder.register_file(root);
        for file in references {
            builder.register_file(file);
        }
        let pending = std::mem::take(&mut builder.pending);
        for (id, raw_fields) in pending {
            let mut fields = Vec::with_capacity(raw_fields.len());
            for raw in raw_fields {
                let ty = builder.resolve(id, raw.ty, &raw.name)?;
                fields.push(Field {
                    name: raw.name,
                    number: raw.number,
                    repeated: raw.repeated,
                    ty,
                    tags: raw.tags,
                });
            }
            builder.messages[id].fields = fields;
        }
        Ok(Model {
            messages: builder.messages,
            top,
            own,
        })
    }

    /// A map field's key and value types, if `field` is one (a repeated map entry).
    pub(super) fn map_of(&self, field: &Field) -> Result<Option<(Scalar, &Type)>, String> {
        let Type::Message(entry) = field.ty else {
            return Ok(None);
        };
        let entry = &self.messages[entry];
        if !entry.map_entry || !field.repeated {
            return Ok(None);
        }
        let key = entry.fields.iter().find(|f| f.number == 1);
        let value = entry.fields.iter().find(|f| f.number == 2);
        match (key, value) {
            (
                Some(Field {
                    ty: Type::Scalar(key),
                    ..
                }),
                Some(value),
            ) if key.is_map_key() => Ok(Some((*key, &value.ty))),
            _ => Err(format!(
                "map entry `{}` has no valid key (1) and value (2) fields",
                entry.full_name
            )),
        }
    }
}

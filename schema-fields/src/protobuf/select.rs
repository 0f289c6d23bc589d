//! Which fields of which messages the walker must look at, worked out once per schema:
//! a [`Node`] per message (and, while a configured path may still match below it, per
//! path to it) listing only its fields that are selected or lead to selected ones.
//! Every other field of a record is skipped by its length, never decoded.

use super::model::{Field, Model, MsgId, Scalar, Type};
use crate::path::Step;
use crate::{Error, FieldType, Selection};

pub(super) type NodeId = usize;

/// Bounds the work of expanding configured paths (`/*/*/*/...` over a wide schema).
const MAX_EXPANSIONS: usize = 100_000;

#[derive(Debug)]
pub(super) struct Node {
    /// Sorted by number.
    pub fields: Vec<NodeField>,
}

impl Node {
    pub(super) fn find(&self, number: u32) -> Option<usize> {
        self.fields.binary_search_by_key(&number, |f| f.number).ok()
    }
}

#[derive(Debug)]
pub(super) struct NodeField {
    pub number: u32,
    pub name: String,
    pub shape: Shape,
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Single,
    /// Each occurrence is an element: its index is a path step.
    Repeated,
    /// Each occurrence is a map entry: its key (of this type) is a path step.
    Map(Scalar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Protect(FieldType),
    Descend(NodeId),
}

#[derive(Debug)]
pub(super) struct Compiled {
    pub nodes: Vec<Node>,
    /// By message id: where a record of that message starts; `None` when nothing in it
    /// is selected (or the message is not the schema's own).
    pub entries: Vec<Option<NodeId>>,
}

/// How a field's values occur and what each is: a map's values are its entries'
/// values (a repeated map entry message is not walked as one).
fn layout<'m>(model: &'m Model, field: &'m Field) -> Result<(Shape, &'m Type), Error> {
    Ok(match model.map_of(field).map_err(Error::Schema)? {
        Some((key, value)) => (Shape::Map(key), value),
        None if field.repeated => (Shape::Repeated, &field.ty),
        None => (Shape::Single, &field.ty),
    })
}

/// The path step from a field to each of its values, if it has one.
fn value_step(shape: Shape) -> Option<Step<'static>> {
    match shape {
        Shape::Single => None,
        Shape::Repeated => Some(Step::Element),
        Shape::Map(_) => Some(Step::MapValue),
    }
}

fn protectable(ty: &Type) -> Option<FieldType> {
    match ty {
        Type::Scalar(Scalar::String) => Some(FieldType::String),
        Type::Scalar(Scalar::Bytes) => Some(FieldType::Bytes),
        _ => None,
    }
}

fn describe(model: &Model, ty: &Type) -> String {
    match ty {
        Type::Scalar(scalar) => scalar.name().to_string(),
        Type::Enum => "an enum".to_string(),
        Type::Message(id) => format!("message `{}`", model.messages[*id].full_name),
        Type::Opaque(name) => format!("message `{name}`"),
    }
}

fn render(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(name) => crate::path::push_token(&mut text, name),
            Step::Element | Step::MapValue => text.push_str("/*"),
        }
    }
    text
}

fn not_protectable(model: &Model, message: MsgId, field: &Field, ty: &Type, why: &str) -> Error {
    Error::Schema(format!(
        "field `{}.{}` is selected ({why}) but holds {}: \
         only string and bytes fields can be protected",
        model.messages[message].full_name,
        field.name,
        describe(model, ty)
    ))
}

/// The messages a record of the schema's own messages can hold, at any depth.
fn reachable(model: &Model) -> Vec<bool> {
    let mut seen = vec![false; model.messages.len()];
    let mut stack = model.own.clone();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        for field in &model.messages[id].fields {
            if let Type::Message(child) = field.ty {
                stack.push(child);
            }
        }
    }
    seen
}

struct Compiler<'m, 's> {
    model: &'m Model,
    selection: &'s Selection,
    nodes: Vec<Node>,
    /// By message id: the node for it where no configured path can match any more,
    /// only tags select.
    by_tags: Vec<Option<NodeId>>,
    expansions: usize,
}

impl<'m> Compiler<'m, '_> {
    fn tagged<'f>(&self, field: &'f Field) -> Option<&'f str> {
        field
            .tags
            .iter()
            .find(|tag| self.selection.tags().contains(tag))
            .map(String::as_str)
    }

    /// A tagged field's shape and what it holds; a tag on anything else is an error.
    fn tagged_target(&self, id: MsgId, field: &'m Field) -> Result<Option<(Shape, Target)>, Error> {
        let Some(tag) = self.tagged(field) else {
            return Ok(None);
        };
        let (shape, ty) = layout(self.model, field)?;
        match protectable(ty) {
            Some(field_type) => Ok(Some((shape, Target::Protect(field_type)))),
            None => Err(not_protectable(
                self.model,
                id,
                field,
                ty,
                &format!("tagged {tag}"),
            )),
        }
    }

    /// The nodes for tags alone: which messages hold tagged fields at some depth, found
    /// from the tagged ones up through whatever holds them, so recursion terminates.
    fn compile_tags(&mut self) -> Result<(), Error> {
        let model = self.model;
        let count = model.messages.len();
        let reachable = reachable(model);
        let holds = |field: &'m Field| -> Result<Option<(Shape, MsgId)>, Error> {
            Ok(match layout(model, field)? {
                (shape, Type::Message(child)) => Some((shape, *child)),
                _ => None,
            })
        };
        let mut leads = vec![false; count];
        let mut holders = vec![Vec::new(); count];
        let mut work = Vec::new();
        for id in (0..count).filter(|&id| reachable[id]) {
            for field in &model.messages[id].fields {
                if self.tagged_target(id, field)?.is_some() && !leads[id] {
                    leads[id] = true;
                    work.push(id);
                }
                if let Some((_, child)) = holds(field)? {
                    holders[child].push(id);
                }
            }
        }
        while let Some(id) = work.pop() {
            for &holder in &holders[id] {
                if !leads[holder] {
                    leads[holder] = true;
                    work.push(holder);
                }
            }
        }
        for id in (0..count).filter(|&id| leads[id]) {
            self.by_tags[id] = Some(self.nodes.len());
            self.nodes.push(Node { fields: Vec::new() });
        }
        for id in (0..count).filter(|&id| leads[id]) {
            let mut fields = Vec::new();
            for field in &model.messages[id].fields {
                let target = match self.tagged_target(id, field)? {
                    Some(target) => Some(target),
                    None => holds(field)?.and_then(|(shape, child)| {
                        self.by_tags[child].map(|node| (shape, Target::Descend(node)))
                    }),
                };
                if let Some((shape, target)) = target {
                    fields.push(NodeField {
                        number: field.number,
                        name: field.name.clone(),
                        shape,
                        target,
                    });
                }
            }
            fields.sort_by_key(|f| f.number);
            if let Some(node) = self.by_tags[id] {
                self.nodes[node].fields = fields;
            }
        }
        Ok(())
    }

    fn selects(&self, path: &[Step], tags: &[String]) -> bool {
        self.selection.selects(path, tags)
    }

    /// The node for message `id` reached at `path`.
    fn compile_path(
        &mut self,
        id: MsgId,
        path: &mut Vec<Step<'m>>,
    ) -> Result<Option<NodeId>, Error> {
        if !self.selection.may_select_below(path) {
            return Ok(self.by_tags[id]);
        }
        self.expansions += 1;
        if self.expansions > MAX_EXPANSIONS {
            return Err(Error::Schema(
                "the configured field paths expand to too many schema paths".into(),
            ));
        }
        let model = self.model;
        let mut fields = Vec::new();
        for field in &model.messages[id].fields {
            path.push(Step::Field(&field.name));
            let found = self.field_target(id, field, path);
            path.pop();
            if let Some((shape, target)) = found? {
                fields.push(NodeField {
                    number: field.number,
                    name: field.name.clone(),
                    shape,
                    target,
                });
            }
        }
        if fields.is_empty() {
            return Ok(None);
        }
        fields.sort_by_key(|f| f.number);
        self.nodes.push(Node { fields });
        Ok(Some(self.nodes.len() - 1))
    }

    /// `field` of message `id`, at `path` (ending with the field's own step).
    fn field_target(
        &mut self,
        id: MsgId,
        field: &'m Field,
        path: &mut Vec<Step<'m>>,
    ) -> Result<Option<(Shape, Target)>, Error> {
        let model = self.model;
        let selected = self.selects(path, &field.tags);
        let tag = self.tagged(field).map(str::to_owned);
        let error = |path: &[Step], ty: &Type| {
            let why = match &tag {
                Some(tag) => format!("tagged {tag}"),
                None => format!("at {}", render(path)),
            };
            not_protectable(model, id, field, ty, &why)
        };
        let (shape, ty) = layout(model, field)?;
        let inner = value_step(shape);
        // Selecting the field itself selects each of its elements or map values.
        if selected {
            return match protectable(ty) {
                Some(field_type) => Ok(Some((shape, Target::Protect(field_type)))),
                None => Err(error(path, ty)),
            };
        }
        if let Some(step) = inner {
            path.push(step);
        }
        let result = if self.selects(path, &[]) {
            match protectable(ty) {
                Some(field_type) => Ok(Some((shape, Target::Protect(field_type)))),
                None => Err(error(path, ty)),
            }
        } else if let Type::Message(child) = ty {
            self.compile_path(*child, path)
                .map(|node| node.map(|node| (shape, Target::Descend(node))))
        } else {
            Ok(None)
        };
        if inner.is_some() {
            path.pop();
        }
        result
    }
}

pub(super) fn compile(model: &Model, selection: &Selection) -> Result<Compiled, Error> {
    let mut compiler = Compiler {
        model,
        selection,
        nodes: Vec::new(),
        by_tags: vec![None; model.messages.len()],
        expansions: 0,
    };
    compiler.compile_tags()?;
    let mut entries = vec![None; model.messages.len()];
    for &id in &model.own {
        entries[id] = compiler.compile_path(id, &mut Vec::new())?;
    }
    Ok(Compiled {
        nodes: compiler.nodes,
        entries,
    })
}

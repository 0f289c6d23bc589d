//! The schema graph compiled, for one selection, into the tree records are walked by.
//!
//! A place in a record can be described by several subschemas at once: a property's
//! schema and what it `$ref`s, every branch of an `allOf`/`anyOf`/`oneOf`, a property
//! and a matching `patternProperties` entry. A node of the tree stands for such a set
//! (closed over the schemas that apply at the same place), together with the schema
//! paths that lead there while a configured path could still match. Sets are interned,
//! so a recursive schema makes a finite graph: beyond the depth of the longest
//! configured path only tags select, and the set alone identifies a node.
//!
//! Nodes from which nothing can be selected are dropped, so a record's walk only goes
//! where selected fields can be and merely checks the syntax elsewhere.

use std::collections::{HashMap, HashSet, VecDeque};

use super::load::{Graph, Obj, ObjId, Types};
use super::regex::Regex;
use crate::path::{push_token, Step};
use crate::{Error, Selection};

pub(super) type NodeId = usize;

#[derive(Debug)]
pub(super) struct Tree {
    pub nodes: Vec<Node>,
    /// `None` when nothing in the schema can be selected.
    pub root: Option<NodeId>,
}

#[derive(Debug)]
pub(super) struct Node {
    /// Where the node is in the record's shape, for reasons: `/customer/ssn`,
    /// `/phones/*/number` (a schema path: schema names only, never record data).
    pub at: String,
    pub kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    /// A selected field: its value must be a string (or null: no field).
    Selected,
    /// Selected fields may be inside.
    Container(Children),
}

/// What a selected array or map must be in a record, its elements or values selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collection {
    Array,
    Map,
}

/// Where a container's members and elements go (`None`: nothing selected there).
#[derive(Debug, Default)]
pub(super) struct Children {
    /// For a selected array or map of strings: what a record's value must be (or null),
    /// never passed on in clear when it is anything else.
    pub collection: Option<Collection>,
    /// The members the schemas name, sorted by name.
    pub named: Vec<(Box<str>, Option<NodeId>)>,
    /// For the other members: the `patternProperties` to match their names against,
    /// and the node for each combination of matches (bit `i` set: `patterns[i]`
    /// matches), so `rest[0]` when none match.
    pub patterns: Vec<Regex>,
    pub rest: Vec<Option<NodeId>>,
    /// The first elements', then the other elements' node.
    pub prefix: Vec<Option<NodeId>>,
    pub elements: Option<NodeId>,
}

impl Children {
    /// The node of the member named `name` (decoded).
    pub(super) fn member(&self, name: &str) -> Option<NodeId> {
        if let Ok(i) = self.named.binary_search_by(|(n, _)| (**n).cmp(name)) {
            return self.named[i].1;
        }
        let mask = self
            .patterns
            .iter()
            .enumerate()
            .filter(|(_, regex)| regex.is_match(name))
            .fold(0, |mask, (i, _)| mask | 1 << i);
        self.rest.get(mask).copied().flatten()
    }

    pub(super) fn element(&self, index: usize) -> Option<NodeId> {
        match self.prefix.get(index) {
            Some(node) => *node,
            None => self.elements,
        }
    }

    fn each(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.named
            .iter()
            .filter_map(|(_, node)| *node)
            .chain(self.rest.iter().filter_map(|node| *node))
            .chain(self.prefix.iter().filter_map(|node| *node))
            .chain(self.elements)
    }

    fn prune(&mut self, relevant: &[bool]) {
        let keep = |node: &mut Option<NodeId>| {
            if node.is_some_and(|id| !relevant[id]) {
                *node = None;
            }
        };
        self.named.iter_mut().for_each(|(_, node)| keep(node));
        self.rest.iter_mut().for_each(keep);
        self.prefix.iter_mut().for_each(keep);
        keep(&mut self.elements);
        if self.rest.iter().all(Option::is_none) {
            self.patterns.clear();
            self.rest = vec![None];
            // A named member only has to be told from the rest when the rest matters.
            self.named.retain(|(_, node)| node.is_some());
        }
        while self
            .prefix
            .last()
            .is_some_and(|node| *node == self.elements)
        {
            self.prefix.pop();
        }
    }
}

/// How many nodes a schema may compile to: compiling is bounded whatever the schema.
const MAX_NODES: usize = 50_000;
/// How many subschemas compiling may look at, counting each time a node's children are
/// worked out: nodes can stand for large sets (a big `allOf`), so their count alone does
/// not bound the work.
const MAX_WORK: usize = 20_000_000;
/// How many `patternProperties` may describe the members of one object where selected
/// fields may be (the walker matches each member name against each).
const MAX_PATTERNS: usize = 8;

pub(super) fn compile(graph: &Graph, selection: &Selection) -> Result<Tree, Error> {
    let mut builder = Builder::new(graph, selection);
    let root_objs = builder.closure(&[0]);
    let root = builder.node(root_objs, vec![Vec::new()], String::new(), false)?;
    while let Some(pending) = builder.queue.pop_front() {
        builder.build(pending)?;
    }
    Ok(builder.finish(root))
}

/// One step of a schema path, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum StepBuf {
    Field(String),
    Element,
    MapValue,
}

type Path = Vec<StepBuf>;

fn steps(path: &Path) -> Vec<Step<'_>> {
    path.iter()
        .map(|step| match step {
            StepBuf::Field(name) => Step::Field(name),
            StepBuf::Element => Step::Element,
            StepBuf::MapValue => Step::MapValue,
        })
        .collect()
}

fn extend(paths: &[Path], step: &StepBuf) -> Vec<Path> {
    paths
        .iter()
        .map(|path| {
            let mut path = path.clone();
            path.push(step.clone());
            path
        })
        .collect()
}

struct Pending {
    id: NodeId,
    objs: Vec<ObjId>,
    paths: Vec<Path>,
    /// Reached through a combination of patterns that may match no name.
    deferred: bool,
}

struct Builder<'g> {
    graph: &'g Graph,
    selection: &'g Selection,
    /// Per object: whether it or a schema it leads to carries a selected tag.
    tagged_below: Vec<bool>,
    closures: HashMap<ObjId, Vec<ObjId>>,
    ids: HashMap<(Vec<ObjId>, Vec<Path>), NodeId>,
    nodes: Vec<Node>,
    queue: VecDeque<Pending>,
    work: usize,
}

impl<'g> Builder<'g> {
    fn new(graph: &'g Graph, selection: &'g Selection) -> Self {
        let objs = &graph.objs;
        let tagged: Vec<bool> = objs
            .iter()
            .map(|obj| {
                obj.tags
                    .iter()
                    .any(|tag| selection.tags().iter().any(|t| t == tag))
            })
            .collect();
        // Whether a tag is below: spread from the tagged objects along reversed edges.
        let mut parents = vec![Vec::new(); objs.len()];
        for (id, obj) in objs.iter().enumerate() {
            for child in obj.edges() {
                parents[child].push(id);
            }
        }
        let mut tagged_below = tagged.clone();
        let mut work: Vec<ObjId> = (0..objs.len()).filter(|&id| tagged[id]).collect();
        while let Some(id) = work.pop() {
            for &parent in &parents[id] {
                if !tagged_below[parent] {
                    tagged_below[parent] = true;
                    work.push(parent);
                }
            }
        }
        Builder {
            graph,
            selection,
            tagged_below,
            closures: HashMap::new(),
            ids: HashMap::new(),
            nodes: Vec::new(),
            queue: VecDeque::new(),
            work: 0,
        }
    }

    /// `objs` and every schema that applies where they do, sorted.
    fn closure(&mut self, objs: &[ObjId]) -> Vec<ObjId> {
        let mut all = Vec::new();
        for &obj in objs {
            if !self.closures.contains_key(&obj) {
                let mut seen = HashSet::from([obj]);
                let mut work = vec![obj];
                while let Some(id) = work.pop() {
                    for &applied in &self.graph.objs[id].applicators {
                        if seen.insert(applied) {
                            work.push(applied);
                        }
                    }
                }
                let mut closure: Vec<ObjId> = seen.into_iter().collect();
                closure.sort_unstable();
                self.closures.insert(obj, closure);
            }
            all.extend_from_slice(&self.closures[&obj]);
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The node for a place described by `objs` (closed) and reached by `paths`; `None`
    /// if nothing can be selected there or below.
    fn node(
        &mut self,
        objs: Vec<ObjId>,
        mut paths: Vec<Path>,
        at: String,
        deferred: bool,
    ) -> Result<Option<NodeId>, Error> {
        paths.retain(|path| {
            let steps = steps(path);
            self.selection.selects::<&str>(&steps, &[]) || self.selection.may_select_below(&steps)
        });
        paths.sort();
        paths.dedup();
        if objs.is_empty() || (paths.is_empty() && !objs.iter().any(|&o| self.tagged_below[o])) {
            return Ok(None);
        }
        let key = (objs, paths);
        if let Some(&id) = self.ids.get(&key) {
            return Ok(Some(id));
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(Error::Schema(format!(
                "the fields to select make more than {MAX_NODES} distinct places to look \
                 in a record"
            )));
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            at,
            kind: Kind::Container(Children::default()),
        });
        self.ids.insert(key.clone(), id);
        let (objs, paths) = key;
        self.queue.push_back(Pending {
            id,
            objs,
            paths,
            deferred,
        });
        Ok(Some(id))
    }

    fn build(&mut self, pending: Pending) -> Result<(), Error> {
        let Pending {
            id,
            objs,
            paths,
            deferred,
        } = pending;
        let tag = objs
            .iter()
            .flat_map(|&o| &self.graph.objs[o].tags)
            .find(|tag| self.selection.tags().contains(tag));
        let by_path = paths
            .iter()
            .any(|path| self.selection.selects::<&str>(&steps(path), &[]));
        if tag.is_some() || by_path {
            let why = match tag {
                Some(tag) => format!("tagged {tag}"),
                None => "at a configured path".to_string(),
            };
            let kind = match self.check_string(id, &objs, &why) {
                Ok(()) => Ok(Kind::Selected),
                Err(reason) => match self.collection(id, &objs, &why) {
                    Some(children) => children.map(Kind::Container),
                    None => Err(reason),
                },
            };
            match kind {
                Ok(kind) => self.nodes[id].kind = kind,
                // Where only names matching several patterns lead, the schemas may
                // disagree about a member no record can have: the record's value is
                // checked instead (a string is protected, anything else refused).
                Err(reason) if !deferred => return Err(Error::Schema(reason)),
                Err(_) => self.nodes[id].kind = Kind::Selected,
            }
            return Ok(());
        }
        let children = self.children(id, &objs, &paths, deferred)?;
        self.nodes[id].kind = Kind::Container(children);
        Ok(())
    }

    /// Whether a selected field's schemas make it a string (or null) that a ciphertext
    /// can replace.
    fn check_string(&self, id: NodeId, objs: &[ObjId], why: &str) -> Result<(), String> {
        let at = shown(&self.nodes[id].at);
        let objs = objs.iter().map(|&o| &self.graph.objs[o]);
        let types = objs
            .clone()
            .filter_map(|obj| obj.types)
            .reduce(Types::union);
        let string_or_null = Types::STRING.union(Types::NULL);
        match types {
            Some(types) if string_or_null.contains(types) && types.contains(Types::STRING) => {
                // A constraint of a schema that allows no string (the `null` branch of a
                // `oneOf`) constrains no ciphertext.
                let constrains = |obj: &&Obj| {
                    !obj.constraints.is_empty()
                        && obj.types.is_none_or(|t| t.contains(Types::STRING))
                };
                match objs.clone().find(constrains) {
                    None => Ok(()),
                    Some(obj) => {
                        let keyword = obj.constraints[0];
                        let what = if why.starts_with("tagged") {
                            "the tag"
                        } else {
                            "the path"
                        };
                        Err(format!(
                            "field {at} is selected ({why}) but its schema has `{keyword}` \
                             ({}): a ciphertext may not satisfy it, so consumers that \
                             validate records would refuse the record; remove {what} or \
                             `{keyword}`",
                            obj.at
                        ))
                    }
                }
            }
            Some(types) => {
                let schema = objs
                    .clone()
                    .find(|obj| obj.types.is_some_and(|t| !string_or_null.contains(t)))
                    .or_else(|| objs.clone().find(|obj| obj.types.is_some()))
                    .map_or("", |obj| obj.at.as_str());
                Err(format!(
                    "field {at} is selected ({why}) but its schema type is {} ({schema}); \
                     only string fields, and arrays and maps of them, can be protected",
                    types.describe()
                ))
            }
            None => {
                let schema = objs
                    .clone()
                    .find(|obj| !obj.tags.is_empty())
                    .or_else(|| objs.clone().next())
                    .map_or("", |obj| obj.at.as_str());
                Err(format!(
                    "field {at} is selected ({why}) but its schema gives it no type \
                     ({schema}); only string fields, and arrays and maps of them, can be \
                     protected, so it must say \"type\": \"string\""
                ))
            }
        }
    }

    /// A selected array of strings (`"type": "array"` whose `items` are strings), or map
    /// of strings (`"type": "object"` with no `properties`, whose `additionalProperties`
    /// and any `patternProperties` are strings), either perhaps null: each element or
    /// value is selected, as a Protobuf tag on a `repeated string` field selects each
    /// element. `None` if the schemas do not make the field an array or such an object;
    /// an error if its elements or values are not strings a ciphertext can replace.
    fn collection(
        &mut self,
        id: NodeId,
        objs: &[ObjId],
        why: &str,
    ) -> Option<Result<Children, String>> {
        let graph = self.graph;
        let objs: Vec<&Obj> = objs.iter().map(|&o| &graph.objs[o]).collect();
        let types = objs
            .iter()
            .filter_map(|obj| obj.types)
            .reduce(Types::union)?;
        let is = |kind: Types| kind.union(Types::NULL).contains(types) && types.contains(kind);
        let collection = if is(Types::ARRAY) {
            Collection::Array
        } else if is(Types::OBJECT) && objs.iter().all(|obj| obj.properties.is_empty()) {
            Collection::Map
        } else {
            return None;
        };
        let at = self.nodes[id].at.clone();
        // The schemas of the elements or values, and whether all of them have one: some
        // `items` or `additionalProperties` must describe those no other keyword does.
        let (schemas, described): (Vec<ObjId>, bool) = match collection {
            Collection::Array => (
                objs.iter()
                    .flat_map(|obj| {
                        obj.prefix
                            .iter()
                            .copied()
                            .chain(obj.items)
                            .chain(obj.contains)
                    })
                    .collect(),
                objs.iter().any(|obj| obj.items.is_some()),
            ),
            Collection::Map => (
                objs.iter()
                    .flat_map(|obj| obj.patterns.iter().map(|(_, s)| *s).chain(obj.additional))
                    .collect(),
                objs.iter().any(|obj| obj.additional.is_some()),
            ),
        };
        if !described {
            let (what, keyword) = match collection {
                Collection::Array => ("an array", "items"),
                Collection::Map => ("an object", "additionalProperties"),
            };
            let schema = objs.first().map_or("", |obj| obj.at.as_str());
            return Some(Err(format!(
                "field {} is selected ({why}) but is {what} whose schema ({schema}) has no \
                 `{keyword}` schema: only string fields, and arrays and maps of them, can be \
                 protected, so it must say \"{keyword}\": {{\"type\": \"string\"}}",
                shown(&at)
            )));
        }
        let element_objs = self.closure(&schemas);
        let element = self.nodes.len();
        self.nodes.push(Node {
            at: format!("{at}/*"),
            kind: Kind::Selected,
        });
        if let Err(reason) = self.check_string(element, &element_objs, why) {
            return Some(Err(reason));
        }
        let mut children = Children {
            collection: Some(collection),
            rest: vec![None],
            ..Children::default()
        };
        match collection {
            Collection::Array => children.elements = Some(element),
            Collection::Map => children.rest = vec![Some(element)],
        }
        Some(Ok(children))
    }

    fn children(
        &mut self,
        id: NodeId,
        objs: &[ObjId],
        paths: &[Path],
        deferred: bool,
    ) -> Result<Children, Error> {
        let graph = self.graph;
        let objs: Vec<&_> = objs.iter().map(|&o| &graph.objs[o]).collect();
        self.work += objs
            .iter()
            .map(|obj| 1 + obj.properties.len() + obj.patterns.len() + obj.prefix.len())
            .sum::<usize>();
        if self.work > MAX_WORK {
            return Err(Error::Schema(
                "the schema is too complex to work out which fields to select".into(),
            ));
        }
        let parent_at = self.nodes[id].at.clone();
        let mut children = Children::default();

        // Members not named by `properties`: do they matter, and can they be told apart?
        let mut pattern_ids: Vec<usize> = objs
            .iter()
            .flat_map(|obj| obj.patterns.iter().map(|(p, _)| *p))
            .collect();
        pattern_ids.sort_unstable();
        pattern_ids.dedup();
        let map_paths = extend(paths, &StepBuf::MapValue);
        let map_routes: Vec<ObjId> = objs
            .iter()
            .flat_map(|obj| obj.patterns.iter().map(|(_, s)| *s).chain(obj.additional))
            .collect();
        let rest_matters = !map_routes.is_empty()
            && (map_paths.iter().any(|path| {
                let steps = steps(path);
                self.selection.selects::<&str>(&steps, &[])
                    || self.selection.may_select_below(&steps)
            }) || map_routes.iter().any(|&o| self.tagged_below[o]));
        if rest_matters {
            for &p in &pattern_ids {
                let pattern = &graph.patterns[p];
                if let Err(why) = &pattern.regex {
                    let schema = objs
                        .iter()
                        .find(|obj| obj.patterns.iter().any(|(q, _)| *q == p))
                        .map_or("", |obj| obj.at.as_str());
                    return Err(Error::Schema(format!(
                        "{schema}: patternProperties \"{}\" cannot be matched ({why}), and \
                         fields to select may be among the members it describes or does not",
                        pattern.text
                    )));
                }
            }
            if pattern_ids.len() > MAX_PATTERNS {
                return Err(Error::Schema(format!(
                    "{}: more than {MAX_PATTERNS} patternProperties describe the members \
                     of one object where fields to select may be",
                    shown(&parent_at)
                )));
            }
        }
        let matches = |p: usize, name: &str| {
            graph.patterns[p]
                .regex
                .as_ref()
                .is_ok_and(|regex| regex.is_match(name))
        };

        let mut names: Vec<&str> = objs
            .iter()
            .flat_map(|obj| obj.properties.iter().map(|(name, _)| name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let mut by_name = Vec::new();
            let mut by_map = Vec::new();
            for obj in &objs {
                let named = obj
                    .properties
                    .binary_search_by(|(n, _)| n.as_str().cmp(name))
                    .ok()
                    .map(|i| obj.properties[i].1);
                by_name.extend(named);
                let before = by_map.len();
                by_map.extend(
                    obj.patterns
                        .iter()
                        .filter(|(p, _)| matches(*p, name))
                        .map(|(_, s)| *s),
                );
                if by_map.len() == before && named.is_none() {
                    by_map.extend(obj.additional);
                }
            }
            let mut child_paths = Vec::new();
            if !by_name.is_empty() {
                child_paths.extend(extend(paths, &StepBuf::Field(name.to_string())));
            }
            if !by_map.is_empty() {
                child_paths.extend(map_paths.iter().cloned());
            }
            by_name.extend(by_map);
            let child_objs = self.closure(&by_name);
            let mut at = parent_at.clone();
            push_token(&mut at, name);
            let child = self.node(child_objs, child_paths, at, deferred)?;
            children.named.push((name.into(), child));
        }

        if rest_matters {
            children.patterns = pattern_ids
                .iter()
                .filter_map(|&p| graph.patterns[p].regex.clone().ok())
                .collect();
            for mask in 0..1usize << pattern_ids.len() {
                let matched = |p: usize| {
                    pattern_ids
                        .iter()
                        .position(|&q| q == p)
                        .is_some_and(|i| mask & 1 << i != 0)
                };
                let mut by_map = Vec::new();
                for obj in &objs {
                    let before = by_map.len();
                    by_map.extend(
                        obj.patterns
                            .iter()
                            .filter(|(p, _)| matched(*p))
                            .map(|(_, s)| *s),
                    );
                    if by_map.len() == before {
                        by_map.extend(obj.additional);
                    }
                }
                let child_objs = self.closure(&by_map);
                let at = format!("{parent_at}/*");
                // Several patterns at once: perhaps no name matches them all.
                let deferred = deferred || mask.count_ones() > 1;
                children
                    .rest
                    .push(self.node(child_objs, map_paths.clone(), at, deferred)?);
            }
        } else {
            children.rest.push(None);
        }

        let element_paths = extend(paths, &StepBuf::Element);
        let element_at = format!("{parent_at}/*");
        let longest_prefix = objs.iter().map(|obj| obj.prefix.len()).max().unwrap_or(0);
        for index in 0..longest_prefix {
            let schemas: Vec<ObjId> = objs
                .iter()
                .flat_map(|obj| {
                    match obj.prefix.get(index) {
                        Some(&schema) => Some(schema),
                        None => obj.items,
                    }
                    .into_iter()
                    .chain(obj.contains)
                })
                .collect();
            let child_objs = self.closure(&schemas);
            let child = self.node(
                child_objs,
                element_paths.clone(),
                element_at.clone(),
                deferred,
            )?;
            children.prefix.push(child);
        }
        let schemas: Vec<ObjId> = objs
            .iter()
            .flat_map(|obj| obj.items.into_iter().chain(obj.contains))
            .collect();
        let child_objs = self.closure(&schemas);
        children.elements = self.node(child_objs, element_paths, element_at, deferred)?;
        Ok(children)
    }

    /// Drops the nodes from which nothing is selected.
    fn finish(mut self, root: Option<NodeId>) -> Tree {
        let count = self.nodes.len();
        let mut parents = vec![Vec::new(); count];
        let mut relevant = vec![false; count];
        let mut work = Vec::new();
        for (id, node) in self.nodes.iter().enumerate() {
            match &node.kind {
                Kind::Container(children) => {
                    for child in children.each() {
                        parents[child].push(id);
                    }
                }
                Kind::Selected => {
                    relevant[id] = true;
                    work.push(id);
                }
            }
        }
        while let Some(id) = work.pop() {
            for &parent in &parents[id] {
                if !relevant[parent] {
                    relevant[parent] = true;
                    work.push(parent);
                }
            }
        }
        for node in &mut self.nodes {
            if let Kind::Container(children) = &mut node.kind {
                children.prune(&relevant);
            }
        }
        Tree {
            nodes: self.nodes,
            root: root.filter(|&id| relevant[id]),
        }
    }
}

/// A schema path for a reason: the root's is empty, which reads badly alone.
pub(super) fn shown(at: &str) -> &str {
    if at.is_empty() {
        "\"\" (the whole record)"
    } else {
        at
    }
}

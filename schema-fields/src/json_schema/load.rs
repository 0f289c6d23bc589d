//! The schema documents as a graph of schema objects: each subschema the walk can reach
//! from the root, once, with what a walk needs of it (its types, tags, and where its
//! members' and elements' schemas are) and the schemas that apply at the same place in a
//! record (`allOf`, `anyOf`, `oneOf`, `$ref`, ...). `$ref`s are resolved here, so cycles
//! are edges of the graph and nothing recurses along them.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::regex::Regex;
use crate::{Error, SchemaText};

pub(super) type ObjId = usize;

/// JSON Schema's `type` names, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Types(u8);

impl Types {
    const NAMES: [&'static str; 7] = [
        "null", "boolean", "object", "array", "number", "integer", "string",
    ];
    pub(super) const NULL: Types = Types(1);
    pub(super) const OBJECT: Types = Types(1 << 2);
    pub(super) const ARRAY: Types = Types(1 << 3);
    pub(super) const STRING: Types = Types(1 << 6);

    fn named(name: &str) -> Option<Types> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Types(1 << i))
    }

    pub(super) fn union(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    pub(super) fn contains(self, other: Types) -> bool {
        self.0 & other.0 == other.0
    }

    /// Readable, for reasons: `integer`, `["string", "number"]`.
    pub(super) fn describe(self) -> String {
        let names: Vec<&str> = (0..Self::NAMES.len())
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
            .collect();
        match names.as_slice() {
            [one] => (*one).to_string(),
            names => format!("{names:?}"),
        }
    }
}

/// One subschema.
#[derive(Debug, Default)]
pub(super) struct Obj {
    /// Where it is, for reasons: `#/properties/ssn`, `customer.json#/$defs/Name`.
    pub at: String,
    pub types: Option<Types>,
    pub tags: Vec<String>,
    /// The keywords of [`STRING_CONSTRAINTS`] it has.
    pub constraints: Vec<&'static str>,
    /// `properties`, sorted by name.
    pub properties: Vec<(String, ObjId)>,
    /// `patternProperties`: an index into [`Graph::patterns`], and the schema.
    pub patterns: Vec<(usize, ObjId)>,
    /// The schema of members neither `properties` nor `patternProperties` name.
    pub additional: Option<ObjId>,
    /// The schemas of the first elements (`prefixItems`, or `items` as an array).
    pub prefix: Vec<ObjId>,
    /// The schema of the elements after those.
    pub items: Option<ObjId>,
    /// `contains`: the schema of some elements, any of them.
    pub contains: Option<ObjId>,
    /// The schemas that apply at the same place in a record.
    pub applicators: Vec<ObjId>,
}

impl Obj {
    /// Every schema this one leads to.
    pub(super) fn edges(&self) -> impl Iterator<Item = ObjId> + '_ {
        self.properties
            .iter()
            .map(|(_, id)| *id)
            .chain(self.patterns.iter().map(|(_, id)| *id))
            .chain(self.additional)
            .chain(self.prefix.iter().copied())
            .chain(self.items)
            .chain(self.contains)
            .chain(self.applicators.iter().copied())
    }
}

/// The keywords that constrain a string in a way its ciphertext (`vault:v1:<base64>`) may
/// not satisfy: a consumer validating a record whose field is protected would refuse it.
/// (`minLength` is no such keyword: a ciphertext is longer than its plaintext.)
pub(super) const STRING_CONSTRAINTS: [&str; 7] = [
    "pattern",
    "maxLength",
    "format",
    "enum",
    "const",
    "contentEncoding",
    "contentMediaType",
];

/// A `patternProperties` pattern, and whether this walker can match it.
#[derive(Debug)]
pub(super) struct Pattern {
    pub text: String,
    pub regex: Result<Regex, String>,
}

#[derive(Debug)]
pub(super) struct Graph {
    /// The root schema is the first.
    pub objs: Vec<Obj>,
    pub patterns: Vec<Pattern>,
}

/// How many subschemas a schema may have: loading is bounded whatever the registry holds.
const MAX_OBJS: usize = 100_000;

pub(super) fn load(text: &SchemaText) -> Result<Graph, Error> {
    let mut loader = Loader::default();
    let mut docs = vec![loader.document(0, String::new(), &text.text)?];
    for reference in &text.references {
        docs.push(loader.document(docs.len(), reference.name.clone(), &reference.text)?);
    }
    let root_base = docs[0].base.clone();
    loader.docs = Rc::new(docs);
    loader.obj(0, String::new(), root_base);
    while let Some(id) = loader.queue.pop() {
        loader.fill(id)?;
    }
    Ok(Graph {
        objs: loader.objs,
        patterns: loader.patterns,
    })
}

/// A place in the documents: a document's index and a JSON Pointer into it.
type Location = (usize, String);

/// Where a reference leads: the place, and the base URI of the resource there.
type Target = (Location, String);

struct Doc {
    /// The reference's name, empty for the root: how `at` names the document.
    label: String,
    base: String,
    value: Value,
}

#[derive(Default)]
struct Loader {
    /// Shared, so that a subschema is read in place while the graph grows.
    docs: Rc<Vec<Doc>>,
    /// Schema resources by URI (`$id`s, reference names), fragment-less.
    resources: HashMap<String, Target>,
    /// `$anchor`s (and draft 7's `"$id": "#name"`) by `uri#name`.
    anchors: HashMap<String, Target>,
    /// `$dynamicAnchor`s by name, and `$recursiveAnchor: true` resources: where a
    /// `$dynamicRef` or `$recursiveRef` may lead.
    dynamic_anchors: BTreeMap<String, Vec<Target>>,
    recursive_anchors: Vec<Target>,
    objs: Vec<Obj>,
    /// Each object's location and base URI, until it is filled.
    pending: HashMap<ObjId, (Location, String)>,
    ids: HashMap<Location, ObjId>,
    queue: Vec<ObjId>,
    patterns: Vec<Pattern>,
    pattern_ids: HashMap<String, usize>,
}

impl Loader {
    /// Reads document `index`, named `name` (empty for the root), and registers what
    /// references can find in it.
    fn document(&mut self, index: usize, name: String, text: &str) -> Result<Doc, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Schema(format!("{} is not JSON: {e}", describe_doc(&name))))?;
        let base = match value.get("$id").and_then(Value::as_str) {
            Some(id) if !id.starts_with('#') => resolve(&name, strip_fragment(id)),
            _ => name.clone(),
        };
        // Found by the name the referencing schema uses, and by its `$id`.
        self.resources
            .entry(name.clone())
            .or_insert_with(|| ((index, String::new()), base.clone()));
        self.scan(index, &value, String::new(), &base);
        Ok(Doc {
            label: name,
            base,
            value,
        })
    }

    /// Registers the resources and anchors in `value` (at `pointer` in document `doc`).
    fn scan(&mut self, doc: usize, value: &Value, pointer: String, base: &str) {
        let Value::Object(map) = value else {
            if let Value::Array(items) = value {
                for (i, item) in items.iter().enumerate() {
                    self.scan(doc, item, format!("{pointer}/{i}"), base);
                }
            }
            return;
        };
        let mut base = base.to_string();
        if let Some(id) = map.get("$id").and_then(Value::as_str) {
            if let Some(anchor) = id.strip_prefix('#') {
                if !anchor.is_empty() {
                    self.anchors
                        .entry(format!("{base}#{anchor}"))
                        .or_insert_with(|| ((doc, pointer.clone()), base.clone()));
                }
            } else {
                base = resolve(&base, strip_fragment(id));
                self.resources
                    .entry(base.clone())
                    .or_insert_with(|| ((doc, pointer.clone()), base.clone()));
            }
        }
        for keyword in ["$anchor", "$dynamicAnchor"] {
            if let Some(anchor) = map.get(keyword).and_then(Value::as_str) {
                self.anchors
                    .entry(format!("{base}#{anchor}"))
                    .or_insert_with(|| ((doc, pointer.clone()), base.clone()));
            }
        }
        if let Some(anchor) = map.get("$dynamicAnchor").and_then(Value::as_str) {
            self.dynamic_anchors
                .entry(anchor.to_string())
                .or_default()
                .push(((doc, pointer.clone()), base.clone()));
        }
        if map.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
            self.recursive_anchors
                .push(((doc, pointer.clone()), base.clone()));
        }
        for (key, child) in map {
            // Values, not schemas: an `$id` in an example is no resource.
            if matches!(key.as_str(), "enum" | "const" | "examples" | "default") {
                continue;
            }
            self.scan(doc, child, child_pointer(&pointer, key), &base);
        }
    }

    /// The object at `pointer` in `doc`, created (and queued to be filled) if new.
    fn obj(&mut self, doc: usize, pointer: String, base: String) -> ObjId {
        let location = (doc, pointer);
        if let Some(&id) = self.ids.get(&location) {
            return id;
        }
        let id = self.objs.len();
        let label = &self.docs[doc].label;
        self.objs.push(Obj {
            at: format!("{label}#{}", location.1),
            ..Obj::default()
        });
        self.ids.insert(location.clone(), id);
        self.pending.insert(id, (location, base));
        self.queue.push(id);
        id
    }

    fn fill(&mut self, id: ObjId) -> Result<(), Error> {
        if self.objs.len() > MAX_OBJS {
            return Err(Error::Schema(format!(
                "more than {MAX_OBJS} subschemas to walk"
            )));
        }
        let Some(((doc, pointer), base)) = self.pending.remove(&id) else {
            return Ok(());
        };
        let at = self.objs[id].at.clone();
        let docs = Rc::clone(&self.docs);
        let Some(value) = docs[doc].value.pointer(&pointer) else {
            return Err(Error::Schema(format!("{at}: there is no schema there")));
        };
        let map = match value {
            // `true` allows anything and `false` nothing: neither describes a field.
            Value::Bool(_) => return Ok(()),
            Value::Object(map) => map,
            _ => {
                return Err(Error::Schema(format!(
                    "{at} is not a schema (an object or a boolean)"
                )))
            }
        };
        let base = match map.get("$id").and_then(Value::as_str) {
            Some(id) if !id.starts_with('#') => resolve(&base, strip_fragment(id)),
            _ => base,
        };
        let mut obj = Obj {
            at: at.clone(),
            ..Obj::default()
        };
        let here = Here {
            doc,
            pointer: &pointer,
            base: &base,
            at: &at,
        };

        obj.types = match map.get("type") {
            None => None,
            Some(Value::String(name)) => Some(type_named(name, &at)?),
            Some(Value::Array(names)) => {
                let mut types = Types::default();
                for name in names {
                    let Value::String(name) = name else {
                        return Err(Error::Schema(format!("{at}: `type` lists a non-string")));
                    };
                    types = types.union(type_named(name, &at)?);
                }
                Some(types)
            }
            Some(_) => {
                return Err(Error::Schema(format!(
                    "{at}: `type` is neither a string nor an array"
                )))
            }
        };
        obj.tags = match map.get("confluent:tags") {
            None => Vec::new(),
            Some(Value::Array(tags)) => tags
                .iter()
                .map(|tag| tag.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::Schema(format!("{at}: `confluent:tags` lists a non-string"))
                })?,
            Some(_) => {
                return Err(Error::Schema(format!(
                    "{at}: `confluent:tags` is not an array"
                )))
            }
        };
        obj.constraints = STRING_CONSTRAINTS
            .into_iter()
            .filter(|keyword| map.contains_key(*keyword))
            .collect();

        for (name, _) in members(map, "properties", &at)? {
            let child = self.obj(
                doc,
                keyword_pointer(&pointer, "properties", name),
                base.clone(),
            );
            obj.properties.push((name.clone(), child));
        }
        obj.properties.sort_by(|a, b| a.0.cmp(&b.0));
        for (text, _) in members(map, "patternProperties", &at)? {
            let child = self.obj(
                doc,
                keyword_pointer(&pointer, "patternProperties", text),
                base.clone(),
            );
            let index = self.pattern(text);
            obj.patterns.push((index, child));
        }
        obj.additional = match map.get("additionalProperties") {
            Some(_) => self.child(map, "additionalProperties", &here),
            // Approximated by the members this schema names itself: a superset of the
            // members it describes, so nothing selected is missed.
            None => self.child(map, "unevaluatedProperties", &here),
        };

        let rest_keyword = if let Some(prefix) = map.get("prefixItems") {
            obj.prefix = self.schemas(prefix, "prefixItems", &here)?;
            "items"
        } else if let Some(items @ Value::Array(_)) = map.get("items") {
            obj.prefix = self.schemas(items, "items", &here)?;
            "additionalItems"
        } else {
            "items"
        };
        obj.items = match map.get(rest_keyword) {
            Some(_) => self.child(map, rest_keyword, &here),
            None => self.child(map, "unevaluatedItems", &here),
        };
        obj.contains = self.child(map, "contains", &here);

        // Every branch applies as far as selection goes: a field selected in any branch
        // is selected, whichever branch a record matches (fail closed).
        for keyword in ["allOf", "anyOf", "oneOf"] {
            if let Some(list) = map.get(keyword) {
                let branches = self.schemas(list, keyword, &here)?;
                obj.applicators.extend(branches);
            }
        }
        for keyword in ["if", "then", "else"] {
            obj.applicators.extend(self.child(map, keyword, &here));
        }
        for keyword in ["dependentSchemas", "dependencies"] {
            for (name, schema) in members(map, keyword, &at)? {
                // `dependencies` also lists required properties, as arrays.
                if schema.is_object() {
                    let child =
                        self.obj(doc, keyword_pointer(&pointer, keyword, name), base.clone());
                    obj.applicators.push(child);
                }
            }
        }
        if let Some(reference) = map.get("$ref") {
            let Value::String(reference) = reference else {
                return Err(Error::Schema(format!("{at}: `$ref` is not a string")));
            };
            let target = self.resolve_ref(reference, &base, &at)?;
            obj.applicators.push(self.located(target));
        }
        for keyword in ["$dynamicRef", "$recursiveRef"] {
            let Some(reference) = map.get(keyword) else {
                continue;
            };
            let Value::String(reference) = reference else {
                return Err(Error::Schema(format!("{at}: `{keyword}` is not a string")));
            };
            // Where the dynamic scope leads depends on the path a record took; every
            // schema it could lead to applies (fail closed), the static target too.
            let mut targets = vec![self.resolve_ref(reference, &base, &at)?];
            if keyword == "$recursiveRef" {
                targets.extend(self.recursive_anchors.iter().cloned());
            } else if let Some((_, anchor)) = reference.split_once('#') {
                targets.extend(
                    self.dynamic_anchors
                        .get(anchor)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
            for target in targets {
                let child = self.located(target);
                obj.applicators.push(child);
            }
        }
        obj.applicators.sort_unstable();
        obj.applicators.dedup();
        self.objs[id] = obj;
        Ok(())
    }

    /// The object a reference leads to.
    fn located(&mut self, ((doc, pointer), base): Target) -> ObjId {
        self.obj(doc, pointer, base)
    }

    /// The schemas of an array-valued keyword (`allOf`, `prefixItems`, ...).
    fn schemas(&mut self, list: &Value, keyword: &str, here: &Here) -> Result<Vec<ObjId>, Error> {
        let Value::Array(list) = list else {
            return Err(Error::Schema(format!(
                "{}: `{keyword}` is not an array",
                here.at
            )));
        };
        // Every entry, `false` ones too: `prefixItems` go by position.
        Ok((0..list.len())
            .map(|i| {
                self.obj(
                    here.doc,
                    format!("{}/{i}", child_pointer(here.pointer, keyword)),
                    here.base.to_string(),
                )
            })
            .collect())
    }

    /// The schema of a schema-valued keyword, unless it is absent or a boolean: a
    /// boolean describes no field.
    fn child(&mut self, map: &Map<String, Value>, keyword: &str, here: &Here) -> Option<ObjId> {
        match map.get(keyword)? {
            Value::Bool(_) => None,
            _ => Some(self.obj(
                here.doc,
                child_pointer(here.pointer, keyword),
                here.base.to_string(),
            )),
        }
    }

    fn pattern(&mut self, text: &str) -> usize {
        if let Some(&index) = self.pattern_ids.get(text) {
            return index;
        }
        let index = self.patterns.len();
        self.patterns.push(Pattern {
            text: text.to_string(),
            regex: Regex::parse(text),
        });
        self.pattern_ids.insert(text.to_string(), index);
        index
    }

    /// Where a `$ref` (`#/$defs/X`, `other.json`, `other.json#/definitions/X`,
    /// `#anchor`) leads.
    fn resolve_ref(&self, reference: &str, base: &str, at: &str) -> Result<Target, Error> {
        let unresolved = || {
            Error::Schema(format!(
                "{at}: `$ref` \"{reference}\" names no schema in the document or its references"
            ))
        };
        let (uri, fragment) = match reference.split_once('#') {
            Some((uri, fragment)) => (uri, fragment),
            None => (reference, ""),
        };
        let resolved = resolve(base, uri);
        // As resolved against the base URI, or as written: a reference's name is what
        // the referencing schema writes.
        let candidates = [resolved.as_str(), uri];
        let fragment = percent_decode(fragment).ok_or_else(unresolved)?;
        if fragment.is_empty() || fragment.starts_with('/') {
            let ((doc, root), base) = candidates
                .iter()
                .find_map(|uri| self.resources.get(*uri))
                .ok_or_else(unresolved)?;
            let pointer = format!("{root}{fragment}");
            if self.docs[*doc].value.pointer(&pointer).is_none() {
                return Err(unresolved());
            }
            Ok(((*doc, pointer), base.clone()))
        } else {
            candidates
                .iter()
                .find_map(|uri| self.anchors.get(&format!("{uri}#{fragment}")))
                .cloned()
                .ok_or_else(unresolved)
        }
    }
}

/// The object being filled: where its children are.
struct Here<'a> {
    doc: usize,
    pointer: &'a str,
    base: &'a str,
    at: &'a str,
}

/// The members of an object-valued keyword (`properties`, ...), or none.
fn members<'m>(
    map: &'m Map<String, Value>,
    keyword: &str,
    at: &str,
) -> Result<Vec<(&'m String, &'m Value)>, Error> {
    match map.get(keyword) {
        None => Ok(Vec::new()),
        Some(Value::Object(members)) => Ok(members.iter().collect()),
        Some(_) => Err(Error::Schema(format!("{at}: `{keyword}` is not an object"))),
    }
}

fn type_named(name: &str, at: &str) -> Result<Types, Error> {
    Types::named(name)
        .ok_or_else(|| Error::Schema(format!("{at}: `type` \"{name}\" is not a JSON Schema type")))
}

fn describe_doc(label: &str) -> String {
    if label.is_empty() {
        "the schema".to_string()
    } else {
        format!("the referenced schema \"{label}\"")
    }
}

fn child_pointer(pointer: &str, token: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + token.len() + 1);
    out.push_str(pointer);
    crate::path::push_token(&mut out, token);
    out
}

fn keyword_pointer(pointer: &str, keyword: &str, name: &str) -> String {
    child_pointer(&child_pointer(pointer, keyword), name)
}

fn strip_fragment(uri: &str) -> &str {
    uri.split_once('#').map_or(uri, |(uri, _)| uri)
}

/// A URI fragment's text (`%25` is `%`); `None` if it is not UTF-8 once decoded.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `reference` resolved against `base` (RFC 3986, section 5.2, without query strings):
/// enough for `$id`s and `$ref`s, which are URLs or relative paths.
pub(super) fn resolve(base: &str, reference: &str) -> String {
    if reference.is_empty() {
        return base.to_string();
    }
    if scheme_length(reference).is_some() {
        return normalize(reference, 0);
    }
    // The part of the base that a reference of this kind keeps.
    let authority_end = scheme_length(base).map(|scheme| {
        let rest = &base[scheme + 1..];
        match rest.strip_prefix("//") {
            Some(after) => scheme + 3 + after.find('/').unwrap_or(after.len()),
            None => scheme + 1,
        }
    });
    let kept = if reference.starts_with("//") {
        scheme_length(base).map_or(0, |scheme| scheme + 1)
    } else if reference.starts_with('/') {
        authority_end.unwrap_or(0)
    } else {
        let start = authority_end.unwrap_or(0);
        match base[start..].rfind('/') {
            Some(slash) => start + slash + 1,
            None if authority_end.is_some_and(|end| end > 0 && base[..end].contains("//")) => {
                // `http://host` + `a.json` is `http://host/a.json`.
                return normalize(&format!("{base}/{reference}"), start);
            }
            None => start,
        }
    };
    normalize(
        &format!("{}{reference}", &base[..kept]),
        authority_end.unwrap_or(0).min(kept),
    )
}

/// The length of `uri`'s scheme, if it has one (`http:`, `urn:`).
fn scheme_length(uri: &str) -> Option<usize> {
    let colon = uri.find(':')?;
    let scheme = &uri[..colon];
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(colon)
}

/// Removes `.` and `..` segments from the path that starts at `path_start`.
fn normalize(uri: &str, path_start: usize) -> String {
    let (head, path) = uri.split_at(path_start.min(uri.len()));
    if !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return uri.to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, segment) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *segment {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                if segments.len() > 1 || segments.first().is_some_and(|s| !s.is_empty()) {
                    segments.pop();
                }
                if last {
                    segments.push("");
                }
            }
            segment => segments.push(segment),
        }
    }
    format!("{head}{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_against_their_base() {
        assert_eq!(resolve("", "customer.json"), "customer.json");
        assert_eq!(resolve("order.json", "customer.json"), "customer.json");
        assert_eq!(
            resolve("http://example.com/schemas/order.json", "customer.json"),
            "http://example.com/schemas/customer.json"
        );
        assert_eq!(
            resolve(
                "http://example.com/schemas/order.json",
                "../common/name.json"
            ),
            "http://example.com/common/name.json"
        );
        assert_eq!(
            resolve("http://example.com/schemas/order.json", "/x.json"),
            "http://example.com/x.json"
        );
        assert_eq!(
            resolve("http://example.com", "a.json"),
            "http://example.com/a.json"
        );
        assert_eq!(
            resolve("http://example.com/a.json", "urn:example:b"),
            "urn:example:b"
        );
        assert_eq!(resolve("dir/a.json", "./b.json"), "dir/b.json");
        assert_eq!(resolve("a.json", ""), "a.json");
    }

    #[test]
    fn fragments_are_percent_decoded() {
        assert_eq!(
            percent_decode("/$defs/a%20b").as_deref(),
            Some("/$defs/a b")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%"), None);
    }
}

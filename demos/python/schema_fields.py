"""Opens the fields kafka-transit's `encrypt-schema-fields` protected (docs/schema-fields.md)
in Avro, Protobuf and JSON Schema records, after confluent-kafka's ordinary deserializers
have read them: no kafka-transit code, only the Schema Registry and Vault's transit/decrypt.

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from schema_fields import BatchTransit, FieldOpener, ProtectedFieldsDeserializer

    registry = SchemaRegistryClient({"url": "http://registry:8081"})
    opener = FieldOpener(BatchTransit(VAULT_ADDR, VAULT_TOKEN), registry, key="customers")
    deserializer = ProtectedFieldsDeserializer(AvroDeserializer(registry), opener)
    record = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
    records = deserializer.open_many([(m.value(), ctx) for m in messages])  # one Vault request

    # JSONDeserializer(None, schema_registry_client=registry) gives dicts the same way, and
    # ProtobufDeserializer(Customer, conf) messages of your generated class; the writer
    # schema (which fields are tagged) always comes from the registry by the record's id.

A field is protected when the record's *writer* schema tags it with one of `tags` (default
["PII"]): the Avro field property "confluent:tags", the JSON Schema keyword "confluent:tags"
(wherever a property's schema is made of: $ref, allOf/anyOf/oneOf, if/then/else,
$defs, items, additionalProperties, patternProperties), the Protobuf field option
(confluent.field_meta).tags; or when its path is in `fields` (JSON Pointers over the
record's shape, `*` for every element, map value or field: "/phones/*/number"). The walk
goes into nested records, arrays, maps, unions and oneofs; a null or unset field is not
there. A selected array or map of strings or bytes (Avro array/map, JSON Schema array with
string `items` or object with no `properties` and string `additionalProperties`, Protobuf
repeated/map field) has each element or value protected ("/tags/0", "/attrs/<key>"; "/tags"
and "/tags/*" select the same). Refused, as the runner refuses them: a selected field of
another type, an Avro string or bytes with a logicalType, a JSON Schema string with pattern,
maxLength, format, enum, const, contentEncoding or contentMediaType in any of its schemas.
A string field's ciphertext text becomes the decrypted string, a bytes field's UTF-8
ciphertext text the decrypted bytes. Every field of every record given to one
`open_many` goes to Vault in one `transit/decrypt/<key>` batch request (one per key),
with the derivation context the policy used: none, a fixed `context`, the record key
(`context_from="record-key"`, with `open_many`'s record keys), or with
`deterministic=True` each field's located path ("/phones/1/number", "/attributes/<key>").

Format 3 (docs/protected-records.md; what encrypt-schema-fields writes with `bind`,
`record_keys` or `stream`): a record with the kafka-transit.protection header has each
field bound to its flags, the stream (option `stream`, default the topic read), the record
key as received and the field's located path, passed to Vault as `associated_data`. Give
the headers and topic (SerializationContext(topic, MessageField.VALUE, message.headers())
or open_many's items) and, for records bound to their key, the record key:

    opener = FieldOpener(transit, registry, key="customers", record_keys_key="customer-ids",
                         require_binding=("stream", "key"))
    records = deserializer.open_many([(m.value(), SerializationContext(m.topic(), MessageField.VALUE,
                                       m.headers()), m.key()) for m in messages])
    key = opener.open_key(m.key(), SerializationContext(m.topic(), MessageField.KEY, m.headers()))

A field moved to another place, record key or stream fails ("authentication");
`require_binding` refuses records bound to less or without the header; `open_key`
restores an encrypted record key and refuses an HMAC'd one unless `keep_hmac_keys`.

Never is ciphertext returned as data: a protected field that is not a vault:v ciphertext,
a Vault refusal, a schema that cannot be read, raise `FieldError` (its `kind` says which),
whose message names the schema id and the schema path, never a value.

File mode, for CI (Vault from VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT):

    python3 schema_fields.py open-file --in IN --out OUT --registry URL --format avro \\
        --key customers [--tags PII ...] [--fields /a/b ...] [--deterministic] \\
        [--stream S] [--record-keys-key K] [--require-binding stream key] [--keep-hmac-keys]

IN: JSON lines {"key": base64 or null, "value": base64 or null}, as on the protected
topic, and for format 3 "topic" (the stream, unless --stream) and "headers" ([name,
base64 or null] in order). OUT: the same lines with each value opened and serialized
again by confluent-kafka's serializer for the format under the record's own schema id
(and for Protobuf its message indexes), no schema registered, the key restored, the
protection header left out; {"key": ..., "error": "..."} for a record that could not be
opened.

Protobuf writer schemas come as the registry keeps them: base64 FileDescriptorProtos, or
.proto text (Confluent's registry and Java producers; Apicurio serves text registered as
text, and cannot serve `?format=serialized` reliably), parsed here without protoc.

Needs: pip install 'confluent-kafka[avro,json,protobuf,schemaregistry]' requests (see
requirements.txt). Tests: python3 -m pytest demos/python/test_schema_fields.py
"""
import argparse
import base64
import binascii
import functools
import json
import os
import re
import struct
import sys

import requests

from envelope_decrypt import (COMPRESSION_MASK, HEADERS, KEY, KEYS_HMAC, PADDED, PROTECTION_HEADER,
                               RECORD_KEYS_MASK, STREAM, EnvelopeError, binding, key_name_problem, record_flags,
                               restore_record_key)
from transit import Transit, TransitError, b64

VAULT_PREFIX = "vault:v"
# What AvroDeserializer and JSONDeserializer give without from_dict (Avro: a union's
# record as a (name, dict) tuple with return_record_name).
PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None))
FORMATS = ("avro", "json", "protobuf")
# Records, arrays and maps nested deeper than this are refused (as the runner does).
MAX_DEPTH = 64


class FieldError(Exception):
    """A record whose protected fields cannot be opened. `kind`: "frame" (not Confluent's
    wire format), "registry" (the schema id is unknown, or the registry failed), "schema"
    (the writer schema cannot be read, or selects a field that is not string or bytes nor
    an array or map of them, or one a ciphertext would make invalid: an Avro logical type,
    a JSON Schema pattern, maxLength, format, enum, const, contentEncoding or contentMediaType),
    "not ciphertext" (a protected field that is not a vault:v ciphertext), "vault" (Vault
    refused or could not be reached), "plaintext" (a string field decrypted to bytes that
    are not UTF-8); for format 3 (docs/protected-records.md): "flags" (a protection header
    that is not "3;XX", unknown flags, two headers, or flags a field record never has:
    sealed headers, padding, compression), "unbound" (the record is bound to less than
    `require_binding`, or has no protection header and `require_binding` is set),
    "authentication" (a field does not authenticate with its binding: moved to another
    place, record key or stream, or its protection header altered), "config" (what the
    record needs and the opener was not given: the stream, the record key,
    `record_keys_key`), "record key" (an HMAC'd record key without `keep_hmac_keys`, or
    an encrypted one that is not a Vault ciphertext). Messages name schema ids and schema
    paths, never record data."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------
# Confluent's wire format


def unframe(value: bytes, protobuf: bool = False):
    """(schema id, message indexes or None, offset of the encoded record)."""
    if value is None or len(value) < 5 or value[0] != 0:
        raise FieldError("the value is not in Confluent's wire format (magic byte 0, a 4-byte schema id)", "frame")
    schema_id = struct.unpack(">I", value[1:5])[0]
    if not protobuf:
        return schema_id, None, 5
    pos = 5

    def varint():
        nonlocal pos
        result = shift = 0
        while True:
            if pos >= len(value) or shift > 63:
                raise FieldError(f"value (schema id {schema_id}): truncated Protobuf message indexes", "frame")
            byte = value[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)  # zigzag

    count = varint()
    if count < 0 or count > 100:
        raise FieldError(f"value (schema id {schema_id}): {count} Protobuf message indexes", "frame")
    indexes = [varint() for _ in range(count)] or [0]
    return schema_id, indexes, pos


def frame(schema_id: int, payload: bytes, message_indexes=None) -> bytes:
    """Confluent's framing, message indexes as the serializers write them ([0] as one 0)."""
    out = bytearray(b"\x00" + struct.pack(">I", schema_id))
    if message_indexes is not None:
        indexes = [] if list(message_indexes) == [0] else list(message_indexes)
        for number in [len(indexes)] + indexes:
            number = ((number << 1) ^ (number >> 63)) & 0xFFFFFFFFFFFFFFFF  # zigzag
            while True:
                byte = number & 0x7F
                number >>= 7
                out.append(byte | (0x80 if number else 0))
                if not number:
                    break
    return bytes(out) + payload


# ---------------------------------------------------------------------------------------
# Which fields: tags and paths


def _token(name: str) -> str:
    """One RFC 6901 reference token (`~` as `~0`, `/` as `~1`)."""
    return "/" + str(name).replace("~", "~0").replace("/", "~1")


ELEMENT, MAP_VALUE = ("*element",), ("*value",)


def _field(name: str):
    return ("field", name)


class Selection:
    """Fields carrying one of `tags`, and fields at one of the `fields` paths. A schema
    path is a tuple of steps: ("field", name), ELEMENT or MAP_VALUE."""

    def __init__(self, tags=("PII",), fields=()):
        self.tags = frozenset(tags)
        self.patterns = [self._parse(text) for text in fields]
        if not self.tags and not self.patterns:
            raise ValueError("tags and fields are both empty: no field would be opened")

    @staticmethod
    def _parse(text: str):
        if not text.startswith("/"):
            raise ValueError(f'field path "{text}" must start with "/" (a JSON Pointer such as "/customer/ssn")')
        tokens = []
        for raw in text[1:].split("/"):
            if raw == "*":
                tokens.append(None)
                continue
            if re.search(r"~(?![01])", raw):
                raise ValueError(f'field path "{text}": `~` must be followed by 0 or 1')
            tokens.append(raw.replace("~1", "/").replace("~0", "~"))
        return tokens

    @staticmethod
    def _prefix(tokens, steps) -> bool:
        return all(token is None or step == _field(token) for token, step in zip(tokens, steps))

    def selects(self, steps, tags=()) -> bool:
        return (any(tag in self.tags for tag in tags)
                or any(len(p) == len(steps) and self._prefix(p, steps) for p in self.patterns))

    def may_select_below(self, steps) -> bool:
        return any(len(p) > len(steps) and self._prefix(p, steps) for p in self.patterns)


class Slot:
    """A protected field found in a deserialized record; `refusal`: why it cannot be
    opened (it is not a ciphertext), raised once the whole record is walked."""
    __slots__ = ("path", "where", "kind", "ciphertext", "assign", "refusal")

    def __init__(self, path, where, kind, ciphertext, assign, refusal=None):
        self.path, self.where, self.kind, self.ciphertext, self.assign = path, where, kind, ciphertext, assign
        self.refusal = refusal


def _slot(value, path: str, where: str, assign) -> Slot:
    """A protected field's value, which must be a ciphertext: text, or its UTF-8 bytes.
    One that is not is refused after the walk (see FieldOpener.locate), so that a schema
    error further on is the reason: the schema is refused for every record, as the runner
    refuses it, whatever the record holds."""
    if isinstance(value, str):
        kind, text = "string", value
    elif isinstance(value, (bytes, bytearray)):
        kind = "bytes"
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = ""
    else:
        return Slot(path, where, None, None, assign, FieldError(
            f"field {where or '(the whole record)'} is protected but the deserializer gave {type(value).__name__}, "
            "not Vault transit ciphertext text (a logical type?)", "not ciphertext"))
    if not text.startswith(VAULT_PREFIX):
        return Slot(path, where, kind, None, assign, FieldError(
            f"field {where or '(the whole record)'} is protected but is not a Vault transit ciphertext (expected "
            "vault:v<N>:...)", "not ciphertext"))
    return Slot(path, where, kind, text, assign)


def _schema_error(where: str, why: str, what: str) -> FieldError:
    return FieldError(f"field {where} {why} but is {what}; only string and bytes fields, and arrays and maps of "
                      "them, can be protected", "schema")


def _remove(why: str) -> str:
    """What to remove for a refused field to pass: the tag, or the configured path."""
    return "the tag" if "tagged" in why else "the path"


def _protect_value(shapes, value, path: str, where: str, assign, out):
    """A selected field's value: `shapes` says what the schema lets it be ("leaf": a string or
    bytes, "array" / "map": a list / dict of them, each element or value protected at its own
    located path). Null elements and values, like a null field, hold nothing."""
    if value is None:
        return
    if (isinstance(value, list) and "array" in shapes) or (isinstance(value, dict) and "map" in shapes):
        for key, item in list(value.items() if isinstance(value, dict) else enumerate(value)):
            if item is not None:
                out.append(_slot(item, path + _token(key), where + "/*", functools.partial(value.__setitem__, key)))
        return
    out.append(_slot(value, path, where, assign))


def _why(selection: Selection, tags) -> str:
    tag = next((t for t in tags if t in selection.tags), None)
    return f"is tagged {tag}" if tag else "is selected by a configured path"


# ---------------------------------------------------------------------------------------
# Avro: the dicts AvroDeserializer gives, walked under the writer schema

AVRO_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
AVRO_NAMED = frozenset({"record", "error", "enum", "fixed"})


class _Logical(Exception):
    """A selected string or bytes has this logical type."""


class AvroWalker:
    def __init__(self, text: str, references, selection: Selection):
        self.selection = selection
        self.named = {}   # full name -> definition
        self.space = {}   # id(definition) -> the namespace its fields' types are in
        try:
            for _name, ref_text in references:
                self._define(json.loads(ref_text), "")
            self.root = json.loads(text)
            self._define(self.root, "")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise FieldError(f"the Avro schema cannot be read: {type(error).__name__}: {error}", "schema") from None

    def _define(self, schema, namespace: str):
        if isinstance(schema, list):
            for branch in schema:
                self._define(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            kind = kind if isinstance(kind, (str, dict, list)) else None
            if isinstance(kind, str) and kind in AVRO_NAMED:
                name = schema["name"]
                if "." in name:
                    full = name
                else:
                    space = schema.get("namespace", namespace) or ""
                    full = f"{space}.{name}" if space else name
                self.named[full] = schema
                inner = full.rpartition(".")[0]
                self.space[id(schema)] = inner
                for field in schema.get("fields", []) if kind in ("record", "error") else []:
                    self._define(field["type"], inner)
            elif kind == "array":
                self._define(schema["items"], namespace)
            elif kind == "map":
                self._define(schema["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._define(kind, namespace)

    def _resolve(self, schema, namespace: str):
        """(a definition, a primitive name or a union; the namespace below it)."""
        for _ in range(MAX_DEPTH):
            if isinstance(schema, str):
                if schema in AVRO_PRIMITIVES:
                    return schema, namespace
                full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
                found = self.named.get(full, self.named.get(schema))
                if found is None:
                    raise FieldError(f"the Avro schema uses the type {schema}, which it does not define", "schema")
                return found, self.space[id(found)]
            if isinstance(schema, dict):
                kind = schema.get("type")
                if not isinstance(kind, (str, dict, list)):
                    break
                if isinstance(kind, str) and kind in AVRO_NAMED:
                    return schema, self.space.get(id(schema), namespace)
                if kind in ("string", "bytes") and isinstance(schema.get("logicalType"), str):
                    return schema, namespace  # its logical type kept: a ciphertext is not one
                if isinstance(kind, str) and (kind in ("array", "map") or kind in AVRO_PRIMITIVES):
                    return (schema if kind in ("array", "map") else kind), namespace
                schema = kind  # {"type": "Address"}, {"type": {...}}
                continue
            if isinstance(schema, list):
                return schema, namespace
            break
        raise FieldError("the Avro schema has a type that cannot be read", "schema")

    @staticmethod
    def _string_or_bytes(resolved) -> bool:
        """Whether a resolved type is a string or bytes; _Logical for one with a logical type."""
        if resolved in ("string", "bytes"):
            return True
        if isinstance(resolved, dict) and resolved.get("type") in ("string", "bytes") \
                and isinstance(resolved.get("logicalType"), str):
            raise _Logical(resolved["logicalType"])
        return False

    def _leaf(self, schema, namespace: str) -> bool:
        """A string or bytes, or a union of them with null (the branches in order: the
        first that decides, as the runner)."""
        resolved, namespace = self._resolve(schema, namespace)
        if self._string_or_bytes(resolved):
            return True
        if not isinstance(resolved, list):
            return False
        found = False
        for branch in resolved:
            branch, _ = self._resolve(branch, namespace)
            if branch == "null":
                continue
            if not self._string_or_bytes(branch):
                return False
            found = True
        return found

    def _collection(self, resolved, namespace: str):
        """"array" / "map" for an array or map of leaves, else None."""
        if isinstance(resolved, dict) and resolved.get("type") in ("array", "map"):
            kind = resolved["type"]
            if self._leaf(resolved["items" if kind == "array" else "values"], namespace):
                return kind
        return None

    def _protection(self, schema, namespace: str, where: str, why: str) -> frozenset:
        """What a selected field of type `schema` may hold (see _protect_value): a string or bytes,
        or a union of them with null; an array or map of those, each element or value
        protected; a union with null of any of these. Anything else is refused, and so is a
        string or bytes with a logical type (uuid, decimal, any): a ciphertext is not one."""
        try:
            if self._leaf(schema, namespace):
                return frozenset(("leaf",))
            resolved, space = self._resolve(schema, namespace)
            if isinstance(resolved, list):
                shapes = set()
                for branch in resolved:
                    branch, branch_space = self._resolve(branch, space)
                    if branch == "null":
                        continue
                    shape = "leaf" if self._leaf(branch, branch_space) else self._collection(branch, branch_space)
                    if shape is None:
                        shapes.clear()
                        break
                    shapes.add(shape)
                if shapes:
                    return frozenset(shapes)
            elif self._collection(resolved, space):
                return frozenset((resolved["type"],))
        except _Logical as logical:
            raise FieldError(f"field {where} {why} but is {self._describe(schema, namespace)}: a ciphertext is not "
                             f"a valid {logical}, so consumers would fail to read the record; remove {_remove(why)} "
                             "or the logical type", "schema") from None
        raise _schema_error(where, why, self._describe(schema, namespace))

    def _describe(self, schema, namespace: str, depth: int = 0) -> str:
        """A type for reasons: "int", "an array of string (logical type uuid)", "a union of null, record In"."""
        schema, namespace = self._resolve(schema, namespace)
        if depth > 8:
            return "..."
        if isinstance(schema, list):
            return "a union of " + ", ".join(self._describe(b, namespace, depth + 1) for b in schema)
        if not isinstance(schema, dict):
            return str(schema)
        kind = schema.get("type")
        if kind == "array":
            return f"an array of {self._describe(schema['items'], namespace, depth + 1)}"
        if kind == "map":
            return f"a map of {self._describe(schema['values'], namespace, depth + 1)}"
        if kind in ("string", "bytes"):
            return f"{kind} (logical type {schema.get('logicalType')})"
        return f"{kind} {schema.get('name', '')}".strip()

    def slots(self, record) -> list:
        out = []
        self._walk(self.root, "", record, "", "", (), out, 0)
        return out

    def _walk(self, schema, namespace, value, path, where, steps, out, depth):
        if depth > MAX_DEPTH:
            raise FieldError(f"the record nests deeper than {MAX_DEPTH} at {where}", "schema")
        schema, namespace = self._resolve(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace, value, path, where, steps, out, depth)
        if not isinstance(schema, dict):
            return
        kind = schema["type"]
        if kind in ("record", "error") and isinstance(value, dict):
            for field in schema["fields"]:
                name = field["name"]
                if name not in value:
                    continue  # not in the reader's schema
                sub = steps + (_field(name),)
                tags = field.get("confluent:tags") or []
                if self.selection.selects(sub, tags):
                    shapes = self._protection(field["type"], namespace, where + _token(name),
                                              _why(self.selection, tags))
                    _protect_value(shapes, value[name], path + _token(name), where + _token(name),
                                   functools.partial(value.__setitem__, name), out)
                else:
                    self._walk(field["type"], namespace, value[name], path + _token(name), where + _token(name),
                               sub, out, depth + 1)
        elif kind in ("array", "map"):
            items, step = (schema["items"], ELEMENT) if kind == "array" else (schema["values"], MAP_VALUE)
            if kind == "array" and isinstance(value, list):
                entries = enumerate(value)
            elif kind == "map" and isinstance(value, dict):
                entries = value.items()
            else:
                return
            sub = steps + (step,)
            shapes = self._protection(items, namespace, where + "/*", "is selected by a configured path") \
                if self.selection.selects(sub) else None
            for key, item in list(entries):
                if shapes:
                    _protect_value(shapes, item, path + _token(key), where + "/*",
                                   functools.partial(value.__setitem__, key), out)
                else:
                    self._walk(items, namespace, item, path + _token(key), where + "/*", sub, out, depth + 1)

    def _union(self, branches, namespace, value, path, where, steps, out, depth):
        if value is None:
            return
        resolved = [self._resolve(b, namespace) for b in branches]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            # AvroDeserializer(return_record_name=True): (full name, record)
            for schema, space in resolved:
                if isinstance(schema, dict) and schema.get("type") in ("record", "error") and value[0] in (
                        schema.get("name"), f"{space}.{schema.get('name')}".lstrip(".")):
                    return self._walk(schema, space, value[1], path, where, steps, out, depth + 1)
            return
        if isinstance(value, list):
            candidates = [r for r in resolved if isinstance(r[0], dict) and r[0].get("type") == "array"]
        elif isinstance(value, dict):
            records = [r for r in resolved if isinstance(r[0], dict) and r[0].get("type") in ("record", "error")]
            exact = [r for r in records if {f["name"] for f in r[0]["fields"]} == set(value)]
            maps = [r for r in resolved if isinstance(r[0], dict) and r[0].get("type") == "map"]
            candidates = exact or records + maps
        else:
            return  # a scalar branch: nothing inside
        if len(candidates) == 1:
            return self._walk(candidates[0][0], candidates[0][1], value, path, where, steps, out, depth + 1)
        # Several branches could have given this value: all must agree on what is protected.
        outcomes = []
        for schema, space in candidates:
            found = []
            try:
                self._walk(schema, space, value, path, where, steps, found, depth + 1)
                outcomes.append((None, found))
            except FieldError as error:
                outcomes.append((str(error), []))
        keys = {(error, tuple((s.path, s.kind, s.refusal is None) for s in found)) for error, found in outcomes}
        if len(keys) > 1:
            raise FieldError(f"the union at {where or '(the record)'} has several branches this value could be, "
                             "with different protected fields; deserialize with return_record_name=True", "schema")
        if outcomes and outcomes[0][0] is not None:
            raise FieldError(outcomes[0][0], "schema")
        if outcomes:
            out.extend(outcomes[0][1])


# ---------------------------------------------------------------------------------------
# JSON Schema: the documents JSONDeserializer gives, walked under the writer schema


class JsonWalker:
    """Every subschema that describes a place counts (fail closed, as the runner does): a
    property's schema and whatever it `$ref`s, every branch of allOf/anyOf/oneOf,
    if/then/else, dependentSchemas; patternProperties matched by Python's `re`;
    additionalProperties (else unevaluatedProperties) for members no property names;
    prefixItems/items/additionalItems/unevaluatedItems and contains for elements. A
    selected field is a string, or an array or map of strings (each element or value
    protected), as docs/schema-fields.md says (see _selected)."""

    def __init__(self, text: str, references, selection: Selection):
        from referencing import Registry, Resource
        from referencing.exceptions import Unresolvable
        from referencing.jsonschema import DRAFT7, specification_with
        self.selection = selection
        self._unresolvable = Unresolvable
        try:
            self.root = json.loads(text)
            registry = Registry()
            documents = []
            for name, ref_text in references:
                contents = json.loads(ref_text)
                documents.append(contents)
                registry = registry.with_resource(name, Resource.from_contents(contents, default_specification=DRAFT7))
            root = Resource.from_contents(self.root, default_specification=DRAFT7)
            self.spec = specification_with(self.root.get("$schema", ""), default=DRAFT7) \
                if isinstance(self.root, dict) else DRAFT7
            self.resolver = registry.resolver_with_root(root)
        except (ValueError, TypeError) as error:
            raise FieldError(f"the JSON Schema cannot be read: {type(error).__name__}: {error}", "schema") from None
        self._resource = Resource
        self._regexes = {}
        self._closures = {}
        # Which tags appear at all: with none selected and no paths, nothing is walked.
        tags = set()
        self._collect_tags([self.root] + documents, tags)
        self._anything = bool(tags & selection.tags) or bool(selection.patterns)
        # $dynamicRef / $recursiveRef: every anchor they could reach counts, found here.
        self._dynamic = {}
        self._recursive = []
        self._collect_anchors(self.root, self.resolver)

    def _collect_tags(self, value, tags):
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                found = item.get("confluent:tags")
                if isinstance(found, list):
                    tags.update(t for t in found if isinstance(t, str))
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)

    def _collect_anchors(self, value, resolver, depth=0):
        if depth > 200:
            return
        if isinstance(value, dict):
            if "$id" in value:
                resolver = self._enter_resolver(value, resolver)
            if isinstance(value.get("$dynamicAnchor"), str):
                self._dynamic.setdefault(value["$dynamicAnchor"], []).append((value, resolver))
            if value.get("$recursiveAnchor") is True:
                self._recursive.append((value, resolver))
            for key, sub in value.items():
                if key not in ("enum", "const", "examples", "default"):
                    self._collect_anchors(sub, resolver, depth + 1)
        elif isinstance(value, list):
            for sub in value:
                self._collect_anchors(sub, resolver, depth + 1)

    def _enter_resolver(self, schema, resolver):
        return resolver.in_subresource(self._resource.from_contents(schema, default_specification=self.spec))

    def _enter(self, schema, resolver):
        if not isinstance(schema, dict):
            return None  # true/false describe no field
        return schema, (self._enter_resolver(schema, resolver) if "$id" in schema else resolver)

    def _lookup(self, reference, resolver, where):
        if not isinstance(reference, str):
            raise FieldError(f"the JSON Schema has a $ref that is not a string (at {where})", "schema")
        try:
            resolved = resolver.lookup(reference)
        except self._unresolvable as error:
            raise FieldError(f"the JSON Schema's $ref {reference} cannot be resolved ({type(error).__name__})",
                             "schema") from None
        return self._enter(resolved.contents, resolved.resolver)

    def _closure(self, nodes, where):
        key = tuple(sorted(id(schema) for schema, _ in nodes))
        if key in self._closures:
            return self._closures[key]
        seen, work, closure = set(), list(nodes), []
        while work:
            node = work.pop()
            if node is None or id(node[0]) in seen:
                continue
            seen.add(id(node[0]))
            closure.append(node)
            schema, resolver = node
            for keyword in ("allOf", "anyOf", "oneOf"):
                if isinstance(schema.get(keyword), list):
                    work.extend(self._enter(s, resolver) for s in schema[keyword])
            for keyword in ("if", "then", "else"):
                work.append(self._enter(schema.get(keyword), resolver))
            for keyword in ("dependentSchemas", "dependencies"):
                if isinstance(schema.get(keyword), dict):
                    work.extend(self._enter(s, resolver) for s in schema[keyword].values())
            if "$ref" in schema:
                work.append(self._lookup(schema["$ref"], resolver, where))
            if "$dynamicRef" in schema:
                work.append(self._lookup(schema["$dynamicRef"], resolver, where))
                anchor = str(schema["$dynamicRef"]).partition("#")[2]
                work.extend(self._dynamic.get(anchor, []))
            if "$recursiveRef" in schema:
                work.append(self._lookup(schema["$recursiveRef"], resolver, where))
                work.extend(self._recursive)
        self._closures[key] = closure
        return closure

    def _regex(self, pattern):
        if pattern not in self._regexes:
            try:
                self._regexes[pattern] = re.compile(pattern)
            except re.error:
                self._regexes[pattern] = None
        if self._regexes[pattern] is None:
            raise FieldError(f'the JSON Schema\'s patternProperties "{pattern}" cannot be matched here', "schema")
        return self._regexes[pattern]

    def slots(self, record) -> list:
        out = []
        if self._anything:
            root = self._enter(self.root, self.resolver)
            self._place([root] if root else [], [()], record, "", "", out, 0, lambda v: None)
        return out

    # The keywords a ciphertext (vault:v1:<base64>) may not satisfy: a consumer validating
    # a record with such a field protected would refuse it (minLength is no such keyword).
    STRING_CONSTRAINTS = ("pattern", "maxLength", "format", "enum", "const", "contentEncoding", "contentMediaType")

    @staticmethod
    def _types(closure):
        """The `type`s the schemas name, as a set; None if none of them has one."""
        types = None
        for schema, _ in closure:
            kind = schema.get("type")
            named = {kind} if isinstance(kind, str) else {k for k in kind if isinstance(k, str)} \
                if isinstance(kind, list) else None
            if named is not None:
                types = (types or set()) | named
        return types

    @staticmethod
    def _is(types, kind) -> bool:
        """`types` make it a `kind` (or null)."""
        return types is not None and kind in types and types <= {kind, "null"}

    def _constraint(self, closure):
        """The first keyword of STRING_CONSTRAINTS in a schema (that allows a string) of the field."""
        for schema, _ in closure:
            kind = schema.get("type")
            if isinstance(kind, str) and kind != "string" or isinstance(kind, list) and "string" not in kind:
                continue  # the null branch of a oneOf constrains no ciphertext
            for keyword in self.STRING_CONSTRAINTS:
                if keyword in schema:
                    return keyword
        return None

    def _constraint_error(self, closure, where, why):
        keyword = self._constraint(closure)
        if keyword is None:
            return None
        return FieldError(f"field {where or '(the whole record)'} is selected ({why}) but its schema has "
                          f"`{keyword}`: a ciphertext may not satisfy it, so consumers that validate records would "
                          f"refuse the record; remove {_remove(why)} or `{keyword}`", "schema")

    def _not_string(self, closure, where, why) -> FieldError:
        types = self._types(closure)
        what = f"its schema type is {' or '.join(sorted(types))}" if types else "its schema gives it no type"
        return FieldError(f"field {where or '(the whole record)'} is selected ({why}) but {what}; only string fields, "
                          "and arrays and maps of them, can be protected", "schema")

    def _collection(self, closure, where, why):
        """For a selected array of strings ("type": "array", "items" strings) or map of
        strings ("type": "object" with no "properties", "additionalProperties" strings),
        either perhaps null: ("array" or "map", the closure of its elements' or values'
        schemas), each of them protected. None if the schemas make it neither; a schema
        error if the elements or values are not strings a ciphertext can replace."""
        types = self._types(closure)
        if self._is(types, "array"):
            kind, keyword = "array", "items"
        elif self._is(types, "object") and not any(
                isinstance(s.get("properties"), dict) and s["properties"] for s, _ in closure):
            kind, keyword = "map", "additionalProperties"
        else:
            return None
        schemas, described = [], False
        for schema, resolver in closure:
            if kind == "array":
                if isinstance(schema.get("prefixItems"), list):
                    prefix, rest_keyword = schema["prefixItems"], "items"
                elif isinstance(schema.get("items"), list):
                    prefix, rest_keyword = schema["items"], "additionalItems"
                else:
                    prefix, rest_keyword = [], "items"
                schemas += [self._enter(s, resolver) for s in prefix]
                rest = self._enter(schema[rest_keyword] if rest_keyword in schema
                                   else schema.get("unevaluatedItems"), resolver)
                schemas.append(self._enter(schema.get("contains"), resolver))
            else:
                patterns = schema.get("patternProperties")
                schemas += [self._enter(s, resolver) for s in (patterns.values() if isinstance(patterns, dict) else ())]
                rest = self._enter(schema["additionalProperties"] if "additionalProperties" in schema
                                   else schema.get("unevaluatedProperties"), resolver)
            if rest:
                schemas.append(rest)
                described = True
        if not described:
            raise FieldError(f"field {where or '(the whole record)'} is selected ({why}) but is an "
                             f"{'array' if kind == 'array' else 'object'} whose schema has no `{keyword}` schema: only "
                             "string fields, and arrays and maps of them, can be protected, so it must say "
                             f'"{keyword}": {{"type": "string"}}', "schema")
        elements = self._closure([s for s in schemas if s], where + "/*")
        if not self._is(self._types(elements), "string"):
            raise self._not_string(elements, where + "/*", why)
        error = self._constraint_error(elements, where + "/*", why)
        if error:
            raise error
        return kind, elements

    def _selected(self, closure, value, path, where, out, assign, why, deferred):
        """A selected field: a string (or null), or an array or map of strings whose every
        element or value is protected, as the runner selects them. Where the runner decides
        by the record's value (a member whose name matches several patternProperties, and
        what is below it), or where the schemas make it no string nor array or map of them,
        the value decides: a string is protected, null is not there, anything else refused."""
        shapes = ("leaf",)
        if self._is(self._types(closure), "string"):
            error = self._constraint_error(closure, where, why)
            if error and not deferred:
                raise error
        else:
            try:
                collection = self._collection(closure, where, why)
            except FieldError:
                if not deferred:
                    raise
                collection = None
            if collection:
                shapes = (collection[0],)
            elif not deferred:
                error = self._constraint_error(closure, where, why)
                if error:
                    raise error
        if value is None:
            return
        if shapes != ("leaf",):
            if not isinstance(value, list if shapes == ("array",) else dict):
                raise FieldError(f"field {where or '(the whole record)'} is protected but holds "
                                 f"{type(value).__name__}, not {'an array' if shapes == ('array',) else 'an object'} "
                                 "of strings", "not ciphertext")
            for key, item in list(value.items() if isinstance(value, dict) else enumerate(value)):
                self._string(item, path + _token(key), where + "/*", out, functools.partial(value.__setitem__, key))
            return
        self._string(value, path, where, out, assign)

    @staticmethod
    def _string(value, path, where, out, assign):
        if value is None:
            return
        if not isinstance(value, str):
            raise FieldError(f"field {where or '(the whole record)'} is protected but holds "
                             f"{type(value).__name__}, not Vault transit ciphertext text", "not ciphertext")
        out.append(_slot(value, path, where, assign))

    def _place(self, nodes, paths, value, path, where, out, depth, assign, deferred=False):
        if depth > MAX_DEPTH:
            raise FieldError(f"the record nests deeper than {MAX_DEPTH} at {where}", "schema")
        closure = self._closure(nodes, where)
        tags = [t for schema, _ in closure for t in (schema.get("confluent:tags") or []) if isinstance(t, str)]
        tag = next((t for t in tags if t in self.selection.tags), None)
        if tag is not None or any(self.selection.selects(p) for p in paths):
            why = f"tagged {tag}" if tag is not None else "at a configured path"
            return self._selected(closure, value, path, where, out, assign, why, deferred)
        paths = [p for p in paths if self.selection.may_select_below(p)]
        if isinstance(value, dict):
            for name, member in value.items():
                by_name, by_map, named, matched_patterns = [], [], False, set()
                for schema, resolver in closure:
                    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
                    if name in properties:
                        by_name.append(self._enter(properties[name], resolver))
                        named = True
                    matched = False
                    patterns = schema.get("patternProperties")
                    for pattern, sub in (patterns.items() if isinstance(patterns, dict) else ()):
                        if self._regex(pattern).search(name):
                            by_map.append(self._enter(sub, resolver))
                            matched_patterns.add(pattern)
                            matched = True
                    if not matched and name not in properties:
                        rest = schema["additionalProperties"] if "additionalProperties" in schema \
                            else schema.get("unevaluatedProperties")
                        by_map.append(self._enter(rest, resolver))
                by_name, by_map = [n for n in by_name if n], [n for n in by_map if n]
                sub_paths = ([p + (_field(name),) for p in paths] if by_name else []) + \
                            ([p + (MAP_VALUE,) for p in paths] if by_map else [])
                if by_name or by_map or sub_paths:
                    # A member no property names whose name several patterns match: the
                    # runner decides by its value there (and below), as done here too.
                    self._place(by_name + by_map, sub_paths, member, path + _token(name),
                                where + (_token(name) if by_name else "/*"), out, depth + 1,
                                functools.partial(value.__setitem__, name),
                                deferred or (not named and len(matched_patterns) > 1))
        elif isinstance(value, list):
            for index, element in enumerate(value):
                schemas = []
                for schema, resolver in closure:
                    if isinstance(schema.get("prefixItems"), list):
                        prefix, rest_keyword = schema["prefixItems"], "items"
                    elif isinstance(schema.get("items"), list):
                        prefix, rest_keyword = schema["items"], "additionalItems"
                    else:
                        prefix, rest_keyword = [], "items"
                    if index < len(prefix):
                        schemas.append(self._enter(prefix[index], resolver))
                    else:
                        rest = schema[rest_keyword] if rest_keyword in schema else schema.get("unevaluatedItems")
                        schemas.append(self._enter(rest, resolver))
                    schemas.append(self._enter(schema.get("contains"), resolver))
                schemas = [s for s in schemas if s]
                sub_paths = [p + (ELEMENT,) for p in paths]
                if schemas or sub_paths:
                    self._place(schemas, sub_paths, element, path + _token(index), where + "/*", out, depth + 1,
                                functools.partial(value.__setitem__, index), deferred)


# ---------------------------------------------------------------------------------------
# Protobuf: the messages ProtobufDeserializer gives, walked under the writer schema


def _is_repeated(field) -> bool:
    repeated = getattr(field, "is_repeated", None)
    return repeated if repeated is not None else field.label == field.LABEL_REPEATED


def _is_map(field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _opaque(full_name: str) -> bool:
    """The well-known types and Confluent's own are never walked into (as the runner)."""
    return full_name.startswith(("google.protobuf.", "confluent."))


def _map_key_text(key) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


class ProtobufWalker:
    def __init__(self, schema_id: int, text: str, references, selection: Selection):
        from google.protobuf import descriptor_pool
        from google.protobuf.message import DecodeError
        from confluent_kafka.schema_registry.confluent import meta_pb2
        self.selection = selection
        self.schema_id = schema_id
        self._meta = meta_pb2
        self._top = None
        self.pool = descriptor_pool.DescriptorPool()
        _init_pool(self.pool)
        try:
            for name, ref_text in references:
                if self._in_pool(name):
                    continue  # confluent/meta.proto, google/protobuf/...: the pool has them
                self.pool.Add(protobuf_file(name, ref_text, self.pool))
            name = f"kafka-transit/schema-{schema_id}.proto"
            main = protobuf_file(name, text, self.pool)
            if self._in_pool(main.name):
                main.name = name
            self.pool.Add(main)
            self.file = self.pool.FindFileByName(main.name)
        except (ProtoSyntaxError, TypeError, KeyError, ValueError, DecodeError) as error:
            raise FieldError(f"the Protobuf schema cannot be read: {type(error).__name__}: {error}", "schema") from None

    def _in_pool(self, name: str) -> bool:
        try:
            self.pool.FindFileByName(name)
            return True
        except KeyError:
            return False

    def message(self, indexes):
        """The writer's message at Confluent's message indexes: over the file's messages,
        then each message's nested ones, in the order the schema declares them."""
        if self._top is None:
            from google.protobuf import descriptor_pb2
            declared = descriptor_pb2.FileDescriptorProto()
            self.file.CopyToProto(declared)
            prefix = f"{declared.package}." if declared.package else ""
            self._top = [self.pool.FindMessageTypeByName(prefix + m.name) for m in declared.message_type]
        messages = self._top
        descriptor = None
        for index in indexes or [0]:
            if not 0 <= index < len(messages):
                raise FieldError(f"value (schema id {self.schema_id}): message index {index} out of range", "frame")
            descriptor = messages[index]
            messages = list(descriptor.nested_types)
        return descriptor

    def _tags(self, field):
        options = field.GetOptions()
        if options.HasExtension(self._meta.field_meta):
            return list(options.Extensions[self._meta.field_meta].tags)
        return []

    def slots(self, message, indexes) -> list:
        out = []
        # The reader's class may be another version of the message: fields go by number.
        self._walk(message, self.message(indexes), "", "", (), out, 0)
        return out

    def _walk(self, message, writer, path, where, steps, out, depth):
        if depth > MAX_DEPTH:
            raise FieldError(f"the record nests deeper than {MAX_DEPTH} at {where}", "schema")
        by_number = message.DESCRIPTOR.fields_by_number
        for field in writer.fields:
            mine = by_number.get(field.number)
            if mine is None:
                continue  # not in the reader's class: in its unknown fields, never read as data
            is_map, repeated = _is_map(field), _is_repeated(field)
            if (_is_map(mine), _is_repeated(mine)) != (is_map, repeated):
                raise FieldError(f"field {writer.full_name}.{field.name} ({where + _token(field.name)}) is a "
                                 f"{'map' if is_map else 'repeated' if repeated else 'single'} field in the writer "
                                 "schema and not in the reader's class", "schema")
            value_field = field.message_type.fields_by_name["value"] if is_map else field
            step = MAP_VALUE if is_map else ELEMENT if repeated else None
            sub = steps + (_field(field.name),)
            inner = sub + (step,) if step else sub
            tags = self._tags(field)
            fpath, fwhere = path + _token(field.name), where + _token(field.name)
            if self.selection.selects(sub, tags) or (step and self.selection.selects(inner)):
                if value_field.type not in (value_field.TYPE_STRING, value_field.TYPE_BYTES):
                    what = value_field.message_type.full_name if value_field.message_type else \
                        f"of protobuf type {value_field.type}"
                    raise _schema_error(f"{writer.full_name}.{field.name} ({fwhere})", _why(self.selection, tags),
                                        what)
                self._protect(message, mine, is_map, repeated, fpath, fwhere, out)
                continue
            if value_field.message_type is None or _opaque(value_field.message_type.full_name):
                continue
            child = value_field.message_type
            value = getattr(message, mine.name)
            if is_map:
                for key in list(value):
                    self._walk(value[key], child, fpath + _token(_map_key_text(key)), fwhere + "/*", inner, out,
                               depth + 1)
            elif repeated:
                for index, item in enumerate(value):
                    self._walk(item, child, fpath + _token(index), fwhere + "/*", inner, out, depth + 1)
            elif message.HasField(mine.name):
                self._walk(value, child, fpath, fwhere, inner, out, depth + 1)

    @staticmethod
    def _protect(message, mine, is_map, repeated, path, where, out):
        value = getattr(message, mine.name)
        if is_map:
            for key in list(value):
                out.append(_slot(value[key], path + _token(_map_key_text(key)), where + "/*",
                                 functools.partial(value.__setitem__, key)))
        elif repeated:
            for index, item in enumerate(value):
                out.append(_slot(item, path + _token(index), where + "/*", functools.partial(value.__setitem__, index)))
        elif mine.has_presence and not message.HasField(mine.name):
            return
        elif not mine.has_presence and value in ("", b""):
            return  # proto3 implicit presence: not on the wire, nothing was protected
        else:
            out.append(_slot(value, path, where, functools.partial(setattr, message, mine.name)))


def _init_pool(pool):
    """The files every Confluent schema may import without a reference: the well-known
    types, confluent/meta.proto and confluent's decimal, as confluent-kafka's own pool."""
    try:
        from confluent_kafka.schema_registry.common.protobuf import _init_pool as confluents
        confluents(pool)
        return
    except ImportError:
        pass
    from google.protobuf import (any_pb2, descriptor_pb2, duration_pb2, empty_pb2, field_mask_pb2, struct_pb2,
                                 timestamp_pb2, wrappers_pb2)
    from confluent_kafka.schema_registry.confluent import meta_pb2
    for module in (any_pb2, descriptor_pb2, duration_pb2, empty_pb2, field_mask_pb2, struct_pb2, timestamp_pb2,
                   wrappers_pb2, meta_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)


# ---------------------------------------------------------------------------------------
# .proto text to a FileDescriptorProto, without protoc


class ProtoSyntaxError(ValueError):
    pass


_TOKENS = re.compile(r"""
    (?P<skip>\s+|//[^\n]*|/\*.*?\*/|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)(?![A-Za-z_]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<sym>[{}\[\]()<>;,=.:/+-])
""", re.S | re.X)

_SCALAR_TYPES = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7,
                 "bool": 8, "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16,
                 "sint32": 17, "sint64": 18}


def _unquote(text: str) -> str:
    body = text[1:-1]
    out, i = bytearray(), 0
    simple = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xX":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(int(digits.group(), 16) if digits else 0)
            i += 2 + (len(digits.group()) if digits else 0)
        elif e.isdigit():
            digits = re.match(r"[0-7]{1,3}", body[i + 1:]).group()
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        elif e in "uU":
            width = 4 if e == "u" else 8
            out += chr(int(body[i + 2:i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        else:
            out += e.encode("utf-8")
            i += 2
    return out.decode("utf-8", errors="replace")


def _map_entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry message."""
    out, upper = [], True
    for c in field_name:
        if c == "_":
            upper = True
        elif upper:
            out.append(c.upper())
            upper = False
        else:
            out.append(c)
    return "".join(out) + "Entry"


class _ProtoParser:
    def __init__(self, text: str):
        self.tokens = []
        pos, line = 0, 1
        while pos < len(text):
            match = _TOKENS.match(text, pos)
            if not match:
                raise ProtoSyntaxError(f"line {line}: unexpected character {text[pos]!r}")
            kind = match.lastgroup
            if kind != "skip":
                self.tokens.append((kind, match.group(), line))
            line += match.group().count("\n")
            pos = match.end()
        self.tokens.append(("eof", "", line))
        self.pos = 0

    def peek(self, offset=0):
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def next(self):
        token = self.peek()
        self.pos += 1
        return token

    def error(self, what):
        kind, text, line = self.peek()
        return ProtoSyntaxError(f"line {line}: expected {what}, found {text or 'the end'!r}")

    def accept(self, symbol) -> bool:
        kind, text, _ = self.peek()
        if kind in ("sym", "ident") and text == symbol:
            self.pos += 1
            return True
        return False

    def expect(self, symbol):
        if not self.accept(symbol):
            raise self.error(f"`{symbol}`")

    def ident(self) -> str:
        kind, text, _ = self.peek()
        if kind != "ident":
            raise self.error("a name")
        self.pos += 1
        return text

    def full_ident(self) -> str:
        parts = [self.ident()]
        while self.peek()[1] == "." and self.peek(1)[0] == "ident":
            self.pos += 1
            parts.append(self.ident())
        return ".".join(parts)

    def type_name(self) -> str:
        return ("." if self.accept(".") else "") + self.full_ident()

    def string(self) -> str:
        kind, text, _ = self.peek()
        if kind != "str":
            raise self.error("a string")
        parts = []
        while self.peek()[0] == "str":
            parts.append(_unquote(self.next()[1]))
        return "".join(parts)

    def integer(self) -> int:
        negative = self.accept("-")
        kind, text, _ = self.next()
        if kind != "num":
            self.pos -= 1
            raise self.error("a number")
        if text.lower().startswith("0x"):
            value = int(text, 16)
        elif len(text) > 1 and text.startswith("0") and text.isdigit():
            value = int(text, 8)
        else:
            value = int(text)
        return -value if negative else value

    def value(self):
        """An option value: a constant, a [list] or a {text-format message} (as a dict of
        field name to list of values)."""
        kind, text, _ = self.peek()
        if kind == "str":
            return self.string()
        if text == "[":
            self.pos += 1
            items = []
            while not self.accept("]"):
                items.append(self.value())
                self.accept(",")
            return items
        if text in ("{", "<"):
            close = "}" if text == "{" else ">"
            self.pos += 1
            fields = {}
            while not self.accept(close):
                if self.accept("["):  # [extension.name] or [type.url/Name]
                    parts = []
                    while not self.accept("]"):
                        parts.append(self.next()[1])
                    name = "[" + "".join(parts) + "]"
                else:
                    name = self.ident()
                self.accept(":")
                value = self.value()
                fields.setdefault(name, []).extend(value if isinstance(value, list) else [value])
                if not self.accept(","):
                    self.accept(";")
            return fields
        if text in ("-", "+"):
            self.pos += 1
            kind, text, _ = self.next()
            return "-" + text if kind != "sym" else text
        if kind in ("num", "ident"):
            self.pos += 1
            return text
        raise self.error("an option value")

    def option_name(self):
        parts = []
        while True:
            if self.accept("("):
                parts.append("(" + self.type_name().lstrip(".") + ")")
                self.expect(")")
            else:
                parts.append(self.ident())
            if not self.accept("."):
                return parts

    def skip_statement(self):
        depth = 0
        while True:
            kind, text, _ = self.next()
            if kind == "eof":
                raise self.error("`;`")
            if text in ("[", "{", "("):
                depth += 1
            elif text in ("]", "}", ")"):
                depth -= 1
            elif text == ";" and depth <= 0:
                return

    def skip_block(self):
        while not self.accept("{"):
            if self.peek()[0] == "eof":
                raise self.error("`{`")
            self.pos += 1
        depth = 1
        while depth:
            kind, text, _ = self.next()
            if kind == "eof":
                raise self.error("`}`")
            depth += {"{": 1, "}": -1}.get(text, 0) if kind == "sym" else 0


def protobuf_file(name: str, text: str, pool):
    """A Protobuf schema as the registry gives it (a base64 FileDescriptorProto, or .proto
    text) as a FileDescriptorProto named `name`; types it imports are looked up in `pool`."""
    from google.protobuf import descriptor_pb2
    from google.protobuf.message import DecodeError
    compact = "".join(text.split())
    if compact and re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", compact):
        try:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(compact, validate=True))
            if fdp.message_type or fdp.enum_type or fdp.package or fdp.name:
                fdp.name = name
                return fdp
        except (binascii.Error, DecodeError, ValueError):
            pass
    return ProtoText(name, text, pool).file


class ProtoText:
    """What of a .proto file a DescriptorPool needs: package, imports, messages (nested,
    maps, oneofs, proto3 optional, proto2 groups), enums, and of the options only
    (confluent.field_meta) tags and `packed`. Services, extensions and other options are
    read past."""

    def __init__(self, name: str, text: str, pool):
        from google.protobuf import descriptor_pb2
        from confluent_kafka.schema_registry.confluent import meta_pb2
        self.d, self.meta, self.pool = descriptor_pb2, meta_pb2, pool
        self.p = _ProtoParser(text)
        self.file = descriptor_pb2.FileDescriptorProto(name=name)
        self.syntax = "proto2"
        self.declared = {}   # full name -> "message" | "enum"
        self.pending = []    # (field, type text, scope)
        p = self.p
        while p.peek()[0] != "eof":
            if p.accept(";"):
                continue
            word = p.ident()
            if word == "syntax":
                p.expect("=")
                self.syntax = p.string()
                p.expect(";")
                self.file.syntax = self.syntax
            elif word == "edition":
                p.expect("=")
                edition = p.string()
                p.expect(";")
                self.syntax = "editions"
                self.file.syntax = "editions"
                self.file.edition = descriptor_pb2.Edition.Value(f"EDITION_{edition}")
            elif word == "package":
                self.file.package = p.full_ident()
                p.expect(";")
            elif word == "import":
                if p.peek()[1] in ("public", "weak") and p.peek(1)[0] == "str":
                    p.next()
                self.file.dependency.append(p.string())
                p.expect(";")
            elif word == "option":
                p.option_name()
                p.expect("=")
                p.value()
                p.expect(";")
            elif word == "message":
                self.message(self.file.message_type.add(), self.file.package)
            elif word == "enum":
                self.enum(self.file.enum_type.add(), self.file.package)
            elif word in ("service", "extend"):
                p.skip_block()
            else:
                p.pos -= 1
                raise p.error("a declaration")
        for field, type_text, scope in self.pending:
            full, kind = self.resolve(type_text, scope)
            if field.type != field.TYPE_GROUP:
                field.type = field.TYPE_MESSAGE if kind == "message" else field.TYPE_ENUM
            field.type_name = "." + full

    def full(self, scope, name):
        return f"{scope}.{name}" if scope else name

    def kind_of(self, full):
        if full in self.declared:
            return self.declared[full]
        for kind, find in (("message", self.pool.FindMessageTypeByName), ("enum", self.pool.FindEnumTypeByName)):
            try:
                find(full)
                return kind
            except KeyError:
                pass
        return None

    def resolve(self, type_text, scope):
        if type_text.startswith("."):
            kind = self.kind_of(type_text[1:])
            if kind:
                return type_text[1:], kind
        else:
            parts = scope.split(".") if scope else []
            for i in range(len(parts), -1, -1):
                full = self.full(".".join(parts[:i]), type_text)
                kind = self.kind_of(full)
                if kind:
                    return full, kind
        raise ProtoSyntaxError(f"type {type_text} (used in {scope or 'the file'}) is not defined or imported")

    def message(self, msg, scope, group_of=None):
        p = self.p
        if group_of is None:
            msg.name = p.ident()
        full = self.full(scope, msg.name)
        self.declared[full] = "message"
        p.expect("{")
        entries, optionals = [], []
        while not p.accept("}"):
            if p.accept(";"):
                continue
            word, following = p.peek()[1], p.peek(1)[1]
            if p.peek()[0] == "eof":
                raise p.error("`}`")
            if word == "message" and p.peek(1)[0] == "ident":
                p.next()
                self.message(msg.nested_type.add(), full)
            elif word == "enum" and p.peek(1)[0] == "ident":
                p.next()
                self.enum(msg.enum_type.add(), full)
            elif word == "oneof" and p.peek(1)[0] == "ident" and p.peek(2)[1] == "{":
                p.next()
                index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=p.ident())
                p.expect("{")
                while not p.accept("}"):
                    if p.accept(";"):
                        continue
                    if p.peek()[1] == "option":
                        p.skip_statement()
                        continue
                    self.field(msg, full, entries, optionals, oneof=index)
            elif word in ("reserved", "extensions") and following not in ("=",):
                p.skip_statement()
            elif word == "option" and following != "=":
                p.next()
                parts = p.option_name()
                p.expect("=")
                value = p.value()
                p.expect(";")
                if parts == ["map_entry"] and value == "true":
                    # A map's entry as Confluent's registry writes a descriptor out as text.
                    msg.options.map_entry = True
            elif word == "extend" and following != "=":
                p.skip_block()
            else:
                self.field(msg, full, entries, optionals)
        # Map entries after the declared messages: message indexes count those only.
        F = self.d.FieldDescriptorProto
        for entry_name, key_type, value_type in entries:
            entry = msg.nested_type.add(name=entry_name)
            entry.options.map_entry = True
            for ename, enumber, etype in (("key", 1, key_type), ("value", 2, value_type)):
                self.typed(entry.field.add(name=ename, number=enumber, label=F.LABEL_OPTIONAL), etype, full)
        for field in optionals:
            field.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add(name="_" + field.name)

    def field(self, msg, scope, entries, optionals, oneof=None):
        p, F = self.p, self.d.FieldDescriptorProto
        label = None
        if p.peek()[1] in ("optional", "required", "repeated") and p.peek(1)[0] == "ident" and p.peek(1)[1] != "=":
            label = p.next()[1]
        if p.peek()[1] == "map" and p.peek(1)[1] == "<":
            p.next()
            p.expect("<")
            key_type = p.type_name()
            p.expect(",")
            value_type = p.type_name()
            p.expect(">")
            name = p.ident()
            p.expect("=")
            number = p.integer()
            field = msg.field.add(name=name, number=number, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE)
            self.options(field)
            p.expect(";")
            entry_name = _map_entry_name(name)
            self.declared[self.full(scope, entry_name)] = "message"
            field.type_name = "." + self.full(scope, entry_name)
            # A tag on the map field stands for its values (the runner's reading).
            entries.append((entry_name, key_type, value_type))
            return
        if p.peek()[1] == "group" and p.peek(1)[0] == "ident" and p.peek(2)[1] == "=":
            p.next()
            group_name = p.ident()
            p.expect("=")
            number = p.integer()
            field = msg.field.add(name=group_name.lower(), number=number, type=F.TYPE_GROUP,
                                  label=self.label(label))
            if oneof is not None:
                field.oneof_index = oneof
            if p.peek()[1] == "[":
                self.options(field)
            nested = msg.nested_type.add(name=group_name)
            self.message(nested, scope, group_of=field)
            field.type_name = "." + self.full(scope, group_name)
            return
        type_text = p.type_name()
        name = p.ident()
        p.expect("=")
        number = p.integer()
        field = msg.field.add(name=name, number=number, label=self.label(label))
        self.typed(field, type_text, scope)
        if oneof is not None:
            field.oneof_index = oneof
        elif label == "optional" and self.syntax == "proto3":
            field.proto3_optional = True
            optionals.append(field)
        self.options(field)
        p.expect(";")

    def label(self, label):
        F = self.d.FieldDescriptorProto
        return {"repeated": F.LABEL_REPEATED, "required": F.LABEL_REQUIRED}.get(label, F.LABEL_OPTIONAL)

    def typed(self, field, type_text, scope):
        if type_text in _SCALAR_TYPES:
            field.type = _SCALAR_TYPES[type_text]
        else:
            self.pending.append((field, type_text, scope))

    def options(self, field):
        p = self.p
        if not p.accept("["):
            return
        while True:
            parts = p.option_name()
            p.expect("=")
            value = p.value()
            ext = parts[0].strip("()")
            is_meta = ext == "confluent.field_meta" or (ext == "field_meta" and
                                                        self.file.package.split(".")[0] == "confluent")
            if parts[0].startswith("(") and is_meta:
                meta = field.options.Extensions[self.meta.field_meta]
                if parts[1:] == ["tags"]:
                    meta.tags.extend(value if isinstance(value, list) else [value])
                elif len(parts) == 1 and isinstance(value, dict):
                    meta.tags.extend(str(t) for t in value.get("tags", []))
            elif parts == ["packed"]:
                field.options.packed = value == "true"
            if not p.accept(","):
                break
        p.expect("]")

    def enum(self, enum, scope):
        p = self.p
        enum.name = p.ident()
        self.declared[self.full(scope, enum.name)] = "enum"
        p.expect("{")
        while not p.accept("}"):
            if p.accept(";"):
                continue
            if p.peek()[0] == "eof":
                raise p.error("`}`")
            if p.peek()[1] in ("option", "reserved") and p.peek(1)[1] != "=":
                if p.peek()[1] == "option" and p.peek(1)[1] == "allow_alias":
                    p.skip_statement()
                    enum.options.allow_alias = True
                else:
                    p.skip_statement()
                continue
            name = p.ident()
            p.expect("=")
            enum.value.add(name=name, number=p.integer())
            if p.accept("["):
                p.pos -= 1
                p.skip_statement()
            else:
                p.expect(";")


# ---------------------------------------------------------------------------------------
# Writer schemas from the registry


class WriterSchemas:
    """Each schema id's writer schema from the registry, parsed once for the selection
    (a registry never changes the schema of an id)."""

    def __init__(self, registry, selection: Selection):
        self.registry = registry
        self.selection = selection
        self._walkers = {}

    def get(self, schema_id: int):
        walker = self._walkers.get(schema_id)
        if walker is None:
            schema = self._fetch(lambda: self.registry.get_schema(schema_id), f"schema id {schema_id}")
            kind = (schema.schema_type or "AVRO").upper()
            references = self._references(schema.references or [], set(), schema_id)
            try:
                if kind == "AVRO":
                    walker = AvroWalker(schema.schema_str, references, self.selection)
                elif kind == "JSON":
                    walker = JsonWalker(schema.schema_str, references, self.selection)
                elif kind == "PROTOBUF":
                    walker = ProtobufWalker(schema_id, schema.schema_str, references, self.selection)
                else:
                    raise FieldError(f"schema type {kind} is not Avro, JSON or Protobuf", "schema")
            except FieldError as error:
                raise FieldError(f"schema id {schema_id}: {error}", error.kind) from None
            walker.kind = kind
            walker.schema = schema
            if len(self._walkers) >= 256:
                self._walkers.clear()
            self._walkers[schema_id] = walker
        return walker

    def _fetch(self, call, what):
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        try:
            return call()
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                raise FieldError(f"{what} is not in the registry", "registry") from None
            raise FieldError(f"the registry failed for {what}: {error}", "registry") from None
        except (requests.RequestException, OSError) as error:
            raise FieldError(f"the registry is unreachable for {what}: {type(error).__name__}", "registry") from None
        except Exception as error:  # noqa: BLE001 - httpx and others: a registry failure, said so
            raise FieldError(f"the registry failed for {what}: {type(error).__name__}: {error}", "registry") from None

    def _references(self, references, seen, schema_id):
        """(name, text) of every schema referenced, directly or not, dependencies first."""
        out = []
        for reference in references:
            if reference.name in seen:
                continue
            seen.add(reference.name)
            registered = self._fetch(lambda: self.registry.get_version(reference.subject, reference.version),
                                     f"reference {reference.name} of schema id {schema_id}")
            out += self._references(registered.schema.references or [], seen, schema_id)
            out.append((reference.name, registered.schema.schema_str))
        return out


# ---------------------------------------------------------------------------------------
# Vault


class BatchTransit(Transit):
    """transit.Transit with one more call: every ciphertext of a batch in one
    transit/decrypt request (`batch_input`), each item with its own context."""

    # OpenBao refuses request bodies of more than 1000 JSON strings by default
    # (max_request_json_strings), names and values counted: an item is two strings, two
    # more with a context and two more with associated data; the body's name is one more.
    MAX_ITEMS = 249
    MAX_STRINGS = 998

    def decrypt_batch(self, key_name: str, items) -> list:
        """items: (ciphertext text, context bytes or None[, associated data bytes or
        None]). Returns, in order, each plaintext (bytes) or the TransitError Vault gave
        for that item; one request per MAX_ITEMS items (fewer when they carry context and
        associated data: MAX_STRINGS)."""
        problem = key_name_problem(key_name.encode())
        if problem:
            raise TransitError(f"not a transit key name ({problem})")
        out, chunk, strings = [], [], 0
        for item in items:
            item = tuple(item) + (None,) * (3 - len(item))
            cost = 2 + sum(2 for part in item[1:] if part is not None)
            if chunk and (len(chunk) == self.MAX_ITEMS or strings + cost > self.MAX_STRINGS):
                out += self._decrypt_request(key_name, chunk)
                chunk, strings = [], 0
            chunk.append(item)
            strings += cost
        if chunk:
            out += self._decrypt_request(key_name, chunk)
        return out

    def _decrypt_request(self, key_name: str, items) -> list:
        batch = []
        for ciphertext, context, associated_data in items:
            item = {"ciphertext": ciphertext}
            if context is not None:
                item["context"] = b64(context)
            if associated_data is not None:
                item["associated_data"] = b64(associated_data)
            batch.append(item)
        headers = {"X-Vault-Token": self._token}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        self.requests += 1
        try:
            response = self._session.post(f"{self._address}/v1/{self._mount}/decrypt/{key_name}",
                                          json={"batch_input": batch}, headers=headers, verify=self._verify,
                                          timeout=self._timeout)
        except requests.RequestException as error:
            raise TransitError(f"Vault at {self._address} is unreachable: {type(error).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        # Vault answers 400 when any item fails, with every item's result.
        results = (answer.get("data") or {}).get("batch_results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            errors = "; ".join(answer.get("errors") or []) if isinstance(answer, dict) else ""
            raise TransitError(f"transit/decrypt/{key_name}: {errors or f'HTTP {response.status_code}'}")
        out = []
        for result in results:
            if not isinstance(result, dict) or result.get("error") or "plaintext" not in result:
                reason = result.get("error") if isinstance(result, dict) else None
                out.append(TransitError(f"transit/decrypt/{key_name}: {reason or 'no plaintext'}"))
            else:
                out.append(base64.b64decode(result["plaintext"] or ""))
        return out


def decrypt_batch(transit, key_name: str, items) -> list:
    """Through the transit's decrypt_batch (one request per 249 items); a transit without one (such as
    fake_transit.FakeTransit) is asked item by item. items: (ciphertext, context) for
    format 2 fields, (ciphertext, context, associated data) for format 3 ones: the third
    only when there is one, so that a transit written for format 2 keeps reading it."""
    if hasattr(transit, "decrypt_batch"):
        return transit.decrypt_batch(key_name, items)
    out = []
    for ciphertext, context, *bound in items:
        extra = {"associated_data": bound[0]} if bound and bound[0] is not None else {}
        try:
            out.append(transit.decrypt(key_name, ciphertext, context=context, **extra))
        except TransitError as error:
            out.append(error)
    return out


# ---------------------------------------------------------------------------------------
# Opening


# A record key that was not given (a value deserializer is called without one), as
# against None, a record that has no key: a record bound to its key cannot be opened
# without the key it was bound to, and saying so is clearer than Vault's refusal.
KEY_NOT_GIVEN = object()


def _headers_and_topic(ctx, headers=None, topic=None):
    """The record's headers and topic: as given, else the SerializationContext's (which
    carries both when the consumer passes them, as DeserializingConsumer does)."""
    if headers is None:
        headers = getattr(ctx, "headers", None)
    if topic is None:
        topic = getattr(ctx, "topic", None)
    return list(headers.items() if isinstance(headers, dict) else headers or []), topic


class FieldOpener:
    """Opens the protected fields of deserialized records.

    transit: a BatchTransit (or anything with decrypt_batch, or decrypt).
    registry: a confluent_kafka SchemaRegistryClient (the writer schemas, by id).
    key: the transit key, or a function of the SerializationContext giving it (for a
         policy whose key is a template such as "{topic}": the *source* topic's name).
    tags, fields: what the policy selects (default tags ["PII"]).
    deterministic: each field's located path is its derivation context.
    context: a fixed derivation context (str or bytes); context_from="record-key": the
         record key (given to open_many) is the context.

    Format 3 (records with a kafka-transit.protection header, docs/protected-records.md;
    records without one are read as before):
    stream: the stream name records are bound to (default: the topic read, from the ctx).
    record_keys_key: the transit key of encrypted record keys (open_key).
    require_binding: ("stream", "key") a record must be bound to at least; when not empty,
         records without the protection header are refused too.
    keep_hmac_keys: open_key passes HMAC'd record keys on as received instead of refusing
         them (they cannot be restored).
    """

    def __init__(self, transit, registry, key, tags=("PII",), fields=(), deterministic=False, context=None,
                 context_from=None, stream=None, record_keys_key=None, require_binding=(), keep_hmac_keys=False):
        if context_from not in (None, "record-key"):
            raise ValueError('context_from is None or "record-key"')
        if deterministic and (context is not None or context_from):
            raise ValueError("deterministic makes each field's path its derivation context; "
                             "give no context or context_from")
        if context is not None and context_from:
            raise ValueError("give context or context_from, not both")
        if isinstance(key, str) and key_name_problem(key.encode()):
            raise ValueError(f"key: not a transit key name ({key_name_problem(key.encode())})")
        # Like kafka-transit's own stream option: a topic's characters (the same rule as key names).
        for name, text in (("stream", stream), ("record_keys_key", record_keys_key)):
            if text is not None and key_name_problem(text.encode()):
                raise ValueError(f"{name}: not a valid name ({key_name_problem(text.encode())})")
        unknown = set(require_binding) - {"stream", "key"}
        if unknown:
            raise ValueError(f'require_binding takes "stream" and "key", not {sorted(unknown)}')
        self.transit = transit
        self.key = key
        self.selection = Selection(tags, fields)
        self.schemas = WriterSchemas(registry, self.selection)
        self.deterministic = deterministic
        self.context = context.encode() if isinstance(context, str) else context
        self.context_from = context_from
        self.stream = stream
        self.record_keys_key = record_keys_key
        self.require_binding = tuple(require_binding)
        self.keep_hmac_keys = keep_hmac_keys

    def writer(self, value: bytes):
        """(schema id, message indexes or None, the walker of its writer schema)."""
        schema_id, _, _ = unframe(value)
        walker = self.schemas.get(schema_id)
        indexes = unframe(value, protobuf=True)[1] if walker.kind == "PROTOBUF" else None
        return schema_id, indexes, walker

    def writer_message_class(self, value: bytes):
        """For Protobuf without generated code: the message class of the record's writer
        schema and message (for ProtobufDeserializer(cls, conf))."""
        from google.protobuf import message_factory
        schema_id, indexes, walker = self.writer(value)
        if walker.kind != "PROTOBUF":
            raise FieldError(f"schema id {schema_id} is {walker.kind}, not Protobuf", "schema")
        return message_factory.GetMessageClass(walker.message(indexes))

    def locate(self, record, value: bytes) -> list:
        """The protected fields of `record`, deserialized from `value`."""
        schema_id, indexes, walker = self.writer(value)
        try:
            if walker.kind == "PROTOBUF":
                if not hasattr(record, "DESCRIPTOR"):
                    raise FieldError("a Protobuf record must be a message", "schema")
                slots = walker.slots(record, indexes)
            elif not isinstance(record, PLAIN_TYPES):
                # An object from_dict made: its fields cannot be found, so refused.
                raise FieldError(f"an {walker.kind} record must be what the deserializer gives without from_dict "
                                 f"(a dict), not {type(record).__name__}: give from_dict to "
                                 "ProtectedFieldsDeserializer instead", "schema")
            else:
                slots = walker.slots(record)
            for slot in slots:
                if slot.refusal is not None:
                    raise slot.refusal
            return slots
        except FieldError as error:
            raise FieldError(f"value (schema id {schema_id}): {error}", error.kind) from None

    def _key_for(self, ctx) -> str:
        key = self.key(ctx) if callable(self.key) else self.key
        problem = key_name_problem(key.encode()) if isinstance(key, str) else "it is not a string"
        if problem:
            raise FieldError(f"the key for this record is not a transit key name ({problem})", "vault")
        return key

    def flags(self, headers):
        """Step 1 of docs/protected-records.md "What each reader must check": the record's
        format 3 flags from its protection header (None: format 2), before any Vault call.
        Refused: two headers, one that is not "3;XX", unknown flags, the body flags a
        field record never has (sealed headers, padding, compression), and records bound
        to less than require_binding (or, with require_binding, without the header)."""
        found = [value for name, value in headers if name == PROTECTION_HEADER]
        if len(found) > 1:
            raise FieldError(f"the record carries {len(found)} {PROTECTION_HEADER} headers", "flags")
        if found and found[0] is None:
            raise FieldError(f"the record's {PROTECTION_HEADER} header has no value", "flags")
        try:
            # No value given: a schema'd value is never an envelope (its framing is unframe's).
            flags = record_flags(None, found[0] if found else None, self.require_binding)
        except EnvelopeError as error:
            raise FieldError(str(error), error.kind) from None
        if flags is not None and flags & (HEADERS | PADDED | COMPRESSION_MASK):
            raise FieldError(f"the record's {PROTECTION_HEADER} header (flags 0x{flags:02x}) says the value has "
                             "sealed headers, padding or compression, which protected fields never have", "flags")
        return flags

    def _stream(self, topic) -> str:
        stream = self.stream or topic
        if not stream:
            raise FieldError("the record is bound to its stream (or its key is encrypted under it): give the "
                             "opener `stream`, or a ctx with the topic read", "config")
        return stream

    def open(self, record, value: bytes, ctx=None, record_key=KEY_NOT_GIVEN, headers=None, topic=None):
        return self.open_many([(record, value, ctx, record_key, headers, topic)])[0]

    def open_many(self, entries, return_errors: bool = False) -> list:
        """entries: (record, value, ctx, record key[, headers[, topic]]) each: the record
        key as received (None for none; KEY_NOT_GIVEN refuses records bound to their key),
        headers as confluent-kafka gives them ([(name, bytes)]) and the topic read, both by
        default the ctx's. Every field goes to Vault in one batch request per transit key;
        format 3 fields with their binding as associated data. Returns the records opened
        in place; a record that fails raises its FieldError, or with return_errors=True
        stands as the FieldError. Record keys are open_key's."""
        results = [None] * len(entries)
        pending = {}
        for i, entry in enumerate(entries):
            record, value, ctx, record_key = entry[:4]
            results[i] = record
            if record is None or value is None:
                continue
            try:
                headers, topic = _headers_and_topic(ctx, *entry[4:6])
                flags = self.flags(headers)
                slots = self.locate(record, value)
                if not slots:
                    continue
                if self.context_from == "record-key" and (record_key is None or record_key is KEY_NOT_GIVEN):
                    raise FieldError("the context is the record key, and the record has none", "vault")
                context = record_key if self.context_from == "record-key" else self.context
                contexts = [s.path.encode() if self.deterministic else context for s in slots]
                bindings = [None] * len(slots)
                if flags is not None:
                    if flags & KEY and record_key is KEY_NOT_GIVEN:
                        raise FieldError(f"the record is bound to its key ({PROTECTION_HEADER} header): give its "
                                         "key as received (open_many's (value, ctx, key))", "config")
                    stream = self._stream(topic) if flags & STREAM else None
                    # The field part is the located path, as the runner bound it (not the configured path).
                    bindings = [binding(flags, stream, record_key, s.path) for s in slots]
                pending.setdefault(self._key_for(ctx), []).append((i, slots, contexts, bindings))
            except FieldError as error:
                results[i] = error
        for key, groups in pending.items():
            # Format 2 items stay (ciphertext, context): see decrypt_batch.
            items = [(slot.ciphertext, context) + (() if bound is None else (bound,))
                     for _, slots, contexts, bindings in groups
                     for slot, context, bound in zip(slots, contexts, bindings)]
            try:
                plaintexts = decrypt_batch(self.transit, key, items)
            except TransitError as error:
                for i, _, _, _ in groups:
                    results[i] = FieldError(f"Vault could not open the fields ({len(items)} in this batch): {error}",
                                            "vault")
                continue
            at = 0
            for i, slots, _, bindings in groups:
                schema_id = unframe(entries[i][1])[0]
                opened, failure = [], None
                for slot, bound in zip(slots, bindings):
                    plaintext = plaintexts[at]
                    at += 1
                    if failure is not None:
                        continue
                    if isinstance(plaintext, Exception) and bound is not None and getattr(plaintext, "authentication",
                                                                                          False):
                        failure = FieldError(f"value (schema id {schema_id}): field {slot.where} does not "
                                             "authenticate with its binding (moved to another place, record key or "
                                             f"stream, or its {PROTECTION_HEADER} header altered): {plaintext}",
                                             "authentication")
                    elif isinstance(plaintext, Exception):
                        failure = FieldError(f"value (schema id {schema_id}): field {slot.where}: {plaintext}",
                                             "vault")
                    elif slot.kind == "string":
                        try:
                            opened.append(bytes(plaintext).decode("utf-8"))
                        except UnicodeDecodeError:
                            failure = FieldError(f"value (schema id {schema_id}): field {slot.where} is a string "
                                                 "field but decrypted to bytes that are not UTF-8", "plaintext")
                    else:
                        opened.append(bytes(plaintext))
                if failure is not None:
                    results[i] = failure
                    continue
                for slot, plaintext in zip(slots, opened):
                    slot.assign(plaintext)
        if not return_errors:
            for result in results:
                if isinstance(result, FieldError):
                    raise result
        return results

    def open_key(self, record_key, ctx=None, headers=None, topic=None):
        """The record key as it was before protection, from the key as received (so it
        works as DeserializingConsumer's key_deserializer, whose ctx carries the topic and
        headers): decrypted with `record_keys_key` and the stream when the protection
        header says it is encrypted; an HMAC'd one (one-way) refused unless
        keep_hmac_keys, then as received; otherwise as received. Refuses what `flags`
        refuses, as the runner refuses the whole record."""
        headers, topic = _headers_and_topic(ctx, headers, topic)
        flags = self.flags(headers)
        if flags is None or not flags & RECORD_KEYS_MASK:
            return record_key
        if flags & RECORD_KEYS_MASK == KEYS_HMAC:
            if self.keep_hmac_keys:
                return record_key
            raise FieldError(f"the record key is an HMAC ({PROTECTION_HEADER} header), which cannot be turned back "
                             "into the source key; keep_hmac_keys passes such keys on as they are", "record key")
        if record_key is None:
            return None
        if not bytes(record_key).startswith(VAULT_PREFIX.encode()):
            raise FieldError(f"the record key is not a Vault ciphertext (vault:v...), though its {PROTECTION_HEADER} "
                             "header says it is encrypted", "record key")
        try:
            return restore_record_key(self.transit, self.record_keys_key, bytes(record_key), flags,
                                      self._stream(topic))
        except UnicodeDecodeError:
            raise FieldError("the record key is not a Vault ciphertext (not ASCII)", "record key") from None
        except EnvelopeError as error:
            raise FieldError(f"the record key could not be restored: {error}", error.kind) from None


class ProtectedFieldsDeserializer:
    """A deserializer (value, ctx) -> record: `inner` (AvroDeserializer, JSONDeserializer,
    ProtobufDeserializer) deserializes, then every protected field is opened. Give
    `from_dict` here rather than to the inner deserializer: it runs on the opened dict.
    Format 3 records need the ctx's topic and headers (SerializationContext(topic,
    MessageField.VALUE, message.headers())) and, when bound to their key, the record key:
    give it to open_many."""

    def __init__(self, inner, opener: FieldOpener, from_dict=None):
        self.inner = inner
        self.opener = opener
        self.from_dict = from_dict

    def __call__(self, value, ctx=None):
        return self.open_many([(value, ctx)])[0]

    def open_many(self, items, return_errors: bool = False) -> list:
        """items: (value, ctx), (value, ctx, record key) or (value, ctx, record key,
        headers): the key as received, headers (by default the ctx's) as confluent-kafka
        gives them. One Vault request for all."""
        entries, results = [], []
        for item in items:
            value, ctx = item[0], item[1]
            record_key = item[2] if len(item) > 2 else KEY_NOT_GIVEN
            headers = item[3] if len(item) > 3 else None
            try:
                record = self.inner(value, ctx) if value is not None else None
            except Exception as error:  # noqa: BLE001 - the inner deserializer's own error
                if not return_errors:
                    raise
                record, value = error, None
            entries.append((record, value, ctx, record_key, headers))
        for (record, value, ctx, _, _), opened in zip(entries, self.opener.open_many(entries, return_errors)):
            if self.from_dict is not None and opened is not None and not isinstance(opened, Exception):
                opened = self.from_dict(opened, ctx)
            results.append(opened)
        return results


# ---------------------------------------------------------------------------------------
# open-file


def transit_from_env(mount: str = "transit") -> BatchTransit:
    for name in ("VAULT_ADDR", "VAULT_TOKEN"):
        if not os.environ.get(name):
            sys.exit(f"set {name}")
    return BatchTransit(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], mount=mount,
                        namespace=os.environ.get("VAULT_NAMESPACE") or None,
                        verify=os.environ.get("VAULT_CACERT") or True)


class Reserializer:
    """The opened records serialized again by confluent-kafka's serializer for the format,
    under each record's own schema id, registering nothing."""

    def __init__(self, fmt: str, registry, opener: FieldOpener, subject: str = None):
        self.fmt, self.registry, self.opener, self.subject = fmt, registry, opener, subject
        self._serializers = {}
        self._deserializers = {}

    def _subject_of(self, schema_id: int) -> str:
        if self.subject:
            return self.subject
        versions = self.opener.schemas._fetch(lambda: self.registry.get_schema_versions(schema_id),
                                              f"the subjects of schema id {schema_id}")
        if not versions:
            raise FieldError(f"schema id {schema_id} is under no subject", "registry")
        return versions[0].subject

    def deserializer(self, value: bytes):
        """The stock deserializer for this record (Protobuf: of its writer's message)."""
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        # The writer schema alone: no subject, so no reader schema, rules or migrations.
        conf = {"subject.name.strategy": lambda _ctx, _name: None}
        if self.fmt == "avro":
            key = "avro"
            make = lambda: AvroDeserializer(self.registry, conf=conf)  # noqa: E731
        elif self.fmt == "json":
            key = "json"
            make = lambda: JSONDeserializer(None, schema_registry_client=self.registry, conf=conf)  # noqa: E731
        else:
            schema_id, indexes, _ = self.opener.writer(value)
            key = (schema_id, tuple(indexes))
            # No registry: it would ask for ?format=serialized, which Apicurio cannot serve.
            make = lambda: ProtobufDeserializer(self.opener.writer_message_class(value), {})  # noqa: E731
        if key not in self._deserializers:
            self._deserializers[key] = make()
        return self._deserializers[key]

    def serialize(self, record, value: bytes) -> bytes:
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext
        schema_id, indexes, walker = self.opener.writer(value)
        cache_key = (schema_id, tuple(indexes or ()))
        if cache_key not in self._serializers:
            if self.fmt == "protobuf":
                # Framed with the record's own schema id and message indexes: with
                # use.schema.id the serializer asks the registry for ?format=serialized,
                # which Apicurio cannot serve; called without a context it asks nothing.
                serializer = ProtobufSerializer(
                    type(record), self.registry,
                    {"auto.register.schemas": False, "use.latest.version": False,
                     "schema.id.serializer": lambda payload, _ctx, _id: frame(schema_id, payload, indexes)})
                self._serializers[cache_key] = lambda r: serializer(r, None)
            else:
                subject = self._subject_of(schema_id)
                conf = {"auto.register.schemas": False, "use.schema.id": schema_id,
                        "subject.name.strategy": lambda _ctx, _name: subject}
                if self.fmt == "avro":
                    serializer = AvroSerializer(self.registry, walker.schema, conf=conf)
                else:
                    serializer = JSONSerializer(walker.schema, self.registry, conf=conf)
                ctx = SerializationContext(subject, MessageField.VALUE)
                self._serializers[cache_key] = functools.partial(serializer, ctx=ctx)
        return self._serializers[cache_key](record)


def _unb64(text):
    return None if text is None else base64.b64decode(text)


def _b64(data):
    return None if data is None else base64.b64encode(data).decode()


def open_file(lines, registry, opener: FieldOpener, fmt: str, subject: str = None, batch: int = 500):
    """JSON lines in, JSON lines out (see the module doc). Returns (out lines, counts)."""
    from confluent_kafka.serialization import MessageField, SerializationContext
    reserializer = Reserializer(fmt, registry, opener, subject)
    counts = {"records": 0, "opened": 0, "errors": 0, "tombstones": 0}
    out = []
    records = [json.loads(line) for line in lines if line.strip()]
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        entries, keys = [], []
        for line in chunk:
            value = _unb64(line.get("value"))
            record_key = _unb64(line.get("key"))
            # The topic and headers, when the file has them, are what format 3 needs (the
            # stream, the protection header); without them records read as format 2.
            headers = [(name, _unb64(header)) for name, header in line.get("headers") or []]
            ctx = SerializationContext(line.get("topic"), MessageField.VALUE, headers)
            try:
                keys.append(opener.open_key(record_key, ctx))
            except FieldError as caught:
                keys.append(caught)
            record = error = None
            if value is not None:
                try:
                    schema_id, _, _ = unframe(value)
                    kind = opener.schemas.get(schema_id).kind
                    if kind.lower() != fmt:
                        raise FieldError(f"schema id {schema_id} is {kind}, not {fmt}", "schema")
                    record = reserializer.deserializer(value)(value, None)
                except FieldError as caught:
                    error = caught
                except Exception as caught:  # noqa: BLE001 - the stock deserializer's own error
                    error = FieldError(f"the {fmt} deserializer failed: {type(caught).__name__}: {caught}", "schema")
            entries.append((record if error is None else error, value if error is None else None, ctx, record_key))
        opened = opener.open_many(entries, return_errors=True)
        for line, (_, value, ctx, _), key, result in zip(chunk, entries, keys, opened):
            counts["records"] += 1
            # What the file has besides key and value goes on, the protection header left out
            # (the record is no longer protected).
            rest = {name: line[name] for name in ("topic", "headers") if name in line}
            if "headers" in rest:
                rest["headers"] = [[name, header] for name, header in line["headers"] or []
                                   if name != PROTECTION_HEADER]
            if isinstance(key, Exception):
                result = key
            elif line.get("value") is None:
                counts["tombstones"] += 1
                out.append({"key": _b64(key), "value": None, **rest})
                continue
            if not isinstance(result, Exception):
                try:
                    result = base64.b64encode(reserializer.serialize(result, value)).decode()
                except FieldError as caught:
                    result = caught
                except Exception as caught:  # noqa: BLE001 - the stock serializer's own error
                    result = FieldError(f"the {fmt} serializer failed: {type(caught).__name__}: {caught}", "schema")
            if isinstance(result, Exception):
                counts["errors"] += 1
                out.append({"key": line.get("key"), "error": str(result), **rest})
            else:
                counts["opened"] += 1
                out.append({"key": _b64(key), "value": result, **rest})
    return out, counts


def cmd_open_file(args) -> int:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    registry = SchemaRegistryClient({"url": args.registry, "timeout": 10, "max.retries": 2})
    transit = transit_from_env(args.mount)
    opener = FieldOpener(transit, registry, args.key, tags=args.tags, fields=args.fields,
                         deterministic=args.deterministic, context=args.context,
                         context_from="record-key" if args.context_from_key else None, stream=args.stream,
                         record_keys_key=args.record_keys_key, require_binding=args.require_binding,
                         keep_hmac_keys=args.keep_hmac_keys)
    with open(args.input, encoding="utf-8") as handle:
        out, counts = open_file(handle, registry, opener, args.format, args.subject, args.batch)
    with open(args.output, "w", encoding="utf-8") as handle:
        for line in out:
            handle.write(json.dumps(line) + "\n")
    print(f"open-file: {counts['records']} records from {args.input}: {counts['opened']} opened, "
          f"{counts['errors']} could not be, {counts['tombstones']} tombstones; {transit.requests} Vault requests; "
          f"wrote {args.output}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("open-file", help="open the protected fields of a file of records")
    p.add_argument("--in", dest="input", required=True,
                   help='JSON lines {"key": b64|null, "value": b64|null[, "topic": str, '
                        '"headers": [[name, b64|null]]]}')
    p.add_argument("--out", dest="output", required=True, help="JSON lines, each value opened (or an error)")
    p.add_argument("--registry", required=True, help="Confluent-compatible Schema Registry URL")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--key", required=True, help="the transit key the fields were encrypted under")
    p.add_argument("--tags", nargs="*", default=["PII"], help="tags that select fields (default PII)")
    p.add_argument("--fields", nargs="*", default=[], help="field paths that select fields (/a/*/b)")
    p.add_argument("--deterministic", action="store_true", help="each field's located path is its context")
    p.add_argument("--context", help="a fixed derivation context")
    p.add_argument("--context-from-key", action="store_true", help="the record key is the derivation context")
    p.add_argument("--stream", help="format 3: the stream records are bound to (default: each line's topic)")
    p.add_argument("--record-keys-key", help="format 3: the transit key of encrypted record keys")
    p.add_argument("--require-binding", nargs="*", default=[], choices=["stream", "key"],
                   help="format 3: refuse records bound to less (and records without the protection header)")
    p.add_argument("--keep-hmac-keys", action="store_true",
                   help="format 3: pass HMAC'd record keys on as they are instead of refusing the record")
    p.add_argument("--mount", default="transit", help="the transit mount (default transit)")
    p.add_argument("--subject", help="the subject for the serializers' use.schema.id (default: the id's first)")
    p.add_argument("--batch", type=int, default=500, help="records per Vault request (default 500)")
    args = parser.parse_args()
    sys.exit(cmd_open_file(args))


if __name__ == "__main__":
    main()

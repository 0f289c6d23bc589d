"""Writes docs/schema-fields-test-vectors.json: Avro, Protobuf and JSON Schema records in
Confluent's wire format, which of their bytes are protected fields, and the same records
protected. Encoded by fastavro, Python's protobuf and `json`, with no kafka-transit code, so
the vectors check the Rust walkers (schema-fields/tests/vectors.rs) and every reader
independently.

    python3 docs/gen-schema-fields-test-vectors.py            # rewrite the file
    python3 docs/gen-schema-fields-test-vectors.py --check    # fail if the file differs

The generator does not walk the encoded records: it knows which values of each record it
selected (the schema's tagged fields and the vector's `fields`), takes them in the order
its encoder writes them (Avro: schema field order, array and map order; Protobuf: field
numbers, map keys sorted by the deterministic serializer; JSON: member order), and checks
that order by encoding the record once more with a distinct marker in each selected value.

A protected content here is a stand-in for Vault's ciphertext, vault:v1:<base64 of the
plaintext content>: a real one depends on a Vault key and a random nonce, and the vectors
pin where the fields are and what stays byte for byte, not transit's encryption.
"""
import base64
import copy
import io
import json
import os
import struct
import sys

import fastavro
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema-fields-test-vectors.json")
ENVELOPE_VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envelope-test-vectors.json")

STAND_IN_PREFIX = "vault:v1:"
STREAM_BOUND, KEY_BOUND, KEYS_ENCRYPTED = 0x01, 0x02, 0x40
STREAM = "customers.protected"


def stand_in(content: bytes) -> str:
    return STAND_IN_PREFIX + base64.b64encode(content).decode()


def pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


# --- Format 3 binding (docs/protected-records.md), from the document alone ------------------

def binding(flags: int, stream: str, key, pointer: str) -> bytes:
    """"kafka-transit/3" ‖ flags ‖ [u16 len ‖ stream] ‖ [0x00 | 0x01 ‖ u32 len ‖ key] ‖ u32 len ‖ path."""
    data = b"kafka-transit/3" + bytes([flags])
    if flags & STREAM_BOUND:
        data += struct.pack(">H", len(stream.encode())) + stream.encode()
    if flags & KEY_BOUND:
        data += b"\x00" if key is None else b"\x01" + struct.pack(">I", len(key)) + key
    return data + struct.pack(">I", len(pointer.encode())) + pointer.encode()


def check_binding_against_envelope_vectors() -> None:
    """The same function as the envelope vectors' format 3 bindings (which carry a pointer)."""
    with open(ENVELOPE_VECTORS, encoding="utf-8") as file:
        published = json.load(file)["format3"]["bindings"]
    checked = 0
    for entry in published:
        if entry["pointer"] is None:
            continue
        key = None if entry["record_key_hex"] is None else bytes.fromhex(entry["record_key_hex"])
        made = binding(entry["flags"], entry["stream"], key, entry["pointer"]).hex()
        assert made == entry["binding_hex"], f"binding differs from envelope-test-vectors.json: {entry}"
        checked += 1
    assert checked, "envelope-test-vectors.json has no format 3 binding with a pointer to compare with"


# --- Selected values: where they are in the Python record -----------------------------------

def matches(pattern: list, path: list) -> bool:
    return len(pattern) == len(path) and all(p in ("*", step) for p, step in zip(pattern, path))


def selected(record, patterns: list) -> list:
    """(path tokens, value) of every selected value, in the record's iteration order (the
    encoders' order, checked by `check_order`). A selected list or dict selects each of its
    elements or values; None (a null union, an absent optional) is not there."""
    parsed = [p.split("/")[1:] for p in patterns]
    found = []

    def visit(value, path):
        if value is None:
            return
        if any(matches(p, path) for p in parsed):
            if isinstance(value, (str, bytes)):
                found.append((path, value))
                return
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                assert isinstance(item, (str, bytes)), f"{path}: selected values must be strings or bytes"
                found.append((path + [str(key)], item))
            return
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, path + [key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, path + [str(index)])

    visit(record, [])
    return found


def replaced(record, found: list, contents: list):
    """A copy of `record` with each selected value (as `selected` listed them) replaced."""
    out = copy.deepcopy(record)
    for (path, _), content in zip(found, contents):
        parent = out
        for step in path[:-1]:
            parent = parent[int(step)] if isinstance(parent, list) else parent[step]
        last = path[-1]
        parent[int(last) if isinstance(parent, list) else last] = content
    return out


def stand_ins(found: list) -> list:
    """Each value's stand-in ciphertext: text for a string, its UTF-8 bytes for bytes."""
    out = []
    for _, value in found:
        if isinstance(value, str):
            out.append(stand_in(value.encode()))
        else:
            out.append(stand_in(value).encode())
    return out


def check_order(name: str, encode, record, found: list) -> None:
    """Markers in place of the selected values occur in the encoded record once each, in
    the order `found` lists them."""
    markers = [f"@@{i:03d}@@" for i in range(len(found))]
    contents = [m if isinstance(v, str) else m.encode() for m, (_, v) in zip(markers, found)]
    body = encode(replaced(record, found, contents))
    at = -1
    for marker in markers:
        position = body.find(marker.encode())
        assert position > at and body.count(marker.encode()) == 1, f"{name}: {marker} out of order"
        at = position


# --- Avro ---------------------------------------------------------------------------------

PII = ["PII"]

AVRO_ADDRESS = {"type": "record", "name": "Address", "fields": [
    {"name": "street", "type": "string", "confluent:tags": PII},
    {"name": "city", "type": "string"},
]}
AVRO_CUSTOMER = json.dumps({"type": "record", "name": "Customer", "namespace": "com.acme", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string", "confluent:tags": PII},
    {"name": "email", "type": ["null", "string"], "default": None, "confluent:tags": PII},
    {"name": "address", "type": AVRO_ADDRESS},
    {"name": "previous", "type": ["null", "Address"], "default": None},
    {"name": "aliases", "type": {"type": "array", "items": "string"}, "confluent:tags": PII},
    {"name": "attributes", "type": {"type": "map", "values": "string"}, "confluent:tags": PII},
    {"name": "photo", "type": "bytes", "confluent:tags": PII},
    {"name": "note", "type": "string"},
    {"name": "score", "type": "double"},
]})
# What the tags select in AVRO_CUSTOMER (street is tagged in Address, wherever it is used).
AVRO_TAGGED = ["/name", "/email", "/address/street", "/previous/street", "/aliases/*", "/attributes/*",
               "/photo"]

AVRO_FULL = {
    "id": 42,
    "name": "Zoë Ünal 李小龍",
    "email": "zoe@example.com",
    "address": {"street": "1 Rue de l'Église", "city": "Paris"},
    "previous": {"street": "Þórsgata 5", "city": "Reykjavík"},
    "aliases": ["Zo", "", "Зоя"],
    "attributes": {"a/b": "slash", "t~1": "tilde", "tier": "gold 🥇"},
    "photo": b"\x89PNG\r\n\x1a\n\x00\xff\xfe",
    "note": "not personal",
    "score": 1.5,
}
AVRO_SPARSE = {
    "id": -7,
    "name": "",
    "email": None,
    "address": {"street": "Main St", "city": ""},
    "previous": None,
    "aliases": [],
    "attributes": {},
    "photo": b"",
    "note": "",
    "score": 0.0,
}


def avro_encoder(text: str, references: list):
    named = {}
    for reference in references:
        fastavro.parse_schema(json.loads(reference["schema"]), named_schemas=named)
    schema = fastavro.parse_schema(json.loads(text), named_schemas=named)

    def encode(record) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        return out.getvalue()

    encode.reads = lambda body: fastavro.schemaless_reader(io.BytesIO(body), schema, None)
    encode.same = lambda body, record: encode.reads(body) == record
    return encode


# --- Protobuf -------------------------------------------------------------------------------

ADDRESS_PROTO = """syntax = "proto3";
package acme;

import "confluent/meta.proto";

message Address {
  string street = 1 [(confluent.field_meta).tags = "PII"];
  string city = 2;
}
"""

CUSTOMER_PROTO = """syntax = "proto3";
package shop;

import "confluent/meta.proto";
import "acme/address.proto";

message Header {
  string trace_id = 1;
}

message Customer {
  message Phone {
    string number = 1 [(confluent.field_meta).tags = "PII"];
    int32 kind = 2;
  }
  string name = 1 [(confluent.field_meta).tags = "PII"];
  acme.Address address = 2;
  repeated string aliases = 3 [(confluent.field_meta).tags = "PII"];
  map<string, string> attributes = 4 [(confluent.field_meta).tags = "PII"];
  oneof contact {
    string email = 5 [(confluent.field_meta).tags = "PII"];
    int64 pager = 6;
  }
  bytes photo = 7 [(confluent.field_meta).tags = "PII"];
  optional string nickname = 8 [(confluent.field_meta).tags = "PII"];
  int32 age = 9;
  repeated Phone phones = 10;
  string note = 11;
}
"""
ADDRESS_REFERENCE = {"name": "acme/address.proto", "subject": "acme-address", "version": 1,
                     "schema": ADDRESS_PROTO}
PROTO_CUSTOMER_TAGGED = ["/name", "/address/street", "/aliases/*", "/attributes/*", "/email", "/photo",
                         "/nickname", "/phones/*/number"]

FD = descriptor_pb2.FieldDescriptorProto
SCALARS = {"string": FD.TYPE_STRING, "bytes": FD.TYPE_BYTES, "int32": FD.TYPE_INT32, "int64": FD.TYPE_INT64}


def pii_options() -> descriptor_pb2.FieldOptions:
    """(confluent.field_meta).tags = "PII": FieldOptions extension 1088, a confluent.Meta
    whose field 3 is the tags, kept as unknown option bytes (no meta.proto needed here)."""
    meta = b"\x1a\x03PII"
    options = descriptor_pb2.FieldOptions()
    options.MergeFromString(b"\x82\x44" + bytes([len(meta)]) + meta)
    return options


def proto_field(name, number, kind, repeated=False, tagged=False, oneof=None, optional=False):
    field = FD(name=name, number=number, json_name=name,
               label=FD.LABEL_REPEATED if repeated else FD.LABEL_OPTIONAL)
    if kind in SCALARS:
        field.type = SCALARS[kind]
    else:
        field.type, field.type_name = FD.TYPE_MESSAGE, kind
    if tagged:
        field.options.CopyFrom(pii_options())
    if oneof is not None:
        field.oneof_index = oneof
    if optional:
        field.proto3_optional = True
    return field


def proto_files() -> list:
    """The two .proto texts above as descriptors, written by hand (protoc is not needed)."""
    address = descriptor_pb2.FileDescriptorProto(name="acme/address.proto", package="acme", syntax="proto3")
    address.message_type.add(name="Address", field=[
        proto_field("street", 1, "string", tagged=True),
        proto_field("city", 2, "string"),
    ])
    customer = descriptor_pb2.FileDescriptorProto(name="shop/customer.proto", package="shop", syntax="proto3",
                                                  dependency=["acme/address.proto"])
    customer.message_type.add(name="Header", field=[proto_field("trace_id", 1, "string")])
    message = customer.message_type.add(name="Customer")
    # The nested types in the order protoc writes them: declared messages and map entries
    # as they occur in the text (Phone first, so it is index 0 however they are counted).
    message.nested_type.add(name="Phone", field=[
        proto_field("number", 1, "string", tagged=True),
        proto_field("kind", 2, "int32"),
    ])
    entry = message.nested_type.add(name="AttributesEntry", field=[
        proto_field("key", 1, "string"),
        proto_field("value", 2, "string"),
    ])
    entry.options.map_entry = True
    message.field.extend([
        proto_field("name", 1, "string", tagged=True),
        proto_field("address", 2, ".acme.Address"),
        proto_field("aliases", 3, "string", repeated=True, tagged=True),
        proto_field("attributes", 4, ".shop.Customer.AttributesEntry", repeated=True, tagged=True),
        proto_field("email", 5, "string", tagged=True, oneof=0),
        proto_field("pager", 6, "int64", oneof=0),
        proto_field("photo", 7, "bytes", tagged=True),
        proto_field("nickname", 8, "string", tagged=True, oneof=1, optional=True),
        proto_field("age", 9, "int32"),
        proto_field("phones", 10, ".shop.Customer.Phone", repeated=True),
        proto_field("note", 11, "string"),
    ])
    message.oneof_decl.add(name="contact")
    message.oneof_decl.add(name="_nickname")
    return [address, customer]


def proto_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in proto_files():
        pool.Add(file)
    return pool


POOL = proto_pool()


def fill(message, data: dict) -> None:
    for name, value in data.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name) if field.is_repeated or field.message_type else None
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                target[key] = item
        elif field.is_repeated:
            for item in value:
                if field.message_type is not None:
                    fill(target.add(), item)
                else:
                    target.append(item)
        elif field.message_type is not None:
            target.SetInParent()
            fill(target, value)
        else:
            setattr(message, name, value)


def proto_encoder(full_name: str):
    cls = message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))

    def encode(record) -> bytes:
        message = cls()
        fill(message, record)
        # Deterministic: map entries sorted by key, the order `located` lists them in.
        return message.SerializeToString(deterministic=True)

    def same(body, record) -> bool:
        message = cls()
        fill(message, record)
        return cls.FromString(body) == message

    encode.cls = cls
    encode.reads = cls.FromString
    encode.same = same
    return encode


def concatenated(encode, between: bytes):
    """Parts of one message written one after the other, `between` (say an unknown field)
    between them: protobuf reads that as the parts merged, a non-repeated field's last
    occurrence winning and a repeated field's elements appended."""
    cls = encode.cls

    def joined(parts) -> bytes:
        return between.join(encode(part) for part in parts)

    def same(body, parts) -> bool:
        merged = cls()
        for part in parts:
            message = cls()
            fill(message, part)
            merged.MergeFrom(message)
        read = cls.FromString(body)
        read.DiscardUnknownFields()
        return read == merged

    joined.same = same
    return joined


def merged_path(parts: list):
    """A path in the list of parts to the path in the merged message: the part's index
    dropped, a repeated field's index counted on from the parts before."""
    def path(steps: list) -> list:
        part, field, *rest = steps
        if rest and isinstance(parts[int(part)][field], list):
            before = sum(len(p.get(field, [])) for p in parts[:int(part)])
            rest = [str(int(rest[0]) + before)] + rest[1:]
        return [field] + rest

    return path


def message_indexes(indexes: list) -> bytes:
    """Confluent's framing of the message indexes: [0] is the single byte 0, otherwise a
    zigzag varint count, then each index as a zigzag varint."""
    def varint(n: int) -> bytes:
        n = (n << 1) ^ (n >> 63)
        out = b""
        while True:
            byte = n & 0x7F
            n >>= 7
            if n:
                out += bytes([byte | 0x80])
            else:
                return out + bytes([byte])

    if indexes == [0]:
        return b"\x00"
    return varint(len(indexes)) + b"".join(varint(i) for i in indexes)


# Records as dicts in field-number order (the order the serializer writes them). A proto3
# string or bytes field holding "" or b"" is not on the wire, so it is left out: there is
# nothing of it to protect.
PROTO_FULL = {
    "name": "José 山田",
    "address": {"street": "1 Rue Þór", "city": "Paris"},
    "aliases": ["Jo", "", "山"],
    "attributes": {"a/b": "slash", "plain": "p", "t~1": "tilde"},
    "email": "jose@example.com",
    "photo": b"\x89PNG\x00\xff\xfe",
    "nickname": "Pepe",
    "age": 41,
    "phones": [{"number": "+33 1 23 45 67 89", "kind": 1}, {"number": "+81 3-1234-5678", "kind": 2}],
    "note": "vip",
}
PROTO_SPARSE = {
    "pager": 5550100,
    "nickname": "",
    "note": "name and photo empty, so not on the wire",
}
PROTO_PHONE = {"number": "+44 20 7946 0000", "kind": 3}
# One Customer written as two: name twice (a reader keeps the last, and both are
# protected), aliases in both (elements appended: the second part's are /aliases/1 on).
PROTO_TWICE = [
    {"name": "Old Name", "aliases": ["first"], "age": 7},
    {"name": "New Näme", "aliases": ["second", "third"], "note": "concatenated"},
]
# Field 100, varint 1: a field this schema does not know, kept as it came.
UNKNOWN_FIELD = b"\xa0\x06\x01"


# --- JSON Schema ----------------------------------------------------------------------------

JSON_CUSTOMER = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Customer",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string", "confluent:tags": PII},
        "email": {"type": ["string", "null"], "confluent:tags": PII},
        "address": {"$ref": "#/$defs/Address"},
        "previous": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/Address"}]},
        "aliases": {"type": "array", "items": {"type": "string"}, "confluent:tags": PII},
        "attributes": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": PII},
        "note": {"type": "string"},
        "score": {"type": "number"},
    },
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"street": {"type": "string", "confluent:tags": PII}, "city": {"type": "string"}},
        },
    },
}, indent=2)
JSON_TAGGED = ["/name", "/email", "/address/street", "/previous/street", "/aliases/*", "/attributes/*"]

JSON_FULL = {
    "id": 42,
    "name": "Zoë \"Zo\" Ünal 李",
    "email": "zoe@example.com",
    "address": {"street": "1 Rue de l'Église\nBât. B", "city": "Paris"},
    "previous": {"street": "Þórsgata 5", "city": "Reykjavík"},
    "aliases": ["Zo", "", "Зоя"],
    "attributes": {"a/b": "slash", "t~1": "tilde", "tier": "gold 🥇"},
    "note": "not personal",
    "score": 1.5,
}
# Members in another order than the schema's: `located` follows the record.
JSON_SPARSE = {
    "attributes": {},
    "note": "email null, no previous, empty array",
    "aliases": [],
    "email": None,
    "name": "back\\slash / solidus",
    "address": {"city": "Oslo", "street": ""},
    "previous": None,
}


def json_encoder(**style):
    def encode(record) -> bytes:
        # ensure_ascii=False: characters as they are, the way a replaced value is written
        # (only `"`, `\` and control characters escaped), so a record opened again is the
        # record that was protected, byte for byte.
        return json.dumps(record, ensure_ascii=False, **style).encode()

    encode.same = lambda body, record: json.loads(body) == record
    return encode


# --- Vectors --------------------------------------------------------------------------------

RECORD_KEY = b"customer-42"
# A record key as on the sink with record_keys = "encrypt": Vault's ciphertext text.
SINK_KEY = b"vault:v1:Y3VzdG9tZXItNDM="


def frame(schema_id: int, body: bytes, indexes=None) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + (b"" if indexes is None else message_indexes(indexes)) + body


def vector(name, schema_type, schema, schema_id, tags, fields, encode, record, selects, indexes=None,
           references=(), flags=STREAM_BOUND | KEY_BOUND, record_key=RECORD_KEY, located_path=None) -> dict:
    """`selects`: the patterns the generator knows the schema's tags and `fields` select;
    `located_path`: a selected value's path in `record` to its path in the decoded record,
    where they differ."""
    found = selected(record, selects)
    check_order(name, encode, record, found)
    body = encode(record)
    protected_record = replaced(record, found, stand_ins(found))
    protected = encode(protected_record)
    # Both read back with the ordinary library as the records they were written from: a
    # protected record stays valid under its schema.
    assert encode.same(body, record) and encode.same(protected, protected_record), name
    paths = ["".join("/" + pointer_token(step) for step in (located_path or list)(path)) for path, _ in found]
    contents = [value.encode() if isinstance(value, str) else value for _, value in found]
    return {
        "name": name,
        "schema_type": schema_type,
        "schema": schema,
        "references": list(references),
        "schema_id": schema_id,
        "tags": tags,
        "fields": fields,
        "value_hex": frame(schema_id, body, indexes).hex(),
        "located": [{"path": p, "content_hex": c.hex()} for p, c in zip(paths, contents)],
        "protected_hex": frame(schema_id, protected, indexes).hex(),
        "bindings": [
            {"flags": flags, "stream": STREAM, "record_key_hex": None if record_key is None else record_key.hex(),
             "path": p, "binding_hex": binding(flags, STREAM, record_key, p).hex()}
            for p in paths
        ],
    }


def vectors() -> list:
    avro = avro_encoder(AVRO_CUSTOMER, [])
    customer, phone = proto_encoder("shop.Customer"), proto_encoder("shop.Customer.Phone")
    return [
        vector("avro: nested record, union of null and a record, array and map of strings (map keys a/b and "
               "t~1), optional string present, bytes, multi-byte UTF-8, an empty string in an array, "
               "/address/city by path",
               "AVRO", AVRO_CUSTOMER, 101, PII, ["/address/city"], avro, AVRO_FULL,
               AVRO_TAGGED + ["/address/city"]),
        vector("avro: optional string null, union null, empty array and map, empty string and empty bytes "
               "(on the wire, so protected)",
               "AVRO", AVRO_CUSTOMER, 101, PII, ["/address/city"], avro, AVRO_SPARSE,
               AVRO_TAGGED + ["/address/city"]),
        vector("avro: by paths alone (no tags), a map's values by *, a field inside a union's record; null "
               "record key",
               "AVRO", AVRO_CUSTOMER, 101, [], ["/name", "/attributes/*", "/previous/street"], avro, AVRO_FULL,
               ["/name", "/attributes/*", "/previous/street"], record_key=None),
        vector("protobuf: second message of the file (message indexes [1]), an imported message (reference), "
               "repeated string with an empty string, map<string, string> (keys a/b and t~1), oneof string, "
               "bytes, proto3 optional, repeated nested message, /address/city by path",
               "PROTOBUF", CUSTOMER_PROTO, 201, PII, ["/address/city"], customer, PROTO_FULL,
               PROTO_CUSTOMER_TAGGED + ["/address/city"], indexes=[1], references=[ADDRESS_REFERENCE]),
        vector("protobuf: empty name and photo not on the wire, oneof holding its int64, proto3 optional "
               "set to the empty string (on the wire, so protected)",
               "PROTOBUF", CUSTOMER_PROTO, 201, PII, ["/address/city"], customer, PROTO_SPARSE,
               PROTO_CUSTOMER_TAGGED + ["/address/city"], indexes=[1], references=[ADDRESS_REFERENCE]),
        vector("protobuf: a nested message as the record (message indexes [1, 0]); record key encrypted "
               "on the sink (flags 0x43)",
               "PROTOBUF", CUSTOMER_PROTO, 201, PII, [], phone, PROTO_PHONE, ["/number"], indexes=[1, 0],
               references=[ADDRESS_REFERENCE], flags=STREAM_BOUND | KEY_BOUND | KEYS_ENCRYPTED,
               record_key=SINK_KEY),
        vector("protobuf: a non-repeated field twice on the wire and a repeated one in two runs (two "
               "encodings concatenated), an unknown field between them",
               "PROTOBUF", CUSTOMER_PROTO, 201, PII, [], concatenated(customer, UNKNOWN_FIELD), PROTO_TWICE,
               ["/*/name", "/*/aliases/*"], indexes=[1], references=[ADDRESS_REFERENCE],
               located_path=merged_path(PROTO_TWICE)),
        vector("json: $ref to $defs, oneOf of null and a $ref, array of strings with an empty string, "
               "additionalProperties map (keys a/b and t~1), nullable string present, quote, newline and "
               "multi-byte UTF-8 in contents, /address/city by path",
               "JSON", JSON_CUSTOMER, 301, PII, ["/address/city"], json_encoder(), JSON_FULL,
               JSON_TAGGED + ["/address/city"]),
        vector("json: members in another order than the schema's, nullable string null, oneOf null, empty "
               "array and map, backslash, an empty string; indented",
               "JSON", JSON_CUSTOMER, 301, PII, ["/address/city"], json_encoder(indent=2), JSON_SPARSE,
               JSON_TAGGED + ["/address/city"]),
        vector("json: by paths alone (no tags), /aliases selecting each element, a map's values by *; "
               "compact",
               "JSON", JSON_CUSTOMER, 301, [], ["/aliases", "/attributes/*", "/previous/street"],
               json_encoder(separators=(",", ":")), JSON_FULL, ["/aliases", "/attributes/*", "/previous/street"]),
    ]


# --- Refused --------------------------------------------------------------------------------

def refused(name, schema_type, schema, schema_id, value: bytes, side, expect, tags=PII, fields=(),
            references=()) -> dict:
    return {
        "name": name,
        "schema_type": schema_type,
        "schema": schema,
        "references": list(references),
        "schema_id": schema_id,
        "tags": list(tags),
        "fields": list(fields),
        "value_hex": value.hex(),
        "side": side,
        "expect": expect,
    }


def protected_but(name: str, encode, record, selects: list, clear: str, schema_id: int, indexes=None) -> bytes:
    found = selected(record, selects)
    contents = [value if "".join("/" + pointer_token(s) for s in path) == clear else content
                for (path, value), content in zip(found, stand_ins(found))]
    assert sum(1 for (path, _) in found if "".join("/" + pointer_token(s) for s in path) == clear) == 1, name
    return frame(schema_id, encode(replaced(record, found, contents)), indexes)


def refused_by_the_library(read, error) -> None:
    try:
        read()
    except error:
        return
    raise AssertionError("a record meant not to decode decodes")


def refused_cases() -> list:
    avro = avro_encoder(AVRO_CUSTOMER, [])
    customer = proto_encoder("shop.Customer")
    avro_full = frame(101, avro(AVRO_FULL))
    proto_full = customer(PROTO_FULL)
    refs = [ADDRESS_REFERENCE]

    # The body up to the middle of its tagged name: id 42 (zigzag 84, one byte), then the
    # name's length and a part of its bytes.
    name_len = len(AVRO_FULL["name"].encode())
    cut = avro_full[: 5 + 1 + 1 + name_len // 2]
    # The name (field 1, first on the wire) replaced by 2 bytes that are not UTF-8: a lead
    # byte followed by no continuation byte.
    assert proto_full[0] == 0x0A and proto_full[1] < 0x80
    bad_utf8 = b"\x0a\x02\xc3\x28" + proto_full[2 + proto_full[1]:]
    refused_by_the_library(lambda: avro.reads(cut[5:]), EOFError)
    refused_by_the_library(lambda: customer.reads(bad_utf8), DecodeError)

    avro_int = json.dumps({"type": "record", "name": "Account", "fields": [
        {"name": "owner", "type": "string", "confluent:tags": PII},
        {"name": "pin", "type": "int", "confluent:tags": PII},
    ]})
    avro_uuid = json.dumps({"type": "record", "name": "Account", "fields": [
        {"name": "owner", "type": "string", "confluent:tags": PII},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}, "confluent:tags": PII},
    ]})
    json_max_length = json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"ssn": {"$ref": "#/$defs/Ssn", "confluent:tags": PII}, "name": {"type": "string"}},
        "$defs": {"Ssn": {"type": "string", "maxLength": 11}},
    })
    proto_int = 'syntax = "proto3";\npackage bank;\n\nimport "confluent/meta.proto";\n\nmessage Account {\n' \
                '  string owner = 1 [(confluent.field_meta).tags = "PII"];\n' \
                '  int32 pin = 2 [(confluent.field_meta).tags = "PII"];\n}\n'
    # Account { owner: "Ann", pin: 1234 }, by hand (a schema of its own, not in the pool).
    proto_account = b"\x0a\x03Ann\x10\xd2\x09"

    return [
        refused("wire: 4 bytes, shorter than the 5-byte header", "AVRO", AVRO_CUSTOMER, 101,
                b"\x00\x00\x00\x65", "protect", "wire", fields=["/address/city"]),
        refused("wire: magic byte not 0 (a JSON document without the header)", "JSON", JSON_CUSTOMER, 301,
                json_encoder()(JSON_FULL), "protect", "wire", fields=["/address/city"]),
        refused("wire: protobuf message indexes cut short (count 2, one index)", "PROTOBUF", CUSTOMER_PROTO, 201,
                frame(201, b"\x04\x02"), "protect", "wire", references=refs),
        refused("wire: protobuf message index naming no message of the schema ([5])", "PROTOBUF",
                CUSTOMER_PROTO, 201, frame(201, proto_full, [5]), "protect", "wire", references=refs),
        refused("decode: avro record cut inside a tagged string", "AVRO", AVRO_CUSTOMER, 101, cut, "protect",
                "decode"),
        refused("decode: protobuf tagged string that is not UTF-8", "PROTOBUF", CUSTOMER_PROTO, 201,
                frame(201, bad_utf8, [1]), "protect", "decode", references=refs),
        refused("decode: json tagged string holding a number", "JSON", JSON_CUSTOMER, 301,
                frame(301, b'{"id": 1, "name": 42}'), "protect", "decode"),
        refused("schema: avro tag on an int", "AVRO", avro_int, 102,
                frame(102, b"\x06Ann\xa4\x13"), "protect", "schema"),
        refused("schema: avro tagged string with logicalType uuid", "AVRO", avro_uuid, 103,
                frame(103, b"\x06Ann\x48" + b"12345678-1234-1234-1234-123456789012"), "protect", "schema"),
        refused("schema: json tagged string whose $ref has maxLength", "JSON", json_max_length, 302,
                frame(302, b'{"ssn": "123-45-6789", "name": "Ann"}'), "protect", "schema"),
        refused("schema: protobuf tag on an int32", "PROTOBUF", proto_int, 202,
                frame(202, proto_account, [0]), "protect", "schema"),
        refused("not a ciphertext: avro record protected but /address/street in clear", "AVRO", AVRO_CUSTOMER,
                101, protected_but("avro", avro, AVRO_FULL, AVRO_TAGGED + ["/address/city"], "/address/street",
                                   101), "open", "not a ciphertext", fields=["/address/city"]),
        refused("not a ciphertext: protobuf record protected but /attributes/t~01 in clear", "PROTOBUF",
                CUSTOMER_PROTO, 201,
                protected_but("protobuf", customer, PROTO_FULL, PROTO_CUSTOMER_TAGGED + ["/address/city"],
                              "/attributes/t~01", 201, [1]),
                "open", "not a ciphertext", fields=["/address/city"], references=refs),
        refused("not a ciphertext: json record protected but /aliases/2 in clear", "JSON", JSON_CUSTOMER, 301,
                protected_but("json", json_encoder(), JSON_FULL, JSON_TAGGED + ["/address/city"], "/aliases/2",
                              301), "open", "not a ciphertext", fields=["/address/city"]),
    ]


def check_handwritten() -> None:
    """The records written by hand above decode as intended under the ordinary libraries."""
    account = fastavro.parse_schema({"type": "record", "name": "Account", "fields": [
        {"name": "owner", "type": "string"}, {"name": "pin", "type": "int"}]})
    assert fastavro.schemaless_reader(io.BytesIO(b"\x06Ann\xa4\x13"), account) == {"owner": "Ann", "pin": 1234}
    phone = message_factory.GetMessageClass(POOL.FindMessageTypeByName("shop.Customer.Phone"))
    # Account's fields have Phone's numbers and wire types: number 1 string, kind 2 varint.
    parsed = phone.FromString(b"\x0a\x03Ann\x10\xd2\x09")
    assert (parsed.number, parsed.kind) == ("Ann", 1234)


def build() -> str:
    check_binding_against_envelope_vectors()
    check_handwritten()
    document = {
        "format": "kafka-transit schema'd records: which bytes are protected fields (docs/schema-fields.md)",
        "generated_by": "docs/gen-schema-fields-test-vectors.py: records encoded by fastavro, Python's protobuf "
                        "(descriptors written by hand from the .proto texts) and json, independently of the "
                        "Rust walkers; the located fields are the values the generator selected, in the "
                        "order its encoder writes them",
        "stand_in_ciphertext": "each protected content in these vectors is the text vault:v1:<standard base64 "
                               "of the plaintext content> (a bytes field holds that text's UTF-8 bytes): a "
                               "stand-in for Vault transit's ciphertext, which depends on a Vault key and a "
                               "random nonce. A stand-in Vault opens it by decoding the base64; these are "
                               "format 2 records (no associated data, no context). \"bindings\" give the "
                               "format 3 binding each field would be encrypted with under bind = [\"stream\", "
                               "\"key\"] (docs/protected-records.md)",
        "vectors": vectors(),
        "refused": refused_cases(),
    }
    return json.dumps(document, indent=2) + "\n"


def main() -> None:
    text = build()
    if sys.argv[1:] == ["--check"]:
        try:
            with open(PATH, encoding="utf-8") as file:
                current = file.read()
        except OSError as error:
            sys.exit(f"{PATH} cannot be read ({error}): run docs/gen-schema-fields-test-vectors.py")
        if current != text:
            sys.exit(f"{PATH} is not what gen-schema-fields-test-vectors.py writes: run it")
        print(f"{PATH} is up to date")
    elif sys.argv[1:]:
        sys.exit("usage: gen-schema-fields-test-vectors.py [--check]")
    else:
        with open(PATH, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote {PATH}")


if __name__ == "__main__":
    main()

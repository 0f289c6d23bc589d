"""schema_fields.py: records protected as docs/schema-fields.md says (each tagged field's
content replaced by its transit ciphertext, the schema id kept) open field-identical after
confluent-kafka's own deserializers; no network: an in-memory registry (confluent-kafka's
MockSchemaRegistryClient) and fake_transit's Vault stand-in
(python3 -m unittest discover -s demos/python -p "test_*.py"; pytest runs it too).

The protecting side here is written independently of the reader: the located paths of
each record are listed by hand, and the fields set by those paths, not by a schema walk;
format 3 bindings are written out by hand too (bound_to). Vectors checks the reader
against docs/schema-fields-test-vectors.json (and fails if it is missing)."""
import base64
import copy
import decimal
import json
import os
import struct
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka.schema_registry import Schema, SchemaReference  # noqa: E402
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer  # noqa: E402
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from google.protobuf import descriptor_pool, message_factory  # noqa: E402

import schema_records as sr  # noqa: E402
from fake_transit import FakeTransit  # noqa: E402
from envelope_decrypt import binding  # noqa: E402
from schema_fields import (BatchTransit, FieldError, FieldOpener, ProtectedFieldsDeserializer,  # noqa: E402
                           ProtobufWalker, _init_pool, frame, open_file, protobuf_file, unframe)
from transit import TransitError  # noqa: E402

TOPIC = "customers.protected"
CTX = SerializationContext(TOPIC, MessageField.VALUE)
SERDE = {"subject.name.strategy.type": "TOPIC"}


class FakeBatchTransit(FakeTransit):
    """fake_transit's Vault with transit/decrypt's batch_input: one call per batch. Its
    AES-GCM authenticates associated data: a field opens only with the binding it was
    encrypted with, otherwise "message authentication failed" as Vault says it."""

    def __init__(self):
        super().__init__()
        self.batches = []
        self.bindings = []  # each batch's associated data, item by item (None: format 2)

    def decrypt_batch(self, key_name, items):
        items = [tuple(item) + (None,) * (3 - len(item)) for item in items]
        self.batches.append((key_name, [context for _, context, _ in items]))
        self.bindings.append([bound for _, _, bound in items])
        out = []
        for ciphertext, context, bound in items:
            try:
                out.append(self.decrypt(key_name, ciphertext, context=context, associated_data=bound))
            except TransitError as error:
                out.append(error)
        return out


def tagged_paths(record: dict, fmt: str) -> list:
    """The located paths of customer `record`'s PII fields, by hand (docs/schema-fields.md):
    a oneof adds no step, array indices count from 0."""
    paths = ["/name"]
    if record["email"] is not None:
        paths.append("/email")
    paths.append("/address/street")
    paths += [f"/phones/{n}/number" for n in range(len(record["phones"]))]
    if fmt == "protobuf" and "phone" in record["contact"]:
        paths.append("/phone")
    return paths


def _tokens(path):
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _index(container, token):
    """A located path's token as the key of a dict, list, or protobuf repeated field or map."""
    if isinstance(container, dict):
        return token
    if not hasattr(container, "keys"):
        return int(token)  # a list or repeated field
    keys = list(container.keys())
    if keys and isinstance(keys[0], bool):
        return token == "true"
    if keys and isinstance(keys[0], int):
        return int(token)
    return token


def set_at(obj, path, convert):
    """obj's field at located `path` (a dict/list document or a protobuf message) := convert(it)."""
    tokens = _tokens(path)
    for token in tokens[:-1]:
        obj = getattr(obj, token) if hasattr(obj, "DESCRIPTOR") else obj[_index(obj, token)]
    last = tokens[-1]
    if hasattr(obj, "DESCRIPTOR"):
        setattr(obj, last, convert(getattr(obj, last)))
    else:
        obj[_index(obj, last)] = convert(obj[_index(obj, last)])


def bound_to(flags: int, stream: str, record_key, path: str) -> bytes:
    """docs/protected-records.md "Binding data", written out here rather than taken from
    envelope_decrypt.binding (which the reader uses): "kafka-transit/3", the flags, the
    stream (u16 length) if bound, the record key (0x00, or 0x01 and u32 length) if bound,
    the located path (u32 length)."""
    data = b"kafka-transit/3" + bytes([flags])
    if flags & 0x01:
        data += struct.pack(">H", len(stream.encode())) + stream.encode()
    if flags & 0x02:
        data += b"\x00" if record_key is None else b"\x01" + struct.pack(">I", len(record_key)) + record_key
    return data + struct.pack(">I", len(path.encode())) + path.encode()


def protect(vault, obj, paths, key="customers", deterministic=False, context=None, bind=None):
    """What encrypt-schema-fields does to each field: its content replaced by the transit
    ciphertext of it (text, or its UTF-8 bytes for a bytes field); with bind = (flags,
    stream, record key on the sink), format 3: encrypted with the field's binding as
    associated data."""
    def encrypt(path):
        def convert(value):
            plaintext = value.encode() if isinstance(value, str) else bytes(value)
            ctx = path.encode() if deterministic else context
            bound = None if bind is None else bound_to(*bind, path)
            text = vault.encrypt(key, plaintext, context=ctx, associated_data=bound)
            return text if isinstance(value, str) else text.encode()
        return convert
    for path in paths:
        set_at(obj, path, encrypt(path))
    return obj


class Base(unittest.TestCase):
    def setUp(self):
        self.registry = MockSchemaRegistryClient({"url": f"mock://{uuid.uuid4()}"})
        self.vault = FakeBatchTransit()

    def opener(self, **options):
        return FieldOpener(self.vault, self.registry, options.pop("key", "customers"), **options)

    def assertFieldError(self, kind, call):
        with self.assertRaises(FieldError) as caught:
            call()
        self.assertEqual(caught.exception.kind, kind, str(caught.exception))
        return caught.exception


class Avro(Base):
    def serializer(self, schema=None):
        return AvroSerializer(self.registry, json.dumps(schema or sr.AVRO_SCHEMA), conf=SERDE)

    def test_tagged_fields_open_field_identical_in_one_vault_request(self):
        serialize = self.serializer()
        records = [sr.customer(i, "avro") for i in range(12)]
        values = [serialize(protect(self.vault, copy.deepcopy(r), tagged_paths(r, "avro")), CTX) for r in records]
        plain = AvroDeserializer(self.registry)
        self.assertTrue(plain(values[10], CTX)["address"]["street"].startswith("vault:v1:"))
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
        self.vault.batches.clear()
        opened = reader.open_many([(v, CTX) for v in values])
        self.assertEqual(opened, records)
        self.assertEqual(len(self.vault.batches), 1)
        self.assertEqual(len(self.vault.batches[0][1]), sum(len(tagged_paths(r, "avro")) for r in records))
        self.assertEqual(reader(values[4], CTX), records[4])
        self.assertIsNone(reader(None, CTX))  # a tombstone

    def test_deterministic_contexts_are_the_located_paths(self):
        serialize = self.serializer()
        record = sr.customer(11, "avro")  # two phones, no e-mail
        value = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro"),
                                  deterministic=True), CTX)
        again = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro"),
                                  deterministic=True), CTX)
        self.assertEqual(value, again)  # convergent: same value, same place, same ciphertext
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(deterministic=True))
        self.assertEqual(reader(value, CTX), record)
        self.assertEqual(self.vault.batches[-1][1],
                         [b"/name", b"/address/street", b"/phones/0/number", b"/phones/1/number"])
        # A ciphertext moved to another place does not open there.
        moved = AvroDeserializer(self.registry)(value, CTX)
        moved["phones"][0]["number"], moved["phones"][1]["number"] = \
            moved["phones"][1]["number"], moved["phones"][0]["number"]
        error = self.assertFieldError("vault", lambda: reader(serialize(moved, CTX), CTX))
        self.assertIn("/phones/*/number", str(error))
        # Without deterministic, no context: the derived ciphertexts do not open.
        self.assertFieldError("vault", lambda: ProtectedFieldsDeserializer(
            AvroDeserializer(self.registry), self.opener())(value, CTX))

    def test_a_tagged_field_in_clear_is_refused_never_returned(self):
        serialize = self.serializer()
        record = sr.customer(10, "avro")
        paths = [p for p in tagged_paths(record, "avro") if p != "/phones/0/number"]
        value = serialize(protect(self.vault, copy.deepcopy(record), paths), CTX)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
        error = self.assertFieldError("not ciphertext", lambda: reader(value, CTX))
        self.assertIn("/phones/*/number", str(error))
        self.assertNotIn(record["phones"][0]["number"], str(error))
        good = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro")), CTX)
        results = reader.open_many([(good, CTX), (value, CTX), (None, CTX)], return_errors=True)
        self.assertEqual(results[0], record)
        self.assertIsInstance(results[1], FieldError)
        self.assertIsNone(results[2])

    def test_map_values_by_path_bytes_unions_and_nulls(self):
        schema = copy.deepcopy(sr.AVRO_SCHEMA)
        schema["fields"] += [
            {"name": "photo", "type": "bytes", "confluent:tags": ["PII"]},
            {"name": "blob", "type": ["null", "string", "bytes"], "default": None, "confluent:tags": ["PII"]},
            {"name": "previous", "type": ["null", "Address"], "default": None},
        ]
        serialize = self.serializer(schema)
        record = dict(sr.customer(1, "avro"), photo=b"\x89PNG\x00\xff", blob=b"\x00raw",
                      previous={"street": "Old Road 1", "city": "Bern"})
        nulls = dict(sr.customer(2, "avro"), photo=b"", blob=None, previous=None)
        paths = tagged_paths(record, "avro") + ["/attributes/tier", "/attributes/source", "/photo", "/blob",
                                                "/previous/street"]
        value = serialize(protect(self.vault, copy.deepcopy(record), paths, deterministic=True), CTX)
        null_paths = tagged_paths(nulls, "avro") + ["/attributes/tier", "/attributes/source", "/photo"]
        null_value = serialize(protect(self.vault, copy.deepcopy(nulls), null_paths, deterministic=True), CTX)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry),
                                             self.opener(fields=["/attributes/*"], deterministic=True))
        self.assertEqual(reader.open_many([(value, CTX), (null_value, CTX)]), [record, nulls])
        self.assertIn(b"/attributes/tier", self.vault.batches[-1][1])
        self.assertIn(b"/previous/street", self.vault.batches[-1][1])

    def test_unions_of_records_and_return_record_name(self):
        schema = {"type": "record", "name": "Event", "fields": [
            {"name": "who", "type": [
                {"type": "record", "name": "Person", "fields": [
                    {"name": "id", "type": "string", "confluent:tags": ["PII"]}]},
                {"type": "record", "name": "Robot", "fields": [{"name": "id", "type": "string"}]}]}]}
        serialize = self.serializer(schema)
        person = serialize({"who": ("Person", {"id": self.vault.encrypt("customers", b"ada")})}, CTX)
        robot = serialize({"who": ("Robot", {"id": "r2d2"})}, CTX)
        opener = self.opener()
        # Without the record name, a {"id": ...} could be either branch: refused, not guessed.
        ambiguous = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), opener)
        self.assertFieldError("schema", lambda: ambiguous(person, CTX))
        named = ProtectedFieldsDeserializer(AvroDeserializer(self.registry, return_record_name=True), opener)
        self.assertEqual(named.open_many([(person, CTX), (robot, CTX)]),
                         [{"who": ("Person", {"id": "ada"})}, {"who": ("Robot", {"id": "r2d2"})}])

    def test_recursive_types_and_arrays_of_strings_by_path(self):
        schema = {"type": "record", "name": "Node", "fields": [
            {"name": "label", "type": "string", "confluent:tags": ["PII"]},
            {"name": "aliases", "type": {"type": "array", "items": "string"}},
            {"name": "children", "type": {"type": "array", "items": "Node"}}]}
        serialize = self.serializer(schema)
        tree = {"label": "root", "aliases": ["a", "b"], "children": [
            {"label": "kid", "aliases": [], "children": [{"label": "grandkid", "aliases": ["g"], "children": []}]}]}
        paths = ["/label", "/aliases/0", "/aliases/1", "/children/0/label", "/children/0/children/0/label"]
        value = serialize(protect(self.vault, copy.deepcopy(tree), paths, deterministic=True), CTX)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry),
                                             self.opener(fields=["/aliases/*"], deterministic=True))
        self.assertEqual(reader(value, CTX), tree)
        # /aliases/* does not reach the grandchild's aliases (a path, not a tag).
        self.assertEqual(sorted(self.vault.batches[-1][1]), sorted(p.encode() for p in paths))

    def test_a_tag_on_an_int_is_a_schema_error(self):
        schema = {"type": "record", "name": "R", "fields": [{"name": "age", "type": "int", "confluent:tags": ["PII"]}]}
        value = self.serializer(schema)({"age": 7}, CTX)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
        error = self.assertFieldError("schema", lambda: reader(value, CTX))
        self.assertIn("/age is tagged PII but is int", str(error))
        self.assertEqual(ProtectedFieldsDeserializer(AvroDeserializer(self.registry),
                                                     self.opener(tags=["PHI"]))(value, CTX), {"age": 7})
        # The schema is the reason, whatever the record holds: a tagged string before the
        # int, in clear (a record that was never protected), does not hide it.
        schema = {"type": "record", "name": "S", "fields": [{"name": "owner", "type": "string",
                                                             "confluent:tags": ["PII"]},
                                                            {"name": "pin", "type": "int", "confluent:tags": ["PII"]}]}
        value = self.serializer(schema)({"owner": "Ann", "pin": 1234}, CTX)
        error = self.assertFieldError("schema", lambda: reader(value, CTX))
        self.assertIn("/pin is tagged PII but is int", str(error))

    def test_contexts_fixed_or_the_record_key_and_from_dict(self):
        serialize = self.serializer()
        record = sr.customer(3, "avro")
        fixed = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro"),
                                  context=b"tenant-7"), CTX)
        keyed = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro"),
                                  context=sr.record_key(3)), CTX)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(context="tenant-7"))
        self.assertEqual(reader(fixed, CTX), record)
        by_key = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(context_from="record-key"))
        self.assertEqual(by_key.open_many([(keyed, CTX, sr.record_key(3))]), [record])
        self.assertFieldError("vault", lambda: by_key.open_many([(keyed, CTX, sr.record_key(4))]))
        self.assertFieldError("vault", lambda: by_key(keyed, CTX))  # no record key to derive with
        with self.assertRaises(ValueError):
            self.opener(deterministic=True, context="x")
        # from_dict on the wrapper runs on the opened dict; on the inner one it is refused.
        wrapped = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(context="tenant-7"),
                                              from_dict=lambda d, ctx: ("customer", d["name"]))
        self.assertEqual(wrapped(fixed, CTX), ("customer", record["name"]))
        inner = ProtectedFieldsDeserializer(AvroDeserializer(self.registry, from_dict=lambda d, ctx: object()),
                                            self.opener(context="tenant-7"))
        self.assertFieldError("schema", lambda: inner(fixed, CTX))
        # The key as a function of the context (a policy keyed by "{topic}" of the source topic).
        per_topic = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(
            key=lambda ctx: ctx.topic.removesuffix(".protected"), context="tenant-7"))
        renamed = serialize(protect(self.vault, copy.deepcopy(record), tagged_paths(record, "avro"),
                                    key="customers", context=b"tenant-7"), CTX)
        self.assertEqual(per_topic(renamed, CTX), record)

    def test_a_logical_type_the_deserializer_converted_is_refused(self):
        # A decimal's bytes holding ciphertext text would come out of AvroDeserializer as a
        # Decimal: the schema is refused (as the runner refuses it), whatever the record holds.
        schema = {"type": "record", "name": "R", "fields": [
            {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
             "confluent:tags": ["PII"]}]}
        as_bytes = {"type": "record", "name": "R", "fields": [{"name": "amount", "type": "bytes"}]}
        schema_id = unframe(self.serializer(schema)({"amount": decimal.Decimal("1.00")}, CTX))[0]
        body = AvroSerializer(self.registry, json.dumps(as_bytes), conf=SERDE)(
            {"amount": self.vault.encrypt("customers", b"\x00\x64").encode()},
            SerializationContext("bytes", MessageField.VALUE))[5:]
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
        error = self.assertFieldError("schema", lambda: reader(frame(schema_id, body), CTX))
        self.assertIn("field /amount is tagged PII but is bytes (logical type decimal): a ciphertext is not a "
                      "valid decimal", str(error))

    def test_strings_and_bytes_with_a_logical_type_are_refused(self):
        field = lambda ty: {"type": "record", "name": "R", "fields": [  # noqa: E731
            {"name": "x", "type": ty, "confluent:tags": ["PII"]}]}
        some_uuid = "6f1c3e1a-5b1e-4c1e-9a3e-1a2b3c4d5e6f"
        for i, (ty, value, what) in enumerate([
            ({"type": "string", "logicalType": "uuid"}, some_uuid,
             "field /x is tagged PII but is string (logical type uuid): a ciphertext is not a valid uuid, so "
             "consumers would fail to read the record; remove the tag or the logical type"),
            ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, decimal.Decimal("1.00"),
             "is bytes (logical type decimal): a ciphertext is not a valid decimal"),
            ({"type": "string", "logicalType": "acme-iban"}, "CH93",
             "is string (logical type acme-iban): a ciphertext is not a valid acme-iban"),
            # Refused for every record: a null one too.
            (["null", {"type": "string", "logicalType": "uuid"}], None,
             "is a union of null, string (logical type uuid): a ciphertext is not a valid uuid"),
            ({"type": "array", "items": {"type": "string", "logicalType": "uuid"}}, [],
             "is an array of string (logical type uuid): a ciphertext is not a valid uuid"),
            (["null", {"type": "map", "values": ["null", {"type": "bytes", "logicalType": "decimal",
                                                          "precision": 4}]}], None,
             "is a union of null, a map of a union of null, bytes (logical type decimal): a ciphertext is not a "
             "valid decimal"),
        ]):
            ctx = SerializationContext(f"logical-{i}", MessageField.VALUE)
            value = AvroSerializer(self.registry, json.dumps(field(ty)), conf=SERDE)({"x": value}, ctx)
            reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
            error = self.assertFieldError("schema", lambda: reader(value, ctx))
            self.assertIn(what, str(error))
            # Not selected: read as it is.
            ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(tags=["PHI"]))(value, ctx)
        by_path = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(tags=[], fields=["/x"]))
        error = self.assertFieldError("schema", lambda: by_path(value, ctx))
        self.assertIn("remove the path or the logical type", str(error))
        # Selected by a path through an array.
        ids = {"type": "record", "name": "R", "fields": [
            {"name": "ids", "type": {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}}]}
        ctx = SerializationContext("ids", MessageField.VALUE)
        value = AvroSerializer(self.registry, json.dumps(ids), conf=SERDE)({"ids": [some_uuid]}, ctx)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(fields=["/ids/*"]))
        error = self.assertFieldError("schema", lambda: reader(value, ctx))
        self.assertIn("field /ids/* is selected by a configured path but is string (logical type uuid)", str(error))

    def test_tagged_arrays_and_maps_of_strings_protect_each_element(self):
        schema = {"type": "record", "name": "R", "fields": [
            {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
            {"name": "attrs", "type": {"type": "map", "values": "bytes"}, "confluent:tags": ["PII"]},
            {"name": "notes", "type": ["null", {"type": "array", "items": ["null", "string"]}],
             "confluent:tags": ["PII"]},
            {"name": "n", "type": "int"}]}
        serialize = self.serializer(schema)
        record = {"tags": ["a", "b"], "attrs": {"k/1": b"\xff", "k2": b""}, "notes": ["n0", None, "n2"], "n": 7}
        paths = ["/tags/0", "/tags/1", "/attrs/k~11", "/attrs/k2", "/notes/0", "/notes/2"]
        value = serialize(protect(self.vault, copy.deepcopy(record), paths, deterministic=True), CTX)
        self.assertTrue(AvroDeserializer(self.registry)(value, CTX)["attrs"]["k2"].startswith(b"vault:v1:"))
        empty = {"tags": [], "attrs": {}, "notes": None, "n": 1}
        # Tags, paths to the fields and paths to the elements select the same.
        for options in [{}, {"tags": [], "fields": ["/tags", "/attrs", "/notes"]},
                        {"tags": [], "fields": ["/tags/*", "/attrs/*", "/notes/*"]}]:
            reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry),
                                                 self.opener(deterministic=True, **options))
            self.assertEqual(reader(value, CTX), record, options)
            self.assertEqual(self.vault.batches[-1][1], [p.encode() for p in paths], options)
            self.assertEqual(reader(serialize(empty, CTX), CTX), empty)  # nothing to protect
        # An element left in clear is refused, never returned.
        clear = protect(self.vault, copy.deepcopy(record), paths[1:])
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
        error = self.assertFieldError("not ciphertext", lambda: reader(serialize(clear, CTX), CTX))
        self.assertIn("/tags/*", str(error))
        # `*` selects every field: the int among them too.
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(tags=[], fields=["/*"]))
        error = self.assertFieldError("schema", lambda: reader(value, CTX))
        self.assertIn("field /n is selected by a configured path but is int; only string and bytes fields, and "
                      "arrays and maps of them, can be protected", str(error))

    def test_a_union_of_a_string_and_an_array_of_bytes(self):
        schema = {"type": "record", "name": "R", "fields": [
            {"name": "x", "type": ["null", "string", {"type": "array", "items": "bytes"}],
             "confluent:tags": ["PII"]}]}
        serialize = self.serializer(schema)
        reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(deterministic=True))
        for record, paths in [({"x": None}, []), ({"x": "s"}, ["/x"]), ({"x": [b"a", b"b"]}, ["/x/0", "/x/1"])]:
            value = serialize(protect(self.vault, copy.deepcopy(record), paths, deterministic=True), CTX)
            self.vault.batches.clear()
            self.assertEqual(reader(value, CTX), record)
            self.assertEqual([c for _, contexts in self.vault.batches for c in contexts], [p.encode() for p in paths])

    def test_arrays_and_maps_of_anything_but_strings_are_refused(self):
        for i, (ty, value, described) in enumerate([
            ({"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}, {"s": "a"}, "record In"),
            ({"type": "array", "items": {"type": "record", "name": "In", "fields": []}}, [{}],
             "an array of record In"),
            ({"type": "array", "items": "int"}, [1], "an array of int"),
            ({"type": "array", "items": {"type": "array", "items": "string"}}, [["a"]],
             "an array of an array of string"),
            ({"type": "map", "values": ["null", "string", "long"]}, {"k": "v"},
             "a map of a union of null, string, long"),
            (["null", {"type": "array", "items": "int"}], None, "a union of null, an array of int"),
            (["null", "string", {"type": "record", "name": "In", "fields": []}], None,
             "a union of null, string, record In"),
        ]):
            schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": ty, "confluent:tags": ["PII"]}]}
            ctx = SerializationContext(f"refused-{i}", MessageField.VALUE)
            body = AvroSerializer(self.registry, json.dumps(schema), conf=SERDE)({"x": value}, ctx)
            reader = ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener())
            error = self.assertFieldError("schema", lambda: reader(body, ctx))
            self.assertIn(f"field /x is tagged PII but is {described}; only string and bytes fields, and arrays and "
                          "maps of them, can be protected", str(error))

    def test_frames_and_unknown_ids(self):
        reader = ProtectedFieldsDeserializer(lambda value, ctx: {}, self.opener())
        self.assertFieldError("frame", lambda: reader(b"\x01\x00\x00\x00\x01abc", CTX))
        self.assertFieldError("registry", lambda: reader(frame(999, b"\x02a"), CTX))


class JsonSchema(Base):
    def test_tagged_fields_open_field_identical(self):
        serialize = JSONSerializer(json.dumps(sr.JSON_SCHEMA), self.registry, conf=SERDE)
        records = [sr.customer(i, "json") for i in range(9)]
        values = [serialize(protect(self.vault, copy.deepcopy(r), tagged_paths(r, "json"), deterministic=True), CTX)
                  for r in records]
        reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                             self.opener(deterministic=True))
        self.assertEqual(reader.open_many([(v, CTX) for v in values]), records)
        self.assertEqual(len(self.vault.batches), 1)
        self.assertIn(b"/phones/1/number", self.vault.batches[0][1])

    def test_refs_defs_oneof_anyof_items_additional_properties_and_references(self):
        address = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {
            "street": {"type": "string", "confluent:tags": ["PII"]}, "city": {"type": "string"}}}
        self.registry.register_schema("address.json", Schema(json.dumps(address), "JSON"))
        version = self.registry.get_latest_version("address.json").version
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "customer": {"$ref": "#/definitions/Customer"},
                "home": {"$ref": "address.json"},
                "contacts": {"type": "array", "items": {"$ref": "#/definitions/Contact"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "confluent:tags": ["PII"]}},
                "codes": {"type": "object", "patternProperties": {"^x-": {"type": "string", "confluent:tags": ["PII"]}},
                          "additionalProperties": {"type": "string"}},
                "alias": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/Secret"}]},
                "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "string", "confluent:tags": ["PII"]}]},
            },
            "definitions": {
                "Customer": {"type": "object", "properties": {
                    "ssn": {"type": "string", "confluent:tags": ["PII"]}, "city": {"type": "string"}}},
                "Contact": {"oneOf": [
                    {"type": "object", "properties": {"email": {"type": "string", "confluent:tags": ["PII"]}},
                     "required": ["email"], "additionalProperties": False},
                    {"type": "object", "properties": {"phone": {"type": "string", "confluent:tags": ["PII"]}},
                     "required": ["phone"], "additionalProperties": False}]},
                "Secret": {"type": "string", "confluent:tags": ["PII"]},
            },
        }
        serialize = JSONSerializer(Schema(json.dumps(schema), "JSON",
                                          [SchemaReference("address.json", "address.json", version)]),
                                   self.registry, conf=dict(SERDE, **{"auto.register.schemas": True}))
        record = {"customer": {"ssn": "756.1234.5678.97", "city": "Bern"},
                  "home": {"street": "Gasse 1", "city": "Thun"},
                  "contacts": [{"email": "a@example.com"}, {"phone": "+41 1"}],
                  "labels": {"nick/name": "Ada", "tilde~": "x"},
                  "codes": {"x-secret": "s3", "plain": "p"},
                  "alias": "The Countess", "tuple": ["first", "second"]}
        paths = ["/customer/ssn", "/home/street", "/contacts/0/email", "/contacts/1/phone", "/labels/nick~1name",
                 "/labels/tilde~0", "/codes/x-secret", "/alias", "/tuple/1"]
        value = serialize(protect(self.vault, copy.deepcopy(record), paths, deterministic=True), CTX)
        reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                             self.opener(deterministic=True))
        self.assertEqual(reader(value, CTX), record)
        self.assertEqual(sorted(self.vault.batches[-1][1]), sorted(p.encode() for p in paths))
        nulls = dict(record, alias=None)
        value = serialize(protect(self.vault, copy.deepcopy(nulls), [p for p in paths if p != "/alias"],
                                  deterministic=True), CTX)
        self.assertEqual(reader(value, CTX), nulls)
        # A protected field that holds a number (valid for no schema here, but forged): refused.
        forged = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                  "properties": {"n": {"confluent:tags": ["PII"]}}}
        forged_value = JSONSerializer(json.dumps(forged), self.registry, conf=SERDE)(
            {"n": 5}, SerializationContext("forged", MessageField.VALUE))
        self.assertFieldError("not ciphertext", lambda: reader(forged_value, CTX))


    def json_value(self, schema, record, subject):
        """`record` serialized (and validated) under `schema` (draft 7), registered under `subject`."""
        schema = dict({"$schema": "http://json-schema.org/draft-07/schema#"}, **schema)
        return JSONSerializer(json.dumps(schema), self.registry, conf=SERDE)(
            record, SerializationContext(subject, MessageField.VALUE))

    def test_tagged_arrays_and_maps_of_strings_protect_each_element(self):
        schema = {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
            "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
            "notes": {"type": ["array", "null"], "items": {"type": ["string", "null"]}, "confluent:tags": ["PII"]},
            "aliases": {"$ref": "#/definitions/Strings", "confluent:tags": ["PII"]},
            "n": {"type": "integer"}},
            "definitions": {"Strings": {"type": "array", "items": {"$ref": "#/definitions/S"}},
                            "S": {"type": "string"}}}
        record = {"tags": ["a", "b"], "attrs": {"k/1": "v", "k2": "w"}, "notes": ["n0", None, "n2"],
                  "aliases": ["x"], "n": 1}
        paths = ["/tags/0", "/tags/1", "/attrs/k~11", "/attrs/k2", "/notes/0", "/notes/2", "/aliases/0"]
        value = self.json_value(schema, protect(self.vault, copy.deepcopy(record), paths, deterministic=True), TOPIC)
        empty = {"tags": [], "attrs": {}, "notes": None}
        empty_value = self.json_value(schema, empty, TOPIC)
        for options in [{}, {"tags": [], "fields": ["/tags", "/attrs", "/notes", "/aliases"]},
                        {"tags": [], "fields": ["/tags/*", "/attrs/*", "/notes/*", "/aliases/*"]}]:
            reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                 self.opener(deterministic=True, **options))
            self.assertEqual(reader(value, CTX), record, options)
            self.assertEqual(sorted(self.vault.batches[-1][1]), sorted(p.encode() for p in paths), options)
            self.assertEqual(reader(empty_value, CTX), empty)  # nothing to protect
        # Anything but an array (an object) of strings, or null, is refused, never passed on
        # (records the deserializer's validation would refuse, given to the opener as such).
        opener = self.opener()
        for forged, says in [
            ({"tags": "vault:v1:x"}, "field /tags is protected but holds str, not an array of strings"),
            ({"tags": {"a": "vault:v1:x"}}, "field /tags is protected but holds dict, not an array of strings"),
            ({"attrs": ["vault:v1:x"]}, "field /attrs is protected but holds list, not an object of strings"),
            ({"tags": ["vault:v1:x", 1]}, "field /tags/* is protected but holds int"),
            ({"attrs": {"k": {"v": "vault:v1:x"}}}, "field /attrs/* is protected but holds dict"),
        ]:
            error = self.assertFieldError("not ciphertext", lambda: opener.open(forged, value))
            self.assertIn(says, str(error))

    def test_arrays_and_maps_of_anything_but_strings_are_refused(self):
        for i, (field, element, says) in enumerate([
            ({"type": "array", "items": {"type": "integer"}}, [1],
             "field /x/* is selected (tagged PII) but its schema type is integer"),
            ({"type": "array", "items": {"type": "object", "properties": {"s": {"type": "string"}}}}, [{"s": "a"}],
             "field /x/* is selected (tagged PII) but its schema type is object"),
            ({"type": "array", "items": {"type": "array", "items": {"type": "string"}}}, [["a"]],
             "field /x/* is selected (tagged PII) but its schema type is array"),
            ({"type": "array"}, ["a"], "field /x is selected (tagged PII) but is an array whose schema has no "
                                       "`items` schema"),
            ({"type": "array", "items": [{"type": "string"}]}, ["a"], "has no `items` schema"),
            ({"type": "array", "items": {"type": "string"}, "contains": {"type": ["integer", "string"]}}, ["a"],
             "field /x/* is selected (tagged PII) but its schema type is integer or string"),
            ({"type": "object"}, {"k": "v"}, "field /x is selected (tagged PII) but is an object whose schema has no "
                                             "`additionalProperties` schema"),
            ({"type": "object", "additionalProperties": {"type": "string"},
              "patternProperties": {"^n": {"type": "number"}}}, {"k": "v"},
             "field /x/* is selected (tagged PII) but its schema type is number or string"),
        ]):
            schema = {"type": "object", "properties": {"x": dict(field, **{"confluent:tags": ["PII"]})}}
            value = self.json_value(schema, {"x": element}, f"refused-{i}")
            reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                 self.opener())
            error = self.assertFieldError("schema", lambda: reader(value, CTX))
            self.assertIn(says, str(error))
            self.assertIn("only string fields, and arrays and maps of them, can be protected", str(error))
            ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                        self.opener(tags=["PHI"]))(value, CTX)
        # An object with properties is a record, not a map: refused.
        schema = {"type": "object", "properties": {"x": {
            "type": "object", "properties": {"s": {"type": "string"}}, "additionalProperties": {"type": "string"},
            "confluent:tags": ["PII"]}}}
        value = self.json_value(schema, {"x": {"s": "a", "t": "b"}}, "record")
        reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                             self.opener())
        self.assertRaises(FieldError, lambda: reader(value, CTX))
        # Not every element need be described for a path to one of them to select it.
        schema = {"type": "object", "properties": {"x": {"type": "array", "items": [{"type": "string"}]}}}
        value = self.json_value(schema, {"x": [self.vault.encrypt("customers", b"a")]}, "tuple")
        reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                             self.opener(tags=[], fields=["/x/*"]))
        self.assertEqual(reader(value, CTX), {"x": ["a"]})

    def test_strings_a_ciphertext_may_not_satisfy_are_refused(self):
        for i, (keywords, plain) in enumerate([
            ({"pattern": "^[0-9]{3}$"}, "123"), ({"maxLength": 11}, "a"), ({"format": "email"}, "a@example.com"),
            ({"enum": ["a", "b"]}, "a"), ({"const": "a"}, "a"), ({"contentEncoding": "base64"}, "YQ=="),
            ({"contentMediaType": "application/json"}, "{}"),
        ]):
            keyword = next(iter(keywords))
            schema = {"type": "object", "properties": {"x": dict(
                {"type": ["string", "null"], "confluent:tags": ["PII"]}, **keywords)}}
            for record in ({"x": plain}, {"x": None} if keyword not in ("enum", "const") else {}, {}):
                value = self.json_value(schema, record, f"constrained-{i}")
                reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                     self.opener())
                if record:  # refused whatever it holds, null too
                    error = self.assertFieldError("schema", lambda: reader(value, CTX))
                    self.assertIn(f"field /x is selected (tagged PII) but its schema has `{keyword}`: a ciphertext "
                                  "may not satisfy it, so consumers that validate records would refuse the record; "
                                  f"remove the tag or `{keyword}`", str(error))
            by_path = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                  self.opener(tags=[], fields=["/x"]))
            error = self.assertFieldError("schema", lambda: by_path(self.json_value(schema, {"x": plain}, "p"), CTX))
            self.assertIn(f"remove the path or `{keyword}`", str(error))
            self.assertEqual(ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                         self.opener(tags=["PHI"]))(value, CTX), {})
        # Wherever the keyword is among the schemas of the field: a $ref, a branch, the
        # elements or values of a tagged array or map.
        for i, (field, record) in enumerate([
            ({"$ref": "#/definitions/Email"}, "a@example.com"),
            ({"oneOf": [{"type": "null"}, {"$ref": "#/definitions/Email"}]}, "a@example.com"),
            ({"allOf": [{"type": "string"}, {"format": "email"}]}, "a@example.com"),
            ({"type": "array", "items": {"$ref": "#/definitions/Email"}}, ["a@example.com"]),
            ({"type": "object", "additionalProperties": {"$ref": "#/definitions/Email"}}, {"k": "a@example.com"}),
        ]):
            schema = {"type": "object", "properties": {"x": dict(field, **{"confluent:tags": ["PII"]})},
                      "definitions": {"Email": {"type": "string", "format": "email"}}}
            value = self.json_value(schema, {"x": record}, f"where-{i}")
            reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                 self.opener())
            error = self.assertFieldError("schema", lambda: reader(value, CTX))
            self.assertIn("its schema has `format`", str(error))
        # A keyword of a branch that allows no string does not matter; minLength may stay.
        for i, field in enumerate([{"oneOf": [{"type": "null", "enum": [None]}, {"type": "string"}]},
                                   {"type": "string", "minLength": 1}]):
            schema = {"type": "object", "properties": {"x": dict(field, **{"confluent:tags": ["PII"]})}}
            value = self.json_value(schema, {"x": self.vault.encrypt("customers", b"a")}, f"allowed-{i}")
            reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                                 self.opener())
            self.assertEqual(reader(value, CTX), {"x": "a"})


    def test_a_member_several_patterns_describe_is_decided_by_its_value(self):
        # As the runner: where a member's name matches several patternProperties, the
        # schemas are not checked there, the value is (a string protected, anything else
        # refused); where one pattern describes it, its schema is checked.
        schema = {"type": "object", "properties": {"codes": {"type": "object", "patternProperties": {
            "^x-": {"type": "string", "pattern": "^[a-z]+$", "confluent:tags": ["PII"]},
            "-y$": {"type": "string", "pattern": "^[a-z]+$"}}}}}
        reader = ProtectedFieldsDeserializer(JSONDeserializer(None, schema_registry_client=self.registry),
                                             self.opener())
        both = self.json_value(schema, {"codes": {"x-y": "abc"}}, "patterns")
        self.assertFieldError("not ciphertext", lambda: reader(both, CTX))  # in clear: refused
        protected = {"codes": {"x-y": self.vault.encrypt("customers", b"abc")}}
        self.assertEqual(self.opener().open(protected, both), {"codes": {"x-y": "abc"}})
        one = self.json_value(schema, {"codes": {"x-": "abc"}}, "patterns")
        error = self.assertFieldError("schema", lambda: reader(one, CTX))
        self.assertIn("field /codes/* is selected (tagged PII) but its schema has `pattern`", str(error))


def protobuf_schema_text() -> str:
    """A second schema, wider than the customers': bytes, repeated strings, maps of strings
    and of messages, a oneof of a message, enums, a well-known type, comments, options."""
    return """
syntax = "proto3";
// a comment
package acme.v1;

import "confluent/meta.proto";
import "google/protobuf/timestamp.proto";

option java_package = "com.acme";

message Account {
  enum Tier { TIER_UNSPECIFIED = 0; GOLD = 1 [deprecated = true]; }
  message Card {
    string holder = 1 [(confluent.field_meta).tags = "PII"];
    bytes pan = 2 [(confluent.field_meta) = { tags: ["PII", "PCI"] params: { key: "k" value: "v" } }];
    int32 month = 3;
  }
  string id = 1;
  repeated string emails = 2 [(confluent.field_meta).tags = "PII"];
  map<string, string> notes = 3 [(confluent.field_meta).tags = "PII"];
  map<int32, Card> cards = 4;
  optional bytes secret = 5 [(confluent.field_meta).tags = "PII", deprecated = true];
  Tier tier = 6;
  google.protobuf.Timestamp created = 7;
  oneof payment {
    Card card = 8;
    string iban = 9 [(confluent.field_meta).tags = "PII"];
  }
  /* block
     comment */
  map<bool, Card.Inner> flags = 10;
  reserved 20, 21 to 25;
}

message Other { string x = 1; }
"""


class Protobuf(Base):
    def register_text(self, subject, text):
        meta = Schema(sr.protobuf_text(sr.meta_file_proto()), "PROTOBUF")
        self.registry.register_schema("confluent/meta.proto", meta)
        version = self.registry.lookup_schema("confluent/meta.proto", meta).version
        return self.registry.register_schema(subject, Schema(text, "PROTOBUF", [
            SchemaReference("confluent/meta.proto", "confluent/meta.proto", version)]))

    def test_customers_with_a_text_schema(self):
        schema_id = self.register_text(f"{TOPIC}-value", sr.schema_text("protobuf"))
        records = [sr.customer(i, "protobuf") for i in range(10)]
        values = [sr.confluent_frame(schema_id, protect(self.vault, sr.to_protobuf(r), tagged_paths(r, "protobuf"),
                                                        deterministic=True).SerializeToString(), b"\x00")
                  for r in records]
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(sr.customer_class(), {}),
                                             self.opener(deterministic=True))
        opened = reader.open_many([(v, CTX) for v in values])
        self.assertEqual([sr.from_protobuf(m) for m in opened], records)
        self.assertEqual(len(self.vault.batches), 1)
        self.assertIn(b"/phone", self.vault.batches[0][1])  # the oneof adds no step

    def test_customers_with_a_descriptor_schema(self):
        serialize = ProtobufSerializer(sr.customer_class(), self.registry, SERDE)
        record = sr.customer(10, "protobuf")
        value = serialize(protect(self.vault, sr.to_protobuf(record), tagged_paths(record, "protobuf")), CTX)
        self.assertTrue(self.registry.get_schema(unframe(value)[0]).schema_str.startswith("Ch"))  # base64
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(sr.customer_class(), {}), self.opener())
        self.assertEqual(sr.from_protobuf(reader(value, CTX)), record)
        unset = sr.customer(4, "protobuf")  # no contact, e-mail set
        value = serialize(protect(self.vault, sr.to_protobuf(unset), tagged_paths(unset, "protobuf")), CTX)
        self.assertEqual(sr.from_protobuf(reader(value, CTX)), unset)

    def test_the_text_parser_gives_the_descriptor_the_text_was_rendered_from(self):
        original = sr.customer_file_proto()
        pool = descriptor_pool.DescriptorPool()
        _init_pool(pool)  # the well-known types and confluent/meta.proto, as the walker's pool
        parsed = protobuf_file(original.name, sr.schema_text("protobuf"), pool)
        self.assertEqual(parsed, original)
        meta = protobuf_file("confluent/meta.proto", sr.protobuf_text(sr.meta_file_proto()),
                             descriptor_pool.DescriptorPool())
        self.assertEqual(meta.extension, [], "extensions are read past")
        self.assertIn("Meta", [m.name for m in meta.message_type])

    def test_bytes_repeated_maps_oneof_of_a_message_and_well_known_types(self):
        schema_id = self.register_text("accounts-value", protobuf_schema_text().replace(
            "map<bool, Card.Inner> flags = 10;", "map<bool, Card> flags = 10;"))
        walker = ProtobufWalker(schema_id, self.registry.get_schema(schema_id).schema_str, [], self.opener().selection)
        Account = message_factory.GetMessageClass(walker.message([0]))
        self.assertEqual(walker.message([1]).full_name, "acme.v1.Other")
        self.assertEqual(walker.message([0, 0]).full_name, "acme.v1.Account.Card")  # map entries not counted
        account = Account(id="acc-1", emails=["a@example.com", "b@example.com"], secret=b"\x00\xff",
                          tier=1)
        account.notes["vip"] = "yes"
        account.notes["a/b"] = "slash"
        account.cards[7].holder = "Ada Lovelace"
        account.cards[7].pan = b"4111111111111111"
        account.cards[-2].month = 3  # nothing protected inside but by tags: holder "" is unset
        account.flags[True].holder = "Flag Holder"
        account.card.holder = "Oneof Holder"
        account.card.pan = b"\x01\x02"
        account.created.seconds = 1700000000
        original = Account()
        original.CopyFrom(account)
        paths = ["/emails/0", "/emails/1", "/notes/vip", "/notes/a~1b", "/cards/7/holder", "/cards/7/pan",
                 "/secret", "/flags/true/holder", "/card/holder", "/card/pan"]
        protect(self.vault, account, paths, deterministic=True)
        value = frame(schema_id, account.SerializeToString(), [0])
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(Account, {}), self.opener(deterministic=True))
        opened = reader(value, CTX)
        self.assertEqual(opened, original)
        self.assertEqual(sorted(self.vault.batches[-1][1]), sorted(p.encode() for p in paths))
        # A oneof holding its string instead; the optional bytes unset.
        other = Account(id="acc-2", iban="CH93 0076 2011 6238 5295 7")
        expected = Account()
        expected.CopyFrom(other)
        protect(self.vault, other, ["/iban"], deterministic=True)
        self.assertEqual(reader(frame(schema_id, other.SerializeToString(), [0]), CTX), expected)
        # A tagged field left in clear.
        clear = Account(emails=["a@example.com"])
        self.assertFieldError("not ciphertext", lambda: reader(frame(schema_id, clear.SerializeToString(), [0]), CTX))

    def test_map_entries_written_out_as_messages_and_message_indexes(self):
        # How Confluent's registry writes a descriptor's map out as text: a declared entry
        # message with option map_entry, counted by message indexes like any other.
        schema_id = self.register_text("entries-value", """syntax = "proto3";
package p;
import "confluent/meta.proto";
message Wrapper { string unused = 1; }
message M {
  repeated NotesEntry notes = 1 [(confluent.field_meta).tags = "PII"];
  message NotesEntry {
    option map_entry = true;
    int64 key = 1;
    string value = 2;
  }
  message Inner { bytes blob = 1 [(confluent.field_meta).tags = "PII"]; }
  repeated Inner inners = 2;
}
""")
        walker = ProtobufWalker(schema_id, self.registry.get_schema(schema_id).schema_str, [], self.opener().selection)
        M = message_factory.GetMessageClass(walker.message([1]))
        Inner = message_factory.GetMessageClass(walker.message([1, 1]))
        message = M()
        message.notes[-5] = "minus five"
        message.inners.add(blob=b"\x00\x01")
        expected = M()
        expected.CopyFrom(message)
        protect(self.vault, message, ["/notes/-5", "/inners/0/blob"], deterministic=True)
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(M, {}), self.opener(deterministic=True))
        self.assertEqual(reader(frame(schema_id, message.SerializeToString(), [1]), CTX), expected)
        self.assertEqual(sorted(self.vault.batches[-1][1]), [b"/inners/0/blob", b"/notes/-5"])
        inner = Inner(blob=self.vault.encrypt("customers", b"x").encode())
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(Inner, {}), self.opener())
        self.assertEqual(reader(frame(schema_id, inner.SerializeToString(), [1, 1]), CTX), Inner(blob=b"x"))
        self.assertFieldError("frame", lambda: reader(frame(schema_id, b"", [2]), CTX))

    def test_a_tag_on_a_message_field_is_a_schema_error(self):
        schema_id = self.register_text("bad-value", 'syntax = "proto3";\npackage bad;\n'
                                                    'import "confluent/meta.proto";\n'
                                                    'message A { B b = 1 [(confluent.field_meta).tags = "PII"]; }\n'
                                                    'message B { string s = 1; }\n')
        walker = ProtobufWalker(schema_id, self.registry.get_schema(schema_id).schema_str, [], self.opener().selection)
        A = message_factory.GetMessageClass(walker.message([0]))
        message = A()
        message.b.s = "x"
        reader = ProtectedFieldsDeserializer(ProtobufDeserializer(A, {}), self.opener())
        error = self.assertFieldError("schema", lambda: reader(frame(schema_id, message.SerializeToString(), [0]), CTX))
        self.assertIn("bad.A.b", str(error))


class AllFormats(Base):
    """The same customer in Avro, JSON Schema and Protobuf, tagged alike: the same fields
    located, by tags, by paths to the fields, or by paths to the elements and values."""

    AVRO = {"type": "record", "name": "Customer", "fields": [
        {"name": "name", "type": "string", "confluent:tags": ["PII"]},
        {"name": "nick", "type": ["null", "string"], "confluent:tags": ["PII"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "confluent:tags": ["PII"]},
        {"name": "age", "type": "int"}]}
    JSON = {"type": "object", "properties": {
        "name": {"type": "string", "confluent:tags": ["PII"]},
        "nick": {"type": ["string", "null"], "confluent:tags": ["PII"]},
        "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
        "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
        "age": {"type": "integer"}}}
    PROTO = """syntax = "proto3";
import "confluent/meta.proto";
message Customer {
  string name = 1 [(confluent.field_meta).tags = "PII"];
  optional string nick = 2 [(confluent.field_meta).tags = "PII"];
  repeated string tags = 3 [(confluent.field_meta).tags = "PII"];
  map<string, string> attrs = 4 [(confluent.field_meta).tags = "PII"];
  int32 age = 5;
}
"""
    RECORD = {"name": "Ann", "nick": "Nn", "tags": ["a", "b"], "attrs": {"k": "v"}, "age": 42}
    PATHS = ["/name", "/nick", "/tags/0", "/tags/1", "/attrs/k"]
    SELECTIONS = [{}, {"tags": [], "fields": ["/name", "/nick", "/tags", "/attrs"]},
                  {"tags": [], "fields": ["/name", "/nick", "/tags/*", "/attrs/*"]}]

    def formats(self):
        """(format, protected value, a reader for options, the record as read)."""
        record = copy.deepcopy(self.RECORD)
        value = AvroSerializer(self.registry, json.dumps(self.AVRO), conf=SERDE)(
            protect(self.vault, copy.deepcopy(record), self.PATHS, deterministic=True), CTX)
        yield "avro", value, lambda o: ProtectedFieldsDeserializer(AvroDeserializer(self.registry), o), record
        json_ctx = SerializationContext("json", MessageField.VALUE)
        value = JSONSerializer(json.dumps(self.JSON), self.registry, conf=SERDE)(
            protect(self.vault, copy.deepcopy(record), self.PATHS, deterministic=True), json_ctx)
        yield "json", value, lambda o: ProtectedFieldsDeserializer(
            JSONDeserializer(None, schema_registry_client=self.registry), o), record
        schema_id = Protobuf.register_text(self, "proto-value", self.PROTO)
        walker = ProtobufWalker(schema_id, self.PROTO, [], self.opener().selection)
        Customer = message_factory.GetMessageClass(walker.message([0]))
        message = Customer(name="Ann", nick="Nn", tags=["a", "b"], age=42)
        message.attrs["k"] = "v"
        expected = Customer()
        expected.CopyFrom(message)
        protect(self.vault, message, self.PATHS, deterministic=True)
        value = frame(schema_id, message.SerializeToString(), [0])
        yield "protobuf", value, lambda o: ProtectedFieldsDeserializer(ProtobufDeserializer(Customer, {}), o), \
            expected

    def test_the_three_formats_select_the_same_fields(self):
        for fmt, value, reader, expected in self.formats():
            for options in self.SELECTIONS:
                self.vault.batches.clear()
                self.assertEqual(reader(self.opener(deterministic=True, **options))(value, CTX), expected,
                                 (fmt, options))
                self.assertEqual(self.vault.batches, [("customers", [p.encode() for p in self.PATHS])],
                                 (fmt, options))

    def test_the_three_formats_refuse_the_same_fields(self):
        kinds = {
            "avro": {"record": {"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]},
                     "ints": {"type": "array", "items": "int"},
                     "records": {"type": "map", "values": {"type": "record", "name": "In",
                                                           "fields": [{"name": "s", "type": "string"}]}}},
            "json": {"record": {"type": "object", "properties": {"s": {"type": "string"}}},
                     "ints": {"type": "array", "items": {"type": "integer"}},
                     "records": {"type": "object", "additionalProperties": {
                         "type": "object", "properties": {"s": {"type": "string"}}}}},
            "protobuf": {"record": "In", "ints": "repeated int32", "records": "map<string, In>"},
        }
        values = {"record": {"s": "a"}, "ints": [1], "records": {"k": {"s": "a"}}}
        for kind, value in values.items():
            for options in [{}, {"tags": [], "fields": ["/x"]}]:
                # Avro and Protobuf: a schema error; JSON Schema: refused (the value decides
                # where the schema makes the field no string nor array or map of them).
                ctx = SerializationContext(f"avro-{kind}", MessageField.VALUE)
                schema = {"type": "record", "name": "R", "fields": [
                    {"name": "x", "type": kinds["avro"][kind], "confluent:tags": ["PII"]}]}
                body = AvroSerializer(self.registry, json.dumps(schema), conf=SERDE)({"x": value}, ctx)
                self.assertFieldError("schema", lambda: ProtectedFieldsDeserializer(
                    AvroDeserializer(self.registry), self.opener(**options))(body, ctx))
                ctx = SerializationContext(f"json-{kind}", MessageField.VALUE)
                schema = {"type": "object", "properties": {
                    "x": {"confluent:tags": ["PII"], "allOf": [kinds["json"][kind]]}}}
                body = JSONSerializer(json.dumps(schema), self.registry, conf=SERDE)({"x": value}, ctx)
                self.assertRaises(FieldError, lambda: ProtectedFieldsDeserializer(
                    JSONDeserializer(None, schema_registry_client=self.registry), self.opener(**options))(body, ctx))
                text = ('syntax = "proto3";\nimport "confluent/meta.proto";\n'
                        f'message R {{ {kinds["protobuf"][kind]} x = 1 [(confluent.field_meta).tags = "PII"]; }}\n'
                        'message In { string s = 1; }\n')
                schema_id = Protobuf.register_text(self, f"proto-{kind}", text)
                R = message_factory.GetMessageClass(
                    ProtobufWalker(schema_id, text, [], self.opener().selection).message([0]))
                message = R()
                if kind == "record":
                    message.x.s = "a"
                elif kind == "ints":
                    message.x.append(1)
                else:
                    message.x["k"].s = "a"
                body = frame(schema_id, message.SerializeToString(), [0])
                self.assertFieldError("schema", lambda: ProtectedFieldsDeserializer(
                    ProtobufDeserializer(R, {}), self.opener(**options))(body, CTX))


class OpenFile(Base):
    def lines(self, values, keys=None):
        return [json.dumps({"key": None if k is None else base64.b64encode(k).decode(),
                            "value": None if v is None else base64.b64encode(v).decode()})
                for k, v in zip(keys or [b"k%d" % i for i in range(len(values))], values)]

    def test_avro_opened_and_serialized_again_under_the_same_schema_id(self):
        serialize = AvroSerializer(self.registry, json.dumps(sr.AVRO_SCHEMA), conf=SERDE)
        records = [sr.customer(i, "avro") for i in range(6)]
        values = [serialize(protect(self.vault, copy.deepcopy(r), tagged_paths(r, "avro")), CTX) for r in records]
        schema_id = unframe(values[0])[0]
        clear = serialize(records[0], CTX)
        hostile = [frame(424242, b"\x0ahello"), b"\x01" + values[0][1:], clear, None]
        out, counts = open_file(self.lines(values + hostile), self.registry, self.opener(), "avro",
                                subject=f"{TOPIC}-value")
        self.assertEqual(counts, {"records": 10, "opened": 6, "errors": 3, "tombstones": 1})
        self.assertEqual(len(self.vault.batches), 1)
        plain = AvroDeserializer(self.registry)
        for line, record in zip(out, records):
            value = base64.b64decode(line["value"])
            self.assertEqual(unframe(value)[0], schema_id)
            self.assertEqual(plain(value, CTX), record)
        self.assertIn("not in the registry", out[6]["error"])
        self.assertIn("wire format", out[7]["error"])
        self.assertIn("not a Vault transit ciphertext", out[8]["error"])
        self.assertEqual(out[9], {"key": base64.b64encode(b"k9").decode(), "value": None})
        self.assertEqual(self.registry.get_subjects(), [f"{TOPIC}-value"])  # nothing registered

    def test_json_and_protobuf(self):
        serialize = JSONSerializer(json.dumps(sr.JSON_SCHEMA), self.registry, conf=SERDE)
        records = [sr.customer(i, "json") for i in range(4)]
        values = [serialize(protect(self.vault, copy.deepcopy(r), tagged_paths(r, "json")), CTX) for r in records]
        out, counts = open_file(self.lines(values), self.registry, self.opener(), "json", subject=f"{TOPIC}-value")
        self.assertEqual(counts["opened"], 4)
        plain = JSONDeserializer(None, schema_registry_client=self.registry)
        self.assertEqual([plain(base64.b64decode(line["value"]), CTX) for line in out], records)

        schema_id = Protobuf.register_text(self, "pb-value", sr.schema_text("protobuf"))
        records = [sr.customer(i, "protobuf") for i in range(6)]
        values = [sr.confluent_frame(schema_id, protect(self.vault, sr.to_protobuf(r),
                                                        tagged_paths(r, "protobuf")).SerializeToString(), b"\x00")
                  for r in records]
        out, counts = open_file(self.lines(values), self.registry, self.opener(), "protobuf")
        self.assertEqual(counts["opened"], 6, out)
        decode = ProtobufDeserializer(sr.customer_class(), {})
        for line, record in zip(out, records):
            value = base64.b64decode(line["value"])
            self.assertEqual(value[:6], sr.confluent_frame(schema_id, b"", b"\x00"))
            self.assertEqual(sr.from_protobuf(decode(value, CTX)), record)
        # The wrong format for the schema: an error line, not a guess.
        out, counts = open_file(self.lines(values[:1]), self.registry, self.opener(), "avro", subject="x")
        self.assertIn("is PROTOBUF, not avro", out[0]["error"])


PROTECTION = "kafka-transit.protection"


def ctx_with(headers, topic=TOPIC):
    return SerializationContext(topic, MessageField.VALUE, headers)


def b64(data):
    return None if data is None else base64.b64encode(data).decode()


class Format3(Base):
    """Format 3 fields (docs/protected-records.md): each encrypted with its binding (the
    protection header's flags, the stream, the record key on the sink, the located path)
    as associated data, which the stand-in Vault authenticates."""

    KEY = b"7000000011"

    def setUp(self):
        super().setUp()
        self.serialize = AvroSerializer(self.registry, json.dumps(sr.AVRO_SCHEMA), conf=SERDE)
        self.record = sr.customer(11, "avro")  # two phones, no e-mail
        self.paths = tagged_paths(self.record, "avro")

    def reader(self, **options):
        return ProtectedFieldsDeserializer(AvroDeserializer(self.registry), self.opener(**options))

    def protected(self, flags=0x03, stream=TOPIC, key=KEY):
        return self.serialize(protect(self.vault, copy.deepcopy(self.record), self.paths, bind=(flags, stream, key)),
                              CTX)

    @staticmethod
    def headers(flags):
        return [("traceparent", b"00-1-01"), (PROTECTION, b"3;%02x" % flags)]

    def assertNoRecordData(self, error):
        for text in [self.record["name"], self.record["address"]["street"], self.KEY.decode()]:
            self.assertNotIn(text, str(error))

    def test_fields_open_with_their_binding_as_associated_data(self):
        for flags in (0x00, 0x01, 0x02, 0x03):
            value = self.protected(flags)
            self.vault.bindings.clear()
            self.assertEqual(self.reader().open_many([(value, ctx_with(self.headers(flags)), self.KEY)]),
                             [self.record], hex(flags))
            self.assertEqual(self.vault.bindings, [[bound_to(flags, TOPIC, self.KEY, p) for p in self.paths]])
        # A null record key is bound as none; headers and topic given apart from the ctx.
        value = self.protected(key=None)
        self.assertEqual(self.reader().open_many([(value, CTX, None, self.headers(0x03))]), [self.record])
        opener = self.opener()
        record = AvroDeserializer(self.registry)(value, CTX)
        self.assertEqual(opener.open(record, value, None, None, headers=self.headers(0x03), topic=TOPIC), self.record)
        # Format 2 and format 3 records in one batch: one request, associated data only for format 3.
        plain = self.serialize(protect(self.vault, copy.deepcopy(self.record), self.paths), CTX)
        self.vault.bindings.clear()
        self.assertEqual(self.reader().open_many([(plain, CTX, self.KEY), (self.protected(), ctx_with(self.headers(3)),
                                                                           self.KEY)]), [self.record] * 2)
        self.assertEqual(self.vault.bindings, [[None] * len(self.paths) +
                                               [bound_to(3, TOPIC, self.KEY, p) for p in self.paths]])

    def test_the_three_formats_bind_the_located_paths(self):
        record = dict(copy.deepcopy(AllFormats.RECORD), attrs={"a/b~": "v"})
        paths = ["/name", "/nick", "/tags/0", "/tags/1", "/attrs/a~1b~0"]
        bind = (0x03, "customers.v3", self.KEY)
        ctx = ctx_with(self.headers(0x03), "customers.mirror")  # the stream is the option's
        value = AvroSerializer(self.registry, json.dumps(AllFormats.AVRO), conf=SERDE)(
            protect(self.vault, copy.deepcopy(record), paths, bind=bind), CTX)
        readers = [("avro", value, AvroDeserializer(self.registry), record)]
        value = JSONSerializer(json.dumps(AllFormats.JSON), self.registry, conf=SERDE)(
            protect(self.vault, copy.deepcopy(record), paths, bind=bind),
            SerializationContext("json", MessageField.VALUE))
        readers.append(("json", value, JSONDeserializer(None, schema_registry_client=self.registry), record))
        schema_id = Protobuf.register_text(self, "proto-value", AllFormats.PROTO)
        Customer = message_factory.GetMessageClass(
            ProtobufWalker(schema_id, AllFormats.PROTO, [], self.opener().selection).message([0]))
        message = Customer(name="Ann", nick="Nn", tags=["a", "b"], age=42)
        message.attrs["a/b~"] = "v"
        expected = Customer()
        expected.CopyFrom(message)
        value = frame(schema_id, protect(self.vault, message, paths, bind=bind).SerializeToString(), [0])
        readers.append(("protobuf", value, ProtobufDeserializer(Customer, {}), expected))
        for fmt, value, inner, expected in readers:
            self.vault.bindings.clear()
            reader = ProtectedFieldsDeserializer(inner, self.opener(stream="customers.v3"))
            self.assertEqual(reader.open_many([(value, ctx, self.KEY)]), [expected], fmt)
            self.assertEqual(self.vault.bindings, [[bound_to(*bind, p) for p in paths]], fmt)
            self.assertFieldError("authentication", lambda: ProtectedFieldsDeserializer(inner, self.opener())
                                  .open_many([(value, ctx, self.KEY)]))

    def test_a_field_moved_to_another_place_key_or_stream_fails_authentication(self):
        value, ctx = self.protected(), ctx_with(self.headers(0x03))
        reader = self.reader()
        # Another place in the same record: the two phone numbers swapped, the name in the street.
        for move in [lambda r: r["phones"].reverse(),
                     lambda r: r["address"].__setitem__("street", r["name"])]:
            moved = AvroDeserializer(self.registry)(value, CTX)
            move(moved)
            error = self.assertFieldError("authentication", lambda: reader.open_many(
                [(self.serialize(moved, CTX), ctx, self.KEY)]))
            self.assertIn("does not authenticate with its binding", str(error))
            self.assertNoRecordData(error)
        # Another record key (or none), another stream.
        for key in [b"7000000012", None]:
            self.assertNoRecordData(self.assertFieldError("authentication", lambda: reader.open_many(
                [(value, ctx, key)])))
        self.assertFieldError("authentication", lambda: reader.open_many(
            [(value, ctx_with(self.headers(0x03), "customers.mirror"), self.KEY)]))
        self.assertFieldError("authentication", lambda: self.reader(stream="customers.mirror").open_many(
            [(value, ctx, self.KEY)]))
        # A mirror reader told the stream the writer bound opens it.
        self.assertEqual(self.reader(stream=TOPIC).open_many(
            [(value, ctx_with(self.headers(0x03), "customers.mirror"), self.KEY)]), [self.record])
        # The header altered (binding less) or stripped (read as format 2: no associated data).
        self.assertFieldError("authentication", lambda: reader.open_many([(value, ctx_with(self.headers(0x01)),
                                                                           self.KEY)]))
        self.assertFieldError("vault", lambda: reader.open_many([(value, CTX, self.KEY)]))
        # What the binding needs and was not given: said so before asking Vault.
        asked = len(self.vault.batches)
        error = self.assertFieldError("config", lambda: reader(value, ctx))  # a value deserializer has no key
        self.assertIn("bound to its key", str(error))
        self.assertFieldError("config", lambda: reader.open_many(
            [(value, SerializationContext(None, MessageField.VALUE, self.headers(0x03)), self.KEY)]))
        self.assertEqual(len(self.vault.batches), asked)
        # Not bound to its key: a value deserializer opens it.
        self.assertEqual(reader(self.protected(0x01), ctx_with(self.headers(0x01))), self.record)

    def test_require_binding_refuses_format_2_and_records_bound_to_less(self):
        plain = self.serialize(protect(self.vault, copy.deepcopy(self.record), self.paths), CTX)
        stream_only = self.protected(0x01)
        for require, value, headers in [(["stream"], plain, []), (["key"], plain, [("traceparent", b"x")]),
                                        (["stream", "key"], stream_only, self.headers(0x01)),
                                        (["key"], stream_only, self.headers(0x01)),
                                        (["stream"], self.protected(0x02), self.headers(0x02))]:
            error = self.assertFieldError("unbound", lambda: self.reader(require_binding=require).open_many(
                [(value, ctx_with(headers), self.KEY)]))
            self.assertNoRecordData(error)
            self.assertFieldError("unbound", lambda: self.opener(require_binding=require).open_key(
                self.KEY, ctx_with(headers)))
        self.assertEqual(self.vault.batches, [])
        self.assertEqual(self.reader(require_binding=["stream"]).open_many(
            [(stream_only, ctx_with(self.headers(0x01)), self.KEY)]), [self.record])
        self.assertEqual(self.reader(require_binding=["stream", "key"]).open_many(
            [(self.protected(), ctx_with(self.headers(0x03)), self.KEY)]), [self.record])
        self.assertEqual(self.reader().open_many([(plain, CTX, self.KEY)]), [self.record])  # format 2 as before
        with self.assertRaises(ValueError):
            self.opener(require_binding=["topic"])
        with self.assertRaises(ValueError):
            self.opener(stream="a/b")

    def test_body_flags_and_malformed_protection_headers_are_refused_before_vault(self):
        value = self.protected()
        for header in [b"3;07", b"3;0b", b"3;13", b"3;23", b"3;4f", b"3;33", b"3;c3", b"2;03", b"3;3", b"3;zz",
                       b"3;003", None]:
            error = self.assertFieldError("flags", lambda: self.reader().open_many(
                [(value, ctx_with([(PROTECTION, header)]), self.KEY)]))
            self.assertNoRecordData(error)
            self.assertFieldError("flags", lambda: self.opener().open_key(self.KEY, ctx_with([(PROTECTION, header)])))
        self.assertFieldError("flags", lambda: self.reader().open_many(
            [(value, ctx_with(self.headers(0x03) + [(PROTECTION, b"3;03")]), self.KEY)]))
        self.assertEqual(self.vault.batches, [])

    def test_encrypted_record_keys_are_restored_and_hmac_keys_refused(self):
        flags = 0x43
        sink_key = self.vault.encrypt("customer-ids", self.KEY, context=TOPIC.encode()).encode()
        value = self.protected(flags, key=sink_key)  # bound to the key as on the sink
        ctx = ctx_with(self.headers(flags))
        opener = self.opener(record_keys_key="customer-ids")
        self.assertEqual(ProtectedFieldsDeserializer(AvroDeserializer(self.registry), opener).open_many(
            [(value, ctx, sink_key)]), [self.record])
        self.assertEqual(opener.open_key(sink_key, ctx), self.KEY)
        # As a key deserializer: DeserializingConsumer's ctx for keys carries topic and headers too.
        self.assertEqual(opener.open_key(sink_key, SerializationContext(TOPIC, MessageField.KEY, self.headers(flags))),
                         self.KEY)
        self.assertEqual(opener.open_key(sink_key, None, self.headers(flags), TOPIC), self.KEY)
        self.assertIsNone(opener.open_key(None, ctx))
        # The stream is the key's derivation context: another one does not decrypt it.
        self.assertFieldError("authentication", lambda: opener.open_key(sink_key, ctx_with(self.headers(flags),
                                                                                          "customers.mirror")))
        self.assertEqual(self.opener(record_keys_key="customer-ids", stream=TOPIC).open_key(
            sink_key, ctx_with(self.headers(flags), "customers.mirror")), self.KEY)
        self.assertFieldError("config", lambda: self.opener().open_key(sink_key, ctx))
        self.assertNoRecordData(self.assertFieldError("record key", lambda: opener.open_key(self.KEY, ctx)))
        # Kept keys and format 2 records: as received, without asking Vault.
        calls = len(self.vault.calls)
        self.assertEqual(opener.open_key(self.KEY, CTX), self.KEY)
        self.assertEqual(opener.open_key(self.KEY, ctx_with(self.headers(0x03))), self.KEY)
        self.assertEqual(len(self.vault.calls), calls)
        # HMAC'd keys cannot be restored: refused unless keep_hmac_keys.
        hmac_key = self.vault.hmac("customer-ids", TOPIC.encode() + b"\x00" + self.KEY).encode()
        hmac_ctx = ctx_with(self.headers(0x83))
        error = self.assertFieldError("record key", lambda: opener.open_key(hmac_key, hmac_ctx))
        self.assertIn("keep_hmac_keys", str(error))
        self.assertEqual(self.opener(keep_hmac_keys=True).open_key(hmac_key, hmac_ctx), hmac_key)
        self.assertEqual(self.reader().open_many([(self.protected(0x83, key=hmac_key), hmac_ctx, hmac_key)]),
                         [self.record])

    def test_open_file_carries_topic_and_headers_and_restores_keys(self):
        flags = 0x43
        keys = [sr.record_key(i) for i in range(4)]
        sink = [self.vault.encrypt("customer-ids", k, context=TOPIC.encode()).encode() for k in keys]
        records = [sr.customer(i, "avro") for i in range(4)]
        values = [self.serialize(protect(self.vault, copy.deepcopy(r), tagged_paths(r, "avro"),
                                         bind=(flags, TOPIC, k)), CTX) for r, k in zip(records, sink)]
        values[3] = values[2]  # another record's value: bound to another key
        headers = [["traceparent", b64(b"00-1-01")], [PROTECTION, b64(b"3;43")]]
        lines = [json.dumps({"topic": TOPIC, "key": b64(k), "value": b64(v), "headers": headers})
                 for k, v in zip(sink, values)]
        lines.append(json.dumps({"topic": TOPIC, "key": b64(sink[0]), "value": None, "headers": headers}))
        plain = self.serialize(protect(self.vault, copy.deepcopy(records[0]), tagged_paths(records[0], "avro")), CTX)
        lines.append(json.dumps({"key": b64(b"k"), "value": b64(plain)}))  # format 2, no topic nor headers
        out, counts = open_file(lines, self.registry, self.opener(record_keys_key="customer-ids"), "avro",
                                subject=f"{TOPIC}-value")
        self.assertEqual(counts, {"records": 6, "opened": 4, "errors": 1, "tombstones": 1}, out)
        kept = [["traceparent", b64(b"00-1-01")]]
        for line, key, record in zip(out[:3], keys, records):
            self.assertEqual((line["key"], line["topic"], line["headers"]), (b64(key), TOPIC, kept))
            self.assertEqual(AvroDeserializer(self.registry)(base64.b64decode(line["value"]), CTX), record)
        self.assertIn("does not authenticate with its binding", out[3]["error"])
        self.assertEqual(out[4], {"key": b64(keys[0]), "value": None, "topic": TOPIC, "headers": kept})
        self.assertEqual(AvroDeserializer(self.registry)(base64.b64decode(out[5]["value"]), CTX), records[0])
        self.assertEqual(out[5]["key"], b64(b"k"))
        # require_binding: the format 2 line refused; without record_keys_key the keys cannot be restored.
        out, counts = open_file(lines, self.registry, self.opener(record_keys_key="customer-ids",
                                                                  require_binding=["stream", "key"]), "avro",
                                subject=f"{TOPIC}-value")
        self.assertIn("not bound", out[5]["error"])
        out, counts = open_file(lines, self.registry, self.opener(), "avro", subject=f"{TOPIC}-value")
        self.assertEqual(counts["errors"], 5)
        self.assertIn("record_keys_key", out[0]["error"])


class BatchRequests(unittest.TestCase):
    def test_associated_data_in_base64_and_batches_within_openbao_json_strings(self):
        transit = BatchTransit("http://vault.invalid", "token")
        bodies = []

        class Response:
            status_code = 200

            def __init__(self, count):
                self.count = count

            def json(self):
                return {"data": {"batch_results": [{"plaintext": "eA=="}] * self.count}}

        def post(url, json=None, **_):
            bodies.append(json["batch_input"])
            return Response(len(json["batch_input"]))

        transit._session.post = post
        items = [("vault:v1:x", b"c", b"ad")] * 400 + [("vault:v1:y", None)] * 300
        self.assertEqual(transit.decrypt_batch("customers", items), [b"x"] * 700)
        self.assertEqual(bodies[0][0], {"ciphertext": "vault:v1:x", "context": "Yw==", "associated_data": "YWQ="})
        self.assertEqual(bodies[-1][-1], {"ciphertext": "vault:v1:y"})
        # 6 strings an item with context and associated data, 2 without; at most 249 items.
        self.assertEqual([len(body) for body in bodies], [166, 166, 249, 119])
        self.assertTrue(all(sum(2 * len(item) for item in body) <= 998 for body in bodies))



VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                       "schema-fields-test-vectors.json")


class StandInVault:
    """The vectors' stand-in for Vault transit (their "stand_in_ciphertext"): a ciphertext
    is vault:v1:<base64 of the plaintext>. Records what it is asked, to be checked."""

    def __init__(self):
        self.asked = []  # (ciphertext, context, associated data)
        self.keys = []  # record keys: (ciphertext, context)

    def decrypt(self, key_name, ciphertext, context=None, associated_data=None):
        self.keys.append((ciphertext, context))
        assert associated_data is None and ciphertext.startswith("vault:v1:")
        return base64.b64decode(ciphertext[len("vault:v1:"):], validate=True)

    def decrypt_batch(self, key_name, items):
        out = []
        for item in items:
            ciphertext, context, bound = tuple(item) + (None,) * (3 - len(item))
            self.asked.append((ciphertext, context, bound))
            if not ciphertext.startswith("vault:v1:"):
                out.append(TransitError(f"transit/decrypt/{key_name}: invalid ciphertext"))
                continue
            out.append(base64.b64decode(ciphertext[len("vault:v1:"):], validate=True))
        return out


def contained(part, whole) -> bool:
    """Whether every element of `part` is in `whole`, counting repeats."""
    whole = list(whole)
    for element in part:
        if element not in whole:
            return False
        whole.remove(element)
    return True


class Vectors(unittest.TestCase):
    """docs/schema-fields-test-vectors.json, as its spec's last paragraph asks of a reader:
    each vector's protected record opens to what the stock deserializer reads from the
    plaintext one, its fields are the located ones, and binding() gives each binding; each
    refused record is refused, without asking Vault."""

    @classmethod
    def setUpClass(cls):
        # Never skipped: a missing file fails here.
        with open(VECTORS, encoding="utf-8") as handle:
            cls.document = json.load(handle)
        # The vectors' schemas under their own ids (the mock registry numbers from max_id + 1).
        cls.registry = MockSchemaRegistryClient({"url": f"mock://{uuid.uuid4()}"})
        store, registered = cls.registry._store, {}
        store.max_id = 100000  # references, out of the vectors' ids
        for case in cls.document["vectors"] + cls.document["refused"]:
            for reference in case["references"]:
                if (reference["subject"], reference["version"]) not in registered:
                    cls.registry.register_schema(reference["subject"], Schema(reference["schema"], "PROTOBUF"))
                    registered[(reference["subject"], reference["version"])] = reference["schema"]
        for case in cls.document["vectors"] + cls.document["refused"]:
            if case["schema_id"] in registered:
                assert registered[case["schema_id"]] == case["schema"], case["name"]
                continue
            store.max_id = case["schema_id"] - 1
            references = [SchemaReference(r["name"], r["subject"], r["version"]) for r in case["references"]]
            schema = Schema(case["schema"], case["schema_type"], references)
            assert cls.registry.register_schema(f"vectors-{case['schema_id']}", schema) == case["schema_id"]
            registered[case["schema_id"]] = case["schema"]

    def stock(self, case, opener, value):
        """The stock deserializer of the case's format (Protobuf: of the record's message)."""
        if case["schema_type"] == "AVRO":
            return AvroDeserializer(self.registry)
        if case["schema_type"] == "JSON":
            return JSONDeserializer(None, schema_registry_client=self.registry)
        return ProtobufDeserializer(opener.writer_message_class(value), {})

    def read(self, case, value, vault, ctx=CTX, record_key=None, **options):
        """(the record as the reader opens it, or the error it refuses it with; the
        plaintext record as the stock deserializer reads it, for vectors)."""
        opener = FieldOpener(vault, self.registry, "customers", tags=case["tags"], fields=case["fields"], **options)
        try:
            inner = self.stock(case, opener, value)
        except FieldError as error:
            return error, None
        opened = ProtectedFieldsDeserializer(inner, opener).open_many([(value, ctx, record_key)], return_errors=True)[0]
        if "value_hex" not in case or "protected_hex" not in case:
            return opened, None
        # Protobuf: the same opener's message class, since classes of two pools never compare equal.
        plain = bytes.fromhex(case["value_hex"])
        return opened, self.stock(case, opener, plain)(plain, CTX)

    def test_every_vector_opens_to_its_plaintext_record(self):
        vectors = self.document["vectors"]
        self.assertGreater(len(vectors), 0)
        for case in vectors:
            protected = bytes.fromhex(case["protected_hex"])
            located = [(f["path"].encode(), bytes.fromhex(f["content_hex"])) for f in case["located"]]
            vault = StandInVault()
            opened, plain = self.read(case, protected, vault)
            self.assertEqual(opened, plain, case["name"])
            # Format 2: no context, no associated data; only located contents asked for
            # (a subset: of a Protobuf field twice on the wire, the deserializer keeps the last).
            self.assertTrue(vault.asked, case["name"])
            self.assertEqual({(context, bound) for _, context, bound in vault.asked}, {(None, None)}, case["name"])
            opened = [base64.b64decode(c[len("vault:v1:"):]) for c, _, _ in vault.asked]
            self.assertTrue(contained(opened, [content for _, content in located]), case["name"])
            # Each field at its located path: with deterministic, the path is its context.
            vault = StandInVault()
            self.assertEqual(*self.read(case, protected, vault, deterministic=True), case["name"])
            pairs = [(context, base64.b64decode(c[len("vault:v1:"):])) for c, context, _ in vault.asked]
            self.assertTrue(contained(pairs, located), (case["name"], pairs, located))
            # The bindings: as published, and what the reader sends as associated data when
            # the record carries the protection header of those flags.
            for bound in case["bindings"]:
                key = None if bound["record_key_hex"] is None else bytes.fromhex(bound["record_key_hex"])
                self.assertEqual(binding(bound["flags"], bound["stream"], key, bound["path"]).hex(),
                                 bound["binding_hex"], (case["name"], bound["path"]))
                self.assertEqual(bound_to(bound["flags"], bound["stream"], key, bound["path"]).hex(),
                                 bound["binding_hex"], (case["name"], bound["path"]))
            (flags, stream, key), = {(b["flags"], b["stream"], b["record_key_hex"]) for b in case["bindings"]}
            vault = StandInVault()
            ctx = SerializationContext(stream, MessageField.VALUE, [(PROTECTION, b"3;%02x" % flags)])
            self.assertEqual(*self.read(case, protected, vault, ctx, None if key is None else bytes.fromhex(key)),
                             case["name"])
            self.assertTrue(contained([bound.hex() for _, _, bound in vault.asked],
                                      [b["binding_hex"] for b in case["bindings"]]), case["name"])
            if key is not None and flags & 0x40:  # an encrypted record key: the stream is its context
                opener = FieldOpener(vault, self.registry, "customers", record_keys_key="customer-ids")
                restored = opener.open_key(bytes.fromhex(key), ctx)
                self.assertEqual(vault.keys, [(bytes.fromhex(key).decode(), stream.encode())], case["name"])
                self.assertEqual(b"vault:v1:" + base64.b64encode(restored), bytes.fromhex(key), case["name"])

    def test_every_refused_record_is_refused_without_asking_vault(self):
        refused = self.document["refused"]
        self.assertGreater(len(refused), 0)
        # What the reader refuses each with: its FieldError's kind, or "deserializer": the
        # stock deserializer's own error (confluent-kafka's, fastavro's, protobuf's).
        kinds = {"wire": {"frame", "deserializer"}, "decode": {"deserializer"}, "schema": {"schema"},
                 "not a ciphertext": {"not ciphertext"}}
        for case in refused:
            vault = StandInVault()
            result, _ = self.read(case, bytes.fromhex(case["value_hex"]), vault)
            self.assertIsInstance(result, Exception, case["name"])
            failed = result.kind if isinstance(result, FieldError) else "deserializer"
            self.assertIn(failed, kinds[case["expect"]], (case["name"], str(result)))
            self.assertEqual(vault.asked, [], case["name"])



if __name__ == "__main__":
    unittest.main()

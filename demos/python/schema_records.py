"""Schema'd customer records in Confluent's wire format, and a checker for them.

Independent of kafka-transit: it uses only confluent-kafka's own serializers, deserializers
and Schema Registry client, so it can tell whether the runner's field-level protection of
Avro, JSON Schema and Protobuf records is what a stock Confluent consumer reads.

    # 20 customers as Avro; the schema is registered under customers.raw-value
    python3 schema_records.py produce --bootstrap B --registry URL --topic customers.raw \\
        --format avro --count 20

    # the same customers read back: identical, or with every PII-tagged field a vault: string
    python3 schema_records.py check --bootstrap B --registry URL --topic customers.raw \\
        --format avro --count 20 --expect plain
    python3 schema_records.py check --bootstrap B --registry URL --topic customers.protected \\
        --format avro --count 20 --expect protected

    # hostile records: a schema id the registry does not have, a magic byte that is not 0
    python3 schema_records.py produce-unknown-id --bootstrap B --topic customers.raw
    python3 schema_records.py produce-bad-magic --bootstrap B --topic customers.raw

    # the schemas themselves (e.g. for fixtures), and the checker's own test (no Kafka)
    python3 schema_records.py schema --format protobuf
    python3 schema_records.py self-test

Record i (the same content in every format; --start shifts the range):
    id       long, 7000000000 + i (beyond 32 bits); the record key is it as UTF-8 text
    name     string                               tagged PII
    email    string, null on every third record   tagged PII
    address  {street: string (PII), city: string}
    phones   array of {kind: string, number: string (PII)}, 0 to 2 of them
    notes    string;  loyalty: int (some negative)
  Avro adds   attributes: map<string, string> (untagged; empty on every fourth record)
  Protobuf adds  oneof contact { string phone (PII); string handle; } (unset on every fifth)

Tags follow Confluent's conventions: Avro field property "confluent:tags": ["PII"], JSON
Schema property keyword "confluent:tags": ["PII"] (beside the oneOf of a nullable field),
Protobuf field option [(confluent.field_meta).tags = "PII"] from confluent/meta.proto.

Protobuf without protoc: the message is built at run time as a FileDescriptorProto
(google.protobuf.descriptor_pb2), with the tags set through the field_meta extension of
confluent-kafka's own confluent/meta.proto (confluent_kafka.schema_registry.confluent.meta_pb2);
the .proto text is rendered from that descriptor, so the two cannot disagree. How the schema
reaches the registry (--protobuf-schema):
  text        (default) the .proto text, with confluent/meta.proto (also as text) registered
              under the subject "confluent/meta.proto" and referenced: what Confluent's
              registry serves whoever registered, and what Java producers register. The
              records are framed as ProtobufSerializer frames them (self-test checks that).
  descriptor  ProtobufSerializer registers as it does by default: base64 FileDescriptorProtos
              (Apicurio keeps and serves them so; Confluent's registry turns them into text).

check reads the topic from the beginning with the stock deserializers (AvroDeserializer
and JSONDeserializer with the writer schema from the registry, ProtobufDeserializer with the
message class; the schema id of each record is looked up in the registry too). Records whose
key is not a customer id in the range are counted and skipped (e.g. the hostile ones).
--expect plain: every field identical. --expect protected: untagged fields identical, every
tagged field a string starting with "vault:v" that differs from the plaintext (a null stays
null). Exits 1 on any difference, a missing record, or (without --allow-duplicates) a
duplicate.

Needs: pip install 'confluent-kafka[avro,json,protobuf,schemaregistry]' (see requirements.txt).
"""
import argparse
import copy
import json
import struct
import sys
import time
import uuid

ID_BASE = 7_000_000_000
FORMATS = ("avro", "json", "protobuf")
TAG = "PII"
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
STREETS = ["Bahnhofstrasse", "Rue de Rivoli", "Calle Mayor", "Main Street", "Königsallee"]
CITIES = ["Zürich", "Paris", "Madrid", "Springfield", "Düsseldorf", "Kraków"]

# What each format tags, written out by hand: self-test checks that the schemas below tag
# exactly these paths ("a.b" a field of a record, "a[]" the elements of an array).
EXPECTED_TAGGED = {
    "avro": {"name", "email", "address.street", "phones[].number"},
    "json": {"name", "email", "address.street", "phones[].number"},
    "protobuf": {"name", "email", "address.street", "phones[].number", "contact.phone"},
}


# ---------------------------------------------------------------------------------------
# The records


def customer(i: int, fmt: str) -> dict:
    """Customer i in the canonical form the checker compares: plain Python values, None for
    a null/unset field, {} for an unset oneof."""
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    record = {
        "id": ID_BASE + i,
        "name": f"{first} {last}",
        "email": None if i % 3 == 2 else f"{first.lower()}.{last.lower()}{i}@example.com",
        "address": {"street": f"{STREETS[i % len(STREETS)]} {1 + i % 97}", "city": CITIES[i % len(CITIES)]},
        "phones": [{"kind": kind, "number": f"+41 44 {i % 1000:03d} {(i * 7 + n) % 10000:04d}"}
                   for n, kind in enumerate(["mobile", "home"][: i % 3])],
        "notes": f"customer since {2000 + i % 25}; record {i}",
        "loyalty": (i * 37) % 1000 - 100,
    }
    if fmt == "avro":
        record["attributes"] = {} if i % 4 == 3 else {
            "tier": ["bronze", "silver", "gold"][i % 3], "source": "web" if i % 2 else "shop"}
    elif fmt == "protobuf":
        if i % 5 == 4:
            record["contact"] = {}
        elif i % 2 == 0:
            record["contact"] = {"phone": f"+44 20 {i % 10000:04d} {(i * 13) % 10000:04d}"}
        else:
            record["contact"] = {"handle": f"@{first.lower()}{i}"}
    return record


def record_key(i: int) -> bytes:
    return str(ID_BASE + i).encode()


def index_of_key(key) -> int | None:
    try:
        return int(key.decode()) - ID_BASE
    except (AttributeError, UnicodeDecodeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Avro and JSON Schema


def _tags():
    return {"confluent:tags": [TAG]}


AVRO_SCHEMA = {
    "type": "record", "name": "Customer", "namespace": "kafkatransit.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string", **_tags()},
        {"name": "email", "type": ["null", "string"], "default": None, **_tags()},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "street", "type": "string", **_tags()},
            {"name": "city", "type": "string"}]}},
        {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone", "fields": [
            {"name": "kind", "type": "string"},
            {"name": "number", "type": "string", **_tags()}]}}},
        {"name": "notes", "type": "string"},
        {"name": "loyalty", "type": "int"},
        {"name": "attributes", "type": {"type": "map", "values": "string"}, "default": {}},
    ],
}


def _json_object(properties: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(properties),
            "properties": properties}


JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Customer",
    **_json_object({
        "id": {"type": "integer"},
        "name": {"type": "string", **_tags()},
        # Confluent's form of a nullable field: the tags beside the oneOf.
        "email": {"oneOf": [{"type": "null"}, {"type": "string"}], **_tags()},
        "address": _json_object({"street": {"type": "string", **_tags()}, "city": {"type": "string"}}),
        "phones": {"type": "array", "items": _json_object({
            "kind": {"type": "string"}, "number": {"type": "string", **_tags()}})},
        "notes": {"type": "string"},
        "loyalty": {"type": "integer"},
    }),
}


def avro_tagged(schema, path="", tagged=None) -> set:
    """Paths of the fields an Avro schema tags (a tag on a field covers all inside it)."""
    tagged = set() if tagged is None else tagged
    if isinstance(schema, list):
        for branch in schema:
            avro_tagged(branch, path, tagged)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for field in schema["fields"]:
                sub = f"{path}.{field['name']}" if path else field["name"]
                if field.get("confluent:tags"):
                    tagged.add(sub)
                avro_tagged(field["type"], sub, tagged)
        elif schema.get("type") == "array":
            avro_tagged(schema["items"], path + "[]", tagged)
        elif schema.get("type") == "map":
            avro_tagged(schema["values"], path + "{}", tagged)
    return tagged


def json_tagged(schema, path="", tagged=None) -> set:
    """Paths of the properties a JSON Schema tags."""
    tagged = set() if tagged is None else tagged
    if not isinstance(schema, dict):
        return tagged
    if schema.get("confluent:tags") and path:
        tagged.add(path)
    for name, sub in schema.get("properties", {}).items():
        json_tagged(sub, f"{path}.{name}" if path else name, tagged)
    if "items" in schema:
        json_tagged(schema["items"], path + "[]", tagged)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(keyword, []):
            json_tagged(sub, path, tagged)
    return tagged


# ---------------------------------------------------------------------------------------
# Protobuf, without protoc


def _meta():
    from confluent_kafka.schema_registry.confluent import meta_pb2
    return meta_pb2


def customer_file_proto():
    """kafkatransit/customer.proto as a FileDescriptorProto (what protoc would make of
    protobuf_text() below)."""
    from google.protobuf import descriptor_pb2 as d
    F = d.FieldDescriptorProto
    meta_pb2 = _meta()
    fdp = d.FileDescriptorProto(name="kafkatransit/customer.proto", package="kafkatransit.test",
                                syntax="proto3", dependency=["confluent/meta.proto"])

    def add(msg, name, number, ftype, type_name=None, repeated=False, tags=(), oneof=None, optional=False):
        field = msg.field.add(name=name, number=number, type=ftype,
                              label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
        if tags:
            field.options.Extensions[meta_pb2.field_meta].tags.extend(tags)
        if oneof is not None:
            field.oneof_index = oneof
        if optional:
            field.proto3_optional = True
        return field

    customer = fdp.message_type.add(name="Customer")
    address = customer.nested_type.add(name="Address")
    add(address, "street", 1, F.TYPE_STRING, tags=[TAG])
    add(address, "city", 2, F.TYPE_STRING)
    phone = customer.nested_type.add(name="Phone")
    add(phone, "kind", 1, F.TYPE_STRING)
    add(phone, "number", 2, F.TYPE_STRING, tags=[TAG])
    # Real oneofs first, then the synthetic one proto3 `optional` makes (protoc's order).
    customer.oneof_decl.add(name="contact")
    customer.oneof_decl.add(name="_email")
    add(customer, "id", 1, F.TYPE_INT64)
    add(customer, "name", 2, F.TYPE_STRING, tags=[TAG])
    add(customer, "email", 3, F.TYPE_STRING, tags=[TAG], oneof=1, optional=True)
    add(customer, "address", 4, F.TYPE_MESSAGE, ".kafkatransit.test.Customer.Address")
    add(customer, "phones", 5, F.TYPE_MESSAGE, ".kafkatransit.test.Customer.Phone", repeated=True)
    add(customer, "notes", 6, F.TYPE_STRING)
    add(customer, "loyalty", 7, F.TYPE_INT32)
    add(customer, "phone", 8, F.TYPE_STRING, tags=[TAG], oneof=0)
    add(customer, "handle", 9, F.TYPE_STRING, oneof=0)
    return fdp


_CUSTOMER_CLASS = None


def customer_class():
    """The generated-equivalent message class kafkatransit.test.Customer."""
    global _CUSTOMER_CLASS
    if _CUSTOMER_CLASS is None:
        from google.protobuf import descriptor_pool, message_factory
        _meta()  # puts confluent/meta.proto in the default pool: ours imports it
        pool = descriptor_pool.Default()
        try:
            pool.FindFileByName("kafkatransit/customer.proto")
        except KeyError:
            pool.Add(customer_file_proto())
        _CUSTOMER_CLASS = message_factory.GetMessageClass(pool.FindMessageTypeByName("kafkatransit.test.Customer"))
    return _CUSTOMER_CLASS


def to_protobuf(record: dict):
    msg = customer_class()()
    msg.id, msg.name, msg.notes, msg.loyalty = record["id"], record["name"], record["notes"], record["loyalty"]
    if record["email"] is not None:
        msg.email = record["email"]
    msg.address.street, msg.address.city = record["address"]["street"], record["address"]["city"]
    for phone in record["phones"]:
        msg.phones.add(kind=phone["kind"], number=phone["number"])
    for name, value in record["contact"].items():
        setattr(msg, name, value)
    return msg


def from_protobuf(msg) -> dict:
    which = msg.WhichOneof("contact")
    return {
        "id": msg.id,
        "name": msg.name,
        "email": msg.email if msg.HasField("email") else None,
        "address": {"street": msg.address.street, "city": msg.address.city} if msg.HasField("address") else None,
        "phones": [{"kind": p.kind, "number": p.number} for p in msg.phones],
        "notes": msg.notes,
        "loyalty": msg.loyalty,
        "contact": {} if which is None else {which: getattr(msg, which)},
    }


def protobuf_tagged(descriptor=None, path="", tagged=None) -> set:
    """Paths of the fields whose (confluent.field_meta).tags are set; a member of a real
    oneof sits under the oneof's name, as in the canonical form."""
    meta_pb2 = _meta()
    tagged = set() if tagged is None else tagged
    descriptor = descriptor or customer_class().DESCRIPTOR
    for field in descriptor.fields:
        oneof = field.containing_oneof
        name = f"{oneof.name}.{field.name}" if oneof is not None and not oneof.name.startswith("_") else field.name
        sub = f"{path}.{name}" if path else name
        options = field.GetOptions()
        if options.HasExtension(meta_pb2.field_meta) and options.Extensions[meta_pb2.field_meta].tags:
            tagged.add(sub)
        if field.message_type is not None:
            protobuf_tagged(field.message_type, sub + ("[]" if field.is_repeated else ""), tagged)
    return tagged


_SCALARS = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
            8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
            17: "sint32", 18: "sint64"}


def protobuf_text(fdp) -> str:
    """A proto3 FileDescriptorProto as .proto text: enough of the language for our
    customer.proto and Confluent's meta.proto (messages, nested messages and enums, maps,
    oneofs, proto3 optional, extensions, file options of scalar type, field_meta tags)."""
    meta_pb2 = _meta()
    out = [f'syntax = "{fdp.syntax or "proto2"}";', f"package {fdp.package};", ""]
    out += [f'import "{dep}";' for dep in fdp.dependency]
    if fdp.dependency:
        out.append("")
    for option, value in fdp.options.ListFields():
        if option.is_extension:
            continue
        out.append(f"option {option.name} = {json.dumps(value) if isinstance(value, str) else str(value).lower()};")
    if fdp.options.ListFields():
        out.append("")

    def type_of(field, msg):
        if field.type in (field.TYPE_MESSAGE, field.TYPE_ENUM):
            # Relative to the package (".kafkatransit.test.Customer.Address" is written
            # Customer.Address), as people write them; other packages' without the dot.
            return field.type_name.removeprefix(f".{fdp.package}.").lstrip(".")
        return _SCALARS[field.type]

    def field_line(field, msg, entries, indent):
        label = ""
        if field.label == field.LABEL_REPEATED and field.type_name not in entries:
            label = "repeated "
        elif field.proto3_optional:
            label = "optional "
        ftype = type_of(field, msg)
        if field.type_name in entries:
            key, value = entries[field.type_name].field
            ftype = f"map<{type_of(key, msg)}, {type_of(value, msg)}>"
        options = ""
        if field.options.HasExtension(meta_pb2.field_meta):
            tags = list(field.options.Extensions[meta_pb2.field_meta].tags)
            options = (f" [(confluent.field_meta).tags = {json.dumps(tags[0])}]" if len(tags) == 1 else
                       f" [(confluent.field_meta) = {{tags: [{', '.join(json.dumps(t) for t in tags)}]}}]")
        return f"{indent}{label}{ftype} {field.name} = {field.number}{options};"

    def message(msg, scope, indent):
        name = f"{scope}.{msg.name}"
        entries = {f"{name}.{n.name}": n for n in msg.nested_type if n.options.map_entry}
        lines = [f"{indent}message {msg.name} {{"]
        for nested in msg.nested_type:
            if not nested.options.map_entry:
                lines += message(nested, name, indent + "  ")
        for enum in msg.enum_type:
            lines += enum_lines(enum, indent + "  ")
        done_oneofs = set()
        for field in msg.field:
            real_oneof = field.HasField("oneof_index") and not field.proto3_optional
            if not real_oneof:
                lines.append(field_line(field, msg, entries, indent + "  "))
            elif field.oneof_index not in done_oneofs:
                done_oneofs.add(field.oneof_index)
                lines.append(f"{indent}  oneof {msg.oneof_decl[field.oneof_index].name} {{")
                lines += [field_line(f, msg, entries, indent + "    ") for f in msg.field
                          if f.HasField("oneof_index") and f.oneof_index == field.oneof_index]
                lines.append(f"{indent}  }}")
        return lines + [f"{indent}}}"]

    def enum_lines(enum, indent):
        return ([f"{indent}enum {enum.name} {{"] + [f"{indent}  {v.name} = {v.number};" for v in enum.value]
                + [f"{indent}}}"])

    for msg in fdp.message_type:
        out += message(msg, "." + fdp.package, "") + [""]
    for enum in fdp.enum_type:
        out += enum_lines(enum, "") + [""]
    extendees = []
    for ext in fdp.extension:
        if ext.extendee not in extendees:
            extendees.append(ext.extendee)
    for extendee in extendees:
        out.append(f"extend {extendee.lstrip('.')} {{")
        out += [field_line(ext, None, {}, "  ") for ext in fdp.extension if ext.extendee == extendee]
        out += ["}", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def meta_file_proto():
    from google.protobuf import descriptor_pb2
    return descriptor_pb2.FileDescriptorProto.FromString(_meta().DESCRIPTOR.serialized_pb)


def schema_text(fmt: str) -> str:
    if fmt == "avro":
        return json.dumps(AVRO_SCHEMA, indent=2, ensure_ascii=False)
    if fmt == "json":
        return json.dumps(JSON_SCHEMA, indent=2, ensure_ascii=False)
    return protobuf_text(customer_file_proto())


def tagged_paths(fmt: str) -> set:
    if fmt == "avro":
        return avro_tagged(AVRO_SCHEMA)
    if fmt == "json":
        return json_tagged(JSON_SCHEMA)
    return protobuf_tagged()


def confluent_frame(schema_id: int, payload: bytes, message_indexes: bytes = b"") -> bytes:
    """Confluent's wire format: magic byte 0, the schema id (4 bytes, big-endian), for
    Protobuf the message indexes (b"\\x00" for the file's first message), the payload."""
    return b"\x00" + struct.pack(">I", schema_id) + message_indexes + payload


# ---------------------------------------------------------------------------------------
# The comparison


def is_tagged(path: str, tagged: set) -> bool:
    """Whether path is a tagged field or lies inside one (a tag covers all inside it)."""
    return any(path == t or path.startswith((t + ".", t + "[]", t + "{}")) for t in tagged)


def differences(expected, got, tagged: set, expect: str, path: str = "") -> list:
    """How got differs from expected: --expect plain wants them equal; protected wants every
    tagged string a vault: ciphertext (not the plaintext) and all else equal."""
    where = path or "the record"
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object, got {got!r:.60}"]
        problems = []
        if set(expected) != set(got):
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            problems.append(f"{where}: fields differ (missing {missing}, unexpected {extra})")
        for name in expected:
            if name in got:
                problems += differences(expected[name], got[name], tagged, expect, f"{path}.{name}" if path else name)
        return problems
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{where}: expected {len(expected)} elements, got {got!r:.80}"]
        return [p for e, g in zip(expected, got) for p in differences(e, g, tagged, expect, path + "[]")]
    if expect == "protected" and is_tagged(path, tagged) and expected is not None:
        if not isinstance(got, str) or not got.startswith("vault:v"):
            return [f"{where} (tagged): expected a vault:v… ciphertext, got {got!r:.60}"]
        if got == expected:
            return [f"{where} (tagged): still the plaintext"]
        return []
    # type() as well: True == 1 and 1 == 1.0 in Python, not in a record.
    if type(got) is not type(expected) or got != expected:
        return [f"{where}{' (tagged)' if is_tagged(path, tagged) else ''}: expected {expected!r:.60}, got {got!r:.60}"]
    return []


# ---------------------------------------------------------------------------------------
# Commands


def serde_conf() -> dict:
    """TopicNameStrategy ({topic}-value), said explicitly: confluent-kafka 2.16's default
    first asks the registry for "associations" (a Confluent-only API) and falls back to the
    topic's name only when that answers 404."""
    from confluent_kafka.schema_registry import topic_subject_name_strategy
    return {"subject.name.strategy": topic_subject_name_strategy}


def registry_client(url: str, timeout: float):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    # One attempt of at most 10 s (or --timeout) per request: a registry that hangs fails
    # the run instead of stalling it (the client's default is 3 attempts with no timeout).
    return SchemaRegistryClient({"url": url, "timeout": min(10.0, timeout), "max.retries": 0})


def register_protobuf_text(client, subject: str) -> int:
    """confluent/meta.proto and customer.proto as .proto text, the first referenced by the
    second (subject names as ProtobufSerializer's default reference strategy picks them)."""
    from confluent_kafka.schema_registry import Schema, SchemaReference
    meta_subject = "confluent/meta.proto"
    meta = Schema(protobuf_text(meta_file_proto()), "PROTOBUF")
    client.register_schema(meta_subject, meta)
    version = client.lookup_schema(meta_subject, meta).version
    schema = Schema(schema_text("protobuf"), "PROTOBUF",
                    [SchemaReference("confluent/meta.proto", meta_subject, version)])
    return client.register_schema(subject, schema)


def value_serializer(args, client):
    """A function record (canonical dict) -> Confluent-framed bytes, and how it does it."""
    from confluent_kafka.serialization import MessageField, SerializationContext
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    if args.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer
        serializer = AvroSerializer(client, schema_text("avro"), conf=serde_conf())
        return lambda record: serializer(record, ctx), "AvroSerializer"
    if args.format == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        serializer = JSONSerializer(schema_text("json"), client, conf=serde_conf())
        return lambda record: serializer(record, ctx), "JSONSerializer"
    if args.protobuf_schema == "descriptor":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        serializer = ProtobufSerializer(customer_class(), client, serde_conf())
        return lambda record: serializer(to_protobuf(record), ctx), "ProtobufSerializer (schema as base64 descriptor)"
    schema_id = register_protobuf_text(client, f"{args.topic}-value")
    return (lambda record: confluent_frame(schema_id, to_protobuf(record).SerializeToString(), b"\x00"),
            f"schema registered as .proto text (id {schema_id}), framed as ProtobufSerializer does")


def new_producer(bootstrap: str):
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})


def flush_or_die(producer, failures, what):
    remaining = producer.flush(60)
    if failures or remaining:
        sys.exit(f"{what}: {len(failures)} failed, {remaining} undelivered: {failures[:3]}")


def cmd_produce(args) -> None:
    client = registry_client(args.registry, args.timeout)
    serialize, how = value_serializer(args, client)
    producer, failures = new_producer(args.bootstrap), []

    def delivered(error, message):
        if error is not None:
            failures.append(f"{message.key()!r}: {error}")

    started = time.monotonic()
    for i in range(args.start, args.start + args.count):
        producer.produce(args.topic, key=record_key(i), value=serialize(customer(i, args.format)),
                         on_delivery=delivered)
        producer.poll(0)
    flush_or_die(producer, failures, "produce")
    subject = f"{args.topic}-value"
    latest = client.get_latest_version(subject)
    print(f"produce: wrote {args.count} {args.format} customers (indexes {args.start}..{args.start + args.count - 1})"
          f" to {args.topic} in {time.monotonic() - started:.2f}s; {how}; subject {subject} version "
          f"{latest.version}, schema id {latest.schema_id}")


def cmd_produce_hostile(args, magic: int, schema_id: int, key: str) -> None:
    producer, failures = new_producer(args.bootstrap), []

    def delivered(error, message):
        if error is not None:
            failures.append(f"{message.key()!r}: {error}")

    # A body that would be a valid Avro string: only the header is wrong.
    value = bytes([magic]) + struct.pack(">I", schema_id) + b"\x0ahello"
    for n in range(args.count):
        producer.produce(args.topic, key=f"{key}-{n}".encode(), value=value, on_delivery=delivered)
    flush_or_die(producer, failures, args.command)
    print(f"{args.command}: wrote {args.count} record(s) to {args.topic}: magic byte {magic}, "
          f"schema id {schema_id}, key {key}-N, value {value.hex()}")


def value_deserializer(args, client):
    """A function (bytes) -> canonical dict, using the stock Confluent deserializer."""
    from confluent_kafka.serialization import MessageField, SerializationContext
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    if args.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        deserializer = AvroDeserializer(client, conf=serde_conf())
        return lambda data: deserializer(data, ctx)
    if args.format == "json":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        deserializer = JSONDeserializer(None, schema_registry_client=client, conf=serde_conf())
        return lambda data: deserializer(data, ctx)
    # With a registry client, ProtobufDeserializer asks for the writer schema with
    # ?format=serialized, which Apicurio answers with raw bytes for a schema registered as
    # text (Confluent answers base64): decode with the message class, as generated code does.
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    deserializer = ProtobufDeserializer(customer_class(), serde_conf())
    return lambda data: from_protobuf(deserializer(data, ctx))


def cmd_check(args) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    client = registry_client(args.registry, args.timeout)
    deserialize = value_deserializer(args, client)
    tagged = tagged_paths(args.format)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"schema-records-check-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    deadline = time.monotonic() + args.timeout
    metadata = consumer.list_topics(args.topic, timeout=max(1.0, deadline - time.monotonic()))
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        consumer.close()
        print(f"check: FAILED: topic {args.topic} not found ({topic.error if topic else 'no metadata'})")
        return 1
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in topic.partitions])

    wanted = set(range(args.start, args.start + args.count))
    seen: dict[int, int] = {}
    problems, schema_ids, other, read = [], {}, 0, 0
    known_ids: dict[int, str] = {}

    def schema_ok(schema_id: int) -> str:
        """The schema type of an id, or why there is none (each id is asked once)."""
        if schema_id not in known_ids:
            try:
                known_ids[schema_id] = client.get_schema(schema_id).schema_type or "AVRO"
            except SchemaRegistryError as error:
                known_ids[schema_id] = f"not in the registry ({error})" if error.http_status_code == 404 else \
                    f"could not be looked up ({error})"
            except Exception as error:  # noqa: BLE001 - reported, whatever the client raises
                known_ids[schema_id] = f"could not be looked up ({type(error).__name__}: {error})"
        return known_ids[schema_id]

    def drained() -> bool:
        """At the end of every partition (as of now)."""
        for tp in consumer.position(consumer.assignment()):
            low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            # No position yet: nothing read from that partition, fine if it is empty.
            if (tp.offset < 0 and low < high) or 0 <= tp.offset < high:
                return False
        return True

    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            # All expected seen: stop at the end of the topic (to count duplicates), or after
            # 2 s without records (a transactional topic ends with a marker, not a record).
            if wanted <= set(seen) and (drained() or time.monotonic() - quiet_since > 2):
                break
            continue
        quiet_since = time.monotonic()
        if message.error() is not None:
            problems.append(f"consumer error: {message.error()}")
            continue
        read += 1
        index = index_of_key(message.key())
        if index not in wanted:
            other += 1
            continue
        seen[index] = seen.get(index, 0) + 1
        where = f"record {index} (partition {message.partition()}, offset {message.offset()})"
        value = message.value()
        if value is None or len(value) < 5 or value[0] != 0:
            problems.append(f"{where}: not in Confluent's wire format: {(value or b'')[:8].hex()}")
            continue
        schema_id = struct.unpack(">I", value[1:5])[0]
        schema_ids[schema_id] = schema_ids.get(schema_id, 0) + 1
        kind = schema_ok(schema_id)
        if kind.startswith(("not in", "could not")):
            problems.append(f"{where}: schema id {schema_id} {kind}")
            continue
        if kind.lower() != args.format:
            problems.append(f"{where}: schema id {schema_id} is a {kind} schema, not {args.format}")
            continue
        if args.format == "protobuf" and value[5:6] != b"\x00":
            problems.append(f"{where}: message indexes {value[5:8].hex()}…, expected 00 (the first message)")
        try:
            got = deserialize(value)
        except Exception as error:  # noqa: BLE001 - any deserializer error is a finding
            problems.append(f"{where}: the {args.format} deserializer failed: {type(error).__name__}: {error}")
            continue
        problems += [f"{where}: {p}" for p in differences(customer(index, args.format), got, tagged, args.expect)]
    consumer.close()

    missing = sorted(wanted - set(seen))
    duplicates = {i: n for i, n in seen.items() if n > 1}
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        problems.append(f"{len(missing)} of {len(wanted)} records missing after {args.timeout:.0f}s: {shown}")
    if duplicates and not args.allow_duplicates:
        problems.append(f"{len(duplicates)} records read more than once (e.g. {sorted(duplicates)[:5]}); "
                        "--allow-duplicates accepts that")
    ok = not problems
    ids = ", ".join(f"{i} ({known_ids.get(i, '?')}, {n} records)" for i, n in sorted(schema_ids.items()))
    print(f"check {'OK' if ok else 'FAILED'}: {args.topic}, {args.format}, expect {args.expect}: "
          f"{len(seen)}/{len(wanted)} customers read "
          f"(indexes {args.start}..{args.start + args.count - 1}), {read} records in all, {other} others skipped, "
          f"{sum(n - 1 for n in duplicates.values())} duplicates; schema ids: {ids or 'none'}; "
          f"tagged: {', '.join(sorted(tagged))}")
    for problem in problems[:20]:
        print(f"   PROBLEM: {problem}")
    if len(problems) > 20:
        print(f"   … and {len(problems) - 20} more problems")
    return 0 if ok else 1


def cmd_schema(args) -> None:
    if args.meta:
        print(protobuf_text(meta_file_proto()), end="")
    else:
        print(schema_text(args.format))


# ---------------------------------------------------------------------------------------
# self-test: the comparison and the schemas, without Kafka or a registry


def cmd_self_test(_args) -> int:
    import io

    import fastavro
    import jsonschema
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.serialization import MessageField, SerializationContext

    failures = []

    def expect(condition, what):
        print(f"  {'ok  ' if condition else 'FAIL'} {what}")
        if not condition:
            failures.append(what)

    avro_parsed = fastavro.parse_schema(copy.deepcopy(AVRO_SCHEMA))
    validator = jsonschema.Draft7Validator(JSON_SCHEMA)

    def round_trip(fmt, record):
        """Through each format's own encoding, as a consumer would get it back."""
        if fmt == "avro":
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, avro_parsed, record)
            buf.seek(0)
            return fastavro.schemaless_reader(buf, avro_parsed)
        if fmt == "json":
            validator.validate(record)
            return json.loads(json.dumps(record))
        return from_protobuf(customer_class().FromString(to_protobuf(record).SerializeToString()))

    for fmt in FORMATS:
        print(f"{fmt}:")
        tagged = tagged_paths(fmt)
        expect(tagged == EXPECTED_TAGGED[fmt], f"the schema tags exactly {sorted(EXPECTED_TAGGED[fmt])}")
        records = [customer(i, fmt) for i in range(12)]
        expect(all(not differences(r, round_trip(fmt, r), tagged, "plain") for r in records),
               "12 records come back field-identical through the encoding (plain)")
        expect(len({json.dumps(r, sort_keys=True) for r in records}) == 12
               and customer(5, fmt) == customer(5, fmt), "records are distinct and deterministic")
        record = records[10]  # every tagged field has a value (e-mail, a phone, contact.phone)

        def protect(rec, paths):
            rec = copy.deepcopy(rec)
            for path in paths:
                parts = path.split(".")
                targets = [rec]
                for part in parts[:-1]:
                    key, many = part.removesuffix("[]"), part.endswith("[]")
                    targets = [x for t in targets for x in (t[key] if many else [t[key]])]
                leaf = parts[-1]
                for t in targets:
                    if t.get(leaf) is not None:
                        t[leaf] = f"vault:v1:{uuid.uuid4().hex}"
            return rec

        protected = round_trip(fmt, protect(record, tagged))
        expect(not differences(record, protected, tagged, "protected"),
               "every tagged field replaced by vault:v1:…: passes --expect protected")
        expect(bool(differences(record, protected, tagged, "plain")), "… and fails --expect plain")
        untagged = copy.deepcopy(protected)
        untagged["address"]["city"] = "Elsewhere"
        problems = differences(record, untagged, tagged, "protected")
        expect(len(problems) == 1 and problems[0].startswith("address.city:"),
               f"an untagged field changed as well: fails ({problems})")
        half = protect(record, tagged - {"address.street"})
        problems = differences(record, round_trip(fmt, half), tagged, "protected")
        expect(len(problems) == 1 and "address.street (tagged): expected a vault" in problems[0],
               f"a tagged field left in the clear: fails ({problems})")
        nulls = customer(2, fmt)  # e-mail null
        expect(nulls["email"] is None and not differences(nulls, round_trip(fmt, protect(nulls, tagged)), tagged,
                                                          "protected"), "a null tagged field stays null: passes")
        forged = protect(nulls, tagged)
        forged["email"] = "vault:v1:abc"
        expect(bool(differences(nulls, forged, tagged, "protected")), "a null tagged field made a string: fails")
        one = copy.deepcopy(record)
        one["name"] = "vault:v1:" + record["name"]
        expect(len(differences(record, one, tagged, "protected")) == len(tagged) - 1,
               "only one tagged field protected: fails on each of the others")
        expect(bool(differences(record, dict(record, loyalty=float(record["loyalty"])), tagged, "plain")),
               "a type change (int to float) is a difference")

    print("protobuf wire format:")
    text = schema_text("protobuf")
    expect('import "confluent/meta.proto";' in text and
           'string name = 2 [(confluent.field_meta).tags = "PII"];' in text and
           "optional string email = 3" in text and "oneof contact {" in text,
           "customer.proto text has the import, the tag options, the optional and the oneof")
    meta_text = protobuf_text(meta_file_proto())
    expect("extend google.protobuf.FieldOptions {" in meta_text and "  Meta field_meta = 1088;" in meta_text
           and "map<string, string> params = 2;" in meta_text, "confluent/meta.proto text has field_meta = 1088")
    # The hand framing of --protobuf-schema text against ProtobufSerializer's own bytes
    # (with a registry mock standing in: the ids are both 1).
    mock = SchemaRegistryClient.new_client({"url": "mock://self-test"})
    ctx = SerializationContext("self-test", MessageField.VALUE)
    msg = to_protobuf(customer(4, "protobuf"))
    theirs = ProtobufSerializer(customer_class(), mock, serde_conf())(msg, ctx)
    schema_id = struct.unpack(">I", theirs[1:5])[0]
    expect(theirs == confluent_frame(schema_id, msg.SerializeToString(), b"\x00"),
           "the text mode's framing is byte-identical to ProtobufSerializer's")
    back = ProtobufDeserializer(customer_class(), serde_conf())(theirs, ctx)
    expect(from_protobuf(back) == customer(4, "protobuf"), "ProtobufDeserializer reads it back")
    expect(isinstance(mock.get_schema(schema_id), Schema), "the mock registry holds its schema")

    print(f"self-test: {'all passed' if not failures else f'{len(failures)} FAILED'}")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p, registry=True):
        p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
        if registry:
            p.add_argument("--registry", required=True,
                           help="Confluent-compatible registry URL, e.g. http://127.0.0.1:P/apis/ccompat/v7")
        p.add_argument("--topic", required=True)

    def records(p):
        p.add_argument("--format", required=True, choices=FORMATS)
        p.add_argument("--count", type=int, required=True, help="customers (indexes START .. START+COUNT-1)")
        p.add_argument("--start", type=int, default=0, help="first customer index (default 0)")
        p.add_argument("--timeout", type=float, default=60, help="seconds for the whole run (default 60)")

    p = commands.add_parser("produce", help="write customers with the Confluent serializers")
    common(p)
    records(p)
    p.add_argument("--protobuf-schema", choices=("text", "descriptor"), default="text",
                   help="how a Protobuf schema is registered (default text; see above)")
    p = commands.add_parser("check", help="read them back with the Confluent deserializers and compare")
    common(p)
    records(p)
    p.add_argument("--expect", required=True, choices=("plain", "protected"))
    p.add_argument("--allow-duplicates", action="store_true",
                   help="a customer read more than once is fine (at-least-once delivery)")
    for name, what in (("produce-unknown-id", "a schema id the registry does not have (magic byte 0)"),
                       ("produce-bad-magic", "magic byte 1 instead of 0")):
        p = commands.add_parser(name, help=f"write record(s) with {what}")
        common(p, registry=False)
        p.add_argument("--count", type=int, default=1)
        if name == "produce-unknown-id":
            p.add_argument("--schema-id", type=int, default=999999, help="default 999999")
    p = commands.add_parser("schema", help="print a schema as it is registered")
    p.add_argument("--format", choices=FORMATS, default="avro")
    p.add_argument("--meta", action="store_true", help="print confluent/meta.proto as registered (text mode)")
    commands.add_parser("self-test", help="test the comparison and the schemas (no Kafka, no registry)")
    args = parser.parse_args()

    if args.command == "produce":
        try:
            cmd_produce(args)
        except Exception as error:  # noqa: BLE001 - one line, not a traceback, for CI logs
            sys.exit(f"produce: FAILED: {type(error).__name__}: {error}")
    elif args.command == "check":
        sys.exit(cmd_check(args))
    elif args.command == "produce-unknown-id":
        cmd_produce_hostile(args, 0, args.schema_id, "unknown-schema-id")
    elif args.command == "produce-bad-magic":
        cmd_produce_hostile(args, 1, 1, "bad-magic")
    elif args.command == "schema":
        cmd_schema(args)
    else:
        sys.exit(cmd_self_test(args))


if __name__ == "__main__":
    main()

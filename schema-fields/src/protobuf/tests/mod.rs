//! The `.proto` texts below are the schemas of the fixtures: `gen_fixtures.py` compiles
//! them with protoc (grpcio-tools) and writes `fixtures.rs` with Python's protobuf, an
//! encoder and decoder independent of this one.

mod fixtures;

use fixtures::*;

use crate::path::Pattern;
use crate::{Error, FieldType, Reference, Schema, SchemaText, SchemaType, Selection};

const META_PROTO: &str = r#"syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
option go_package = "../confluent";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule { string name = 1; string doc = 2; string expr = 3; string sql = 4; }
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
"#;

const CUSTOMER_PROTO: &str = r#"syntax = "proto3";
package acme;

import "confluent/meta.proto";
import "google/protobuf/timestamp.proto";

// A customer; tagged fields are PII.
message Customer {
  string name = 1;
  string ssn = 2 [(confluent.field_meta).tags = "PII"];
  Address address = 3;
  repeated Phone phones = 4;
  map<string, string> attributes = 5 [(confluent.field_meta) = { tags: ["PII", "X"] }];
  oneof contact {
    string email = 6 [(confluent.field_meta).tags = "PII"];
    int64 pager = 7;
  }
  optional string nickname = 8 [(confluent.field_meta).tags = "PII"];
  bytes photo = 9 [(confluent.field_meta).tags = "PII"];
  google.protobuf.Timestamp created = 10;
  repeated string aliases = 11 [(confluent.field_meta).tags = "PII"];
  int32 age = 12;
  map<int32, Address> old_addresses = 13;
  Customer referrer = 14;
  Status status = 15;

  message Address {
    string street = 1 [(confluent.field_meta).tags = "PII"];
    string city = 2;
  }
  message Phone {
    string number = 1 [(confluent.field_meta) = { doc: "a phone", tags: "PII" }];
    int32 kind = 2;
  }
  enum Status { UNKNOWN = 0; ACTIVE = 1; }
}

message Order {
  string id = 1;
  Customer customer = 2;
  repeated Line lines = 3;
  message Line {
    string note = 1 [(confluent.field_meta).tags = "PII"];
    double price = 2;
  }
}
"#;

const PROTO2_PROTO: &str = r#"syntax = "proto2";
package legacy;
import "confluent/meta.proto";

message Envelope {
  optional string id = 1;
  repeated group Item = 2 {
    optional string secret = 3 [(confluent.field_meta).tags = "PII"];
    optional int32 count = 4;
  }
  required bytes blob = 5 [(confluent.field_meta) = { tags: "PII" }];
  map<int32, string> notes = 6 [(confluent.field_meta).tags = "PII"];
  map<bool, string> flags = 7 [(confluent.field_meta).tags = "PII"];
  map<sint64, string> deltas = 8 [(confluent.field_meta).tags = "PII"];
}
"#;

const COMMON_PROTO: &str = r#"syntax = "proto3";
package shared.v1;
import "confluent/meta.proto";
message Contact {
  string email = 1 [(confluent.field_meta).tags = "PII"];
  string label = 2;
}
"#;

const PERSON_PROTO: &str = r#"syntax = "proto3";
package app;
import "common.proto";
message Person {
  string id = 1;
  shared.v1.Contact primary = 2;
  repeated .shared.v1.Contact others = 3;
}
"#;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn pii() -> Selection {
    Selection::new(vec!["PII".into()], Vec::new())
}

fn paths(patterns: &[&str]) -> Selection {
    let patterns = patterns
        .iter()
        .map(|p| Pattern::parse(p).unwrap())
        .collect();
    Selection::new(Vec::new(), patterns)
}

fn schema_with(
    text: &str,
    references: &[(&str, &str)],
    selection: &Selection,
) -> Result<Schema, Error> {
    let text = SchemaText {
        schema_type: SchemaType::Protobuf,
        text: text.to_string(),
        references: references
            .iter()
            .map(|(name, text)| Reference {
                name: name.to_string(),
                text: text.to_string(),
            })
            .collect(),
    };
    Schema::parse(&text, selection)
}

fn schema(text: &str, selection: &Selection) -> Schema {
    schema_with(text, &[], selection).unwrap()
}

fn located(schema: &Schema, body: &[u8], message: &[i64]) -> Vec<(String, Vec<u8>)> {
    let located = schema.locate(body, message).unwrap();
    located
        .fields()
        .iter()
        .map(|f| (f.path.clone(), f.content.clone()))
        .collect()
}

fn located_paths(schema: &Schema, body: &[u8], message: &[i64]) -> Vec<String> {
    located(schema, body, message)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Every located field's content prefixed by `enc:`, as the fixtures' `_ENC` records.
fn encrypt(schema: &Schema, body: &[u8], message: &[i64]) -> Vec<u8> {
    let located = schema.locate(body, message).unwrap();
    let contents: Vec<Vec<u8>> = located
        .fields()
        .iter()
        .map(|f| [b"enc:".as_slice(), &f.content].concat())
        .collect();
    located.replace(body, &contents).unwrap()
}

const CUSTOMER_PATHS: [&str; 14] = [
    "/ssn",
    "/address/street",
    "/phones/0/number",
    "/phones/1/number",
    "/attributes/a~1b~0c",
    "/attributes/eye colour",
    "/email",
    "/nickname",
    "/photo",
    "/aliases/0",
    "/aliases/1",
    "/old_addresses/-3/street",
    "/old_addresses/7/street",
    "/referrer/ssn",
];

#[test]
fn text_and_descriptor_locate_the_same_fields() {
    let body = hex(CUSTOMER);
    let from_text = schema(CUSTOMER_PROTO, &pii());
    let from_descriptor = schema(CUSTOMER_DESCRIPTOR, &pii());
    let fields = located(&from_text, &body, &[0]);
    assert_eq!(fields, located(&from_descriptor, &body, &[0]));
    let mut expected: Vec<String> = CUSTOMER_PATHS.iter().map(|p| p.to_string()).collect();
    expected.push("/referrer/referrer/ssn".into());
    assert_eq!(
        fields.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        expected
    );
    let content = |path: &str| fields.iter().find(|(p, _)| p == path).unwrap().1.clone();
    assert_eq!(content("/ssn"), b"123-45-6789");
    assert_eq!(content("/attributes/eye colour"), b"blue");
    assert_eq!(content("/photo"), b"\x89PNG\x00\xff");
    assert_eq!(content("/old_addresses/-3/street"), b"Ockham");
    assert_eq!(content("/referrer/referrer/ssn"), b"000");
    let types = from_text.locate(&body, &[0]).unwrap();
    for field in types.fields() {
        let expected = if field.path == "/photo" {
            FieldType::Bytes
        } else {
            FieldType::String
        };
        assert_eq!(field.field_type, expected, "{}", field.path);
    }
}

#[test]
fn replaced_records_are_what_protobuf_encodes() {
    for text in [CUSTOMER_PROTO, CUSTOMER_DESCRIPTOR] {
        let schema = schema(text, &pii());
        let body = hex(CUSTOMER);
        // Lengths grow past one varint byte: the street's own, the first phone's
        // message's; the unknown fields (top level, inside the address) stay.
        let encrypted = encrypt(&schema, &body, &[0]);
        assert_eq!(encrypted, hex(CUSTOMER_ENC));
        // and back
        let located = schema.locate(&encrypted, &[0]).unwrap();
        let originals: Vec<Vec<u8>> = located
            .fields()
            .iter()
            .map(|f| f.content.strip_prefix(b"enc:").unwrap().to_vec())
            .collect();
        assert_eq!(located.replace(&encrypted, &originals).unwrap(), body);
    }
}

#[test]
fn message_indexes_pick_the_message() {
    for text in [CUSTOMER_PROTO, CUSTOMER_DESCRIPTOR] {
        let schema = schema(text, &pii());
        let order = hex(ORDER);
        assert_eq!(
            located_paths(&schema, &order, &[1]),
            ["/customer/ssn", "/lines/0/note", "/lines/1/note"]
        );
        assert_eq!(encrypt(&schema, &order, &[1]), hex(ORDER_ENC));
        let line = hex(LINE);
        assert_eq!(
            located(&schema, &line, &[1, 0]),
            [("/note".to_string(), b"x".to_vec())]
        );
        assert_eq!(encrypt(&schema, &line, &[1, 0]), hex(LINE_ENC));
        // no indexes is the first message
        assert_eq!(located_paths(&schema, &hex(CUSTOMER), &[]).len(), 15);
        for bad in [&[2][..], &[-1], &[1, 1], &[1, 0, 0]] {
            assert!(
                matches!(schema.locate(&line, bad), Err(Error::Decode(_))),
                "{bad:?}"
            );
        }
    }
}

#[test]
fn nested_indexes_count_map_entries_where_declared() {
    // A descriptor declares Customer's map entries (AttributesEntry, OldAddressesEntry)
    // before Address; text with `map<K, V>` fields does not (Java counts over the text).
    let address = [0x0a, 0x02, b'S', b't'];
    let text = schema(CUSTOMER_PROTO, &pii());
    let descriptor = schema(CUSTOMER_DESCRIPTOR, &pii());
    assert_eq!(located_paths(&text, &address, &[0, 0]), ["/street"]);
    assert_eq!(located_paths(&descriptor, &address, &[0, 2]), ["/street"]);
    assert_eq!(
        located_paths(&descriptor, &address, &[0, 0]),
        Vec::<String>::new()
    );
}

/// `CUSTOMER_PROTO` as Confluent's registry writes it out of its descriptor (what the
/// Java and Python serializers register): map entries as declared messages, types fully
/// qualified, options as text-format messages.
const CUSTOMER_FROM_DESCRIPTOR: &str = r#"syntax = "proto3";
package acme;

import "confluent/meta.proto";
import "google/protobuf/timestamp.proto";

message Customer {
  string name = 1;
  string ssn = 2 [(confluent.field_meta) = {
    tags: [
      "PII"
    ]
  }];
  .acme.Customer.Address address = 3;
  repeated .acme.Customer.Phone phones = 4;
  repeated .acme.Customer.AttributesEntry attributes = 5 [(confluent.field_meta) = {
    tags: [
      "PII",
      "X"
    ]
  }];
  optional string nickname = 8 [(confluent.field_meta) = {
    tags: [
      "PII"
    ]
  }];
  bytes photo = 9 [(confluent.field_meta) = {
    tags: [
      "PII"
    ]
  }];
  .google.protobuf.Timestamp created = 10;
  repeated string aliases = 11 [(confluent.field_meta) = {
    tags: [
      "PII"
    ]
  }];
  int32 age = 12;
  repeated .acme.Customer.OldAddressesEntry old_addresses = 13;
  .acme.Customer referrer = 14;
  .acme.Customer.Status status = 15;

  message AttributesEntry {
    option map_entry = true;
  
    string key = 1;
    string value = 2;
  }
  message OldAddressesEntry {
    option map_entry = true;
  
    int32 key = 1;
    .acme.Customer.Address value = 2;
  }
  message Address {
    string street = 1 [(confluent.field_meta) = {
      tags: [
        "PII"
      ]
    }];
    string city = 2;
  }
  message Phone {
    string number = 1 [(confluent.field_meta) = {
      doc: "a phone",
      tags: [
        "PII"
      ]
    }];
    int32 kind = 2;
  }
  enum Status {
    UNKNOWN = 0;
    ACTIVE = 1;
  }
  oneof contact {
    string email = 6 [(confluent.field_meta) = {
      tags: [
        "PII"
      ]
    }];
    int64 pager = 7;
  }
}
message Order {
  string id = 1;
  .acme.Customer customer = 2;
  repeated .acme.Order.Line lines = 3;

  message Line {
    string note = 1 [(confluent.field_meta) = {
      tags: [
        "PII"
      ]
    }];
    double price = 2;
  }
}
"#;

#[test]
fn registry_text_of_a_descriptor_declares_map_entries() {
    let from_text = schema(CUSTOMER_FROM_DESCRIPTOR, &pii());
    let from_descriptor = schema(CUSTOMER_DESCRIPTOR, &pii());
    let body = hex(CUSTOMER);
    assert_eq!(
        located(&from_text, &body, &[0]),
        located(&from_descriptor, &body, &[0])
    );
    assert_eq!(encrypt(&from_text, &body, &[0]), hex(CUSTOMER_ENC));
    // declared map entries count among the nested messages, as in the descriptor
    let address = [0x0a, 0x02, b'S', b't'];
    assert_eq!(located_paths(&from_text, &address, &[0, 2]), ["/street"]);
    assert_eq!(located_paths(&from_text, &hex(LINE), &[1, 0]), ["/note"]);
}

#[test]
fn unselected_records_are_not_walked() {
    let schema = schema(
        CUSTOMER_PROTO,
        &Selection::new(vec!["PHI".into()], Vec::new()),
    );
    // not even decoded: nothing in the message can be selected
    let located = schema.locate(b"\xff\xff", &[0]).unwrap();
    assert!(located.is_empty());
    assert_eq!(located.replace(b"\xff\xff", &[]).unwrap(), b"\xff\xff");
}

#[test]
fn paths_select_without_tags() {
    let body = hex(CUSTOMER);
    let selection = paths(&[
        "/name",
        "/address/city",
        "/phones/*/number",
        "/old_addresses/*/city",
        "/attributes",
        "/referrer/referrer/ssn",
    ]);
    for text in [CUSTOMER_PROTO, CUSTOMER_DESCRIPTOR] {
        let schema = schema(text, &selection);
        let fields = located(&schema, &body, &[0]);
        let found: Vec<&str> = fields.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            found,
            [
                "/name",
                "/address/city",
                "/phones/0/number",
                "/phones/1/number",
                "/attributes/a~1b~0c",
                "/attributes/eye colour",
                "/old_addresses/-3/city",
                "/old_addresses/7/city",
                "/referrer/referrer/ssn",
            ]
        );
        assert_eq!(fields[0].1, b"Ada Lovelace");
        assert_eq!(fields[6].1, b"Surrey");
    }
    // a configured path and a tag on the same field select it once
    let both = Selection::new(vec!["PII".into()], vec![Pattern::parse("/ssn").unwrap()]);
    let schema = schema(CUSTOMER_PROTO, &both);
    assert_eq!(located_paths(&schema, &body, &[0]).len(), 15);
    // `*` for the elements of a repeated string field
    let schema = schema_with(CUSTOMER_PROTO, &[], &paths(&["/aliases/*"])).unwrap();
    assert_eq!(
        located_paths(&schema, &body, &[0]),
        ["/aliases/0", "/aliases/1"]
    );
}

#[test]
fn selecting_what_is_not_string_or_bytes_is_a_schema_error() {
    let tagged_int = r#"syntax = "proto3";
        message M { int32 age = 1 [(confluent.field_meta).tags = "PII"]; }"#;
    let err = schema_with(tagged_int, &[], &pii()).unwrap_err();
    assert!(
        matches!(&err, Error::Schema(m) if m.contains("`M.age`") && m.contains("int32")),
        "{err}"
    );
    for pattern in [
        "/age",
        "/phones/*/kind",
        "/address",
        "/created",
        "/old_addresses/*",
        "/status",
        "/phones/*",
    ] {
        let err = schema_with(CUSTOMER_PROTO, &[], &paths(&[pattern])).unwrap_err();
        assert!(
            matches!(&err, Error::Schema(m) if m.contains(pattern)),
            "{pattern}: {err}"
        );
    }
    // tags deep in a message reached only through a recursive one are checked too
    let deep = r#"syntax = "proto3";
        message A { B b = 1; }
        message B { A a = 1; C c = 2; }
        message C { map<string, int64> m = 1 [(confluent.field_meta) = { tags: ["PII"] }]; }"#;
    assert!(matches!(schema_with(deep, &[], &pii()), Err(Error::Schema(m)) if m.contains("`C.m`")));
    // a tag nothing selects is not an error
    assert!(schema_with(tagged_int, &[], &Selection::new(vec!["PHI".into()], vec![])).is_ok());
}

#[test]
fn proto2_groups_and_map_keys() {
    for text in [PROTO2_PROTO, PROTO2_DESCRIPTOR] {
        let schema = schema(text, &pii());
        let body = hex(ENVELOPE);
        assert_eq!(
            located(&schema, &body, &[0]),
            [
                ("/item/0/secret", &b"s1"[..]),
                ("/item/1/secret", b"s2"),
                ("/blob", b"\x00\x01"),
                ("/notes/-1", b"minus"),
                ("/notes/5", b"five"),
                ("/flags/true", b"yes"),
                ("/deltas/-2", b"d"),
            ]
            .map(|(p, c)| (p.to_string(), c.to_vec()))
        );
        assert_eq!(encrypt(&schema, &body, &[0]), hex(ENVELOPE_ENC));
    }
}

#[test]
fn references_resolve_in_both_forms() {
    let body = hex(PERSON);
    for (root, common) in [
        (PERSON_PROTO, COMMON_PROTO),
        (PERSON_PROTO, COMMON_DESCRIPTOR),
        (PERSON_DESCRIPTOR, COMMON_PROTO),
        (PERSON_DESCRIPTOR, COMMON_DESCRIPTOR),
    ] {
        let references = [
            ("common.proto", common),
            ("confluent/meta.proto", META_PROTO),
        ];
        let schema = schema_with(root, &references, &pii()).unwrap();
        assert_eq!(
            located_paths(&schema, &body, &[0]),
            ["/primary/email", "/others/0/email"]
        );
        assert_eq!(encrypt(&schema, &body, &[0]), hex(PERSON_ENC));
    }
    let err = schema_with(PERSON_PROTO, &[], &pii()).unwrap_err();
    assert!(
        matches!(&err, Error::Schema(m) if m.contains("shared.v1.Contact")),
        "{err}"
    );
}

#[test]
fn unknown_fields_and_their_order_are_kept() {
    let schema = schema(CUSTOMER_PROTO, &pii());
    // ssn (2) after an unknown group (50) and before name (1), out of number order,
    // then an unknown fixed32 and fixed64
    let mut body = vec![0x93, 0x03, 0x08, 0x01, 0x94, 0x03];
    body.extend_from_slice(&[0x12, 0x01, b'9', 0x0a, 0x01, b'N']);
    body.extend_from_slice(&[0x9d, 0x03, 1, 2, 3, 4, 0x99, 0x03, 1, 2, 3, 4, 5, 6, 7, 8]);
    let out = encrypt(&schema, &body, &[0]);
    let mut expected = body.clone();
    expected.splice(6..9, [0x12, 0x05, b'e', b'n', b'c', b':', b'9']);
    assert_eq!(out, expected);
    // a singular field twice: both occurrences are protected (the first would leak)
    let twice = [0x12, 0x01, b'a', 0x12, 0x01, b'b'];
    assert_eq!(located_paths(&schema, &twice, &[0]), ["/ssn", "/ssn"]);
}

#[test]
fn records_that_do_not_decode_are_errors() {
    let schema = schema(CUSTOMER_PROTO, &pii());
    let body = hex(CUSTOMER);
    // every truncation: an error or fewer fields, never a panic
    for end in 0..body.len() {
        let _ = schema.locate(&body[..end], &[0]);
    }
    let decode = |body: &[u8]| matches!(schema.locate(body, &[0]), Err(Error::Decode(_)));
    assert!(decode(&body[..body.len() - 1]));
    assert!(decode(&[0x12, 0x05, b'a'])); // length beyond the input
    assert!(decode(&[0x12, 0x02, 0xc3, 0x28])); // a string that is not UTF-8
    assert!(decode(&[0x10, 0x01])); // ssn as a varint
    assert!(decode(&[0x0f])); // wire type 7
    assert!(decode(&[0x0c])); // an end-group tag outside a group
    assert!(decode(&[0x93, 0x03])); // a group without its end
    assert!(decode(&[0x00, 0x00])); // field number 0
    assert!(decode(&[0x1a, 0x80])); // a truncated length varint
    let err = schema.locate(&[0x12, 0x02, 0xc3, 0x28], &[0]).unwrap_err();
    assert_eq!(err, Error::Decode("string field `ssn` is not UTF-8".into()));
    // bad UTF-8 in bytes is fine
    assert_eq!(
        located_paths(&schema, &[0x4a, 0x02, 0xc3, 0x28], &[0]),
        ["/photo"]
    );
    // a map key that is not UTF-8; no record data in the reason
    let err = schema
        .locate(&[0x2a, 0x06, 0x0a, 0x01, 0xff, 0x12, 0x01, b'v'], &[0])
        .unwrap_err();
    assert_eq!(
        err,
        Error::Decode("a key of map `attributes` is not UTF-8".into())
    );
}

#[test]
fn nesting_is_bounded() {
    let schema = schema(CUSTOMER_PROTO, &pii());
    // referrer { referrer { ... { ssn } } }, `depth` deep
    let nested = |depth: usize| {
        let mut body = vec![0x12, 0x01, b's'];
        for _ in 0..depth {
            let mut outer = vec![0x72];
            crate::protobuf::codec::put_varint(&mut outer, body.len() as u64);
            outer.extend_from_slice(&body);
            body = outer;
        }
        body
    };
    let fields = located_paths(&schema, &nested(64), &[0]);
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].len(), "/referrer".len() * 64 + "/ssn".len());
    assert!(matches!(schema.locate(&nested(65), &[0]), Err(Error::Decode(m)) if m.contains("64")));
    assert!(matches!(
        schema.locate(&nested(10_000), &[0]),
        Err(Error::Decode(_))
    ));
    // unknown groups nested past the bound
    let groups = [0x93, 0x03].repeat(200);
    assert!(matches!(
        schema.locate(&groups, &[0]),
        Err(Error::Decode(_))
    ));
}

#[test]
fn recursive_schemas_terminate_for_paths_too() {
    let selection = Selection::new(
        vec!["PII".into()],
        vec![
            Pattern::parse("/referrer/*/name").unwrap(),
            Pattern::parse("/*/*/*/*/*").unwrap(),
        ],
    );
    // `/*/*/*/*/*` selects ints at depth five: an error, found without looping
    let err = schema_with(CUSTOMER_PROTO, &[], &selection).unwrap_err();
    assert!(matches!(err, Error::Schema(_)));
    let selection = Selection::new(
        vec!["PII".into()],
        vec![Pattern::parse("/referrer/referrer/name").unwrap()],
    );
    let schema = schema(CUSTOMER_PROTO, &selection);
    let body = [0x72, 0x05, 0x72, 0x03, 0x0a, 0x01, b'n'];
    assert_eq!(
        located_paths(&schema, &body, &[0]),
        ["/referrer/referrer/name"]
    );
}

#[test]
fn proto_text_forms() {
    let text = r#"
        /* block
           comment */
        syntax = 'proto3';
        package a.b;
        import public "confluent/meta.proto";
        option java_package = "x.y";
        option (my.file_opt) = { a: 1, b: [ "c" ] };
        service S { rpc Get (M) returns (M) { option deprecated = true; } }
        extend google.protobuf.FieldOptions { string extra = 50000; }
        enum Top { A = 0; B = 1 [deprecated = true]; }
        message M {
          option (confluent.message_meta) = { tags: "PII" };
          reserved 9, 10 to 12;
          reserved "gone";
          extensions 100 to max;
          .a.b.M.N n = 1;
          N n2 = 2 [json_name = "nTwo", deprecated = true];
          string s1 = 3 [(confluent.field_meta).tags = "PII", (confluent.field_meta).tags = "X"];
          string s2 = 0x4 [(.confluent.field_meta) = < tags: "PII" tags: "Y" >];
          string s3 = 5 [(confluent.field_meta) = { doc: "d" params: [{ key: "k", value: "v" }] tags: "PII" }];
          string s4 = 6 [(confluent.field_meta).tags = 'P' "II"];
          string s5 = 7 [(confluent.field_meta).params = { key: "tags", value: "PII" }];
          Top e = 8;
          oneof o { option (x) = 1; bytes b = 13 [(confluent.field_meta).tags = "PII"]; int32 i = 14; }
          message N { string t = 1 [(confluent.field_meta) = { tags: ["Q", "PII"] }]; }
        }"#;
    let schema = schema_with(text, &[], &pii()).unwrap();
    let mut body = vec![0x0a, 0x03, 0x0a, 0x01, b't', 0x12, 0x03, 0x0a, 0x01, b'u'];
    for (number, content) in [
        (3u8, b'a'),
        (4, b'b'),
        (5, b'c'),
        (6, b'd'),
        (7, b'e'),
        (13, b'f'),
    ] {
        body.extend_from_slice(&[number << 3 | 2, 1, content]);
    }
    assert_eq!(
        located_paths(&schema, &body, &[0]),
        ["/n/t", "/n2/t", "/s1", "/s2", "/s3", "/s4", "/b"]
    );
    for bad in [
        "message M { string s = 1 }",
        "message M { string s = 0; }",
        "message M { map<double, string> m = 1; }",
        "message M { string s = 1 [(confluent.field_meta).tags = ]; }",
        "message M {",
        "message M { string s = 1; } /* open",
        "message M { string s = 1 [default = \"open]; }",
        "syntax = \"proto3\"; message M { Missing m = 1; }",
        "\u{e9}",
    ] {
        assert!(
            matches!(schema_with(bad, &[], &pii()), Err(Error::Schema(_))),
            "{bad}"
        );
    }
}

#[test]
fn implicit_imports_are_opaque() {
    let text = r#"syntax = "proto3";
        import "google/type/money.proto";
        import "confluent/type/decimal.proto";
        import "google/protobuf/struct.proto";
        message M {
          google.type.Money price = 1;
          confluent.type.Decimal amount = 2;
          google.protobuf.Struct extra = 3;
          string n = 4 [(confluent.field_meta).tags = "PII"];
        }"#;
    let selection = Selection::new(
        vec!["PII".into()],
        vec![Pattern::parse("/price/currency_code").unwrap()],
    );
    let schema = schema_with(text, &[], &selection).unwrap();
    // their contents are skipped, never decoded
    let body = [
        0x0a, 0x01, 0xff, 0x12, 0x00, 0x1a, 0x01, 0x80, 0x22, 0x01, b'n',
    ];
    assert_eq!(located_paths(&schema, &body, &[0]), ["/n"]);
    // a tag cannot select one of them
    let tagged = r#"syntax = "proto3";
        message M { google.protobuf.StringValue s = 1 [(confluent.field_meta).tags = "PII"]; }"#;
    assert!(
        matches!(schema_with(tagged, &[], &pii()), Err(Error::Schema(m)) if m.contains("StringValue"))
    );
    // a file with no message, comments alone (base64-looking) or nothing
    for empty in ["// only a comment", "", "syntax = \"proto3\";"] {
        assert!(
            matches!(schema_with(empty, &[], &pii()), Err(Error::Schema(m)) if m.contains("no message")),
            "{empty:?}"
        );
    }
}

#[test]
fn descriptors_that_do_not_decode_are_schema_errors() {
    for bad in ["AAAA", "Ig==", "IgIKAA==", "////"] {
        assert!(
            matches!(schema_with(bad, &[], &pii()), Err(Error::Schema(_))),
            "{bad}"
        );
    }
    // every truncation of a real descriptor: an error or a smaller schema, no panic
    let bytes = super::descriptor::base64_decode(CUSTOMER_DESCRIPTOR).unwrap();
    for end in 0..bytes.len() {
        let _ = super::descriptor::parse(&bytes[..end]);
    }
}

#[test]
fn hostile_records_never_panic() {
    let schema = schema(CUSTOMER_PROTO, &pii());
    let body = hex(CUSTOMER);
    // every single-byte corruption of a real record
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..body.len() {
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut corrupt = body.clone();
            corrupt[i] = seed as u8;
            if let Ok(located) = schema.locate(&corrupt, &[0]) {
                let contents: Vec<Vec<u8>> =
                    located.fields().iter().map(|f| f.content.clone()).collect();
                assert_eq!(located.replace(&corrupt, &contents).unwrap(), corrupt);
            }
        }
    }
}

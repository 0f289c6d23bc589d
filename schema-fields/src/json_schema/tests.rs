use crate::{Error, FieldType, Pattern, Reference, SchemaText, SchemaType, Selection};

fn text(schema: &str, references: &[(&str, &str)]) -> SchemaText {
    SchemaText {
        schema_type: SchemaType::Json,
        text: schema.to_string(),
        references: references
            .iter()
            .map(|(name, text)| Reference {
                name: name.to_string(),
                text: text.to_string(),
            })
            .collect(),
    }
}

fn selection(tags: &[&str], paths: &[&str]) -> Selection {
    Selection::new(
        tags.iter().map(|t| t.to_string()).collect(),
        paths.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
    )
}

fn parse_with(
    schema: &str,
    references: &[(&str, &str)],
    tags: &[&str],
    paths: &[&str],
) -> Result<crate::Schema, Error> {
    crate::Schema::parse(&text(schema, references), &selection(tags, paths))
}

/// A schema selecting tag `PII`.
fn pii(schema: &str) -> crate::Schema {
    parse_with(schema, &[], &["PII"], &[]).unwrap()
}

/// The located fields: each one's path and content.
fn found(schema: &crate::Schema, record: &str) -> Vec<(String, String)> {
    let located = schema.locate(record.as_bytes(), &[]).unwrap();
    located
        .fields()
        .iter()
        .map(|field| {
            assert_eq!(field.field_type, FieldType::String);
            (
                field.path.clone(),
                String::from_utf8(field.content.clone()).unwrap(),
            )
        })
        .collect()
}

fn paths(schema: &crate::Schema, record: &str) -> Vec<String> {
    found(schema, record)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The record with every located field's content replaced by `f` of it.
fn replaced(schema: &crate::Schema, record: &str, f: impl Fn(&str) -> String) -> String {
    let located = schema.locate(record.as_bytes(), &[]).unwrap();
    let contents: Vec<Vec<u8>> = located
        .fields()
        .iter()
        .map(|field| f(std::str::from_utf8(&field.content).unwrap()).into_bytes())
        .collect();
    String::from_utf8(located.replace(record.as_bytes(), &contents).unwrap()).unwrap()
}

fn decode_error(schema: &crate::Schema, record: &[u8]) -> String {
    match schema.locate(record, &[]) {
        Err(Error::Decode(reason)) => reason,
        other => panic!(
            "{} gave {other:?}, not a decode error",
            String::from_utf8_lossy(record)
        ),
    }
}

fn schema_error(result: Result<crate::Schema, Error>) -> String {
    match result {
        Err(Error::Schema(reason)) => reason,
        other => panic!("{other:?}, not a schema error"),
    }
}

const CUSTOMER: &str = r##"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "customer": {
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "ssn": {"type": "string", "confluent:tags": ["PII"]},
        "address": {
          "type": "object",
          "properties": {"street": {"type": "string", "confluent:tags": ["PII"]}}
        }
      }
    },
    "phones": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "kind": {"type": "string"},
          "number": {"type": "string", "confluent:tags": ["PII", "PHONE"]}
        }
      }
    },
    "attributes": {
      "type": "object",
      "additionalProperties": {"type": "string", "confluent:tags": ["PII"]}
    },
    "note": {"type": ["string", "null"], "confluent:tags": ["PII"]}
  }
}"##;

#[test]
fn tagged_fields_in_nested_objects_arrays_and_maps() {
    let schema = pii(CUSTOMER);
    let record = r#"{"id": 7, "customer": {"name": "Ann", "ssn": "123-45-6789",
        "address": {"street": "1 Main St"}},
        "phones": [{"kind": "home", "number": "555-1"}, {"kind": "work"}, {"number": "555-3"}],
        "attributes": {"eye colour": "green", "a/b~c": "x"},
        "note": null}"#;
    assert_eq!(
        found(&schema, record),
        [
            ("/customer/ssn", "123-45-6789"),
            ("/customer/address/street", "1 Main St"),
            ("/phones/0/number", "555-1"),
            ("/phones/2/number", "555-3"),
            ("/attributes/eye colour", "green"),
            ("/attributes/a~1b~0c", "x"),
        ]
        .map(|(p, c)| (p.to_string(), c.to_string()))
    );
    // Another tag, and none.
    let phone = parse_with(CUSTOMER, &[], &["PHONE"], &[]).unwrap();
    assert_eq!(
        paths(&phone, record),
        ["/phones/0/number", "/phones/2/number"]
    );
    let none = parse_with(CUSTOMER, &[], &["PHI"], &[]).unwrap();
    assert!(found(&none, record).is_empty());
}

#[test]
fn maps_of_arrays_of_objects() {
    let schema = pii(
        r#"{"type": "object", "properties": {"byRegion": {"type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "object",
            "properties": {"email": {"type": "string", "confluent:tags": ["PII"]}}}}}}}"#,
    );
    assert_eq!(
        paths(
            &schema,
            r#"{"byRegion": {"eu": [{"email": "a"}, {"email": "b"}], "us": [], "apac": [{}, {"email": "c"}]}}"#
        ),
        [
            "/byRegion/eu/0/email",
            "/byRegion/eu/1/email",
            "/byRegion/apac/1/email"
        ]
    );
    let by_path = parse_with(
        r#"{"type": "object", "properties": {"byRegion": {"type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "object",
                "properties": {"email": {"type": "string"}}}}}}}"#,
        &[],
        &[],
        &["/byRegion/*/*/email"],
    )
    .unwrap();
    assert_eq!(
        paths(&by_path, r#"{"byRegion": {"eu": [{"email": "a"}]}}"#),
        ["/byRegion/eu/0/email"]
    );
}

#[test]
fn configured_paths_select_by_schema_names() {
    let record = r#"{"customer": {"name": "Ann", "ssn": "1"}, "phones": [{"kind": "k", "number": "2"}],
        "attributes": {"x": "3"}}"#;
    let by_path = |paths: &[&str]| parse_with(CUSTOMER, &[], &[], paths).unwrap();
    assert_eq!(
        paths(&by_path(&["/customer/name"]), record),
        ["/customer/name"]
    );
    assert_eq!(
        paths(&by_path(&["/phones/*/kind"]), record),
        ["/phones/0/kind"]
    );
    assert_eq!(
        paths(&by_path(&["/attributes/*"]), record),
        ["/attributes/x"]
    );
    // A path the schema does not have selects nothing, in any record.
    assert!(found(&by_path(&["/customer/email"]), record).is_empty());
    // `*` selects every field of an object: here an object with properties among them
    // (`/attributes`, an object of strings, is a map: each value is selected).
    let reason = schema_error(parse_with(CUSTOMER, &[], &[], &["/*"]));
    assert!(reason.contains("field /customer is selected"), "{reason}");
    assert!(reason.contains("object"), "{reason}");
    assert_eq!(paths(&by_path(&["/attributes"]), record), ["/attributes/x"]);
    let reason = schema_error(parse_with(CUSTOMER, &[], &[], &["/id"]));
    assert!(
        reason.contains("field /id is selected (at a configured path)"),
        "{reason}"
    );
    assert!(reason.contains("integer"), "{reason}");
}

#[test]
fn nullable_strings_are_absent_when_null() {
    let schema = pii(CUSTOMER);
    assert!(found(&schema, r#"{"note": null}"#).is_empty());
    assert_eq!(paths(&schema, r#"{"note": "hi"}"#), ["/note"]);
    // Confluent's generator writes optional fields as a oneOf with null.
    let schema = pii(r#"{"type": "object", "properties": {"ssn": {
        "oneOf": [{"type": "null", "title": "Not included"}, {"type": "string"}],
        "confluent:tags": ["PII"]}}}"#);
    assert!(found(&schema, r#"{"ssn": null}"#).is_empty());
    assert_eq!(paths(&schema, r#"{"ssn": "1"}"#), ["/ssn"]);
    // Absent altogether, or the container absent or null.
    assert!(found(&pii(CUSTOMER), r#"{"customer": null, "phones": null}"#).is_empty());
    assert!(found(&pii(CUSTOMER), "{}").is_empty());
}

#[test]
fn defs_refs_and_recursion() {
    let schema = r##"{
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "$ref": "#/$defs/Person",
      "$defs": {
        "Person": {
          "type": "object",
          "properties": {
            "name": {"$ref": "#/$defs/Name"},
            "age": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Person"}},
            "partner": {"$ref": "#"}
          }
        },
        "Name": {"type": "string", "confluent:tags": ["PII"]}
      }
    }"##;
    let record = r#"{"name": "a", "age": 1, "children": [{"name": "b", "children": [{"name": "c"}]}],
        "partner": {"name": "d", "partner": {"name": "e"}}}"#;
    assert_eq!(
        paths(&pii(schema), record),
        [
            "/name",
            "/children/0/name",
            "/children/0/children/0/name",
            "/partner/name",
            "/partner/partner/name"
        ]
    );
    // Configured paths follow the recursion as deep as they go, and no deeper.
    let by_path = parse_with(schema, &[], &[], &["/children/*/name", "/partner/*"]).unwrap_err();
    assert!(
        matches!(by_path, Error::Schema(_)),
        "/partner/age is an integer"
    );
    let by_path = parse_with(schema, &[], &[], &["/children/*/name"]).unwrap();
    assert_eq!(paths(&by_path, record), ["/children/0/name"]);
    // A record as deep as the scanner allows, under a recursive schema.
    let deep = format!(
        "{}{{\"name\": \"x\"}}{}",
        r#"{"children": ["#.repeat(63),
        "]}".repeat(63)
    );
    assert_eq!(paths(&pii(schema), &deep).len(), 1);
    // A definition used twice is selected under both names.
    let twice = pii(
        r##"{"type": "object", "definitions": {"S": {"type": "string", "confluent:tags": ["PII"]}},
        "properties": {"a": {"$ref": "#/definitions/S"}, "b": {"$ref": "#/definitions/S"}}}"##,
    );
    assert_eq!(paths(&twice, r#"{"a": "1", "b": "2"}"#), ["/a", "/b"]);
}

#[test]
fn refs_to_other_documents_by_name_id_and_anchor() {
    let customer = r##"{"$id": "https://example.com/schemas/customer.json", "type": "object",
        "properties": {"ssn": {"$ref": "#/definitions/Ssn"}, "email": {"$ref": "#email"}},
        "definitions": {"Ssn": {"type": "string", "confluent:tags": ["PII"]},
                        "Email": {"$anchor": "email", "type": "string", "confluent:tags": ["PII"]}}}"##;
    let order = r#"{"type": "object", "properties": {
        "customer": {"$ref": "customer.json"},
        "ssn": {"$ref": "customer.json#/definitions/Ssn"}}}"#;
    let schema = parse_with(order, &[("customer.json", customer)], &["PII"], &[]).unwrap();
    assert_eq!(
        paths(
            &schema,
            r#"{"customer": {"ssn": "1", "email": "e"}, "ssn": "2"}"#
        ),
        ["/customer/ssn", "/customer/email", "/ssn"]
    );
    // Relative to the referencing schema's `$id`, and by the referenced one's `$id`.
    let order = r#"{"$id": "https://example.com/schemas/order.json", "type": "object",
        "properties": {"customer": {"$ref": "customer.json"}}}"#;
    let schema = parse_with(
        order,
        &[("https://example.com/schemas/customer.json", customer)],
        &["PII"],
        &[],
    )
    .unwrap();
    assert_eq!(
        paths(&schema, r#"{"customer": {"ssn": "1"}}"#),
        ["/customer/ssn"]
    );
    let schema = parse_with(order, &[("other-name", customer)], &["PII"], &[]).unwrap();
    assert_eq!(
        paths(&schema, r#"{"customer": {"ssn": "1"}}"#),
        ["/customer/ssn"]
    );
    // A resource with its own `$id` inside a document: its `#/...` references are its own.
    let nested = pii(r##"{"type": "object",
        "properties": {"a": {"$ref": "https://example.com/c.json"}, "b": {"$ref": "#/$defs/c"},
                       "d": {"$ref": "#draft7"}},
        "$defs": {"c": {"$id": "https://example.com/c.json", "type": "object",
                        "properties": {"s": {"$ref": "#/$defs/S"}},
                        "$defs": {"S": {"type": "string", "confluent:tags": ["PII"]}}},
                  "S": {"type": "integer"},
                  "old": {"$id": "#draft7", "type": "string", "confluent:tags": ["PII"]}}}"##);
    assert_eq!(
        paths(&nested, r#"{"a": {"s": "1"}, "b": {"s": "2"}, "d": "3"}"#),
        ["/a/s", "/b/s", "/d"]
    );
    // A reference that is not there is a schema error, whatever is selected.
    for missing in [
        r##"{"properties": {"a": {"$ref": "nowhere.json"}}}"##,
        r##"{"properties": {"a": {"$ref": "#/$defs/Nothing"}}}"##,
        r##"{"properties": {"a": {"$ref": "#nothing"}}}"##,
    ] {
        let reason = schema_error(parse_with(missing, &[], &[], &[]));
        assert!(reason.contains("#/properties/a"), "{reason}");
    }
}

#[test]
fn every_branch_of_a_combination_selects() {
    let schema = pii(r#"{"type": "object", "properties": {"payment": {"oneOf": [
        {"type": "object", "properties": {"iban": {"type": "string", "confluent:tags": ["PII"]}}},
        {"type": "object", "properties": {"card": {"type": "string", "confluent:tags": ["PII"]},
                                          "brand": {"type": "string"}}}
      ]}},
      "anyOf": [{"properties": {"x": {"type": "string", "confluent:tags": ["PII"]}}}],
      "allOf": [{"properties": {"y": {"confluent:tags": ["PII"]}}},
                {"properties": {"y": {"type": "string"}}}],
      "if": {"properties": {"kind": {"const": "p"}}},
      "then": {"properties": {"z": {"type": "string", "confluent:tags": ["PII"]}}}}"#);
    assert_eq!(
        paths(
            &schema,
            r#"{"payment": {"card": "4111", "brand": "v", "iban": "DE89"}, "x": "1", "y": "2", "z": "3"}"#
        ),
        ["/payment/card", "/payment/iban", "/x", "/y", "/z"]
    );
    // Tagged in one branch and a number in another: the field is selected whichever
    // branch a record matches, and a number cannot be protected.
    let reason = schema_error(parse_with(
        r#"{"oneOf": [{"properties": {"id": {"type": "string", "confluent:tags": ["PII"]}}},
                      {"properties": {"id": {"type": "integer"}}}]}"#,
        &[],
        &["PII"],
        &[],
    ));
    assert!(reason.contains("field /id"), "{reason}");
}

#[test]
fn duplicate_and_escaped_member_names() {
    let schema = pii(CUSTOMER);
    let record = r#"{"customer": {"ssn": "1", "\u0073sn": "2", "ss\u006e": "3", "ssn": null, "s\/sn": "x"},
        "attributes": {"\ud83d\ude00": "4", "a\"b": "5"}}"#;
    assert_eq!(
        found(&schema, record),
        [
            ("/customer/ssn", "1"),
            ("/customer/ssn", "2"),
            ("/customer/ssn", "3"),
            ("/attributes/\u{1f600}", "4"),
            ("/attributes/a\"b", "5"),
        ]
        .map(|(p, c)| (p.to_string(), c.to_string()))
    );
    // Every duplicate of a member on the way is walked too.
    assert_eq!(
        found(
            &schema,
            r#"{"customer": {"ssn": "1"}, "phones": [], "customer": {"ssn": "2"}}"#
        ),
        [("/customer/ssn", "1"), ("/customer/ssn", "2")]
            .map(|(p, c)| (p.to_string(), c.to_string()))
    );
    // Escaped contents are decoded.
    assert_eq!(
        found(
            &schema,
            r#"{"customer": {"ssn": "a\"b\\c\/d\u00e9\n\ud83d\ude00"}}"#
        )[0]
        .1,
        "a\"b\\c/d\u{e9}\n\u{1f600}"
    );
}

#[test]
fn every_other_byte_is_kept() {
    let schema = pii(CUSTOMER);
    let record =
        "{ \"id\" : 1.50e+3,\n\t\"customer\":{\"name\":\"A\\u006en\" , \"ssn\" :\"123\" },\
                  \"extra\": [true, false, null, -0, {\"ssn\": \"not selected\"}],\r\n\
                  \"phones\" : [ {\"number\":\"9\\\"9\"} ] } \n";
    let out = replaced(&schema, record, |content| format!("<{content}>"));
    assert_eq!(
        out,
        "{ \"id\" : 1.50e+3,\n\t\"customer\":{\"name\":\"A\\u006en\" , \"ssn\" :\"<123>\" },\
         \"extra\": [true, false, null, -0, {\"ssn\": \"not selected\"}],\r\n\
         \"phones\" : [ {\"number\":\"<9\\\"9>\"} ] } \n"
    );
}

#[test]
fn replacements_read_back() {
    let schema = pii(CUSTOMER);
    let record = r#"{"customer": {"ssn": "123-45-6789", "name": "Ann"}, "attributes": {"k": "v\u00e9"}, "note": "n"}"#;
    let awkward =
        |content: &str| format!("vault:v1:{content}\"\\/\u{1}\u{1f}\n\t\u{7f}\u{2028}\u{e9}");
    let protected = replaced(&schema, record, awkward);
    assert!(serde_json::from_str::<serde_json::Value>(&protected).is_ok());
    assert_eq!(
        found(&schema, &protected)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>(),
        ["123-45-6789", "v\u{e9}", "n"].map(awkward)
    );
    let opened = replaced(&schema, &protected, |content| {
        content
            .strip_prefix("vault:v1:")
            .unwrap()
            .strip_suffix("\"\\/\u{1}\u{1f}\n\t\u{7f}\u{2028}\u{e9}")
            .unwrap()
            .to_string()
    });
    // Back to the same contents; the escape `\u00e9` is now written as the character.
    assert_eq!(
        opened,
        r#"{"customer": {"ssn": "123-45-6789", "name": "Ann"}, "attributes": {"k": "vé"}, "note": "n"}"#
    );
}

#[test]
fn replace_checks_its_inputs() {
    let schema = pii(CUSTOMER);
    let record = br#"{"note": "x"}"#;
    let located = schema.locate(record, &[]).unwrap();
    assert!(matches!(
        located.replace(record, &[]),
        Err(Error::Replace(_))
    ));
    assert!(matches!(
        located.replace(record, &[vec![0xff]]),
        Err(Error::Replace(_))
    ));
    assert!(matches!(
        located.replace(br#"{"note":"x"}"#, &[b"y".to_vec()]),
        Err(Error::Replace(_))
    ));
    assert_eq!(
        located.replace(record, &[b"y".to_vec()]).unwrap(),
        br#"{"note": "y"}"#
    );
}

#[test]
fn selected_fields_must_be_strings_in_the_schema() {
    for (property, kind) in [
        (
            r#"{"type": "integer", "confluent:tags": ["PII"]}"#,
            "integer",
        ),
        (r#"{"type": "object", "confluent:tags": ["PII"]}"#, "object"),
        (
            r#"{"type": ["string", "number"], "confluent:tags": ["PII"]}"#,
            "number",
        ),
        (
            r#"{"type": "boolean", "confluent:tags": ["PII"]}"#,
            "boolean",
        ),
        (r#"{"confluent:tags": ["PII"]}"#, "no type"),
        (
            r#"{"enum": ["a", "b"], "confluent:tags": ["PII"]}"#,
            "no type",
        ),
    ] {
        let schema = format!(
            r#"{{"type": "object", "properties": {{"card": {{"properties": {{"pin": {property}}}}}}}}}"#
        );
        let reason = schema_error(parse_with(&schema, &[], &["PII"], &[]));
        assert!(
            reason.contains("field /card/pin is selected (tagged PII)"),
            "{reason}"
        );
        assert!(reason.contains(kind), "{reason}");
        assert!(
            reason.contains("#/properties/card/properties/pin"),
            "{reason}"
        );
        // Not selected: no error.
        assert!(parse_with(&schema, &[], &["PHI"], &[]).is_ok());
    }
}

#[test]
fn a_selected_field_holding_anything_but_a_string_is_refused() {
    let schema = pii(CUSTOMER);
    for (record, kind) in [
        (r#"{"customer": {"ssn": 123456789}}"#, "a number"),
        (
            r#"{"customer": {"ssn": {"v": "123-45-6789"}}}"#,
            "an object",
        ),
        (r#"{"customer": {"ssn": ["123-45-6789"]}}"#, "an array"),
        (r#"{"customer": {"ssn": true}}"#, "a boolean"),
        (r#"{"phones": [{"number": 5551}]}"#, "a number"),
    ] {
        let reason = decode_error(&schema, record.as_bytes());
        assert!(reason.contains(kind), "{reason}");
        assert!(reason.contains("is selected for protection"), "{reason}");
        assert!(
            !reason.contains("123") && !reason.contains("5551"),
            "{reason}"
        );
    }
    let reason = decode_error(&schema, br#"{"customer": {"ssn": 1}}"#);
    assert_eq!(
        reason,
        "field /customer/ssn is selected for protection but holds a number, not a string"
    );
    // A map's key never appears: the schema path does.
    let reason = decode_error(&schema, br#"{"attributes": {"alice@example.com": 1}}"#);
    assert!(reason.contains("/attributes/*"), "{reason}");
    assert!(!reason.contains("alice"), "{reason}");
}

#[test]
fn records_must_be_strict_json() {
    let schema = pii(CUSTOMER);
    // Nothing selected or not, the record is checked the same.
    let nothing = parse_with(CUSTOMER, &[], &[], &[]).unwrap();
    for bad in [
        &b""[..],
        b"   ",
        b"\xef\xbb\xbf{}",
        b"{} x",
        b"{}{}",
        b"{\"a\":1,}",
        b"[1,]",
        b"{'a':1}",
        b"{a:1}",
        b"{\"a\" 1}",
        b"nul",
        b"01",
        b"1.",
        b"-",
        b"NaN",
        b"{\"note\": \"\\ud800\"}",
        b"{\"note\": \"\\udc00\"}",
        b"{\"note\": \"\\ud800\\u0041\"}",
        b"{\"note\": \"\\x\"}",
        b"{\"note\": \"tab\there\"}",
        b"{\"note\": \"\xc3\x28\"}",
        b"{\"customer\": {\"ssn\": \"open",
        b"{\"customer\": {\"\\ud800\": \"1\"}}",
        b"{\"customer\": {\"ssn\": 1x}}",
    ] {
        decode_error(&schema, bad);
        decode_error(&nothing, bad);
    }
    let reason = decode_error(&schema, br#"{"secret-name": "secret value" x}"#);
    assert_eq!(
        reason,
        "not JSON: expected ',' or '}' after a member at byte 31"
    );
}

#[test]
fn nesting_is_limited() {
    let schema = pii(CUSTOMER);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(schema.locate(nested(128).as_bytes(), &[]).is_ok());
    let reason = decode_error(&schema, nested(129).as_bytes());
    assert!(reason.contains("deeper than 128"), "{reason}");
    // Far deeper than any stack would take, and unbalanced: still just refused.
    decode_error(&schema, "[{\"a\":".repeat(1_000_000).as_bytes());
    decode_error(&schema, "{\"customer\":".repeat(1_000_000).as_bytes());
}

#[test]
fn pattern_properties_are_map_values() {
    let schema = pii(
        r#"{"type": "object", "properties": {"meta": {"type": "object",
        "properties": {"version": {"type": "integer"}},
        "patternProperties": {"^x-": {"type": "string", "confluent:tags": ["PII"]},
                              "_id$": {"type": "integer"}},
        "additionalProperties": {"type": "string", "confluent:tags": ["PII"]}}}}"#,
    );
    assert_eq!(
        paths(
            &schema,
            r#"{"meta": {"version": 2, "x-a": "1", "user_id": 5, "other": "2", "x-b_id": "3"}}"#
        ),
        ["/meta/x-a", "/meta/other", "/meta/x-b_id"]
    );
    // x-b_id matches both patterns (no valid record has it: it would be a string and an
    // integer): selected by the first, so it must be a string.
    let reason = decode_error(&schema, br#"{"meta": {"x-b_id": 3}}"#);
    assert!(reason.contains("/meta/*"), "{reason}");
    // A pattern this walker cannot match is refused when it matters...
    let reason = schema_error(parse_with(
        r#"{"patternProperties": {"^(a|b)$": {"type": "string", "confluent:tags": ["PII"]}}}"#,
        &[],
        &["PII"],
        &[],
    ));
    assert!(reason.contains("^(a|b)$"), "{reason}");
    // ...and ignored when nothing selected can be among the members.
    let schema = pii(
        r#"{"properties": {"ssn": {"type": "string", "confluent:tags": ["PII"]}},
        "patternProperties": {"^(a|b)$": {"type": "integer"}}}"#,
    );
    assert_eq!(paths(&schema, r#"{"a": 1, "ssn": "2"}"#), ["/ssn"]);
}

#[test]
fn tuples_and_contains() {
    let schema = pii(r#"{"type": "object", "properties": {
        "tuple": {"type": "array", "prefixItems": [true, {"type": "string", "confluent:tags": ["PII"]}],
                  "items": {"type": "string", "confluent:tags": ["PII"]}},
        "old": {"type": "array", "items": [false, {"type": "string", "confluent:tags": ["PII"]}, {"type": "integer"}],
                "additionalItems": false},
        "some": {"type": "array", "contains": {"type": "string", "confluent:tags": ["PII"]}}}}"#);
    assert_eq!(
        paths(
            &schema,
            r#"{"tuple": [1, "a", "b", "c"], "old": [null, "d", 2], "some": ["e", "f"]}"#
        ),
        ["/tuple/1", "/tuple/2", "/tuple/3", "/old/1", "/some/0", "/some/1"]
    );
}

#[test]
fn a_tagged_root_is_the_whole_record() {
    let schema = pii(r#"{"type": "string", "confluent:tags": ["PII"]}"#);
    assert_eq!(
        found(&schema, r#" "abc" "#),
        [(String::new(), "abc".to_string())]
    );
    assert_eq!(replaced(&schema, r#" "abc" "#, |_| "x".into()), r#" "x" "#);
    let reason = decode_error(&schema, b"12");
    assert!(reason.contains("the whole record"), "{reason}");
}

#[test]
fn dynamic_and_recursive_refs_apply_every_target() {
    let schema = pii(r##"{
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "$dynamicAnchor": "node",
      "type": "object",
      "properties": {"secret": {"type": "string", "confluent:tags": ["PII"]},
                     "next": {"$dynamicRef": "#node"}}
    }"##);
    assert_eq!(
        paths(&schema, r#"{"secret": "1", "next": {"secret": "2"}}"#),
        ["/secret", "/next/secret"]
    );
    let schema = pii(r##"{
      "$schema": "https://json-schema.org/draft/2019-09/schema",
      "$recursiveAnchor": true,
      "type": "object",
      "properties": {"secret": {"type": "string", "confluent:tags": ["PII"]},
                     "next": {"$recursiveRef": "#"}}
    }"##);
    assert_eq!(
        paths(&schema, r#"{"next": {"next": {"secret": "3"}}}"#),
        ["/next/next/secret"]
    );
}

#[test]
fn schemas_that_cannot_be_used() {
    for (schema, says) in [
        ("{", "not JSON"),
        ("[]", "not a schema"),
        (
            r#"{"properties": {"a": 5}}"#,
            "#/properties/a is not a schema",
        ),
        (r#"{"type": "text"}"#, "not a JSON Schema type"),
        (r#"{"confluent:tags": "PII"}"#, "not an array"),
        (r#"{"properties": []}"#, "`properties` is not an object"),
        (r#"{"allOf": {}}"#, "`allOf` is not an array"),
        (r#"{"$ref": 1}"#, "`$ref` is not a string"),
    ] {
        let reason = schema_error(parse_with(schema, &[], &["PII"], &[]));
        assert!(reason.contains(says), "{schema}: {reason}");
    }
    let reason = schema_error(parse_with("{}", &[("bad.json", "{")], &["PII"], &[]));
    assert!(reason.contains("\"bad.json\""), "{reason}");
}

#[test]
fn nothing_selected_still_checks_the_record() {
    let schema = parse_with(CUSTOMER, &[], &[], &[]).unwrap();
    assert!(found(&schema, r#"{"customer": {"ssn": 1}}"#).is_empty());
    decode_error(&schema, b"{");
}

#[test]
fn hostile_schemas_stay_bounded() {
    // Every definition refers to the next two: sets of definitions do not multiply.
    let mut defs = Vec::new();
    for i in 0..200 {
        defs.push(format!(
            r##""d{i}": {{"type": "object", "properties": {{"a": {{"$ref": "#/$defs/d{}"}},
                "b": {{"$ref": "#/$defs/d{}"}}, "s": {{"type": "string", "confluent:tags": ["PII"]}}}}}}"##,
            (i + 1) % 200,
            (i * 7 + 3) % 200
        ));
    }
    let schema = format!(
        r##"{{"$ref": "#/$defs/d0", "$defs": {{{}}}}}"##,
        defs.join(",")
    );
    let schema = pii(&schema);
    assert_eq!(
        paths(&schema, r#"{"a": {"b": {"s": "x"}}, "s": "y"}"#),
        ["/a/b/s", "/s"]
    );
    // A cycle of applicators alone.
    let cycle = pii(
        r##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}],
        "properties": {"s": {"type": "string", "confluent:tags": ["PII"]}}}}, "$ref": "#/$defs/a"}"##,
    );
    assert_eq!(paths(&cycle, r#"{"s": "x"}"#), ["/s"]);
}

#[test]
fn tagged_arrays_and_maps_of_strings_select_each_element() {
    let schema = r##"{"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
        "attrs": {"type": "object", "additionalProperties": {"type": "string"},
                  "confluent:tags": ["PII"]},
        "notes": {"type": ["array", "null"], "items": {"type": ["string", "null"]},
                  "confluent:tags": ["PII"]},
        "aliases": {"$ref": "#/$defs/Strings", "confluent:tags": ["PII"]},
        "n": {"type": "integer"}},
      "$defs": {"Strings": {"type": "array", "items": {"$ref": "#/$defs/S"}},
                "S": {"type": "string"}}}"##;
    let record = r#"{"tags": ["a", "b"], "attrs": {"k/1": "v", "k2": "w"},
        "notes": ["n0", null, "n2"], "aliases": ["x"], "n": 1}"#;
    let expected = [
        ("/tags/0", "a"),
        ("/tags/1", "b"),
        ("/attrs/k~11", "v"),
        ("/attrs/k2", "w"),
        ("/notes/0", "n0"),
        ("/notes/2", "n2"),
        ("/aliases/0", "x"),
    ]
    .map(|(p, c)| (p.to_string(), c.to_string()));
    let tagged = pii(schema);
    assert_eq!(found(&tagged, record), expected);
    // Configured paths to the fields select the same, and so do paths to the elements.
    for by_path in [
        ["/tags", "/attrs", "/notes", "/aliases"],
        ["/tags/*", "/attrs/*", "/notes/*", "/aliases/*"],
    ] {
        let schema = parse_with(schema, &[], &[], &by_path).unwrap();
        assert_eq!(found(&schema, record), expected);
    }
    assert_eq!(
        replaced(&tagged, record, |c| format!("vault:v1:{c}")),
        r#"{"tags": ["vault:v1:a", "vault:v1:b"], "attrs": {"k/1": "vault:v1:v", "k2": "vault:v1:w"},
        "notes": ["vault:v1:n0", null, "vault:v1:n2"], "aliases": ["vault:v1:x"], "n": 1}"#
    );
    // Null, empty or absent: nothing to protect.
    assert!(found(&tagged, r#"{"tags": [], "attrs": {}, "notes": null}"#).is_empty());
    // Anything but an array (an object) of strings, or null, is refused, never passed on.
    for (record, holds) in [
        (
            r#"{"tags": "a"}"#,
            "field /tags is selected for protection but holds a string, not an array of strings",
        ),
        (
            r#"{"tags": {"a": "b"}}"#,
            "field /tags is selected for protection but holds an object, not an array of strings",
        ),
        (
            r#"{"attrs": ["v"]}"#,
            "field /attrs is selected for protection but holds an array, not an object of strings",
        ),
        (
            r#"{"tags": ["a", 1]}"#,
            "field /tags/* is selected for protection but holds a number, not a string",
        ),
        (
            r#"{"attrs": {"k": {"v": "w"}}}"#,
            "field /attrs/* is selected for protection but holds an object, not a string",
        ),
    ] {
        assert_eq!(decode_error(&tagged, record.as_bytes()), holds);
    }
    decode_error(&tagged, br#"{"tags": "a}"#);
}

#[test]
fn arrays_and_maps_of_anything_but_strings_are_refused() {
    let property =
        |schema: &str| format!(r#"{{"type": "object", "properties": {{"x": {schema}}}}}"#);
    for (schema, says) in [
        (
            r#"{"type": "array", "items": {"type": "integer"}, "confluent:tags": ["PII"]}"#,
            "field /x/* is selected (tagged PII) but its schema type is integer (#/properties/x/items)",
        ),
        (
            r#"{"type": "array", "items": {"type": "object", "properties": {"s": {"type": "string"}}}, "confluent:tags": ["PII"]}"#,
            "field /x/* is selected (tagged PII) but its schema type is object",
        ),
        (
            r#"{"type": "array", "items": {"type": "array", "items": {"type": "string"}}, "confluent:tags": ["PII"]}"#,
            "field /x/* is selected (tagged PII) but its schema type is array",
        ),
        (
            r#"{"type": "array", "confluent:tags": ["PII"]}"#,
            "field /x is selected (tagged PII) but is an array whose schema (#/properties/x) has no `items` schema",
        ),
        (
            r#"{"type": "array", "prefixItems": [{"type": "string"}], "confluent:tags": ["PII"]}"#,
            "has no `items` schema",
        ),
        (
            r#"{"type": "array", "items": {"type": "string"}, "contains": {"type": "integer"}, "confluent:tags": ["PII"]}"#,
            "field /x/* is selected (tagged PII) but its schema type is [\"integer\", \"string\"] (#/properties/x/contains)",
        ),
        (
            r#"{"type": "object", "confluent:tags": ["PII"]}"#,
            "field /x is selected (tagged PII) but is an object whose schema (#/properties/x) has no `additionalProperties` schema",
        ),
        (
            r#"{"type": "object", "additionalProperties": {"type": "string"}, "patternProperties": {"^n": {"type": "number"}}, "confluent:tags": ["PII"]}"#,
            "field /x/* is selected (tagged PII) but its schema type is [\"number\", \"string\"]",
        ),
        // An object with properties is a record, not a map.
        (
            r#"{"type": "object", "properties": {"s": {"type": "string"}}, "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]}"#,
            "field /x is selected (tagged PII) but its schema type is object",
        ),
        (
            r#"{"type": ["array", "string"], "items": {"type": "string"}, "confluent:tags": ["PII"]}"#,
            "its schema type is [\"array\", \"string\"]",
        ),
    ] {
        let reason = schema_error(parse_with(&property(schema), &[], &["PII"], &[]));
        assert!(reason.contains(says), "{schema}: {reason}");
        assert!(parse_with(&property(schema), &[], &["PHI"], &[]).is_ok());
    }
    // Not every element need be described for a path to one of them to select it.
    let tuple = property(r#"{"type": "array", "prefixItems": [{"type": "string"}]}"#);
    let schema = parse_with(&tuple, &[], &[], &["/x/*"]).unwrap();
    assert_eq!(paths(&schema, r#"{"x": ["a"]}"#), ["/x/0"]);
}

#[test]
fn strings_a_ciphertext_may_not_satisfy_are_refused() {
    let property =
        |schema: &str| format!(r#"{{"type": "object", "properties": {{"x": {schema}}}}}"#);
    for (keywords, keyword) in [
        (r#""pattern": "^[0-9]{3}-[0-9]{2}-[0-9]{4}$""#, "pattern"),
        (r#""maxLength": 11"#, "maxLength"),
        (r#""format": "email""#, "format"),
        (r#""enum": ["a", "b"]"#, "enum"),
        (r#""const": "a""#, "const"),
        (r#""contentEncoding": "base64""#, "contentEncoding"),
        (
            r#""contentMediaType": "application/json""#,
            "contentMediaType",
        ),
    ] {
        let schema = property(&format!(
            r#"{{"type": "string", {keywords}, "confluent:tags": ["PII"]}}"#
        ));
        let reason = schema_error(parse_with(&schema, &[], &["PII"], &[]));
        assert_eq!(
            reason,
            format!(
                "field /x is selected (tagged PII) but its schema has `{keyword}` \
                 (#/properties/x): a ciphertext may not satisfy it, so consumers that validate \
                 records would refuse the record; remove the tag or `{keyword}`"
            )
        );
        let reason = schema_error(parse_with(&schema, &[], &[], &["/x"]));
        assert!(
            reason.contains(&format!("remove the path or `{keyword}`")),
            "{reason}"
        );
        assert!(parse_with(&schema, &[], &["PHI"], &[]).is_ok());
    }
    // Wherever the keyword is among the schemas of the field: a `$ref`, a branch, the
    // elements of a tagged array.
    for schema in [
        r##"{"$ref": "#/$defs/Email", "confluent:tags": ["PII"]}"##,
        r##"{"oneOf": [{"type": "null"}, {"$ref": "#/$defs/Email"}], "confluent:tags": ["PII"]}"##,
        r##"{"type": "array", "items": {"$ref": "#/$defs/Email"}, "confluent:tags": ["PII"]}"##,
        r##"{"type": "object", "additionalProperties": {"$ref": "#/$defs/Email"}, "confluent:tags": ["PII"]}"##,
    ] {
        let schema = format!(
            r##"{{"type": "object", "properties": {{"x": {schema}}},
                "$defs": {{"Email": {{"type": "string", "format": "email"}}}}}}"##
        );
        let reason = schema_error(parse_with(&schema, &[], &["PII"], &[]));
        assert!(reason.contains("`format` (#/$defs/Email)"), "{reason}");
    }
    // A keyword of a branch that allows no string does not matter.
    let schema = pii(&property(
        r#"{"oneOf": [{"type": "null", "enum": [null]}, {"type": "string"}], "confluent:tags": ["PII"]}"#,
    ));
    assert_eq!(paths(&schema, r#"{"x": "a"}"#), ["/x"]);
    // `minLength` is kept: a ciphertext is longer than its plaintext.
    let schema = pii(&property(
        r#"{"type": "string", "minLength": 1, "confluent:tags": ["PII"]}"#,
    ));
    assert_eq!(paths(&schema, r#"{"x": "a"}"#), ["/x"]);
}

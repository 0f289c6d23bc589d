// Package schemafields opens the fields that kafka-transit's encrypt-schema-fields
// policy protected in Avro, Protobuf and JSON Schema records (docs/schema-fields.md).
//
// Such a record keeps Confluent's wire format and its schema id: each field its schema
// tags (confluent:tags, default PII) or that is listed by path holds Vault transit's
// ciphertext of its content, as text for a string field and as that text's UTF-8 bytes
// for a bytes field (a selected array or map of strings or bytes: each element or
// value). A selected field of another type, or one a ciphertext would make invalid (an
// Avro logical type; a JSON Schema pattern, maxLength, format, enum, const,
// contentEncoding or contentMediaType), is refused with ErrSchema. A Reader gets the writer schema from a Confluent-compatible Schema
// Registry (once per id), decodes the record with the ecosystem's library (Avro:
// github.com/hamba/avro/v2; Protobuf: google.golang.org/protobuf's dynamicpb, with the
// schema's .proto text compiled by github.com/bufbuild/protocompile or its base64
// FileDescriptorProto; JSON Schema: encoding/json), finds the protected fields, decrypts
// them all in one transit/decrypt batch request, and returns the record decoded and
// encoded again under the same schema id:
//
//	reader, err := schemafields.New(schemafields.Config{
//		Vault:    kafkatransit.Config{Address: "https://vault.example:8200", Token: os.Getenv("VAULT_TOKEN")},
//		Registry: schemafields.RegistryConfig{URL: "http://registry:8081"},
//		Options:  schemafields.Options{Key: "customers"}, // Tags default to ["PII"]
//	})
//	opened, err := reader.Open(ctx, message.Value)
//	// opened.Value: the decoded record; opened.Wire: Confluent wire format, fields in clear
//	results := reader.OpenAll(ctx, records) // a poll's worth: one Vault request
//
// Records written in format 3 (the policy's bind, record_keys or stream options: they
// carry the kafka-transit.protection header, docs/protected-records.md) are read with
// their topic, key and headers, so that each field is checked against what it is bound
// to (the stream, the record key as received, the field's located path) and an
// encrypted record key is restored (Options.RecordKeysKey):
//
//	opened, err := reader.ReadRecord(ctx, schemafields.Record{Topic: m.Topic, Key: m.Key,
//		Value: m.Value, Headers: headers}) // opened.Key: the key restored
//
// A field moved to another place, record key or stream fails with ErrAuthentication;
// Options.RequireBinding refuses records bound to less, or not bound at all (ErrUnbound).
//
// A protected field that does not hold a vault:v ciphertext, or that Vault does not
// decrypt, fails its record (ErrNotCiphertext, kafkatransit.ErrVault): it is never
// returned as data. Errors name schema ids and schema paths, never record data.
package schemafields

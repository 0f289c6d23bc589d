package schemafields

import (
	"bytes"
	"context"
	"encoding/base64"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

const protoCustomer = `syntax = "proto3";
package kafkatransit.test;

import "confluent/meta.proto";
import "google/protobuf/timestamp.proto";

message Customer {
  message Address {
    string street = 1 [(confluent.field_meta).tags = "PII"];
    string city = 2;
  }
  message Phone {
    string kind = 1;
    string number = 2 [(confluent.field_meta) = {tags: ["contact", "PII"]}];
  }
  int64 id = 1;
  string name = 2 [(confluent.field_meta).tags = "PII"];
  optional string email = 3 [(confluent.field_meta).tags = "PII"];
  Address address = 4;
  repeated Phone phones = 5;
  bytes photo = 6 [(confluent.field_meta).tags = "PII"];
  map<string, string> attributes = 7 [(confluent.field_meta).tags = "PII"];
  map<int32, Address> previous = 8;
  repeated string aliases = 9 [(confluent.field_meta).tags = "PII"];
  oneof contact {
    string phone = 10 [(confluent.field_meta).tags = "PII"];
    string handle = 11;
  }
  int32 loyalty = 12;
  string notes = 13;
  google.protobuf.Timestamp since = 14;
}

message Other {
  message Inner {
    string secret = 1 [(confluent.field_meta).tags = "PII"];
  }
  string secret = 1 [(confluent.field_meta).tags = "PII"];
  Inner inner = 2;
}
`

// compileProto compiles .proto text as a test's own descriptors (meta.proto from the
// built-in text).
func compileProto(t *testing.T, text string) protoreflect.FileDescriptor {
	t.Helper()
	compiler := protocompile.Compiler{Resolver: protocompile.WithStandardImports(protocompile.ResolverFunc(
		func(path string) (protocompile.SearchResult, error) {
			if path == "customer.proto" {
				return protocompile.SearchResult{Source: strings.NewReader(text)}, nil
			}
			if meta, ok := builtinProtos[path]; ok {
				return protocompile.SearchResult{Source: strings.NewReader(meta)}, nil
			}
			return protocompile.SearchResult{}, errNotExist
		}))}
	files, err := compiler.Compile(context.Background(), "customer.proto")
	if err != nil {
		t.Fatal(err)
	}
	return files[0]
}

// protoCustomerRecord is a Customer, each protected field through t and b.
func protoCustomerRecord(md protoreflect.MessageDescriptor, t protectText, b protectBytes, i int) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md)
	f := func(name string) protoreflect.FieldDescriptor { return md.Fields().ByName(protoreflect.Name(name)) }
	set := func(msg *dynamicpb.Message, name string, v any) {
		msg.Set(msg.Descriptor().Fields().ByName(protoreflect.Name(name)), protoreflect.ValueOf(v))
	}
	set(m, "id", int64(7000000000+i))
	set(m, "name", t("/name", "Ada Lovelace"))
	if i%2 == 0 {
		set(m, "email", t("/email", "ada@example.com"))
		set(m, "phone", t("/phone", "+44 20 0000 0000"))
		set(m, "photo", b("/photo", []byte{0, 1, 0xff}))
	} else {
		set(m, "handle", "@ada")
		set(m, "email", t("/email", "")) // present and empty: protected too
	}
	address := m.Mutable(f("address")).Message()
	address.Set(address.Descriptor().Fields().ByName("street"), protoreflect.ValueOfString(t("/address/street", "Main St 1")))
	address.Set(address.Descriptor().Fields().ByName("city"), protoreflect.ValueOfString("Springfield"))
	phones := m.Mutable(f("phones")).List()
	for n := 0; n < i%3; n++ {
		phone := phones.NewElement()
		phone.Message().Set(phone.Message().Descriptor().Fields().ByName("kind"), protoreflect.ValueOfString("mobile"))
		phone.Message().Set(phone.Message().Descriptor().Fields().ByName("number"),
			protoreflect.ValueOfString(t("/phones/"+string(rune('0'+n))+"/number", "+41 44 000 000"+string(rune('0'+n)))))
		phones.Append(phone)
	}
	attributes := m.Mutable(f("attributes")).Map()
	attributes.Set(protoreflect.ValueOfString("tier").MapKey(), protoreflect.ValueOfString(t("/attributes/tier", "gold")))
	attributes.Set(protoreflect.ValueOfString("a/b").MapKey(), protoreflect.ValueOfString(t("/attributes/a~1b", "x")))
	previous := m.Mutable(f("previous")).Map()
	for _, key := range []int32{-7, 2024} {
		entry := previous.NewValue()
		entry.Message().Set(entry.Message().Descriptor().Fields().ByName("street"),
			protoreflect.ValueOfString(t("/previous/"+map[int32]string{-7: "-7", 2024: "2024"}[key]+"/street", "Old St")))
		previous.Set(protoreflect.ValueOfInt32(key).MapKey(), entry)
	}
	aliases := m.Mutable(f("aliases")).List()
	aliases.Append(protoreflect.ValueOfString(t("/aliases/0", "Countess")))
	aliases.Append(protoreflect.ValueOfString(t("/aliases/1", "Enchantress of Numbers")))
	set(m, "loyalty", int32(-3))
	set(m, "notes", "untagged")
	return m
}

func marshalDeterministic(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func descriptorText(fd protoreflect.FileDescriptor) string {
	raw, _ := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
	return base64.StdEncoding.EncodeToString(raw)
}

// pythonDescriptorText is the descriptor as Python's descriptor_pb2 gives it for a
// message built at run time: no JSON names.
func pythonDescriptorText(fd protoreflect.FileDescriptor) string {
	fdp := protodesc.ToFileDescriptorProto(fd)
	var clear func([]*descriptorpb.DescriptorProto)
	clear = func(messages []*descriptorpb.DescriptorProto) {
		for _, m := range messages {
			for _, f := range m.Field {
				f.JsonName = nil
			}
			clear(m.NestedType)
		}
	}
	clear(fdp.MessageType)
	raw, _ := proto.Marshal(fdp)
	return base64.StdEncoding.EncodeToString(raw)
}

func TestProtobufFieldsOpen(t *testing.T) {
	file := compileProto(t, protoCustomer)
	customer := file.Messages().ByName("Customer")
	meta := file.Imports().Get(0).FileDescriptor
	forms := map[string]*RegisteredSchema{
		"text, meta.proto referenced": {Type: Protobuf, Text: protoCustomer,
			References: []Reference{{Name: "confluent/meta.proto", Text: builtinProtos["confluent/meta.proto"]}}},
		"text, meta.proto built in": {Type: Protobuf, Text: protoCustomer},
		"base64 descriptors": {Type: Protobuf, Text: descriptorText(file),
			References: []Reference{{Name: "confluent/meta.proto", Text: descriptorText(meta)}}},
		"base64 descriptor without JSON names, meta.proto built in": {Type: Protobuf,
			Text: pythonDescriptorText(file)},
	}
	for name, schema := range forms {
		for _, deterministic := range []bool{false, true} {
			vault := newFakeTransit()
			p := protector{vault: vault, key: "customers", deterministic: deterministic}
			reader := newReader(t, vault, registryOf(map[uint32]*RegisteredSchema{3: schema}),
				Options{Deterministic: deterministic})
			var records []Record
			var wants [][]byte
			for i := 0; i < 4; i++ {
				protected := protoCustomerRecord(customer, p.text, p.bytes, i)
				records = append(records, Record{Value: frame(3, append(indexesBytes(0), marshalDeterministic(t, protected)...))})
				wants = append(wants, marshalDeterministic(t, protoCustomerRecord(customer, asIs, bytesAsIs, i)))
			}
			results := reader.OpenAll(context.Background(), records)
			for i, result := range results {
				if result.Err != nil {
					t.Fatalf("%s, deterministic %v, record %d: %v", name, deterministic, i, result.Err)
				}
				opened := result.Opened
				if !bytes.Equal(opened.Wire[:6], records[i].Value[:6]) || !bytes.Equal(opened.Wire[6:], wants[i]) {
					t.Errorf("%s, record %d: the wire bytes are not the plaintext record's", name, i)
				}
				if !bytes.Equal(marshalDeterministic(t, opened.Value.(proto.Message)), wants[i]) {
					t.Errorf("%s, record %d: the opened value is not the plaintext record", name, i)
				}
				if !reflect.DeepEqual(opened.MessageIndexes, []int{0}) || opened.SchemaType != Protobuf {
					t.Errorf("%s: %v %s", name, opened.MessageIndexes, opened.SchemaType)
				}
			}
			paths := append([]string(nil), results[2].Opened.Fields...)
			sort.Strings(paths)
			want := []string{"/address/street", "/aliases/0", "/aliases/1", "/attributes/a~1b", "/attributes/tier",
				"/email", "/name", "/phone", "/phones/0/number", "/phones/1/number", "/photo", "/previous/-7/street",
				"/previous/2024/street"}
			if !reflect.DeepEqual(paths, want) {
				t.Errorf("%s: located paths %q", name, paths)
			}
			if reader.VaultCalls() != 1 {
				t.Errorf("%s: %d Vault calls", name, reader.VaultCalls())
			}
		}
	}
}

// Message indexes: a record of the second message, and of a message nested in it.
func TestProtobufMessageIndexes(t *testing.T) {
	file := compileProto(t, protoCustomer)
	other := file.Messages().ByName("Other")
	inner := other.Messages().ByName("Inner")
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers", deterministic: true}
	for _, schema := range []*RegisteredSchema{{Type: Protobuf, Text: protoCustomer},
		{Type: Protobuf, Text: descriptorText(file)}} {
		reader := newReader(t, vault, registryOf(map[uint32]*RegisteredSchema{4: schema}), Options{Deterministic: true})
		m := dynamicpb.NewMessage(other)
		m.Set(other.Fields().ByName("secret"), protoreflect.ValueOfString(p.text("/secret", "outer")))
		in := m.Mutable(other.Fields().ByName("inner")).Message()
		in.Set(inner.Fields().ByName("secret"), protoreflect.ValueOfString(p.text("/inner/secret", "inner")))
		value := frame(4, append(indexesBytes(1), marshalDeterministic(t, m)...))
		opened, err := reader.Open(context.Background(), value)
		if err != nil {
			t.Fatal(err)
		}
		got := opened.Value.(protoreflect.ProtoMessage).ProtoReflect()
		if got.Descriptor().FullName() != "kafkatransit.test.Other" ||
			got.Get(got.Descriptor().Fields().ByName("secret")).String() != "outer" ||
			!reflect.DeepEqual(opened.MessageIndexes, []int{1}) || !bytes.Equal(opened.Wire[:6], value[:6]) {
			t.Errorf("Other: %v %v", got, opened.MessageIndexes)
		}

		n := dynamicpb.NewMessage(inner)
		n.Set(inner.Fields().ByName("secret"), protoreflect.ValueOfString(p.text("/secret", "nested")))
		value = frame(4, append(indexesBytes(1, 0), marshalDeterministic(t, n)...))
		opened, err = reader.Open(context.Background(), value)
		if err != nil {
			t.Fatal(err)
		}
		got = opened.Value.(protoreflect.ProtoMessage).ProtoReflect()
		if got.Descriptor().FullName() != "kafkatransit.test.Other.Inner" || !bytes.Equal(opened.Wire[:8], value[:8]) ||
			got.Get(got.Descriptor().Fields().ByName("secret")).String() != "nested" {
			t.Errorf("Other.Inner: %v", got)
		}
		_, err = reader.Open(context.Background(), frame(4, append(indexesBytes(5), 0)))
		mustErr(t, "no such message", err, ErrFormat)
		// Customer's nested messages: Address, Phone, then (a descriptor's) map entries.
		_, err = reader.Open(context.Background(), frame(4, indexesBytes(0, 2)))
		if schema.Text == protoCustomer {
			mustErr(t, ".proto text: no third nested message", err, ErrFormat)
		} else if err != nil {
			t.Errorf("a descriptor's third nested message (AttributesEntry): %v", err)
		}
	}
}

func TestProtobufFailures(t *testing.T) {
	file := compileProto(t, protoCustomer)
	customer := file.Messages().ByName("Customer")
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers"}
	registry := registryOf(map[uint32]*RegisteredSchema{
		3: {Type: Protobuf, Text: protoCustomer},
		5: {Type: Protobuf, Text: `syntax = "proto3"; import "confluent/meta.proto";
			message R { message C { int32 age = 1 [(confluent.field_meta).tags = "PII"]; } C c = 1; }`},
		6: {Type: Protobuf, Text: `syntax = "proto3"; message R { strin x = 1; }`},
		7: {Type: Protobuf, Text: `syntax = "proto3"; import "other.proto"; message R { string x = 1; }`},
	})
	reader := newReader(t, vault, registry, Options{})
	ctx := context.Background()
	good := append(indexesBytes(0), marshalDeterministic(t, protoCustomerRecord(customer, p.text, p.bytes, 2))...)
	if _, err := reader.Open(ctx, frame(3, good)); err != nil {
		t.Fatal(err)
	}
	clear := append(indexesBytes(0), marshalDeterministic(t, protoCustomerRecord(customer, asIs, bytesAsIs, 2))...)
	mustErr(t, "fields in clear", second(reader.Open(ctx, frame(3, clear))), ErrNotCiphertext)
	mustErr(t, "truncated", second(reader.Open(ctx, frame(3, good[:len(good)-2]))), ErrDecode)
	mustErr(t, "no message indexes", second(reader.Open(ctx, frame(3, nil))), ErrFormat)
	_, err := reader.Open(ctx, frame(5, []byte{0}))
	mustErr(t, "a tagged int", err, ErrSchema)
	if !strings.Contains(err.Error(), "field `R.C.age` is tagged PII but holds int32") {
		t.Errorf("reason: %v", err)
	}
	mustErr(t, "a schema that does not compile", second(reader.Open(ctx, frame(6, []byte{0}))), ErrSchema)
	mustErr(t, "a missing import", second(reader.Open(ctx, frame(7, []byte{0}))), ErrSchema)

	// Paths: a repeated message by path is refused, its elements' fields are not.
	byPath := newReader(t, vault, registry, Options{Tags: []string{}, Fields: []string{"/phones/*"}})
	mustErr(t, "a path to messages", second(byPath.Open(ctx, frame(3, good))), ErrSchema)
	byPath = newReader(t, vault, registry, Options{Tags: []string{}, Fields: []string{"/notes", "/address/*"}})
	m := protoCustomerRecord(customer, asIs, bytesAsIs, 1)
	m.Set(customer.Fields().ByName("notes"), protoreflect.ValueOfString(p.text("/notes", "n")))
	address := m.Mutable(customer.Fields().ByName("address")).Message()
	for _, f := range []string{"street", "city"} {
		fd := address.Descriptor().Fields().ByName(protoreflect.Name(f))
		address.Set(fd, protoreflect.ValueOfString(p.text("/address/"+f, address.Get(fd).String())))
	}
	opened, err := byPath.Open(ctx, frame(3, append(indexesBytes(0), marshalDeterministic(t, m)...)))
	if err != nil {
		t.Fatal(err)
	}
	got := opened.Value.(protoreflect.ProtoMessage).ProtoReflect()
	if notes := got.Get(got.Descriptor().Fields().ByName("notes")).String(); notes != "n" {
		t.Errorf("notes: %q", notes)
	}
	sort.Strings(opened.Fields)
	if !reflect.DeepEqual(opened.Fields, []string{"/address/city", "/address/street", "/notes"}) {
		t.Errorf("%q", opened.Fields)
	}
}

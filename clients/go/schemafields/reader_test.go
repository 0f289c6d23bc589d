package schemafields

import (
	"context"
	"sync"
	"testing"
)

// One reader, many goroutines, three schema types: the schema cache and the parsed
// schemas are shared.
func TestConcurrentReads(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers"}
	file := compileProto(t, protoCustomer)
	registry := registryOf(map[uint32]*RegisteredSchema{7: {Type: Avro, Text: avroCustomer},
		11: {Type: JSON, Text: jsonCustomer}, 3: {Type: Protobuf, Text: protoCustomer}})
	reader := newReader(t, vault, registry, Options{})
	values := [][]byte{
		frame(7, avroEncode(t, avroCustomer, avroRecord0(p.text, p.bytes))),
		frame(11, []byte(jsonRecordText(p.text, 0))),
		frame(3, append(indexesBytes(0),
			marshalDeterministic(t, protoCustomerRecord(file.Messages().ByName("Customer"), p.text, p.bytes, 2))...)),
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := reader.Open(context.Background(), values[(g+i)%len(values)]); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestOptions(t *testing.T) {
	vault, registry := newFakeTransit(), registryOf(nil)
	for name, options := range map[string]Options{
		"no key":                    {},
		"a key with a slash":        {Key: "../sys"},
		"nothing selected":          {Key: "k", Tags: []string{}},
		"deterministic and context": {Key: "k", Deterministic: true, Context: "c"},
		"a bad path":                {Key: "k", Fields: []string{"ssn"}},
		"a bad escape":              {Key: "k", Fields: []string{"/a~2"}},
	} {
		if _, err := NewReader(vault, registry, options); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ContextFromRecordKey: the record key is each field's context; a record without a key
// is refused.
func TestContextFromRecordKey(t *testing.T) {
	vault := newFakeTransit()
	reader := newReader(t, vault, registryOf(avroRegistry), Options{ContextFromRecordKey: true})
	key := []byte("7000000001")
	p := protector{vault: vault, key: "customers", context: key}
	value := frame(7, avroEncode(t, avroCustomer, avroRecord1(p.text, p.bytes)))
	if _, err := reader.OpenRecord(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
	mustErr(t, "another key", second(reader.OpenRecord(context.Background(), []byte("7000000002"), value)), ErrVault)
	mustErr(t, "no key", second(reader.Open(context.Background(), value)), ErrConfig)
	fixed := newReader(t, vault, registryOf(avroRegistry), Options{Context: "tenant-a"})
	p.context = []byte("tenant-a")
	if _, err := fixed.Open(context.Background(), frame(7, avroEncode(t, avroCustomer, avroRecord1(p.text, p.bytes)))); err != nil {
		t.Fatal(err)
	}
}

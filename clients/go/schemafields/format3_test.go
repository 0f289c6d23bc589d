package schemafields

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// Format 3 (docs/protected-records.md) for schema'd records: every field's ciphertext is
// bound, through Vault's associated data, to the flags, the stream, the record key as on
// the sink and the field's located path. The fake Vault is AES-GCM with that associated
// data, so any other binding fails authentication as Vault does.

const f3Topic = "customers.protected"

var (
	f3Key         = []byte("7000000001")
	f3Registry    = map[uint32]*RegisteredSchema{7: {Type: Avro, Text: avroCustomer}, 11: {Type: JSON, Text: jsonCustomer}, 3: {Type: Protobuf, Text: protoCustomer}}
	f3Options     = Options{Fields: []string{"/attributes/*"}}
	policyHeaders = []kafkatransit.Header{{Key: "kafka-transit.policy", Value: []byte("encrypt-schema-fields")},
		{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
)

// f3Customer is one customer in one format: its value protected as p says, and a check
// that an opened record is the plaintext one.
type f3Customer struct {
	format string
	value  []byte
	same   func(t *testing.T, opened *Opened) bool
}

func f3Customers(t *testing.T, p protector) []f3Customer {
	t.Helper()
	customer := compileProto(t, protoCustomer).Messages().ByName("Customer")
	avroWant := avroDecode(t, avroCustomer, avroEncode(t, avroCustomer, avroRecord0(asIs, bytesAsIs)))
	protoWant := marshalDeterministic(t, protoCustomerRecord(customer, asIs, bytesAsIs, 2))
	return []f3Customer{
		{"avro", frame(7, avroEncode(t, avroCustomer, avroRecord0(p.text, p.bytes))),
			func(t *testing.T, opened *Opened) bool { return reflect.DeepEqual(opened.Value, avroWant) }},
		{"json", frame(11, []byte(jsonRecordText(p.text, 0))),
			func(t *testing.T, opened *Opened) bool { return string(opened.Wire[5:]) == jsonRecordText(asIs, 0) }},
		{"protobuf", frame(3, append(indexesBytes(0),
			marshalDeterministic(t, protoCustomerRecord(customer, p.text, p.bytes, 2))...)),
			func(t *testing.T, opened *Opened) bool {
				return bytes.Equal(marshalDeterministic(t, opened.Value.(proto.Message)), protoWant)
			}},
	}
}

func protection(flags kafkatransit.Flags) kafkatransit.Header {
	return kafkatransit.Header{Key: kafkatransit.ProtectionHeader, Value: flags.HeaderValue()}
}

// withProtection is the headers a protecting runner writes: its own and the protection header.
func withProtection(flags kafkatransit.Flags) []kafkatransit.Header {
	return append([]kafkatransit.Header{protection(flags)}, policyHeaders...)
}

func boundProtector(vault *fakeTransit, flags kafkatransit.Flags, recordKey []byte) protector {
	return protector{vault: vault, key: "customers", bound: true, flags: flags, stream: f3Topic, recordKey: recordKey}
}

// Bound to the stream, the key or both: each format opens, each field asked of Vault with
// its binding as associated data, the protection header dropped from the headers.
func TestFormat3Opens(t *testing.T) {
	for _, flags := range []kafkatransit.Flags{kafkatransit.FlagStream, kafkatransit.FlagKey,
		kafkatransit.FlagStream | kafkatransit.FlagKey} {
		vault := newFakeTransit()
		reader := newReader(t, vault, registryOf(f3Registry), f3Options)
		for _, c := range f3Customers(t, boundProtector(vault, flags, f3Key)) {
			before := len(vault.requests)
			opened, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: f3Key, Value: c.value,
				Headers: withProtection(flags)})
			if err != nil {
				t.Fatalf("flags %02x, %s: %v", byte(flags), c.format, err)
			}
			if !c.same(t, opened) {
				t.Errorf("flags %02x, %s: opened another record", byte(flags), c.format)
			}
			if !bytes.Equal(opened.Key, f3Key) || !reflect.DeepEqual(opened.Headers, policyHeaders) {
				t.Errorf("flags %02x, %s: key %q, headers %v", byte(flags), c.format, opened.Key, opened.Headers)
			}
			if len(vault.requests) != before+1 {
				t.Fatalf("%s: %d Vault requests", c.format, len(vault.requests)-before)
			}
			items := vault.requests[before]
			if len(items) != len(opened.Fields) || len(items) < 5 {
				t.Fatalf("%s: %d items for %d fields", c.format, len(items), len(opened.Fields))
			}
			for k, path := range opened.Fields {
				want := kafkatransit.Binding(flags, f3Topic, f3Key, &path)
				if !bytes.Equal(items[k].AssociatedData, want) || items[k].Context != nil {
					t.Errorf("%s, field %s: associated data %q, want %q", c.format, path, items[k].AssociatedData, want)
				}
			}
		}
	}
}

// A field's ciphertext moved to another place in the record, a record moved to another
// key or stream, or its protection header changed: refused, never returned.
func TestFormat3MovedFieldsFail(t *testing.T) {
	flags := kafkatransit.FlagStream | kafkatransit.FlagKey
	vault := newFakeTransit()
	reader := newReader(t, vault, registryOf(f3Registry), f3Options)
	swapped := boundProtector(vault, flags, f3Key)
	// What swapping the two phone numbers' ciphertexts gives.
	swapped.moved = func(path string) string {
		switch path {
		case "/phones/0/number":
			return "/phones/1/number"
		case "/phones/1/number":
			return "/phones/0/number"
		}
		return path
	}
	good := f3Customers(t, boundProtector(vault, flags, f3Key))
	for i, moved := range f3Customers(t, swapped) {
		format, value := good[i].format, good[i].value
		cases := map[string]Record{
			"a field moved to another path": {Topic: f3Topic, Key: f3Key, Value: moved.value, Headers: withProtection(flags)},
			"another record key":            {Topic: f3Topic, Key: []byte("7000000002"), Value: value, Headers: withProtection(flags)},
			"a null record key":             {Topic: f3Topic, Value: value, Headers: withProtection(flags)},
			"another stream":                {Topic: "customers.elsewhere", Key: f3Key, Value: value, Headers: withProtection(flags)},
			"the flags changed":             {Topic: f3Topic, Key: f3Key, Value: value, Headers: withProtection(kafkatransit.FlagStream)},
		}
		for name, record := range cases {
			opened, err := reader.ReadRecord(context.Background(), record)
			if !errors.Is(err, ErrAuthentication) || opened != nil {
				t.Errorf("%s, %s: %v", format, name, err)
			} else if bytes.Contains([]byte(err.Error()), []byte("Ada")) {
				t.Errorf("%s, %s: the error holds record data: %v", format, name, err)
			}
		}
		// The protection header stripped: read as format 2, without associated data, which
		// Vault refuses.
		opened, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: f3Key, Value: value,
			Headers: policyHeaders})
		if !errors.Is(err, ErrVault) || opened != nil {
			t.Errorf("%s, the header stripped: %v", format, err)
		}
		// Read from a mirror of the topic: Options.Stream names the stream it is bound to.
		mirror := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields, Stream: f3Topic})
		if _, err := mirror.ReadRecord(context.Background(), Record{Topic: "src." + f3Topic, Key: f3Key, Value: value,
			Headers: withProtection(flags)}); err != nil {
			t.Errorf("%s, through a mirror: %v", format, err)
		}
	}
	// Bound to the stream only: the key is not checked.
	p := boundProtector(vault, kafkatransit.FlagStream, f3Key)
	for _, c := range f3Customers(t, p) {
		if _, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: []byte("another"),
			Value: c.value, Headers: withProtection(kafkatransit.FlagStream)}); err != nil {
			t.Errorf("%s, bound to the stream only: %v", c.format, err)
		}
	}
}

// RequireBinding refuses records without the protection header (format 2, tombstones
// included) and records bound to less, before asking Vault anything.
func TestFormat3RequireBinding(t *testing.T) {
	vault := newFakeTransit()
	both := []string{"stream", "key"}
	reader := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields, RequireBinding: both})
	format2 := f3Customers(t, protector{vault: vault, key: "customers"})
	streamOnly := f3Customers(t, boundProtector(vault, kafkatransit.FlagStream, f3Key))
	for i, c := range format2 {
		for name, record := range map[string]Record{
			"format 2":                 {Topic: f3Topic, Key: f3Key, Value: c.value, Headers: policyHeaders},
			"format 2 without headers": {Value: c.value},
			"a format 2 tombstone":     {Topic: f3Topic, Key: f3Key},
			"bound to the stream only": {Topic: f3Topic, Key: f3Key, Value: streamOnly[i].value,
				Headers: withProtection(kafkatransit.FlagStream)},
		} {
			opened, err := reader.ReadRecord(context.Background(), record)
			if !errors.Is(err, ErrUnbound) || opened != nil {
				t.Errorf("%s, %s: %v", c.format, name, err)
			}
		}
	}
	if len(vault.requests) != 0 {
		t.Errorf("%d Vault requests for records refused unbound", len(vault.requests))
	}
	// Requiring the stream alone takes the record bound to its stream.
	streamReader := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields,
		RequireBinding: []string{"stream"}})
	for _, c := range streamOnly {
		opened, err := streamReader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: f3Key, Value: c.value,
			Headers: withProtection(kafkatransit.FlagStream)})
		if err != nil || !c.same(t, opened) {
			t.Errorf("%s: %v", c.format, err)
		}
	}
	// Without RequireBinding a format 2 record opens as it always did: no associated data.
	plain := newReader(t, vault, registryOf(f3Registry), f3Options)
	before := len(vault.requests)
	for _, c := range format2 {
		opened, err := plain.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: f3Key, Value: c.value,
			Headers: policyHeaders})
		if err != nil || !c.same(t, opened) || !bytes.Equal(opened.Key, f3Key) {
			t.Errorf("%s, format 2: %v", c.format, err)
		}
	}
	for _, items := range vault.requests[before:] {
		for _, item := range items {
			if item.AssociatedData != nil {
				t.Fatal("associated data sent for a format 2 record")
			}
		}
	}
	if opened, err := plain.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: f3Key}); opened != nil || err != nil {
		t.Errorf("a format 2 tombstone: %v %v", opened, err)
	}
}

// Flags a schema'd record never has (sealed headers, padding, compression), unknown
// flags, another format, a malformed or repeated header: refused before Vault is asked.
func TestFormat3FlagsRefused(t *testing.T) {
	vault := newFakeTransit()
	reader := newReader(t, vault, registryOf(f3Registry), f3Options)
	value := f3Customers(t, boundProtector(vault, kafkatransit.FlagStream|kafkatransit.FlagKey, f3Key))[0].value
	headers := map[string][]kafkatransit.Header{"two protection headers": {protection(3), protection(3)}}
	for _, text := range []string{"3;07", "3;0b", "3;13", "3;23", "3;33", "3;c3", "3;0f", "2;03", "3;3", "3;003", "3;zz", ""} {
		headers[text] = []kafkatransit.Header{{Key: kafkatransit.ProtectionHeader, Value: []byte(text)}}
	}
	for name, hs := range headers {
		for _, record := range []Record{{Topic: f3Topic, Key: f3Key, Value: value, Headers: hs},
			{Topic: f3Topic, Key: f3Key, Headers: hs}} {
			opened, err := reader.ReadRecord(context.Background(), record)
			if !errors.Is(err, ErrFlags) || opened != nil {
				t.Errorf("%q (tombstone %v): %v", name, record.Value == nil, err)
			}
		}
	}
	if len(vault.requests) != 0 {
		t.Errorf("%d Vault requests for refused flags", len(vault.requests))
	}
}

// record_keys = "encrypt": the key on the sink is Vault's convergent ciphertext of the
// source key under record_keys_key with the stream as context; the fields are bound to
// that key; the reader restores the source key, the batch's keys in one more request.
func TestFormat3EncryptedRecordKeys(t *testing.T) {
	flags := kafkatransit.FlagStream | kafkatransit.FlagKey | kafkatransit.FlagKeysEncrypted
	vault := newFakeTransit()
	sinkKey := []byte(vault.encrypt("customer-ids", f3Key, []byte(f3Topic)))
	reader := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields,
		RecordKeysKey: "customer-ids", RequireBinding: []string{"stream", "key"}})
	customers := f3Customers(t, boundProtector(vault, flags, sinkKey))
	var records []Record
	for _, c := range customers {
		records = append(records, Record{Topic: f3Topic, Key: sinkKey, Value: c.value, Headers: withProtection(flags)})
	}
	// A tombstone keeps its protected key and the protection header: compaction deletes by it.
	records = append(records, Record{Topic: f3Topic, Key: sinkKey, Headers: withProtection(flags)})
	results := reader.OpenAll(context.Background(), records)
	for i, c := range customers {
		if results[i].Err != nil {
			t.Fatalf("%s: %v", c.format, results[i].Err)
		}
		if opened := results[i].Opened; !c.same(t, opened) || !bytes.Equal(opened.Key, f3Key) {
			t.Errorf("%s: key %q", c.format, opened.Key)
		}
	}
	tombstone := results[len(customers)]
	if tombstone.Err != nil || tombstone.Opened == nil || tombstone.Opened.Wire != nil || tombstone.Opened.Value != nil ||
		!bytes.Equal(tombstone.Opened.Key, f3Key) || !reflect.DeepEqual(tombstone.Opened.Headers, policyHeaders) {
		t.Errorf("the tombstone: %+v", tombstone)
	}
	// One request for the fields, one for the keys (the same key asked once).
	if reader.VaultCalls() != 2 || len(vault.requests) != 2 || vault.keyNames[1] != "customer-ids" {
		t.Fatalf("%d Vault requests (%v)", len(vault.requests), vault.keyNames)
	}
	if keys := vault.requests[1]; len(keys) != 1 || keys[0].Ciphertext != string(sinkKey) ||
		string(keys[0].Context) != f3Topic || keys[0].AssociatedData != nil {
		t.Errorf("the keys request: %+v", keys)
	}

	// Without the record keys key: refused before Vault is asked.
	noKeysKey := newReader(t, vault, registryOf(f3Registry), f3Options)
	asked := len(vault.requests)
	for _, record := range records {
		if _, err := noKeysKey.ReadRecord(context.Background(), record); !errors.Is(err, ErrConfig) {
			t.Errorf("without RecordKeysKey: %v", err)
		}
	}
	if len(vault.requests) != asked {
		t.Error("Vault asked for a record the reader cannot restore")
	}
	// The key encrypted for another stream: the fields bound to it open with Options.Stream
	// (a mirror), but the key does not decrypt under another stream's context.
	other := []byte(vault.encrypt("customer-ids", f3Key, []byte("customers.elsewhere")))
	moved := f3Customers(t, boundProtector(vault, flags, other))[0]
	if opened, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: other, Value: moved.value,
		Headers: withProtection(flags)}); !errors.Is(err, ErrAuthentication) || opened != nil {
		t.Errorf("a key of another stream: %v", err)
	}
}

// record_keys = "hmac": the key cannot be restored, so the record is refused unless
// KeepHMACKeys passes the key on as it is on the sink.
func TestFormat3HMACRecordKeys(t *testing.T) {
	flags := kafkatransit.FlagStream | kafkatransit.FlagKey | kafkatransit.FlagKeysHMAC
	vault := newFakeTransit()
	sinkKey := []byte("vault:v1:3Zr5i1NvU7vD7E1jdcTyZm6aUSXoDMbG4KKc0pJfI8Y=")
	c := f3Customers(t, boundProtector(vault, flags, sinkKey))[1]
	record := Record{Topic: f3Topic, Key: sinkKey, Value: c.value, Headers: withProtection(flags)}
	reader := newReader(t, vault, registryOf(f3Registry), f3Options)
	for _, r := range []Record{record, {Topic: f3Topic, Key: sinkKey, Headers: withProtection(flags)}} {
		if opened, err := reader.ReadRecord(context.Background(), r); !errors.Is(err, ErrHMACKey) || opened != nil {
			t.Errorf("an HMAC'd key (tombstone %v): %v", r.Value == nil, err)
		}
	}
	if len(vault.requests) != 0 {
		t.Error("Vault asked for a refused record")
	}
	// A null key is no HMAC: nothing to refuse.
	nullKey := f3Customers(t, boundProtector(vault, flags, nil))[1]
	if _, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Value: nullKey.value,
		Headers: withProtection(flags)}); err != nil {
		t.Errorf("a null key: %v", err)
	}
	keep := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields, KeepHMACKeys: true})
	opened, err := keep.ReadRecord(context.Background(), record)
	if err != nil || !c.same(t, opened) || !bytes.Equal(opened.Key, sinkKey) {
		t.Errorf("KeepHMACKeys: %v", err)
	}
}

// Deterministic fields go with record_keys (not with bind): the binding is then the
// prefix, the flags and the path, and the context the path.
func TestFormat3DeterministicWithRecordKeys(t *testing.T) {
	flags := kafkatransit.FlagKeysEncrypted
	vault := newFakeTransit()
	sinkKey := []byte(vault.encrypt("customer-ids", f3Key, []byte(f3Topic)))
	p := boundProtector(vault, flags, sinkKey)
	p.deterministic = true
	reader := newReader(t, vault, registryOf(f3Registry), Options{Fields: f3Options.Fields, Deterministic: true,
		RecordKeysKey: "customer-ids"})
	for _, c := range f3Customers(t, p) {
		before := len(vault.requests)
		opened, err := reader.ReadRecord(context.Background(), Record{Topic: f3Topic, Key: sinkKey, Value: c.value,
			Headers: withProtection(flags)})
		if err != nil || !c.same(t, opened) || !bytes.Equal(opened.Key, f3Key) {
			t.Fatalf("%s: %v", c.format, err)
		}
		for k, path := range opened.Fields {
			item := vault.requests[before][k]
			if string(item.Context) != path || !bytes.Equal(item.AssociatedData,
				append(append([]byte("kafka-transit/3\x40"), 0, 0, 0, byte(len(path))), path...)) {
				t.Errorf("%s, %s: context %q, associated data %q", c.format, path, item.Context, item.AssociatedData)
			}
		}
	}
}

func TestFormat3Options(t *testing.T) {
	vault, registry := newFakeTransit(), registryOf(f3Registry)
	for name, options := range map[string]Options{
		"RequireBinding value":                         {Key: "k", RequireBinding: []string{"value"}},
		"a stream with a slash":                        {Key: "k", Stream: "a/b"},
		"a record keys key with a slash":               {Key: "k", RecordKeysKey: "../sys"},
		"Deterministic and RequireBinding":             {Key: "k", Deterministic: true, RequireBinding: []string{"key"}},
		"ContextFromRecordKey and RecordKeysKey":       {Key: "k", ContextFromRecordKey: true, RecordKeysKey: "ids"},
		"ContextFromRecordKey and KeepHMACKeys":        {Key: "k", ContextFromRecordKey: true, KeepHMACKeys: true},
		"Deterministic and RequireBinding the stream":  {Key: "k", Deterministic: true, RequireBinding: []string{"stream"}},
		"RequireBinding an empty name":                 {Key: "k", RequireBinding: []string{""}},
		"a stream too long for a topic (250 bytes)":    {Key: "k", Stream: string(bytes.Repeat([]byte("s"), 250))},
		"a record keys key too long for a key (250 b)": {Key: "k", RecordKeysKey: string(bytes.Repeat([]byte("s"), 250))},
	} {
		if _, err := NewReader(vault, registry, options); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A record bound to its stream, read with neither a topic nor Options.Stream.
	flags := kafkatransit.FlagStream
	value := f3Customers(t, boundProtector(vault, flags, nil))[0].value
	reader := newReader(t, vault, registry, f3Options)
	if _, err := reader.ReadRecord(context.Background(), Record{Value: value, Headers: withProtection(flags)}); !errors.Is(err, ErrConfig) {
		t.Errorf("no stream: %v", err)
	}
	// Open and OpenRecord give no headers: a format 3 record opened by its value alone
	// reads as format 2 and fails.
	if _, err := reader.Open(context.Background(), value); err == nil {
		t.Error("a bound record opened without its binding")
	}
}

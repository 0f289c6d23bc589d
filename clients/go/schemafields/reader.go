package schemafields

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

var (
	// ErrFormat: the value is not in Confluent's wire format (shorter than 5 bytes, magic
	// byte not 0, Protobuf message indexes cut short or naming no message of the schema).
	ErrFormat = errors.New("not in Confluent's wire format")
	// ErrUnknownSchema: the registry has no schema of the value's id.
	ErrUnknownSchema = errors.New("schema id unknown to the registry")
	// ErrRegistry: the registry could not be asked (unreachable, failing, refusing the
	// credentials, answering nonsense). Retrying later may help.
	ErrRegistry = errors.New("schema registry unavailable")
	// ErrSchema: the schema cannot be used: it does not parse, or it selects a field that
	// is neither string nor bytes.
	ErrSchema = errors.New("schema cannot be used")
	// ErrDecode: the value does not decode under its schema (truncated, trailing bytes,
	// invalid UTF-8 in a string, a selected field holding something else than a string ...).
	ErrDecode = errors.New("value does not decode under its schema")
	// ErrNotCiphertext: a protected field does not hold Vault transit ciphertext
	// ("vault:v<N>:..."), or its plaintext does not fit the field (not UTF-8 for a string).
	ErrNotCiphertext = errors.New("protected field is not a Vault transit ciphertext")
	// ErrConfig is the root package's: a reader that cannot work as configured.
	ErrConfig = kafkatransit.ErrConfig
	// ErrVault is the root package's: Vault could not be asked, or refused to decrypt a field.
	ErrVault = kafkatransit.ErrVault
	// ErrFlags is the root package's: the kafka-transit.protection header is malformed, there
	// are two, or its flags are unknown or name what a schema'd record never has (sealed
	// headers, padding, compression).
	ErrFlags = kafkatransit.ErrFlags
	// ErrUnbound is the root package's: the record is not bound as Options.RequireBinding
	// requires, or has no protection header at all.
	ErrUnbound = kafkatransit.ErrUnbound
	// ErrHMACKey: the record's key is an HMAC (record_keys = "hmac"), which cannot be
	// restored, and Options.KeepHMACKeys is off.
	ErrHMACKey = errors.New("record key is an HMAC")
	// ErrAuthentication is the root package's: Vault refused a format 3 field or record key
	// as not authentic: it was moved to another stream, record key or place in the record,
	// or the protection header was changed.
	ErrAuthentication = kafkatransit.ErrAuthentication
)

// Options say which fields are protected and how, as the encrypt-schema-fields policy
// that wrote the records was configured.
type Options struct {
	// Key is the transit key (policy.config.key).
	Key string
	// Tags select the fields whose schema carries one of them (confluent:tags); nil is
	// ["PII"], the policy's default. An empty non-nil slice selects by Fields alone.
	Tags []string
	// Fields select fields by path: JSON Pointers by schema field names, "*" for every
	// element, map value or field ("/phones/*/number").
	Fields []string
	// Deterministic: each field was encrypted with its located path as the derivation
	// context ("/phones/1/number").
	Deterministic bool
	// Context is a fixed derivation context (policy.config.context), for derived keys.
	Context string
	// ContextFromRecordKey: the record key is the derivation context (context_from =
	// "record-key").
	ContextFromRecordKey bool
	// CacheSize bounds the parsed schemas kept (0: 1000). A schema id's schema never
	// changes, so nothing kept is ever stale.
	CacheSize int

	// Format 3 (docs/protected-records.md: records written with bind, record_keys or
	// stream; they carry the kafka-transit.protection header). Records without the header
	// are read as before, unless RequireBinding is set.

	// Stream is the stream name the records are bound to (policy.config.stream); empty:
	// each record's Topic, the topic it is read from.
	Stream string
	// RequireBinding lists what a record must be bound to ("stream", "key"): a record bound
	// to less, or without the protection header, is refused with ErrUnbound.
	RequireBinding []string
	// RecordKeysKey is the transit key of encrypted record keys (record_keys = "encrypt",
	// policy.config.record_keys_key): Opened.Key is the key restored with it.
	RecordKeysKey string
	// KeepHMACKeys passes HMAC'd record keys (record_keys = "hmac") on as they are on the
	// sink; by default such a record is refused with ErrHMACKey, since its source key
	// cannot be restored.
	KeepHMACKeys bool
}

// Config is a Reader against Vault and a registry.
type Config struct {
	// Vault: Address, Token or TokenFile, CACert, Mount, Namespace, Timeout, HTTPClient.
	// Its Key is the transit key when Options.Key is empty; its Records' Stream,
	// RequireBinding and RecordKeysKey fill those of Options left empty.
	Vault    kafkatransit.Config
	Registry RegistryConfig
	Options
}

// Reader opens the protected fields of Avro, Protobuf and JSON Schema records written
// by encrypt-schema-fields. Safe for concurrent use.
type Reader struct {
	vault      kafkatransit.BoundDecrypter
	registry   Registry
	options    Options
	selection  selection
	vaultCalls atomic.Int64

	mu      sync.Mutex
	schemas map[uint32]cached
}

type cached struct {
	schema parsedSchema
	err    error
	until  time.Time // for an unknown id: when to ask again
}

// unknownTTL is how long an id the registry does not have is remembered.
const unknownTTL = 30 * time.Second

// maxItems is the most ciphertexts sent in one Vault request: OpenBao refuses request
// bodies of more than 1000 JSON strings by default, and an item with a context is four.
const maxItems = 249

// New is a Reader with a Vault client and a registry client as cfg says.
func New(cfg Config) (*Reader, error) {
	vault, err := kafkatransit.NewVault(cfg.Vault)
	if err != nil {
		return nil, err
	}
	registry, err := NewRegistry(cfg.Registry)
	if err != nil {
		return nil, err
	}
	options := cfg.Options
	if options.Key == "" {
		options.Key = cfg.Vault.Key
	}
	if options.Stream == "" {
		options.Stream = cfg.Vault.Records.Stream
	}
	if options.RequireBinding == nil {
		options.RequireBinding = cfg.Vault.Records.RequireBinding
	}
	if options.RecordKeysKey == "" {
		options.RecordKeysKey = cfg.Vault.Records.RecordKeysKey
	}
	return NewReader(vault, registry, options)
}

// NewReader reads with vault (*kafkatransit.Vault, or a stand-in) and registry.
func NewReader(vault kafkatransit.BoundDecrypter, registry Registry, options Options) (*Reader, error) {
	if vault == nil || registry == nil {
		return nil, fmt.Errorf("%w: a Vault client and a registry are both needed", ErrConfig)
	}
	if err := kafkatransit.CheckKeyName(options.Key); err != nil {
		return nil, fmt.Errorf("%w: Options.Key: %w", ErrConfig, err)
	}
	if options.Tags == nil {
		options.Tags = []string{"PII"}
	}
	if len(options.Tags) == 0 && len(options.Fields) == 0 {
		return nil, fmt.Errorf("%w: Tags and Fields are both empty, so no field would be opened", ErrConfig)
	}
	if options.Deterministic && (options.Context != "" || options.ContextFromRecordKey) {
		return nil, fmt.Errorf("%w: Deterministic makes each field's path its context; Context and "+
			"ContextFromRecordKey do not go with it", ErrConfig)
	}
	if options.Context != "" && options.ContextFromRecordKey {
		return nil, fmt.Errorf("%w: Context or ContextFromRecordKey, not both", ErrConfig)
	}
	if err := (kafkatransit.RecordOptions{Stream: options.Stream, RequireBinding: options.RequireBinding}).Check(); err != nil {
		return nil, err
	}
	if options.RecordKeysKey != "" {
		if err := kafkatransit.CheckKeyName(options.RecordKeysKey); err != nil {
			return nil, fmt.Errorf("%w: Options.RecordKeysKey: %w", ErrConfig, err)
		}
	}
	if options.Deterministic && len(options.RequireBinding) > 0 {
		// The writer refuses deterministic fields bound to stream or key (one convergent
		// nonce under several associated data gives GCM's authentication key away), so
		// no record could be read.
		return nil, fmt.Errorf("%w: Deterministic fields are never bound to their stream or key; "+
			"RequireBinding does not go with it", ErrConfig)
	}
	if options.ContextFromRecordKey && (options.RecordKeysKey != "" || options.KeepHMACKeys) {
		// The writer refuses context_from = "record-key" with record_keys: the key on the
		// sink is not the source's.
		return nil, fmt.Errorf("%w: ContextFromRecordKey does not go with protected record keys "+
			"(RecordKeysKey, KeepHMACKeys)", ErrConfig)
	}
	if options.CacheSize <= 0 {
		options.CacheSize = 1000
	}
	sel := selection{tags: append([]string(nil), options.Tags...)}
	for _, text := range options.Fields {
		p, err := parsePattern(text)
		if err != nil {
			return nil, fmt.Errorf("%w: Fields: %w", ErrConfig, err)
		}
		sel.patterns = append(sel.patterns, p)
	}
	return &Reader{vault: vault, registry: registry, options: options, selection: sel,
		schemas: map[uint32]cached{}}, nil
}

// Record is what a reader needs of a Kafka record: its value, and for format 3 (or
// ContextFromRecordKey) its key as received, its headers and the topic it was read from
// (the stream its fields are bound to, unless Options.Stream says otherwise). A nil Key
// is a null key.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []kafkatransit.Header
}

// Opened is a record value with its protected fields opened.
type Opened struct {
	SchemaID   uint32
	SchemaType SchemaType
	// MessageIndexes: which message of the Protobuf schema the record is ([0]: the first).
	MessageIndexes []int
	// Value is the record decoded, the fields opened. Avro: hamba/avro's generic form
	// (a record is a map[string]any, an array []any, a map map[string]any, a union nil or
	// map[string]any{"<type name>": value}, bytes []byte). Protobuf: a *dynamicpb.Message
	// (a proto.Message). JSON Schema: what encoding/json decodes with UseNumber
	// (map[string]any, []any, json.Number, string, bool, nil).
	Value any
	// Wire is the opened record in Confluent's wire format: the same magic byte and
	// schema id (for Protobuf the same message indexes), the record encoded again.
	// Avro and Protobuf: re-encoded by the library, so equal under the schema to what the
	// producer wrote, not always byte for byte (Avro map order and blocks, Protobuf field
	// order); JSON: every byte outside the opened strings as it came.
	Wire []byte
	// Fields are the located paths of the opened fields ("/phones/1/number"). They may
	// hold record data (map keys): keep them out of logs.
	Fields []string
	// Key is the record key as its producer wrote it: restored with Options.RecordKeysKey
	// when format 3 encrypted it, as received otherwise (an HMAC'd one with KeepHMACKeys).
	Key []byte
	// Headers are the record's headers without kafka-transit.protection.
	Headers []kafkatransit.Header
}

// Result is the outcome of opening one record of a batch.
type Result struct {
	Opened *Opened
	Err    error
}

// Open opens one record value (no record key, headers or topic: not for
// ContextFromRecordKey nor format 3). A nil value (a tombstone) opens as nil, without error.
func (r *Reader) Open(ctx context.Context, value []byte) (*Opened, error) {
	return r.ReadRecord(ctx, Record{Value: value})
}

// OpenRecord opens one record's value; key is the record key. Without headers and topic
// it reads formats 1 and 2 only: ReadRecord reads any.
func (r *Reader) OpenRecord(ctx context.Context, key, value []byte) (*Opened, error) {
	return r.ReadRecord(ctx, Record{Key: key, Value: value})
}

// ReadRecord opens one Kafka record, as kafkatransit.Reader.ReadRecord reads one: a
// format 3 record (with the kafka-transit.protection header) has each field checked
// against its binding (the stream: Options.Stream or the record's Topic; its key as
// received; the field's located path) and its record key restored, so a field moved to
// another place, record or stream is refused (ErrAuthentication). A tombstone opens as
// nil, without error; a format 3 one as an Opened with only Key and Headers set.
func (r *Reader) ReadRecord(ctx context.Context, record Record) (*Opened, error) {
	result := r.OpenAll(ctx, []Record{record})[0]
	return result.Opened, result.Err
}

// VaultCalls is how many Vault requests the reader made.
func (r *Reader) VaultCalls() int64 { return r.vaultCalls.Load() }

// pending is one record of a batch on its way.
type pending struct {
	id       uint32
	schema   parsedSchema
	prefix   []byte // the header, and for Protobuf the message indexes, as they came
	indexes  []int
	located  locatedRecord
	fields   []located
	items    []int // per field: its item in the batch
	err      error
	skip     bool // a tombstone
	contextV []byte
	// Format 3: bound when the record has the protection header.
	bound   bool
	flags   kafkatransit.Flags
	stream  string
	keyItem int // the record key's item in the keys batch, or -1
}

// OpenAll opens a batch: every protected field of every record goes to Vault in one
// transit/decrypt batch request (249 fields a request at most). One result per record,
// in order. A record that cannot be opened fails alone, and never yields a protected
// field as data.
func (r *Reader) OpenAll(ctx context.Context, records []Record) []Result {
	results := make([]Result, len(records))
	work := make([]pending, len(records))
	var items, keyItems []kafkatransit.DecryptItem
	seen, seenKeys := map[string]int{}, map[string]int{}
	for i, record := range records {
		p := &work[i]
		p.keyItem = -1
		if p.err = r.protection(record, p); p.err != nil {
			continue
		}
		if record.Value == nil {
			p.skip = true
		} else if p.err = r.locate(ctx, record, p); p.err != nil {
			continue
		}
		// Every field must be a ciphertext before any goes to Vault.
		for _, f := range p.fields {
			if !bytes.HasPrefix(f.content, []byte("vault:v")) || !utf8.Valid(f.content) {
				// Its path may hold a map key: record data, never in an error.
				p.err = fmt.Errorf("%w: schema id %d: a field the schema selects holds no vault:v<N>: text",
					ErrNotCiphertext, p.id)
				break
			}
		}
		if p.err != nil {
			continue
		}
		for _, f := range p.fields {
			var context, associated []byte
			switch {
			case r.options.Deterministic:
				context = []byte(f.path)
			case p.contextV != nil:
				context = p.contextV
			}
			if p.bound {
				path := f.path
				associated = kafkatransit.Binding(p.flags, p.stream, record.Key, &path)
			}
			dedupe := string(f.content) + "\x00" + string(context) + "\x00" + string(associated)
			at, ok := seen[dedupe]
			if !ok {
				at = len(items)
				seen[dedupe] = at
				items = append(items, kafkatransit.DecryptItem{Ciphertext: string(f.content), Context: context,
					AssociatedData: associated})
			}
			p.items = append(p.items, at)
		}
		if item, encrypted := kafkatransit.RecordKeyItem(p.flags, p.stream, record.Key); p.bound && encrypted {
			dedupe := item.Ciphertext + "\x00" + p.stream
			at, ok := seenKeys[dedupe]
			if !ok {
				at = len(keyItems)
				seenKeys[dedupe] = at
				keyItems = append(keyItems, item)
			}
			p.keyItem = at
		}
	}

	answers, vaultErr := r.decrypt(ctx, r.options.Key, items)
	var keyAnswers []kafkatransit.Decryption
	var keysErr error
	if len(keyItems) > 0 {
		keyAnswers, keysErr = r.decrypt(ctx, r.options.RecordKeysKey, keyItems)
	}
	for i := range work {
		p := &work[i]
		switch {
		case p.err != nil:
			results[i].Err = p.err
			continue
		case len(p.fields) > 0 && vaultErr != nil:
			results[i].Err = vaultErr
			continue
		case p.keyItem >= 0 && keysErr != nil:
			results[i].Err = keysErr
			continue
		case p.skip && !p.bound:
			continue // a tombstone of formats 1 and 2 opens as nil, as it always did
		}
		// The fields first, then the key: step 3 before step 4 of "What each reader must
		// check", so a record moved to another key fails as not authentic.
		opened := &Opened{}
		if !p.skip {
			if opened, results[i].Err = r.finish(p, answers); results[i].Err != nil {
				continue
			}
		}
		if opened.Key, results[i].Err = r.recordKey(p, records[i].Key, keyAnswers); results[i].Err != nil {
			continue
		}
		opened.Headers = withoutProtection(records[i].Headers)
		results[i].Opened = opened
	}
	return results
}

// protection reads a record's protection header (kafkatransit.ProtectionFlags) and checks
// what the root package's reader leaves to each kind of value, before anything goes to
// Vault: fields never carry sealed headers, padding or compression; an encrypted record
// key needs RecordKeysKey; an HMAC'd one is refused unless KeepHMACKeys.
func (r *Reader) protection(record Record, p *pending) error {
	flags, bound, err := kafkatransit.ProtectionFlags(record.Headers, r.options.RequireBinding)
	if err != nil || !bound {
		return err
	}
	body := kafkatransit.FlagHeaders | kafkatransit.FlagPadded | kafkatransit.FlagZstd | kafkatransit.FlagLZ4
	if flags&body != 0 {
		return fmt.Errorf("%w: flags 0x%02x: schema'd fields never carry sealed headers, padding or compression",
			ErrFlags, byte(flags))
	}
	p.bound, p.flags, p.stream = true, flags, r.options.Stream
	if p.stream == "" {
		p.stream = record.Topic
	}
	_, encrypted := kafkatransit.RecordKeyItem(flags, p.stream, record.Key)
	switch {
	case p.stream == "" && (flags.Has(kafkatransit.FlagStream) || encrypted):
		// An empty stream would only fail authentication later, less clearly.
		return fmt.Errorf("%w: the record is bound to its stream (or its key encrypted under it): give the "+
			"record's Topic, or set Options.Stream", ErrConfig)
	case encrypted && r.options.RecordKeysKey == "":
		return fmt.Errorf("%w: the record key is encrypted with Vault (record_keys = \"encrypt\"): set "+
			"Options.RecordKeysKey to restore it", ErrConfig)
	case record.Key != nil && flags.Has(kafkatransit.FlagKeysHMAC) && !r.options.KeepHMACKeys:
		return fmt.Errorf("%w (record_keys = \"hmac\"), which cannot be restored; "+
			"set Options.KeepHMACKeys to pass such keys on as they are", ErrHMACKey)
	}
	return nil
}

// recordKey is the record key as its producer wrote it: restored from the keys batch
// when format 3 encrypted it, else as received.
func (r *Reader) recordKey(p *pending, received []byte, answers []kafkatransit.Decryption) ([]byte, error) {
	if p.keyItem < 0 {
		return received, nil
	}
	answer := answers[p.keyItem]
	if answer.Err != "" {
		return nil, kafkatransit.BoundItemError("record key", r.options.RecordKeysKey, answer.Err)
	}
	return append([]byte{}, answer.Plaintext...), nil
}

// withoutProtection is headers without kafka-transit.protection, which describes the
// record as it is on the sink, not as opened.
func withoutProtection(headers []kafkatransit.Header) []kafkatransit.Header {
	var out []kafkatransit.Header
	for _, h := range headers {
		if h.Key != kafkatransit.ProtectionHeader {
			out = append(out, h)
		}
	}
	return out
}

func (r *Reader) finish(p *pending, answers []kafkatransit.Decryption) (*Opened, error) {
	opened := &Opened{SchemaID: p.id, SchemaType: p.schema.schemaType(), MessageIndexes: p.indexes}
	for k, f := range p.fields {
		answer := answers[p.items[k]]
		switch {
		case answer.Err != "" && p.bound:
			return nil, fmt.Errorf("schema id %d: %w", p.id, kafkatransit.BoundItemError("field", r.options.Key, answer.Err))
		case answer.Err != "":
			return nil, fmt.Errorf("%w: schema id %d: a field could not be decrypted with key %q: %s",
				ErrVault, p.id, r.options.Key, answer.Err)
		}
		plaintext := answer.Plaintext
		if !f.bytes && !utf8.Valid(plaintext) {
			return nil, fmt.Errorf("%w: schema id %d: a string field's plaintext is not UTF-8", ErrNotCiphertext, p.id)
		}
		f.set(append([]byte{}, plaintext...))
		opened.Fields = append(opened.Fields, f.path)
	}
	value, body, err := p.located.finish()
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", p.id, err)
	}
	opened.Value = value
	opened.Wire = append(append(make([]byte, 0, len(p.prefix)+len(body)), p.prefix...), body...)
	return opened, nil
}

// decrypt asks Vault for items with transit key keyName, maxItems a request.
func (r *Reader) decrypt(ctx context.Context, keyName string, items []kafkatransit.DecryptItem) ([]kafkatransit.Decryption, error) {
	out := make([]kafkatransit.Decryption, 0, len(items))
	for start := 0; start < len(items); start += maxItems {
		chunk := items[start:min(len(items), start+maxItems)]
		r.vaultCalls.Add(1)
		answers, err := r.vault.DecryptItems(ctx, keyName, chunk)
		if err == nil && len(answers) != len(chunk) {
			err = fmt.Errorf("%w: Vault answered %d results for %d ciphertexts", ErrVault, len(answers), len(chunk))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, answers...)
	}
	return out, nil
}

// locate unframes a record's value, gets its schema and finds its protected fields.
func (r *Reader) locate(ctx context.Context, record Record, p *pending) error {
	id, body, err := unframe(record.Value)
	if err != nil {
		return err
	}
	p.id = id
	if p.schema, err = r.schema(ctx, id); err != nil {
		return err
	}
	message := body
	if p.schema.schemaType() == Protobuf {
		if p.indexes, message, err = messageIndexes(body); err != nil {
			return fmt.Errorf("schema id %d: %w", id, err)
		}
	}
	p.prefix = record.Value[:len(record.Value)-len(message)]
	if p.located, err = p.schema.locate(message, p.indexes); err != nil {
		return fmt.Errorf("schema id %d: %w", id, err)
	}
	p.fields = p.located.fields()
	if len(p.fields) > 0 {
		switch {
		case r.options.ContextFromRecordKey:
			if len(record.Key) == 0 {
				return fmt.Errorf("%w: the record has no key, but ContextFromRecordKey is set", ErrConfig)
			}
			p.contextV = record.Key
		case r.options.Context != "":
			p.contextV = []byte(r.options.Context)
		}
	}
	return nil
}

// schema is the parsed schema of id, from the cache or the registry.
func (r *Reader) schema(ctx context.Context, id uint32) (parsedSchema, error) {
	r.mu.Lock()
	entry, ok := r.schemas[id]
	r.mu.Unlock()
	if ok && (entry.until.IsZero() || time.Now().Before(entry.until)) {
		return entry.schema, entry.err
	}
	registered, err := r.registry.SchemaByID(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownSchema):
		entry = cached{err: err, until: time.Now().Add(unknownTTL)}
	case err != nil:
		return nil, err // unavailable: ask again next time
	default:
		entry.schema, entry.err = parseSchema(registered, &r.selection)
		if entry.err != nil {
			entry.err = fmt.Errorf("schema id %d: %w", id, entry.err)
		}
	}
	r.mu.Lock()
	if len(r.schemas) >= r.options.CacheSize {
		clear(r.schemas)
	}
	r.schemas[id] = entry
	r.mu.Unlock()
	return entry.schema, entry.err
}

// parsedSchema is a schema ready to locate the selected fields of records.
type parsedSchema interface {
	schemaType() SchemaType
	// locate decodes body (for Protobuf: the message named by indexes) and finds the
	// selected fields.
	locate(body []byte, indexes []int) (locatedRecord, error)
}

// locatedRecord is a decoded record and its selected fields.
type locatedRecord interface {
	fields() []located
	// finish is the record, its fields set, decoded and encoded again.
	finish() (any, []byte, error)
}

// located is a selected field found in a record.
type located struct {
	path    string // located path: "/customer/ssn", "/phones/1/number", "/attributes/<key>"
	bytes   bool   // a bytes field (else a string)
	content []byte // what it holds: a string's UTF-8 bytes, or a bytes field's bytes
	set     func(plaintext []byte)
}

func parseSchema(s *RegisteredSchema, sel *selection) (parsedSchema, error) {
	switch s.Type {
	case Avro:
		return parseAvro(s, sel)
	case Protobuf:
		return parseProtobuf(s, sel)
	case JSON:
		return parseJSONSchema(s, sel)
	}
	return nil, fmt.Errorf("%w: unknown schema type %q", ErrSchema, s.Type)
}

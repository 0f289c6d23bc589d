package kafkatransit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Record is a Kafka record as a reader or writer sees it; a nil Key or Value is null.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}

// RecordOptions say how a Reader reads format 3 records (docs/protected-records.md).
type RecordOptions struct {
	// Stream is the stream name records are bound to; empty: the topic read.
	Stream string
	// RequireBinding lists what a record must be bound to ("stream", "key"); a record
	// without it (formats 1 and 2 included) is refused with ErrUnbound.
	RequireBinding []string
	// RecordKeysKey is the transit key of encrypted record keys (record_keys = "encrypt").
	RecordKeysKey string
	// MaxPlaintext bounds what a compressed record may expand to; 0: DefaultMaxPlaintext.
	MaxPlaintext int
}

// DecryptItem is one ciphertext with its derivation context and associated data.
type DecryptItem struct {
	Ciphertext     string
	Context        []byte
	AssociatedData []byte
}

// BoundDecrypter decrypts with a context and associated data per item: what format 3
// records need (bound vault: values and fields, encrypted record keys). *Vault implements it.
type BoundDecrypter interface {
	DecryptItems(ctx context.Context, keyName string, items []DecryptItem) ([]Decryption, error)
}

// Check refuses options no reader can honour: RequireBinding other than "stream" and
// "key", a Stream that is not a valid name. Readers of other packages (schemafields)
// check theirs with it too.
func (options RecordOptions) Check() error {
	for _, what := range options.RequireBinding {
		if what != "stream" && what != "key" {
			return fmt.Errorf("%w: RequireBinding takes \"stream\" and \"key\", not %q", ErrConfig, what)
		}
	}
	if options.Stream != "" {
		if err := CheckKeyName(options.Stream); err != nil {
			return fmt.Errorf("%w: the stream name follows the rule of key names (1 to 249 of A-Z a-z 0-9 . _ -)",
				ErrConfig)
		}
	}
	return nil
}

// SetRecordOptions sets how ReadRecord reads format 3; call it before reading.
func (r *Reader) SetRecordOptions(options RecordOptions) error {
	if err := options.Check(); err != nil {
		return err
	}
	if options.MaxPlaintext <= 0 {
		options.MaxPlaintext = DefaultMaxPlaintext
	}
	r.options = options
	return nil
}

// ReadRecord reads one record of any format: the value opened (envelopes and vault:
// values), sealed headers restored after the ones kept in clear, the record key restored
// when it was encrypted. A format 3 record is checked against its protection header and
// bound to its stream (RecordOptions.Stream, or the topic) and key: a ciphertext moved to
// another topic or key, a stripped header or a swapped data key is refused.
func (r *Reader) ReadRecord(ctx context.Context, record Record) (Record, error) {
	stream := r.options.Stream
	if stream == "" {
		stream = record.Topic
	}
	out := Record{Topic: record.Topic}
	for _, h := range record.Headers {
		if h.Key != ProtectionHeader {
			out.Headers = append(out.Headers, h)
		}
	}
	flags, bound, err := r.recordFlags(record.Value, record.Headers)
	if err != nil {
		return Record{}, err
	}
	if record.Value != nil {
		value, sealed, err := r.readValue(ctx, record.Value, flags, bound, stream, record.Key)
		if err != nil {
			return Record{}, err
		}
		out.Value = value
		out.Headers = append(out.Headers, sealed...)
	}
	out.Key = record.Key
	if item, encrypted := RecordKeyItem(flags, stream, record.Key); bound && encrypted {
		if out.Key, err = r.decryptBound(ctx, r.options.RecordKeysKey, "record key", item); err != nil {
			return Record{}, err
		}
	}
	return out, nil
}

// RecordKeyItem is what restores a record key that record_keys = "encrypt" protected:
// the key as on the sink (Vault's ciphertext text), decrypted under record_keys_key with
// the stream as the derivation context. encrypted is false when flags say the key was
// kept or HMAC'd, or the key is null.
func RecordKeyItem(flags Flags, stream string, key []byte) (item DecryptItem, encrypted bool) {
	if key == nil || flags&flagRecordKeys != FlagKeysEncrypted {
		return DecryptItem{}, false
	}
	return DecryptItem{Ciphertext: string(key), Context: []byte(stream)}, true
}

// ProtectionFlags reads a record's protection header and checks it against
// requireBinding ("stream", "key"): step 1 of "What each reader must check"
// (docs/protected-records.md) but for what depends on the value. bound is false for a
// record without the header (formats 1 and 2), which a non-empty requireBinding refuses
// (ErrUnbound); two headers, another format or unknown flags are ErrFlags.
func ProtectionFlags(headers []Header, requireBinding []string) (flags Flags, bound bool, err error) {
	var protection [][]byte
	for _, h := range headers {
		if h.Key == ProtectionHeader {
			protection = append(protection, h.Value)
		}
	}
	required := func(what string) bool {
		for _, w := range requireBinding {
			if w == what {
				return true
			}
		}
		return false
	}
	switch len(protection) {
	case 0:
		if len(requireBinding) > 0 {
			return 0, false, fmt.Errorf("%w: the record has no %s header (formats 1 and 2 are unbound) and this "+
				"reader requires binding to %s", ErrUnbound, ProtectionHeader, strings.Join(requireBinding, " and "))
		}
		return 0, false, nil
	case 1:
	default:
		return 0, false, fmt.Errorf("%w: the record carries %d %s headers", ErrFlags, len(protection), ProtectionHeader)
	}
	if flags, err = ParseProtectionHeader(protection[0]); err != nil {
		return 0, false, err
	}
	for _, binding := range []struct {
		what string
		bit  Flags
	}{{"stream", FlagStream}, {"key", FlagKey}} {
		if required(binding.what) && flags&binding.bit == 0 {
			return 0, false, fmt.Errorf("%w: the record is not bound to its %s, which this reader requires", ErrUnbound,
				binding.what)
		}
	}
	return flags, true, nil
}

// recordFlags checks the protection header: steps 1 and 2 of "What each reader must check".
func (r *Reader) recordFlags(value []byte, headers []Header) (Flags, bool, error) {
	flags, bound, err := ProtectionFlags(headers, r.options.RequireBinding)
	if err == nil && !bound && len(value) > 0 && value[0] == FormatVersion3 {
		return 0, false, fmt.Errorf("%w: a version 3 envelope without its %s header (stripped?)", ErrFlags,
			ProtectionHeader)
	}
	return flags, bound, err
}

func (r *Reader) readValue(ctx context.Context, value []byte, flags Flags, bound bool, stream string,
	key []byte) ([]byte, []Header, error) {
	if !bound {
		plaintext, err := r.Read(ctx, value)
		return plaintext, nil, err
	}
	var opened []byte
	if bytes.HasPrefix(value, vaultPrefix) {
		if flags&(flagCompression|FlagPadded) != 0 {
			return nil, nil, fmt.Errorf("%w: a vault: value never carries compression or padding flags", ErrFlags)
		}
		var err error
		if opened, err = r.decryptBound(ctx, r.key, "value", DecryptItem{Ciphertext: string(value),
			AssociatedData: Binding(flags, stream, key, nil)}); err != nil {
			return nil, nil, err
		}
	} else {
		if len(value) == 0 || value[0] != FormatVersion3 {
			return nil, nil, fmt.Errorf("%w: the %s header announces format 3 but the value is no version 3 envelope",
				ErrFlags, ProtectionHeader)
		}
		if len(value) < 2 {
			return nil, nil, fmt.Errorf("%w: cut in the flags", ErrTruncated)
		}
		if Flags(value[1]) != flags {
			if _, err := ParseFlags(value[1]); err != nil {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("%w: the envelope's flags 0x%02x differ from its %s header's 0x%02x",
				ErrFlags, value[1], ProtectionHeader, byte(flags))
		}
		envelope, err := r.parse(value)
		if err != nil {
			return nil, nil, err
		}
		l := r.lookup(ctx, map[string][]string{envelope.KeyName: {envelope.WrappedKey}}, nil)
		defer l.wipe()
		dataKey, err := l.dataKey(envelope)
		if err != nil {
			return nil, nil, err
		}
		if opened, err = envelope.OpenLimit(dataKey, Binding(flags, stream, key, nil)[len(bindingPrefix)+1:],
			r.options.MaxPlaintext); err != nil {
			return nil, nil, err
		}
	}
	if flags&FlagHeaders == 0 {
		return opened, nil, nil
	}
	headers, rest, err := Unframe(opened)
	return rest, headers, err
}

// decryptBound asks Vault to decrypt one item with its context and associated data.
func (r *Reader) decryptBound(ctx context.Context, keyName, what string, item DecryptItem) ([]byte, error) {
	if keyName == "" {
		return nil, fmt.Errorf("%w: the %s is encrypted with Vault: the reader needs its transit key", ErrConfig, what)
	}
	bound, ok := r.vault.(BoundDecrypter)
	if !ok {
		return nil, fmt.Errorf("%w: format 3 needs a Decrypter that passes context and associated data "+
			"(BoundDecrypter)", ErrConfig)
	}
	r.vaultCalls.Add(1)
	answers, err := bound.DecryptItems(ctx, keyName, []DecryptItem{item})
	if err != nil {
		return nil, err
	}
	if len(answers) != 1 {
		return nil, fmt.Errorf("%w: Vault answered %d results for 1 ciphertext", ErrVault, len(answers))
	}
	if answers[0].Err != "" {
		return nil, BoundItemError(what, keyName, answers[0].Err)
	}
	return answers[0].Plaintext, nil
}

// BoundItemError is the error of an item of a format 3 decryption that Vault refused
// with message: ErrAuthentication when the ciphertext does not authenticate (moved to
// another stream, key or place, or its flags changed), ErrVault otherwise. what names
// the item without record data ("record key", "field").
func BoundItemError(what, keyName, message string) error {
	if strings.Contains(message, "message authentication failed") {
		return fmt.Errorf("%w: Vault refused the %s: it was encrypted for another stream, key or place "+
			"(%s)", ErrAuthentication, what, message)
	}
	return fmt.Errorf("%w: %s with key %q: %s", ErrVault, what, keyName, message)
}

// ReadFields decrypts the vault: string fields of a JSON value that encrypt-fields wrote.
// Format 3 fields are bound to their JSON Pointer too, so a field moved to another place
// in the document (or another record) is refused. Members come back in sorted order.
func (r *Reader) ReadFields(ctx context.Context, record Record) ([]byte, error) {
	flags, bound, err := ProtectionFlags(record.Headers, r.options.RequireBinding)
	if err != nil {
		return nil, err
	}
	if bound && flags&(flagCompression|FlagPadded|FlagHeaders) != 0 {
		return nil, fmt.Errorf("%w: encrypted fields never carry compression, padding or sealed headers", ErrFlags)
	}
	stream := r.options.Stream
	if stream == "" {
		stream = record.Topic
	}
	decoder := json.NewDecoder(bytes.NewReader(record.Value))
	decoder.UseNumber()
	var document any
	if err := decoder.Decode(&document); err != nil {
		return nil, fmt.Errorf("%w: not a JSON document", ErrFormat)
	}
	var walk func(node any, pointer string) (any, error)
	walk = func(node any, pointer string) (any, error) {
		switch n := node.(type) {
		case map[string]any:
			for k, v := range n {
				escaped := strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
				if n[k], err = walk(v, pointer+"/"+escaped); err != nil {
					return nil, err
				}
			}
		case []any:
			for i, v := range n {
				if n[i], err = walk(v, pointer+"/"+strconv.Itoa(i)); err != nil {
					return nil, err
				}
			}
		case string:
			if !strings.HasPrefix(n, "vault:v") {
				return n, nil
			}
			item := DecryptItem{Ciphertext: n}
			if bound {
				p := pointer
				item.AssociatedData = Binding(flags, stream, record.Key, &p)
			}
			plaintext, err := r.decryptBound(ctx, r.key, "field "+pointer, item)
			if err != nil {
				return nil, err
			}
			var value any
			d := json.NewDecoder(bytes.NewReader(plaintext))
			d.UseNumber()
			if err := d.Decode(&value); err != nil {
				return nil, fmt.Errorf("%w: the field %s does not decrypt to JSON", ErrFormat, pointer)
			}
			return value, nil
		}
		return node, nil
	}
	if document, err = walk(document, ""); err != nil {
		return nil, err
	}
	return json.Marshal(document)
}

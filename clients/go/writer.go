package kafkatransit

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Transit is what a Writer asks Vault: data keys, convergent encryption and HMAC of record
// keys. *Vault implements it.
type Transit interface {
	// DataKey is datakey/plaintext: a fresh 256-bit key (the caller wipes it) and its wrapping.
	DataKey(ctx context.Context, keyName string) ([]byte, string, error)
	Encrypt(ctx context.Context, keyName string, plaintext, context, associatedData []byte) (string, error)
	HMAC(ctx context.Context, keyName string, input []byte) (string, error)
}

// WriterOptions are envelope-seal's format 3 options (docs/protected-records.md), by the
// same names.
type WriterOptions struct {
	Key           string   // the transit key that wraps data keys
	RecordKeys    string   // "keep" (default), "encrypt" or "hmac"
	RecordKeysKey string   // the transit key of "encrypt" (derived, convergent) or "hmac"
	Headers       string   // "keep" (default) or "seal"
	KeepHeaders   []string // with "seal": headers that stay in clear as well
	Bind          []string // "stream", "key"
	Stream        string   // the stream name bound; empty: the record's topic
	Compression   string   // "none" (default), "zstd" or "lz4"
	PadTo         int      // pad the compressed plaintext to a multiple of this; 0: off
	// A data key seals at most MaxRecords records (default 1,000,000) for at most MaxAge
	// (default one hour), then a fresh one is asked for and the old one wiped.
	MaxRecords int64
	MaxAge     time.Duration
}

// Writer seals records in-process as the host's envelope-seal does with format 3 options:
// for producers on a Kafka with no kafka-transit runner in front. Safe for concurrent use.
type Writer struct {
	transit Transit
	options WriterOptions
	flags   Flags

	mu     sync.Mutex
	active *sealingKey
	minted int
}

type sealingKey struct {
	material   []byte
	aead       cipher.AEAD
	wrapped    string
	commitment []byte
	created    time.Time
	sealed     int64
}

// NewWriter checks the options as the host checks a policy's configuration.
func NewWriter(transit Transit, options WriterOptions) (*Writer, error) {
	if err := CheckKeyName(options.Key); err != nil {
		return nil, fmt.Errorf("%w: Key: %w", ErrConfig, err)
	}
	flags := Flags(0)
	switch options.RecordKeys {
	case "", "keep":
	case "encrypt", "hmac":
		if err := CheckKeyName(options.RecordKeysKey); err != nil {
			return nil, fmt.Errorf("%w: RecordKeys %q needs RecordKeysKey, a transit key name", ErrConfig,
				options.RecordKeys)
		}
		flags |= map[string]Flags{"encrypt": FlagKeysEncrypted, "hmac": FlagKeysHMAC}[options.RecordKeys]
	default:
		return nil, fmt.Errorf("%w: RecordKeys is \"keep\", \"encrypt\" or \"hmac\"", ErrConfig)
	}
	switch options.Headers {
	case "", "keep":
	case "seal":
		flags |= FlagHeaders
	default:
		return nil, fmt.Errorf("%w: Headers is \"keep\" or \"seal\"", ErrConfig)
	}
	for _, what := range options.Bind {
		switch what {
		case "stream":
			flags |= FlagStream
		case "key":
			flags |= FlagKey
		default:
			return nil, fmt.Errorf("%w: Bind lists \"stream\" and \"key\", not %q", ErrConfig, what)
		}
	}
	if options.Stream != "" && CheckKeyName(options.Stream) != nil {
		return nil, fmt.Errorf("%w: Stream is 1 to 249 of A-Z a-z 0-9 . _ -", ErrConfig)
	}
	switch options.Compression {
	case "", "none":
	case "zstd":
		flags |= FlagZstd
	case "lz4":
		flags |= FlagLZ4
	default:
		return nil, fmt.Errorf("%w: Compression is \"none\", \"zstd\" or \"lz4\"", ErrConfig)
	}
	if options.PadTo < 0 || options.PadTo > 16<<20 {
		return nil, fmt.Errorf("%w: PadTo is 0 (off) to 16 MiB", ErrConfig)
	}
	if options.PadTo > 0 {
		flags |= FlagPadded
	}
	if options.MaxRecords <= 0 {
		options.MaxRecords = 1_000_000
	}
	if options.MaxAge <= 0 {
		options.MaxAge = time.Hour
	}
	return &Writer{transit: transit, options: options, flags: flags}, nil
}

// Flags are the flags of every record this writer seals.
func (w *Writer) Flags() Flags { return w.flags }

// DataKeysMinted is how many data keys the writer asked Vault for.
func (w *Writer) DataKeysMinted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minted
}

// Close wipes the data key in use.
func (w *Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active != nil {
		wipe(w.active.material)
		w.active = nil
	}
}

func (w *Writer) sealingKey(ctx context.Context) (*sealingKey, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a := w.active; a != nil && a.sealed < w.options.MaxRecords && time.Since(a.created) < w.options.MaxAge {
		a.sealed++
		return a, nil
	}
	material, wrapped, err := w.transit.DataKey(ctx, w.options.Key)
	if err != nil {
		return nil, err
	}
	if len(material) != 32 || !strings.HasPrefix(wrapped, "vault:v") || len(wrapped) > 0xffff {
		wipe(material)
		return nil, fmt.Errorf("%w: Vault's data key cannot be put in an envelope", ErrVault)
	}
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if w.active != nil {
		// Records sealing under it hold their own reference to the AEAD; the bytes go now.
		wipe(w.active.material)
	}
	w.active = &sealingKey{material: material, aead: aead, wrapped: wrapped, commitment: commitmentOf(material),
		created: time.Now(), sealed: 1}
	w.minted++
	return w.active, nil
}

// ProtectKey is the record key as it goes to the sink: kept, Vault's convergent encryption
// with the stream as context, or Vault's HMAC of stream ‖ 0x00 ‖ key. nil stays nil.
func (w *Writer) ProtectKey(ctx context.Context, stream string, key []byte) ([]byte, error) {
	if key == nil {
		return nil, nil
	}
	switch w.flags & flagRecordKeys {
	case FlagKeysEncrypted:
		text, err := w.transit.Encrypt(ctx, w.options.RecordKeysKey, key, []byte(stream), nil)
		return []byte(text), err
	case FlagKeysHMAC:
		input := append(append([]byte(stream), 0), key...)
		text, err := w.transit.HMAC(ctx, w.options.RecordKeysKey, input)
		return []byte(text), err
	}
	return key, nil
}

// Seal protects one record for the sink topic record.Topic: its key as RecordKeys says,
// its headers sealed in the value (all but KeepHeaders and kafka-transit's own), its
// value in a version 3 envelope bound as Bind says, and the protection header added. A
// tombstone stays a tombstone (its sealed headers are dropped: nothing can carry them).
func (w *Writer) Seal(ctx context.Context, record Record) (Record, error) {
	stream := w.options.Stream
	if stream == "" {
		stream = record.Topic
		if err := CheckKeyName(stream); err != nil {
			return Record{}, fmt.Errorf("%w: the topic is no stream name; set Stream", ErrConfig)
		}
	}
	key, err := w.ProtectKey(ctx, stream, record.Key)
	if err != nil {
		return Record{}, err
	}
	var kept, sealed []Header
	for _, h := range record.Headers {
		switch {
		case h.Key == ProtectionHeader:
		case w.flags&FlagHeaders == 0 || strings.HasPrefix(h.Key, "kafka-transit.") || w.keeps(h.Key):
			kept = append(kept, h)
		default:
			sealed = append(sealed, h)
		}
	}
	out := Record{Topic: record.Topic, Key: key, Headers: append(kept, Header{ProtectionHeader, w.flags.HeaderValue()})}
	if record.Value == nil {
		return out, nil
	}
	plaintext := record.Value
	if w.flags&FlagHeaders != 0 {
		plaintext = Frame(sealed, record.Value)
	}
	body, err := compressBody(plaintext, w.flags, w.options.PadTo)
	if err != nil {
		return Record{}, err
	}
	dataKey, err := w.sealingKey(ctx)
	if err != nil {
		return Record{}, err
	}
	nonce := make([]byte, NonceLength)
	if _, err := rand.Read(nonce); err != nil {
		return Record{}, err
	}
	out.Value = sealV3(dataKey.aead, dataKey.commitment, w.options.Key, dataKey.wrapped, nonce, w.flags, body,
		Binding(w.flags, stream, key, nil)[len(bindingPrefix)+1:])
	return out, nil
}

func (w *Writer) keeps(name string) bool {
	for _, k := range w.options.KeepHeaders {
		if k == name {
			return true
		}
	}
	return false
}

// sealV3 writes 0x03 ‖ flags ‖ u16 N ‖ key name ‖ commitment ‖ u16 W ‖ wrapped key ‖ nonce ‖
// AES-GCM(body) with the authenticated header ‖ binding parts as associated data.
func sealV3(aead cipher.AEAD, commitment []byte, keyName, wrapped string, nonce []byte, flags Flags, body,
	bindingParts []byte) []byte {
	out := []byte{FormatVersion3, byte(flags)}
	out = binary.BigEndian.AppendUint16(out, uint16(len(keyName)))
	out = append(append(out, keyName...), commitment...)
	authenticated := len(out)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(append(out, wrapped...), nonce...)
	ad := append(append([]byte(nil), out[:authenticated]...), bindingParts...)
	return aead.Seal(out, nonce, body, ad)
}

// SealV3With seals a version 3 envelope with a given data key and nonce (deterministic:
// the test vectors use it; Writer always draws a random nonce).
func SealV3With(dataKey []byte, keyName, wrapped string, nonce []byte, flags Flags, plaintext, bindingParts []byte,
	padTo int) ([]byte, error) {
	if err := CheckKeyName(keyName); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	body, err := compressBody(plaintext, flags, padTo)
	if err != nil {
		return nil, err
	}
	return sealV3(aead, commitmentOf(dataKey), keyName, wrapped, nonce, flags, body, bindingParts), nil
}

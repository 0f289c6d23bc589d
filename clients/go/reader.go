package kafkatransit

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
)

// Decryption is the outcome of decrypting one Vault ciphertext text.
type Decryption struct {
	Plaintext []byte // Vault's base64 plaintext, decoded
	Err       string // Vault's message for this item, when it failed
}

// Decrypter is Vault's transit/decrypt, the one operation a reader needs: to unwrap
// envelope data keys and to decrypt vault:v values. *Vault implements it; tests inject their own.
type Decrypter interface {
	// Decrypt decrypts each ciphertext with transit key keyName, one result per input in
	// order. An error (wrapping ErrVault) means Vault could not be asked at all.
	Decrypt(ctx context.Context, keyName string, ciphertexts []string) ([]Decryption, error)
}

// Result is the outcome of reading one value of a batch.
type Result struct {
	Plaintext []byte
	Err       error
}

// Reader reads values kafka-transit protected. Safe for concurrent use.
type Reader struct {
	vault      Decrypter
	key        string
	cache      *keyCache
	vaultCalls atomic.Int64
	options    RecordOptions
}

var vaultPrefix = []byte("vault:v")

// NewReader reads with vault. key is the transit key of vault:v values; when set,
// envelopes must name it too (empty: envelopes under any key, no vault:v values).
// cacheSize bounds the unwrapped data keys kept (0: DefaultCacheSize).
func NewReader(vault Decrypter, key string, cacheSize int) *Reader {
	return &Reader{vault: vault, key: key, cache: newKeyCache(cacheSize),
		options: RecordOptions{MaxPlaintext: DefaultMaxPlaintext}}
}

// Open opens an envelope written by envelope-seal.
func (r *Reader) Open(ctx context.Context, envelope []byte) ([]byte, error) {
	return r.OpenWithAAD(ctx, envelope, nil)
}

// OpenWithAAD opens an envelope sealed with caller associated data aad.
func (r *Reader) OpenWithAAD(ctx context.Context, envelope, aad []byte) ([]byte, error) {
	parsed, err := r.parse(envelope)
	if err != nil {
		return nil, err
	}
	l := r.lookup(ctx, map[string][]string{parsed.KeyName: {parsed.WrappedKey}}, nil)
	defer l.wipe()
	return l.open(parsed, aad)
}

// DecryptValue decrypts a vault:vN: text written by encrypt-value, with the reader's key.
func (r *Reader) DecryptValue(ctx context.Context, text string) ([]byte, error) {
	return r.Read(ctx, []byte(text))
}

// Read reads one protected value, whichever of the two forms it is (nil stays nil).
func (r *Reader) Read(ctx context.Context, value []byte) ([]byte, error) {
	result := r.ReadAll(ctx, [][]byte{value})[0]
	return result.Plaintext, result.Err
}

// ReadAll reads a batch: every data key not cached and every vault:v value goes to Vault
// in one transit/decrypt batch per transit key. One result per value, in order. A nil
// value (a tombstone) reads as nil without error; an empty one is ErrTruncated.
func (r *Reader) ReadAll(ctx context.Context, values [][]byte) []Result {
	results := make([]Result, len(values))
	envelopes := make([]*Envelope, len(values))
	tombstones := make([]bool, len(values))
	wrapped := map[string][]string{}
	var texts []string
	for i, value := range values {
		switch {
		case value == nil:
			tombstones[i] = true
		case bytes.HasPrefix(value, vaultPrefix):
			if r.key == "" {
				results[i].Err = fmt.Errorf("%w: a vault:v value needs the transit key to decrypt it with", ErrConfig)
				continue
			}
			texts = append(texts, string(value))
		case len(value) > 0 && !LooksLikeEnvelope(value):
			results[i].Err = fmt.Errorf("%w: nor a Vault ciphertext (first byte 0x%02x)", ErrFormat, value[0])
		default:
			envelopes[i], results[i].Err = r.parse(value)
			if envelopes[i] != nil && envelopes[i].Flags&^(flagCompression|FlagPadded) != 0 {
				// Its binding or sealed headers need the record's topic, key and headers.
				envelopes[i], results[i].Err = nil, fmt.Errorf("%w: a format 3 record bound to its stream or key, or "+
					"with sealed headers: read it with ReadRecord", ErrFlags)
			}
			if envelopes[i] != nil {
				wrapped[envelopes[i].KeyName] = append(wrapped[envelopes[i].KeyName], envelopes[i].WrappedKey)
			}
		}
	}
	l := r.lookup(ctx, wrapped, texts)
	defer l.wipe()
	for i, value := range values {
		switch {
		case results[i].Err != nil, tombstones[i]:
		case envelopes[i] != nil:
			results[i].Plaintext, results[i].Err = l.open(envelopes[i], nil)
		default:
			text := l.texts[string(value)]
			results[i] = Result{Plaintext: text.Plaintext, Err: text.Err}
		}
	}
	return results
}

// VaultCalls is how many times the reader asked Vault (one per transit key per batch).
func (r *Reader) VaultCalls() int64 { return r.vaultCalls.Load() }

// CachedKeys is how many unwrapped data keys are cached now.
func (r *Reader) CachedKeys() int { return r.cache.len() }

// Close zeroes the cached data keys.
func (r *Reader) Close() { r.cache.clear() }

func (r *Reader) parse(value []byte) (*Envelope, error) {
	envelope, err := Parse(value)
	if err != nil {
		return nil, err
	}
	if r.key != "" && envelope.KeyName != r.key {
		// Not quoted: the envelope's key name is record data, and errors end up in logs.
		return nil, fmt.Errorf("%w than this reader's: it opens %q", ErrKeyMismatch, r.key)
	}
	return envelope, nil
}

// lookup is what one round of Vault requests gave: data keys (copies, wiped after use),
// unwrap failures and decrypted vault:v texts.
type lookup struct {
	keys      map[slot][]byte
	keyErrors map[slot]error
	texts     map[string]Result
}

func (l *lookup) open(envelope *Envelope, aad []byte) ([]byte, error) {
	dataKey, err := l.dataKey(envelope)
	if err != nil {
		return nil, err
	}
	return envelope.Open(dataKey, aad)
}

func (l *lookup) dataKey(envelope *Envelope) ([]byte, error) {
	s := slot{envelope.KeyName, envelope.WrappedKey}
	if err := l.keyErrors[s]; err != nil {
		return nil, err
	}
	return l.keys[s], nil
}

func (l *lookup) wipe() {
	for _, key := range l.keys {
		wipe(key)
	}
}

func (r *Reader) lookup(ctx context.Context, wrapped map[string][]string, texts []string) *lookup {
	l := &lookup{keys: map[slot][]byte{}, keyErrors: map[slot]error{}, texts: map[string]Result{}}
	keyNames := make([]string, 0, len(wrapped)+1)
	for name := range wrapped {
		keyNames = append(keyNames, name)
	}
	if _, ok := wrapped[r.key]; !ok && len(texts) > 0 {
		keyNames = append(keyNames, r.key)
	}
	for _, keyName := range keyNames {
		var missing []string
		for _, w := range distinct(wrapped[keyName]) {
			s := slot{keyName, w}
			if key := r.cache.get(s); key != nil {
				l.keys[s] = key
			} else {
				missing = append(missing, w)
			}
		}
		var valueTexts []string
		if keyName == r.key {
			valueTexts = distinct(texts)
		}
		ask := append(append([]string(nil), missing...), valueTexts...)
		if len(ask) == 0 {
			continue
		}
		r.vaultCalls.Add(1)
		answers, err := r.vault.Decrypt(ctx, keyName, ask)
		if err == nil && len(answers) != len(ask) {
			err = fmt.Errorf("%w: Vault answered %d results for %d ciphertexts", ErrVault, len(answers), len(ask))
		}
		if err != nil {
			for _, w := range missing {
				l.keyErrors[slot{keyName, w}] = err
			}
			for _, t := range valueTexts {
				l.texts[t] = Result{Err: err}
			}
			continue
		}
		for i, w := range missing {
			s, answer := slot{keyName, w}, answers[i]
			switch {
			case answer.Err != "":
				l.keyErrors[s] = fmt.Errorf("%w: the envelope's data key could not be unwrapped: %s", ErrVault, answer.Err)
			case len(answer.Plaintext) != 32:
				wipe(answer.Plaintext)
				l.keyErrors[s] = fmt.Errorf("%w: the envelope's data key is not 256 bits", ErrVault)
			default:
				l.keys[s] = append([]byte(nil), answer.Plaintext...)
				r.cache.put(s, answer.Plaintext)
			}
		}
		for i, t := range valueTexts {
			answer := answers[len(missing)+i]
			if answer.Err != "" {
				l.texts[t] = Result{Err: fmt.Errorf("%w: value with key %q: %s", ErrVault, keyName, answer.Err)}
			} else {
				l.texts[t] = Result{Plaintext: answer.Plaintext}
			}
		}
	}
	return l
}

func distinct(items []string) []string {
	seen := make(map[string]bool, len(items))
	out := items[:0:0]
	for _, item := range items {
		if !seen[item] {
			seen[item] = true
			out = append(out, item)
		}
	}
	return out
}

package kafkatransit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
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
	vault       Decrypter
	key         string
	subjectKeys string // the prefix of data subjects' key names; "" when the reader has none
	cache       *keyCache
	vaultCalls  atomic.Int64
	options     RecordOptions
}

var vaultPrefix = []byte("vault:v")

// NewReader reads with vault. key is the transit key of vault:v values; when set,
// envelopes must name it too (empty: envelopes under any key, no vault:v values).
// cacheSize bounds the unwrapped data keys kept (0: DefaultCacheSize), each for at most
// DefaultCacheMaxAge (SetCacheMaxAge).
func NewReader(vault Decrypter, key string, cacheSize int) *Reader {
	return &Reader{vault: vault, key: key, cache: newKeyCache(cacheSize, DefaultCacheMaxAge),
		options: RecordOptions{MaxPlaintext: DefaultMaxPlaintext}}
}

// subjectNameLength is how many characters of pseudonym follow the prefix in a subject's
// key name (the first 24 bytes of Vault's HMAC of the subject id, in hex).
const subjectNameLength = 48

// SetSubjectKeys makes the reader open records sealed per data subject
// (docs/forgetting.md) instead of under one transit key: prefix is the subjects' key
// names' ("customers-"). An envelope is opened under the key its header names when that
// name starts with prefix, refused with ErrKeyMismatch otherwise (never opened under
// another key); an envelope whose subject's key Vault no longer has fails with
// ErrSubjectForgotten. It excludes the reader's key (vault:v values are not sealed per
// subject). "" turns it off. Call it before reading.
func (r *Reader) SetSubjectKeys(prefix string) error {
	if prefix == "" {
		r.subjectKeys = ""
		return nil
	}
	if r.key != "" {
		return fmt.Errorf("%w: SubjectKeys is instead of Key: each envelope names its subject's key", ErrConfig)
	}
	// The prefix is the sealing pipeline's subject_keys: a name it cannot start is a typo.
	if CheckKeyName(prefix+strings.Repeat("a", subjectNameLength)) != nil {
		return fmt.Errorf("%w: SubjectKeys %q followed by a %d-character pseudonym is no transit key name "+
			"(1 to 249 of A-Z a-z 0-9 . _ -)", ErrConfig, prefix, subjectNameLength)
	}
	r.subjectKeys = prefix
	return nil
}

// SetCacheMaxAge sets how long an unwrapped data key stays cached however often it is
// used (0: DefaultCacheMaxAge): after it, the data key is unwrapped again, so a subject
// forgotten meanwhile stops opening within that bound. Call it before reading.
func (r *Reader) SetCacheMaxAge(maxAge time.Duration) error {
	if maxAge < 0 {
		return fmt.Errorf("%w: CacheMaxAge is negative", ErrConfig)
	}
	if maxAge == 0 {
		maxAge = DefaultCacheMaxAge
	}
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	r.cache.maxAge = maxAge
	return nil
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
	if r.subjectKeys != "" && !strings.HasPrefix(envelope.KeyName, r.subjectKeys) {
		// Refused before Vault is asked: opening it under the key it names would make the
		// reader open whatever key a producer chose, not only its subjects'.
		return nil, fmt.Errorf("%w than a data subject's: this reader opens only keys whose names start with %q",
			ErrKeyMismatch, r.subjectKeys)
	}
	return envelope, nil
}

// isSubjectKey reports whether keyName is a data subject's key of this reader, whose
// absence from Vault means the subject was forgotten.
func (r *Reader) isSubjectKey(keyName string) bool {
	return r.subjectKeys != "" && strings.HasPrefix(keyName, r.subjectKeys)
}

// forgotten is the error of every envelope under a subject's key that Vault no longer
// has. No key name: the pseudonym is not needed to count or skip such records.
func forgotten() error {
	return fmt.Errorf("%w: the transit key of this record's data subject no longer exists in Vault "+
		"(kafka-transit forget deleted it); no one can open the record", ErrSubjectForgotten)
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
			keyErr := err
			if errors.Is(err, ErrKeyNotFound) && r.isSubjectKey(keyName) {
				keyErr = forgotten()
			}
			for _, w := range missing {
				l.keyErrors[slot{keyName, w}] = keyErr
			}
			for _, t := range valueTexts {
				l.texts[t] = Result{Err: err}
			}
			continue
		}
		for i, w := range missing {
			s, answer := slot{keyName, w}, answers[i]
			switch {
			case answer.Err != "" && r.isSubjectKey(keyName) && strings.Contains(answer.Err, vaultKeyNotFound):
				// Vault fails the whole request for a missing key (ErrKeyNotFound above); a
				// Decrypter of another kind may say so per item.
				l.keyErrors[s] = forgotten()
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

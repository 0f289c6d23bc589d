package kafkatransit

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
)

// Envelope format versions (docs/envelope-format.md) and sizes.
const (
	// FormatVersion is the version kafka-transit writes: its tag covers the version byte
	// and the key name, not the wrapped key, so that the data key can be rewrapped.
	FormatVersion = 2
	// FormatVersion1 is still read: its tag covers the whole header, wrapped key included.
	FormatVersion1 = 1
	// FormatVersion3 adds a flags byte and a key commitment (docs/protected-records.md).
	FormatVersion3   = 3
	CommitmentLength = 32
	NonceLength      = 12
	TagLength        = 16
	// MaxKeyNameLength is the longest transit key name (and Kafka topic name) kafka-transit
	// accepts.
	MaxKeyNameLength = 249
)

// Why a value could not be read; match with errors.Is.
var (
	// ErrFormat: neither a kafka-transit envelope nor a Vault ciphertext text.
	ErrFormat = errors.New("not a kafka-transit envelope")
	// ErrTruncated: an envelope whose lengths run past its end, or too short for nonce and tag.
	ErrTruncated = errors.New("truncated kafka-transit envelope")
	// ErrAuthentication: the AES-GCM tag check failed (tampered, wrong key or associated data).
	ErrAuthentication = errors.New("envelope failed authentication")
	// ErrKeyName: the envelope's key name is not a transit key name, so it must not be put
	// in a Vault request path (transit/decrypt/<key name>).
	ErrKeyName = errors.New("envelope names no valid transit key")
	// ErrKeyMismatch: the envelope names another transit key than the reader's.
	ErrKeyMismatch = errors.New("envelope sealed with another Vault key")
	// ErrVault: Vault refused to decrypt, or could not be reached.
	ErrVault = errors.New("vault could not decrypt")
	// ErrConfig: the reader lacks a setting this value needs.
	ErrConfig = errors.New("kafka-transit reader misconfigured")
	// ErrKeyNotFound: Vault has no transit key of the name asked for (transit/decrypt
	// answered HTTP 400 "encryption key not found"); it also matches ErrVault. A
	// Decrypter of its own returns it (wrapped) for a key that does not exist, so that a
	// Reader with SubjectKeys can tell a forgotten subject from any other failure.
	ErrKeyNotFound = errors.New("no such transit key in Vault")
	// ErrSubjectForgotten: the envelope was sealed under the transit key of a data subject
	// (SubjectKeys) that Vault no longer has: kafka-transit forget deleted it, and no one
	// can open the record again (docs/forgetting.md). Not an ErrVault: retrying is futile.
	ErrSubjectForgotten = errors.New(forgottenText)
)

// forgottenText starts every forgotten-subject error, in every reader and in the
// runner's dead letters, so that scripts and consumers can count them.
const forgottenText = "subject forgotten"

// vaultKeyNotFound is Vault's and OpenBao's message for a transit key that does not
// exist (builtin/logical/transit/path_decrypt.go: logical.ErrorResponse, HTTP 400).
const vaultKeyNotFound = "encryption key not found"

// Envelope is a parsed envelope:
// version (0x02 or 0x01) | u16 N | key name | u16 W | wrapped key | nonce | ciphertext‖tag;
// version 3: 0x03 | flags | u16 N | key name | commitment (32) | u16 W | wrapped key | ....
type Envelope struct {
	Version    byte  // FormatVersion3, FormatVersion or FormatVersion1
	Flags      Flags // version 3's flags byte; 0 before
	Commitment []byte
	KeyName    string
	WrappedKey string // Vault's ciphertext text of the data key, "vault:vN:..."
	// Authenticated is the authenticated header, the start of the associated data: the
	// version byte and the key name (version 2), or everything before the nonce (version 1);
	// version 3: version, flags, key name and commitment.
	Authenticated []byte
	Nonce         []byte
	Sealed        []byte // ciphertext followed by the 16-byte tag
}

// LooksLikeEnvelope reports whether value starts like an envelope of a version this
// package reads (it may still be malformed).
func LooksLikeEnvelope(value []byte) bool {
	return len(value) > 0 && (value[0] == FormatVersion || value[0] == FormatVersion1 || value[0] == FormatVersion3)
}

// Parse reads an envelope's fields without decrypting. The returned slices alias envelope.
func Parse(envelope []byte) (*Envelope, error) {
	if len(envelope) == 0 {
		return nil, fmt.Errorf("%w: an empty value", ErrTruncated)
	}
	if !LooksLikeEnvelope(envelope) {
		return nil, fmt.Errorf("%w: unknown format version 0x%02x", ErrFormat, envelope[0])
	}
	at := 1
	var flags Flags
	var commitment []byte
	if envelope[0] == FormatVersion3 {
		if len(envelope) < 2 {
			return nil, fmt.Errorf("%w: cut in the flags", ErrTruncated)
		}
		var err error
		if flags, err = ParseFlags(envelope[1]); err != nil {
			return nil, err
		}
		at = 2
	}
	var fields [2]string
	var ends [2]int
	for i, name := range [2]string{"key name", "wrapped key"} {
		if len(envelope) < at+2 {
			return nil, fmt.Errorf("%w: cut in the %s", ErrTruncated, name)
		}
		length := int(binary.BigEndian.Uint16(envelope[at:]))
		if len(envelope) < at+2+length {
			return nil, fmt.Errorf("%w: cut in the %s", ErrTruncated, name)
		}
		fields[i] = string(envelope[at+2 : at+2+length])
		if i == 0 {
			if err := CheckKeyName(fields[i]); err != nil {
				return nil, err
			}
		}
		at += 2 + length
		ends[i] = at
		if i == 0 && envelope[0] == FormatVersion3 {
			if len(envelope) < at+CommitmentLength {
				return nil, fmt.Errorf("%w: cut in the key commitment", ErrTruncated)
			}
			commitment = envelope[at : at+CommitmentLength]
			at += CommitmentLength
			ends[i] = at
		}
	}
	if len(envelope)-at < NonceLength+TagLength {
		return nil, fmt.Errorf("%w: cut before the tag", ErrTruncated)
	}
	authenticated := envelope[:ends[1]] // version 1: the whole header
	if envelope[0] != FormatVersion1 {
		authenticated = envelope[:ends[0]] // versions 2 and 3: the wrapped key is left out
	}
	return &Envelope{
		Version:       envelope[0],
		Flags:         flags,
		Commitment:    commitment,
		KeyName:       fields[0],
		WrappedKey:    fields[1],
		Authenticated: authenticated,
		Nonce:         envelope[at : at+NonceLength],
		Sealed:        envelope[at+NonceLength:],
	}, nil
}

// CheckKeyName refuses a name that is not a transit key name (wrapping ErrKeyName): 1 to
// 249 of A-Z a-z 0-9 . _ -, and not "." or "..", the one rule of kafka-transit (its
// names crate). The envelope's key name comes from the record and goes into a Vault path,
// transit/decrypt/<key name>; any other name could steer the request (".." climbs, "/"
// nests). The error does not repeat the name: it is record data.
func CheckKeyName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "it is empty"
	case len(name) > MaxKeyNameLength:
		reason = "it is longer than 249 characters"
	case name == "." || name == "..":
		reason = "'.' and '..' are not names"
	default:
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				reason = "only letters, digits, '.', '_' and '-' are allowed"
				break
			}
		}
	}
	if reason != "" {
		return fmt.Errorf("%w: the key name is not a transit key name (%s)", ErrKeyName, reason)
	}
	return nil
}

// Open decrypts the envelope with its unwrapped 32-byte data key; the associated data is
// Authenticated ‖ aad (aad is empty for kafka-transit's built-in policies; for version 3
// it is the record's binding parts, Binding(...)[16:]). A version 3 envelope's commitment
// is checked first, and its body unpadded and decompressed to at most
// DefaultMaxPlaintext bytes (OpenLimit sets another bound).
func (e *Envelope) Open(dataKey, aad []byte) ([]byte, error) {
	return e.OpenLimit(dataKey, aad, DefaultMaxPlaintext)
}

// OpenLimit is Open, refusing a version 3 body that decompresses past maxPlaintext bytes.
func (e *Envelope) OpenLimit(dataKey, aad []byte, maxPlaintext int) ([]byte, error) {
	if e.Version == FormatVersion3 && !hmac.Equal(e.Commitment, commitmentOf(dataKey)) {
		return nil, fmt.Errorf("%w: the envelope's key commitment does not match its data key (its wrapped key "+
			"was swapped for another data key's)", ErrCommitment)
	}
	opened, err := e.open(dataKey, aad)
	if err != nil || e.Version != FormatVersion3 {
		return opened, err
	}
	return decodeBody(opened, e.Flags, maxPlaintext)
}

func (e *Envelope) open(dataKey, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	ad := make([]byte, 0, len(e.Authenticated)+len(aad))
	ad = append(append(ad, e.Authenticated...), aad...)
	plaintext, err := gcm.Open(nil, e.Nonce, e.Sealed, ad)
	if err != nil {
		return nil, fmt.Errorf("%w (tampered, wrong data key or wrong associated data)", ErrAuthentication)
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// Package kafkatransit reads Kafka record values that kafka-transit protected with
// Vault's transit engine (and writes format 3 records: Writer, ReadRecord; see
// docs/protected-records.md):
//
//   - envelopes written by the envelope-seal policy (docs/envelope-format.md), format
//     versions 3, 2 and 1: the data key is unwrapped with transit/decrypt, then the record is
//     opened with AES-256-GCM, the authenticated header as associated data (version byte
//     and key name in version 2, the whole header in version 1);
//   - values written by the encrypt-value policy: Vault's own ciphertext text
//     "vault:vN:base64", decrypted with transit/decrypt.
//
// Bring your own Kafka client; hand the record values to a Reader:
//
//	reader, err := kafkatransit.New(kafkatransit.Config{
//		Address: "https://vault.example:8200",
//		Token:   os.Getenv("VAULT_TOKEN"),
//		Key:     "customers",
//	})
//	plaintext, err := reader.Open(ctx, value)            // an envelope
//	plaintext, err := reader.DecryptValue(ctx, string(v)) // a vault:v1:... value
//
// Unwrapped data keys stay in a bounded LRU (one Vault request per data key, however many
// records it sealed) for at most Config.CacheMaxAge (default 60 s), are zeroed when
// evicted or expired, and never appear in errors. ReadAll reads a batch with one Vault
// request per transit key. Config.SubjectKeys reads records sealed per data subject
// (docs/forgetting.md): a record whose subject's key was deleted fails with
// ErrSubjectForgotten. A value that cannot be read is an error matching one of
// ErrFormat, ErrTruncated, ErrAuthentication, ErrKeyMismatch, ErrSubjectForgotten,
// ErrVault or ErrConfig (errors.Is), never ciphertext returned as data.
package kafkatransit

package kafkatransit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// MaxBatch is the most ciphertexts sent in one request: OpenBao refuses request bodies
// of more than 1000 JSON strings by default, and an item with a context is four of them.
const MaxBatch = 249

// MaxStrings is the most JSON strings (member names included) one request holds:
// OpenBao's 1000, less "batch_input" and one to spare. An item with a context and
// associated data is six of them, so fewer such items go in a request.
const MaxStrings = 998

// itemStrings is how many JSON strings an item puts in a request.
func itemStrings(item DecryptItem) int {
	n := 2
	if len(item.Context) > 0 {
		n += 2
	}
	if len(item.AssociatedData) > 0 {
		n += 2
	}
	return n
}

// Config says how to reach Vault (or OpenBao) and which transit key to use.
type Config struct {
	Address   string // e.g. https://vault.example:8200
	Token     string // a Vault token; or TokenFile
	TokenFile string // read at each request, so an agent can renew it; wins over Token
	Mount     string // the transit mount; default "transit"
	Namespace string // sent as X-Vault-Namespace when set
	CACert    string // PEM file of certificates to trust for https
	Key       string // transit key of vault:v values; when set, envelopes must name it too
	// SubjectKeys, instead of Key, opens records sealed per data subject
	// (docs/forgetting.md): the prefix of the subjects' transit key names, e.g.
	// "customers-". Each envelope is opened under the key its header names, which must
	// start with the prefix (ErrKeyMismatch otherwise); one whose key Vault no longer has
	// fails with ErrSubjectForgotten.
	SubjectKeys string
	CacheSize   int // unwrapped data keys kept; 0: DefaultCacheSize
	// CacheMaxAge is how long an unwrapped data key stays cached, however often it is
	// used; then it is unwrapped again. 0: DefaultCacheMaxAge (60 s). It bounds how long
	// a running reader still opens the records of a subject forgotten meanwhile.
	CacheMaxAge time.Duration
	// Records: format 3 reading (stream, RequireBinding, RecordKeysKey, MaxPlaintext).
	Records RecordOptions
	Timeout time.Duration
	// HTTPClient, when set, is used as it is (CACert and Timeout are then ignored).
	HTTPClient *http.Client
}

// String never shows the token.
func (c Config) String() string {
	return fmt.Sprintf("kafkatransit.Config{Address: %q, Mount: %q, Key: %q, SubjectKeys: %q, Namespace: %q}",
		c.Address, c.Mount, c.Key, c.SubjectKeys, c.Namespace)
}

// GoString never shows the token (%#v).
func (c Config) GoString() string { return c.String() }

// Vault calls transit/decrypt over HTTP, always with batch_input.
type Vault struct {
	http      *http.Client
	address   string
	mount     string
	token     func() (string, error)
	namespace string
}

// New is a Reader against Vault as cfg says.
func New(cfg Config) (*Reader, error) {
	vault, err := NewVault(cfg)
	if err != nil {
		return nil, err
	}
	reader := NewReader(vault, cfg.Key, cfg.CacheSize)
	if err := reader.SetSubjectKeys(cfg.SubjectKeys); err != nil {
		return nil, err
	}
	if err := reader.SetCacheMaxAge(cfg.CacheMaxAge); err != nil {
		return nil, err
	}
	if err := reader.SetRecordOptions(cfg.Records); err != nil {
		return nil, err
	}
	return reader, nil
}

// NewVault is the transit/decrypt client cfg describes.
func NewVault(cfg Config) (*Vault, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("%w: no Vault address", ErrConfig)
	}
	if cfg.Token == "" && cfg.TokenFile == "" {
		return nil, fmt.Errorf("%w: no Vault token (Token or TokenFile)", ErrConfig)
	}
	client := cfg.HTTPClient
	if client == nil {
		timeout := cfg.Timeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("%w: CA file: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: no certificate in %s", ErrConfig, cfg.CACert)
			}
			transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		client = &http.Client{Transport: transport, Timeout: timeout}
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = "transit"
	}
	token := func() (string, error) { return cfg.Token, nil }
	if cfg.TokenFile != "" {
		token = func() (string, error) {
			b, err := os.ReadFile(cfg.TokenFile)
			if err != nil {
				return "", fmt.Errorf("%w: Vault token file: %w", ErrConfig, err)
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
	return &Vault{http: client, address: strings.TrimRight(cfg.Address, "/"), mount: mount, token: token,
		namespace: cfg.Namespace}, nil
}

// Decrypt implements Decrypter with POST /v1/<mount>/decrypt/<key>, at most MaxBatch items
// and MaxStrings strings a request.
func (v *Vault) Decrypt(ctx context.Context, keyName string, ciphertexts []string) ([]Decryption, error) {
	items := make([]DecryptItem, len(ciphertexts))
	for i, c := range ciphertexts {
		items[i] = DecryptItem{Ciphertext: c}
	}
	return v.DecryptItems(ctx, keyName, items)
}

// DecryptItems implements BoundDecrypter: each item with its context and associated data.
func (v *Vault) DecryptItems(ctx context.Context, keyName string, items []DecryptItem) ([]Decryption, error) {
	// Reader only passes checked names; other callers of this exported method may not.
	if err := CheckKeyName(keyName); err != nil {
		return nil, err
	}
	out := make([]Decryption, 0, len(items))
	for start := 0; start < len(items); {
		end, strings := start, 0
		for end < len(items) && end-start < MaxBatch && strings+itemStrings(items[end]) <= MaxStrings {
			strings += itemStrings(items[end])
			end++
		}
		chunk, err := v.decryptChunk(ctx, keyName, items[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
		start = end
	}
	return out, nil
}

type batchItem struct {
	Ciphertext     string `json:"ciphertext"`
	Context        string `json:"context,omitempty"`
	AssociatedData string `json:"associated_data,omitempty"`
}

type decryptAnswer struct {
	Errors []string `json:"errors"`
	Data   struct {
		BatchResults []struct {
			Plaintext *string `json:"plaintext"`
			Error     string  `json:"error"`
		} `json:"batch_results"`
	} `json:"data"`
}

func b64(data []byte) string {
	if data == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(data)
}

func (v *Vault) decryptChunk(ctx context.Context, keyName string, chunk []DecryptItem) ([]Decryption, error) {
	items := make([]batchItem, len(chunk))
	for i, c := range chunk {
		items[i] = batchItem{Ciphertext: c.Ciphertext, Context: b64(c.Context), AssociatedData: b64(c.AssociatedData)}
	}
	status, raw, err := v.post(ctx, "decrypt", keyName, map[string]any{"batch_input": items})
	if err != nil {
		return nil, err
	}
	var answer decryptAnswer
	// Vault answers 400 with per-item errors when some items of a batch fail.
	if json.Unmarshal(raw, &answer) == nil && len(answer.Data.BatchResults) == len(chunk) {
		out := make([]Decryption, len(chunk))
		for i, item := range answer.Data.BatchResults {
			switch {
			case item.Error != "":
				out[i].Err = item.Error
			case item.Plaintext == nil:
				out[i].Err = "no plaintext in Vault's answer"
			default:
				plain, err := base64.StdEncoding.DecodeString(*item.Plaintext)
				if err != nil {
					out[i].Err = "Vault's plaintext is not base64"
				} else {
					out[i].Plaintext = plain
				}
			}
		}
		return out, nil
	}
	message := strings.Join(answer.Errors, "; ")
	if status == http.StatusBadRequest && strings.Contains(message, vaultKeyNotFound) {
		// The whole request fails, before any item: the key is gone (or never was).
		return nil, fmt.Errorf("%w: %w: HTTP %d from transit/decrypt/%s: %s", ErrVault, ErrKeyNotFound, status,
			keyName, message)
	}
	return nil, fmt.Errorf("%w: HTTP %d from transit/decrypt/%s: %s", ErrVault, status, keyName, message)
}

// post sends one transit request, POST /v1/<mount>/<operation>/<key name>, and returns
// Vault's status and body.
func (v *Vault) post(ctx context.Context, operation, keyName string, payload any) (int, []byte, error) {
	if err := CheckKeyName(keyName); err != nil {
		return 0, nil, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, nil, err
	}
	token, err := v.token()
	if err != nil {
		return 0, nil, err
	}
	endpoint := v.address + "/v1/" + escapePath(v.mount) + "/" + operation + "/" + keyName
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("X-Vault-Token", token)
	if v.namespace != "" {
		request.Header.Set("X-Vault-Namespace", v.namespace)
	}
	response, err := v.http.Do(request)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: Vault at %s is unreachable: %w", ErrVault, v.address, err)
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(response.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: reading Vault's answer: %w", ErrVault, err)
	}
	return response.StatusCode, raw, nil
}

// data posts one transit request and decodes its "data" on success.
func (v *Vault) data(ctx context.Context, operation, keyName string, payload any, out any) error {
	status, raw, err := v.post(ctx, operation, keyName, payload)
	if err != nil {
		return err
	}
	var answer struct {
		Errors []string        `json:"errors"`
		Data   json.RawMessage `json:"data"`
	}
	if json.Unmarshal(raw, &answer) != nil || status >= 300 || len(answer.Data) == 0 ||
		json.Unmarshal(answer.Data, out) != nil {
		return fmt.Errorf("%w: HTTP %d from transit/%s/%s: %s", ErrVault, status, operation, keyName,
			strings.Join(answer.Errors, "; "))
	}
	return nil
}

// DataKey implements Transit with datakey/plaintext: a fresh 256-bit data key (the caller
// wipes it) and Vault's wrapping of it.
func (v *Vault) DataKey(ctx context.Context, keyName string) ([]byte, string, error) {
	var data struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
	}
	if err := v.data(ctx, "datakey/plaintext", keyName, map[string]any{}, &data); err != nil {
		return nil, "", err
	}
	key, err := base64.StdEncoding.DecodeString(data.Plaintext)
	if err != nil || len(key) != 32 {
		return nil, "", fmt.Errorf("%w: Vault's data key is not 256 bits of base64", ErrVault)
	}
	return key, data.Ciphertext, nil
}

// Encrypt implements Transit: encrypt with an optional context and associated data.
func (v *Vault) Encrypt(ctx context.Context, keyName string, plaintext, context, associatedData []byte) (string, error) {
	payload := map[string]string{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	if context != nil {
		payload["context"] = b64(context)
	}
	if associatedData != nil {
		payload["associated_data"] = b64(associatedData)
	}
	var data struct {
		Ciphertext string `json:"ciphertext"`
	}
	err := v.data(ctx, "encrypt", keyName, payload, &data)
	return data.Ciphertext, err
}

// HMAC implements Transit: Vault's HMAC-SHA256 of input.
func (v *Vault) HMAC(ctx context.Context, keyName string, input []byte) (string, error) {
	var data struct {
		HMAC string `json:"hmac"`
	}
	err := v.data(ctx, "hmac", keyName, map[string]string{"input": base64.StdEncoding.EncodeToString(input)}, &data)
	return data.HMAC, err
}

func escapePath(path string) string {
	parts := strings.Split(path, "/")
	for i, part := range parts {
		parts[i] = url.PathEscape(part)
	}
	return strings.Join(parts, "/")
}

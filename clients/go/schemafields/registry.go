package schemafields

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// SchemaType is one of the three schema types of a Confluent-compatible registry.
type SchemaType string

const (
	Avro     SchemaType = "AVRO"
	Protobuf SchemaType = "PROTOBUF"
	JSON     SchemaType = "JSON"
)

// Reference is a schema another one references (directly or not), under the name the
// referencing schema uses: an Avro full name, a .proto import path, a JSON Schema $ref.
type Reference struct {
	Name string
	Text string
}

// RegisteredSchema is a schema as the registry returns it, its references resolved.
type RegisteredSchema struct {
	Type SchemaType
	// Avro: the schema's JSON. JSON Schema: the schema document. Protobuf: the .proto
	// text, or a base64 FileDescriptorProto (what Apicurio keeps for schemas registered
	// by the Python serializer).
	Text       string
	References []Reference
}

// Registry gives the writer schema of a schema id. *RegistryClient implements it over
// HTTP; tests and other registry clients can stand in.
type Registry interface {
	// SchemaByID returns the schema of id with every schema it references. An id the
	// registry does not have is ErrUnknownSchema; a registry that cannot be asked (down,
	// failing, refusing the credentials) is ErrRegistry.
	SchemaByID(ctx context.Context, id uint32) (*RegisteredSchema, error)
}

// RegistryConfig says how to reach a Confluent-compatible Schema Registry (Confluent's,
// Confluent Cloud, Apicurio's /apis/ccompat/v7, ...).
type RegistryConfig struct {
	URL string // e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7
	// Basic auth (Confluent Cloud: an API key and its secret), or a bearer Token.
	Username string
	Password string
	Token    string
	CACert   string // PEM file of certificates to trust for https
	Timeout  time.Duration
	// HTTPClient, when set, is used as it is (CACert and Timeout are then ignored).
	HTTPClient *http.Client
}

// String never shows the password or the token.
func (c RegistryConfig) String() string {
	return fmt.Sprintf("schemafields.RegistryConfig{URL: %q, Username: %q}", c.URL, c.Username)
}

// GoString never shows the password or the token (%#v).
func (c RegistryConfig) GoString() string { return c.String() }

// maxReferences bounds the schemas one schema may pull in, directly or not.
const maxReferences = 64

// RegistryClient asks a registry for schemas: GET {url}/schemas/ids/{id}, then
// /subjects/{subject}/versions/{version} for each reference, depth first, each name once.
type RegistryClient struct {
	http          *http.Client
	base          string
	authorization string
}

// NewRegistry is the registry client cfg describes.
func NewRegistry(cfg RegistryConfig) (*RegistryClient, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: no Schema Registry URL", ErrConfig)
	}
	if cfg.Token != "" && (cfg.Username != "" || cfg.Password != "") {
		return nil, fmt.Errorf("%w: the registry takes basic auth or a bearer token, not both", ErrConfig)
	}
	client := cfg.HTTPClient
	if client == nil {
		timeout := cfg.Timeout
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("%w: registry CA file: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: no certificate in %s", ErrConfig, cfg.CACert)
			}
			transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		client = &http.Client{Transport: transport, Timeout: timeout}
	}
	r := &RegistryClient{http: client, base: strings.TrimRight(cfg.URL, "/")}
	switch {
	case cfg.Token != "":
		r.authorization = "Bearer " + cfg.Token
	case cfg.Username != "":
		r.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password))
	}
	return r, nil
}

// registered is what /schemas/ids/{id} and /subjects/{s}/versions/{v} answer (the latter
// has more fields, ignored).
type registered struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType"`
	References []struct {
		Name    string      `json:"name"`
		Subject string      `json:"subject"`
		Version json.Number `json:"version"`
	} `json:"references"`
}

// SchemaByID implements Registry.
func (r *RegistryClient) SchemaByID(ctx context.Context, id uint32) (*RegisteredSchema, error) {
	var root registered
	found, err := r.get(ctx, fmt.Sprintf("/schemas/ids/%d", id), &root)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: the registry has no schema id %d", ErrUnknownSchema, id)
	}
	schema := &RegisteredSchema{Text: root.Schema}
	switch root.SchemaType {
	case "", "AVRO": // Confluent's API leaves schemaType out for Avro.
		schema.Type = Avro
	case "PROTOBUF":
		schema.Type = Protobuf
	case "JSON":
		schema.Type = JSON
	default:
		return nil, fmt.Errorf("%w: schema id %d has the unknown schemaType %q", ErrRegistry, id, root.SchemaType)
	}
	pending := root.References
	for i, j := 0, len(pending)-1; i < j; i, j = i+1, j-1 {
		pending[i], pending[j] = pending[j], pending[i]
	}
	seen := map[string]bool{}
	for len(pending) > 0 {
		ref := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		if seen[ref.Name] {
			continue
		}
		if len(schema.References) == maxReferences {
			return nil, fmt.Errorf("%w: schema id %d references more than %d schemas", ErrSchema, id, maxReferences)
		}
		seen[ref.Name] = true
		var referenced registered
		found, err := r.get(ctx, "/subjects/"+pathSegment(ref.Subject)+"/versions/"+pathSegment(ref.Version.String()),
			&referenced)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%w: schema id %d references subject %q version %s, which the registry does not have",
				ErrSchema, id, ref.Subject, ref.Version)
		}
		for i := len(referenced.References) - 1; i >= 0; i-- {
			pending = append(pending, referenced.References[i])
		}
		schema.References = append(schema.References, Reference{Name: ref.Name, Text: referenced.Schema})
	}
	return schema, nil
}

// get GETs path and decodes the answer into out; false for a 404.
func (r *RegistryClient) get(ctx context.Context, path string, out any) (bool, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return false, fmt.Errorf("%w: registry URL: %w", ErrConfig, err)
	}
	request.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if r.authorization != "" {
		request.Header.Set("Authorization", r.authorization)
	}
	response, err := r.http.Do(request)
	if err != nil {
		return false, fmt.Errorf("%w: %s is unreachable: %w", ErrRegistry, r.base, errors.Unwrap(err))
	}
	defer response.Body.Close()
	switch status := response.StatusCode; {
	case status == http.StatusNotFound:
		io.Copy(io.Discard, io.LimitReader(response.Body, 1<<16))
		return false, nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return false, fmt.Errorf("%w: %s refused the credentials (%d)", ErrRegistry, r.base, status)
	case status < 200 || status > 299:
		return false, fmt.Errorf("%w: %s answered %d to GET %s", ErrRegistry, r.base, status, path)
	}
	body, err := io.ReadAll(io.LimitReader(response.Body, 16<<20))
	if err != nil {
		return false, fmt.Errorf("%w: reading %s's answer: %w", ErrRegistry, r.base, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return false, fmt.Errorf("%w: GET %s: the answer is not a schema: %w", ErrRegistry, path, err)
	}
	return true, nil
}

// pathSegment is text as one URL path segment (a subject may hold "/").
func pathSegment(text string) string {
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

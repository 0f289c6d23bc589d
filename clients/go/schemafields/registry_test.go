package schemafields

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// registryServer is a Confluent-compatible registry over HTTP: Protobuf schema 21
// referencing subject "confluent/meta.proto" version 1, which references nothing more;
// JSON schema 22 referencing a.json, which references b.json.
func registryServer(t *testing.T, authorization string) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var paths []string
	answers := map[string]any{
		"/schemas/ids/21": map[string]any{"schemaType": "PROTOBUF", "schema": protoCustomer,
			"references": []any{map[string]any{"name": "confluent/meta.proto", "subject": "confluent/meta.proto", "version": 1}}},
		"/subjects/confluent%2Fmeta.proto/versions/1": map[string]any{"subject": "confluent/meta.proto", "version": 1,
			"id": 20, "schemaType": "PROTOBUF", "schema": builtinProtos["confluent/meta.proto"]},
		"/schemas/ids/22": map[string]any{"schemaType": "JSON", "schema": `{"properties": {"a": {"$ref": "a.json"}}}`,
			"references": []any{map[string]any{"name": "a.json", "subject": "a", "version": 3}}},
		"/subjects/a/versions/3": map[string]any{"schemaType": "JSON", "schema": `{"$ref": "b.json"}`,
			"references": []any{map[string]any{"name": "b.json", "subject": "b", "version": 1}}},
		"/subjects/b/versions/1": map[string]any{"schemaType": "JSON",
			"schema": `{"type": "object", "properties": {"s": {"type": "string", "confluent:tags": ["PII"]}}}`},
		"/schemas/ids/23": map[string]any{"schema": avroCustomer},
		"/schemas/ids/24": map[string]any{"schemaType": "JSON", "schema": `{}`,
			"references": []any{map[string]any{"name": "gone.json", "subject": "gone", "version": 1}}},
	}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RawPath+"|"+r.URL.Path)
		mu.Unlock()
		if r.Header.Get("Authorization") != authorization {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/schemas/ids/500" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		path := r.URL.EscapedPath()
		answer, ok := answers[path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_code": 40403, "message": "Schema not found"}`)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(server.Close)
	return server, &paths
}

func TestRegistryClient(t *testing.T) {
	for _, auth := range []struct {
		config RegistryConfig
		header string
	}{
		{RegistryConfig{}, ""},
		{RegistryConfig{Username: "key", Password: "s3cret"}, "Basic " + base64.StdEncoding.EncodeToString([]byte("key:s3cret"))},
		{RegistryConfig{Token: "tok"}, "Bearer tok"},
	} {
		server, _ := registryServer(t, auth.header)
		config := auth.config
		config.URL = server.URL + "/"
		registry, err := NewRegistry(config)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		schema, err := registry.SchemaByID(ctx, 21)
		if err != nil {
			t.Fatal(err)
		}
		if schema.Type != Protobuf || len(schema.References) != 1 || schema.References[0].Name != "confluent/meta.proto" {
			t.Errorf("%+v", schema)
		}
		schema, err = registry.SchemaByID(ctx, 22)
		if err != nil || schema.Type != JSON || len(schema.References) != 2 || schema.References[1].Name != "b.json" {
			t.Errorf("%+v %v", schema, err)
		}
		if schema, err = registry.SchemaByID(ctx, 23); err != nil || schema.Type != Avro {
			t.Errorf("Avro without schemaType: %+v %v", schema, err)
		}
		mustErr(t, "unknown id", second(registry.SchemaByID(ctx, 99)), ErrUnknownSchema)
		mustErr(t, "a reference gone", second(registry.SchemaByID(ctx, 24)), ErrSchema)
		mustErr(t, "5xx", second(registry.SchemaByID(ctx, 500)), ErrRegistry)
		if auth.header != "" {
			anonymous, _ := NewRegistry(RegistryConfig{URL: server.URL})
			_, err := anonymous.SchemaByID(ctx, 21)
			mustErr(t, "no credentials", err, ErrRegistry)
			if !strings.Contains(err.Error(), "refused the credentials (401)") {
				t.Errorf("%v", err)
			}
		}
		if strings.Contains(fmt.Sprintf("%v %+v %#v", config, config, config), "s3cret") {
			t.Error("the password shows")
		}
	}
	dead, _ := NewRegistry(RegistryConfig{URL: "http://127.0.0.1:1"})
	mustErr(t, "unreachable", second(dead.SchemaByID(context.Background(), 1)), ErrRegistry)
	_, err := NewRegistry(RegistryConfig{URL: "http://x", Username: "u", Token: "t"})
	mustErr(t, "both", err, ErrConfig)
}

// The whole way: the registry over HTTP and Vault's transit/decrypt over HTTP through the
// root package's client, one request with batch_input (contexts in base64).
func TestOverHTTP(t *testing.T) {
	registryURL, _ := registryServer(t, "Bearer tok")
	transit := newFakeTransit()
	var requests []map[string]any
	var mu sync.Mutex
	vaultServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BatchInput []struct {
				Ciphertext string `json:"ciphertext"`
				Context    string `json:"context"`
			} `json:"batch_input"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		requests = append(requests, map[string]any{"path": r.URL.Path, "token": r.Header.Get("X-Vault-Token"),
			"items": len(body.BatchInput)})
		mu.Unlock()
		items := make([]kafkatransit.DecryptItem, len(body.BatchInput))
		for i, in := range body.BatchInput {
			items[i].Ciphertext = in.Ciphertext
			if in.Context != "" {
				items[i].Context, _ = base64.StdEncoding.DecodeString(in.Context)
			}
		}
		answers, _ := transit.DecryptItems(r.Context(), "customers", items)
		var results []map[string]any
		for _, a := range answers {
			if a.Err != "" {
				results = append(results, map[string]any{"error": a.Err})
			} else {
				results = append(results, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(a.Plaintext)})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"batch_results": results}})
	}))
	defer vaultServer.Close()
	reader, err := New(Config{
		Vault:    kafkatransit.Config{Address: vaultServer.URL, Token: "s.reader"},
		Registry: RegistryConfig{URL: registryURL.URL, Token: "tok"},
		Options:  Options{Key: "customers", Deterministic: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := protector{vault: transit, key: "customers", deterministic: true}
	q := func(path, s string) string {
		b, _ := json.Marshal(p.text(path, s))
		return string(b)
	}
	var records []Record
	for i := 0; i < 300; i++ {
		records = append(records, Record{Value: frame(22, []byte(`{"a": {"s": `+q("/a/s", fmt.Sprint("secret ", i))+`}}`))})
	}
	for i, result := range reader.OpenAll(context.Background(), records) {
		if result.Err != nil || string(result.Opened.Wire[5:]) != fmt.Sprintf(`{"a": {"s": "secret %d"}}`, i) {
			t.Fatalf("record %d: %v", i, result.Err)
		}
	}
	// 300 fields with a context: two requests (249 items at most, for OpenBao's 1000 JSON strings).
	if len(requests) != 2 || requests[0]["path"] != "/v1/transit/decrypt/customers" || requests[0]["token"] != "s.reader" ||
		requests[0]["items"] != 249 || requests[1]["items"] != 51 {
		t.Errorf("requests %v", requests)
	}
}

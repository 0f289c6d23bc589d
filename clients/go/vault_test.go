package kafkatransit

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// OpenBao refuses a request body of more than 1000 JSON strings ("refused JSON input due
// to high complexity"), member names included: batches are cut by strings, not only by
// items, whatever each item carries.
func TestRequestsStayWithinOpenBaosStringLimit(t *testing.T) {
	var perRequest []int
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Count(string(body), `"`)/2 > 1000 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":["refused JSON input due to high complexity: exceeded maximum number of strings"]}`))
			return
		}
		items := strings.Count(string(body), `"ciphertext"`)
		perRequest = append(perRequest, items)
		results := make([]map[string]string, items)
		for i := range results {
			results[i] = map[string]string{"plaintext": "AA=="}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"batch_results": results}})
	}))
	defer server.Close()
	vault, err := NewVault(Config{Address: server.URL, Token: "s.reader-token"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ context, ad []byte }{{nil, nil}, {[]byte{1}, nil}, {[]byte{1}, []byte{2}}} {
		perRequest = nil
		items := make([]DecryptItem, 1000)
		for i := range items {
			items[i] = DecryptItem{Ciphertext: "vault:v1:AAAA", Context: c.context, AssociatedData: c.ad}
		}
		results, err := vault.DecryptItems(context.Background(), "customers", items)
		if err != nil {
			t.Fatalf("context %v, associated data %v: %v", c.context, c.ad, err)
		}
		if len(results) != 1000 {
			t.Fatalf("%d results", len(results))
		}
		want := min(MaxBatch, MaxStrings/itemStrings(items[0]))
		if perRequest[0] != want {
			t.Errorf("context %v, associated data %v: %d items in the first request, want %d",
				c.context, c.ad, perRequest[0], want)
		}
	}
}

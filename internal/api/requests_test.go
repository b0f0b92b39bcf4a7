package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/api/client"
)

// unixHTTP returns an HTTP client of the server at socket path.
func unixHTTP(t *testing.T, path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// TestClearTrailingData: a clear request with data after its JSON object
// is refused (400) and clears nothing, also when that data is a stray "}"
// or "]", before which json.Decoder.More reports no more data.
func TestClearTrailingData(t *testing.T) {
	f := newFake()
	s := serve(t, f, api.Options{})
	hc := unixHTTP(t, s.Path())
	for _, body := range []string{`{"id": 1}}`, `{"all": true}]`} {
		resp, err := hc.Post("http://inspectd/v1/clear", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /v1/clear %s: %d %s, want 400 (data after the JSON object)", body, resp.StatusCode, b)
		}
	}
	if len(f.cleared) != 0 || f.clearAll != 0 {
		t.Errorf("malformed requests cleared sessions %v and %d times all", f.cleared, f.clearAll)
	}
}

// TestWatchRepeatedKind: as /v1/sessions refuses a filter given twice,
// /v1/watch refuses kind given twice rather than stream the first kind
// only and leave the second unchecked.
func TestWatchRepeatedKind(t *testing.T) {
	s := serve(t, newFake(), api.Options{})
	hc := unixHTTP(t, s.Path())
	resp, err := hc.Get("http://inspectd/v1/watch?" + url.Values{"kind": {"deny", "bogus-kind"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("watch with kind=deny&kind=bogus-kind: %s, want 400 (the second kind is ignored unchecked)", resp.Status)
	}
}

// TestSessionsMappedPrefix: sessions hold IPv4 addresses unmapped, and a
// filter's IPv4-mapped address or prefix is unmapped too
// (::ffff:192.0.2.0/120 is 192.0.2.0/24), so both find what the IPv4 form
// finds; a mapped prefix shorter than /96 is refused.
func TestSessionsMappedPrefix(t *testing.T) {
	if f, err := api.ParseSessionFilter(url.Values{"addr": {"::ffff:192.0.2.0/120"}}); err != nil || f.Addr.String() != "192.0.2.0/24" {
		t.Errorf("::ffff:192.0.2.0/120: %v, %v", f.Addr, err)
	}
	if _, err := api.ParseSessionFilter(url.Values{"addr": {"::ffff:0.0.0.0/90"}}); err == nil {
		t.Error("a mapped /90 accepted")
	}
	s := serve(t, newFake(), api.Options{})
	c := client.New(s.Path(), "test")
	single, err := api.ParseSessionFilter(url.Values{"addr": {"::ffff:192.0.2.10"}})
	if err != nil {
		t.Fatal(err)
	}
	got1, err := c.Sessions(ctx(t), single)
	if err != nil {
		t.Fatal(err)
	}
	f, err := api.ParseSessionFilter(url.Values{"addr": {"::ffff:192.0.2.0/120"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Sessions(ctx(t), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got1) == 0 || len(got) != len(got1) {
		t.Errorf("addr=::ffff:192.0.2.10 finds %d sessions, addr=::ffff:192.0.2.0/120 (filter %v) finds %d: %s",
			len(got1), f.Addr, len(got), fmt.Sprint(got))
	}
}

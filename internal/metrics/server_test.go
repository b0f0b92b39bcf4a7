package metrics

import (
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/conntest"
)

// listen makes a metrics server over fake with opts.
func listen(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", fake{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// limits shortens the server's timeouts and sets its connection cap.
func limits(header, idle time.Duration, conns int) Option {
	return func(c *config) {
		c.readHeaderTimeout, c.readTimeout, c.writeTimeout, c.idleTimeout = header, time.Minute, time.Minute, idle
		c.maxConns = conns
	}
}

func TestConnectionCap(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := listen(t, limits(timeout, time.Minute, 3))
	conntest.Serve(t, s)
	start := time.Now()
	var idle []net.Conn
	for range 3 {
		idle = append(idle, conntest.Dial(t, "tcp", s.Addr().String()))
	}
	// A fourth client waits in the backlog until the server drops the
	// idle ones, which never send a request; then it is served.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "inspectd_watch_lost_total 6") {
		t.Errorf("scrape over the cap: %s\n%.200s", resp.Status, b)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("served after %v, before the idle connections had timed out", d)
	}
	for _, c := range idle {
		conntest.WaitClosed(t, c)
	}
}

func TestSlowClients(t *testing.T) {
	const header, idle = 300 * time.Millisecond, 400 * time.Millisecond
	s := listen(t, limits(header, idle, 8))
	conntest.Serve(t, s)

	// Slowloris: a header never finished.
	conntest.UnfinishedHeader(t, conntest.Dial(t, "tcp", s.Addr().String()), "/metrics", header*9/10)
	// A kept-alive connection is closed once idle.
	conntest.IdleAfterRequest(t, conntest.Dial(t, "tcp", s.Addr().String()), "/", idle*9/10)
}

func TestErrorLog(t *testing.T) {
	lines := make(chan string, 10)
	s := listen(t, ErrorLog(log.New(conntest.Lines(lines), "", 0)))
	s.ln = &conntest.FailOnce{Listener: s.ln}
	conntest.Serve(t, s)
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "http: Accept error: accept tcp: accept4: too many open files; retrying") {
			t.Errorf("logged %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing logged")
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatalf("after the accept error: %v", err)
	}
	resp.Body.Close()
}

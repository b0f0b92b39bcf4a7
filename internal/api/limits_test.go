package api_test

import (
	"io"
	"log"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/api/client"
	"github.com/inspectd/inspectd/internal/conntest"
)

func TestConnectionCap(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := serve(t, newFake(), api.WithLimits(api.Options{},
		api.Limits{ReadHeader: timeout, Read: time.Minute, Write: time.Minute, Idle: time.Minute, Conns: 3}))
	start := time.Now()
	var idle []net.Conn
	for range 3 {
		idle = append(idle, conntest.Dial(t, "unix", s.Path()))
	}
	// A fourth client waits in the backlog until the server drops the
	// idle ones, which never send a request; then it is served.
	v, err := client.New(s.Path(), "test").Version(ctx(t))
	if err != nil || v.API != api.APIVersion {
		t.Fatalf("version over the cap: %+v, %v", v, err)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("served after %v, before the idle connections had timed out", d)
	}
	for _, c := range idle {
		conntest.WaitClosed(t, c)
	}
}

func TestSlowClients(t *testing.T) {
	const header, read, idle = 300 * time.Millisecond, 600 * time.Millisecond, 400 * time.Millisecond
	s := serve(t, newFake(), api.WithLimits(api.Options{},
		api.Limits{ReadHeader: header, Read: read, Write: time.Minute, Idle: idle, Conns: 8}))

	// Slowloris: a header never finished.
	conntest.UnfinishedHeader(t, conntest.Dial(t, "unix", s.Path()), "/v1/version", header*9/10)

	// A body never finished: the request fails at Read.
	c := conntest.Dial(t, "unix", s.Path())
	start := time.Now()
	io.WriteString(c, "POST /v1/clear HTTP/1.1\r\nHost: inspectd\r\nContent-Length: 100\r\n\r\n{\"id\":")
	if conntest.WaitClosed(t, c); time.Since(start) < read*9/10 {
		t.Errorf("unfinished body dropped after %v, before Read", time.Since(start))
	}

	// A kept-alive connection is closed after Idle.
	conntest.IdleAfterRequest(t, conntest.Dial(t, "unix", s.Path()), "/v1/version", idle*9/10)
}

func TestWatchOutlivesTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	f := newFake()
	s := serve(t, f, api.WithLimits(api.Options{},
		api.Limits{ReadHeader: timeout, Read: timeout, Write: timeout, Idle: timeout, Conns: 8}))
	c := client.New(s.Path(), "test")
	st, err := c.Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 3 {
		time.Sleep(3 * timeout)
		f.hub.Publish(inspect.Event{Kind: inspect.Note, Time: t0, Reason: "still here"})
		if ev, err := st.Next(); err != nil || ev.Kind != "note" {
			t.Fatalf("event %d after %v: %+v, %v", i, time.Duration(i+1)*3*timeout, ev, err)
		}
	}
}

func TestErrorLog(t *testing.T) {
	lines := make(chan string, 10)
	s, err := api.NewServer(newFake(), api.Options{Path: filepath.Join(t.TempDir(), "inspectd.sock"),
		ErrorLog: log.New(conntest.Lines(lines), "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	api.WrapListener(s, func(ln net.Listener) net.Listener { return &conntest.FailOnce{Listener: ln} })
	conntest.Serve(t, s)
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "http: Accept error: accept unix: accept4: too many open files; retrying") {
			t.Errorf("logged %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing logged")
	}
	if _, err := client.New(s.Path(), "test").Version(ctx(t)); err != nil {
		t.Errorf("after the accept error: %v", err)
	}
}

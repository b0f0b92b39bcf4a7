package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/conntest"
)

func TestSocketPath(t *testing.T) {
	t.Setenv(EnvSocket, "")
	if got := SocketPath(""); got != api.DefaultSocket {
		t.Errorf("default = %q", got)
	}
	t.Setenv(EnvSocket, "/tmp/env.sock")
	if got := SocketPath(""); got != "/tmp/env.sock" {
		t.Errorf("env = %q", got)
	}
	if got := SocketPath("/tmp/flag.sock"); got != "/tmp/flag.sock" {
		t.Errorf("flag = %q", got)
	}
}

func TestExplain(t *testing.T) {
	c := New("/run/x.sock", "test")
	for _, tc := range []struct {
		err  error
		is   error
		text string
	}{
		{syscall.ENOENT, ErrNotRunning, "no socket at /run/x.sock"},
		{syscall.ECONNREFUSED, ErrNotRunning, "stale socket"},
		{syscall.EACCES, ErrPermission, "for root"},
		{syscall.ENOTSOCK, ErrNotSocket, "/run/x.sock is not a socket"},
		{syscall.EIO, syscall.EIO, "control socket /run/x.sock"},
	} {
		err := c.explain(tc.err)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%v: %v", tc.err, err)
		}
	}
}

// A directory or a regular file refuses connections as a dead daemon's
// socket does; the error must say what the path really is.
func TestNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{dir: "directory", file: "regular file"} {
		_, err := New(path, "test").Stats(context.Background())
		want := fmt.Sprintf("%s is not a socket (it is a %s); point --socket or %s", path, kind, EnvSocket)
		if !errors.Is(err, ErrNotSocket) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q...", kind, err, want)
		}
	}
}

// serve serves h on a socket and returns its path.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return path
}

func TestNoAnswer(t *testing.T) {
	c := New(conntest.Hang(t), "test")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Stats(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stats: %v, want the deadline", err)
	}
	start := time.Now()
	if _, err := c.WatchWithin(context.Background(), 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WatchWithin: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WatchWithin gave up after %v", d)
	}
}

// The wait bounds opening the stream only: events that come later than
// it still arrive.
func TestWatchWithinOpenStream(t *testing.T) {
	path := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(200 * time.Millisecond)
		fmt.Fprintln(w, `{"kind":"deny"}`)
		w.(http.Flusher).Flush()
		fmt.Fprintln(w, `not JSON`)
	})
	st, err := New(path, "test").WatchWithin(context.Background(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ev, err := st.Next(); err != nil || ev.Kind != "deny" {
		t.Errorf("Next = %v, %v; want the deny event", ev, err)
	}
	if _, err := st.Next(); err == nil || !strings.HasPrefix(err.Error(), "bad event from the daemon: ") {
		t.Errorf("bad event: %v", err)
	}
}

// Errors leave the "inspectd VERB:" prefix to the CLI.
func TestBadAnswer(t *testing.T) {
	path := serve(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "not JSON") })
	_, err := New(path, "test").Stats(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "bad answer to /v1/stats: ") {
		t.Errorf("bad answer: %v", err)
	}
}

// Package conntest helps tests of servers that must drop slow or idle
// clients: it dials raw connections and waits for the server to close
// them.
package conntest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Dial connects to address on network without speaking any protocol; the
// connection is closed when the test ends.
func Dial(t testing.TB, network, address string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitClosed reads c until the server closes it and returns how long that
// took; it fails the test if c is still open after five seconds.
func WaitClosed(t testing.TB, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("connection still open: %v", err)
	}
	return time.Since(start)
}

// FailOnce is a listener whose first Accept fails as when the process is
// out of file descriptors (EMFILE); later ones accept from Listener.
type FailOnce struct {
	net.Listener
	failed atomic.Bool
}

// Accept fails the first time, then accepts from l.Listener.
func (l *FailOnce) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Lines is an io.Writer that sends each write (a log line) to the
// channel; give it to log.New to watch what a server logs.
type Lines chan string

// Write sends p to the channel.
func (w Lines) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// Hang returns the path of a unix socket that takes connections and never
// answers, closed when the test ends.
func Hang(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return path
}

// UnfinishedHeader sends on c an HTTP request for path whose header never
// ends (slowloris) and checks that the server closes c, not sooner than
// min (its header timeout, give or take).
func UnfinishedHeader(t testing.TB, c net.Conn, path string, min time.Duration) {
	t.Helper()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: inspectd\r\n")
	if d := WaitClosed(t, c); d < min {
		t.Errorf("unfinished header dropped after %v, before the header timeout", d)
	}
}

// IdleAfterRequest makes one kept-alive HTTP request for path on c, then
// checks that the server closes the idle connection, not sooner than min
// (its idle timeout, give or take).
func IdleAfterRequest(t testing.TB, c net.Conn, path string, min time.Duration) {
	t.Helper()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: inspectd\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("%s: %s, close %v", path, resp.Status, resp.Close)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d < min {
		t.Errorf("idle connection closed after %v, before the idle timeout", d)
	}
}

// Server is an HTTP server under test: it serves until closed.
type Server interface {
	Serve() error
	Close() error
}

// Serve runs s.Serve on a goroutine until the end of the test, then
// closes s and checks that both ended without error.
func Serve(t testing.TB, s Server) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// Package conntest helps tests of servers that must drop slow or idle
// clients: it dials raw connections and waits for the server to close
// them.
package conntest

import (
	"io"
	"net"
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

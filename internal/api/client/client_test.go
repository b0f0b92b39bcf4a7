package client

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/inspectd/inspectd/internal/api"
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
		{syscall.ENOTSOCK, syscall.ENOTSOCK, "is not a socket"},
		{syscall.EIO, syscall.EIO, "control socket /run/x.sock"},
	} {
		err := c.explain(tc.err)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%v: %v", tc.err, err)
		}
	}
}

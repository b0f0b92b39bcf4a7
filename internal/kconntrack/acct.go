package kconntrack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// accountingPath is the sysctl that turns the kernel's per-connection
// packet and byte counters on.
const accountingPath = "/proc/sys/net/netfilter/nf_conntrack_acct"

// EnableAccounting turns on the kernel's per-connection packet and byte
// counters (sysctl net.netfilter.nf_conntrack_acct) in the calling
// thread's network namespace; connections created from then on are
// counted. It returns restore, which turns them off again if they were
// off before, so that the caller leaves the setting as it found it; when
// they were on already, restore does nothing.
//
// The setting a run found outlives a crash: before turning the counters
// on, EnableAccounting leaves a note in dir (one per network namespace).
// A later run that finds the note knows that the counters were off
// before a run that could not restore them, and its restore does so and
// removes the note.
func EnableAccounting(dir string) (restore func() error, err error) {
	note, err := accountingNote(dir)
	if err != nil {
		return nil, err
	}
	restore = func() error {
		if err := os.WriteFile(accountingPath, []byte("0\n"), 0o644); err != nil {
			return fmt.Errorf("kconntrack: accounting: %w", err)
		}
		if err := os.Remove(note); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kconntrack: accounting: %w", err)
		}
		return nil
	}
	b, err := os.ReadFile(accountingPath)
	if err != nil {
		return nil, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	if _, err := os.Stat(note); err == nil {
		// An earlier run turned the counters on and did not get to
		// turn them off: they were off before it.
		if string(bytes.TrimSpace(b)) == "0" {
			if err := os.WriteFile(accountingPath, []byte("1\n"), 0o644); err != nil {
				return nil, fmt.Errorf("kconntrack: accounting: %w", err)
			}
		}
		return restore, nil
	}
	if string(bytes.TrimSpace(b)) != "0" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	if err := os.WriteFile(note, []byte("net.netfilter.nf_conntrack_acct was 0 before inspectd turned it on\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	if err := os.WriteFile(accountingPath, []byte("1\n"), 0o644); err != nil {
		os.Remove(note)
		return nil, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	return restore, nil
}

// accountingNote is the path of EnableAccounting's note in dir for the
// calling thread's network namespace (the sysctl is per namespace).
func accountingNote(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("kconntrack: accounting: network namespace: %w", err)
	}
	return filepath.Join(dir, fmt.Sprintf("acct-was-off.net-%d", st.Ino)), nil
}

// liberalPath is the sysctl that stops the kernel's TCP tracker from
// checking segments against the window.
const liberalPath = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"

// LiberalTCP reports whether the kernel's TCP tracker is liberal (sysctl
// net.netfilter.nf_conntrack_tcp_be_liberal = 1) in the calling thread's
// network namespace: it then finds out-of-window segments valid, so the
// hooks cannot drop them for the connections the fast path carries.
func LiberalTCP() (bool, error) {
	b, err := os.ReadFile(liberalPath)
	if err != nil {
		return false, fmt.Errorf("kconntrack: %w", err)
	}
	return string(bytes.TrimSpace(b)) != "0", nil
}

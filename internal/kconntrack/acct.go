package kconntrack

import (
	"bytes"
	"fmt"
	"os"
)

// accountingPath is the sysctl that turns the kernel's per-connection
// packet and byte counters on.
const accountingPath = "/proc/sys/net/netfilter/nf_conntrack_acct"

// EnableAccounting turns on the kernel's per-connection packet and byte
// counters (sysctl net.netfilter.nf_conntrack_acct) in the calling
// thread's network namespace; connections created from then on are
// counted. It reports whether they were on already, so that the caller can
// leave the setting as it found it (DisableAccounting).
func EnableAccounting() (wasOn bool, err error) {
	b, err := os.ReadFile(accountingPath)
	if err != nil {
		return false, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	if string(bytes.TrimSpace(b)) != "0" {
		return true, nil
	}
	if err := os.WriteFile(accountingPath, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("kconntrack: accounting: %w", err)
	}
	return false, nil
}

// DisableAccounting turns the kernel's per-connection counters off again.
func DisableAccounting() error {
	if err := os.WriteFile(accountingPath, []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("kconntrack: accounting: %w", err)
	}
	return nil
}

package lab

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Tools lists the programs the lab and the end-to-end tests run.
var Tools = []string{"ip", "sysctl", "ss", "vsftpd", "in.tftpd", "tftp", "curl", "lftp", "tcpdump", "iptables", "ip6tables", "conntrack"}

// Require skips the test unless it runs as root with every tool in Tools
// installed. When the environment variable CI is "true" it fails instead:
// end-to-end tests must not silently skip in CI.
func Require(t testing.TB) {
	t.Helper()
	if msg := missing(); msg != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab: %s (CI=true, so this fails instead of skipping)", msg)
		}
		t.Skipf("lab: %s", msg)
	}
}

func missing() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces"
	}
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "missing tool " + tool + " (run scripts/install-deps.sh)"
		}
	}
	return ""
}

// New calls Require, sweeps stale labs of DefaultPrefix, and builds a lab
// owned by this process. t.Cleanup tears it down, and when the test failed,
// first logs the output of every daemon started with Start.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if removed, err := Sweep(ctx, DefaultPrefix); err != nil {
		t.Logf("lab: sweeping stale labs: %v", err)
	} else if len(removed) > 0 {
		t.Logf("lab: removed stale namespaces %v", removed)
	}
	l, err := Create(ctx, DefaultPrefix, os.Getpid(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.Procs() {
				if p.Log() == "" {
					continue
				}
				t.Logf("lab: output of %s (pid %d, ns %s):\n%s", p.Name, p.PID(), p.NS, p.Log())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab: teardown: %v", err)
		}
	})
	return l
}

package e2e

// Scenarios that only make sense with inspectd on the edge. Each one is
// inspectd-dependent: it fails with "inspectd binary not available" until
// cmd/inspectd builds, and is written against the CLI contract:
// `inspectd run --rules FILE --queues 2 --log-format json` runs in the
// foreground, logs JSON lines to stderr with "msg":"ready" once its queues
// are open, stops cleanly on SIGTERM and reloads its rules on SIGHUP.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/lab"
)

// newInspectdEnv builds a lab with inspectd on the edge.
func newInspectdEnv(t *testing.T) *env {
	t.Helper()
	if !wantFirewall("inspectd") {
		t.Skip("inspectd not in E2E_FIREWALLS")
	}
	for _, fw := range firewalls {
		if fw.name == "inspectd" {
			return newEnv(t, fw)
		}
	}
	t.Fatal("no inspectd firewall defined")
	return nil
}

// TestInspectdKillRestart kills inspectd with SIGKILL during a slow
// download: while it is down a new connection must fail (fail closed), and
// after a restart the download must complete byte for byte.
func TestInspectdKillRestart(t *testing.T) {
	e := newInspectdEnv(t)
	dl := make(chan slowResult, 1)
	go func() { dl <- e.slowDownload(t, "big.bin") }()
	time.Sleep(2 * time.Second)
	if err := e.inspectd.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.inspectd.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c, err := e.lab.Client.DialContext(ctx, "tcp", hostPort(lab.ServerV4, 21))
	cancel()
	if err == nil {
		c.Close()
		t.Error("a new connection got through while inspectd was down (want fail closed)")
	}
	select {
	case r := <-dl:
		t.Fatalf("the download ended while inspectd was down (%d bytes, %v): it must span the restart", r.n, r.err)
	default:
	}
	rules, err := filepath.Abs(labRules)
	if err != nil {
		t.Fatal(err)
	}
	e.startInspectd(t, rules)
	select {
	case r := <-dl:
		if r.err != nil || r.n != files["big.bin"] {
			t.Fatalf("download across the restart: %d of %d bytes, %v", r.n, files["big.bin"], r.err)
		}
	case <-time.After(85 * time.Second):
		t.Fatal("download did not finish after the restart")
	}
	if !strings.Contains(e.inspectd.Log(), `"reason":"established before a restart"`) {
		t.Errorf("the control connection was not resumed after the restart:\n%s", e.inspectd.Log())
	}
}

// TestInspectdReloadBrokenRules reloads a broken rule file with SIGHUP:
// inspectd must keep running with the old rules and log the errors.
func TestInspectdReloadBrokenRules(t *testing.T) {
	if !wantFirewall("inspectd") {
		t.Skip("inspectd not in E2E_FIREWALLS")
	}
	lab.Require(t)
	checkInspectd(t)
	orig, err := os.ReadFile(labRules)
	if err != nil {
		t.Fatalf("needs %s: %v", labRules, err)
	}
	rules := filepath.Join(t.TempDir(), "lab.rules")
	if err := os.WriteFile(rules, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, firewall{name: "inspectd", stateful: true, check: checkInspectd, setup: func(t *testing.T, e *env) {
		e.startInspectd(t, rules)
	}})
	fetch := func(what string) {
		t.Helper()
		out := e.local(t, "small.bin")
		if _, err := e.curl(e.ctx(t, 30*time.Second), "-o", out, "ftp://"+hostPort(lab.ServerV4, 21)+"/small.bin"); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		e.checkFile(t, out, "small.bin")
	}
	fetch("before reload")
	broken := string(orig) + "\nthis is not a rule @@@\n"
	if err := os.WriteFile(rules, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(e.inspectd.Log())
	if err := e.inspectd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.inspectd.Log()[before:], `"level":"error"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged after reloading a broken rule file; log since SIGHUP:\n%s", e.inspectd.Log()[before:])
		}
		select {
		case <-e.inspectd.Done():
			t.Fatalf("inspectd exited on a broken reload: %v\n%s", e.inspectd.Err(), e.inspectd.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if log := e.inspectd.Log()[before:]; !strings.Contains(log, "lab.rules") {
		t.Errorf("reload error does not name the file; log since SIGHUP:\n%s", log)
	}
	fetch("after broken reload")
}

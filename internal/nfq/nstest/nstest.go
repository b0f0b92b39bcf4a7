// Package nstest helps tests of the live data path (internal/nfq,
// internal/hooks, internal/links, internal/daemon) run against the real
// kernel inside a private network namespace.
package nstest

import (
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Enter moves the calling test goroutine into a new, empty network
// namespace with its loopback device up. The goroutine stays locked to
// its OS thread and never unlocks it, so the thread, and with it the
// namespace, ends with the test. Sockets opened and commands started by
// this goroutine live in the namespace.
//
// Without root the test is skipped, or fails when the CI environment
// variable is "true": CI must run these tests, not skip them.
func Enter(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root for network namespaces")
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		Unavailable(t, "unshare(CLONE_NEWNET): "+err.Error())
	}
	Run(t, "ip", "link", "set", "lo", "up")
}

// Unavailable stops a test that cannot run here: it fails under CI=true
// and is skipped elsewhere.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: %s", why)
	}
	t.Skip(why)
}

// Need stops the test (see Unavailable) when a command is not installed.
func Need(t testing.TB, commands ...string) {
	t.Helper()
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			Unavailable(t, c+" is not installed")
		}
	}
}

// Run runs a command and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// Package nstest helps tests of the live data path (internal/nfq,
// internal/hooks, internal/links, internal/daemon) run against the real
// kernel inside a private network namespace.
package nstest

import (
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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

// Topology is a client and a server, each in a named network namespace of
// its own, joined through the test's namespace (see Enter), which routes
// between them like an edge box: the client is outside (device wan0),
// the server inside (device lan0).
type Topology struct {
	Client, Server string // namespace names
}

// Addresses of the topology's hosts.
const (
	ClientAddr  = "198.51.100.2"
	ServerAddr  = "192.0.2.2"
	ClientAddr6 = "2001:db8:1::2"
	ServerAddr6 = "2001:db8:2::2"
)

// Route builds the topology around the test's namespace, which must have
// been entered with Enter, and removes its namespaces when the test ends.
func Route(t testing.TB) *Topology {
	t.Helper()
	Need(t, "ip", "sysctl")
	id := strconv.Itoa(os.Getpid())
	tp := &Topology{Client: "inspectd-" + id + "-c", Server: "inspectd-" + id + "-s"}
	// No duplicate address detection: addresses must work at once, and
	// neighbour discovery fails while link-local addresses are tentative.
	noDAD := "net.ipv6.conf.default.accept_dad=0"
	for _, ns := range []string{tp.Client, tp.Server} {
		Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		Run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", noDAD)
	}
	Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", noDAD)
	for _, l := range []struct{ dev, ns, router, host, router6, host6 string }{
		{"wan0", tp.Client, "198.51.100.1", ClientAddr, "2001:db8:1::1", ClientAddr6},
		{"lan0", tp.Server, "192.0.2.1", ServerAddr, "2001:db8:2::1", ServerAddr6},
	} {
		Run(t, "ip", "link", "add", l.dev, "type", "veth", "peer", "name", "eth0", "netns", l.ns)
		Run(t, "ip", "addr", "add", l.router+"/24", "dev", l.dev)
		Run(t, "ip", "addr", "add", l.router6+"/64", "dev", l.dev)
		Run(t, "ip", "link", "set", l.dev, "up")
		in := []string{"netns", "exec", l.ns}
		Run(t, "ip", append(in, "ip", "link", "set", "lo", "up")...)
		Run(t, "ip", append(in, "ip", "addr", "add", l.host+"/24", "dev", "eth0")...)
		Run(t, "ip", append(in, "ip", "addr", "add", l.host6+"/64", "dev", "eth0")...)
		Run(t, "ip", append(in, "ip", "link", "set", "eth0", "up")...)
		Run(t, "ip", append(in, "ip", "route", "add", "default", "via", l.router)...)
		Run(t, "ip", append(in, "ip", "-6", "route", "add", "default", "via", l.router6)...)
	}
	return tp
}

// In runs fn on a goroutine inside namespace ns and waits for it. Sockets
// fn opens stay in ns and may be used from any goroutine afterwards.
func In(t testing.TB, ns string, fn func()) {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error)
	go func() {
		// The thread is left locked in ns: it ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
}

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ns string, name string, args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
}

// Go runs fn on a new goroutine in the caller's network namespace (which
// a goroutine started with the go statement need not share, after Enter)
// and returns a channel closed when fn returns.
func Go(t testing.TB, fn func()) <-chan struct{} {
	t.Helper()
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		runtime.LockOSThread() // never unlocked: the thread ends with fn
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns: %v", err)
			return
		}
		fn()
	}()
	return done
}

// Echo listens for TCP on address addr (host:port) in namespace ns and
// echoes what each connection sends, until the test ends. The returned
// channel receives the server side of accepted connections while it has
// room (16; connections beyond that are echoed all the same), and is
// closed when the listener is.
func Echo(t testing.TB, ns, addr string) <-chan net.Conn {
	t.Helper()
	var ln net.Listener
	var err error
	In(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c:
			default:
			}
			go io.Copy(c, c)
		}
	}()
	return accepted
}

package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOwnerPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"ilab-123-abcdef-client", 123, true},
		{"ilab-123-abcdef-edge", 123, true},
		{"ilab-x-abcdef-edge", 0, false},
		{"ilab-0-abcdef-edge", 0, false},
		{"ilab-123", 0, false},
		{"other-123-abcdef-edge", 0, false},
		{"ilabx-123-abcdef-edge", 0, false},
	} {
		pid, ok := ownerPID(tc.name, "ilab")
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestCreateRejectsBadPrefix(t *testing.T) {
	for _, p := range []string{"", "a-b", "a/b", "a b"} {
		if _, err := Create(context.Background(), p, 1, t.TempDir()); err == nil {
			t.Errorf("Create with prefix %q succeeded", p)
		}
	}
}

func TestVsftpdConfig(t *testing.T) {
	v4 := VsftpdConfig(ServerV4, 2121, "/srv", "/empty", "/log")
	for _, want := range []string{"listen=YES\n", "listen_address=192.0.2.10\n", "listen_port=2121\n",
		"anon_root=/srv\n", "connect_from_port_20=YES\n", "async_abor_enable=YES\n",
		"pasv_min_port=30000\n", "pasv_max_port=30100\n", "secure_chroot_dir=/empty\n", "vsftpd_log_file=/log\n"} {
		if !strings.Contains(v4, want) {
			t.Errorf("IPv4 config lacks %q:\n%s", want, v4)
		}
	}
	if strings.Contains(v4, "pasv_address") {
		t.Error("config sets pasv_address")
	}
	v6 := VsftpdConfig(ServerV6, 21, "/srv", "/empty", "/log")
	if !strings.Contains(v6, "listen_ipv6=YES\n") || !strings.Contains(v6, "listen_address6=2001:db8:2::10\n") {
		t.Errorf("IPv6 config:\n%s", v6)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	sum, err := WriteRandomFile(a, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(a); err != nil || fi.Size() != 100000 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	if got, err := FileSHA256(a); err != nil || got != sum {
		t.Fatalf("FileSHA256 = %s, %v; want %s", got, err, sum)
	}
	if _, err := WriteRandomFile(b, 100000); err != nil {
		t.Fatal(err)
	}
	if err := SameFile(a, b); err == nil {
		t.Error("two random files compare equal")
	}
	if err := SameFile(a, a); err != nil {
		t.Error(err)
	}
	if err := SameFile(a, filepath.Join(dir, "missing")); err == nil {
		t.Error("SameFile with a missing file succeeded")
	}
	if _, err := WriteRandomFile(b, -1); err == nil {
		t.Error("negative size accepted")
	}
}

// TestLab builds a real lab and checks routing, forwarding, daemons, Proc
// handling, the echo service, cleanup and the sweeper.
func TestLab(t *testing.T) {
	l := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Echo service on the server, reached from the client over both
	// families through the edge.
	echo, err := StartEcho(l.Server, "[::]:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	for _, dst := range []netip.Addr{ServerV4, ServerV6} {
		c, err := l.Client.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, EchoPort).String())
		if err != nil {
			t.Fatalf("dial echo at %s: %v", dst, err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("echo from %s: %q, %v", dst, buf, err)
		}
		if got := c.LocalAddr().String(); !strings.Contains(got, map[bool]string{true: "198.51.100.2", false: "2001:db8:1::2"}[dst.Is4()]) {
			t.Errorf("client source %s", got)
		}
		c.Close()
	}

	// The namespaces are separate: the client has no server address.
	if out, err := l.Client.Run(ctx, "ip", "-brief", "addr"); err != nil || strings.Contains(out, "192.0.2.10") {
		t.Errorf("client addresses: %s %v", out, err)
	}

	// FTP and TFTP daemons start and listen.
	root := t.TempDir()
	if _, err := WriteRandomFile(filepath.Join(root, "f"), 1000); err != nil {
		t.Fatal(err)
	}
	if err := l.StartVsftpd(ctx, root, 21); err != nil {
		t.Fatal(err)
	}
	if err := l.StartTFTPD(ctx, root, false); err != nil {
		t.Fatal(err)
	}
	if err := l.StartVsftpd(ctx, filepath.Join(root, "f"), 2121); err == nil {
		t.Error("StartVsftpd with a file as root succeeded")
	}

	// Proc: log capture, WaitLog, signals, Stop.
	p, err := l.Start(l.Edge, "sh", "sh", "-c", "echo started; trap 'echo bye; exit 3' TERM; while :; do sleep 0.05; done")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLog(ctx, "started"); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err == nil || !strings.Contains(p.Log(), "bye") {
		t.Errorf("Stop: %v, log %q (want exit status 3 after the TERM trap)", err, p.Log())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after exit: %v", err)
	}
	q, err := l.Start(l.Edge, "false", "false")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.WaitLog(ctx, "never"); err == nil {
		t.Error("WaitLog on an exited process succeeded")
	}
	if _, err := l.Start(l.Edge, "none"); err == nil {
		t.Error("Start without a command succeeded")
	}

	// A process the lab did not start is killed by Close, and the
	// namespaces go away.
	stray := l.Edge.Command(ctx, "sleep", "600")
	stray.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := stray.Wait(); err == nil {
		t.Error("stray process survived Close")
	}
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists", ns)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Start(l.Edge, "x", "true"); err == nil {
		t.Error("Start on a closed lab succeeded")
	}
}

func TestSweep(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A lab owned by a process that has exited is stale.
	dead := startAndReap(t)
	// A prefix of this run's own: another run's labs, or a leftover, are
	// not this test's to sweep.
	prefix := fmt.Sprintf("isw%x", rand.Uint32())
	stale, err := Create(ctx, prefix, dead, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	live, err := Create(ctx, prefix, os.Getpid(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stale.Close(); _ = live.Close() })
	removed, err := Sweep(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("Sweep removed %v, want the stale lab's three namespaces", removed)
	}
	for _, ns := range live.Namespaces() {
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Errorf("live namespace %s removed: %v", ns, err)
		}
	}
}

// startAndReap returns the pid of a process that has exited.
func startAndReap(t *testing.T) int {
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// TestListening: a port is found as a whole address, not inside a longer
// one (192.0.2.10:21 is not 192.0.2.10:2121).
func TestListening(t *testing.T) {
	ss := "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\nLISTEN 0      32     192.0.2.10:2121    0.0.0.0:*\n"
	if listening(ss, "192.0.2.10:21") {
		t.Error("192.0.2.10:21 found in a line for :2121")
	}
	if !listening(ss, "192.0.2.10:2121") {
		t.Error("192.0.2.10:2121 not found")
	}
}

// Package lab builds the end-to-end test network: three Linux network
// namespaces joined by veth pairs, with real FTP and TFTP peers.
//
//	client (eth0 198.51.100.2/24 2001:db8:1::2/64)
//	   │
//	edge   (wan0 198.51.100.1/24 2001:db8:1::1/64, lan0 192.0.2.1/24 2001:db8:2::1/64, forwarding on)
//	   │
//	server (eth0 192.0.2.10/24 2001:db8:2::10/64)
//
// Client and server route everything via the edge. IPv6 duplicate address
// detection is off so addresses work at once. Namespace names are
// PREFIX-PID-RAND-ROLE, unique per run; Sweep removes namespaces left by
// runs whose process is gone. Traffic never leaves the namespaces.
//
// The package shells out to ip(8) for setup, starts daemons with
// `ip netns exec` with their output captured to files (Proc), and can run Go
// code inside a namespace (NS.Do, NS.DialContext, NS.Listen) so tests can
// open sockets there without a helper binary.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPrefix starts the namespace names of labs built by tests.
const DefaultPrefix = "ilab"

// Interface names inside the namespaces.
const (
	ClientIf = "eth0" // client's interface towards the edge
	WANIf    = "wan0" // edge's interface towards the client
	LANIf    = "lan0" // edge's interface towards the server
	ServerIf = "eth0" // server's interface towards the edge
)

// Addresses of the lab (documentation ranges only).
var (
	ClientV4  = netip.MustParseAddr("198.51.100.2")
	EdgeWANV4 = netip.MustParseAddr("198.51.100.1")
	EdgeLANV4 = netip.MustParseAddr("192.0.2.1")
	ServerV4  = netip.MustParseAddr("192.0.2.10")
	ClientV6  = netip.MustParseAddr("2001:db8:1::2")
	EdgeWANV6 = netip.MustParseAddr("2001:db8:1::1")
	EdgeLANV6 = netip.MustParseAddr("2001:db8:2::1")
	ServerV6  = netip.MustParseAddr("2001:db8:2::10")
)

// Lab is one built lab. Its methods are safe for concurrent use.
type Lab struct {
	// ID is PREFIX-PID-RAND; the namespaces are ID-client, ID-edge, ID-server.
	ID string
	// Client, Edge and Server are the three namespaces.
	Client, Edge, Server NS
	// Dir holds generated configs and daemon logs.
	Dir string

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// Create builds a lab whose namespace names start with prefix and carry
// ownerPID (the process whose death makes the lab stale for Sweep). Configs
// and logs go to dir, which must exist. On error nothing is left behind.
func Create(ctx context.Context, prefix string, ownerPID int, dir string) (*Lab, error) {
	if prefix == "" || strings.Contains(prefix, "-") || strings.ContainsAny(prefix, "/ \t") {
		return nil, fmt.Errorf("lab: prefix %q must be non-empty without '-', '/' or spaces", prefix)
	}
	var rb [3]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("lab: random id: %w", err)
	}
	l := Attach(fmt.Sprintf("%s-%d-%s", prefix, ownerPID, hex.EncodeToString(rb[:])), dir)
	if err := l.build(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return l, nil
}

// Attach returns the Lab with the given ID without creating anything, for
// tools that tear down a lab built by another process.
func Attach(id, dir string) *Lab {
	return &Lab{
		ID:     id,
		Client: NS(id + "-client"),
		Edge:   NS(id + "-edge"),
		Server: NS(id + "-server"),
		Dir:    dir,
	}
}

// Namespaces returns the client, edge and server namespaces.
func (l *Lab) Namespaces() []NS { return []NS{l.Client, l.Edge, l.Server} }

func (l *Lab) build(ctx context.Context) error {
	for _, ns := range l.Namespaces() {
		if err := ipCmd(ctx, "netns", "add", string(ns)); err != nil {
			return err
		}
		// DAD off before any interface exists, so link-local and global
		// addresses are usable at once.
		if _, err := ns.Run(ctx, "sysctl", "-q", "-w",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0"); err != nil {
			return err
		}
	}
	if _, err := l.Edge.Run(ctx, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	e, c, s := string(l.Edge), string(l.Client), string(l.Server)
	steps := [][]string{
		{"-n", e, "link", "add", WANIf, "type", "veth", "peer", "name", ClientIf, "netns", c},
		{"-n", e, "link", "add", LANIf, "type", "veth", "peer", "name", ServerIf, "netns", s},
		{"-n", c, "addr", "add", ClientV4.String() + "/24", "dev", ClientIf},
		{"-n", c, "addr", "add", ClientV6.String() + "/64", "dev", ClientIf, "nodad"},
		{"-n", e, "addr", "add", EdgeWANV4.String() + "/24", "dev", WANIf},
		{"-n", e, "addr", "add", EdgeWANV6.String() + "/64", "dev", WANIf, "nodad"},
		{"-n", e, "addr", "add", EdgeLANV4.String() + "/24", "dev", LANIf},
		{"-n", e, "addr", "add", EdgeLANV6.String() + "/64", "dev", LANIf, "nodad"},
		{"-n", s, "addr", "add", ServerV4.String() + "/24", "dev", ServerIf},
		{"-n", s, "addr", "add", ServerV6.String() + "/64", "dev", ServerIf, "nodad"},
		{"-n", c, "link", "set", "lo", "up"},
		{"-n", e, "link", "set", "lo", "up"},
		{"-n", s, "link", "set", "lo", "up"},
		{"-n", c, "link", "set", ClientIf, "up"},
		{"-n", e, "link", "set", WANIf, "up"},
		{"-n", e, "link", "set", LANIf, "up"},
		{"-n", s, "link", "set", ServerIf, "up"},
		{"-n", c, "route", "add", "default", "via", EdgeWANV4.String()},
		{"-n", c, "-6", "route", "add", "default", "via", EdgeWANV6.String()},
		{"-n", s, "route", "add", "default", "via", EdgeLANV4.String()},
		{"-n", s, "-6", "route", "add", "default", "via", EdgeLANV6.String()},
	}
	for _, st := range steps {
		if err := ipCmd(ctx, st...); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the daemons started with Start, kills every other process
// still inside the lab's namespaces and deletes the namespaces. It is safe to
// call more than once and on a partly built lab.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.closed = true
	l.mu.Unlock()
	var errs []error
	for _, p := range procs {
		p.Stop(2 * time.Second)
	}
	for _, ns := range l.Namespaces() {
		if err := destroyNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// destroyNS kills the processes in ns and deletes it; a missing namespace is
// not an error.
func destroyNS(ns NS) error {
	if _, err := os.Stat(ns.Path()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 20 {
		pids, err := ns.PIDs(ctx)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ipCmd(ctx, "netns", "del", string(ns))
}

// Sweep deletes namespaces named PREFIX-PID-... whose PID no longer runs, with
// the processes inside them, and returns the deleted names. It cleans up after
// crashed runs; labs of live processes are left alone.
func Sweep(ctx context.Context, prefix string) ([]string, error) {
	names, err := listNetns(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		pid, ok := ownerPID(name, prefix)
		if !ok || processAlive(pid) {
			continue
		}
		if err := destroyNS(NS(name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// ownerPID parses PREFIX-PID-... and reports the PID.
func ownerPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// listNetns returns the names of all named network namespaces.
func listNetns(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lab: ip netns list: %w: %s", err, bytes.TrimSpace(out))
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Start runs argv in ns as a background process named name; its stdout and
// stderr go to Dir/NAME.log. The lab stops it on Close.
func (l *Lab) Start(ns NS, name string, argv ...string) (*Proc, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: Start on a closed lab")
	}
	l.mu.Unlock()
	p, err := startProc(l.Dir, ns, name, argv)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Procs returns the processes started with Start that the lab still owns.
func (l *Lab) Procs() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Proc(nil), l.procs...)
}

// logPath returns a file name in dir for name that no other process uses.
func logPath(dir, name string) string {
	p := filepath.Join(dir, name+".log")
	for i := 2; ; i++ {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("%s.%d.log", name, i))
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/inspectd/inspectd/internal/lab"
)

// labPrefix starts the names of the benchmark's namespaces.
const labPrefix = "ibench"

// File names served by vsftpd.
const (
	largeFile = "large.bin"
	smallFile = "small.bin"
)

// tools are the programs benchlab runs.
var tools = []string{"ip", "sysctl", "ss", "vsftpd", "curl", "iptables-restore", "ip6tables-restore", "conntrack"}

// bench is one benchmark run over one lab.
type bench struct {
	cfg  config
	lab  *lab.Lab
	out  io.Writer
	self string // this executable, for `benchlab connrate`
	res  map[string]*result

	daemon  *lab.Proc // inspectd while mode inspectd is set up
	sock    string    // its control socket
	started int       // inspectd starts so far (socket names)
	echo    *lab.EchoServer
}

// benchmark builds the lab, runs the rounds and prints the report.
func benchmark(ctx context.Context, cfg config, out io.Writer) (err error) {
	if err := preflight(&cfg); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "inspectd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := lab.Sweep(ctx, labPrefix); err != nil {
		return err
	}
	fmt.Fprintf(out, "benchlab: %s, %d CPUs, load average %s\n", time.Now().Format(time.DateTime), runtime.NumCPU(), loadAvg())
	l, err := lab.Create(ctx, labPrefix, os.Getpid(), dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b := &bench{cfg: cfg, lab: l, out: out, self: self, res: make(map[string]*result)}
	for _, m := range modes {
		b.res[m] = &result{Mode: m}
	}
	defer func() {
		if b.echo != nil {
			b.echo.Close()
		}
	}()
	if err := b.prepare(ctx, dir); err != nil {
		return err
	}
	for round := 1; round <= max(cfg.downloads, cfg.connRuns); round++ {
		for _, m := range modes {
			if err := b.measure(ctx, round, m); err != nil {
				return fmt.Errorf("round %d, %s: %w", round, m, err)
			}
		}
	}
	fmt.Fprintf(out, "benchlab: done, load average %s\n", loadAvg())
	report(out, cfg, b.res)
	return nil
}

// preflight checks root, the tools, and makes the binary and rule paths
// absolute.
func preflight(cfg *config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, iptables)")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("missing %s (run scripts/install-deps.sh): %w", t, err)
		}
	}
	for _, p := range []*string{&cfg.inspectd, &cfg.rules} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w (build inspectd with `make build`, run from the repository root)", err)
		}
		*p = abs
	}
	return nil
}

// prepare writes the files, starts vsftpd and the echo service, and tunes
// the client for many short connections.
func (b *bench) prepare(ctx context.Context, dir string) error {
	root := filepath.Join(dir, "ftp")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	for name, size := range map[string]int64{largeFile: b.largeSize(), smallFile: int64(b.cfg.smallKiB) << 10} {
		if _, err := lab.WriteRandomFile(filepath.Join(root, name), size); err != nil {
			return err
		}
	}
	if err := b.lab.StartVsftpd(ctx, root, 21); err != nil {
		return err
	}
	echo, err := lab.StartEcho(b.lab.Server, fmt.Sprintf("[::]:%d", lab.EchoPort))
	if err != nil {
		return err
	}
	b.echo = echo
	// Clients close first and keep TIME_WAIT: a wide port range and reuse
	// of TIME_WAIT ports keep tens of thousands of connections from
	// running out of ports.
	if _, err := b.lab.Client.Run(ctx, "sysctl", "-q", "-w",
		"net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"); err != nil {
		return err
	}
	for _, a := range clientSources(b.cfg.connSources)[1:] {
		if _, err := b.lab.Client.Run(ctx, "ip", "addr", "add", a.String()+"/24", "dev", lab.ClientIf); err != nil {
			return err
		}
	}
	// One download, not counted, warms the page cache and the daemons.
	if err := b.lab.OpenFirewall(ctx); err != nil {
		return err
	}
	_, err = b.download(ctx, largeFile, b.largeSize())
	return err
}

// clientSources returns n client addresses: lab.ClientV4 and the ones
// after it.
func clientSources(n int) []netip.Addr {
	addrs := []netip.Addr{lab.ClientV4}
	for len(addrs) < n {
		addrs = append(addrs, addrs[len(addrs)-1].Next())
	}
	return addrs
}

func (b *bench) largeSize() int64 { return int64(b.cfg.sizeMiB) << 20 }

// measure sets mode m up, takes round's samples and tears it down.
func (b *bench) measure(ctx context.Context, round int, m string) (err error) {
	if err := b.setup(ctx, m); err != nil {
		return err
	}
	defer func() {
		if terr := b.teardown(m); terr != nil && err == nil {
			err = terr
		}
	}()
	r := b.res[m]
	tag := fmt.Sprintf("round %d  %-8s", round, m)
	if round <= b.cfg.downloads {
		secs, pkts, err := b.transfer(ctx, m, largeFile, b.largeSize())
		if err != nil {
			return err
		}
		small, spkts, err := b.transfer(ctx, m, smallFile, int64(b.cfg.smallKiB)<<10)
		if err != nil {
			return err
		}
		mibps := float64(b.cfg.sizeMiB) / secs
		r.MiBps = append(r.MiBps, mibps)
		r.SmallSecs = append(r.SmallSecs, small)
		line := fmt.Sprintf("%s  download %d MiB: %7.1f MiB/s (%.3f s), %d KiB: %.1f ms",
			tag, b.cfg.sizeMiB, mibps, secs, b.cfg.smallKiB, small*1000)
		if m == modeInspectd {
			r.UserPkts = append(r.UserPkts, pkts)
			r.SmallUserPkts = append(r.SmallUserPkts, spkts)
			line += fmt.Sprintf("; user-space packets: %d, %d", pkts, spkts)
		}
		fmt.Fprintln(b.out, line)
	}
	if round <= b.cfg.connRuns {
		before, err := b.counters(ctx, m)
		if err != nil {
			return err
		}
		cr, err := b.connRate(ctx)
		if err != nil {
			return err
		}
		r.ConnRates = append(r.ConnRates, cr.Rate())
		r.ConnErrors += cr.Errors
		if r.FirstError == "" {
			r.FirstError = cr.FirstError
		}
		line := fmt.Sprintf("%s  connections: %8.0f/s (%d in %.2f s, %d errors)", tag, cr.Rate(), cr.Conns, cr.Elapsed.Seconds(), cr.Errors)
		if m == modeInspectd && cr.Conns > 0 {
			d, err := b.since(ctx, m, before)
			if err != nil {
				return err
			}
			per := float64(d.userPkts) / float64(cr.Conns)
			r.ConnUserPkts = append(r.ConnUserPkts, per)
			line += fmt.Sprintf("; user-space packets: %.1f per connection", per)
		}
		fmt.Fprintln(b.out, line)
	}
	return nil
}

// setup makes the edge run mode m, with an empty connection tracking
// table.
func (b *bench) setup(ctx context.Context, m string) error {
	switch m {
	case modeNone:
		return b.lab.OpenFirewall(ctx)
	case modeKernel:
		return b.lab.KernelFirewall(ctx)
	case modeInspectd:
		if err := b.lab.OpenFirewall(ctx); err != nil {
			return err
		}
		b.started++
		b.sock = filepath.Join(b.lab.Dir, "inspectd-"+strconv.Itoa(b.started)+".sock")
		p, err := b.lab.Start(b.lab.Edge, "inspectd", b.cfg.inspectd, "run", "--rules", b.cfg.rules,
			"--queues", strconv.Itoa(b.cfg.queues), "--log-format", "json", "--socket", b.sock)
		if err != nil {
			return err
		}
		b.daemon = p
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return p.WaitLog(wctx, `"msg":"inspectd started"`)
	}
	return fmt.Errorf("unknown mode %q", m)
}

// teardown stops inspectd after mode inspectd; it must exit cleanly.
func (b *bench) teardown(m string) error {
	if m != modeInspectd || b.daemon == nil {
		return nil
	}
	p := b.daemon
	b.daemon = nil
	if err := p.Stop(10 * time.Second); err != nil {
		return fmt.Errorf("inspectd did not stop cleanly: %w; log %s", err, p.LogPath)
	}
	return nil
}

// counters reads inspectd's counters in mode inspectd (zero otherwise).
func (b *bench) counters(ctx context.Context, m string) (counters, error) {
	if m != modeInspectd {
		return counters{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.cfg.inspectd, "stats", "--json", "--socket", b.sock).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return counters{}, fmt.Errorf("inspectd stats: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return counters{}, fmt.Errorf("inspectd stats: %w", err)
	}
	st, err := parseStats(out)
	if err != nil {
		return counters{}, err
	}
	return countersOf(st), nil
}

// since returns the counters' growth since before and adds lost packets
// to the mode's result.
func (b *bench) since(ctx context.Context, m string, before counters) (counters, error) {
	after, err := b.counters(ctx, m)
	if err != nil {
		return counters{}, err
	}
	d, err := after.sub(before)
	if err != nil {
		return counters{}, err
	}
	r := b.res[m]
	r.Lost += d.lost
	for why, n := range d.drops {
		if r.Drops == nil {
			r.Drops = make(map[string]uint64)
		}
		r.Drops[why] += n
	}
	return d, nil
}

// transfer downloads name and returns curl's transfer time and, in mode
// inspectd, the packets that reached user space meanwhile.
func (b *bench) transfer(ctx context.Context, m, name string, size int64) (float64, uint64, error) {
	before, err := b.counters(ctx, m)
	if err != nil {
		return 0, 0, err
	}
	secs, err := b.download(ctx, name, size)
	if err != nil {
		return 0, 0, err
	}
	d, err := b.since(ctx, m, before)
	return secs, d.userPkts, err
}

// download fetches name from the server over passive FTP (PASV, as the
// field's routers do) into /dev/null and returns curl's transfer time.
func (b *bench) download(ctx context.Context, name string, size int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	url := "ftp://" + lab.ServerV4.String() + "/" + name
	out, err := b.lab.Client.Run(ctx, "curl", "-sS", "--disable-epsv", "--connect-timeout", "5",
		"-o", "/dev/null", "-w", "%{size_download} %{time_total}", url)
	if err != nil {
		return 0, err
	}
	return parseCurl(out, size)
}

// connRate runs `benchlab connrate` in the client namespace against the
// echo service.
func (b *bench) connRate(ctx context.Context) (connResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.connDuration+2*connTimeout+10*time.Second)
	defer cancel()
	addr := netip.AddrPortFrom(lab.ServerV4, lab.EchoPort).String()
	var srcs []string
	if b.cfg.connSources > 1 {
		for _, a := range clientSources(b.cfg.connSources) {
			srcs = append(srcs, a.String())
		}
	}
	cmd := b.lab.Client.Command(ctx, b.self, "connrate", "-addr", addr,
		"-clients", strconv.Itoa(b.cfg.connClients), "-duration", b.cfg.connDuration.String(),
		"-sources", strings.Join(srcs, ","))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return connResult{}, fmt.Errorf("connrate client: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var cr connResult
	if err := json.Unmarshal(out, &cr); err != nil {
		return connResult{}, fmt.Errorf("connrate client printed %q: %w", out, err)
	}
	return cr, nil
}

// loadAvg returns the first three fields of /proc/loadavg, "?" when it
// cannot be read.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Package hooks installs and removes inspectd's kernel hooks: its own
// iptables chains, for IPv4 and IPv6, on the forward path.
//
// The rules are loaded with iptables-restore --noflush and
// ip6tables-restore --noflush (the iptables-nft backend on current
// distributions). Each table's part of a restore file (up to its COMMIT)
// is applied as one transaction, so a table's hooks appear or disappear
// whole. Install never removes hooks that were there before it (a
// crashed run's, which fail closed), even when it fails; the daemon lets
// it run to its end even when a signal comes. The
// kernel this was built for has the
// xtables NFQUEUE target but no native nftables queue expression, and
// iptables-nft gives the former while still writing nftables rules that
// coexist with an operator's ruleset. See docs/LIVE.md.
//
// Installed per family:
//
//	filter INSPECTD-FWD, jumped to first from FORWARD:
//	  accept established TCP of offloaded (connmark-marked) connections
//	    that carries no SYN, FIN or RST: the kernel fast path
//	  accept their SYN-ACK (connections are handed over at their SYN)
//	  accept established UDP of offloaded connections
//	  drop TCP segments that the kernel's conntrack finds INVALID (out of
//	    its window): this guards offloaded connections, which the engine
//	    tracks liberally
//	  clear the offload bit of a conntrack entry a new SYN reuses
//	  copy the offload bit from the connmark to the packet mark, so the
//	    engine sees that a flow was offloaded (e.g. by a previous run)
//	  NFQUEUE to the daemon's queues (--queue-balance), with
//	    --queue-bypass when failing open
//	mangle INSPECTD-POST, jumped to first from POSTROUTING:
//	  save the offload bit of the packet mark (set by an offload verdict)
//	  into the connmark
//
// Only forwarded traffic is queued: traffic to and from the box itself
// (INPUT, OUTPUT) never is.
package hooks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Prefix starts the name of every chain inspectd installs; chains so named
// are inspectd's and are removed on start and on exit.
const Prefix = "INSPECTD"

// Chain names.
const (
	ForwardChain = Prefix + "-FWD"
	PostChain    = Prefix + "-POST"
)

// Config says what the hooks send where.
type Config struct {
	// FirstQueue and Queues: packets go to queues FirstQueue ..
	// FirstQueue+Queues-1, balanced by the kernel.
	FirstQueue uint16
	Queues     int
	// FailOpen adds --queue-bypass: with no reader on a queue, packets
	// are accepted instead of dropped.
	FailOpen bool
	// Mark is the offload bit (a non-zero mask) set by offload verdicts.
	Mark uint32
}

// Validate reports whether c describes usable hooks.
func (c Config) Validate() error {
	if c.Queues < 1 {
		return fmt.Errorf("hooks: need at least one queue, have %d", c.Queues)
	}
	if int(c.FirstQueue)+c.Queues-1 > 0xffff {
		return fmt.Errorf("hooks: queues %d..%d exceed 65535", c.FirstQueue, int(c.FirstQueue)+c.Queues-1)
	}
	if c.Mark == 0 {
		return errors.New("hooks: the offload mark must not be 0")
	}
	return nil
}

// family is one address family's iptables front end.
type family struct {
	name, restore, save string
}

var families = []family{
	{"IPv4", "iptables-restore", "iptables-save"},
	{"IPv6", "ip6tables-restore", "ip6tables-save"},
}

// tableScript is one table's part of a restore file.
type tableScript struct {
	decls []string // chain declarations (":CHAIN - [0:0]": create, or flush)
	lines []string // rule commands, in order
}

// script is a restore file for one family, by table, in a fixed order.
type script struct {
	order  []string
	tables map[string]*tableScript
}

func (s *script) table(name string) *tableScript {
	if s.tables == nil {
		s.tables = map[string]*tableScript{}
	}
	t := s.tables[name]
	if t == nil {
		t = &tableScript{}
		s.tables[name] = t
		s.order = append(s.order, name)
	}
	return t
}

func (s *script) String() string {
	var b strings.Builder
	for _, name := range s.order {
		t := s.tables[name]
		fmt.Fprintf(&b, "*%s\n", name)
		for _, l := range t.decls {
			b.WriteString(l + "\n")
		}
		for _, l := range t.lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// addHooks appends the hooks of c to s: each table's chain is declared
// (which creates it, or flushes a leftover of the same name in the same
// transaction), filled, and jumped to first.
func addHooks(s *script, c Config) {
	m := fmt.Sprintf("0x%x", c.Mark)
	mm := m + "/" + m
	queue := fmt.Sprintf("--queue-num %d", c.FirstQueue)
	if c.Queues > 1 {
		queue = fmt.Sprintf("--queue-balance %d:%d", c.FirstQueue, int(c.FirstQueue)+c.Queues-1)
	}
	if c.FailOpen {
		queue += " --queue-bypass"
	}
	mangle := s.table("mangle")
	mangle.decls = append(mangle.decls, fmt.Sprintf(":%s - [0:0]", PostChain))
	mangle.lines = append(mangle.lines,
		fmt.Sprintf("-A %s -m mark --mark %s -j CONNMARK --save-mark --nfmask %s --ctmask %s", PostChain, mm, m, m),
		fmt.Sprintf("-I POSTROUTING 1 -j %s", PostChain))
	filter := s.table("filter")
	filter.decls = append(filter.decls, fmt.Sprintf(":%s - [0:0]", ForwardChain))
	filter.lines = append(filter.lines,
		fmt.Sprintf("-A %s -p tcp -m connmark --mark %s -m conntrack --ctstate ESTABLISHED -m tcp --tcp-flags SYN,FIN,RST NONE -j ACCEPT", ForwardChain, mm),
		// The SYN-ACK of a connection handed over at its SYN: the kernel's
		// tracker checks that it answers the SYN (anything else is
		// INVALID, dropped below). A SYN-ACK on a connection past its
		// handshake is not checked by the kernel (it ignores it and lets
		// it pass, and so does its own firewall); the endpoint answers it
		// with a challenge ACK (RFC 5961).
		fmt.Sprintf("-A %s -p tcp -m connmark --mark %s -m conntrack --ctstate ESTABLISHED -m tcp --tcp-flags SYN,ACK,FIN,RST SYN,ACK -j ACCEPT", ForwardChain, mm),
		fmt.Sprintf("-A %s -p udp -m connmark --mark %s -m conntrack --ctstate ESTABLISHED -j ACCEPT", ForwardChain, mm),
		// A segment that the kernel's own TCP tracking finds invalid (out
		// of its window: injected data, a blind reset) is dropped here. The
		// engine tracks offloaded sessions liberally, having missed the
		// segments the fast path carried, so this check guards them. The
		// kernel detaches its conntrack from such a segment, so the rule
		// cannot ask for the connmark: it applies to every TCP segment.
		fmt.Sprintf("-A %s -p tcp -m conntrack --ctstate INVALID -j DROP", ForwardChain),
		// A new SYN on a conntrack entry that carries the offload bit (the
		// kernel reuses a closed entry for a new connection on the same
		// ports) clears it: the engine decides afresh whether the new
		// connection may be offloaded.
		fmt.Sprintf("-A %s -p tcp -m tcp --tcp-flags SYN,ACK,FIN,RST SYN -m connmark --mark %s -j CONNMARK --set-xmark 0x0/%s", ForwardChain, mm, m),
		fmt.Sprintf("-A %s -m connmark --mark %s -j CONNMARK --restore-mark --nfmask %s --ctmask %s", ForwardChain, mm, m, m),
		fmt.Sprintf("-A %s -j NFQUEUE %s", ForwardChain, queue),
		fmt.Sprintf("-I FORWARD 1 -j %s", ForwardChain))
}

// rules returns the restore file that installs the hooks for one family
// where there are none yet.
func rules(c Config) string {
	var s script
	addHooks(&s, c)
	return s.String()
}

// Plan returns the rules Install would load, for operators who manage
// their own ruleset (inspectd run --no-hooks): one restore file per
// family, each introduced by a comment naming the command that loads it.
func Plan(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range families {
		fmt.Fprintf(&b, "# inspectd hooks for %s: load with %s --noflush\n", f.name, f.restore)
		b.WriteString(rules(c))
	}
	return b.String(), nil
}

// Install installs the hooks for IPv4 and IPv6, replacing any left by an
// earlier run in the same transaction (per table and family), so that
// forwarded traffic never finds the forward path without inspectd's hooks
// while it starts. It returns how many leftover chains it replaced or
// removed.
//
// If a family fails, Install returns the error and leaves the hooks of
// the families that had some before it started: a crashed run's hooks (or
// a running daemon's, which the hooks check reinstalls) fail closed, and
// removing them would let forwarded traffic pass uninspected. It removes
// what it installed in the families that had none, putting them back as
// they were.
func Install(ctx context.Context, c Config) (leftovers int, err error) {
	if err := c.Validate(); err != nil {
		return 0, err
	}
	var fresh []family // families that had no hooks before
	for _, f := range families {
		out, err := run(ctx, f.save, nil)
		if err == nil {
			s, n := removal(out, map[string]bool{PostChain: true, ForwardChain: true})
			if n == 0 {
				fresh = append(fresh, f)
			}
			addHooks(&s, c)
			leftovers += n
			err = restore(ctx, f, s.String())
		}
		if err != nil {
			for _, f := range fresh {
				if _, rerr := removeFamily(ctx, f); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return leftovers, err
		}
	}
	return leftovers, nil
}

// Missing lists the jumps to inspectd's chains that are not installed
// (e.g. "IPv4 filter FORWARD -j INSPECTD-FWD"): none while the hooks are
// in place. Another tool may have removed them (an iptables-restore
// without --noflush, a firewall reload); Install puts them back.
func Missing(ctx context.Context) ([]string, error) {
	var missing []string
	for _, f := range families {
		out, err := run(ctx, f.save, nil)
		if err != nil {
			return nil, err
		}
		missing = append(missing, missingIn(f.name, out)...)
	}
	return missing, nil
}

// missingIn lists the jumps to inspectd's chains that iptables-save
// output save lacks, for family name.
func missingIn(name string, save []byte) []string {
	want := []struct{ table, jump string }{
		{"mangle", "-A POSTROUTING -j " + PostChain},
		{"filter", "-A FORWARD -j " + ForwardChain},
	}
	found := make([]bool, len(want))
	table := ""
	for line := range strings.Lines(string(save)) {
		line = strings.TrimSpace(line)
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = t
			continue
		}
		for i, w := range want {
			if table == w.table && line == w.jump {
				found[i] = true
			}
		}
	}
	var missing []string
	for i, w := range want {
		if !found[i] {
			missing = append(missing, name+" "+w.table+" "+strings.TrimPrefix(w.jump, "-A "))
		}
	}
	return missing
}

// Remove deletes every chain whose name starts with Prefix, and the rules
// that jump to them, in all tables of both families. It returns how many
// chains it removed.
func Remove(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for _, f := range families {
		n, err := removeFamily(ctx, f)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// removeFamily does what Remove does, for one family.
func removeFamily(ctx context.Context, f family) (int, error) {
	out, err := run(ctx, f.save, nil)
	if err != nil {
		return 0, err
	}
	s, n := removal(out, nil)
	if n == 0 && len(s.order) == 0 {
		return 0, nil
	}
	if err := restore(ctx, f, s.String()); err != nil {
		return 0, err
	}
	return n, nil
}

// removal reads iptables-save output and returns a restore script that
// deletes the rules jumping to inspectd's chains and deletes those chains,
// except the ones named in keep (they will be declared again, which
// flushes them, in the same transaction). It also returns how many of
// inspectd's chains it found.
func removal(save []byte, keep map[string]bool) (script, int) {
	var s script
	chains := 0
	var table string
	var dels, chainNames []string
	flushTable := func() {
		if len(dels) == 0 && len(chainNames) == 0 {
			return
		}
		t := s.table(table)
		t.lines = append(t.lines, dels...)
		for _, c := range chainNames {
			if !keep[c] {
				t.lines = append(t.lines, "-F "+c)
			}
		}
		for _, c := range chainNames {
			if !keep[c] {
				t.lines = append(t.lines, "-X "+c)
			}
		}
		chains += len(chainNames)
	}
	sc := bufio.NewScanner(bytes.NewReader(save))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "*"):
			table, dels, chainNames = line[1:], nil, nil
		case line == "COMMIT":
			flushTable()
			table, dels, chainNames = "", nil, nil
		case strings.HasPrefix(line, ":"+Prefix):
			chainNames = append(chainNames, strings.Fields(line[1:])[0])
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) > 1 && !strings.HasPrefix(f[1], Prefix) && jumpsToOurs(f) {
				dels = append(dels, "-D"+line[2:])
			}
		}
	}
	return s, chains
}

// jumpsToOurs reports whether the rule's target (-j or -g) is one of
// inspectd's chains.
func jumpsToOurs(fields []string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && strings.HasPrefix(fields[i+1], Prefix) {
			return true
		}
	}
	return false
}

// restore loads a restore file for one family without flushing others'
// rules.
func restore(ctx context.Context, f family, script string) error {
	_, err := run(ctx, f.restore, []byte(script), "--noflush", "--wait")
	return err
}

// run runs an iptables tool, with stdin when not nil, and returns its
// standard output; failures carry the tool's standard error.
func run(ctx context.Context, name string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hooks: %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

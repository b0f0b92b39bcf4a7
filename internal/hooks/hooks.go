// Package hooks installs and removes inspectd's kernel hooks: its own
// iptables chains, for IPv4 and IPv6, on the forward path.
//
// The rules are loaded with iptables-restore --noflush and
// ip6tables-restore --noflush (the iptables-nft backend on current
// distributions). A restore file is applied as one transaction, so the
// hooks appear or disappear whole; the kernel this was built for has the
// xtables NFQUEUE target but no native nftables queue expression, and
// iptables-nft gives the former while still writing nftables rules that
// coexist with an operator's ruleset. See docs/LIVE.md.
//
// Installed per family:
//
//	filter INSPECTD-FWD, jumped to first from FORWARD:
//	  accept established TCP of offloaded (connmark-marked) connections
//	    that carries no SYN, FIN or RST: the kernel fast path
//	  accept established UDP of offloaded connections
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

// rules returns the restore file that installs the hooks for one family.
// It assumes the chains do not exist (Install removes them first).
func rules(c Config) string {
	m := fmt.Sprintf("0x%x", c.Mark)
	mm := m + "/" + m
	queue := fmt.Sprintf("--queue-num %d", c.FirstQueue)
	if c.Queues > 1 {
		queue = fmt.Sprintf("--queue-balance %d:%d", c.FirstQueue, int(c.FirstQueue)+c.Queues-1)
	}
	if c.FailOpen {
		queue += " --queue-bypass"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*mangle\n:%s - [0:0]\n", PostChain)
	fmt.Fprintf(&b, "-A %s -m mark --mark %s -j CONNMARK --save-mark --nfmask %s --ctmask %s\n", PostChain, mm, m, m)
	fmt.Fprintf(&b, "-I POSTROUTING 1 -j %s\nCOMMIT\n", PostChain)
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", ForwardChain)
	fmt.Fprintf(&b, "-A %s -p tcp -m connmark --mark %s -m conntrack --ctstate ESTABLISHED -m tcp --tcp-flags SYN,FIN,RST NONE -j ACCEPT\n", ForwardChain, mm)
	fmt.Fprintf(&b, "-A %s -p udp -m connmark --mark %s -m conntrack --ctstate ESTABLISHED -j ACCEPT\n", ForwardChain, mm)
	fmt.Fprintf(&b, "-A %s -m connmark --mark %s -j CONNMARK --restore-mark --nfmask %s --ctmask %s\n", ForwardChain, mm, m, m)
	fmt.Fprintf(&b, "-A %s -j NFQUEUE %s\n", ForwardChain, queue)
	fmt.Fprintf(&b, "-I FORWARD 1 -j %s\nCOMMIT\n", ForwardChain)
	return b.String()
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

// Install removes any hooks left by an earlier run, then installs the
// hooks for IPv4 and IPv6. It returns how many leftover chains it
// removed. If a family fails, the hooks already installed are removed
// again.
func Install(ctx context.Context, c Config) (leftovers int, err error) {
	if err := c.Validate(); err != nil {
		return 0, err
	}
	leftovers, err = Remove(ctx)
	if err != nil {
		return leftovers, err
	}
	for _, f := range families {
		if err := restore(ctx, f, rules(c)); err != nil {
			if _, rerr := Remove(ctx); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return leftovers, err
		}
	}
	return leftovers, nil
}

// Remove deletes every chain whose name starts with Prefix, and the rules
// that jump to them, in all tables of both families. It returns how many
// chains it removed.
func Remove(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for _, f := range families {
		out, err := run(ctx, f.save, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		script, n := removal(out)
		if n == 0 {
			continue
		}
		if err := restore(ctx, f, script); err != nil {
			errs = append(errs, err)
			continue
		}
		total += n
	}
	return total, errors.Join(errs...)
}

// removal turns iptables-save output into a restore file that deletes
// inspectd's chains and the rules of other chains that jump to them. It
// returns "" and 0 when there is nothing to remove.
func removal(save []byte) (string, int) {
	var b strings.Builder
	chains := 0
	var table string
	var dels, chainNames []string
	flushTable := func() {
		if len(dels) == 0 && len(chainNames) == 0 {
			return
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, d := range dels {
			b.WriteString(d + "\n")
		}
		for _, c := range chainNames {
			fmt.Fprintf(&b, "-F %s\n", c)
		}
		for _, c := range chainNames {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
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
	return b.String(), chains
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

// Package rules implements inspectd's rule language: a line-oriented,
// first-match language that attaches rules to the interface a packet
// enters, with named address and port sets, timeouts, limits and FTP
// options. Parse and ParseFile turn a rule file into a Ruleset, reporting
// every error of the file at once as an ErrorList of FILE:LINE:COL
// messages; Block.Match finds the first rule that matches a new flow
// without allocating.
//
// The language is described in docs/RULES.md.
package rules

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// maxFileSize bounds the rule files ParseFile reads.
const maxFileSize = 16 << 20

// Ruleset is a parsed, checked and compiled rule file. It is immutable
// after parsing (apart from the rules' hit counters) and safe for
// concurrent use.
type Ruleset struct {
	// File is the file name given to Parse or ParseFile.
	File string
	// Interfaces are the declared interfaces, in file order.
	Interfaces []*Interface
	// Blocks holds the `in on` blocks, one per interface, in file order.
	Blocks []*Block
	// Rules is every rule of every block; Rule.Index is its position here.
	Rules []*Rule
	// AddrSets maps each address set's name to its resolved prefixes
	// (nested sets expanded, duplicates removed).
	AddrSets map[string][]netip.Prefix
	// PortSets maps each port set's name to its resolved ranges (nested
	// sets expanded, sorted, overlapping ranges merged).
	PortSets map[string][]PortRange
	// Timeouts, Limits and FTP hold the file's settings, defaults filled
	// in (the defaults of limits fitted to the limits the file sets).
	Timeouts Timeouts
	Limits   Limits
	FTP      FTPOptions
}

// Interface is a declared interface: a logical name used in the rules, the
// Linux device it stands for, and the networks behind it.
type Interface struct {
	// Name is the logical name (e.g. "wan"); Device the Linux device
	// (e.g. "eth0").
	Name, Device string
	// Nets are the networks behind the interface, used by replay to assign
	// a captured packet to the interface it entered by.
	Nets []netip.Prefix
	// Index is the interface's position in Ruleset.Interfaces.
	Index int
	// Block is the interface's `in on` block.
	Block *Block
}

// Action is what a rule or a block default does with a new flow.
type Action uint8

// Actions.
const (
	Deny Action = iota
	Permit
)

// String returns "permit" or "deny".
func (a Action) String() string {
	if a == Permit {
		return "permit"
	}
	return "deny"
}

// Block is an `in on IFACE` block: the rules for flows whose first packet
// enters the interface, and the default for flows no rule matches.
type Block struct {
	// Interface is the interface the block belongs to.
	Interface *Interface
	// Default applies when no rule matches; DefaultLog asks to log it.
	Default    Action
	DefaultLog bool
	// Pos is the position of the `in on` line.
	Pos Pos
	// Rules are the block's rules in order.
	Rules []*Rule

	// m holds the compiled rules, one list per protocol class, and pre
	// their prefilters (same length and order).
	m   [numClasses][]matcher
	pre [numClasses][]prefilter
}

// Pos is a position in a rule file.
type Pos struct {
	File      string
	Line, Col int
}

// String returns "file:line", the form verdicts use to name a rule.
func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Rule is one permit or deny rule.
type Rule struct {
	// Index is the rule's position in Ruleset.Rules; Pos where it stands.
	Index int
	Pos   Pos
	// Text is the rule's source text, without comment and surrounding
	// blanks.
	Text string
	// Action is Permit or Deny.
	Action Action
	// Proto is 0 for any protocol, else the IP protocol number (1 icmp,
	// 6 tcp, 17 udp, 58 icmpv6).
	Proto uint8
	// Src and Dst are the source and destination addresses matched.
	Src, Dst AddrMatch
	// SrcPorts and DstPorts are the ports matched (tcp and udp only).
	SrcPorts, DstPorts PortMatch
	// ICMPTypes are the ICMP (or, for icmpv6 rules, ICMPv6) types matched;
	// nil means any type.
	ICMPTypes []uint8
	// Inspect names the inspector the session gets: "", "ftp" or "tftp".
	Inspect string
	// Log asks to log flows the rule matches.
	Log bool
	// Hits counts the flows the rule decided (see Hit).
	Hits atomic.Uint64
}

// Hit counts one flow decided by the rule. Match does not count: its
// caller calls Hit when the rule's verdict is applied.
func (r *Rule) Hit() { r.Hits.Add(1) }

// AddrMatch is an address condition of a rule.
type AddrMatch struct {
	// Prefixes are the addresses matched (sets expanded); nil means any.
	Prefixes []netip.Prefix
	// Not inverts the condition: the address must be of a family present
	// in Prefixes and outside all of them.
	Not bool
}

// PortMatch is a port condition of a rule.
type PortMatch struct {
	// Ranges are the ports matched (sets expanded, sorted, merged); nil
	// means any port.
	Ranges []PortRange
	// Not inverts the condition.
	Not bool
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

// String returns "LO" or "LO-HI".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Flow describes the first packet of a new flow, as Match sees it.
type Flow struct {
	// Proto is the IP protocol number.
	Proto uint8
	// Src and Dst are the addresses (IPv4 as 4-byte addresses; IPv4-mapped
	// IPv6 addresses are treated as IPv4).
	Src, Dst netip.Addr
	// SrcPort and DstPort are the TCP or UDP ports.
	SrcPort, DstPort uint16
	// ICMPType is the ICMP or ICMPv6 type.
	ICMPType uint8
}

// Timeouts are the idle and setup timeouts of sessions and expectations.
type Timeouts struct {
	TCPIdle    time.Duration // established TCP session idle
	TCPSynWait time.Duration // TCP handshake to complete
	TCPFinWait time.Duration // TCP session after FIN or RST
	UDPIdle    time.Duration // UDP session idle
	ICMPIdle   time.Duration // ICMP and ICMPv6 session idle
	FTPExpect  time.Duration // FTP data connection expectation pending
	TFTPExpect time.Duration // TFTP reply expectation pending
}

// DefaultTimeouts returns the timeouts used when a file sets none.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPIdle:    time.Hour,
		TCPSynWait: 30 * time.Second,
		TCPFinWait: 10 * time.Second,
		UDPIdle:    30 * time.Second,
		ICMPIdle:   10 * time.Second,
		FTPExpect:  60 * time.Second,
		TFTPExpect: 30 * time.Second,
	}
}

// Limits bound the engine's tables.
type Limits struct {
	Sessions            int // sessions in the table
	SessionsPerHost     int // sessions per host (an IPv4 address or an IPv6 /64)
	HalfOpen            int // TCP sessions whose handshake is not complete
	HalfOpenPerHost     int // half-open sessions per host
	Expectations        int // pending expectations
	ExpectationsPerHost int // pending expectations per host (the client's)
	FTPLine             int // bytes of one FTP control line buffered per direction
}

// DefaultLimits returns the limits used when a file sets none.
func DefaultLimits() Limits {
	return Limits{
		Sessions:            262144,
		SessionsPerHost:     32768,
		HalfOpen:            8192,
		HalfOpenPerHost:     512,
		Expectations:        4096,
		ExpectationsPerHost: 256,
		FTPLine:             512,
	}
}

// FTPOptions tune the FTP inspector.
type FTPOptions struct {
	// MinDataPort is the lowest data port a PORT, EPRT, 227 or 229 may
	// name (default 1024).
	MinDataPort uint16
	// ActiveSourcePortAny lets an active-mode data connection come from
	// any server port instead of only port 20.
	ActiveSourcePortAny bool
}

// DefaultFTPOptions returns the FTP options used when a file sets none.
func DefaultFTPOptions() FTPOptions { return FTPOptions{MinDataPort: 1024} }

// ParseFile reads and parses the rule file at path. Syntax and semantic
// errors come back as an ErrorList.
func ParseFile(path string) (*Ruleset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("rules: %s: file larger than %d bytes", path, maxFileSize)
	}
	return Parse(path, src)
}

// InterfaceByDevice returns the interface for Linux device dev, or nil.
func (rs *Ruleset) InterfaceByDevice(dev string) *Interface {
	for _, i := range rs.Interfaces {
		if i.Device == dev {
			return i
		}
	}
	return nil
}

// InterfaceByName returns the interface with logical name name, or nil.
func (rs *Ruleset) InterfaceByName(name string) *Interface {
	for _, i := range rs.Interfaces {
		if i.Name == name {
			return i
		}
	}
	return nil
}

// InterfaceFor returns the interface whose networks hold src (the longest
// matching prefix wins); when none does, the only interface declared
// without networks; else nil. Replay uses it to find the interface a
// captured packet entered by.
func (rs *Ruleset) InterfaceFor(src netip.Addr) *Interface {
	src = src.Unmap()
	var best *Interface
	bestBits := -1
	var bare *Interface
	bareCount := 0
	for _, i := range rs.Interfaces {
		if len(i.Nets) == 0 {
			bare = i
			bareCount++
			continue
		}
		for _, p := range i.Nets {
			if p.Bits() > bestBits && p.Contains(src) {
				best, bestBits = i, p.Bits()
			}
		}
	}
	if best != nil {
		return best
	}
	if bareCount == 1 {
		return bare
	}
	return nil
}

// Summary describes the ruleset in a few lines for `inspectd check`.
func (rs *Ruleset) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, %s, %s, %s\n", rs.File, count(len(rs.Interfaces), "interface"),
		count(len(rs.Rules), "rule"), count(len(rs.AddrSets), "address set"), count(len(rs.PortSets), "port set"))
	for _, i := range rs.Interfaces {
		nets := "no nets"
		if len(i.Nets) > 0 {
			s := make([]string, len(i.Nets))
			for k, p := range i.Nets {
				s[k] = p.String()
			}
			nets = "net " + strings.Join(s, " ")
		}
		fmt.Fprintf(&b, "interface %s (%s, %s)", i.Name, i.Device, nets)
		if bl := i.Block; bl != nil {
			log := ""
			if bl.DefaultLog {
				log = " log"
			}
			fmt.Fprintf(&b, ": in %s, default %s%s", count(len(bl.Rules), "rule"), bl.Default, log)
		}
		b.WriteByte('\n')
	}
	for _, name := range slices.Sorted(maps.Keys(rs.AddrSets)) {
		fmt.Fprintf(&b, "set %s: %s\n", name, count(len(rs.AddrSets[name]), "prefix"))
	}
	for _, name := range slices.Sorted(maps.Keys(rs.PortSets)) {
		fmt.Fprintf(&b, "ports %s: %s\n", name, count(len(rs.PortSets[name]), "range"))
	}
	t := rs.Timeouts
	fmt.Fprintf(&b, "timeouts: tcp-idle %s tcp-synwait %s tcp-finwait %s udp-idle %s icmp-idle %s ftp-expect %s tftp-expect %s\n",
		fmtDur(t.TCPIdle), fmtDur(t.TCPSynWait), fmtDur(t.TCPFinWait), fmtDur(t.UDPIdle), fmtDur(t.ICMPIdle), fmtDur(t.FTPExpect), fmtDur(t.TFTPExpect))
	l := rs.Limits
	fmt.Fprintf(&b, "limits: sessions %d sessions-per-host %d half-open %d half-open-per-host %d expectations %d expectations-per-host %d ftp-line %d\n",
		l.Sessions, l.SessionsPerHost, l.HalfOpen, l.HalfOpenPerHost, l.Expectations, l.ExpectationsPerHost, l.FTPLine)
	src := "20"
	if rs.FTP.ActiveSourcePortAny {
		src = "any"
	}
	fmt.Fprintf(&b, "ftp: min-data-port %d active-source-port %s\n", rs.FTP.MinDataPort, src)
	return b.String()
}

// count returns "1 rule", "2 rules", "3 prefixes".
func count(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "x"):
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

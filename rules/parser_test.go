package rules

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src as "test.rules" and fails the test on error.
func mustParse(t testing.TB, src string) *Ruleset {
	t.Helper()
	rs, err := Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	return rs
}

// oneRule parses a file with a single rule in a wan block and returns it.
func oneRule(t *testing.T, line string) *Rule {
	t.Helper()
	rs := mustParse(t, "set srv { 192.0.2.10 2001:db8:2::10 }\nports web { 80 443 }\ninterface wan eth0\nin on wan default deny {\n"+line+"\n}\n")
	if len(rs.Rules) != 1 {
		t.Fatalf("got %d rules", len(rs.Rules))
	}
	return rs.Rules[0]
}

func pfxs(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = netip.MustParsePrefix(x)
	}
	return out
}

func TestParseRule(t *testing.T) {
	tests := []struct {
		line string
		want *Rule
	}{
		{"permit tcp", &Rule{Action: Permit, Proto: 6}},
		{"deny any from any to any log", &Rule{Action: Deny, Log: true}},
		{"permit tcp from any to @srv port 21 inspect ftp", &Rule{Action: Permit, Proto: 6,
			Dst:      AddrMatch{Prefixes: pfxs("192.0.2.10/32", "2001:db8:2::10/128")},
			DstPorts: PortMatch{Ranges: []PortRange{{21, 21}}}, Inspect: "ftp"}},
		{"permit udp from any to @srv port 69 inspect tftp log", &Rule{Action: Permit, Proto: 17,
			Dst:      AddrMatch{Prefixes: pfxs("192.0.2.10/32", "2001:db8:2::10/128")},
			DstPorts: PortMatch{Ranges: []PortRange{{69, 69}}}, Inspect: "tftp", Log: true}},
		{"permit tcp from 198.51.100.0/24 port 1024-65535 to 192.0.2.1 port { 21, 2121 @web }", &Rule{Action: Permit, Proto: 6,
			Src: AddrMatch{Prefixes: pfxs("198.51.100.0/24")}, SrcPorts: PortMatch{Ranges: []PortRange{{1024, 65535}}},
			Dst: AddrMatch{Prefixes: pfxs("192.0.2.1/32")}, DstPorts: PortMatch{Ranges: []PortRange{{21, 21}, {80, 80}, {443, 443}, {2121, 2121}}}}},
		{"deny udp from !{ 192.0.2.0/24 2001:db8::/32 } to any port !53", &Rule{Action: Deny, Proto: 17,
			Src:      AddrMatch{Prefixes: pfxs("192.0.2.0/24", "2001:db8::/32"), Not: true},
			DstPorts: PortMatch{Ranges: []PortRange{{53, 53}}, Not: true}}},
		{"permit tcp to any port { 1000-2000 1500-2500 2501 }", &Rule{Action: Permit, Proto: 6,
			DstPorts: PortMatch{Ranges: []PortRange{{1000, 2501}}}}},
		{"permit icmp from any to any type echo-request", &Rule{Action: Permit, Proto: 1, ICMPTypes: []uint8{8}}},
		{"permit icmp type { echo-request 13 unreachable }", &Rule{Action: Permit, Proto: 1, ICMPTypes: []uint8{8, 13, 3}}},
		{"permit icmpv6 to 2001:db8::/32 type { echo-request packet-too-big neighbor-solicitation }", &Rule{Action: Permit, Proto: 58,
			Dst: AddrMatch{Prefixes: pfxs("2001:db8::/32")}, ICMPTypes: []uint8{128, 2, 135}}},
		{"permit any from 2001:db8:1::1 to any", &Rule{Action: Permit, Src: AddrMatch{Prefixes: pfxs("2001:db8:1::1/128")}}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			r := oneRule(t, "    "+tc.line+"   # comment")
			if r.Text != tc.line {
				t.Errorf("Text = %q, want %q", r.Text, tc.line)
			}
			if r.Action != tc.want.Action || r.Proto != tc.want.Proto || r.Inspect != tc.want.Inspect || r.Log != tc.want.Log {
				t.Errorf("got action %v proto %d inspect %q log %v, want %v %d %q %v",
					r.Action, r.Proto, r.Inspect, r.Log, tc.want.Action, tc.want.Proto, tc.want.Inspect, tc.want.Log)
			}
			for _, c := range []struct {
				name      string
				got, want any
			}{
				{"Src", r.Src, tc.want.Src}, {"Dst", r.Dst, tc.want.Dst},
				{"SrcPorts", r.SrcPorts, tc.want.SrcPorts}, {"DstPorts", r.DstPorts, tc.want.DstPorts},
				{"ICMPTypes", r.ICMPTypes, tc.want.ICMPTypes},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %+v, want %+v", c.name, c.got, c.want)
				}
			}
		})
	}
}

const structureSrc = `# Two interfaces, sets, settings.
interface wan eth0
interface lan eth1 net 192.0.2.0/24, 2001:db8:2::/64 @extra

set extra { 203.0.113.0/24 }
set servers {
    192.0.2.10      # ftp
    2001:db8:2::10
    @more
}
set more { 192.0.2.11 192.0.2.10 }
ports ftp-ports { 21 2121 }
ports all-ftp { @ftp-ports 990 21 }

in on lan default permit { permit udp from any to any port 53 }
in on wan default deny log {

    permit tcp from any to @servers port @all-ftp inspect ftp
    deny tcp from any to any port 23 log
}

timeouts {
    tcp-idle 2h, udp-idle 1m
    ftp-expect 45s
}
limits { sessions 1000 half-open 100 half-open-per-host 10 expectations 50 ftp-line 1024 }
ftp { min-data-port 2000 active-source-port any }
`

func TestParseStructure(t *testing.T) {
	rs := mustParse(t, strings.ReplaceAll(structureSrc, "\n", "\r\n"))
	if len(rs.Interfaces) != 2 || rs.Interfaces[0].Name != "wan" || rs.Interfaces[1].Device != "eth1" {
		t.Fatalf("interfaces %+v", rs.Interfaces)
	}
	lan := rs.Interfaces[1]
	if want := pfxs("192.0.2.0/24", "2001:db8:2::/64", "203.0.113.0/24"); !reflect.DeepEqual(lan.Nets, want) || lan.Index != 1 {
		t.Errorf("lan nets %v index %d", lan.Nets, lan.Index)
	}
	// Blocks come in file order, each tied to its interface.
	if len(rs.Blocks) != 2 || rs.Blocks[0].Interface != lan || lan.Block != rs.Blocks[0] || rs.Interfaces[0].Block != rs.Blocks[1] {
		t.Fatalf("blocks not linked")
	}
	wan := rs.Blocks[1]
	if wan.Default != Deny || !wan.DefaultLog || wan.Pos != (Pos{"test.rules", 16, 1}) || wan.Pos.String() != "test.rules:16" {
		t.Errorf("wan block %+v", wan)
	}
	if lan.Block.Default != Permit || lan.Block.DefaultLog || len(lan.Block.Rules) != 1 {
		t.Errorf("lan block %+v", lan.Block)
	}
	if len(rs.Rules) != 3 {
		t.Fatalf("%d rules", len(rs.Rules))
	}
	for i, r := range rs.Rules {
		if r.Index != i {
			t.Errorf("rule %d has Index %d", i, r.Index)
		}
	}
	r := rs.Rules[1]
	if r.Pos != (Pos{"test.rules", 18, 5}) || r.Text != "permit tcp from any to @servers port @all-ftp inspect ftp" {
		t.Errorf("rule 1 at %+v text %q", r.Pos, r.Text)
	}
	if want := pfxs("192.0.2.10/32", "2001:db8:2::10/128", "192.0.2.11/32"); !reflect.DeepEqual(r.Dst.Prefixes, want) {
		t.Errorf("dst %v", r.Dst.Prefixes)
	}
	if want := []PortRange{{21, 21}, {990, 990}, {2121, 2121}}; !reflect.DeepEqual(r.DstPorts.Ranges, want) {
		t.Errorf("ports %v", r.DstPorts.Ranges)
	}
	if got := rs.PortSets["all-ftp"]; !reflect.DeepEqual(got, []PortRange{{21, 21}, {990, 990}, {2121, 2121}}) {
		t.Errorf("PortSets[all-ftp] = %v", got)
	}
	if got := rs.AddrSets["servers"]; len(got) != 3 || len(rs.AddrSets) != 3 {
		t.Errorf("AddrSets = %v", rs.AddrSets)
	}
	wantT := DefaultTimeouts()
	wantT.TCPIdle, wantT.UDPIdle, wantT.FTPExpect = 2*time.Hour, time.Minute, 45*time.Second
	if rs.Timeouts != wantT {
		t.Errorf("timeouts %+v", rs.Timeouts)
	}
	if want := (Limits{1000, 1000, 100, 10, 50, 50, 1024}); rs.Limits != want {
		t.Errorf("limits %+v", rs.Limits)
	}
	if want := (FTPOptions{2000, true}); rs.FTP != want {
		t.Errorf("ftp %+v", rs.FTP)
	}
}

func TestDefaults(t *testing.T) {
	rs := mustParse(t, "interface wan eth0\nin on wan default deny {\n}")
	if rs.Timeouts != DefaultTimeouts() || rs.Limits != DefaultLimits() || rs.FTP != DefaultFTPOptions() {
		t.Errorf("settings %+v %+v %+v", rs.Timeouts, rs.Limits, rs.FTP)
	}
	if d := DefaultTimeouts(); d.FTPExpect != 60*time.Second || d.TFTPExpect != 30*time.Second || d.TCPIdle != time.Hour {
		t.Errorf("DefaultTimeouts %+v", d)
	}
	if d := DefaultFTPOptions(); d.MinDataPort != 1024 || d.ActiveSourcePortAny {
		t.Errorf("DefaultFTPOptions %+v", d)
	}
	if len(rs.Rules) != 0 || rs.Blocks[0].Match(&Flow{Proto: 6}) != nil {
		t.Error("empty block matched")
	}
}

func TestEmptyFile(t *testing.T) {
	rs := mustParse(t, "# nothing\n\n")
	if len(rs.Interfaces)+len(rs.Blocks)+len(rs.Rules) != 0 || !strings.Contains(rs.Summary(), "0 interfaces") {
		t.Errorf("empty file: %s", rs.Summary())
	}
}

func TestInterfaceLookup(t *testing.T) {
	rs := mustParse(t, `
interface wan wan0
interface lan lan0 net 192.0.2.0/24 2001:db8:2::/64
interface srv srv0 net 192.0.2.128/25
in on wan default deny { }
in on lan default deny { }
in on srv default deny { }
`)
	wan, lan, srv := rs.Interfaces[0], rs.Interfaces[1], rs.Interfaces[2]
	if rs.InterfaceByDevice("lan0") != lan || rs.InterfaceByDevice("lan") != nil {
		t.Error("InterfaceByDevice")
	}
	if rs.InterfaceByName("lan") != lan || rs.InterfaceByName("lan0") != nil {
		t.Error("InterfaceByName")
	}
	for _, tc := range []struct {
		addr string
		want *Interface
	}{
		{"192.0.2.1", lan},
		{"192.0.2.200", srv}, // longest prefix wins
		{"2001:db8:2::5", lan},
		{"::ffff:192.0.2.1", lan},
		{"198.51.100.7", wan}, // the only interface without nets
		{"2001:db8:1::1", wan},
	} {
		if got := rs.InterfaceFor(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("InterfaceFor(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	two := mustParse(t, "interface a a0\ninterface b b0\ninterface c c0 net 192.0.2.0/24\nin on a default deny {\n}\nin on b default deny {\n}\nin on c default deny {\n}\n")
	if got := two.InterfaceFor(netip.MustParseAddr("198.51.100.1")); got != nil {
		t.Errorf("two bare interfaces: got %v", got)
	}
	if got := two.InterfaceFor(netip.MustParseAddr("192.0.2.9")); got != two.Interfaces[2] {
		t.Errorf("got %v", got)
	}
}

func TestSummary(t *testing.T) {
	rs := mustParse(t, structureSrc)
	s := rs.Summary()
	for _, want := range []string{
		"test.rules: 2 interfaces, 3 rules, 3 address sets, 2 port sets",
		"interface wan (eth0, no nets): in 2 rules, default deny log",
		"interface lan (eth1, net 192.0.2.0/24 2001:db8:2::/64 203.0.113.0/24): in 1 rule, default permit",
		"set servers: 3 prefixes",
		"ports all-ftp: 3 ranges",
		"timeouts: tcp-idle 2h tcp-synwait 30s tcp-finwait 10s udp-idle 1m icmp-idle 10s ftp-expect 45s tftp-expect 30s",
		"limits: sessions 1000 sessions-per-host 1000 half-open 100 half-open-per-host 10 expectations 50 expectations-per-host 50 ftp-line 1024",
		"ftp: min-data-port 2000 active-source-port any",
	} {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ok.rules")
	if err := os.WriteFile(path, []byte(structureSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := ParseFile(path)
	if err != nil || rs.File != path || rs.Rules[0].Pos.File != path {
		t.Fatalf("ParseFile: %v", err)
	}
	_, err = ParseFile(filepath.Join(dir, "missing.rules"))
	var list ErrorList
	if err == nil || errors.As(err, &list) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.rules")
	if err := os.WriteFile(bad, []byte("interface wan eth0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(bad); !errors.As(err, &list) || len(list) != 1 || list[0].File != bad {
		t.Errorf("bad file: %v", err)
	}
}

func TestErrorListFormat(t *testing.T) {
	l := ErrorList{{File: "f.rules", Line: 7, Col: 23, Msg: `expected port number or range, found "http"`}, {File: "f.rules", Line: 9, Col: 1, Msg: "x"}}
	want := "f.rules:7:23: expected port number or range, found \"http\"\nf.rules:9:1: x"
	if l.Error() != want {
		t.Errorf("got %q", l.Error())
	}
}

// TestParseErrors covers small error cases inline; testdata/broken holds
// whole files.
func TestParseErrors(t *testing.T) {
	const head = "interface wan eth0\nin on wan default deny {\n"
	tests := []struct{ src, want string }{
		{head + "permit tcp from ! to any\n}", `test.rules:3:19: expected address, prefix, @set or any, found "to"`},
		{head + "permit tcp from , to any\n}", `test.rules:3:17: expected address, prefix, @set or any, found ","`},
		{head + "permit tcp from any to { ! }\n}", `test.rules:3:26: a negation inside a list: negate the whole list (!{ ... })`},
		{head + "permit tcp from any to { 192.0.2.1 !192.0.2.2 }\n}", `test.rules:3:36: a negation inside a list: negate the whole list (!{ ... })`},
		{head + "permit tcp from any to any port { 21 !22 }\n}", `test.rules:3:38: a negation inside a list: negate the whole list (!{ ... })`},
		{head + "permit icmp type !echo-request\n}", `test.rules:3:18: icmp types cannot be negated: list the types to match`},
		{head + "permit icmp type { echo-request !13 }\n}", `test.rules:3:33: expected icmp type name, number or "}", found "!"`},
		{head + "permit tcp from !!192.0.2.1 to any\n}", `test.rules:3:18: expected address, prefix, @set or any, found "!"`},
		{head + "permit tcp from @1x to any\n}", `test.rules:3:17: set name "1x" must start with a letter or _`},
		{head + "permit tcp to any port @web$\n}", `test.rules:3:24: set name "web$" contains "$": names use letters, digits, _, - and .`},
		{head + "permit tcp to any port @\n}", `test.rules:3:24: expected set name after "@", found end of line`},
		{head + "permit tcp to any port { { }\n}", `test.rules:3:26: expected port number, range, @set or "}", found "{"`},
		{head + "permit tcp to any port { }\n}", `test.rules:3:26: empty port list`},
		{head + "permit tcp from { } to any\n}", `test.rules:3:19: empty address list`},
		{head + "permit tcp from { 192.0.2.1, any } to any\n}", `test.rules:3:30: any inside a list: write any alone`},
		{head + "permit tcp from { 192.0.2.1 ; } to any\n}", `test.rules:3:29: expected address, prefix, @set or "}", found ";"`},
		{head + "permit icmp type { }\n}", `test.rules:3:20: empty type list`},
		{head + "permit tcp to any port 1-99999\n}", `test.rules:3:24: port 1-99999 out of range (0 to 65535)`},
		{head + "permit icmp type { @x }\n}", `test.rules:3:20: expected icmp type name, number or "}", found "@x"`},
		{head + "permit tcp log {\n}", `test.rules:3:16: expected end of line, found "{"`},
		{head + "@x\n}", `test.rules:3:1: expected permit, deny or "}", found "@x"`},
		{"interface wan eth0\nin wan default deny { }", `test.rules:2:4: expected on, found "wan"`},
		{"interface wan eth0\nin on { }", `test.rules:2:7: expected interface name, found "{"`},
		{"interface wan eth0\nin on wan default deny x { }", `test.rules:2:24: expected log or "{", found "x"`},
		{"interface wan eth0\nin on wan default deny log x { }", `test.rules:2:28: expected "{", found "x"`},
		{"interface wan eth0 lan\nin on wan default deny { }", `test.rules:1:20: expected end of line, found "lan"`},
		{"interface wan eth/0\nin on wan default deny { }", `test.rules:1:15: invalid device name "eth/0" (1 to 15 characters, no blanks, "/" or ":")`},
		{"interface 0wan eth0", `test.rules:1:11: interface name "0wan" must start with a letter or _`},
		{"interface -wan eth0", `test.rules:1:11: interface name "-wan" must start with a letter or _`},
		{"interface " + strings.Repeat("a", 65) + " eth0", `test.rules:1:11: interface name "` + strings.Repeat("a", 65) + `" is 65 characters long, at most 64 are allowed`},
		{"interface w:an eth0", `test.rules:1:11: interface name "w:an" contains ":": names use letters, digits, _, - and .`},
		{"interface wän eth0", `test.rules:1:11: interface name "wän" contains "ä": names use letters, digits, _, - and .`},
		{"interface w\xffn eth0", `test.rules:1:11: interface name "w\xffn" contains "\xff": names use letters, digits, _, - and .`},
		{"interface wan eth0\nin on 1wan default deny { }", `test.rules:2:7: interface name "1wan" must start with a letter or _`},
		{"set { }", `test.rules:1:5: expected set name, found "{"`},
		{"set 9s { 192.0.2.1 }", `test.rules:1:5: set name "9s" must start with a letter or _`},
		{"ports web/tls { 443 }", `test.rules:1:7: set name "web/tls" contains "/": names use letters, digits, _, - and .`},
		{"set a 192.0.2.1", `test.rules:1:7: expected "{", found "192.0.2.1"`},
		{"set a { ! }", `test.rules:1:9: a set cannot hold a negation: negate where the set is used (!@a)`},
		{"set a { !192.0.2.0/24 }", `test.rules:1:9: a set cannot hold a negation: negate where the set is used (!@a)`},
		{"ports p { 21 !22 }", `test.rules:1:14: a set cannot hold a negation: negate where the set is used (!@p)`},
		{"interface wan eth0 net !192.0.2.0/24 @x 1.2.3\nin on wan default deny { }", `test.rules:1:24: a net cannot be negated: list the networks behind interface wan`},
		{"limits 5", `test.rules:1:8: expected "{", found "5"`},
		{"limits { 5 }", `test.rules:1:10: expected sessions, sessions-per-host, half-open, half-open-per-host, expectations, expectations-per-host, ftp-line or "}", found "5"`},
		{"limits { sessions }", `test.rules:1:19: expected value for sessions, found "}"`},
		{"limits { sessions 99999999999999999999 }", `test.rules:1:19: sessions 99999999999999999999 out of range (1 to 67108864)`},
		{"timeouts { tcp-idle -5s }", `test.rules:1:21: expected duration (like 30s, 5m or 1h), found "-5s"`},
		{"timeouts { tcp-idle 1h", `test.rules:1:23: expected "}" to close timeouts opened at 1:10, found end of file`},
		{"ftp { min-data-port 70000 }", `test.rules:1:21: expected port number 1 to 65535, found "70000"`},
		{"}", `test.rules:1:1: expected interface, set, ports, in, timeouts, limits or ftp, found "}"`},
	}
	for _, tc := range tests {
		_, err := Parse("test.rules", []byte(tc.src))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	if s := (PortRange{21, 21}).String() + " " + (PortRange{1024, 65535}).String(); s != "21 1024-65535" {
		t.Errorf("PortRange.String: %s", s)
	}
	if Permit.String() != "permit" || Deny.String() != "deny" {
		t.Error("Action.String")
	}
}

// typoBase is a correct rule file that TestOneMistakeOneError breaks in
// one place at a time.
const typoBase = `interface wan eth0
interface lan eth1 net 192.0.2.0/24
set srv { 192.0.2.10 }
ports web { 80 443 }
in on wan default deny log {
    permit tcp from any to @srv port 21 inspect ftp
}
in on lan default deny {
    permit tcp from 192.0.2.0/24 to any port @web
}
`

// TestOneMistakeOneError makes one realistic mistake at a time in a
// correct file (replacing every occurrence of a string) and checks that
// it gives exactly one error: the parser
// resynchronises, and what the broken statement would have declared is
// not reported again as missing.
func TestOneMistakeOneError(t *testing.T) {
	mustParse(t, typoBase)
	tests := []struct{ old, new, want string }{
		// Negation where the language has none.
		{"net 192.0.2.0/24", "net !192.0.2.0/24", "2:24: a net cannot be negated: list the networks behind interface lan"},
		{"net 192.0.2.0/24", "net 192.0.2.0/24, !192.0.2.128/25", "2:38: a net cannot be negated: list the networks behind interface lan"},
		{"{ 192.0.2.10 }", "{ !192.0.2.10 }", "3:11: a set cannot hold a negation: negate where the set is used (!@srv)"},
		{"{ 80 443 }", "{ 80 !443 }", "4:16: a set cannot hold a negation: negate where the set is used (!@web)"},
		{"from 192.0.2.0/24", "from { 192.0.2.0/24 !192.0.2.1 }", "9:36: a negation inside a list: negate the whole list (!{ ... })"},
		// Bad names.
		{"in on wan", "in on 1wan", `5:7: interface name "1wan" must start with a letter or _`},
		{"to @srv", "to @s/rv", `6:28: set name "s/rv" contains "/": names use letters, digits, _, - and .`},
		// A bad name is reported where it is declared, not where it is used.
		{"lan", "1lan", `2:11: interface name "1lan" must start with a letter or _`},
		{"srv", "s/rv", `3:5: set name "s/rv" contains "/": names use letters, digits, _, - and .`},
		// Broken statements: what they declare is not missing again.
		{"interface lan eth1", "interfce lan eth1", `2:1: expected interface, set, ports, in, timeouts, limits or ftp, found "interfce"`},
		{"interface lan eth1 net", "interface lan net", `2:15: expected device name, found "net"`},
		{"set srv", "st srv", `3:1: expected interface, set, ports, in, timeouts, limits or ftp, found "st"`},
		{"ports web", "port web", `4:1: expected interface, set, ports, in, timeouts, limits or ftp, found "port"`},
		{"set srv {", "set srv", `3:9: expected "{", found "192.0.2.10"`},
		{"in on wan", "inn on wan", `5:1: expected interface, set, ports, in, timeouts, limits or ftp, found "inn"`},
		{"in on lan", "in lan", `8:4: expected on, found "lan"`},
		{"in on wan", "in on wna", "5:7: in on wna: no interface wna is declared (interface wan has no block)"},
		{"in on lan default deny", "in on lan deny", `8:11: expected default, found "deny"`},
		{"deny log {", "deny log", `5:27: expected "{", found end of line`},
		{"deny log {", "deny log\n{", `5:27: expected "{", found end of line`},
		{"deny {\n    permit tcp from 192", "deny\n    permit tcp from 192", `8:23: expected log or "{", found end of line`},
		{"deny {\n    permit tcp from 192.0.2.0/24 to any port @web\n}", "deny\n}", `8:23: expected log or "{", found end of line`},
		// Missing braces.
		{"{ 192.0.2.10 }", "{ 192.0.2.10", `4:1: expected "}" to close set srv opened at 3:9, found "ports"`},
		{"inspect ftp\n}", "inspect ftp\n", `8:1: expected "}" to close the block opened at 5:28, found "in"`},
		{"port @web\n}", "port @web\n", `11:1: expected "}" to close the block opened at 8:24, found end of file`},
		// Misspelt keywords, bad ports and prefixes.
		{"from any to @srv", "form any to @srv", `6:16: expected from, to, inspect, log or end of line, found "form"`},
		{"inspect ftp", "inpsect ftp", `6:41: expected inspect, log or end of line, found "inpsect"`},
		{"permit tcp from 192", "permit tpc from 192", `9:12: expected protocol (tcp, udp, icmp, icmpv6 or any), found "tpc"`},
		{"port 21", "port 70000", "6:38: port 70000 out of range (0 to 65535)"},
		{"{ 80 443 }", "{ 80 443 99999 }", "4:20: port 99999 out of range (0 to 65535)"},
		{"net 192.0.2.0/24", "net 192.0.2.0/33", "2:24: bad prefix 192.0.2.0/33: length must be 0 to 32"},
		{"{ 192.0.2.10 }", "{ 192.0.2.10/24 }", "3:11: bad prefix 192.0.2.10/24: host bits set (the network is 192.0.2.0/24)"},
		{"from 192.0.2.0/24", "from !192.0.2.0/33", "9:22: bad prefix 192.0.2.0/33: length must be 0 to 32"},
	}
	for _, tc := range tests {
		src := strings.ReplaceAll(typoBase, tc.old, tc.new)
		if src == typoBase {
			t.Fatalf("%q not in the base file", tc.old)
		}
		_, err := Parse("test.rules", []byte(src))
		if err == nil || err.Error() != "test.rules:"+tc.want {
			t.Errorf("%q -> %q:\n got %v\nwant test.rules:%s", tc.old, tc.new, err, tc.want)
		}
	}
}

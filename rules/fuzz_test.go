package rules

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, that failures are non-empty
// ErrorLists with sane positions, and that a parsed Ruleset summarises and
// matches without trouble.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/broken/*.rules")
	examples, _ := filepath.Glob("../examples/*.rules")
	for _, path := range append(seeds, examples...) {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	for _, s := range []string{structureSrc, matchSrc, genRules(20), "", "{", "}", "@", "in on", "set a { @a }", "interface a a0 net"} {
		f.Add([]byte(s))
	}
	flows := []*Flow{
		flow(6, "198.51.100.7", 40000, "192.0.2.10", 21),
		flow(17, "2001:db8:1::7", 40000, "2001:db8:2::10", 69),
		icmpFlow(1, "198.51.100.7", "192.0.2.10", 8),
		icmpFlow(58, "2001:db8:1::7", "2001:db8:2::10", 128),
		{Proto: 47},
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := Parse("fuzz.rules", src)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 || rs != nil {
				t.Fatalf("bad failure: %T %v", err, err)
			}
			for _, e := range list {
				if e.Line < 1 || e.Col < 1 || e.File != "fuzz.rules" {
					t.Fatalf("bad position %+v", *e)
				}
			}
			return
		}
		if rs.Summary() == "" {
			t.Fatal("empty summary")
		}
		for _, b := range rs.Blocks {
			for _, fl := range flows {
				if r := b.Match(fl); r != nil && r.Index >= len(rs.Rules) {
					t.Fatal("bad rule index")
				}
			}
		}
		rs.InterfaceFor(netip.MustParseAddr("192.0.2.1"))
	})
}

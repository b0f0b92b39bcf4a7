package rules

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestStrayBracesLongLine: a line of stray "}" at the top level is one
// error per brace; walking the rest of the line for each (to note its
// words as lost) made it quadratic: a 16 MiB file of them (ParseFile's
// limit) ran for days. The line is walked once (BenchmarkStrayBraces
// measures it), and the errors reported are capped: the first maxErrors,
// then a line counting the rest.
func TestStrayBracesLongLine(t *testing.T) {
	src := []byte(strings.Repeat("}", 50_000))
	_, err := Parse("braces.rules", src)
	if err == nil {
		t.Fatal("no error")
	}
	var list ErrorList
	if !errors.As(err, &list) || len(list) != maxErrors+1 ||
		list[maxErrors].Error() != fmt.Sprintf("braces.rules:1:%d: %d more errors not shown", maxErrors+1, 50_000-maxErrors) {
		t.Errorf("%d errors, the last %v", len(list), list[len(list)-1])
	}
}

// TestNestedSetExpansion: every set stores its full expansion, so a chain
// of N sets that each add one prefix and include the next holds
// N*(N+1)/2 prefixes: a 137 KB file (4000 sets) allocated ~900 MiB, a
// 726 KB file (20,000 sets) made `inspectd check` take 38 s and 9 GB. The
// file's expansions are bounded (maxExpanded) with one error at the set
// that runs past it.
func TestNestedSetExpansion(t *testing.T) {
	const n = 4000
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "set s%d { 10.%d.%d.0/24 @s%d }\n", i, (i>>8)&255, i&255, i+1)
	}
	fmt.Fprintf(&b, "set s%d { 192.0.2.1 }\n", n)
	src := []byte(b.String())
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err := Parse("chain.rules", src)
	runtime.ReadMemStats(&m1)
	alloc := m1.TotalAlloc - m0.TotalAlloc
	if limit := uint64(256 << 20); alloc > limit {
		t.Errorf("parsing a %d KB file allocated %d MiB (err %v); want at most %d MiB", len(src)>>10, alloc>>20, err, limit>>20)
	}
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "expand to more than 1048576 prefixes and port ranges") {
		t.Errorf("error %v, want one about the expansion", err)
	}
}

// TestByteOrderMark: a UTF-8 byte order mark before the first statement
// (some editors write one) is not part of the text.
func TestByteOrderMark(t *testing.T) {
	src := "\ufeffinterface wan eth0\nin on wan default deny {\n  permit tcp from any to any port 22\n}\n"
	if _, err := Parse("bom.rules", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("bom.rules", []byte("\ufeffinterfce wan eth0\n")); err == nil || !strings.HasPrefix(err.Error(), "bom.rules:1:1: ") {
		t.Errorf("error %v, want one at 1:1", err)
	}
}

// TestRepeatedNestedSet: a set that names the same big set many times
// would copy it each time before duplicates are removed (a 60 KB file, 8
// M prefixes; 10^9 for a 1.6 MB one): every copy counts against the
// file's expansion bound before it is made.
func TestRepeatedNestedSet(t *testing.T) {
	var b strings.Builder
	b.WriteString("set big {")
	for i := range 2048 {
		fmt.Fprintf(&b, " 10.%d.%d.0/24", i>>8, i&255)
	}
	b.WriteString(" }\nset many {")
	b.WriteString(strings.Repeat(" @big", 4096))
	b.WriteString(" }\ninterface wan eth0\nin on wan default deny {\n  permit tcp from @many to any port 22\n}\n")
	src := []byte(b.String())
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err := Parse("repeat.rules", src)
	runtime.ReadMemStats(&m1)
	alloc := m1.TotalAlloc - m0.TotalAlloc
	if err == nil || alloc > 256<<20 {
		t.Errorf("a %d KB file whose set names a 2048-prefix set 4096 times (8 M prefixes copied): err %v, %d MiB allocated; "+
			"want it refused by the 1 048 576 expansion bound before the copies are made", len(src)>>10, err, alloc>>20)
	}
}

// BenchmarkStrayBraces parses one line of 50 000 stray "}": linear work,
// about 9 ms here; the quadratic walk it replaced took about a second for
// 40 KB (measured before the fix).
func BenchmarkStrayBraces(b *testing.B) {
	src := []byte(strings.Repeat("}", 50_000))
	for b.Loop() {
		Parse("braces.rules", src)
	}
}

// TestNestedCopyCountedOnce: the sets and rules of a file may expand to
// 1 048 576 prefixes in all, a nested set being copied into every set and
// rule that uses it. Set a holds N prefixes, set b = { @a }, one rule uses
// @b: 3N prefixes in all (a, its copy in b, b's copy in the rule). With
// N = 340 000 that is 1 020 000, within the bound: each copy counts once.
func TestNestedCopyCountedOnce(t *testing.T) {
	const n = 340_000
	var b strings.Builder
	b.WriteString("set a {")
	for i := range n {
		fmt.Fprintf(&b, " 10.%d.%d.%d/32", i>>16, (i>>8)&255, i&255)
	}
	b.WriteString(" }\nset b { @a }\ninterface wan eth0\nin on wan default deny {\n  permit tcp from @b to any port 22\n}\n")
	if _, err := Parse("nested.rules", []byte(b.String())); err != nil {
		t.Fatalf("%d prefixes in all (a, b = {@a}, one rule on @b) refused: %v", 3*n, err)
	}
}

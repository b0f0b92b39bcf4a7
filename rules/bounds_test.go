package rules

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStrayBracesLongLine: a line of stray "}" at the top level is one
// error per brace; walking the rest of the line for each (to note its
// words as lost) made it quadratic: a 16 MiB file of them (ParseFile's
// limit) ran for days. The line is walked once, and the errors reported
// are capped: the first maxErrors, then a line counting the rest.
func TestStrayBracesLongLine(t *testing.T) {
	src := []byte(strings.Repeat("}", 50_000))
	start := time.Now()
	_, err := Parse("braces.rules", src)
	if err == nil {
		t.Fatal("no error")
	}
	// Linear work on 50,000 tokens takes milliseconds.
	if d := time.Since(start); d > time.Second {
		t.Errorf("parsing one 50 KB line of \"}\" took %v (quadratic in the line's length)", d)
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

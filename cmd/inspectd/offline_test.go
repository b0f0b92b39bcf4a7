package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckExamples(t *testing.T) {
	for _, f := range []string{"../../examples/lab.rules", "../../examples/image-server.rules"} {
		code, out, errs := runCLI("check", f)
		if code != 0 || !strings.Contains(out, "interface wan") {
			t.Errorf("check %s: exit %d\n%s%s", f, code, out, errs)
		}
	}
}

func TestCheckBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.rules")
	src := "interface wan wan0\nin on wan default deny {\n  permit tcp from any to any port http\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("check", path)
	if code != 1 || !strings.Contains(errs, path+":3:") {
		t.Fatalf("exit %d, stderr %q; want 1 and a FILE:LINE:COL error", code, errs)
	}
}

// TestReplayExample replays the recorded lab capture against its reviewed
// expected verdicts, as an operator's CI would.
func TestReplayExample(t *testing.T) {
	code, out, errs := runCLI("replay", "--rules", "../../examples/lab.rules", "--quiet",
		"--expect", "../../examples/captures/lab-ftp.expect", "../../examples/captures/lab-ftp.pcap")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"5 related", "expectations: 5 added, 5 used"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestReplayMismatchFails(t *testing.T) {
	exp := filepath.Join(t.TempDir(), "wrong.expect")
	if err := os.WriteFile(exp, []byte("178 accept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI("replay", "--rules", "../../examples/lab.rules", "--quiet",
		"--expect", exp, "../../examples/captures/lab-ftp.pcap")
	if code != 1 || !strings.Contains(out, "MISMATCH packet 178: expected accept") {
		t.Fatalf("exit %d; want 1 and a mismatch line:\n%s", code, out)
	}
}

func TestReplayJSON(t *testing.T) {
	code, out, errs := runCLI("replay", "--rules", "../../examples/lab.rules", "--json", "../../examples/captures/lab-ftp.pcap")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"packet", "time", "in", "verdict", "reason", "rule", "session"} {
		if _, ok := first[k]; !ok {
			t.Errorf("packet object lacks %q: %s", k, lines[0])
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], `{"summary":`) {
		t.Errorf("last line is not the summary: %s", lines[len(lines)-1])
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"replay"}, {"check"}, {"replay", "--rules"}} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

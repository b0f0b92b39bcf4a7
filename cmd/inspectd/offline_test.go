package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	labRules   = "../../examples/lab.rules"
	labCapture = "../../examples/captures/lab-ftp.pcap"
	labExpect  = "../../examples/captures/lab-ftp.expect"
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
	if strings.Contains(out, `\u003e`) || !strings.Contains(lines[0], ` > `) {
		t.Errorf("'>' escaped: %s", lines[0])
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"replay"}, {"check"}, {"replay", "--rules"}} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckEmptyFile checks that a valid rule file that would drop all
// forwarded traffic passes with a warning.
func TestCheckEmptyFile(t *testing.T) {
	path := writeFile(t, "empty.rules", []byte("# nothing yet\n"))
	code, out, errs := runCLI("check", path)
	if code != 0 || !strings.Contains(out, "0 interfaces") ||
		errs != "inspectd check: warning: "+path+" has no 'in on INTERFACE' block: the daemon would drop all forwarded traffic\n" {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	if _, _, errs := runCLI("check", "../../examples/lab.rules"); errs != "" {
		t.Errorf("warning for the lab's rules: %s", errs)
	}
}

// TestErrorPrefixes checks that the offline commands' errors start with
// "inspectd COMMAND:", once.
func TestErrorPrefixes(t *testing.T) {
	bad := writeFile(t, "bad.rules", []byte("interface wan wan0\nin on wan default deny {\n  permit tcp from any to any port http\n  permit xx\n}\n"))
	missing := filepath.Join(t.TempDir(), "no", "dir", "x.expect")
	for _, tc := range []struct {
		args []string
		want string // stderr's start
	}{
		{[]string{"check", "/nope"}, "inspectd check: rules: open /nope: no such file or directory\n"},
		{[]string{"check", bad}, "inspectd check: 2 errors:\n" + bad + ":3:35: "},
		{[]string{"replay", "--rules", "/nope", labCapture}, "inspectd replay: rules: open /nope: no such file or directory\n"},
		{[]string{"replay", "--rules", bad, labCapture}, "inspectd replay: 2 errors:\n" + bad + ":3:35: "},
		{[]string{"replay", "--rules", labRules, "--expect", "/nope", labCapture}, "inspectd replay: open /nope: no such file or directory\n"},
		{[]string{"replay", "--rules", labRules, "--write-expect", missing, labCapture},
			"inspectd replay: --write-expect: cannot create " + missing + ": no such file or directory\n"},
		{[]string{"replay", "--rules", labRules, "/nope.pcap"}, "inspectd replay: open /nope.pcap: no such file or directory\n"},
	} {
		code, out, errs := runCLI(tc.args...)
		if code != 1 || out != "" || !strings.HasPrefix(errs, tc.want) || strings.Count(errs, "inspectd ") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and stderr starting %q", tc.args, code, out, errs, tc.want)
		}
	}
}

// TestReplayFlagsAnywhere checks that flags may follow the captures, and
// that '--' ends the flags.
func TestReplayFlagsAnywhere(t *testing.T) {
	code, out, errs := runCLI("replay", "--rules", labRules, "--expect", labExpect, labCapture, "--quiet")
	if code != 0 || !strings.HasPrefix(out, "\n"+labCapture+": 179 packets") {
		t.Errorf("flags after the capture: exit %d\n%s%s", code, out, errs)
	}
	// A capture named like a flag, after '--'.
	rules, err := filepath.Abs(labRules)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(writeFile(t, "-lab.pcap", readFile(t, labCapture))))
	code, out, errs = runCLI("replay", "--rules", rules, "--quiet", "--", "-lab.pcap")
	if code != 0 || !strings.HasPrefix(out, "\n-lab.pcap: 179 packets") {
		t.Errorf("after '--': exit %d\n%s%s", code, out, errs)
	}
	// Everything after '--' is a capture, even the second one.
	code, out, errs = runCLI("replay", "--rules", rules, "--quiet", "--", "-lab.pcap", "-lab.pcap")
	if code != 0 || strings.Count(out, "-lab.pcap: 179 packets") != 2 {
		t.Errorf("two captures after '--': exit %d\n%s%s", code, out, errs)
	}
}

// TestReplayUsage checks the usage errors of replay: exit 2 and a message
// naming the problem.
func TestReplayUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rules", labRules, "--write-expect", "x.expect", labCapture, labCapture}, "inspectd replay: --write-expect takes exactly one capture"},
		{[]string{"--rules", labRules, "--expect", labExpect, labCapture, labCapture}, "inspectd replay: --expect takes exactly one capture"},
		{[]string{"--rules", labRules, "--gap-recovery", "-1", labCapture}, "inspectd replay: --gap-recovery must be 0 or more, not -1"},
		{[]string{labCapture}, "inspectd replay: --rules FILE is required"},
		{[]string{"--rules", labRules}, "inspectd replay: no capture given"},
		{[]string{"--rules", labRules, "--bogus", labCapture}, "inspectd replay: flag provided but not defined: -bogus (see 'inspectd replay --help')"},
	} {
		code, out, errs := runCLI(append([]string{"replay"}, tc.args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	if _, err := os.Stat("x.expect"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("x.expect written: %v", err)
	}
}

// TestReplayExpectBeyondEnd checks that an expected verdict for a packet
// the capture lacks fails the run.
func TestReplayExpectBeyondEnd(t *testing.T) {
	exp := writeFile(t, "far.expect", []byte("1000 drop\n"))
	code, out, _ := runCLI("replay", "--rules", labRules, "--quiet", "--expect", exp, labCapture)
	if code != 1 || !strings.Contains(out, "MISMATCH line 1: expected packet 1000, but the capture has 179 packets\n") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// TestReplayEvents checks that the text report shows the expectations
// under the packets that added and used them.
func TestReplayEvents(t *testing.T) {
	code, out, errs := runCLI("replay", "--rules", labRules, labCapture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"accept s1    -  session\n       expect-add x2 of s1 (ftp PASV): tcp 198.51.100.2:any > 192.0.2.10:30086 until ",
		"accept s3    -  related\n       expect-use x2 of s1 (ftp PASV): tcp 198.51.100.2:any > 192.0.2.10:30086\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestReplayWriteExpect checks that --write-expect writes a file that the
// run passes, and writes nothing for a capture it could not read to its
// end: the summary of the packets read, the error and exit 1.
func TestReplayWriteExpect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.expect")
	if code, _, errs := runCLI("replay", "--rules", labRules, "--quiet", "--write-expect", path, labCapture); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if code, out, errs := runCLI("replay", "--rules", labRules, "--quiet", "--expect", path, labCapture); code != 0 {
		t.Fatalf("replay against the written file: exit %d\n%s%s", code, out, errs)
	}
	data := readFile(t, labCapture)
	cut := writeFile(t, "cut.pcap", data[:len(data)/2])
	path = filepath.Join(filepath.Dir(cut), "cut.expect")
	code, out, errs := runCLI("replay", "--rules", labRules, "--quiet", "--write-expect", path, cut)
	if code != 1 || !strings.HasPrefix(out, "\n"+cut+": ") || !strings.Contains(out, "expectations: ") {
		t.Errorf("exit %d; want 1 and the summary:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "inspectd replay: "+cut+": packet ") || !strings.Contains(lines[0], "truncated record") ||
		!strings.HasPrefix(lines[1], "inspectd replay: "+path+" not written: "+cut+" was not replayed to its end (") {
		t.Errorf("stderr:\n%s", errs)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v; want no file", path, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}

// TestReplayUnsupportedLink checks that a capture of a link type replay
// does not read fails before any packet, naming the type.
func TestReplayUnsupportedLink(t *testing.T) {
	data := readFile(t, labCapture)
	binary.LittleEndian.PutUint32(data[20:], 105) // 802.11; the file is little-endian
	wifi := writeFile(t, "wifi.pcap", data)
	code, out, errs := runCLI("replay", "--rules", labRules, wifi)
	if code != 1 || out != "" || !strings.HasPrefix(errs, "inspectd replay: "+wifi+": packet 1: link type 105 is not supported; replay reads link types 0 (BSD loopback), 1 (Ethernet), ") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

// TestWriteExpectOverInputs: --write-expect FILE replaces what is at FILE
// once the capture was replayed. `--write-expect x.pcap x.pcap` (a slip:
// the flag takes a value) must not replace the capture with verdicts, nor
// the rule file or the expectations the run compares with: replay refuses
// such a path as a usage error (exit 2) before replaying, and leaves the
// inputs as they were.
func TestWriteExpectOverInputs(t *testing.T) {
	capData, rulesData := readFile(t, labCapture), readFile(t, labRules)
	for _, which := range []string{"capture", "rules", "expect"} {
		// Fresh copies of the inputs for each case.
		dir := t.TempDir()
		capture := filepath.Join(dir, "lab.pcap")
		rulesPath := filepath.Join(dir, "lab.rules")
		expect := filepath.Join(dir, "lab.expect")
		expectData := []byte("# reviewed verdicts\n")
		for p, d := range map[string][]byte{capture: capData, rulesPath: rulesData, expect: expectData} {
			if err := os.WriteFile(p, d, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tc := map[string]struct {
			name string
			args []string
			path string
			want []byte
		}{
			"capture": {"capture", []string{"--write-expect", capture}, capture, capData},
			"rules":   {"rules", []string{"--write-expect", rulesPath}, rulesPath, rulesData},
			"expect":  {"expect", []string{"--expect", expect, "--write-expect", filepath.Join(dir, ".", "lab.expect")}, expect, expectData},
		}[which]
		args := append([]string{"replay", "--rules", rulesPath, "--quiet"}, tc.args...)
		code, _, errs := runCLI(append(args, capture)...)
		if got, _ := os.ReadFile(tc.path); !bytes.Equal(got, tc.want) {
			t.Errorf("--write-expect the %s file: exit %d, stderr %q; the %s file was replaced (%d bytes, was %d)",
				tc.name, code, errs, tc.name, len(got), len(tc.want))
		} else if code != 2 || !strings.Contains(errs, "write the verdicts to a file of their own") {
			t.Errorf("--write-expect the %s file: exit %d, stderr %q; want 2 and a reason", tc.name, code, errs)
		}
	}
}

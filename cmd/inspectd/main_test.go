package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp checks that help asked for goes to stdout with exit 0, and
// that usage errors go to stderr with exit 2, for every kind of command.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // stdout's start; "" for none
		err  string // stderr's start; "" for none
	}{
		{[]string{"replay", "--help"}, 0, "Usage: inspectd replay --rules FILE", ""},
		{[]string{"replay", "-h"}, 0, "Usage: inspectd replay --rules FILE", ""},
		{[]string{"help", "replay"}, 0, "Usage: inspectd replay --rules FILE", ""},
		{[]string{"--help", "replay"}, 0, "Usage: inspectd replay --rules FILE", ""},
		{[]string{"check", "--help"}, 0, "Usage: inspectd check FILE", ""},
		{[]string{"sessions", "--help"}, 0, "Usage: inspectd sessions [flags]", ""},
		{[]string{"run", "--help"}, 0, "Usage: inspectd run --rules FILE", ""},
		{[]string{"version", "--help"}, 0, "Usage: inspectd version\n", ""},
		{[]string{"help", "help"}, 0, "Usage: inspectd help [COMMAND]", ""},
		{[]string{"help"}, 0, "inspectd: stateful firewall", ""},
		{[]string{"--help"}, 0, "inspectd: stateful firewall", ""},
		{[]string{"-h"}, 0, "inspectd: stateful firewall", ""},
		{nil, 2, "", "inspectd: stateful firewall"},
		{[]string{"help", "nosuch"}, 2, "", `inspectd help: unknown command "nosuch" (see 'inspectd help --help')`},
		{[]string{"help", "replay", "check"}, 2, "", "inspectd help: want at most one command"},
		{[]string{"nosuch"}, 2, "", `inspectd: unknown command "nosuch" (try 'inspectd help')`},
		{[]string{"replay", "--bogus"}, 2, "", "inspectd replay: flag provided but not defined: -bogus (see 'inspectd replay --help')"},
		{[]string{"sessions", "--bogus"}, 2, "", "inspectd sessions: flag provided but not defined: -bogus"},
		{[]string{"version"}, 0, "inspectd " + version + "\n", ""},
		{[]string{"--version"}, 0, "inspectd " + version + "\n", ""},
		{[]string{"version", "--bogus"}, 2, "", "inspectd version: flag provided but not defined: -bogus"},
		{[]string{"version", "extra"}, 2, "", `inspectd version: unexpected argument "extra"`},
		// Options run cannot work are usage errors, found before it starts.
		{[]string{"run", "--rules", "x", "--queues", "-1"}, 2, "", "inspectd run: hooks: need at least one queue, have -1"},
		{[]string{"run", "--rules", "x", "--queue", "65535", "--queues", "2"}, 2, "", "inspectd run: hooks: queues 65535..65536 exceed 65535"},
		{[]string{"run", "--rules", "x", "--log-level", "loud"}, 2, "", `inspectd run: log level "loud": want debug, info, warn or error`},
		{[]string{"run", "--rules", "x", "--log-format", "xml"}, 2, "", `inspectd run: log format "xml": want console, json or auto`},
	} {
		code, out, errs := runCLI(tc.args...)
		if code != tc.code || !strings.HasPrefix(out, tc.out) || (tc.out == "") != (out == "") ||
			!strings.HasPrefix(errs, tc.err) || (tc.err == "") != (errs == "") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q..., %q...", tc.args, code, trim(out), trim(errs), tc.code, tc.out, tc.err)
		}
	}
	_, out, _ := runCLI("help")
	if !strings.Contains(out, "\n  help ") || !strings.Contains(out, "'inspectd help COMMAND'") {
		t.Errorf("the command list lacks help:\n%s", out)
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestReplayHelpExamples runs the examples of 'inspectd replay --help'
// from the top of the source tree, as they are written (but for the
// pipe, and with --write-expect writing to a temporary directory).
func TestReplayHelpExamples(t *testing.T) {
	_, help, _ := runCLI("replay", "--help")
	tmp := t.TempDir()
	t.Chdir("../..")
	n := 0
	for _, line := range strings.Split(help, "\n") {
		cmd, ok := strings.CutPrefix(line, "  inspectd replay ")
		if !ok {
			continue
		}
		n++
		cmd, _, _ = strings.Cut(cmd, " | ")
		args := strings.Fields(cmd)
		for i := range args {
			if i > 0 && args[i-1] == "--write-expect" {
				args[i] = filepath.Join(tmp, args[i])
			}
		}
		if code, _, errs := runCLI(append([]string{"replay"}, args...)...); code != 0 {
			t.Errorf("%s: exit %d: %s", line, code, errs)
		}
	}
	if n < 3 {
		t.Errorf("%d examples in:\n%s", n, help)
	}
}

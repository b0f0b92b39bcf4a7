package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/inspectd/inspectd/internal/replay"
	"github.com/inspectd/inspectd/rules"
)

// newFlags returns a flag set that prints its usage with a description
// and examples, and reports errors instead of exiting.
func newFlags(name, synopsis, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: inspectd %s %s\n\n%s\n", name, synopsis, help)
		if hasFlags(fs) {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args; it returns the exit code to use when parsing
// ended the command (help or a bad flag), or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	return -1
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "FILE", `Checks a rule file: exit 0 and a summary when it is valid, exit 1 and
every error (FILE:LINE:COL: ...) when it is not.

Example:
  inspectd check /etc/inspectd/inspectd.rules`, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	rs, err := rules.ParseFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprint(stdout, rs.Summary())
	return 0
}

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay", "--rules FILE [flags] CAPTURE...", `Runs pcap or pcapng captures (gzip accepted) through the same engine as the
daemon and prints one line per packet and a summary. A packet's interface
is the pcapng interface name when the rule file knows it, else the
interface whose declared networks hold the packet's source address.

Exit status: 0, or 1 when --expect found packets with another verdict
(or an input was bad), 2 for usage errors.

Examples:
  inspectd replay --rules examples/lab.rules examples/captures/passive.pcapng
  inspectd replay --rules lab.rules --expect passive.expect --quiet passive.pcapng
  inspectd replay --rules lab.rules --json capture.pcap | jq 'select(.verdict=="drop")'`, stderr)
	rulesFile := fs.String("rules", "", "rule `FILE` (required)")
	jsonOut := fs.Bool("json", false, "one JSON object per packet, then {\"summary\": ...}")
	quiet := fs.Bool("quiet", false, "print only the summary and mismatches")
	expectFile := fs.String("expect", "", "expected verdicts `FILE` (see docs/REPLAY.md); one capture only")
	writeExpect := fs.String("write-expect", "", "write the verdicts as an expected-verdicts `FILE`, to review and keep")
	pickUp := fs.Bool("pickup", false, "pick up TCP sessions whose handshake the capture lacks (strict without)")
	gaps := fs.Int("gap-recovery", 3, "resynchronise a TCP direction after `N` segments in a row beyond the window (0: strict)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *rulesFile == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *expectFile != "" && fs.NArg() != 1 {
		fmt.Fprintln(stderr, "inspectd replay: --expect takes exactly one capture")
		return 2
	}
	rs, err := rules.ParseFile(*rulesFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	opt := replay.Options{Rules: rs, JSON: *jsonOut, Quiet: *quiet, PickUp: *pickUp, GapRecovery: *gaps}
	if *expectFile != "" {
		if opt.Expect, err = replay.ParseExpectFile(*expectFile); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if *writeExpect != "" {
		f, err := os.Create(*writeExpect)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		opt.WriteExpect = f
	}
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && stderr == os.Stderr {
		opt.Progress = stderr
	}
	code := 0
	for _, path := range fs.Args() {
		if _, err := replay.Run(path, opt, stdout); err != nil {
			fmt.Fprintln(stderr, "inspectd replay:", err)
			code = 1
		}
	}
	return code
}

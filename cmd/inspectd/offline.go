package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/inspectd/inspectd/internal/replay"
	"github.com/inspectd/inspectd/rules"
)

// flags is a command's flag set, which also knows where help that was
// asked for goes.
type flags struct {
	*flag.FlagSet
	stdout io.Writer
}

// newFlags returns a flag set that prints its usage with a description
// and examples, and reports errors instead of exiting: usage errors go to
// stderr, help that was asked for (-h, --help) to stdout.
func newFlags(name, synopsis, help string, stdout, stderr io.Writer) *flags {
	fs := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace("inspectd "+name+" "+synopsis), help)
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flags) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args; it returns the exit code to use when parsing
// ended the command, or -1 to go on. Help asked for with -h or --help
// goes to stdout and gives 0; a bad flag is a usage error on stderr and
// gives 2.
func parseFlags(fs *flags, args []string) int {
	stderr := fs.Output()
	fs.SetOutput(io.Discard) // the flag package's messages: ours follow
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(fs.stdout)
		defer fs.SetOutput(stderr)
		fs.Usage()
		return 0
	}
	return usageError(fs, stderr, "%v", err)
}

// fail prints err as an error of command name, prefixed once with
// "inspectd NAME:", and returns the exit code 1. An error of several
// lines (every problem in a rule file, as FILE:LINE:COL: ...) gets a
// prefixed first line that counts them, then its lines as they are.
func fail(stderr io.Writer, name string, err error) int {
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n > 1 {
		fmt.Fprintf(stderr, "inspectd %s: %d errors:\n%s\n", name, n, msg)
	} else {
		fmt.Fprintf(stderr, "inspectd %s: %s\n", name, msg)
	}
	return 1
}

// isTerminal reports whether stderr, as a command received it, is the
// process's standard error and a terminal.
func isTerminal(stderr io.Writer) bool {
	if stderr != os.Stderr {
		return false
	}
	st, err := os.Stderr.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "FILE", `Checks a rule file: exit 0 and a summary when it is valid, exit 1 and
its errors (FILE:LINE:COL: ..., the first 100 and a count of the rest)
when it is not. A valid file that would
still drop all forwarded traffic (no 'in on' block) gets a warning.

Example:
  inspectd check /etc/inspectd/inspectd.rules`, stdout, stderr)
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "want one rule file")
	}
	rs, err := rules.ParseFile(pos[0])
	if err != nil {
		return fail(stderr, "check", err)
	}
	fmt.Fprint(stdout, rs.Summary())
	if len(rs.Blocks) == 0 {
		fmt.Fprintf(stderr, "inspectd check: warning: %s has no 'in on INTERFACE' block: "+
			"the daemon would drop all forwarded traffic\n", pos[0])
	}
	return 0
}

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay", "--rules FILE [flags] CAPTURE...", `Runs pcap or pcapng captures (gzip accepted) through the same engine as the
daemon and prints one line per packet and a summary. Under a packet's line,
indented lines tell what the inspectors noted and which expectations (holes
for data connections) the packet added or used, or found expired. A
packet's interface is the pcapng interface name when the rule file knows
it, else the interface whose declared networks hold the packet's source
address. Flags may follow the captures; '--' ends the flags.

Exit status: 0; 1 when --expect found packets with another verdict or
lines for packets the capture lacks, or a capture could not be read to its
end (the summary of the packets read is printed first); 2 for usage errors.

Examples (in the source tree):
  inspectd replay --rules examples/lab.rules examples/captures/lab-ftp.pcap
  inspectd replay --rules examples/lab.rules --expect examples/captures/lab-ftp.expect --quiet examples/captures/lab-ftp.pcap
  inspectd replay --rules examples/lab.rules --json examples/captures/lab-ftp.pcap | jq 'select(.verdict=="drop")'
  inspectd replay --rules examples/lab.rules --write-expect lab-ftp.expect examples/captures/lab-ftp.pcap`, stdout, stderr)
	rulesFile := fs.String("rules", "", "rule `FILE` (required)")
	jsonOut := fs.Bool("json", false, "one JSON object per packet, then {\"summary\": ...}")
	quiet := fs.Bool("quiet", false, "print only the summary and mismatches")
	expectFile := fs.String("expect", "", "expected verdicts `FILE` (see docs/REPLAY.md); one capture only")
	writeExpect := fs.String("write-expect", "", "write the verdicts as an expected-verdicts `FILE`, to review and keep; one capture only")
	pickUp := fs.Bool("pickup", false, "pick up TCP sessions whose handshake the capture lacks (strict without)")
	gaps := fs.Int("gap-recovery", 3, "resynchronise a TCP direction after `N` segments in a row beyond the window (0: strict)")
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	switch {
	case *rulesFile == "":
		return usageError(fs, stderr, "--rules FILE is required")
	case len(pos) == 0:
		return usageError(fs, stderr, "no capture given")
	case *expectFile != "" && len(pos) != 1:
		return usageError(fs, stderr, "--expect takes exactly one capture")
	case *writeExpect != "" && len(pos) != 1:
		return usageError(fs, stderr, "--write-expect takes exactly one capture")
	case *gaps < 0:
		return usageError(fs, stderr, "--gap-recovery must be 0 or more, not %d", *gaps)
	}
	if *writeExpect != "" {
		// The flag takes a value: `--write-expect x.pcap x.pcap` is an
		// easy slip, and would replace the capture with verdicts.
		for _, in := range []struct{ what, path string }{
			{"the capture", pos[0]}, {"the --rules file", *rulesFile}, {"the --expect file", *expectFile},
		} {
			if sameFile(*writeExpect, in.path) {
				return usageError(fs, stderr, "--write-expect %s is %s: write the verdicts to a file of their own", *writeExpect, in.what)
			}
		}
	}
	rs, err := rules.ParseFile(*rulesFile)
	if err != nil {
		return fail(stderr, "replay", err)
	}
	opt := replay.Options{Rules: rs, JSON: *jsonOut, Quiet: *quiet, PickUp: *pickUp, GapRecovery: *gaps}
	if *expectFile != "" {
		if opt.Expect, err = replay.ParseExpectFile(*expectFile); err != nil {
			return fail(stderr, "replay", err)
		}
	}
	var written *replay.ExpectFile
	if *writeExpect != "" {
		if written, err = replay.CreateExpectFile(*writeExpect); err != nil {
			return fail(stderr, "replay", fmt.Errorf("--write-expect: %w", err))
		}
		opt.WriteExpect = written
	}
	if isTerminal(stderr) {
		opt.Progress = stderr
	}
	code = 0
	for _, path := range pos {
		sum, err := replay.Run(path, opt, stdout)
		if err != nil {
			code = fail(stderr, "replay", err)
		}
		if written == nil {
			continue
		}
		// One capture: a file for part of it would pass for the whole.
		if err != nil && !errors.Is(err, replay.ErrMismatch) {
			written.Discard()
			read := 0
			if sum != nil {
				read = sum.Packets
			}
			fmt.Fprintf(stderr, "inspectd replay: %s not written: %s was not replayed to its end (%d packets read)\n",
				*writeExpect, path, read)
		} else if err := written.Commit(); err != nil {
			code = fail(stderr, "replay", fmt.Errorf("--write-expect: %w", err))
		}
	}
	return code
}

// sameFile reports whether paths a and b name one existing file.
func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

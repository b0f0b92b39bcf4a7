// Command inspectd is a stateful firewall and FTP/TFTP inspection daemon
// for Linux. One binary: `run` on the edge box, `replay` and `check` to
// test rule files offline, and the live CLI verbs that talk to a running
// daemon. This file parses flags only; the work lives in the packages.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one verb of the CLI.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the daemon on the edge box", cmdRun},
		{"check", "check a rule file", cmdCheck},
		{"replay", "run captures through the engine", cmdReplay},
		{"sessions", "list the live sessions", cmdSessions},
		{"expectations", "list the pending expectations (holes for data connections)", cmdExpectations},
		{"stats", "show counters, limits, queue drops and engine latency", cmdStats},
		{"rules", "list the rules in force with their hit counters", cmdRules},
		{"watch", "stream live events (sessions, expectations, denials)", cmdWatch},
		{"clear", "remove a session, or all, from inspectd and the kernel", cmdClear},
		{"reload", "make the daemon re-read its rule file", cmdReload},
		{"completion", "print a bash or zsh completion script", cmdCompletion},
		{"version", "print the version", cmdVersion},
		{"help", "describe a command, or list them", cmdHelp},
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command args name and returns the exit code: 0, 1
// when the command failed, 2 for usage errors. Help that was asked for
// goes to stdout, usage errors to stderr.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	if c, ok := lookup(name); ok {
		return c.run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "inspectd: unknown command %q (try 'inspectd help')\n", name)
	return 2
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "inspectd: stateful firewall and FTP/TFTP inspection for Linux")
	fmt.Fprintln(w, "\nUsage: inspectd COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n'inspectd help COMMAND' or 'inspectd COMMAND --help' describes a command and its flags.")
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("help", "[COMMAND]", `Describes COMMAND and its flags, as 'inspectd COMMAND --help' does, or
lists the commands.

Examples:
  inspectd help
  inspectd help replay | less`, stdout, stderr)
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	switch len(pos) {
	case 0:
		usage(stdout)
		return 0
	case 1:
		if c, ok := lookup(pos[0]); ok {
			return c.run([]string{"--help"}, stdout, stderr)
		}
		return usageError(fs, stderr, "unknown command %q", pos[0])
	}
	return usageError(fs, stderr, "want at most one command")
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", `Prints the version of this binary. The live commands note when the daemon
runs another version.

Examples:
  inspectd version
  inspectd --version`, stdout, stderr)
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	fmt.Fprintf(stdout, "inspectd %s\n", version)
	return 0
}

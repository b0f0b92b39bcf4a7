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
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "inspectd: unknown command %q (try 'inspectd help')\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "inspectd: stateful firewall and FTP/TFTP inspection for Linux")
	fmt.Fprintln(w, "\nUsage: inspectd COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n'inspectd COMMAND --help' describes a command's flags.")
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "inspectd %s\n", version)
	return 0
}

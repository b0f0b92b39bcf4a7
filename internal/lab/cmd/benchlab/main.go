// Command benchlab is the lab benchmark behind `make bench-lab`. In one run
// it measures, through the edge of one lab (package lab) with
//
//	none      no firewall (the edge forwards everything),
//	kernel    the kernel's conntrack with its FTP and TFTP helpers and the
//	          inbound ruleset equivalent to examples/lab.rules
//	          (lab.KernelFirewall),
//	inspectd  bin/inspectd run --rules examples/lab.rules --queues 2,
//
// a passive FTP download of one large file (curl, median of -downloads
// runs) and a TCP connection rate (-conn-clients clients each looping
// connect, write 1 byte, read it back, close for -conn-duration against
// the lab's echo service, median of -conn-runs runs). For inspectd it
// reads `inspectd stats --json` before and after each transfer and counts
// the packets that reached user space (read from its queues). It prints
// every sample as it goes, then a table of medians with their ratios to
// the kernel's, and whether the project's targets are met; missing a
// target is reported, not an error.
//
// Usage (as root, from the repository root):
//
//	benchlab [-inspectd bin/inspectd] [-rules examples/lab.rules] [-size-mib 200]
//	         [-downloads 5] [-conn-runs 3] [-conn-clients 16] [-conn-duration 4s]
//	         [-conn-sources 1]
//
// Modes are interleaved: each round sets up none, kernel, inspectd in turn
// and measures each, so slow drift of a shared machine spreads over all
// three. `benchlab connrate` is the client half of the connection-rate
// test, which benchlab runs inside the client namespace.
//
// Exit status: 0 when the benchmark ran (whatever the figures), 1 on an
// error, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "connrate" {
		if err := connRateCmd(args[1:], stdout); err != nil {
			fmt.Fprintln(stderr, "benchlab connrate:", err)
			if errors.Is(err, errUsage) {
				return 2
			}
			return 1
		}
		return 0
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "benchlab:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if err := benchmark(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "benchlab:", err)
		return 1
	}
	return 0
}

// errUsage marks command-line errors.
var errUsage = errors.New("usage")

// config is what the flags set.
type config struct {
	inspectd     string        // the inspectd binary
	rules        string        // the rule file inspectd runs with
	sizeMiB      int           // size of the downloaded file
	smallKiB     int           // size of the small file (inspectd's user-space count)
	downloads    int           // downloads of the large file per mode
	queues       int           // inspectd --queues
	connRuns     int           // connection-rate runs per mode
	connClients  int           // parallel clients
	connDuration time.Duration // length of one connection-rate run
	connSources  int           // client addresses the clients spread over
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("benchlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: benchlab [flags]   (as root, from the repository root; see `go doc ./internal/lab/cmd/benchlab`)")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.inspectd, "inspectd", "bin/inspectd", "inspectd binary (make build)")
	fs.StringVar(&c.rules, "rules", "examples/lab.rules", "rule file for inspectd")
	fs.IntVar(&c.sizeMiB, "size-mib", 200, "size of the downloaded file in MiB")
	fs.IntVar(&c.smallKiB, "small-kib", 64, "size in KiB of a small file inspectd mode also downloads, to show the user-space count does not grow with size")
	fs.IntVar(&c.downloads, "downloads", 5, "downloads per mode (median)")
	fs.IntVar(&c.queues, "queues", 2, "inspectd --queues")
	fs.IntVar(&c.connRuns, "conn-runs", 3, "connection-rate runs per mode (median)")
	fs.IntVar(&c.connClients, "conn-clients", 16, "parallel clients of the connection-rate test")
	fs.DurationVar(&c.connDuration, "conn-duration", 4*time.Second, "length of one connection-rate run")
	fs.IntVar(&c.connSources, "conn-sources", 1, "client addresses (198.51.100.2 and up) the clients spread over; more addresses make TCP port reuse rarer")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.sizeMiB < 1:
		return c, errors.New("-size-mib must be at least 1")
	case c.smallKiB < 1:
		return c, errors.New("-small-kib must be at least 1")
	case c.downloads < 1:
		return c, errors.New("-downloads must be at least 1")
	case c.queues < 1:
		return c, errors.New("-queues must be at least 1")
	case c.connRuns < 0:
		return c, errors.New("-conn-runs must not be negative")
	case c.connClients < 1:
		return c, errors.New("-conn-clients must be at least 1")
	case c.connDuration <= 0:
		return c, errors.New("-conn-duration must be positive")
	case c.connSources < 1 || c.connSources > 200:
		return c, errors.New("-conn-sources must be between 1 and 200")
	}
	return c, nil
}

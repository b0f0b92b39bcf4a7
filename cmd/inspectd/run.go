package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/api/client"
	"github.com/inspectd/inspectd/internal/daemon"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "--rules FILE [flags]", `Runs the daemon on the edge box: installs its kernel hooks on the forward
path (unless --no-hooks), reads the netfilter queues with one engine per
queue, and decides every new flow by the rules. SIGHUP reloads the rules
(a file with errors is refused and the old rules stay); SIGINT or SIGTERM
removes the hooks and stops. See docs/LIVE.md.

Examples:
  inspectd run --rules /etc/inspectd/inspectd.rules
  inspectd run --rules lab.rules --queues 2 --log-format json
  inspectd run --rules lab.rules --no-hooks      # print the hooks, manage them yourself`, stdout, stderr)
	var o daemon.Options
	fs.StringVar(&o.RulesFile, "rules", "", "rule `FILE` (required)")
	fs.IntVar(&o.Queues, "queues", 1, "number of queues and workers (one per CPU that should carry traffic)")
	queue := fs.Uint("queue", 0, "first queue `number`; the daemon uses queue..queue+queues-1")
	fs.BoolVar(&o.NoHooks, "no-hooks", false, "do not install kernel hooks; print them instead")
	fs.BoolVar(&o.FailOpen, "fail-open", false, "let packets pass while no daemon reads the queues, or when a queue is full (default: fail closed)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "auto", "console, json or auto (console on a terminal)")
	mark := fs.String("mark", "0x10000000", "packet/connection mark `bit` of offloaded flows")
	fs.StringVar(&o.Socket, "socket", "", "control socket `PATH` (default $"+client.EnvSocket+", else "+api.DefaultSocket+")")
	fs.StringVar(&o.SocketGroup, "socket-group", "", "make the control socket mode 0660 and owned by `GROUP`, whose members may use the CLI (default: root only)")
	fs.StringVar(&o.Metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:9163 (default: off)")
	o.Version = version
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	switch {
	case o.RulesFile == "":
		return usageError(fs, stderr, "--rules FILE is required")
	case len(pos) != 0:
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	if *queue > 65535 {
		return usageError(fs, stderr, "--queue must be 0..65535")
	}
	o.FirstQueue = uint16(*queue)
	m, err := strconv.ParseUint(*mark, 0, 32)
	if err != nil || m == 0 || m&(m-1) != 0 {
		return usageError(fs, stderr, "--mark must be a single bit such as 0x10000000, not %q", *mark)
	}
	o.Mark = uint32(m)
	if err := o.Check(); err != nil {
		return usageError(fs, stderr, "%v", strings.TrimPrefix(err.Error(), "daemon: "))
	}
	o.Stdout = stdout
	o.Socket = client.SocketPath(o.Socket)
	if err := daemon.Run(context.Background(), o); err != nil {
		fmt.Fprintln(stderr, "inspectd run:", err)
		return 1
	}
	return 0
}

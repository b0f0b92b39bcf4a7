package main

// The live CLI verbs: they talk to a running daemon over its control
// socket (package internal/api/client) and print tables for people or
// JSON for machines.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/api/client"
)

// now is the clock ages and idle times are measured against.
var now = time.Now

// sessionStates are the states sessions show, the engine's names.
var sessionStates = conntrack.StateNames()

// live holds the flags every live verb has.
type live struct {
	name    string
	socket  *string
	json    *bool
	timeout *time.Duration
	stderr  io.Writer
}

func liveFlags(fs *flags, name string, stderr io.Writer) *live {
	return &live{
		name:    name,
		socket:  fs.String("socket", "", "control socket `PATH` (default $"+client.EnvSocket+", else "+api.DefaultSocket+")"),
		json:    fs.Bool("json", false, "print JSON for machines instead of a table"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up when the daemon has not answered within this `DURATION`, e.g. 2s"),
		stderr:  stderr,
	}
}

// parse parses the flags as parseArgs does and checks the common ones.
func (l *live) parse(fs *flags, args []string) (pos []string, code int) {
	pos, code = parseArgs(fs, args)
	if code < 0 && *l.timeout <= 0 {
		return nil, usageError(fs, l.stderr, "--timeout must be above 0, e.g. 2s")
	}
	return pos, code
}

func (l *live) client() *client.Client { return client.New(client.SocketPath(*l.socket), version) }

func (l *live) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), *l.timeout)
}

// fail prints err and returns the exit code 1.
func (l *live) fail(err error) int {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer from inspectd on %s within %s (--timeout)", client.SocketPath(*l.socket), *l.timeout)
	}
	fmt.Fprintf(l.stderr, "inspectd %s: %v\n", l.name, err)
	return 1
}

// warnVersion tells when the daemon runs another version than this CLI.
func (l *live) warnVersion(c *client.Client) {
	if v := c.ServerVersion(); v != "" && v != version {
		fmt.Fprintf(l.stderr, "inspectd %s: note: the daemon runs version %s, this CLI is %s\n", l.name, v, version)
	}
}

// parseArgs parses flags placed anywhere among the arguments and returns
// the positional ones; code is as parseFlags's.
func parseArgs(fs *flags, args []string) (pos []string, code int) {
	for {
		if code := parseFlags(fs, args); code >= 0 {
			return nil, code
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), -1 // "--" ended the flags
		}
		if len(rest) == 0 {
			return pos, -1
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints msg and where to find help, and returns 2.
func usageError(fs *flags, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "inspectd %s: %s (see 'inspectd %s --help')\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return 2
}

// query does what every read-only verb does after parsing its flags:
// refuse positional arguments, ask the daemon, note a version difference
// and print --json. When ok is false the verb is done and code is its exit
// code; otherwise res is for the verb's table.
func query[T any](fs *flags, l *live, pos []string, stdout io.Writer,
	call func(*client.Client, context.Context) (T, error)) (res T, code int, ok bool) {
	if len(pos) > 0 {
		return res, usageError(fs, l.stderr, "unexpected argument %q", pos[0]), false
	}
	c := l.client()
	ctx, cancel := l.ctx()
	defer cancel()
	res, err := call(c, ctx)
	if err != nil {
		return res, l.fail(err), false
	}
	l.warnVersion(c)
	if *l.json {
		printJSON(stdout, res)
		return res, 0, false
	}
	return res, 0, true
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func cmdSessions(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sessions", "[flags]", `Lists the sessions inspectd tracks: protocol, endpoints (the client's side
first), state, inspector (ALG), parent session (for data connections an
inspector opened), age, idle time, packets and bytes each way
(original/reply), and whether the kernel fast path carries it.

Examples:
  inspectd sessions
  inspectd sessions --alg ftp
  inspectd sessions --addr 198.51.100.0/24 --port 21
  inspectd sessions --parent 12          # the data connections of control session 12
  inspectd sessions --json | jq '.[] | select(.offloaded)'`, stdout, stderr)
	l := liveFlags(fs, "sessions", stderr)
	proto := fs.String("proto", "", "only `PROTO`: tcp, udp, icmp or icmpv6")
	addr := fs.String("addr", "", "only sessions with an endpoint in `ADDR` (address or prefix)")
	port := fs.String("port", "", "only sessions with an endpoint on `PORT`")
	alg := fs.String("alg", "", "only sessions inspected by `ALG`: ftp, tftp, or none")
	state := fs.String("state", "", "only sessions in `STATE`: "+strings.Join(sessionStates, ", "))
	parent := fs.String("parent", "", "only the children of session `ID`")
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	if *state != "" && !slices.Contains(sessionStates, strings.ToLower(*state)) {
		return usageError(fs, stderr, "bad state %q (want one of %s)", *state, strings.Join(sessionStates, ", "))
	}
	q := map[string][]string{}
	for k, v := range map[string]string{"proto": *proto, "addr": *addr, "port": *port, "alg": strings.ToLower(*alg),
		"state": strings.ToLower(*state), "parent": *parent} {
		if v != "" {
			q[k] = []string{v}
		}
	}
	f, err := api.ParseSessionFilter(q)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	ss, code, ok := query(fs, l, pos, stdout, func(c *client.Client, ctx context.Context) ([]inspect.SessionInfo, error) {
		return c.Sessions(ctx, f)
	})
	if !ok {
		return code
	}
	if len(ss) == 0 {
		fmt.Fprintln(stdout, "no sessions")
		return 0
	}
	t := now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tSOURCE\tDESTINATION\tSTATE\tALG\tPARENT\tAGE\tIDLE\tPACKETS\tBYTES\tOFFLOADED")
	for _, s := range ss {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s/%s\t%s\n", s.ID, s.Proto, s.Src, s.Dst, s.State,
			dash(s.ALG), idOrDash(s.Parent), human(t.Sub(s.Created)), human(t.Sub(s.LastSeen)),
			s.Packets[0], s.Packets[1], bytesHuman(s.Bytes[0]), bytesHuman(s.Bytes[1]), yesNo(s.Offloaded))
	}
	tw.Flush()
	return 0
}

func cmdExpectations(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("expectations", "[flags]", `Lists the pending expectations: the holes inspectors opened for data
connections not made yet, the session that owns each, and when it expires.
A source port "any" means any source port may connect.

Examples:
  inspectd expectations
  inspectd expectations --json`, stdout, stderr)
	l := liveFlags(fs, "expectations", stderr)
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	xs, code, ok := query(fs, l, pos, stdout, (*client.Client).Expectations)
	if !ok {
		return code
	}
	if len(xs) == 0 {
		fmt.Fprintln(stdout, "no expectations")
		return 0
	}
	t := now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tALG\tWHAT\tPROTO\tSOURCE\tDESTINATION\tAGE\tEXPIRES IN")
	for _, x := range xs {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Parent, dash(x.ALG), dash(x.What), x.Proto,
			x.Src, x.Dst, human(t.Sub(x.Created)), human(x.Expires.Sub(t)))
	}
	tw.Flush()
	return 0
}

func cmdStats(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("stats", "[flags]", `Shows inspectd's counters: packets by verdict and drop reason, sessions by
inspector and state, how close the tables are to their limits, the
netfilter queues' counters and drops, and the engine's time per packet.

Examples:
  inspectd stats
  inspectd stats --json | jq .drop_reasons`, stdout, stderr)
	l := liveFlags(fs, "stats", stderr)
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	st, code, ok := query(fs, l, pos, stdout, (*client.Client).Stats)
	if !ok {
		return code
	}
	printStats(stdout, st)
	return 0
}

func printStats(w io.Writer, st api.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "packets\t%d\t(%d workers)\n", st.Packets, st.Workers)
	fmt.Fprintf(tw, "  accepted\t%d\n", st.Accepted)
	fmt.Fprintf(tw, "    new session\t%d\n", st.NewSessions)
	fmt.Fprintf(tw, "    session\t%d\n", st.SessionPackets)
	if other := int64(st.Accepted) - int64(st.NewSessions) - int64(st.SessionPackets); other > 0 {
		fmt.Fprintf(tw, "    other (icmp errors)\t%d\n", other)
	}
	fmt.Fprintf(tw, "  dropped\t%d\n", st.Dropped)
	reasons := make([]string, 0, len(st.DropReasons))
	for r := range st.DropReasons {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := st.DropReasons[reasons[i]], st.DropReasons[reasons[j]]
		return a > b || (a == b && reasons[i] < reasons[j])
	})
	for _, r := range reasons {
		fmt.Fprintf(tw, "    %s\t%d\n", r, st.DropReasons[r])
	}
	fmt.Fprintf(tw, "sessions\t%d\t(half-open %d)\n", st.Sessions, st.HalfOpen)
	for _, sc := range st.SessionCounts {
		fmt.Fprintf(tw, "  %s %s\t%d\n", dashNone(sc.ALG), sc.State, sc.Count)
	}
	fmt.Fprintf(tw, "expectations\t%d\n", st.Expectations)
	for _, ec := range st.ExpectCounts {
		fmt.Fprintf(tw, "  %s\t%d\n", dashNone(ec.ALG), ec.Count)
	}
	fmt.Fprintf(tw, "limits (per worker)\t\n")
	for _, u := range st.Limits {
		warn := ""
		if u.Percent() >= 80 {
			warn = "  NEAR THE LIMIT"
		}
		fmt.Fprintf(tw, "  %s\t%d / %d\t%.1f%%%s\n", u.Name, u.Used, u.Limit, u.Percent(), warn)
	}
	for _, q := range st.Queues {
		fmt.Fprintf(tw, "queue %d\t%d packets\taccepted %d, dropped %d, offloaded %d\n", q.Queue, q.Packets, q.Accepted, q.Dropped, q.Offloaded)
		fmt.Fprintf(tw, "  lost\t%d\tqueue full %d, socket full %d, overruns %d, verdict errors %d\n",
			q.QueueFull+q.SocketFull+q.Overflows+q.VerdictErrors, q.QueueFull, q.SocketFull, q.Overflows, q.VerdictErrors)
	}
	if h := st.Latency; h.Count > 0 {
		fmt.Fprintf(tw, "engine latency\tmean %s\tp50 <= %s, p99 <= %s, p99.9 <= %s (%d packets)\n",
			secs(h.Mean()), secs(h.Quantile(0.5)), secs(h.Quantile(0.99)), secs(h.Quantile(0.999)), h.Count)
	}
	if st.WatchLost > 0 {
		fmt.Fprintf(tw, "watch events lost\t%d\n", st.WatchLost)
	}
	if !st.RulesLoaded.IsZero() {
		fmt.Fprintf(tw, "rules loaded\t%s\t(%s ago)\n", st.RulesLoaded.Local().Format(time.DateTime), human(now().Sub(st.RulesLoaded)))
	}
}

func cmdRules(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules", "[flags]", `Lists the rules in force with the number of flows each decided since the
rules were loaded (a reload starts the counters again), then each
interface's default.

Examples:
  inspectd rules
  inspectd rules --json | jq '.rules[] | select(.hits == 0)'`, stdout, stderr)
	l := liveFlags(fs, "rules", stderr)
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	rs, code, ok := query(fs, l, pos, stdout, (*client.Client).Rules)
	if !ok {
		return code
	}
	fmt.Fprintf(stdout, "rules from %s, loaded %s (%s ago)\n\n", rs.File, rs.Loaded.Local().Format(time.DateTime), human(now().Sub(rs.Loaded)))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHERE\tIN ON\tHITS\tRULE")
	for _, r := range rs.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Pos, r.Interface, r.Hits, r.Text)
	}
	for _, d := range rs.Defaults {
		log := ""
		if d.Log {
			log = " log"
		}
		fmt.Fprintf(tw, "%s\t%s\t-\tdefault %s%s (device %s)\n", d.Pos, d.Interface, d.Action, log, d.Device)
	}
	tw.Flush()
	return 0
}

func cmdWatch(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("watch", "[flags]", `Streams what the engines do, live, until interrupted: sessions opened and
closed, expectations added, used and expired, denied packets with their
reason, and inspectors' notes. With --json, one JSON object per line. A
"lost" event says events were dropped because the reader was too slow.
--timeout bounds connecting to the daemon, not the stream.

Kinds: `+strings.Join(api.EventKinds, ", ")+`

Examples:
  inspectd watch
  inspectd watch --kind deny
  inspectd watch --kind expect-add,expect-use --json | jq .expect`, stdout, stderr)
	l := liveFlags(fs, "watch", stderr)
	kinds := fs.String("kind", "", "only events of these comma-separated `KINDS`")
	count := fs.Int("count", 0, "stop after `N` events (0: run until interrupted)")
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	if _, err := api.ParseKinds(*kinds); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *count < 0 {
		return usageError(fs, stderr, "--count must not be negative")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := l.client()
	var list []string
	if *kinds != "" {
		list = strings.Split(*kinds, ",")
	}
	st, err := c.WatchWithin(ctx, *l.timeout, list...)
	if err != nil {
		return l.fail(err)
	}
	defer st.Close()
	l.warnVersion(c)
	enc := json.NewEncoder(stdout)
	for n := 0; *count == 0 || n < *count; n++ {
		ev, err := st.Next()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			if errors.Is(err, io.EOF) {
				fmt.Fprintf(stderr, "inspectd watch: the daemon ended the stream (stopped?)\n")
				return 1
			}
			return l.fail(err)
		}
		if *l.json {
			enc.Encode(ev)
		} else {
			fmt.Fprintln(stdout, eventLine(ev))
		}
	}
	return 0
}

// eventLine formats an event for people.
func eventLine(ev api.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-13s ", ev.Time.Local().Format("15:04:05.000"), ev.Kind)
	flow := func(f inspect.FlowInfo) string { return f.Proto + " " + f.Src + " -> " + f.Dst }
	switch ev.Kind {
	case api.KindLost:
		fmt.Fprintf(&b, "%d events lost: this reader was too slow", ev.Lost)
		return b.String()
	case "expect-add", "expect-use", "expect-expire":
		if x := ev.Expect; x != nil {
			fmt.Fprintf(&b, "expectation %d of session %d (%s): %s %s -> %s", x.ID, x.Parent, x.What, x.Proto, x.Src, x.Dst)
			switch ev.Kind {
			case "expect-add":
				fmt.Fprintf(&b, ", expires %s", x.Expires.Local().Format("15:04:05"))
			case "expect-use":
				if ev.Session != nil {
					fmt.Fprintf(&b, ", used by session %d", ev.Session.ID)
				}
			}
			return b.String()
		}
	}
	if s := ev.Session; s != nil {
		fmt.Fprintf(&b, "session %d %s %s -> %s", s.ID, s.Proto, s.Src, s.Dst)
		if s.ALG != "" {
			fmt.Fprintf(&b, " [%s]", s.ALG)
		}
		if s.Parent != 0 {
			fmt.Fprintf(&b, " child of %d", s.Parent)
		}
		if ev.Kind == "deny" && ev.Flow.Src != s.Src {
			fmt.Fprintf(&b, " packet %s", flow(ev.Flow))
		}
	} else if ev.Flow.Proto != "" {
		b.WriteString(flow(ev.Flow))
	}
	if ev.In != "" {
		fmt.Fprintf(&b, " in %s", ev.In)
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, ": %s", ev.Reason)
	}
	if ev.Rule != "" {
		fmt.Fprintf(&b, " (%s)", ev.Rule)
	}
	return b.String()
}

func cmdClear(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("clear", "session ID | --all", `Removes a session, or all of them, from inspectd's table and from the
kernel's conntrack, so that a flow the kernel fast path carries stops too:
its next packets meet no session and are dropped. Clearing a control
session leaves its data connections; clear them by their own IDs (see
'inspectd sessions --parent ID').

Examples:
  inspectd clear session 42
  inspectd clear --all`, stdout, stderr)
	l := liveFlags(fs, "clear", stderr)
	all := fs.Bool("all", false, "clear every session")
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	var id uint64
	switch {
	case *all && len(pos) > 0:
		return usageError(fs, stderr, "give 'session ID' or --all, not both")
	case *all:
	case len(pos) == 0:
		return usageError(fs, stderr, "what to clear? give 'session ID' or --all")
	case pos[0] != "session":
		return usageError(fs, stderr, "unknown object %q (want: session ID)", pos[0])
	case len(pos) != 2:
		return usageError(fs, stderr, "'clear session' takes one session ID")
	default:
		n, err := strconv.ParseUint(pos[1], 10, 64)
		if err != nil || n == 0 {
			return usageError(fs, stderr, "bad session ID %q: want a number like 42 (see 'inspectd sessions')", pos[1])
		}
		id = n
	}
	c := l.client()
	ctx, cancel := l.ctx()
	defer cancel()
	var (
		res api.ClearResult
		err error
	)
	if *all {
		res, err = c.ClearAll(ctx)
	} else {
		res, err = c.Clear(ctx, id)
	}
	if err != nil {
		return l.fail(err)
	}
	l.warnVersion(c)
	if *l.json {
		printJSON(stdout, res)
	} else if *all {
		fmt.Fprintf(stdout, "cleared %s, %s from the kernel's conntrack\n", plural(res.Sessions, "session"), plural(res.Kernel, "flow"))
	} else {
		fmt.Fprintf(stdout, "cleared session %d, %s from the kernel's conntrack\n", id, plural(res.Kernel, "flow"))
	}
	if res.KernelError != "" {
		fmt.Fprintf(stderr, "inspectd clear: the kernel's conntrack was not fully cleared: %s\n", res.KernelError)
		return 1
	}
	return 0
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", "[flags]", `Makes the daemon re-read its rule file, as SIGHUP does. Sessions and
expectations are kept. When the file has errors they are printed and the
old rules stay in force (exit status 1).

Examples:
  inspectd check /etc/inspectd/inspectd.rules && inspectd reload`, stdout, stderr)
	l := liveFlags(fs, "reload", stderr)
	pos, code := l.parse(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	c := l.client()
	ctx, cancel := l.ctx()
	defer cancel()
	res, err := c.Reload(ctx)
	if err != nil {
		return l.fail(err)
	}
	l.warnVersion(c)
	if *l.json {
		printJSON(stdout, res)
	} else {
		fmt.Fprintf(stdout, "rules reloaded\n%s", res.Summary)
	}
	return 0
}

// human formats a duration the way people read ages: 42s, 3m12s, 2h05m,
// 3d04h.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// bytesHuman formats a byte count: 512B, 1.5K, 3.2M, 1.1G (powers of 1024).
func bytesHuman(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, suffix := float64(n)/unit, "KMGTPE"
	i := 0
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%c", v, suffix[i])
}

// secs formats seconds as a duration; "inf" for +Inf.
func secs(s float64) string {
	if math.IsInf(s, 1) {
		return "inf"
	}
	return time.Duration(s * 1e9).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func idOrDash(id uint64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(id, 10)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// flagRE finds a flag's name, and the name of its value if it takes one,
// in a flag set's usage text.
var flagRE = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)(?: ([A-Za-z]+))?$`)

// fileValues are the value names of flags whose value is a file's path.
var fileValues = []string{"FILE", "PATH"}

// flagsOf returns the flags of command c, read from its --help text, and
// those of them whose value is a file's path.
func flagsOf(c command) (flags, files []string) {
	var b strings.Builder
	c.run([]string{"--help"}, &b, io.Discard)
	for _, m := range flagRE.FindAllStringSubmatch(b.String(), -1) {
		flags = append(flags, "--"+m[1])
		if slices.Contains(fileValues, m[2]) {
			files = append(files, "--"+m[1])
		}
	}
	return flags, files
}

// completion is what the completion scripts are made of.
type completion struct {
	names []string            // the commands
	words map[string][]string // by command: its flags and keywords
	files []string            // the flags, of any command, whose value is a file
}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("completion", "bash|zsh", `Prints a shell completion script for inspectd's commands and flags. After
a flag whose value is a file (--rules, --expect, --write-expect, --socket)
and for arguments, it completes file names.

Examples:
  inspectd completion bash > /etc/bash_completion.d/inspectd
  inspectd completion zsh > "${fpath[1]}/_inspectd"
  source <(inspectd completion bash)`, stdout, stderr)
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		return usageError(fs, stderr, "want one shell: bash or zsh")
	}
	comp := completion{words: map[string][]string{}}
	for _, c := range commands() {
		comp.names = append(comp.names, c.name)
		switch c.name {
		case "completion":
			comp.words[c.name] = []string{"bash", "zsh"}
		default:
			flags, files := flagsOf(c)
			if c.name == "clear" {
				flags = append(flags, "session")
			}
			comp.words[c.name] = flags
			comp.files = append(comp.files, files...)
		}
	}
	slices.Sort(comp.files)
	comp.files = slices.Compact(comp.files)
	if pos[0] == "bash" {
		writeBash(stdout, comp)
	} else {
		writeZsh(stdout, comp)
	}
	return 0
}

// filePatterns returns a shell case pattern matching the file-valued
// flags, with one dash or two, each followed by suffix.
func (comp completion) filePatterns(suffix string) string {
	var alts []string
	for _, f := range comp.files {
		alts = append(alts, f[1:]+suffix, f+suffix)
	}
	return strings.Join(alts, "|")
}

func writeBash(w io.Writer, comp completion) {
	fmt.Fprintf(w, `# bash completion for inspectd (generated by 'inspectd completion bash')
_inspectd_files() {
    local IFS=$'\n'
    COMPREPLY=($(compgen -f -- "$1"))
}
_inspectd() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd=${COMP_WORDS[1]} words=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "%s help" -- "$cur"))
        return
    fi
    # bash splits --flag=VALUE at the "=".
    if [ "$cur" = "=" ]; then
        cur=""
    elif [ "$prev" = "=" ]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    case "$prev" in
        %s) _inspectd_files "$cur"; return ;;
    esac
    case "$cmd" in
`, strings.Join(comp.names, " "), comp.filePatterns(""))
	for _, n := range comp.names {
		fmt.Fprintf(w, "        %s) words=%q ;;\n", n, strings.Join(comp.words[n], " "))
	}
	fmt.Fprint(w, `    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    [ ${#COMPREPLY[@]} -eq 0 ] && _inspectd_files "$cur"
}
complete -o filenames -F _inspectd inspectd
`)
}

func writeZsh(w io.Writer, comp completion) {
	fmt.Fprint(w, "#compdef inspectd\n# zsh completion for inspectd (generated by 'inspectd completion zsh')\n_inspectd() {\n")
	fmt.Fprint(w, "  local -a commands\n  commands=(\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "    %q\n", c.name+":"+c.summary)
	}
	fmt.Fprint(w, "  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' commands\n    return\n  fi\n")
	fmt.Fprintf(w, "  case $PREFIX in\n    (%s) compset -P '*='; _files; return ;;\n  esac\n", comp.filePatterns("=*"))
	fmt.Fprintf(w, "  case $words[CURRENT-1] in\n    (%s) _files; return ;;\n  esac\n", comp.filePatterns(""))
	fmt.Fprint(w, "  case $words[2] in\n")
	for _, n := range comp.names {
		fmt.Fprintf(w, "    %s) compadd -- %s; _files ;;\n", n, strings.Join(comp.words[n], " "))
	}
	fmt.Fprint(w, "  esac\n}\nif [ \"$funcstack[1]\" = \"_inspectd\" ]; then\n  _inspectd \"$@\"\nelse\n  compdef _inspectd inspectd\nfi\n")
}

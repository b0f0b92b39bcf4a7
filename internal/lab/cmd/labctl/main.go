// Command labctl builds and tears down the inspectd test lab from the shell,
// with the same definition the Go end-to-end tests use (package lab).
//
//	labctl up [-prefix P] [-owner-pid N] [-dir D] [-ftp-root R] [-tftp-root T] [-echo]
//	labctl down -id ID
//	labctl sweep [-prefix P]
//	labctl echo [-listen [::]:9000]
//
// up prints shell assignments (LAB_ID, LAB_DIR, CLIENT_NS, EDGE_NS,
// SERVER_NS) for eval; daemons it starts keep running after it exits, with
// their logs in LAB_DIR. down kills everything in the lab's namespaces and
// deletes them. sweep deletes labs whose owner process is gone. echo serves
// the echo service in the foreground (run it inside a namespace with
// `ip netns exec`).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/internal/lab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "labctl:", err)
		os.Exit(1)
	}
}

const usage = "usage: labctl up|down|sweep|echo [flags]"

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fs := flag.NewFlagSet("labctl "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "up":
		prefix := fs.String("prefix", "idemo", "namespace name prefix")
		owner := fs.Int("owner-pid", os.Getppid(), "process whose exit makes the lab stale")
		dir := fs.String("dir", "", "directory for configs and logs (default: a new temp dir)")
		ftpRoot := fs.String("ftp-root", "", "start vsftpd on ports 21 and 2121 serving this directory")
		tftpRoot := fs.String("tftp-root", "", "start in.tftpd (with --create) serving this directory")
		echo := fs.Bool("echo", false, "start the echo service on port 9000 in the server namespace")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return up(ctx, out, *prefix, *owner, *dir, *ftpRoot, *tftpRoot, *echo)
	case "down":
		id := fs.String("id", "", "lab id printed by up (LAB_ID)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *id == "" {
			return fmt.Errorf("down needs -id")
		}
		return lab.Attach(*id, "").Close()
	case "sweep":
		prefix := fs.String("prefix", "idemo", "namespace name prefix")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		removed, err := lab.Sweep(ctx, *prefix)
		for _, name := range removed {
			fmt.Fprintln(out, "removed", name)
		}
		return err
	case "echo":
		listen := fs.String("listen", fmt.Sprintf("[::]:%d", lab.EchoPort), "listen address")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		s := lab.ServeEcho(ln)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		return s.Close()
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func up(ctx context.Context, out io.Writer, prefix string, owner int, dir, ftpRoot, tftpRoot string, echo bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "inspectd-lab-")
		if err != nil {
			return err
		}
		dir = d
	}
	l, err := lab.Create(ctx, prefix, owner, dir)
	if err != nil {
		return err
	}
	if err := startDaemons(ctx, l, ftpRoot, tftpRoot, echo); err != nil {
		return fmt.Errorf("%w (lab torn down: %v)", err, l.Close())
	}
	fmt.Fprintf(out, "LAB_ID=%s\nLAB_DIR=%s\nCLIENT_NS=%s\nEDGE_NS=%s\nSERVER_NS=%s\n",
		l.ID, l.Dir, l.Client, l.Edge, l.Server)
	return nil
}

func startDaemons(ctx context.Context, l *lab.Lab, ftpRoot, tftpRoot string, echo bool) error {
	if ftpRoot != "" {
		for _, port := range []int{21, 2121} {
			if err := l.StartVsftpd(ctx, ftpRoot, port); err != nil {
				return err
			}
		}
	}
	if tftpRoot != "" {
		if err := l.StartTFTPD(ctx, tftpRoot, true); err != nil {
			return err
		}
	}
	if echo {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if _, err := l.Start(l.Server, "echo", self, "echo"); err != nil {
			return err
		}
	}
	return nil
}

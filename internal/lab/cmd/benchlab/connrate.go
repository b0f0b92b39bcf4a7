package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// connResult is the outcome of one connection-rate run, as `benchlab
// connrate` prints it (JSON).
type connResult struct {
	// Conns counts the connections that completed: connected, echoed one
	// byte, closed.
	Conns int `json:"conns"`
	// Errors counts failed attempts; FirstError describes the first.
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Elapsed is from the start until the last client finished.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Rate returns completed connections per second.
func (r connResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Elapsed.Seconds()
}

// connRateCmd is `benchlab connrate -addr HOST:PORT [-clients N] [-duration
// D] [-sources ADDR,...]`: it runs the connection-rate client in the
// current network namespace and prints a connResult.
func connRateCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchlab connrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "", "echo service address (host:port)")
	clients := fs.Int("clients", 16, "parallel clients")
	d := fs.Duration("duration", 4*time.Second, "how long clients start new connections")
	srcList := fs.String("sources", "", "comma-separated local addresses, one per client in turn (default: the kernel's choice)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *addr == "" || fs.NArg() > 0 || *clients < 1 || *d <= 0 {
		return fmt.Errorf("%w: benchlab connrate -addr HOST:PORT [-clients N>0] [-duration D>0] [-sources ADDR,...]", errUsage)
	}
	sources, err := parseSources(*srcList)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	res := connRate(context.Background(), *addr, *clients, *d, sources)
	return json.NewEncoder(stdout).Encode(res)
}

// connTimeout bounds one connection's connect and echo.
const connTimeout = 5 * time.Second

// parseSources parses a comma-separated list of IP addresses; "" is none.
func parseSources(list string) ([]netip.Addr, error) {
	if list == "" {
		return nil, nil
	}
	var addrs []netip.Addr
	for _, f := range strings.Split(list, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("source address: %w", err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// connRate runs clients goroutines that each, until d has passed since the
// start, connect to addr, write one byte, read it back and close. Client i
// connects from sources[i%len(sources)] when sources are given. An attempt
// that fails is counted, and its client pauses 10 ms so a refused port does
// not spin.
func connRate(ctx context.Context, addr string, clients int, d time.Duration, sources []netip.Addr) connResult {
	var (
		mu  sync.Mutex
		res connResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for i := range clients {
		dialer := net.Dialer{Timeout: connTimeout}
		if len(sources) > 0 {
			dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(sources[i%len(sources)], 0))
		}
		wg.Go(func() {
			ok, failed, first := connLoop(ctx, &dialer, addr, deadline)
			mu.Lock()
			res.Conns += ok
			res.Errors += failed
			if res.FirstError == "" && first != nil {
				res.FirstError = first.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// connLoop is one client of connRate.
func connLoop(ctx context.Context, d *net.Dialer, addr string, deadline time.Time) (ok, failed int, first error) {
	var buf [1]byte
	for time.Now().Before(deadline) && ctx.Err() == nil {
		err := echoOnce(ctx, d, addr, &buf)
		if err == nil {
			ok++
			continue
		}
		failed++
		if first == nil {
			first = err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ok, failed, first
}

// echoOnce connects, writes buf, reads one byte back and closes.
func echoOnce(ctx context.Context, d *net.Dialer, addr string, buf *[1]byte) error {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if err := echoByte(c, buf); err != nil {
		c.Close()
		return err
	}
	return c.Close()
}

func echoByte(c net.Conn, buf *[1]byte) error {
	if err := c.SetDeadline(time.Now().Add(connTimeout)); err != nil {
		return err
	}
	buf[0] = 'x'
	if _, err := c.Write(buf[:]); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf[:])
	return err
}

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/iosftp"
	"github.com/inspectd/inspectd/internal/lab"
)

// blockedPort is a port in vsftpd's passive range that a test listener
// holds: reachable only if a firewall lets unnegotiated traffic through.
const blockedPort = lab.PasvMax

// TestUnnegotiatedDataPort connects to a listening port in the passive
// range without any FTP negotiation: stateful firewalls must block it.
func TestUnnegotiatedDataPort(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		for _, fam := range families {
			t.Run(fam.name, func(t *testing.T) {
				ln, err := e.lab.Server.Listen("tcp", hostPort(fam.server, blockedPort))
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				wait := 2 * time.Second // enough to see a connection refused
				if !e.fw.stateful {
					wait = 10 * time.Second // the control must pass, also on a loaded machine
				}
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				c, err := e.lab.Client.DialContext(ctx, "tcp", hostPort(fam.server, blockedPort))
				if err == nil {
					c.Close()
				}
				switch {
				case e.fw.stateful && err == nil:
					t.Fatalf("connected to %s without negotiation through %s", hostPort(fam.server, blockedPort), e.fw.name)
				case !e.fw.stateful && err != nil:
					t.Fatalf("control: without a firewall the connection must work: %v", err)
				}
			})
		}
	})
}

// TestPinholeOnlyForNegotiatingClient negotiates a passive data channel
// from the client's address, then connects to it from a second client
// address (must fail) and from the negotiating one (must work).
func TestPinholeOnlyForNegotiatingClient(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		if !e.fw.stateful {
			t.Skip("no firewall: nothing restricts the data port")
		}
		other := map[string]netip.Addr{"v4": netip.MustParseAddr("198.51.100.3"), "v6": netip.MustParseAddr("2001:db8:1::3")}
		e.run(t, e.lab.Client, 5*time.Second, "ip", "addr", "add", other["v4"].String()+"/24", "dev", lab.ClientIf)
		e.run(t, e.lab.Client, 5*time.Second, "ip", "addr", "add", other["v6"].String()+"/64", "dev", lab.ClientIf, "nodad")
		for _, fam := range families {
			for _, passive := range []string{"PASV", "EPSV"} {
				if passive == "PASV" && fam.server.Is6() {
					continue
				}
				t.Run(fam.name+"/"+passive, func(t *testing.T) {
					ctx := e.ctx(t, 30*time.Second)
					// The control connection must come from the primary
					// address: with a second address on the interface
					// the kernel may pick either as the source.
					primary := lab.ClientV4
					if fam.server.Is6() {
						primary = lab.ClientV6
					}
					cl := iosftp.Client{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
						return e.lab.Client.DialFrom(ctx, primary, addr)
					}}
					c, err := cl.Login(ctx, hostPort(fam.server, 21))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					ap, err := c.Passive(passive)
					if err != nil {
						t.Fatal(err)
					}
					short, cancel := context.WithTimeout(ctx, 2*time.Second)
					defer cancel()
					if dc, err := e.lab.Client.DialFrom(short, other[fam.name], ap.String()); err == nil {
						dc.Close()
						t.Fatalf("%s reached the data port %s negotiated by another client", other[fam.name], ap)
					}
					dc, err := e.lab.Client.DialFrom(ctx, primary, ap.String())
					if err != nil {
						t.Fatalf("negotiating client cannot reach its data port %s: %v", ap, err)
					}
					defer dc.Close()
					if _, err := c.CmdExpect("RETR small.bin", 1); err != nil {
						t.Fatal(err)
					}
					n, err := io.Copy(io.Discard, dc)
					if err != nil || n != files["small.bin"] {
						t.Fatalf("data channel gave %d bytes (%v), want %d", n, err, files["small.bin"])
					}
					if _, err := c.Expect("RETR", 2); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	})
}

// TestUnsolicitedTCP sends a bare ACK and a SYN-ACK from the client side
// for connections that never existed and captures on the server: through a
// stateful firewall none may arrive.
func TestUnsolicitedTCP(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		for i, fam := range families {
			t.Run(fam.name, func(t *testing.T) {
				client := lab.ClientV4
				if fam.server.Is6() {
					client = lab.ClientV6
				}
				ackPort, synAckPort := uint16(40400+2*i), uint16(40401+2*i)
				filter := fmt.Sprintf("tcp and (src port %d or src port %d)", ackPort, synAckPort)
				dump, err := e.lab.Start(e.lab.Server, "tcpdump-"+fam.name, "tcpdump", "-i", lab.ServerIf, "-n", "-l", "-U", filter)
				if err != nil {
					t.Fatal(err)
				}
				if err := dump.WaitLog(e.ctx(t, 10*time.Second), "listening on"); err != nil {
					t.Fatal(err)
				}
				err = e.lab.Client.Do(func() error {
					for range 3 {
						if err := sendTCP(client, fam.server, ackPort, 21, tcpACK); err != nil {
							return err
						}
						if err := sendTCP(client, fam.server, synAckPort, 21, tcpSYN|tcpACK); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				_ = dump.Stop(3 * time.Second)
				seen := 0
				for line := range strings.Lines(dump.Log()) {
					if strings.Contains(line, fmt.Sprintf(".%d > ", ackPort)) || strings.Contains(line, fmt.Sprintf(".%d > ", synAckPort)) {
						seen++
					}
				}
				switch {
				case e.fw.stateful && seen > 0:
					t.Fatalf("%d unsolicited segments reached the server through %s:\n%s", seen, e.fw.name, dump.Log())
				case !e.fw.stateful && seen != 6:
					t.Fatalf("control: saw %d of 6 segments without a firewall; capture:\n%s", seen, dump.Log())
				}
			})
		}
	})
}

// TCP flag bits.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// sendTCP sends one bare TCP segment from src:sport to dst:dport through a
// raw socket of the calling thread's namespace (the kernel adds the IP
// header; src must be the address it picks).
func sendTCP(src, dst netip.Addr, sport, dport uint16, flags uint8) error {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], 0x1badcafe)
	binary.BigEndian.PutUint32(seg[8:], 0x0badf00d)
	seg[12] = 5 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(src, dst, seg))
	var family int
	var sa syscall.Sockaddr
	if dst.Is4() {
		family, sa = syscall.AF_INET, &syscall.SockaddrInet4{Addr: dst.As4()}
	} else {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Addr: dst.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_RAW, syscall.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Sendto(fd, seg, 0, sa); err != nil {
		return fmt.Errorf("send raw segment to %s: %w", dst, err)
	}
	return nil
}

// tcpChecksum is the TCP checksum over the pseudo header and seg (whose
// checksum field is zero).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += syscall.IPPROTO_TCP + uint32(len(seg))
	add(seg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

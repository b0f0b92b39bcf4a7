package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/iosftp"
	"github.com/inspectd/inspectd/internal/lab"
)

// ftpMode is how a client opens its data channel, with the curl flags that
// select it and the command the server must see.
type ftpMode struct {
	name    string
	curl    []string
	command string // as logged by vsftpd, e.g. `"PASV"` or `"EPRT |`
	v4only  bool
}

var ftpModes = []ftpMode{
	{name: "PASV", curl: []string{"--disable-epsv"}, command: `"PASV"`, v4only: true},
	{name: "EPSV", command: `"EPSV"`},
	{name: "PORT", curl: []string{"-P", "-", "--disable-eprt"}, command: `"PORT `, v4only: true},
	{name: "EPRT", curl: []string{"-P", "-"}, command: `"EPRT |`},
}

type family struct {
	name   string
	server netip.Addr
}

var families = []family{{"v4", lab.ServerV4}, {"v6", lab.ServerV6}}

// hostPort formats the server address for URLs and dialing.
func hostPort(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// TestFTPCurl downloads with curl in every data-channel mode, both address
// families and both control ports.
func TestFTPCurl(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		for _, fam := range families {
			for _, port := range []int{21, 2121} {
				for _, m := range ftpModes {
					if m.v4only && fam.server.Is6() {
						continue
					}
					t.Run(fmt.Sprintf("%s/%d/%s", fam.name, port, m.name), func(t *testing.T) {
						_, off := e.ftpLog(t, port, fam.server.Is6(), 0)
						out := e.local(t, "a.bin")
						args := append([]string{"-o", out}, m.curl...)
						args = append(args, "ftp://"+hostPort(fam.server, port)+"/a.bin")
						if _, err := e.curl(e.ctx(t, 90*time.Second), args...); err != nil {
							t.Fatal(err)
						}
						e.checkFile(t, out, "a.bin")
						if log, _ := e.ftpLog(t, port, fam.server.Is6(), off); !strings.Contains(log, m.command) {
							t.Errorf("vsftpd did not see %s; its log:\n%s", m.command, log)
						}
					})
				}
			}
		}
	})
}

// TestFTPCurlMultipleURLs fetches several files over one control connection
// with curl (it reuses the connection for URLs on the same server).
func TestFTPCurlMultipleURLs(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		for _, fam := range families {
			t.Run(fam.name, func(t *testing.T) {
				base := "ftp://" + hostPort(fam.server, 21) + "/"
				outA, outB, outS := e.local(t, "a.bin"), e.local(t, "b.bin"), e.local(t, "small.bin")
				_, off := e.ftpLog(t, 21, fam.server.Is6(), 0)
				if _, err := e.curl(e.ctx(t, 90*time.Second),
					"-o", outA, base+"a.bin", "-o", outB, base+"b.bin", "-o", outS, base+"small.bin"); err != nil {
					t.Fatal(err)
				}
				e.checkFile(t, outA, "a.bin")
				e.checkFile(t, outB, "b.bin")
				e.checkFile(t, outS, "small.bin")
				log, _ := e.ftpLog(t, 21, fam.server.Is6(), off)
				if n := strings.Count(log, "CONNECT: Client"); n != 1 {
					t.Errorf("%d control connections, want 1; vsftpd log:\n%s", n, log)
				}
			})
		}
	})
}

// TestFTPLftp runs several transfers on one lftp control connection in each
// mode lftp offers.
func TestFTPLftp(t *testing.T) {
	modes := []struct {
		name     string
		settings string
		command  string
		only     string // family the mode exists in, "" for both
	}{
		{"PASV", "set ftp:passive-mode on; set ftp:prefer-epsv no", `"PASV"`, "v4"},
		{"EPSV", "set ftp:passive-mode on; set ftp:prefer-epsv yes", `"EPSV"`, ""},
		{"PORT", "set ftp:passive-mode off", `"PORT `, "v4"},
		{"EPRT", "set ftp:passive-mode off", `"EPRT |`, "v6"}, // lftp sends PORT on IPv4
	}
	forEachFirewall(t, func(t *testing.T, e *env) {
		for _, fam := range families {
			for _, m := range modes {
				if m.only != "" && m.only != fam.name {
					continue
				}
				t.Run(fam.name+"/"+m.name, func(t *testing.T) {
					outA, outB := e.local(t, "a.bin"), e.local(t, "b.bin")
					_, off := e.ftpLog(t, 2121, fam.server.Is6(), 0)
					script := fmt.Sprintf("set net:max-retries 1; set net:timeout 10; %s; get a.bin -o %s; get b.bin -o %s; bye",
						m.settings, outA, outB)
					e.run(t, e.lab.Client, 90*time.Second, "lftp", "-e", script, "ftp://"+hostPort(fam.server, 2121))
					e.checkFile(t, outA, "a.bin")
					e.checkFile(t, outB, "b.bin")
					log, _ := e.ftpLog(t, 2121, fam.server.Is6(), off)
					if n := strings.Count(log, m.command); n < 2 {
						t.Errorf("vsftpd saw %s %d times, want 2; its log:\n%s", m.command, n, log)
					}
					if n := strings.Count(log, "CONNECT: Client"); n != 1 {
						t.Errorf("%d control connections, want 1", n)
					}
				})
			}
		}
	})
}

// TestIOSProbe runs the IOS copy sequence: RETR, urgent-data ABOR, RETR
// again on the same control connection.
func TestIOSProbe(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		want, err := os.ReadFile(filepath.Join(e.ftpRoot, "big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		for _, fam := range families {
			for _, port := range []int{21, 2121} {
				for _, passive := range []string{"PASV", "EPSV"} {
					if passive == "PASV" && fam.server.Is6() {
						continue
					}
					t.Run(fmt.Sprintf("%s/%d/%s", fam.name, port, passive), func(t *testing.T) {
						_, off := e.ftpLog(t, port, fam.server.Is6(), 0)
						cl := iosftp.Client{DialContext: e.lab.Client.DialContext}
						got, err := cl.ProbeThenFetch(e.ctx(t, 60*time.Second), hostPort(fam.server, port), "big.bin", passive)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("got %d bytes, not the %d-byte file", len(got), len(want))
						}
						log, _ := e.ftpLog(t, port, fam.server.Is6(), off)
						if !strings.Contains(log, "ABOR successful") {
							t.Errorf("vsftpd log shows no ABOR:\n%s", log)
						}
					})
				}
			}
		}
	})
}

// TestTFTP gets and puts files with tftp-hpa over both families.
func TestTFTP(t *testing.T) {
	forEachFirewall(t, func(t *testing.T, e *env) {
		for _, fam := range families {
			args := []string{"-m", "binary", fam.server.String(), "-c"}
			if fam.server.Is6() {
				args = append([]string{"-6"}, args...)
			}
			t.Run(fam.name+"/get", func(t *testing.T) {
				out := e.local(t, "t-b.bin")
				e.run(t, e.lab.Client, 60*time.Second, "tftp", append(args, "get", "t-b.bin", out)...)
				if err := lab.SameFile(out, filepath.Join(e.tftpRoot, "t-b.bin")); err != nil {
					t.Fatal(err)
				}
			})
			t.Run(fam.name+"/put", func(t *testing.T) {
				src := filepath.Join(e.ftpRoot, "a.bin") // readable by the client
				remote := "up-" + fam.name + ".bin"
				e.run(t, e.lab.Client, 60*time.Second, "tftp", append(args, "put", src, remote)...)
				if err := lab.SameFile(src, filepath.Join(e.tftpRoot, remote)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

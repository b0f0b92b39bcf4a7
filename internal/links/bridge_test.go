package links

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/nfq/nstest"
)

// TestBridgePort: removing a port from a bridge makes the kernel
// send an RTM_DELLINK of family AF_BRIDGE for the port, which still
// exists. The map must end up with the port's name.
func TestBridgePort(t *testing.T) {
	nstest.Enter(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Watch(ctx, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	nstest.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	nstest.Run(t, "ip", "link", "add", "port0", "type", "veth", "peer", "name", "peer0")
	ifc, err := net.InterfaceByName("port0")
	if err != nil {
		t.Fatal(err)
	}
	idx := uint32(ifc.Index)
	wait := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if m.Name(idx) == want {
				return
			}
		}
		t.Fatalf("Name(%d) = %q, want %q", idx, m.Name(idx), want)
	}
	wait("port0")
	for range 3 {
		nstest.Run(t, "ip", "link", "set", "port0", "master", "br0")
		nstest.Run(t, "ip", "link", "set", "port0", "up")
		time.Sleep(50 * time.Millisecond)
		wait("port0")
		nstest.Run(t, "ip", "link", "set", "port0", "nomaster")
		time.Sleep(50 * time.Millisecond)
		wait("port0")
	}
	nstest.Run(t, "ip", "link", "set", "port0", "master", "br0")
	nstest.Run(t, "ip", "link", "del", "br0")
	time.Sleep(50 * time.Millisecond)
	wait("port0")
	nstest.Run(t, "ip", "link", "set", "port0", "name", "port1")
	wait("port1")
	nstest.Run(t, "ip", "link", "del", "port1")
	wait("")
	nstest.Run(t, "ip", "link", "add", "port2", "index", strconv.Itoa(int(idx)), "type", "veth", "peer", "name", "peer2")
	wait("port2")
}

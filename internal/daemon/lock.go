package daemon

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// instanceLock is the name of the abstract unix socket a daemon holds
// while it runs. Abstract names belong to a network namespace and vanish
// with the process that bound them, even one killed with SIGKILL, so
// nothing is left to clean up.
const instanceLock = "@inspectd/instance"

// lockNamespace makes sure that one daemon runs per network namespace: the
// hooks, the kernel's conntrack accounting and the queues are the
// namespace's, and a second daemon that took them over would leave the
// first one blind (its hooks replaced as if left by a crash). It is taken
// before anything in the kernel changes; Close releases it.
func lockNamespace() (net.Listener, error) {
	l, err := net.Listen("unix", instanceLock)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("another inspectd runs in this network namespace (it holds the abstract socket %s); stop it first", instanceLock)
	}
	if err != nil {
		return nil, fmt.Errorf("instance lock %s: %w", instanceLock, err)
	}
	return l, nil
}

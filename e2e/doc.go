// Package e2e holds the end-to-end tests: each builds a lab of network
// namespaces (package internal/lab), starts vsftpd and tftpd-hpa in the
// server namespace, puts a firewall on the edge namespace and moves real
// files with curl, lftp, tftp-hpa and the IOS-style client, byte for byte.
//
// Every scenario runs once per firewall: "none" (plain forwarding, proves
// the lab), "kernel" (iptables with the kernel's FTP and TFTP helpers, the
// baseline that proves the negative tests can fail), and "inspectd"
// (inspectd run --rules examples/lab.rules on the edge). Select firewalls
// with E2E_FIREWALLS=none,kernel,inspectd (the default is all three).
//
// Run as root: go test ./e2e/. Without root or the tools the tests skip,
// unless CI=true, where they fail.
package e2e

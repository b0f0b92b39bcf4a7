// Package inspect is inspectd's engine: it joins packet decoding, the
// session table (conntrack), the rules and the application-layer
// inspectors (inspect/ftp, inspect/tftp) into one decision per packet.
//
// The same Engine runs in replay and live; only the packet source differs.
// An Engine is single-threaded: the live daemon runs one per queue worker.
package inspect

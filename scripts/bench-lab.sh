#!/usr/bin/env bash
# bench-lab.sh (make bench-lab): the lab benchmark. The same passive FTP
# download (200 MiB, median of 5) and a TCP connection-rate test (16
# clients, connect / 1-byte echo / close, 4 s, median of 3) through the
# lab's edge with no firewall, with the kernel's conntrack and FTP helper,
# and with inspectd; prints the figures, the ratios to the kernel's, the
# packets that reached user space per transfer, and the targets met or not.
# Method and figures: BENCHMARKS.md. Needs root and bin/inspectd (make
# build). Extra arguments go to benchlab (internal/lab/cmd/benchlab), e.g.
#   scripts/bench-lab.sh -conn-sources 16
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-lab: run as root (network namespaces, iptables)" >&2
	exit 1
fi
if [ ! -x bin/inspectd ]; then
	echo "bench-lab: bin/inspectd missing; run make build" >&2
	exit 1
fi

WORK=$(mktemp -d /tmp/inspectd-bench-lab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/benchlab" ./internal/lab/cmd/benchlab
"$WORK/benchlab" -inspectd bin/inspectd -rules examples/lab.rules "$@"

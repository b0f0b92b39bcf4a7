#!/usr/bin/env bash
# demo.sh (make demo): a remote router downloads its image through the edge.
#
# Builds the lab (internal/lab via labctl: client, edge and server network
# namespaces), starts inspectd with examples/lab.rules on the edge, fetches a
# 20 MiB "router image" over passive FTP from the client, shows that the
# pinhole was opened for that client only, and shows an unnegotiated
# connection to a passive-range port being denied. Everything is torn down
# on exit. Needs root.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RULES=$ROOT/examples/lab.rules
IMAGE=c2900-universalk9-mz.SPA.157-3.M8.bin

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (network namespaces)" >&2
	exit 1
fi

say "1. Dependencies"
"$ROOT/scripts/install-deps.sh"

WORK=$(mktemp -d /tmp/inspectd-demo.XXXXXX)
LAB_ID=""
INSPECTD_PID=""
WATCH_PID=""
LISTENER_PID=""
cleanup() {
	set +e
	say "Teardown"
	[ -n "$INSPECTD_PID" ] && kill -TERM "$INSPECTD_PID" 2>/dev/null && wait "$INSPECTD_PID" 2>/dev/null
	[ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
	[ -n "$LAB_ID" ] && "$WORK/labctl" down -id "$LAB_ID" && note "lab $LAB_ID removed"
	rm -rf "$WORK"
}
trap cleanup EXIT

say "2. Build"
go build -o "$WORK/labctl" ./internal/lab/cmd/labctl
go build -o "$WORK/inspectd" ./cmd/inspectd
note "built inspectd: $("$WORK/inspectd" version)"
"$WORK/labctl" sweep -prefix idemo >/dev/null

say "3. Lab: router (client) -- edge -- image server"
mkdir -p "$WORK/ftp"
head -c $((20 << 20)) /dev/urandom >"$WORK/ftp/$IMAGE"
chmod 644 "$WORK/ftp/$IMAGE"
eval "$("$WORK/labctl" up -owner-pid $$ -dir "$WORK" -ftp-root "$WORK/ftp")"
note "client 198.51.100.2  ($CLIENT_NS)"
note "edge   198.51.100.1 | 192.0.2.1  ($EDGE_NS, wan0 | lan0)"
note "server 192.0.2.10, vsftpd on 21 and 2121, passive ports 30000-30100  ($SERVER_NS)"

say "4. Start inspectd on the edge"
note "rules: $RULES"
sed -n '/^in on wan/,/^}/p' "$RULES" | sed 's/^/     /'
export INSPECTD_SOCKET="$WORK/inspectd.sock"
ip netns exec "$EDGE_NS" "$WORK/inspectd" run --rules "$RULES" --queues 2 --log-format console \
	2>"$WORK/inspectd.log" &
INSPECTD_PID=$!
for _ in $(seq 100); do
	grep -q 'inspectd started' "$WORK/inspectd.log" && break
	kill -0 "$INSPECTD_PID" 2>/dev/null || { cat "$WORK/inspectd.log"; exit 1; }
	sleep 0.1
done
grep -q 'inspectd started' "$WORK/inspectd.log" || { echo "inspectd not ready"; cat "$WORK/inspectd.log"; exit 1; }
note "inspectd running (pid $INSPECTD_PID), control socket $INSPECTD_SOCKET"
"$WORK/inspectd" watch >"$WORK/watch.log" 2>&1 &
WATCH_PID=$!
sleep 0.3

say "5. The router fetches its image over passive FTP"
ip netns exec "$CLIENT_NS" curl -sS --disable-epsv --connect-timeout 5 \
	-o "$WORK/downloaded.bin" -w '   %{size_download} bytes in %{time_total}s\n' "ftp://192.0.2.10/$IMAGE"
want=$(sha256sum <"$WORK/ftp/$IMAGE" | cut -c1-64)
got=$(sha256sum <"$WORK/downloaded.bin" | cut -c1-64)
if [ "$want" = "$got" ]; then note "sha256 matches: $got"; else note "sha256 MISMATCH"; exit 1; fi
note "what the server negotiated:"
grep -E '"(PASV|227 [^"]*)"' "$LAB_DIR"/vsftpd-21-v4.protocol.log | sed 's/^/     /' | tail -2

say "6. The pinhole was for that client, that port, once"
sleep 0.5
note "events inspectd reported during the download ('inspectd watch'):"
sed 's/^/     /' "$WORK/watch.log"
note "the session table ('inspectd sessions'): the data session is a child (parent) of the control session;"
note "it was offloaded at its SYN, so the kernel carried the transfer and counted it (read every 5 s):"
for _ in $(seq 40); do
	"$WORK/inspectd" sessions | grep -E ' yes *$' | grep -qE '/[0-9.]+M ' && break
	sleep 0.2
done
"$WORK/inspectd" sessions | sed 's/^/     /'

say "7. An unnegotiated connection to a passive-range port"
ip netns exec "$SERVER_NS" "$WORK/labctl" echo -listen 192.0.2.10:30100 &
LISTENER_PID=$!
sleep 0.3
note "the server now listens on 192.0.2.10:30100; the client connects without FTP negotiation:"
if ip netns exec "$CLIENT_NS" timeout 3 bash -c 'exec 3<>/dev/tcp/192.0.2.10/30100' 2>/dev/null; then
	note "CONNECTED: inspectd should have denied this!"
	exit 1
fi
note "denied: no pinhole, no connection. inspectd's log says:"
grep -i 'deny' "$WORK/inspectd.log" | grep 30100 | tail -2 | sed 's/^/     /'
say "Done"

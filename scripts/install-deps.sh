#!/usr/bin/env bash
# install-deps.sh: install the Debian packages the end-to-end tests and the
# demo need. Idempotent: does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(iptables vsftpd curl lftp tftpd-hpa tftp-hpa tcpdump iproute2 conntrack procps iputils-ping)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# vsftpd and tftpd-hpa would start as services on the host's own network
# (an FTP server on port 21 for local users, TFTP on 69) and come back at
# every boot. The lab runs its own copies inside its namespaces: keep the
# packages' services from starting now, and disable them for good.
policy=/usr/sbin/policy-rc.d
mark="# inspectd install-deps: no service starts during the install"
if [ -e "$policy" ] && grep -qxF "$mark" "$policy"; then
	rm -f "$policy" # left by an install-deps that was killed
fi
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n%s\nexit 101\n' "$mark" >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
for svc in vsftpd tftpd-hpa; do
	if [[ " ${missing[*]} " == *" $svc "* ]]; then
		if command -v systemctl >/dev/null; then
			systemctl disable "$svc" >/dev/null 2>&1 || true
			systemctl stop "$svc" >/dev/null 2>&1 || true
		fi
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done

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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

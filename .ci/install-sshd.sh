#!/bin/sh
# Idempotently install OpenSSH's server, needed by the SSH tests (websync_dagster_tests/sshd.py).
# The tests start their own sshd on a free 127.0.0.1 port; no system sshd is started or required.
set -eu
if [ -x /usr/sbin/sshd ]; then
    echo "install-sshd: /usr/sbin/sshd already present ($(/usr/sbin/sshd -V 2>&1 | head -n1 || true)), nothing to do"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
echo "install-sshd: installed openssh-server ($(/usr/sbin/sshd -V 2>&1 | head -n1 || true))"

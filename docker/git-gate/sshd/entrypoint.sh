#!/bin/sh
# Entrypoint of bottle-test-sshd, the ssh upstream the git-gate tests push to. It is a test
# fixture, never part of a bottle: it accepts only public-key logins of user `git` (shell
# git-shell), with the host key and authorized_keys the test copied in before start.
# SSHD_PORT (default 22) sets the port.
set -eu
key=/etc/ssh/ssh_host_ed25519_key
if [ ! -s "$key" ]; then
    echo "test-sshd: no host key at $key; copy one in before starting the container" >&2
    exit 2
fi
chown root:root "$key" && chmod 0600 "$key"
if [ -e /srv/git/.ssh/authorized_keys ]; then
    chown -R git:git /srv/git/.ssh && chmod 0700 /srv/git/.ssh && chmod 0600 /srv/git/.ssh/authorized_keys
fi
mkdir -p /run/sshd && chmod 0755 /run/sshd
exec /usr/sbin/sshd -D -e \
    -o Port="${SSHD_PORT:-22}" \
    -o HostKey="$key" \
    -o PasswordAuthentication=no \
    -o KbdInteractiveAuthentication=no \
    -o PermitRootLogin=no \
    -o AllowUsers=git \
    -o UsePAM=no \
    -o LogLevel=VERBOSE

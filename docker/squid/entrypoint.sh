#!/bin/sh
# bottle-squid entrypoint: prepares what squid needs before it drops to user
# `proxy`, then runs it in the foreground. It must never widen squid's policy:
# the configuration comes only from /etc/squid/squid.conf written by `bottle`.
set -eu
db=/var/lib/squid/ssl_db
mkdir -p /var/lib/squid
if [ ! -d "$db" ]; then
  /usr/lib/squid/security_file_certgen -c -s "$db" -M 4MB >/dev/null
  chown -R proxy:proxy "$db"
fi
# squid reopens fds 1 and 2 as user `proxy`: make them writable for it.
chmod a+w /proc/self/fd/1 /proc/self/fd/2 2>/dev/null || true
mkdir -p /var/spool/squid /var/log/squid /run/squid
chown proxy:proxy /var/spool/squid /var/log/squid /run/squid
exec /usr/sbin/squid -N -f /etc/squid/squid.conf "$@"

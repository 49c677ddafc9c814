#!/usr/bin/env bash
# Make a PostgreSQL server answer at TALLYBOOK_TEST_POSTGRES_URL (default the local one) for the tests:
# use a running one, else start an installed cluster, else install Debian's `postgresql` (as root) and start it.
# Exits non-zero only when no server can be had; the tests then skip their PostgreSQL half, loudly.
set -u
url="${TALLYBOOK_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
hostport="${url#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$hostport" ] && port=5432
db="${url##*/}"; db="${db%%\?*}"

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -n -u postgres sh -c "$*"; fi; }

if ready; then exit 0; fi
case "$host" in 127.0.0.1|localhost|::1) ;; *) echo "PostgreSQL at $host:$port does not answer." >&2; exit 1;; esac

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing PostgreSQL (Debian package postgresql) for the tests..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || exit 1
  else
    echo "PostgreSQL is not installed and this user cannot install it (needs root and apt-get)." >&2; exit 1
  fi
fi
version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
[ -n "$version" ] || { echo "No PostgreSQL cluster found under /etc/postgresql." >&2; exit 1; }
hba="/etc/postgresql/$version/main/pg_hba.conf"
if [ -w "$hba" ] && ! grep -q "tallybook-tests" "$hba"; then
  # Local test server only: trust loopback connections, as the CI machines do.
  sed -i "1i host all all 127.0.0.1/32 trust # tallybook-tests\nhost all all ::1/128 trust # tallybook-tests" "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || exit 1
for _ in $(seq 1 30); do ready && break; sleep 1; done
ready || { echo "PostgreSQL did not start." >&2; exit 1; }
as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\" | grep -q 1 || createdb -p $port $db" || true
exit 0

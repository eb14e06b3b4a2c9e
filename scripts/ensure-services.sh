#!/usr/bin/env bash
# Starts the Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, trust, database "test") the export tests
# use, each only when nothing listens on its port already; state under ./var/. Idempotent; never stops or
# wipes a server that is already running.
set -euo pipefail
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 100); do listening "$1" && return 0; sleep 0.1; done; return 1; }
var="$(pwd)/var"

if ! listening 6379; then
  redis=$(command -v redis-server || echo /usr/bin/redis-server)
  if [ -x "$redis" ]; then
    mkdir -p "$var/redis"
    "$redis" --port 6379 --bind 127.0.0.1 --dir "$var/redis" --appendonly yes --daemonize yes \
      --logfile "$var/redis/redis.log"
    wait_for 6379 || { echo "ensure-services: redis did not start (see $var/redis/redis.log)" >&2; exit 1; }
  else
    echo "ensure-services: no Redis on 127.0.0.1:6379 and redis-server is not installed (export tests skip)" >&2
  fi
fi

if ! listening 5432; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then
    dir="$var/postgres"
    # PostgreSQL refuses to run as root: as root, the cluster belongs to the 'postgres' user Debian creates.
    as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; chmod 700 "$dir"; fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-p 5432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir" start >/dev/null
    wait_for 5432 || { echo "ensure-services: postgres did not start (see $dir/server.log)" >&2; exit 1; }
    as_owner "$bin/psql" -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" \
      | grep -q 1 || as_owner "$bin/createdb" -h 127.0.0.1 -p 5432 -U postgres test
  else
    echo "ensure-services: no PostgreSQL on 127.0.0.1:5432 and it is not installed (export tests skip)" >&2
  fi
fi

# A PostgreSQL that was already running (Debian's own cluster asks for passwords over TCP) must still let
# the tests in: say how, rather than let them fail one by one.
if listening 5432 && command -v psql >/dev/null \
   && ! psql "${FARMHAND_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/test}" -tAc "SELECT 1" >/dev/null 2>&1; then
  echo "ensure-services: the PostgreSQL on 127.0.0.1:5432 does not let user postgres into database test without" \
       "a password; create the database and a 'host test postgres 127.0.0.1/32 trust' line in pg_hba.conf," \
       "or point FARMHAND_TEST_PG_DSN at one that does" >&2
fi

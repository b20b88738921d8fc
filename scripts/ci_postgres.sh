#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: loopback only, data in a temporary folder.
#
#   scripts/ci_postgres.sh [start] [DIR]   install PostgreSQL (Debian) if missing, start a server
#                                          in DIR (default: a new temp folder), print its URL
#   scripts/ci_postgres.sh stop DIR        stop that server and delete DIR
#   scripts/ci_postgres.sh install         only install PostgreSQL (Debian) if missing
#
# stdout gets exactly one line, the URL (postgresql://postgres@127.0.0.1:PORT/rarelearn);
# progress goes to stderr. Auth is `trust` on loopback, or, when RARELEARN_PG_PASSWORD is set,
# scram-sha-256 with that password for the `postgres` role (pass it to clients as PGPASSWORD;
# it is never printed). As root the server runs as the `postgres` user (PostgreSQL refuses root).
# PGPORT chooses the port (default: a free one).
set -euo pipefail

log() { echo "ci_postgres: $*" >&2; }

find_bindir() {
    local ctl
    ctl=$(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | grep -v '\*' | sort -V | tail -n 1 || true)
    if [[ -z "$ctl" ]] && command -v pg_ctl >/dev/null 2>&1; then
        ctl=$(command -v pg_ctl)
    fi
    [[ -n "$ctl" ]] && dirname "$ctl"
}

install_postgres() {
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        exit 3
    fi
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Run a command as the server's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

give_to_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$1"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=${1:-}
    local bindir
    bindir=$(find_bindir) || true
    if [[ -z "$bindir" ]]; then
        install_postgres
        bindir=$(find_bindir)
    fi
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        log "running as root but there is no 'postgres' user to run the server as"
        exit 3
    fi
    [[ -n "$dir" ]] || dir=$(mktemp -d -t rarelearn-pg.XXXXXX)
    mkdir -p "$dir"
    chmod 700 "$dir"
    give_to_owner "$dir"
    local port=${PGPORT:-$(free_port)}
    local auth=trust pwfile=()
    if [[ -n "${RARELEARN_PG_PASSWORD:-}" ]]; then
        auth=scram-sha-256
        printf '%s\n' "$RARELEARN_PG_PASSWORD" >"$dir/pwfile"
        give_to_owner "$dir/pwfile"
        pwfile=(--pwfile="$dir/pwfile")
    fi
    log "initdb in $dir ($auth auth)"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host="$auth" \
        "${pwfile[@]}" -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 4
    }
    rm -f "$dir/pwfile"
    log "starting the server on 127.0.0.1:$port"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >&2 || {
        cat "$dir/server.log" >&2
        exit 4
    }
    as_owner "$bindir/createdb" -h "$dir" -p "$port" -U postgres rarelearn
    echo "$port" >"$dir/port"
    log "stop with: $0 stop $dir"
    echo "postgresql://postgres@127.0.0.1:$port/rarelearn"
}

stop() {
    local dir=${1:?usage: $0 stop DIR}
    local bindir
    bindir=$(find_bindir)
    if [[ -d "$dir/data" ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    fi
    rm -rf "$dir"
}

case "${1:-start}" in
start)
    shift || true
    start "${1:-}"
    ;;
stop)
    shift
    stop "${1:-}"
    ;;
install)
    find_bindir >/dev/null || install_postgres
    ;;
*)
    echo "usage: $0 [start [DIR] | stop DIR | install]" >&2
    exit 2
    ;;
esac

# Helpers shared by bench/run.sh and bench/approval_latency.sh. Sourced,
# not run: the caller defines die and log and sets REPO first.

# PG_BIN: the newest /usr/lib/postgresql/*/bin unless set; each argument
# names a binary that must be there.
find_pg_bin() {
    if [[ -z ${PG_BIN:-} ]]; then
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    fi
    local b
    for b in "$@"; do
        [[ -x $PG_BIN/$b ]] || die "no PostgreSQL binaries in '$PG_BIN' (set PG_BIN)"
    done
}

# BIN: pg-airlock's release binary, built first unless SKIP_BUILD=1.
build_airlock() {
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/pg-airlock"
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "building pg-airlock (cargo build --release)"
        (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x $BIN ]] || die "no binary at $BIN"
}

stop_pid() { # pid [seconds]: TERM, wait (default 10 s), then KILL; 0 if it exited by itself
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((${2:-10} * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    return 1
}

# A loopback port nobody listens on (checked by connecting to it; the small
# race with other processes is caught by each server's readiness check).
# Below the kernel's ephemeral range when there is room: a port there can
# be the local end of someone's outgoing connection (the memory test opens
# thousands), which a connect test does not see but which makes bind fail.
read -r EPHEMERAL_LO _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPHEMERAL_LO=61000
PORT_LO=20000 PORT_SPAN=40000
[[ $EPHEMERAL_LO -ge 12000 ]] && PORT_LO=10000 PORT_SPAN=$((EPHEMERAL_LO - 10000))
USED_PORTS=" "
free_port() { # VAR: set VAR to a free port, never one handed out before in this run
    local p
    for _ in $(seq 200); do
        p=$((PORT_LO + RANDOM % PORT_SPAN))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            # In this shell, not a $(...) subshell, so the next call sees it.
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    die "no free loopback port found"
}

#!/usr/bin/env bash
# pg-airlock throughput benchmark: direct vs pgbouncer vs pg-airlock.
#
# One run: build pg-airlock (release), start a throwaway PostgreSQL cluster,
# pgbouncer (session pooling) and pg-airlock in front of it, then run pgbench
# against all three, interleaved round by round, and print a Markdown report
# (also written to bench/results/<UTC timestamp>.md). Everything started here
# is stopped and every temp file removed on exit. See bench/README.md for the
# method and how to read the numbers.
#
# Knobs (environment):
#   ROUNDS=5            rounds; each round runs every workload on every target
#   SECS=10             seconds per pgbench run
#   CLIENTS=8 THREADS=2 pgbench -c / -j
#   SCALE=10            pgbench -i -s
#   WARMUP=3            seconds of unrecorded select-only load per target first
#   WORKLOADS="select-simple select-extended select-prepared tpcb-simple"
#   AIRLOCK_EXTRA       TOML appended verbatim to the pg-airlock config
#                       ("@REPO@" is replaced by the repository path), e.g.
#                       AIRLOCK_EXTRA=$'[rules]\npaths = ["@REPO@/rules/default.toml"]'
#   AIRLOCK_EXTRA_FILE  a file whose contents are appended the same way
#   AIRLOCK_RULES       rule file for the generated [rules] section (default
#                       @REPO@/rules/default.toml; empty: no [rules] section;
#                       ignored when the extra snippet has its own [rules])
#   AIRLOCK_LOG         pg-airlock log filter (default: info, as shipped)
#   LABEL               free text put in the report header ("with rules", ...)
#   PERF=1              after the rounds: perf profile of pg-airlock during
#                       one extra run of PERF_WORKLOAD (default select-simple) (areas + top symbols in the
#                       report, full list in results/<stamp>-perf.txt), and
#                       perf stat syscalls / context switches per transaction
#                       for both proxies
#   SKIP_BUILD=1        use the existing release binary as is
#   PG_BIN              PostgreSQL server binaries (default: newest under
#                       /usr/lib/postgresql/*/bin)
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
WARMUP=${WARMUP:-3}
WORKLOADS=${WORKLOADS:-"select-simple select-extended select-prepared tpcb-simple"}
TARGETS=(direct pgbouncer airlock)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR="$REPO/bench/results"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for n in ROUNDS SECS CLIENTS THREADS SCALE WARMUP; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || [[ $n == WARMUP && ${!n} == 0 ]] \
        || die "$n must be a positive integer, got '${!n}'"
done
for w in $WORKLOADS; do
    case $w in select-simple|select-extended|select-prepared|tpcb-simple|tpcb-extended|tpcb-prepared) ;;
    *) die "unknown workload '$w' in WORKLOADS (known: select-{simple,extended,prepared} tpcb-{simple,extended,prepared})" ;;
    esac
done
[[ $(id -u) == 0 ]] || die "run as root (installs pgbouncer, runs PostgreSQL and pgbouncer as the postgres OS user)"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install the postgresql package)"

# ---------------------------------------------------------------------------
# Tools.

if [[ -z ${PG_BIN:-} ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
fi
[[ -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || die "no PostgreSQL binaries in '$PG_BIN' (set PG_BIN)"

if ! command -v pgbouncer >/dev/null; then
    log "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2 \
        || { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2; } \
        || die "apt-get install pgbouncer failed"
fi
PGBOUNCER=$(command -v pgbouncer)

BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/pg-airlock"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building pg-airlock (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "no binary at $BIN"

# ---------------------------------------------------------------------------
# Cleanup: only what this script started, by pid.

TMP=$(mktemp -d /tmp/pg-airlock-bench.XXXXXX)
chmod 755 "$TMP"
PG_STARTED=0
AIRLOCK_PID=""
BOUNCER_PIDFILE="$TMP/bouncer/pgbouncer.pid"

stop_pid() { # pid [seconds]: TERM, wait (default 10 s), then KILL; 0 if it exited by itself
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((${2:-10} * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    return 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $AIRLOCK_PID ]] && stop_pid "$AIRLOCK_PID"
    [[ -s $BOUNCER_PIDFILE ]] && stop_pid "$(cat "$BOUNCER_PIDFILE")"
    if [[ $PG_STARTED == 1 ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $rc != 0 ]]; then
        log "failed (exit $rc); last lines of the logs:"
        for f in "$TMP/pg/log" "$TMP/bouncer/pgbouncer.log" "$TMP/airlock/airlock.log" "$TMP/pgbench.out"; do
            [[ -s $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nobody listens on (checked by connecting to it; the small
# race with other processes is caught by each server's readiness check).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "no free loopback port found"
}

# ---------------------------------------------------------------------------
# PostgreSQL.

PG_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
AIRLOCK_PORT=$(free_port)
ADMIN_PORT=$(free_port)
DB=bench
ROLE=bench
ROLE_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
AGENT=bench-agent
AGENT_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

mkdir -p "$TMP/pg/sock" "$TMP/bouncer" "$TMP/airlock"
chown -R postgres:postgres "$TMP/pg" "$TMP/bouncer"

log "initdb + start PostgreSQL on 127.0.0.1:$PG_PORT ($TMP)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$TMP/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
# Admin work over the Unix socket (trust); every benchmark connection comes
# over TCP with SCRAM, the same for all three targets.
cat >"$TMP/pg/data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF
# fsync=off / full_page_writes=off: this measures proxies, not the disk,
# and the machine's disk is shared with other builders.
PG_OPTS="-p $PG_PORT -k $TMP/pg/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c shared_buffers=256MB -c max_connections=100"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -o "$PG_OPTS" -l "$TMP/pg/log" -w -t 60 start >/dev/null \
    || die "pg_ctl start failed"
PG_STARTED=1
POSTMASTER_PID=$(head -n1 "$TMP/pg/data/postmaster.pid")

psql_admin() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP/pg/sock" -p "$PG_PORT" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$ROLE_PW'" -c "CREATE DATABASE $DB OWNER $ROLE"
psql_admin -d "$DB" -c "CREATE EXTENSION pg_prewarm"
PG_VERSION=$(psql_admin -d postgres -c "SHOW server_version")

log "pgbench -i -s $SCALE"
PGPASSWORD=$ROLE_PW "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$ROLE" "$DB" >"$TMP/pgbench.out" 2>&1 \
    || die "pgbench -i failed"
psql_admin -d "$DB" -c "SELECT pg_prewarm(c) FROM unnest(array['pgbench_accounts','pgbench_accounts_pkey','pgbench_branches','pgbench_tellers']) c" >/dev/null

# ---------------------------------------------------------------------------
# pgbouncer: session pooling, clients authenticate with SCRAM against a
# userlist holding the plain password (pgbouncer then uses it for SCRAM to
# the server too). It refuses to run as root, so it runs as postgres.

cat >"$TMP/bouncer/userlist.txt" <<EOF
"$ROLE" "$ROLE_PW"
EOF
cat >"$TMP/bouncer/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $TMP/bouncer/userlist.txt
pool_mode = session
default_pool_size = 20
max_client_conn = 100
logfile = $TMP/bouncer/pgbouncer.log
pidfile = $BOUNCER_PIDFILE
EOF
chown postgres:postgres "$TMP/bouncer"/*
chmod 600 "$TMP/bouncer/userlist.txt"
log "start pgbouncer on 127.0.0.1:$BOUNCER_PORT"
runuser -u postgres -- "$PGBOUNCER" -d "$TMP/bouncer/pgbouncer.ini" || die "pgbouncer failed to start"
for _ in $(seq 100); do [[ -s $BOUNCER_PIDFILE ]] && break; sleep 0.1; done
[[ -s $BOUNCER_PIDFILE ]] || die "pgbouncer wrote no pidfile"
BOUNCER_PID=$(cat "$BOUNCER_PIDFILE")

# ---------------------------------------------------------------------------
# pg-airlock: one agent, upstream = the same role over TCP with SCRAM.

printf '%s' "$ROLE_PW" >"$TMP/airlock/upstream.pw"
printf '%s' "$AGENT_PW" >"$TMP/airlock/agent.pw"
chmod 600 "$TMP/airlock/upstream.pw" "$TMP/airlock/agent.pw"
EXTRA=${AIRLOCK_EXTRA:-}
if [[ -n ${AIRLOCK_EXTRA_FILE:-} ]]; then
    [[ -r $AIRLOCK_EXTRA_FILE ]] || die "AIRLOCK_EXTRA_FILE '$AIRLOCK_EXTRA_FILE' is not readable"
    EXTRA+=$'\n'$(cat "$AIRLOCK_EXTRA_FILE")
fi
# The proxy always classifies and judges statements against a rule file;
# name it explicitly (unless the extra snippet has its own [rules]) so the
# config never depends on where the temp dir is.
AIRLOCK_RULES=${AIRLOCK_RULES-@REPO@/rules/default.toml}
if [[ -n $AIRLOCK_RULES ]] && ! grep -q '^[[:space:]]*\[rules\]' <<<"$EXTRA"; then
    EXTRA=$'[rules]\npaths = ["'"$AIRLOCK_RULES"$'"]\n'"$EXTRA"
fi
EXTRA=${EXTRA//@REPO@/$REPO}
# The admin endpoint gives /metrics for the report.
ADMIN_URL=""
if ! grep -q '^[[:space:]]*\[admin\]' <<<"$EXTRA"; then
    EXTRA+=$'\n[admin]\naddress = "127.0.0.1:'"$ADMIN_PORT"$'"\n'
    ADMIN_URL="http://127.0.0.1:$ADMIN_PORT/metrics"
fi
cat >"$TMP/airlock/airlock.toml" <<EOF
[listen]
address = "127.0.0.1:$AIRLOCK_PORT"

[upstream]
host = "127.0.0.1"
port = $PG_PORT
user = "$ROLE"
password_file = "upstream.pw"
tls = "disable"

[[agent]]
name = "$AGENT"
password_file = "agent.pw"

$EXTRA
EOF
"$BIN" check-config --config "$TMP/airlock/airlock.toml" >&2 || die "pg-airlock rejected the generated config (see above)"
log "start pg-airlock on 127.0.0.1:$AIRLOCK_PORT"
AIRLOCK_LOG=${AIRLOCK_LOG:-info} "$BIN" run --config "$TMP/airlock/airlock.toml" >"$TMP/airlock/airlock.log" 2>&1 &
AIRLOCK_PID=$!

# ---------------------------------------------------------------------------
# Targets.

target_env() { # target -> env assignments for libpq
    case $1 in
    direct) echo "PGPORT=$PG_PORT PGUSER=$ROLE PGPASSWORD=$ROLE_PW" ;;
    pgbouncer) echo "PGPORT=$BOUNCER_PORT PGUSER=$ROLE PGPASSWORD=$ROLE_PW" ;;
    airlock) echo "PGPORT=$AIRLOCK_PORT PGUSER=$AGENT PGPASSWORD=$AGENT_PW" ;;
    esac
}
as_target() { # target cmd... : run a libpq client against the target
    local t=$1; shift
    # shellcheck disable=SC2046
    env PGHOST=127.0.0.1 PGDATABASE=$DB PGSSLMODE=disable PGGSSENCMODE=disable PGAPPNAME=pg-airlock-bench $(target_env "$t") "$@"
}
target_pid() {
    case $1 in direct) echo "" ;; pgbouncer) echo "$BOUNCER_PID" ;; airlock) echo "$AIRLOCK_PID" ;; esac
}

for t in "${TARGETS[@]}"; do
    ok=0
    for _ in $(seq 100); do
        if as_target "$t" "$PG_BIN/psql" -X -q -At -c "SELECT 1" >/dev/null 2>"$TMP/probe.err"; then ok=1; break; fi
        [[ $t == airlock ]] && ! kill -0 "$AIRLOCK_PID" 2>/dev/null && break
        sleep 0.1
    done
    [[ $ok == 1 ]] || { cat "$TMP/probe.err" >&2; die "target $t does not answer SELECT 1"; }
done

# ---------------------------------------------------------------------------
# Measurement helpers.

CLK_TCK=$(getconf CLK_TCK)

proc_ticks() { # pid [with_children] -> utime+stime (+cutime+cstime) in ticks
    # Fields after the ")" that ends comm: state is $1, utime $12, stime $13,
    # cutime $14, cstime $15 (proc(5) fields 14-17).
    local s
    s=$(cat "/proc/$1/stat") || die "process $1 is gone"
    s=${s##*) }
    awk -v kids="${2:-0}" '{ print $12 + $13 + (kids ? $14 + $15 : 0) }' <<<"$s"
}

# All CPU PostgreSQL used so far: postmaster (including reaped children via
# cutime/cstime) plus every live child. Differences of this across a run
# count backends that started, ran, or exited during it.
pg_ticks() {
    local total pid s
    total=$(proc_ticks "$POSTMASTER_PID" 1)
    for pid in $(pgrep -P "$POSTMASTER_PID"); do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        s=${s##*) }
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$s")))
    done
    echo "$total"
}

machine_ticks() { # "busy total" from /proc/stat
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}

pgbench_args() { # workload -> pgbench options
    local w=$1 mode=${1#*-}
    case $w in select-*) echo "-n -S -M $mode" ;; tpcb-*) echo "-n -M $mode" ;; esac
}

stmts_per_txn() { # the built-in select-only script is 1 statement; tpcb-like is 7
    case $1 in select-*) echo 1 ;; tpcb-*) echo 7 ;; esac
}

# run_one target workload secs -> "tps txns proxy_ticks pg_ticks busy_pct"
run_one() {
    local t=$1 w=$2 secs=$3 pid p0 p1 g0 g1 m0 m1 tps txns failed
    if [[ $w == tpcb-* ]]; then
        # What pgbench would do without -n, done over the admin socket so
        # maintenance never goes through (or is judged by) a proxy.
        psql_admin -d "$DB" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null
    fi
    pid=$(target_pid "$t")
    p0=0; [[ -n $pid ]] && p0=$(proc_ticks "$pid")
    g0=$(pg_ticks); m0=$(machine_ticks)
    # shellcheck disable=SC2046
    if ! as_target "$t" "$PG_BIN/pgbench" $(pgbench_args "$w") -c "$CLIENTS" -j "$THREADS" -T "$secs" >"$TMP/pgbench.out" 2>&1; then
        die "pgbench $w against $t failed"
    fi
    # Let backends of closing sessions exit before reading server CPU.
    sleep 0.3
    p1=0; [[ -n $pid ]] && p1=$(proc_ticks "$pid")
    g1=$(pg_ticks); m1=$(machine_ticks)
    tps=$(awk '/^tps = / { print $3; exit }' "$TMP/pgbench.out")
    txns=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$TMP/pgbench.out")
    failed=$(awk '/^number of failed transactions/ { print $5; exit }' "$TMP/pgbench.out")
    [[ -n $tps && -n $txns && $txns -gt 0 ]] || die "could not read tps / transactions from pgbench output ($t, $w)"
    [[ -z $failed || $failed == 0 ]] || die "pgbench $w against $t had $failed failed transactions"
    read -r mb0 mt0 <<<"$m0"; read -r mb1 mt1 <<<"$m1"
    echo "$tps $txns $((p1 - p0)) $((g1 - g0)) $(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')"
}

# ---------------------------------------------------------------------------
# Runs.

if [[ $WARMUP -gt 0 ]]; then
    log "warm-up: ${WARMUP}s select-only per target"
    for t in "${TARGETS[@]}"; do run_one "$t" select-simple "$WARMUP" >/dev/null; done
fi

RAW="$TMP/raw.tsv"
: >"$RAW"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
n_targets=${#TARGETS[@]}
for r in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        # Round-robin, and the first target rotates each round so that no
        # target always runs right after the same neighbour.
        for i in $(seq 0 $((n_targets - 1))); do
            t=${TARGETS[$(((i + r - 1) % n_targets))]}
            res=$(run_one "$t" "$w" "$SECS")
            log "round $r/$ROUNDS $w $t: $res (tps txns proxy_ticks pg_ticks busy%)"
            printf '%s\t%s\t%s\t%s\n' "$r" "$w" "$t" "${res// /$'\t'}" >>"$RAW"
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

PERF_OUT=""
PERF_STAT=""
if [[ ${PERF:-0} == 1 ]]; then
    if command -v perf >/dev/null; then
        PERF_WORKLOAD=${PERF_WORKLOAD:-select-simple}
        log "perf: profiling pg-airlock during one ${SECS}s $PERF_WORKLOAD run"
        perf record -q -F 999 ${PERF_CALLGRAPH:+-g} -o "$TMP/perf.data" -p "$AIRLOCK_PID" >"$TMP/perf.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5
        run_one airlock "$PERF_WORKLOAD" "$SECS" >/dev/null
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        [[ -n ${PERF_KEEP:-} ]] && cp "$TMP/perf.data" "$PERF_KEEP"
        perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,sym -F overhead,dso,sym 2>/dev/null \
            | grep -E '^ +[0-9.]+%' | sed -E 's/ +$//' >"$TMP/perf.txt" || true
        if [[ -s $TMP/perf.txt ]]; then
            # Self time summed by where it is spent, then the top symbols.
            PERF_OUT=$(awk '
                { pct = $1; sub(/%/, "", pct); dso = $2; sym = $0; sub(/^ *[0-9.]+% +[^ ]+ +\[.\] /, "", sym)
                  g = "other"
                  if (dso ~ /kernel/) g = "kernel (syscalls, wakeups, TCP)"
                  else if (sym ~ /malloc|free|_int_|unlink_chunk|consolidate|realloc|calloc|tcache|__rust_(alloc|dealloc|realloc)/) g = "allocator"
                  else if (sym ~ /^__mem|^mem(cpy|move|set|cmp)/) g = "memcpy/memmove/memcmp"
                  else if (sym ~ /sqlparser::/) g = "sqlparser (tokenize + parse)"
                  else if (sym ~ /moka::/) g = "moka (classify cache)"
                  else if (sym ~ /pg_airlock::classify/) g = "pg_airlock::classify"
                  else if (sym ~ /pg_airlock::rules/) g = "pg_airlock::rules"
                  else if (sym ~ /pg_airlock::audit|serde_json|serde::/) g = "audit + serde_json"
                  else if (sym ~ /pg_airlock::wire|pg_airlock::engine/) g = "pg_airlock::wire / engine"
                  else if (sym ~ /tokio::|mio::/) g = "tokio / mio"
                  else if (sym ~ /sha2|hmac|pbkdf2|ring::|rustls/) g = "crypto"
                  else if (dso ~ /libc/) g = "libc (other)"
                  sum[g] += pct }
                END { for (g in sum) printf "%6.1f%%  %s\n", sum[g], g }' "$TMP/perf.txt" | sort -rn
                echo
                sort -rn "$TMP/perf.txt" | head -n 30 || true)
        fi
        [[ -n $PERF_OUT ]] || PERF_OUT="(perf produced no samples: $(tail -n 3 "$TMP/perf.log" | tr '\n' ' '))"
        # Syscalls and context switches per transaction, both proxies.
        # perf stat -p follows the threads that exist when it attaches.
        PERF_STAT="| proxy | TPS | syscalls/txn | context switches/txn | send/txn | recv/txn | epoll_wait/txn | futex/txn |"$'\n'"|---|---:|---:|---:|---:|---:|---:|---:|"
        for t in pgbouncer airlock; do
            perf stat -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex -x, -o "$TMP/pstat.$t" -p "$(target_pid "$t")" >/dev/null 2>&1 &
            pstat_pid=$!
            sleep 0.3
            res=$(run_one "$t" "$PERF_WORKLOAD" "$SECS")
            kill -INT "$pstat_pid" 2>/dev/null || true
            wait "$pstat_pid" 2>/dev/null || true
            [[ -n ${PERF_KEEP:-} ]] && cp "$TMP/pstat.$t" "$PERF_KEEP.pstat.$t"
            read -r p_tps p_txns _ <<<"$res"
            PERF_STAT+=$'\n'$(awk -F, -v t="$t" -v tps="$p_tps" -v n="$p_txns" '
                $3 == "raw_syscalls:sys_enter" { sc = $1 } $3 == "context-switches" { cs = $1 }
                $3 == "syscalls:sys_enter_sendto" { snd = $1 } $3 == "syscalls:sys_enter_recvfrom" { rcv = $1 }
                $3 == "syscalls:sys_enter_epoll_wait" { ep = $1 } $3 == "syscalls:sys_enter_futex" { fx = $1 }
                END { if (sc == "" || sc ~ /not/) printf "| %s | %.0f | n/a | n/a | n/a | n/a | n/a | n/a |", t, tps
                      else printf "| %s | %.0f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f |", t, tps, sc / n, cs / n, snd / n, rcv / n, ep / n, fx / n }' "$TMP/pstat.$t")
        done
    else
        PERF_OUT="(perf not installed)"
    fi
fi

# ---------------------------------------------------------------------------
# Report.

# pg-airlock's own view, then a graceful stop (so the audit trail is
# complete), then what it wrote.
METRICS="(no admin endpoint: the extra config has its own [admin])"
if [[ -n $ADMIN_URL ]]; then
    METRICS=$(curl -fsS --max-time 5 "$ADMIN_URL" 2>&1 | grep -v '^#' | awk '$2 != 0' || true)
fi
AIRLOCK_MEM=$(awk '/^VmHWM|^VmRSS/ { printf "%s %s %s; ", $1, $2, $3 }' "/proc/$AIRLOCK_PID/status")
stop_started=$(date +%s.%N)
if stop_pid "$AIRLOCK_PID" 60; then
    STOP_NOTE="exited $(awk -v a="$stop_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after SIGTERM"
else
    STOP_NOTE="did NOT exit within 60 s of SIGTERM (killed)"
fi
AIRLOCK_PID=""
AUDIT_NOTE="no audit file found in the config dir"
AUDIT_FILES=$(find "$TMP/airlock" -maxdepth 2 -type f -name '*audit*' ! -name '*.head' 2>/dev/null | sort)
if [[ -n $AUDIT_FILES ]]; then
    # shellcheck disable=SC2086
    AUDIT_NOTE="$(cat $AUDIT_FILES | wc -l) records, $(cat $AUDIT_FILES | wc -c) bytes in $(wc -w <<<"$AUDIT_FILES") file(s)"
fi
LOG_NOTE=$(grep -cE ' (WARN|ERROR) ' "$TMP/airlock/airlock.log" || true)
LOG_TOP=$(grep -E ' (WARN|ERROR) ' "$TMP/airlock/airlock.log" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 5 || true)

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && COMMIT+="-dirty"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP.md"

report() {
    echo "# pg-airlock bench $STARTED_AT"
    echo
    [[ -n ${LABEL:-} ]] && { echo "Label: $LABEL"; echo; }
    echo "- commit: $COMMIT; pg-airlock $("$BIN" --version 2>/dev/null | awk '{print $2}') (release)"
    echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
    echo "- PostgreSQL $PG_VERSION (fsync=off, full_page_writes=off, shared_buffers=256MB, data prewarmed); $("$PGBOUNCER" --version | head -n1) (session pooling, SCRAM)"
    echo "- pgbench -c $CLIENTS -j $THREADS -T $SECS, scale $SCALE, $ROUNDS rounds, targets interleaved within each round"
    echo "- load average before/after: $LOAD_BEFORE / $LOAD_AFTER (the machine is shared with other builds: prefer the ratios)"
    echo "- pg-airlock log filter: ${AIRLOCK_LOG:-info}; $LOG_NOTE WARN/ERROR lines; memory at the end: $AIRLOCK_MEM$STOP_NOTE"
    echo "- audit trail after the graceful stop (all runs, warm-up and perf included): $AUDIT_NOTE"
    if [[ -n $EXTRA ]]; then
        echo "- pg-airlock config beyond listen/upstream/one agent:"
        echo
        echo '```toml'
        echo "$EXTRA"
        echo '```'
    else
        echo "- pg-airlock config beyond listen/upstream/one agent: none"
    fi
    echo
    awk -F'\t' -v tck="$CLK_TCK" -v workloads="$WORKLOADS" '
    function median(arr, n,    i, j, tmp) {
        for (i = 2; i <= n; i++) { tmp = arr[i]; for (j = i - 1; j >= 1 && arr[j] > tmp; j--) arr[j + 1] = arr[j]; arr[j + 1] = tmp }
        return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
    }
    function stat(key, what,    i, n, v, a, lo, hi) {
        # what: "m" median, "r" "median (min-max)"
        n = cnt[key]; if (!n) return "n/a"
        lo = 1e300; hi = -1e300
        for (i = 1; i <= n; i++) { v = val[key, i]; a[i] = v; if (v < lo) lo = v; if (v > hi) hi = v }
        if (what == "r") return sprintf("%.2f (%.2f-%.2f)", median(a, n), lo, hi)
        return median(a, n)
    }
    function add(key, v) { val[key, ++cnt[key]] = v }
    {
        r = $1; w = $2; t = $3
        tps[r, w, t] = $4
        add(w SUBSEP t SUBSEP "tps", $4)
        add(w SUBSEP t SUBSEP "busy", $8)
        add(w SUBSEP t SUBSEP "pgus", $7 * 1e6 / tck / $5)
        if (t != "direct") add(w SUBSEP t SUBSEP "cpu", $6 * 1e6 / tck / $5)
        rounds[r] = 1
    }
    END {
        nw = split(workloads, W, " ")
        for (i = 1; i <= nw; i++) {
            w = W[i]
            for (r in rounds) {
                if ((r, w, "direct") in tps && tps[r, w, "direct"] > 0) {
                    if ((r, w, "pgbouncer") in tps) add(w SUBSEP "pgb/direct", tps[r, w, "pgbouncer"] / tps[r, w, "direct"])
                    if ((r, w, "airlock") in tps) add(w SUBSEP "airlock/direct", tps[r, w, "airlock"] / tps[r, w, "direct"])
                }
                if ((r, w, "pgbouncer") in tps && (r, w, "airlock") in tps && tps[r, w, "pgbouncer"] > 0)
                    add(w SUBSEP "airlock/pgb", tps[r, w, "airlock"] / tps[r, w, "pgbouncer"])
            }
        }
        print "## Throughput (median TPS; ratios are medians of per-round paired ratios, (min-max))"
        print ""
        print "| workload | direct TPS | pgbouncer TPS | airlock TPS | pgbouncer/direct | airlock/direct | airlock/pgbouncer |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "| %s | %.0f | %.0f | %.0f | %s | %s | %s |\n", w,
                stat(w SUBSEP "direct" SUBSEP "tps", "m"), stat(w SUBSEP "pgbouncer" SUBSEP "tps", "m"), stat(w SUBSEP "airlock" SUBSEP "tps", "m"),
                stat(w SUBSEP "pgb/direct", "r"), stat(w SUBSEP "airlock/direct", "r"), stat(w SUBSEP "airlock/pgb", "r")
        }
        print ""
        print "## CPU per transaction (median of rounds; microseconds; statement = transaction / statements in it)"
        print ""
        print "| workload | stmts/txn | pgbouncer us/txn | airlock us/txn | pgbouncer us/stmt | airlock us/stmt | airlock/pgbouncer CPU | server us/txn direct / pgb / airlock | machine busy % direct / pgb / airlock |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= nw; i++) {
            w = W[i]; s = (w ~ /^select-/) ? 1 : 7
            b = stat(w SUBSEP "pgbouncer" SUBSEP "cpu", "m"); a = stat(w SUBSEP "airlock" SUBSEP "cpu", "m")
            printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f |\n", w, s, b, a, b / s, a / s,
                (b > 0 ? sprintf("%.2f", a / b) : "n/a"),
                stat(w SUBSEP "direct" SUBSEP "pgus", "m"), stat(w SUBSEP "pgbouncer" SUBSEP "pgus", "m"), stat(w SUBSEP "airlock" SUBSEP "pgus", "m"),
                stat(w SUBSEP "direct" SUBSEP "busy", "m"), stat(w SUBSEP "pgbouncer" SUBSEP "busy", "m"), stat(w SUBSEP "airlock" SUBSEP "busy", "m")
        }
    }' "$RAW"
    echo
    echo "Yardsticks (DESIGN-NOTES 5, pgbouncer/direct on this kind of machine): select-simple 0.94, select-extended 0.85-0.90, select-prepared 0.66-0.69, tpcb-simple 0.69; about 25 us pgbouncer CPU per simple statement."
    echo
    echo "## pg-airlock /metrics at the end (non-zero, all runs)"
    echo
    echo '```'
    echo "$METRICS"
    [[ -n $LOG_TOP ]] && { echo; echo "most frequent WARN/ERROR log lines (digits as N):"; echo "$LOG_TOP"; }
    echo '```'
    if [[ -n $PERF_OUT ]]; then
        echo
        echo "## perf: pg-airlock self time during one $PERF_WORKLOAD run (by area, then top 30 symbols)"
        echo
        echo '```'
        echo "$PERF_OUT"
        echo '```'
        if [[ -n $PERF_STAT ]]; then
            echo
            echo "## perf stat: kernel work per transaction (one extra $PERF_WORKLOAD run per proxy)"
            echo
            echo "$PERF_STAT"
        fi
    fi
    echo
    echo "<details><summary>raw runs (round, workload, target, tps, transactions, proxy CPU ticks, server CPU ticks, machine busy %; $CLK_TCK ticks/s)</summary>"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo
    echo "</details>"
}

report | tee "$OUT"
if [[ -s $TMP/perf.txt ]]; then
    sort -rn "$TMP/perf.txt" >"${OUT%.md}-perf.txt"
    log "full perf symbol list: ${OUT%.md}-perf.txt"
fi
log "report written to $OUT"

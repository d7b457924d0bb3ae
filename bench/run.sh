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
#   WORKLOADS="select-simple select-extended select-prepared tpcb-simple latency"
#                       latency = one client (-c 1 -j 1 -S -M simple) with a
#                       per-transaction log: mean / p50 / p99 and the latency
#                       each proxy adds over direct
#   AUDIT_OFF=1         fourth target: a second pg-airlock, identical but for
#                       [audit] enabled = false; reports the audit trail's
#                       cost (paired ratios, CPU per statement)
#   IDLE_CONNS=1000     after the rounds: RSS of pgbouncer and pg-airlock
#                       before and with this many logged-in idle clients
#                       (0: skip); IDLE_TIMEOUT=300 s to get them all in
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
#   INSTR=1             after the rounds: user-space instructions per
#                       transaction of pgbouncer and pg-airlock (callgrind;
#                       INSTR_TXNS=250 per client for the short run, 5x for
#                       the long one), each select/tpcb workload; installs
#                       valgrind if missing
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
WORKLOADS=${WORKLOADS:-"select-simple select-extended select-prepared tpcb-simple latency"}
AUDIT_OFF=${AUDIT_OFF:-0}
IDLE_CONNS=${IDLE_CONNS:-1000}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-300}
TARGETS=(direct pgbouncer airlock)
[[ $AUDIT_OFF == 1 ]] && TARGETS+=(airlock-noaudit)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR="$REPO/bench/results"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for n in ROUNDS SECS CLIENTS THREADS SCALE WARMUP IDLE_CONNS IDLE_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || [[ ($n == WARMUP || $n == IDLE_CONNS) && ${!n} == 0 ]] \
        || die "$n must be a positive integer, got '${!n}'"
done
[[ $IDLE_TIMEOUT -le 1800 ]] || die "IDLE_TIMEOUT must be at most 1800 s, got $IDLE_TIMEOUT"
[[ $AUDIT_OFF == 0 || $AUDIT_OFF == 1 ]] || die "AUDIT_OFF must be 0 or 1, got '$AUDIT_OFF'"
for w in $WORKLOADS; do
    case $w in select-simple|select-extended|select-prepared|tpcb-simple|tpcb-extended|tpcb-prepared|latency) ;;
    *) die "unknown workload '$w' in WORKLOADS (known: select-{simple,extended,prepared} tpcb-{simple,extended,prepared} latency)" ;;
    esac
done
# Every idle client is a socket in pgbench and in the proxy, and through
# pg-airlock a server connection as well; processes started below inherit this.
NOFILE_NEED=$((IDLE_CONNS + 1024))
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $NOFILE_NEED ]]; then
    ulimit -n "$NOFILE_NEED" 2>/dev/null || die "cannot raise the open-files limit to $NOFILE_NEED (ulimit -n; lower IDLE_CONNS)"
fi
[[ $(id -u) == 0 ]] || die "run as root (installs pgbouncer, runs PostgreSQL and pgbouncer as the postgres OS user)"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install the postgresql package)"

# ---------------------------------------------------------------------------
# Tools.

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
find_pg_bin initdb pg_ctl psql pgbench

if ! command -v pgbouncer >/dev/null; then
    log "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2 \
        || { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2; } \
        || die "apt-get install pgbouncer failed"
fi
PGBOUNCER=$(command -v pgbouncer)

build_airlock

# ---------------------------------------------------------------------------
# Cleanup: only what this script started, by pid.

TMP=$(mktemp -d /tmp/pg-airlock-bench.XXXXXX)
chmod 755 "$TMP"
PG_STARTED=0
AIRLOCK_PID=""
NOAUDIT_PID=""
IDLE_PID=""
BOUNCER_PIDFILE="$TMP/bouncer/pgbouncer.pid"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in $IDLE_PID; do stop_pid "$p" 5; done
    [[ -n $AIRLOCK_PID ]] && stop_pid "$AIRLOCK_PID"
    [[ -n $NOAUDIT_PID ]] && stop_pid "$NOAUDIT_PID"
    [[ -s $BOUNCER_PIDFILE ]] && stop_pid "$(cat "$BOUNCER_PIDFILE")"
    if [[ $PG_STARTED == 1 ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $rc != 0 ]]; then
        log "failed (exit $rc); last lines of the logs:"
        for f in "$TMP/pg/log" "$TMP/bouncer/pgbouncer.log" "$TMP/airlock/airlock.log" "$TMP/airlock-noaudit/airlock.log" "$TMP/pgbench.out" "$TMP/idle.out"; do
            [[ -s $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# PostgreSQL.

free_port PG_PORT
free_port BOUNCER_PORT
free_port AIRLOCK_PORT
free_port ADMIN_PORT
free_port NOAUDIT_PORT
free_port NOAUDIT_ADMIN_PORT
DB=bench
ROLE=bench
ROLE_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
AGENT=bench-agent
AGENT_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

mkdir -p "$TMP/pg/sock" "$TMP/bouncer" "$TMP/airlock" "$TMP/airlock-noaudit" "$TMP/lat"
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
# max_connections: each idle client of the memory test holds a server
# connection through pg-airlock (one upstream connection per session).
PG_MAX_CONN=$((IDLE_CONNS + 100 > 100 ? IDLE_CONNS + 100 : 100))
PG_OPTS="-p $PG_PORT -k $TMP/pg/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c shared_buffers=256MB -c max_connections=$PG_MAX_CONN"
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
max_client_conn = $PG_MAX_CONN
; SHOW POOLS on the console counts the idle clients of the memory test.
stats_users = $ROLE
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
# toml_add text section line: the line added to [section] (right after its
# header if the text has that table, else in a new table at the end).
toml_add() {
    if grep -q "^[[:space:]]*\[$2\][[:space:]]*\$" <<<"$1"; then
        awk -v sec="[$2]" -v line="$3" '
            { print; h = $0; gsub(/[[:space:]]/, "", h); if (!done && h == sec) { print line; done = 1 } }' <<<"$1"
    else
        printf '%s\n[%s]\n%s\n' "$1" "$2" "$3"
    fi
}
# Room for the idle clients of the memory test (default max_sessions is 1000).
if [[ $IDLE_CONNS -gt 0 ]] && ! grep -q '^[[:space:]]*max_sessions[[:space:]]*=' <<<"$EXTRA"; then
    EXTRA=$(toml_add "$EXTRA" limits "max_sessions = $((IDLE_CONNS + 100))")
fi
# The admin endpoint gives /metrics for the report (and the count of open
# sessions for the memory test).
ADMIN_URL=""
NOAUDIT_ADMIN_URL=""
ADMIN_IN_EXTRA=0
grep -q '^[[:space:]]*\[admin\]' <<<"$EXTRA" && ADMIN_IN_EXTRA=1
[[ $AUDIT_OFF == 1 && $ADMIN_IN_EXTRA == 1 ]] \
    && die "AUDIT_OFF=1 runs two pg-airlock processes: the extra TOML must not set [admin] (each gets its own port)"
if [[ $ADMIN_IN_EXTRA == 0 ]]; then
    ADMIN_URL="http://127.0.0.1:$ADMIN_PORT/metrics"
    NOAUDIT_ADMIN_URL="http://127.0.0.1:$NOAUDIT_ADMIN_PORT/metrics"
fi

write_airlock_config() { # dir listen_port admin_port extra: config + password files in dir
    local dir=$1
    printf '%s' "$ROLE_PW" >"$dir/upstream.pw"
    printf '%s' "$AGENT_PW" >"$dir/agent.pw"
    chmod 600 "$dir/upstream.pw" "$dir/agent.pw"
    cat >"$dir/airlock.toml" <<EOF
[listen]
address = "127.0.0.1:$2"

[upstream]
host = "127.0.0.1"
port = $PG_PORT
user = "$ROLE"
password_file = "upstream.pw"
tls = "disable"

[[agent]]
name = "$AGENT"
password_file = "agent.pw"

$4
EOF
    if [[ $ADMIN_IN_EXTRA == 0 ]]; then
        printf '\n[admin]\naddress = "127.0.0.1:%s"\n' "$3" >>"$dir/airlock.toml"
    fi
    "$BIN" check-config --config "$dir/airlock.toml" >&2 || die "pg-airlock rejected the generated config $dir/airlock.toml (see above)"
}

write_airlock_config "$TMP/airlock" "$AIRLOCK_PORT" "$ADMIN_PORT" "$EXTRA"
# Every proxy runs in a session of its own, as a service does (pgbouncer -d
# calls setsid itself). Where the kernel groups tasks by session
# (sched_autogroup_enabled = 1, the default here), a proxy started from this
# script would share one scheduling group with pgbench: the two then split
# one group's CPU share and preempt each other within it. Measured on the
# rig: in pgbench's group pg-airlock was preempted 0.45-0.47 times per
# select-only transaction, in its own 0.30-0.34 (pgbouncer 0.27-0.29), and
# had 11% more TPS in its own (2-25%, 8 alternating paired rounds).
start_proxy() { # log config -> pid of the proxy (setsid execs it in place)
    AIRLOCK_LOG=${AIRLOCK_LOG:-info} setsid "$BIN" run --config "$2" >"$1" 2>&1 &
    local pid=$!
    # setsid forks only when it leads a process group (job control on);
    # then $! would be a process that has already exited. The check waits
    # for the child to get as far as setsid().
    local _
    for _ in $(seq 50); do
        [[ $(ps -o sid= -p "$pid" | tr -d ' ') == "$pid" ]] && { echo "$pid"; return; }
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    die "pg-airlock (pid $pid) is not in a session of its own"
}
log "start pg-airlock on 127.0.0.1:$AIRLOCK_PORT"
AIRLOCK_PID=$(start_proxy "$TMP/airlock/airlock.log" "$TMP/airlock/airlock.toml") || exit 1
if [[ $AUDIT_OFF == 1 ]]; then
    # Everything as above but the audit trail; an [audit] table in the extra
    # TOML keeps its other keys (they are still validated).
    write_airlock_config "$TMP/airlock-noaudit" "$NOAUDIT_PORT" "$NOAUDIT_ADMIN_PORT" "$(toml_add "$EXTRA" audit "enabled = false")"
    log "start pg-airlock (audit off) on 127.0.0.1:$NOAUDIT_PORT"
    NOAUDIT_PID=$(start_proxy "$TMP/airlock-noaudit/airlock.log" "$TMP/airlock-noaudit/airlock.toml") || exit 1
fi

# ---------------------------------------------------------------------------
# Targets.

target_env() { # target -> env assignments for libpq
    case $1 in
    direct) echo "PGPORT=$PG_PORT PGUSER=$ROLE PGPASSWORD=$ROLE_PW" ;;
    pgbouncer) echo "PGPORT=$BOUNCER_PORT PGUSER=$ROLE PGPASSWORD=$ROLE_PW" ;;
    airlock) echo "PGPORT=$AIRLOCK_PORT PGUSER=$AGENT PGPASSWORD=$AGENT_PW" ;;
    airlock-noaudit) echo "PGPORT=$NOAUDIT_PORT PGUSER=$AGENT PGPASSWORD=$AGENT_PW" ;;
    esac
}
as_target() { # target cmd... : run a libpq client against the target
    local t=$1; shift
    # shellcheck disable=SC2046
    ${as_target_exec:+exec} env PGHOST=127.0.0.1 PGDATABASE=$DB PGSSLMODE=disable PGGSSENCMODE=disable PGAPPNAME=pg-airlock-bench $(target_env "$t") "$@"
}
target_pid() {
    case $1 in direct) echo "" ;; pgbouncer) echo "$BOUNCER_PID" ;; airlock) echo "$AIRLOCK_PID" ;; airlock-noaudit) echo "$NOAUDIT_PID" ;; esac
}

for t in "${TARGETS[@]}"; do
    ok=0
    for _ in $(seq 100); do
        if as_target "$t" "$PG_BIN/psql" -X -q -At -c "SELECT 1" >/dev/null 2>"$TMP/probe.err"; then ok=1; break; fi
        pid=$(target_pid "$t")
        [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && break
        sleep 0.1
    done
    [[ $ok == 1 ]] || { cat "$TMP/probe.err" >&2; die "target $t does not answer SELECT 1"; }
done
# The audit switch must have taken effect (an old binary would have refused
# the key in check-config; this catches a proxy that ignores it).
if [[ $AUDIT_OFF == 1 && -n $ADMIN_URL ]]; then
    for u in "$ADMIN_URL 1" "$NOAUDIT_ADMIN_URL 0"; do
        read -r url want <<<"$u"
        got=$(curl -fsS --max-time 5 "$url" | awk '$1 == "airlock_audit_enabled" { print $2 }')
        [[ $got == "$want" ]] || die "$url reports airlock_audit_enabled '$got', expected $want"
    done
fi

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
    case $w in
    select-*) echo "-n -S -M $mode -c $CLIENTS -j $THREADS" ;;
    tpcb-*) echo "-n -M $mode -c $CLIENTS -j $THREADS" ;;
    # One client, so every transaction waits for the previous one: the
    # latency a proxy adds is not hidden behind other clients' work.
    latency) echo "-n -S -M simple -c 1 -j 1" ;;
    esac
}

# run_one target workload secs -> "tps txns proxy_ticks pg_ticks busy_pct
# lat_mean_us lat_p50_us lat_p99_us" (p50/p99 "-" unless the workload logs
# every transaction; the mean then comes from that log, else from pgbench's
# "latency average", which is run time * clients / transactions)
run_one() {
    local t=$1 w=$2 secs=$3 pid p0 p1 g0 g1 m0 m1 tps txns failed lat logargs=()
    if [[ $w == tpcb-* ]]; then
        # What pgbench would do without -n, done over the admin socket so
        # maintenance never goes through (or is judged by) a proxy.
        psql_admin -d "$DB" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null
    fi
    if [[ $w == latency ]]; then
        # Per-transaction log: "client txn_no latency_us script epoch us".
        rm -f "$TMP/lat/$t".*
        logargs=(-l "--log-prefix=$TMP/lat/$t")
    fi
    pid=$(target_pid "$t")
    p0=0; [[ -n $pid ]] && p0=$(proc_ticks "$pid")
    g0=$(pg_ticks); m0=$(machine_ticks)
    # shellcheck disable=SC2046
    if ! as_target "$t" "$PG_BIN/pgbench" $(pgbench_args "$w") "${logargs[@]}" -T "$secs" >"$TMP/pgbench.out" 2>&1; then
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
    if [[ $w == latency ]]; then
        # Nearest-rank percentiles over every logged transaction.
        lat=$(cat "$TMP/lat/$t".* | awk '{ print $3 }' | sort -n | awk '
            { v[NR] = $1; s += $1 }
            END { if (!NR) { print "- - -"; exit }
                  p50 = int(NR * 0.50); if (p50 < NR * 0.50) p50++
                  p99 = int(NR * 0.99); if (p99 < NR * 0.99) p99++
                  printf "%.1f %d %d", s / NR, v[p50], v[p99] }')
        [[ $lat != "- - -" ]] || die "pgbench wrote no per-transaction log for $t"
    else
        lat=$(awk '/^latency average = / { printf "%.1f", $4 * 1000; exit }' "$TMP/pgbench.out")
        lat="${lat:--} - -"
    fi
    read -r mb0 mt0 <<<"$m0"; read -r mb1 mt1 <<<"$m1"
    echo "$tps $txns $((p1 - p0)) $((g1 - g0)) $(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }') $lat"
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
            log "round $r/$ROUNDS $w $t: $res (tps txns proxy_ticks pg_ticks busy% lat_mean_us p50 p99)"
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
# Instructions per transaction (INSTR=1): pgbouncer and pg-airlock each run
# once more under callgrind, on ports of their own, and pgbench runs a
# short and a long fixed number of transactions through each; the
# difference of the two counts over the difference of transactions is the
# proxy's user-space instructions per transaction, without its logins
# (SCRAM dominates a short run). Unlike seconds, these do not move with
# the machine's load or with the CPU model: a change to the relay path
# shows up here in one run. Kernel work (syscalls, wake-ups) is not
# counted; the rounds above show that. valgrind hides SHA extensions, so
# the audit writer's hashing counts several times what it costs natively:
# pg-airlock is measured with its trail off, plus its session threads with
# the trail on (encoding a record happens there).

INSTR_ROWS=""
if [[ ${INSTR:-0} == 1 ]]; then
    command -v valgrind >/dev/null || {
        log "installing valgrind"
        DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >&2 || die "apt-get install valgrind failed"
    }
    INSTR_TXNS=${INSTR_TXNS:-250}
    mkdir -p "$TMP/cg" && chown postgres:postgres "$TMP/cg"
    # cg_start name port cmd...: start cmd (a proxy under callgrind) and
    # wait until it listens on port; sets CG_PID
    cg_start() {
        local name=$1 port=$2 i; shift 2
        "$@" >"$TMP/cg/$name.log" 2>&1 &
        CG_PID=$!
        for i in $(seq 300); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
            kill -0 "$CG_PID" 2>/dev/null || break
            sleep 0.2
        done
        tail -n 5 "$TMP/cg/$name.log" >&2
        die "$name under callgrind did not listen on $port"
    }
    # cg_total name port user pw workload n start_fn: a fresh proxy under
    # callgrind (start_fn OUTFILE starts it; sets CG_PID, and CG_STOP to the
    # pid to signal), 10 transactions per client (pgbouncer fills its server
    # pool with the first clients), then n per client, then stop: prints
    # "total session_threads" for the whole life of the process. Fresh
    # processes rather than callgrind_control's zero/dump: a process of
    # another user (pgbouncer runs as postgres) takes those requests only
    # when it next wakes, so they land mid-run.
    cg_total() {
        local name=$1 port=$2 u=$3 pw=$4 w=$5 n=$6 start=$7 out k
        out="$TMP/cg/$name-$w-$n.out"
        "$start" "$out"
        for k in 10 "$n"; do
            # shellcheck disable=SC2046
            env PGHOST=127.0.0.1 PGPORT="$port" PGUSER="$u" PGPASSWORD="$pw" PGDATABASE=$DB PGSSLMODE=disable \
                "$PG_BIN/pgbench" $(pgbench_args "$w") -t "$k" >"$TMP/cg/pgbench.out" 2>&1 \
                || { cat "$TMP/cg/pgbench.out" >&2; die "pgbench $w through $name under callgrind failed"; }
        done
        kill -TERM "$CG_STOP" 2>/dev/null || true
        stop_pid "$CG_PID" 60 || log "$name under callgrind had to be killed (its count is lost)"
        [[ -s $out ]] || die "callgrind wrote no $out"
        echo "$(awk '/^summary:/ { print $2 }' "$out") $(callgrind_annotate --inclusive=yes "$out" 2>/dev/null \
            | awk '/workers\.rs:std::sys::backtrace/ { gsub(",", "", $1); print $1; exit }')"
        rm -f "$out"*
    }
    # cg_count name port user pw workload start_fn: instructions per
    # transaction, "whole session_threads" (session threads "-" for a
    # process without them)
    cg_count() {
        local a sa b sb
        read -r a sa <<<"$(cg_total "$1" "$2" "$3" "$4" "$5" "$INSTR_TXNS" "$6")"
        read -r b sb <<<"$(cg_total "$1" "$2" "$3" "$4" "$5" $((5 * INSTR_TXNS)) "$6")"
        awk -v a="$a" -v b="$b" -v sa="${sa:-}" -v sb="${sb:-}" -v d=$((4 * INSTR_TXNS * CLIENTS)) \
            'BEGIN { printf "%.0f %s", (b - a) / d, (sa == "" ? "-" : sprintf("%.0f", (sb - sa) / d)) }'
    }
    free_port CG_BOUNCER_PORT
    free_port CG_AIRLOCK_PORT
    free_port CG_AUDIT_PORT
    sed -e "s/^listen_port = .*/listen_port = $CG_BOUNCER_PORT/" -e "s#^pidfile = .*#pidfile = $TMP/cg/bouncer.pid#" \
        -e "s#^logfile = .*#logfile = $TMP/cg/bouncer-own.log#" "$TMP/bouncer/pgbouncer.ini" >"$TMP/cg/pgbouncer.ini"
    chown postgres:postgres "$TMP/cg/pgbouncer.ini"
    # config_on_port src_dir port: a copy of that config in a directory of
    # its own (relative paths, such as the audit file's, land there: two
    # proxies must not share an audit file) on another listen port, without
    # the admin endpoint
    config_on_port() {
        local d=$TMP/cg/airlock-$2
        mkdir -p "$d" && cp "$1"/*.pw "$d/"
        sed -e "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$2\"/" "$1/airlock.toml" \
            | awk '/^\[admin\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' >"$d/airlock.toml"
        echo "$d/airlock.toml"
    }
    NOAUDIT_DIR=$TMP/airlock-noaudit
    if [[ $AUDIT_OFF != 1 ]]; then
        # No audit-off process this run: derive its config from the main one.
        NOAUDIT_DIR=$TMP/airlock-cg-noaudit
        mkdir -p "$NOAUDIT_DIR" && cp "$TMP/airlock"/*.pw "$NOAUDIT_DIR/"
        toml_add "$(cat "$TMP/airlock/airlock.toml")" audit "enabled = false" >"$NOAUDIT_DIR/airlock.toml"
    fi
    log "instructions: pgbouncer and pg-airlock under callgrind, $INSTR_TXNS and $((5 * INSTR_TXNS)) transactions per client"
    CG_NOAUDIT_CONFIG=$(config_on_port "$NOAUDIT_DIR" "$CG_AIRLOCK_PORT")
    CG_AUDIT_CONFIG=$(config_on_port "$TMP/airlock" "$CG_AUDIT_PORT")
    start_cg_bouncer() {
        rm -f "$TMP/cg/bouncer.pid"
        cg_start pgbouncer "$CG_BOUNCER_PORT" runuser -u postgres -- valgrind --tool=callgrind \
            --callgrind-out-file="$1" "$PGBOUNCER" "$TMP/cg/pgbouncer.ini"
        # Signal pgbouncer itself (valgrind's process), not runuser.
        CG_STOP=$(cat "$TMP/cg/bouncer.pid" 2>/dev/null || pgrep -P "$CG_PID" | head -n1)
    }
    start_cg_airlock() {
        cg_start airlock "$CG_AIRLOCK_PORT" env AIRLOCK_LOG=warn valgrind --tool=callgrind \
            --callgrind-out-file="$1" "$BIN" run --config "$CG_NOAUDIT_CONFIG"
        CG_STOP=$CG_PID
    }
    start_cg_audit() {
        cg_start airlock-audit "$CG_AUDIT_PORT" env AIRLOCK_LOG=warn valgrind --tool=callgrind \
            --callgrind-out-file="$1" "$BIN" run --config "$CG_AUDIT_CONFIG"
        CG_STOP=$CG_PID
    }
    for w in $WORKLOADS; do
        [[ $w == latency ]] && continue
        read -r pb _ <<<"$(cg_count pgbouncer "$CG_BOUNCER_PORT" "$ROLE" "$ROLE_PW" "$w" start_cg_bouncer)"
        read -r al al_s <<<"$(cg_count airlock "$CG_AIRLOCK_PORT" "$AGENT" "$AGENT_PW" "$w" start_cg_airlock)"
        read -r _ au_s <<<"$(cg_count airlock-audit "$CG_AUDIT_PORT" "$AGENT" "$AGENT_PW" "$w" start_cg_audit)"
        INSTR_ROWS+=$(awk -v w="$w" -v pb="$pb" -v al="$al" -v s="$al_s" -v au="$au_s" \
            'BEGIN { printf "| %s | %d | %d | %s | %.2f | %s |\n", w, pb, al, s, al / pb, au }')$'\n'
        log "instructions $w: pgbouncer $pb, pg-airlock $al (session threads $al_s; with the trail on $au_s)"
    done
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

# Memory per idle connection: RSS of each proxy before, with IDLE_CONNS
# clients logged in (SCRAM, like every run) and idle, and after they left.
# After the load runs pg-airlock's RSS still holds allocator pages and
# audit-queue backlog that it returns to the system over the following
# seconds, so the "before" reading can drift by more than the connections
# weigh; the marginal figure below (two readings with clients logged in)
# does not depend on it.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
open_sessions() { # target -> logged-in client sessions the proxy holds
    case $1 in
    pgbouncer)
        # SHOW POOLS: database|user|cl_active|cl_waiting|...
        as_target pgbouncer "$PG_BIN/psql" -X -q -At -d pgbouncer -c "SHOW POOLS" 2>/dev/null \
            | awk -F'|' -v db="$DB" '$1 == db { n += $3 + $4 } END { print n + 0 }' ;;
    airlock)
        curl -fsS --max-time 5 "$ADMIN_URL" 2>/dev/null | awk '$1 == "airlock_sessions_active" { print $2 + 0 }' ;;
    esac
}
established() { # port -> established TCP connections to it (server side)
    ss -Htn state established "( sport = :$1 )" | wc -l
}
IDLE_ROWS=""
if [[ $IDLE_CONNS -gt 0 && -z $ADMIN_URL ]]; then
    IDLE_ROWS="(skipped: the extra TOML has its own [admin], so the open sessions of pg-airlock cannot be counted)"
elif [[ $IDLE_CONNS -gt 0 ]]; then
    # pgbench keeps \sleep in microseconds in an int: at most ~2147 s.
    printf '\\sleep %d s\n' $((IDLE_TIMEOUT + 120)) >"$TMP/idle.sql"
    # A tenth of the clients log in first, the rest after that: the slope
    # between the two readings is what one more connection costs, whatever
    # the process held before the clients came. Both figures are reported.
    FIRST=$((IDLE_CONNS >= 10 ? IDLE_CONNS / 10 : 0))
    idle_clients() { # target count: that many more clients log in and stay idle
        # Each client logs in, then its only "transaction" sleeps: it never
        # sends a query, so pgbouncer never pairs it with a server connection.
        # `exec` in the subshell: $! must be pgbench itself. It was the
        # subshell, and stopping that left the clients connected after the
        # run (holding ephemeral ports).
        (as_target_exec=1 as_target "$1" "$PG_BIN/pgbench" -n -c "$2" -j 4 -t 1 -f "$TMP/idle.sql") >>"$TMP/idle.out" 2>&1 &
        IDLE_PID+=" $!"
    }
    wait_sessions() { # target count
        local n=0 deadline=$(($(date +%s) + IDLE_TIMEOUT)) p
        while :; do
            n=$(open_sessions "$1")
            [[ ${n:-0} -ge $2 ]] && break
            for p in $IDLE_PID; do
                kill -0 "$p" 2>/dev/null || die "pgbench (idle clients against $1) exited early: $(tail -n 3 "$TMP/idle.out" | tr '\n' ' ')"
            done
            [[ $(date +%s) -lt $deadline ]] || die "only $n of $2 idle clients logged in to $1 within ${IDLE_TIMEOUT}s"
            sleep 0.5
        done
    }
    login() { # target count total: that many more clients log in; wait for total; time added to secs_in
        local t
        t=$(date +%s.%N)
        idle_clients "$1" "$2"
        wait_sessions "$1" "$3"
        secs_in=$(awk -v s="$secs_in" -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", s + b - a }')
    }
    # Let allocator and kernel settle after a login burst.
    settle() { sleep 3; }
    for t in pgbouncer airlock; do
        pid=$(target_pid "$t")
        port=$BOUNCER_PORT; [[ $t == airlock ]] && port=$AIRLOCK_PORT
        log "memory: $IDLE_CONNS idle clients on $t ($FIRST first; timeout ${IDLE_TIMEOUT}s)"
        sleep 1
        rss0=$(rss_kib "$pid")
        rss_first=$rss0
        secs_in=0
        if [[ $FIRST -gt 0 ]]; then
            login "$t" "$FIRST" "$FIRST"
            settle
            rss_first=$(rss_kib "$pid")
        fi
        login "$t" $((IDLE_CONNS - FIRST)) "$IDLE_CONNS"
        settle
        rss1=$(rss_kib "$pid")
        n1=$(open_sessions "$t")
        est=$(established "$port")
        for p in $IDLE_PID; do stop_pid "$p" 10 || true; wait "$p" 2>/dev/null || true; done
        IDLE_PID=""
        for _ in $(seq 100); do [[ $(open_sessions "$t") == 0 ]] && break; sleep 0.2; done
        sleep 1
        rss2=$(rss_kib "$pid")
        IDLE_ROWS+=$(printf '| %s | %d | %s | %d | %d | %d | %d | %.1f | %.1f | %d |' "$t" "$n1" "$est" "$rss0" "$rss_first" "$rss1" "$rss2" \
            "$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNS" 'BEGIN { print (b - a) / n }')" \
            "$(awk -v a="$rss_first" -v b="$rss1" -v n=$((IDLE_CONNS - FIRST)) 'BEGIN { print (b - a) / n }')" "${secs_in%.*}")$'\n'
        [[ $n1 -ge $IDLE_CONNS ]] || die "$t: $n1 of $IDLE_CONNS idle sessions still open when RSS was read"
    done
fi
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
# WARN/ERROR lines of a pg-airlock log, colour codes removed (tracing
# writes ANSI colours even to a file, which hid every line from the match).
warn_lines() { sed -E $'s/\x1b\\[[0-9;]*m//g' "$1" | grep -E ' (WARN|ERROR) ' || true; }
NOAUDIT_NOTE=""
if [[ -n $NOAUDIT_PID ]]; then
    NOAUDIT_NOTE="memory at the end: $(awk '/^VmHWM|^VmRSS/ { printf "%s %s %s; ", $1, $2, $3 }' "/proc/$NOAUDIT_PID/status")"
    stop_pid "$NOAUDIT_PID" 60 || NOAUDIT_NOTE+="did NOT exit within 60 s of SIGTERM (killed); "
    NOAUDIT_PID=""
    NOAUDIT_FILES=$(find "$TMP/airlock-noaudit" -maxdepth 2 -type f -name '*audit*' 2>/dev/null | sort)
    NOAUDIT_NOTE+="audit files written: ${NOAUDIT_FILES:-none}; WARN/ERROR lines: $(warn_lines "$TMP/airlock-noaudit/airlock.log" | wc -l)"
    grep -q 'audit trail disabled' "$TMP/airlock-noaudit/airlock.log" && NOAUDIT_NOTE+=" (incl. the startup 'audit trail disabled' warning)"
fi
LOG_NOTE=$(warn_lines "$TMP/airlock/airlock.log" | wc -l)
LOG_TOP=$(warn_lines "$TMP/airlock/airlock.log" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 5 || true)

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
    echo "- pgbench -c $CLIENTS -j $THREADS -T $SECS, scale $SCALE, $ROUNDS rounds, targets (${TARGETS[*]}) interleaved within each round; workload latency = -c 1 -j 1 -S -M simple with a per-transaction log; PostgreSQL max_connections=$PG_MAX_CONN"
    echo "- scheduling: sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a); PostgreSQL, pgbouncer and each pg-airlock in a session of its own for the timed runs (INSTR=1 counts, which do not depend on it, run under valgrind from the script's), pgbench in the script's"
    echo "- load average before/after: $LOAD_BEFORE / $LOAD_AFTER (the machine is shared with other builds: prefer the ratios)"
    echo "- pg-airlock log filter: ${AIRLOCK_LOG:-info}; $LOG_NOTE WARN/ERROR lines; memory after the load runs: $AIRLOCK_MEM$STOP_NOTE"
    [[ -n $NOAUDIT_NOTE ]] && echo "- airlock-noaudit (same config + [audit] enabled = false): $NOAUDIT_NOTE"
    echo "- audit trail after the graceful stop (all runs, warm-up and perf included): $AUDIT_NOTE"
    if [[ -n $EXTRA ]]; then
        echo "- pg-airlock config beyond listen/upstream/one agent/[admin]:"
        echo
        echo '```toml'
        echo "$EXTRA"
        echo '```'
    else
        echo "- pg-airlock config beyond listen/upstream/one agent/[admin]: none"
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
        if (what == "u") return sprintf("%.1f (%.1f to %.1f)", median(a, n), lo, hi)
        if (what == "p") return sprintf("%.1f (%.1f to %.1f)", 100 * median(a, n), 100 * lo, 100 * hi)
        return median(a, n)
    }
    function add(key, v) { val[key, ++cnt[key]] = v }
    # Statements per transaction: the built-in TPC-B-like script has 7, select-only (and latency) 1.
    function stmts(w) { return (w ~ /^tpcb-/) ? 7 : 1 }
    {
        r = $1; w = $2; t = $3
        tps[r, w, t] = $4
        add(w SUBSEP t SUBSEP "tps", $4)
        add(w SUBSEP t SUBSEP "busy", $8)
        add(w SUBSEP t SUBSEP "pgus", $7 * 1e6 / tck / $5)
        if (t != "direct") add(w SUBSEP t SUBSEP "cpu", $6 * 1e6 / tck / $5)
        if ($10 != "-") {
            lat[r, t, "mean"] = $9; lat[r, t, "p50"] = $10; lat[r, t, "p99"] = $11
            add(t SUBSEP "mean", $9); add(t SUBSEP "p50", $10); add(t SUBSEP "p99", $11)
            seen_lat[t] = 1
        }
        if (t == "airlock-noaudit") noaudit = 1
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
            w = W[i]; s = stmts(w)
            b = stat(w SUBSEP "pgbouncer" SUBSEP "cpu", "m"); a = stat(w SUBSEP "airlock" SUBSEP "cpu", "m")
            printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f |\n", w, s, b, a, b / s, a / s,
                (b > 0 ? sprintf("%.2f", a / b) : "n/a"),
                stat(w SUBSEP "direct" SUBSEP "pgus", "m"), stat(w SUBSEP "pgbouncer" SUBSEP "pgus", "m"), stat(w SUBSEP "airlock" SUBSEP "pgus", "m"),
                stat(w SUBSEP "direct" SUBSEP "busy", "m"), stat(w SUBSEP "pgbouncer" SUBSEP "busy", "m"), stat(w SUBSEP "airlock" SUBSEP "busy", "m")
        }
        if ("direct" in seen_lat) {
            nt = split("direct pgbouncer airlock airlock-noaudit", T, " ")
            for (k = 1; k <= nt; k++) for (r in rounds) for (q = 1; q <= 3; q++) {
                m = (q == 1) ? "mean" : (q == 2) ? "p50" : "p99"
                if (T[k] != "direct" && (r, T[k], m) in lat && (r, "direct", m) in lat)
                    add(T[k] SUBSEP "added" SUBSEP m, lat[r, T[k], m] - lat[r, "direct", m])
            }
            print ""
            print "## Latency, one client (workload latency: median over rounds of each run'\''s mean / p50 / p99 per transaction, microseconds; added = target minus direct in the same round, median (min to max))"
            print ""
            print "| target | mean us | p50 us | p99 us | added mean us | added p50 us | added p99 us |"
            print "|---|---:|---:|---:|---:|---:|---:|"
            for (k = 1; k <= nt; k++) {
                t = T[k]; if (!(t in seen_lat)) continue
                if (t == "direct") { am = ap = aq = "-" }
                else { am = stat(t SUBSEP "added" SUBSEP "mean", "u"); ap = stat(t SUBSEP "added" SUBSEP "p50", "u"); aq = stat(t SUBSEP "added" SUBSEP "p99", "u") }
                printf "| %s | %.1f | %.0f | %.0f | %s | %s | %s |\n", t, stat(t SUBSEP "mean", "m"), stat(t SUBSEP "p50", "m"), stat(t SUBSEP "p99", "m"), am, ap, aq
            }
        }
        if (noaudit) {
            for (i = 1; i <= nw; i++) {
                w = W[i]
                for (r in rounds) {
                    if (!((r, w, "airlock") in tps && (r, w, "airlock-noaudit") in tps)) continue
                    if ((r, w, "direct") in tps && tps[r, w, "direct"] > 0)
                        add(w SUBSEP "noaudit/direct", tps[r, w, "airlock-noaudit"] / tps[r, w, "direct"])
                    if (tps[r, w, "airlock-noaudit"] > 0)
                        add(w SUBSEP "audit cost", 1 - tps[r, w, "airlock"] / tps[r, w, "airlock-noaudit"])
                }
            }
            print ""
            print "## Audit trail on vs off (airlock vs airlock-noaudit, same config but [audit] enabled = false)"
            print ""
            print "Paired per round; cost % = (1 - airlock TPS / airlock-noaudit TPS) x 100 = how much lower airlock/direct is than airlock-noaudit/direct (target: at most 5%). CPU: proxy microseconds per statement, median of rounds."
            print ""
            print "| workload | airlock/direct | airlock-noaudit/direct | audit cost % (min to max) | airlock us/stmt | noaudit us/stmt | audit CPU us/stmt |"
            print "|---|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= nw; i++) {
                w = W[i]; s = stmts(w)
                a = stat(w SUBSEP "airlock" SUBSEP "cpu", "m"); b = stat(w SUBSEP "airlock-noaudit" SUBSEP "cpu", "m")
                printf "| %s | %s | %s | %s | %.1f | %.1f | %+.1f (%+.0f%%) |\n", w, stat(w SUBSEP "airlock/direct", "r"), stat(w SUBSEP "noaudit/direct", "r"),
                    stat(w SUBSEP "audit cost", "p"), a / s, b / s, (a - b) / s, (b > 0 ? 100 * (a - b) / b : 0)
            }
        }
    }' "$RAW"
    if [[ -n $IDLE_ROWS ]]; then
        echo
        echo "## Memory per idle connection ($IDLE_CONNS clients logged in with SCRAM, then idle)"
        echo
        if [[ $IDLE_ROWS == "("* ]]; then
            echo "$IDLE_ROWS"
        else
            echo "RSS (VmRSS, KiB) of the proxy process before the clients connect (after the load runs), with a tenth of them logged in, with all of them logged in and idle, and after they left. Per connection = (with all - before) / $IDLE_CONNS; marginal = (with all - with a tenth) / the other nine tenths: what one more connection costs, whatever the process held before (after the load runs pg-airlock still gives back allocator pages and audit backlog for a while, which moves the \"before\" reading). pg-airlock also holds one PostgreSQL connection per session (not in its RSS); pgbouncer holds none for a client that has not sent a query. Target (issue 2): at most 16 KiB per idle connection for pg-airlock."
            echo
            echo "| proxy | sessions open | TCP established on its port | RSS before KiB | RSS with a tenth KiB | RSS with all KiB | RSS after KiB | KiB per idle connection | marginal KiB per connection | seconds to log all in |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            printf '%s' "$IDLE_ROWS"
        fi
    fi
    echo
    echo "Yardsticks (DESIGN-NOTES 5, pgbouncer/direct on this kind of machine): select-simple 0.94, select-extended 0.85-0.90, select-prepared 0.66-0.69, tpcb-simple 0.69; about 25 us pgbouncer CPU per simple statement."
    echo
    echo "## pg-airlock /metrics at the end (non-zero, all runs)"
    echo
    echo '```'
    echo "$METRICS"
    [[ -n $LOG_TOP ]] && { echo; echo "most frequent WARN/ERROR log lines (digits as N):"; echo "$LOG_TOP"; }
    echo '```'
    if [[ -n $INSTR_ROWS ]]; then
        echo
        echo "## Instructions per transaction (callgrind, user space, logins excluded)"
        echo
        echo "Counted, not timed: the same binary and workload give the same count on any machine and under any load. Kernel work is not in it. pg-airlock with its audit trail off; the last column is its session threads with the trail on (record encoding happens there; the writer thread's SHA-256 runs without SHA extensions under valgrind, so it is left out)."
        echo
        echo "| workload | pgbouncer | pg-airlock | of which session threads | pg-airlock/pgbouncer | session threads, trail on |"
        echo "|---|---:|---:|---:|---:|---:|"
        printf '%s' "$INSTR_ROWS"
    fi
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
    echo "<details><summary>raw runs (round, workload, target, tps, transactions, proxy CPU ticks, server CPU ticks, machine busy %, latency mean / p50 / p99 us; $CLK_TCK ticks/s)</summary>"
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

#!/usr/bin/env bash
# pg-airlock approval latency: time from the approving click to the held
# statement reaching the database (goal: p99 under 5 ms on loopback).
#
# One run: build pg-airlock (release), start a throwaway PostgreSQL cluster
# and pg-airlock in front of it with the shipped rules and an admin-API token,
# then N times: an agent runs `DELETE FROM t` (no WHERE: held as destructive),
# a reviewer approves it through the admin API, and a statement-level trigger
# on t stamps clock_timestamp() into a table the moment the statement starts
# executing in the server. Report (stdout and
# bench/results/<UTC timestamp>-approval.md): p50/p90/p99/max of
#   db    = trigger's clock_timestamp() - t0     (the number the goal is about)
#   ack   = approve POST answered       - t0
#   client= agent's psql exited         - t0
# where t0 is taken right before the approve POST is written. All three clocks
# are this machine's wall clock (Python's time.time() and PostgreSQL's
# clock_timestamp() both read CLOCK_REALTIME), so differences are meaningful
# to a few microseconds; PostgreSQL stamps with microsecond resolution.
# Everything started here is stopped and every temp file removed on exit.
#
# Knobs (environment):
#   N=200          measured approvals
#   WARMUP=5       approvals run first and not recorded (first connections,
#                  page faults, lazily built state)
#   HOLD_WAIT=10   seconds to wait for a statement to be held
#   SETTLE_MS=200  pause between the hold being complete and the click
#                  (longer than the audit writer's 50 ms group commit, so
#                  the click finds it idle, as a human's click would)
#   AUDIT_DIR      directory under which pg-airlock's audit trail is kept
#                  (default: the temp dir, on the root disk). The decision
#                  is fsynced there before the approved statement is sent,
#                  so this disk is in the measured path; AUDIT_DIR=/dev/shm
#                  (tmpfs: fsync returns at once) shows the proxy without it.
#   COLD=1         the held DELETE is the session's first statement. By
#                  default the agent's session first runs an allowed
#                  `DELETE FROM t WHERE id = -1`, so the new server backend
#                  has loaded PL/pgSQL, compiled the trigger and cached t's
#                  catalog entries before the click (about 2 ms of
#                  first-use work in PostgreSQL that is no part of the
#                  approval path, but lands inside the timed window)
#   CLICK=api      how the reviewer approves: api = POST /approvals/<id>/approve
#                  on the admin port; slack = the Approve button's block_actions
#                  callback, signed with the signing secret exactly as Slack
#                  signs it, POSTed to /slack/interactions (Slack in HTTP
#                  mode: slack-morphism's signature check and payload
#                  parsing are in the timed window). Slack's Web API is a
#                  small fake on loopback (bench/fake_slack.py) that records
#                  chat.postMessage so the button's value can be clicked.
#   AIRLOCK_LOG    pg-airlock log filter (default: info, as shipped)
#   SKIP_BUILD=1   use the existing release binary as is
#   PG_BIN         PostgreSQL server binaries (default: newest under
#                  /usr/lib/postgresql/*/bin)
set -euo pipefail
# Failures inside $(...) (one_approval runs in one) must stop the run too.
shopt -s inherit_errexit

N=${N:-200}
WARMUP=${WARMUP:-5}
HOLD_WAIT=${HOLD_WAIT:-10}
SETTLE_MS=${SETTLE_MS:-200}
COLD=${COLD:-0}
CLICK=${CLICK:-api}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR="$REPO/bench/results"
RULES="$REPO/rules/default.toml"

die() { echo "approval-bench: $*" >&2; exit 1; }
log() { echo "approval-bench: $*" >&2; }

[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N must be a positive integer, got '$N'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$WARMUP'"
[[ $HOLD_WAIT =~ ^[0-9]+$ && $HOLD_WAIT -gt 0 ]] || die "HOLD_WAIT must be a positive integer, got '$HOLD_WAIT'"
[[ $SETTLE_MS =~ ^[0-9]+$ ]] || die "SETTLE_MS must be a non-negative integer, got '$SETTLE_MS'"
[[ $COLD == 0 || $COLD == 1 ]] || die "COLD must be 0 or 1, got '$COLD'"
[[ $CLICK == api || $CLICK == slack ]] || die "CLICK must be api or slack, got '$CLICK'"
[[ $(id -u) == 0 ]] || die "run as root (runs PostgreSQL as the postgres OS user)"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install the postgresql package)"
command -v python3 >/dev/null || die "python3 is needed (it takes t0 and sends the approval)"
command -v curl >/dev/null || die "curl is needed"
[[ -r $RULES ]] || die "no rule file at $RULES"

# ---------------------------------------------------------------------------
# Tools.

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
find_pg_bin initdb pg_ctl psql

build_airlock

# ---------------------------------------------------------------------------
# Cleanup: only what this script started, by pid.

TMP=$(mktemp -d /tmp/pg-airlock-approval.XXXXXX)
chmod 755 "$TMP"
PG_STARTED=0
AIRLOCK_PID=""
SLACK_PID=""
AUDIT_TMP=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $AIRLOCK_PID ]] && stop_pid "$AIRLOCK_PID"
    [[ -n $SLACK_PID ]] && stop_pid "$SLACK_PID"
    if [[ $PG_STARTED == 1 ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $rc != 0 ]]; then
        log "failed (exit $rc); last lines of the logs:"
        for f in "$TMP/pg/log" "$TMP/airlock/airlock.log" "$TMP/slack.log" "$TMP/iter.err"; do
            [[ -s $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    rm -rf "$TMP"
    [[ -n $AUDIT_TMP ]] && rm -rf "$AUDIT_TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# PostgreSQL.

free_port PG_PORT
free_port AIRLOCK_PORT
free_port ADMIN_PORT
free_port SLACK_PORT
SIGNING_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
DB=bench
ROLE=bench
ROLE_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
AGENT=bench-agent
AGENT_PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
TOKEN="bench-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
REVIEWER="api:bench-reviewer"

mkdir -p "$TMP/pg/sock" "$TMP/airlock/secrets"
[[ -d ${AUDIT_DIR:-$TMP} ]] || die "AUDIT_DIR '$AUDIT_DIR' is not a directory"
AUDIT_TMP=$(mktemp -d "${AUDIT_DIR:-$TMP}/pg-airlock-approval-audit.XXXXXX")
AUDIT_FS=$(df --output=fstype "$AUDIT_TMP" | tail -n1)
chown -R postgres:postgres "$TMP/pg"

log "initdb + start PostgreSQL on 127.0.0.1:$PG_PORT ($TMP)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$TMP/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
# Bookkeeping over the Unix socket (trust); the proxy's upstream connection
# comes over TCP with SCRAM, as in bench/run.sh.
cat >"$TMP/pg/data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF
# fsync=off as in bench/run.sh (the disk is shared with other builders).
# It does not touch the main number: the trigger stamps the time when the
# statement starts, before any commit flush. It does shorten "client".
PG_OPTS="-p $PG_PORT -k $TMP/pg/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -o "$PG_OPTS" -l "$TMP/pg/log" -w -t 60 start >/dev/null \
    || die "pg_ctl start failed"
PG_STARTED=1

psql_admin() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP/pg/sock" -p "$PG_PORT" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$ROLE_PW'" -c "CREATE DATABASE $DB OWNER $ROLE"
PG_VERSION=$(psql_admin -d postgres -c "SHOW server_version")

# The upstream role owns t, hit and the trigger function, so it needs no
# grants and the (SECURITY INVOKER) trigger may insert into hit. A
# statement-level BEFORE trigger fires once per statement even when t is
# empty, so every DELETE leaves exactly one row, stamped when execution
# starts (after parse and plan, before the (empty) scan). current_query()
# tells the held statement's row from the warm-up statement's.
psql_admin -d "$DB" <<'SQL'
SET ROLE bench;
CREATE TABLE t (id int);
CREATE TABLE hit (at timestamptz NOT NULL, query text NOT NULL);
CREATE FUNCTION log_hit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hit VALUES (clock_timestamp(), current_query());
    RETURN NULL;
END $$;
CREATE TRIGGER log_hit BEFORE DELETE ON t FOR EACH STATEMENT EXECUTE FUNCTION log_hit();
SQL

# ---------------------------------------------------------------------------
# pg-airlock: one agent without an owner (an agent's owner may not approve
# its statements, and nobody here is), the shipped rules, Slack off, and one
# admin-API token read from the secrets dir.

printf '%s' "$ROLE_PW" >"$TMP/airlock/upstream.pw"
printf '%s' "$AGENT_PW" >"$TMP/airlock/agent.pw"
printf '%s' "$TOKEN" >"$TMP/airlock/secrets/AIRLOCK_BENCH_TOKEN"
printf '%s' "xoxb-bench-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')" >"$TMP/airlock/secrets/AIRLOCK_BENCH_SLACK_BOT"
printf '%s' "$SIGNING_SECRET" >"$TMP/airlock/secrets/AIRLOCK_BENCH_SLACK_SIGNING"
chmod 600 "$TMP/airlock/upstream.pw" "$TMP/airlock/agent.pw" "$TMP/airlock/secrets/"*
# secrets_dir is a top-level key, so it must come before the first [table].
cat >"$TMP/airlock/airlock.toml" <<EOF
secrets_dir = "secrets"

[listen]
address = "127.0.0.1:$AIRLOCK_PORT"

[upstream]
host = "127.0.0.1"
port = $PG_PORT
user = "$ROLE"
password_file = "upstream.pw"
tls = "disable"

[admin]
address = "127.0.0.1:$ADMIN_PORT"

[rules]
paths = ["$RULES"]

[audit]
file = "$AUDIT_TMP/airlock-audit.jsonl"

[[api_token]]
token_env = "AIRLOCK_BENCH_TOKEN"
identity = "$REVIEWER"

[[agent]]
name = "$AGENT"
password_file = "agent.pw"
EOF
if [[ $CLICK == slack ]]; then
    cat >>"$TMP/airlock/airlock.toml" <<EOF

[slack]
mode = "http"
bot_token_env = "AIRLOCK_BENCH_SLACK_BOT"
signing_secret_env = "AIRLOCK_BENCH_SLACK_SIGNING"
default_channel = "#db-approvals"
api_url = "http://127.0.0.1:$SLACK_PORT/api"
EOF
    log "start the fake Slack Web API on 127.0.0.1:$SLACK_PORT"
    python3 "$REPO/bench/fake_slack.py" "$SLACK_PORT" >"$TMP/slack.log" 2>&1 &
    SLACK_PID=$!
    for _ in $(seq 50); do curl -fsS --max-time 1 "http://127.0.0.1:$SLACK_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS --max-time 1 "http://127.0.0.1:$SLACK_PORT/healthz" >/dev/null || die "the fake Slack did not start"
fi
# The token must come from the secrets dir, not from a stray variable.
unset AIRLOCK_BENCH_TOKEN
"$BIN" check-config --config "$TMP/airlock/airlock.toml" >&2 || die "pg-airlock rejected the generated config (see above)"
log "start pg-airlock on 127.0.0.1:$AIRLOCK_PORT (admin 127.0.0.1:$ADMIN_PORT)"
AIRLOCK_LOG=${AIRLOCK_LOG:-info} "$BIN" run --config "$TMP/airlock/airlock.toml" >"$TMP/airlock/airlock.log" 2>&1 &
AIRLOCK_PID=$!
ADMIN="http://127.0.0.1:$ADMIN_PORT"

# libpq settings for the agent's connection through the proxy.
AGENT_ENV=(PGHOST=127.0.0.1 PGPORT="$AIRLOCK_PORT" PGDATABASE="$DB" PGUSER="$AGENT" PGPASSWORD="$AGENT_PW"
    PGSSLMODE=disable PGGSSENCMODE=disable PGAPPNAME=pg-airlock-approval-bench)

ok=0
for _ in $(seq 100); do
    if env "${AGENT_ENV[@]}" "$PG_BIN/psql" -X -q -At -c "SELECT 1" >/dev/null 2>"$TMP/probe.err" \
        && curl -fsS --max-time 2 -H "Authorization: Bearer $TOKEN" "$ADMIN/approvals" >"$TMP/probe.json" 2>>"$TMP/probe.err"; then
        ok=1
        break
    fi
    kill -0 "$AIRLOCK_PID" 2>/dev/null || break
    sleep 0.1
done
[[ $ok == 1 ]] || { cat "$TMP/probe.err" >&2; die "pg-airlock does not answer SELECT 1 through the proxy and GET /approvals on the admin port"; }
grep -q '"pending":\[\]' "$TMP/probe.json" || die "GET /approvals before the first hold is not an empty list: $(cat "$TMP/probe.json")"

# ---------------------------------------------------------------------------
# One approval, driven from one Python process so that t0 and the POST are
# microseconds apart (a fork between them would add a millisecond of noise).
# It starts the agent's psql and waits until the hold is complete: the
# request is listed by GET /approvals AND psql has printed pg-airlock's
# "held for approval" NOTICE, which the proxy sends only after the request
# record is durable in the audit trail. Then it waits SETTLE_MS more, so
# the audit writer has flushed the hold's other records and is idle, as it
# is when a human clicks seconds later. Approving the instant the request
# is listed would time the tail of the hold's own fsyncs instead.
# Then t0, and the approve POST on the already open connection (like a
# Slack Socket Mode click, which arrives on an open websocket; no TCP/TLS
# setup in the window), then it waits for psql to exit.
# Output: "<id> <t0> <t_ack> <t_done>" (Unix seconds). Anything unexpected
# (not held, held twice, refused, wrong SQL, psql error) fails the run.

cat >"$TMP/approve.py" <<'PY'
import http.client, json, subprocess, sys, threading, time

import hashlib, hmac, urllib.parse
admin_port, token, agent = sys.argv[1], sys.argv[2], sys.argv[3]
hold_wait, settle = float(sys.argv[4]), float(sys.argv[5]) / 1000
click, slack_port, signing_secret = sys.argv[6], sys.argv[7], sys.argv[8]
psql = sys.argv[9:]
auth = {"Authorization": "Bearer " + token}
HELD_NOTICE = b"pg-airlock: statement held for approval"

def fail(msg):
    sys.exit("approve.py: " + msg)

conn = http.client.HTTPConnection("127.0.0.1", int(admin_port), timeout=10)

def call(method, path, body=None, ctype="application/json"):
    headers = dict(auth)
    if body is not None:
        headers["Content-Type"] = ctype
    if path == "/slack/interactions":
        # Slack signs each request as it sends it: inside the timed window.
        ts = str(int(time.time()))
        mac = hmac.new(signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": ctype, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + mac}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data

# Nothing may be waiting before this iteration's statement: a leftover
# would be approved in its place and the timing would belong to nobody.
status, data = call("GET", "/approvals")
if status != 200 or json.loads(data)["pending"]:
    fail(f"before the statement: GET /approvals -> {status} {data[:300]!r}")

proc = subprocess.Popen(psql, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
# psql prints notices to stderr as they arrive (libpq hands them over while
# the query is still waiting); a thread watches for the hold notice.
stderr_lines, noticed = [], threading.Event()
def watch_stderr():
    for line in proc.stderr:
        stderr_lines.append(line)
        if HELD_NOTICE in line:
            noticed.set()
threading.Thread(target=watch_stderr, daemon=True).start()

try:
    deadline = time.monotonic() + hold_wait
    while not noticed.wait(0.001):
        if proc.poll() is not None:
            fail(f"psql finished (exit {proc.returncode}) without the hold notice: the statement was not held. "
                 f"stdout={proc.stdout.read()!r} stderr={b''.join(stderr_lines)!r}")
        if time.monotonic() > deadline:
            fail(f"no hold notice within {hold_wait} s; psql stderr so far: {b''.join(stderr_lines)!r}")
    status, data = call("GET", "/approvals")
    if status != 200:
        fail(f"GET /approvals -> {status} {data[:300]!r}")
    pending = json.loads(data)["pending"]
    if len(pending) != 1:
        fail(f"{len(pending)} requests pending after the hold notice, expected 1: {data[:500]!r}")
    req = pending[0]
    if req["agent"] != agent or req["sql"].strip() != "DELETE FROM t" or req["status"] != "pending":
        fail(f"unexpected request: {json.dumps(req)[:500]}")
    if click == "api":
        path, ctype = "/approvals/" + req["id"] + "/approve", "application/json"
        body = json.dumps({"binding": req["binding"]})
    else:
        # What Slack sends when a reviewer presses Approve on the posted
        # message: the button's value as pg-airlock rendered it (read back
        # from the fake's record of chat.postMessage), form-encoded; `call`
        # signs it over "v0:<timestamp>:<body>" with the signing secret.
        sc = http.client.HTTPConnection("127.0.0.1", int(slack_port), timeout=10)
        sc.request("GET", "/button?request=" + req["id"])
        r = sc.getresponse()
        msg = json.loads(r.read())
        if r.status != 200:
            fail(f"no Slack message with an Approve button for {req['id']}: {msg}")
        payload = {
            "type": "block_actions",
            "team": {"id": "T0BENCH", "domain": "bench"},
            "user": {"id": "U0BENCHREVIEWER", "username": "reviewer", "name": "reviewer", "team_id": "T0BENCH"},
            "api_app_id": "A0BENCH", "token": "unused", "trigger_id": "1.2.3",
            "container": {"type": "message", "message_ts": msg["ts"], "channel_id": msg["channel"], "is_ephemeral": False},
            "channel": {"id": msg["channel"], "name": "db-approvals"},
            "response_url": "https://hooks.slack.invalid/actions/T0BENCH/1/x",
            "actions": [{"type": "button", "action_id": "airlock_approve", "block_id": "b1",
                         "text": {"type": "plain_text", "text": "Approve"}, "value": msg["value"],
                         "action_ts": f"{time.time():.6f}"}],
        }
        path, ctype = "/slack/interactions", "application/x-www-form-urlencoded"
        body = "payload=" + urllib.parse.quote(json.dumps(payload), safe="")
    time.sleep(settle)
    # The connection may have idled through the settle time: make sure it
    # is still open now, not inside the timed window.
    status, data = call("GET", "/approvals/" + req["id"])
    if status != 200 or json.loads(data)["status"] != "pending":
        fail(f"request {req['id']} is no longer pending after the settle time: {status} {data[:300]!r}")

    t0 = time.time()
    status, data = call("POST", path, body, ctype)
    t_ack = time.time()

    # The API answers with the result; Slack's callback is acknowledged with
    # an empty 200 (the reviewer sees the outcome in the edited message).
    if status != 200 or (click == "api" and json.loads(data).get("result") != "approved"):
        fail(f"POST {path} -> {status} {data[:300]!r}")
    # A plain blocking wait: Popen.wait(timeout=...) polls with growing
    # sleeps (up to 50 ms) and would quantise t_done. The timer only guards
    # against a hang.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    proc.wait()
    t_done = time.time()
    watchdog.cancel()
    if proc.returncode < 0:
        fail("psql did not finish within 60 s of the approval (killed)")
    out = proc.stdout.read()
    # One "DELETE 0" per -c (warm-up and held statement): both ran, t stayed empty.
    if proc.returncode != 0 or out.decode().split("\n")[:-1] != ["DELETE 0"] * psql.count("-c"):
        fail(f"psql after approval: exit {proc.returncode}, stdout={out!r}, stderr={b''.join(stderr_lines)!r}")
    print(req["id"], f"{t0:.6f}", f"{t_ack:.6f}", f"{t_done:.6f}")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
PY

# Warm-up statement: has a WHERE, so the shipped rules allow it (a WHERE
# that is always false would count as no WHERE and be held too).
WARM_SQL="DELETE FROM t WHERE id = -1"
AGENT_PSQL=(env "${AGENT_ENV[@]}" "$PG_BIN/psql" -X -At -v ON_ERROR_STOP=1)
[[ $COLD == 1 ]] || AGENT_PSQL+=(-c "$WARM_SQL")
AGENT_PSQL+=(-c "DELETE FROM t")

# one_approval -> "id t0 t_ack t_done t_hit"
one_approval() {
    local line hits
    line=$(python3 "$TMP/approve.py" "$ADMIN_PORT" "$TOKEN" "$AGENT" "$HOLD_WAIT" "$SETTLE_MS" "$CLICK" "$SLACK_PORT" "$SIGNING_SECRET" "${AGENT_PSQL[@]}" 2>"$TMP/iter.err") \
        || die "approval failed: $(cat "$TMP/iter.err")"
    # Consume the trigger's rows so the next iteration starts from an empty
    # table; exactly one row of the held statement proves it ran exactly
    # once, and the warm-up row proves the session really was warmed.
    hits=$(psql_admin -d "$DB" -F ' ' -c "WITH d AS (DELETE FROM hit RETURNING *)
        SELECT count(*) FILTER (WHERE query = 'DELETE FROM t'), count(*) FILTER (WHERE query = '$WARM_SQL'), count(*),
               max(extract(epoch FROM at)) FILTER (WHERE query = 'DELETE FROM t') FROM d") \
        || die "reading the trigger's rows failed"
    read -r held warm all t_hit <<<"$hits"
    [[ $held == 1 && $warm == $((1 - COLD)) && $all == $((held + warm)) ]] \
        || die "trigger rows after approval: held statement $held (want 1), warm-up $warm (want $((1 - COLD))), all $all"
    echo "$line $t_hit"
}

# ---------------------------------------------------------------------------
# Runs.

# Machine-wide busy share from /proc/stat over the measured loop: on this
# shared 2-core machine a busy neighbour shows up directly in the tail.
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }

if [[ $WARMUP -gt 0 ]]; then
    log "warm-up: $WARMUP approvals (not recorded)"
    for _ in $(seq "$WARMUP"); do one_approval >/dev/null; done
fi

RAW="$TMP/raw.tsv"
: >"$RAW"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
read -r mb0 mt0 <<<"$(machine_ticks)"
SECONDS=0
log "measuring $N approvals"
for i in $(seq "$N"); do
    row=$(one_approval) || exit 1
    read -r id t0 t_ack t_done t_hit <<<"$row"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$id" "$t0" "$t_ack" "$t_done" "$t_hit" >>"$RAW"
    if ((i % 50 == 0)); then log "$i/$N"; fi
done
ELAPSED=$SECONDS
read -r mb1 mt1 <<<"$(machine_ticks)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY=$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')

# pg-airlock's own count must match: every hold approved, none refused.
METRICS=$(curl -fsS --max-time 5 "$ADMIN/metrics" | grep -E '^airlock_holds_(approved|refused)_total ' || true)
approved=$(awk '$1 == "airlock_holds_approved_total" { print $2 }' <<<"$METRICS")
refused=$(awk '$1 == "airlock_holds_refused_total" { print $2 }' <<<"$METRICS")
[[ $approved == $((N + WARMUP)) && $refused == 0 ]] \
    || die "pg-airlock /metrics disagrees: approved=${approved:-?} refused=${refused:-?}, expected $((N + WARMUP)) and 0"
WARNS=$(grep -cE ' (WARN|ERROR) ' "$TMP/airlock/airlock.log" || true)

# ---------------------------------------------------------------------------
# Report.

# stats column -> "p50 p90 p99 max mean" in ms; nearest-rank percentiles
# (with N=200, p99 is the 198th of 200 sorted samples).
stats() {
    awk -F'\t' -v c="$1" '{ printf "%.6f\n", 1000 * ($c - $3) }' "$RAW" | sort -g | awk '
        { v[NR] = $1; s += $1 }
        function pct(p,  k) { k = int(p * NR / 100); if (k < p * NR / 100) k++; if (k < 1) k = 1; return v[k] }
        END { printf "%.3f %.3f %.3f %.3f %.3f", pct(50), pct(90), pct(99), v[NR], s / NR }'
}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP-approval.md"
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null || true) ]] && DIRTY=" + uncommitted changes"

report() {
    local name col
    echo "# pg-airlock approval latency, $STARTED_AT"
    echo
    echo "- commit $COMMIT$DIRTY; binary $BIN built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)"
    echo "- PostgreSQL $PG_VERSION (fsync=off), everything on loopback; rules $RULES; $([[ $CLICK == slack ]] && echo "approvals by a signed Slack Approve click (HTTP mode, fake Web API on loopback)" || echo "Slack off, approvals through the admin API")"
    echo "- $N approvals measured after $WARMUP unrecorded, one at a time, in ${ELAPSED}s"
    echo "- machine: $(nproc) CPUs, load average $LOAD_BEFORE before / $LOAD_AFTER after, machine busy ${BUSY}% during the loop"
    echo "- audit trail on ${AUDIT_FS} (${AUDIT_DIR:-temp dir}); the decision is fsynced there before the statement is sent"
    echo "- pg-airlock: holds approved $approved, refused $refused; $WARNS WARN/ERROR log lines"
    echo "- agent session: $([[ $COLD == 1 ]] && echo "cold (the held DELETE is its first statement)" || echo "warmed by an allowed \`$WARM_SQL\` before the held \`DELETE FROM t\`")"
    echo
    echo "t0 = right before the approve POST ($([[ $CLICK == slack ]] && echo "Slack's signed block_actions callback to /slack/interactions" || echo "admin API")) is written (kept-alive HTTP connection), ${SETTLE_MS} ms after the agent got the hold notice."
    echo
    echo "| from t0 to ... (ms) | p50 | p90 | p99 | max | mean |"
    echo "|---|---:|---:|---:|---:|---:|"
    for name in "db: statement starts executing (trigger's clock_timestamp())|6" \
                "ack: approve POST answered|4" \
                "client: agent's psql exited with its result|5"; do
        col=${name##*|}
        read -r p50 p90 p99 max mean <<<"$(stats "$col")"
        echo "| ${name%|*} | $p50 | $p90 | $p99 | $max | $mean |"
    done
    echo
    read -r _ _ p99 _ _ <<<"$(stats 6)"
    awk -v p="$p99" 'BEGIN { printf "Goal (db p99 under 5 ms): %s\n", (p < 5 ? "met" : "NOT met") }'
    echo
    echo "<details><summary>raw (i, request id, t0, t_ack, t_done, t_hit; Unix seconds)</summary>"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo
    echo "</details>"
}

report | tee "$OUT"
log "report written to $OUT"

#!/usr/bin/env bash
# Load benchmark (`just bench`): builds in release, runs the service on a
# fresh SQLite file (mock payments, no delays), sweeps concurrency with the
# load generator, then does the same on PostgreSQL when BENCH_DATABASE_URL
# (or TEST_DATABASE_URL) is set. In the same run it measures each database's
# own ceiling for order-shaped work (../shared/bench/ceiling: before and after
# the database's sweep, the higher counting) and reports the
# ratio service ÷ ceiling, the service's peak RSS, its start-to-ready time
# and, for every step, the share of CPU time the hypervisor gave elsewhere
# ("steal"), which says whether two runs can be compared, and the CPU time
# an order cost the machine (and the service alone): unlike orders/s, that
# barely moves with the steal, so it compares runs that orders/s cannot.
#
# Before each database's sweep a CPU probe (scripts/cpu_probe.py) says how
# steady the machine was: machines of this kind run slower for stretches of
# up to seconds without reporting steal, and a fixed rate at 80 % of the
# peak is more than such a stretch can carry.
#
# Environment: BENCH_SECONDS (per step, default 10), BENCH_CONCURRENCY
# (default "1 4 16 64"), BENCH_OUT (default bench-results/), BENCH_ANALYZE
# (default 1: analyse a PostgreSQL database's catalog once it is loaded),
# BENCH_PROBE_SECONDS (default 10; 0 skips the probe).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${SHARED:-$ROOT/../shared}
SECS=${BENCH_SECONDS:-10}
LEVELS=${BENCH_CONCURRENCY:-"1 4 16 64"}
OUT=${BENCH_OUT:-$ROOT/bench-results}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bookverse-checkout/target}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
rm -f "$OUT"/probe-*.json

echo "==> building (release)"
cargo build --release -q -p checkout-service -p checkout-load
SERVICE="$CARGO_TARGET_DIR/release/checkout-service"
LOAD="$CARGO_TARGET_DIR/release/checkout-load"

# CPU time the hypervisor gave to others while a step ran ("steal"), in %
# of the machine's time: a shared virtual machine's speed changes with its
# neighbours, and a run with steal is not comparable with one without.
# A snapshot is "all steal busy" in clock ticks; busy is user, nice, system
# and interrupt time (not idle, I/O wait or steal).
cpu_snap() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9, $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
steal_since() {
  local t0 s0 t1 s1
  read -r t0 s0 _ <<<"$1"
  read -r t1 s1 _ < <(cpu_snap)
  awk -v d="$((t1 - t0))" -v s="$((s1 - s0))" 'BEGIN { printf "%.1f", (d > 0 ? 100 * s / d : 0) }'
}
HZ=$(getconf CLK_TCK)
# busy_ms_since SNAP: the machine's busy CPU time since SNAP, in ms.
busy_ms_since() {
  local b0 b1
  read -r _ _ b0 <<<"$1"
  read -r _ _ b1 < <(cpu_snap)
  echo $(( (b1 - b0) * 1000 / HZ ))
}
# cpu_ms PID: the process's CPU time (user + system) so far, in ms.
cpu_ms() { awk -v hz="$HZ" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_service DB_URL → sets PID, URL, READY_MS
start_service() {
  local port; port=$(free_port)
  URL="http://127.0.0.1:$port"
  local t0; t0=$(date +%s%N)
  CHECKOUT__SERVER__ADDR="127.0.0.1:$port" CHECKOUT__DATABASE__URL="$1" CHECKOUT__LOG__LEVEL=warn \
    CHECKOUT__LOG__FORMAT=json CHECKOUT__INVENTORY__SEED_DEMO_CATALOG=false "$SERVICE" serve >"$OUT/service.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 1000); do
    if curl -fs "$URL/health/ready" >/dev/null 2>&1; then break; fi
    sleep 0.005
  done
  curl -fs "$URL/health/ready" >/dev/null || { echo "service did not become ready"; cat "$OUT/service.log"; exit 1; }
  READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

stop_service() {
  PEAK_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
  kill -TERM "$PID" && wait "$PID" || true
  PID=
}

# A step that fails ends the script (set -e); the service it was measuring
# must not outlive it, running its background work beside the next run.
PID=
trap '[ -z "$PID" ] || kill -TERM "$PID" 2>/dev/null || true' EXIT

# measure_step LOAD_ARGS...: a second's warm-up of its own, then the step
# itself, so that the CPU counted is the CPU of exactly the orders counted.
# Sets STEP_LINE (the load generator's JSON), STEP_STEAL (%), STEP_BUSY and
# STEP_SVC (the machine's and the service's CPU time, ms). With STEP_TIMELINE
# set, the step also writes every request's due time, send lag and latency
# there (`--timeline`), which shows when the tail happened.
measure_step() {
  "$LOAD" --url "$URL" --books 1000 "$@" --duration 1 --warmup 0 --json >/dev/null
  local snap svc0
  snap=$(cpu_snap)
  svc0=$(cpu_ms "$PID")
  STEP_LINE=$("$LOAD" --url "$URL" --books 1000 "$@" --duration "$SECS" --warmup 0 --json \
    ${STEP_TIMELINE:+--timeline "$STEP_TIMELINE"})
  STEP_STEAL=$(steal_since "$snap")
  STEP_BUSY=$(busy_ms_since "$snap")
  STEP_SVC=$(( $(cpu_ms "$PID") - svc0 ))
}

# step_row LABEL CONCURRENCY RATE STEAL BUSY_MS SERVICE_MS LOAD_JSON: one
# line of results.jsonl (CONCURRENCY or RATE is `null`; the peak RSS is
# known once the service stops, so the fixed-rate row, the last, has it).
step_row() {
  python3 - "$@" "$READY_MS" "${PEAK_RSS_KB:-}" <<'PY'
import json, sys
label, c, rate, steal, busy, svc, line, ready, rss = sys.argv[1:10]
r = json.loads(line)
orders = r["requests"]
r.update(db=label, concurrency=json.loads(c), ready_ms=int(ready), steal_pct=float(steal),
         cpu_ms_per_order=round(int(busy) / orders, 3) if orders else None,
         service_cpu_ms_per_order=round(int(svc) / orders, 3) if orders else None)
if json.loads(rate) is not None:
    r.update(fixed_rate=float(rate), peak_rss_mb=round(int(rss) / 1024, 1))
print(json.dumps(r))
PY
}

# probe LABEL: the machine's steadiness just before LABEL's sweep.
probe() {
  local secs=${BENCH_PROBE_SECONDS:-10}
  [ "$secs" = 0 ] && return 0
  python3 "$ROOT/scripts/cpu_probe.py" "$secs" >"$OUT/probe-$1.json"
  echo "    CPU probe: $(cat "$OUT/probe-$1.json")"
}

# sweep DB_LABEL DB_URL (the ceiling joins its rows afterwards, settle_ceiling)
sweep() {
  local label=$1 url=$2
  probe "$label"
  echo "==> $label: service on $url"
  start_service "$url"
  echo "    ready in ${READY_MS} ms"
  "$LOAD" --url "$URL" --books 1000 --seed-stock --duration 1 --warmup 0 --concurrency 4 --json >/dev/null
  # PostgreSQL plans from statistics, which a fresh database has none of
  # until autovacuum's first pass (up to a minute in, when the sweep is half
  # done): analyse the catalog just loaded, as an operator does after a bulk
  # load. Only the catalog: the order tables hold a second's orders, and
  # statistics saying so made their foreign-key checks and prepared
  # statements scan them whole for the rest of the sweep, while they grew
  # thirtyfold. BENCH_ANALYZE=0 measures the first minute instead.
  case "$url" in
    postgres*) [ "${BENCH_ANALYZE:-1}" = 0 ] || psql -q "$url" -c "ANALYZE stock" ;;
  esac
  for c in $LEVELS; do
    measure_step --concurrency "$c"
    echo "    c=$c (steal $STEP_STEAL %, CPU $STEP_BUSY ms, service $STEP_SVC ms) $STEP_LINE"
    step_row "$label" "$c" null "$STEP_STEAL" "$STEP_BUSY" "$STEP_SVC" "$STEP_LINE" >>"$RESULTS"
  done
  # p99 at 80 % of the peak rate, fixed-rate mode.
  local peak
  peak=$(python3 -c "import json,sys; print(max(json.loads(l)['orders_per_s'] for l in open('$RESULTS') if json.loads(l)['db']=='$label' and json.loads(l)['mode']=='closed-loop'))")
  local rate; rate=$(python3 -c "print(round($peak*0.8))")
  STEP_TIMELINE="$OUT/$label-fixed-rate-timeline.csv" measure_step --concurrency 64 --rate "$rate"
  echo "    fixed rate $rate/s (steal $STEP_STEAL %, CPU $STEP_BUSY ms, service $STEP_SVC ms): $STEP_LINE"
  stop_service
  step_row "$label" null "$rate" "$STEP_STEAL" "$STEP_BUSY" "$STEP_SVC" "$STEP_LINE" >>"$RESULTS"
  echo "    peak RSS $((PEAK_RSS_KB / 1024)) MB"
}

# The ceilings run before and after each sweep, and the ratios use the
# higher of the two: a ceiling measured while the hypervisor took CPU for
# others would flatter the service.
sqlite_ceiling() {
  local snap out value orders
  snap=$(cpu_snap)
  out=$(SECS=$SECS "$CARGO_TARGET_DIR/release/sqlite-ceiling")
  value=$(sed -n 's/.*orders_per_s=\([0-9]*\).*/\1/p' <<<"$out")
  orders=$(sed -n 's/.* orders=\([0-9]*\).*/\1/p' <<<"$out")
  per_order "$value" "$orders" "$(busy_ms_since "$snap")" "SQLite" "$(steal_since "$snap")"
}

# per_order ORDERS_PER_S ORDERS BUSY_MS NAME STEAL: reports a ceiling run and
# prints "orders/s CPU-ms-per-order".
per_order() {
  local cpu
  cpu=$(awk -v b="$3" -v n="$2" 'BEGIN { printf "%.3f", (n > 0 ? b / n : 0) }')
  echo "    $4 ceiling $1 orders/s, CPU $cpu ms an order (steal $5 %)" >&2
  echo "$1 $cpu"
}

pg_ceiling() {
  local PGOPTIONS="-c client_min_messages=warning"
  export PGOPTIONS
  local snap out value orders
  psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS ceiling" -c "CREATE DATABASE ceiling"
  psql -q "$base/ceiling" -f "$SHARED/bench/ceiling/schema.sql" >/dev/null 2>&1
  snap=$(cpu_snap)
  out=$(pgbench -n -M extended -c 16 -j 2 -T "$SECS" -f "$SHARED/bench/ceiling/order.pgbench" "$base/ceiling" 2>/dev/null)
  value=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
  orders=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  per_order "$value" "$orders" "$(busy_ms_since "$snap")" "PostgreSQL" "$(steal_since "$snap")"
  psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS ceiling"
}

# settle_ceiling LABEL BEFORE AFTER (each "orders/s CPU-ms-per-order"): the
# label's rows take the higher rate and their ratio to it, and the ratio of
# that run's CPU per order to theirs.
settle_ceiling() {
  python3 - "$RESULTS" "$1" "$2" "$3" <<'PY'
import json, sys
path, label = sys.argv[1], sys.argv[2]
runs = [tuple(float(x) for x in arg.split()) for arg in sys.argv[3:5]]
rate, cpu = max(runs)
rows = [json.loads(l) for l in open(path) if l.strip()]
for r in rows:
    if r["db"] == label:
        r.update(ceiling=rate, ceiling_runs=[x for x, _ in runs], ceiling_cpu_ms_per_order=cpu)
        r["ratio"] = r["orders_per_s"] / rate if rate else None
        mine = r.get("cpu_ms_per_order")
        r["cpu_ratio"] = cpu / mine if mine else None
open(path, "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
}

echo "==> SQLite"
(cd "$SHARED/bench/ceiling/sqlite-ceiling" && cargo build --release -q 2>/dev/null)
before=$(sqlite_ceiling)
TMP=$(mktemp -d)
sweep sqlite "sqlite://$TMP/bench.db"
rm -rf "$TMP"
after=$(sqlite_ceiling)
settle_ceiling sqlite "$before" "$after"

PG_URL=${BENCH_DATABASE_URL:-${TEST_DATABASE_URL:-}}
if [ -n "$PG_URL" ]; then
  base=${PG_URL%/*}
  db="bench_$(date +%s)"
  echo "==> PostgreSQL"
  before=$(pg_ceiling)
  psql -q "$base/postgres" -c "CREATE DATABASE $db"
  sweep postgres "$base/$db"
  psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db" || true
  after=$(pg_ceiling)
  settle_ceiling postgres "$before" "$after"
else
  echo "==> PostgreSQL skipped: set BENCH_DATABASE_URL or TEST_DATABASE_URL"
fi

python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$OUT"

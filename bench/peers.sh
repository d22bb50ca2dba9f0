#!/usr/bin/env bash
# Our kernel against the peer (PostGraphile v5 on PostgreSQL 15) in one run:
# the same data shape, the same five GraphQL workloads, the same load.
#
#   bash bench/peers.sh                          # from anywhere; N=100000
#   DURATION=3s WARMUP=1s bash bench/peers.sh    # a quick correctness pass
#
# Steps:
#   1. cargo build --release --bin crm                       (SKIP_BUILD=1 skips)
#   2. bash $PEERS_DIR/setup.sh: PostgreSQL + PostGraphile, wrk (idempotent)
#   3. seed both with N contacts (+N/10 companies, N/2 deals, 2N activities):
#      the peer with its seed.sh, then a PostGraphile restart; ours in a fresh
#      data dir: `crm serve` once (creates tenant `default` and its admin-key),
#      the bundled plugins disabled, `crm seed --tenant default --contacts N`,
#      the plugins enabled again (from the end of the change log), `crm serve`
#   4. the peer's bench.sh, unchanged, against each server: first the peer with
#      queries/postgraphile, then ours with bench/queries/crm; ours gets
#      ID_FILE / COMPANY_ID_FILE (the ULIDs `crm seed` wrote), STAGES in our
#      enum spelling and HEADERS with the admin key
#   5. a markdown comparison of both summaries: req/s, p50, p99, our/peer
#      ratios, errors, peak memory and server CPU per request
#      -> $OUT_ROOT/comparison.md (also printed)
#
# Environment (defaults):
#   PEERS_DIR=../shared/peers   (relative to the repository root; holds setup.sh, seed.sh, bench.sh)
#   N=100000                    contacts for both sides
#   CONCURRENCY=32 DURATION=10s WARMUP=3s THREADS=2 QUIET_WAIT=0 RETRY_NOISY=0   passed to bench.sh
#   ONLY='a_ b_'                run only workloads whose file names start with these
#   CRM_LISTEN=127.0.0.1:18080  where our server listens
#   RUN_DIR=/tmp/crm-bench      our data dir ($RUN_DIR/data, wiped each run), server log
#   OUT_ROOT=$RUN_DIR/peers-<time>   bench.sh outputs (peer/, crm/) and comparison.md
#   SKIP_BUILD=1                use the existing target/release/crm
#   SKIP_PEER=1 / SKIP_CRM=1    measure one side only (the table shows what exists)
#   KEEP_SERVER=1               leave our server running afterwards
#   KEEP_PEER=1                 leave PostGraphile and PostgreSQL running afterwards (by default a run
#                               that set the peer up stops both, the cluster ${PG_VER:-15}/main only:
#                               idle, they still slowed later benchmarks on this 2-core machine,
#                               see BENCHMARKS.md)
#   CRM_RATE_LIMIT_KEY=0 CRM_RATE_LIMIT_TENANT=0   our per-key / per-tenant rate limits (0 = off, as the peer)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="$(cd "$ROOT" && cd "${PEERS_DIR:-../shared/peers}" && pwd)"
N="${N:-100000}"
CRM_LISTEN="${CRM_LISTEN:-127.0.0.1:18080}"
RUN_DIR="${RUN_DIR:-/tmp/crm-bench}"
DATA="$RUN_DIR/data"
OUT_ROOT="${OUT_ROOT:-$RUN_DIR/peers-$(date -u +%Y%m%dT%H%M%SZ)}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/crm"
CRM_URL="http://$CRM_LISTEN/graphql"
PEER_URL="http://127.0.0.1:${PEER_PORT:-5678}/graphql"
PEER_MEM='node=postgraphile/server\.mjs;pg=^(postgres: |/usr/lib/postgresql/[0-9]+/bin/postgres )'
# only our server: other sessions run `crm serve` for tests on this machine
re_escape() { sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"; }
CRM_MEM="crm=(^|/)crm --data-dir $(re_escape "$DATA") serve --listen $(re_escape "$CRM_LISTEN")( |\$)"
export CONCURRENCY="${CONCURRENCY:-32}" DURATION="${DURATION:-10s}" WARMUP="${WARMUP:-3s}" THREADS="${THREADS:-2}"
export QUIET_WAIT="${QUIET_WAIT:-0}" RETRY_NOISY="${RETRY_NOISY:-0}"
mkdir -p "$RUN_DIR" "$OUT_ROOT"
CRM_PID=""

log() { printf '[peers] %s\n' "$*"; }

start_crm() {
  log "starting crm serve on $CRM_LISTEN (log $RUN_DIR/crm.log)"
  # The peer has no rate limit; ours limits operations per API key and per
  # tenant by default (a build without those flags ignores the variables).
  CRM_RATE_LIMIT_KEY="${CRM_RATE_LIMIT_KEY:-0}" CRM_RATE_LIMIT_TENANT="${CRM_RATE_LIMIT_TENANT:-0}" \
    "$BIN" --data-dir "$DATA" serve --listen "$CRM_LISTEN" >>"$RUN_DIR/crm.log" 2>&1 &
  CRM_PID=$!
  echo "$CRM_PID" >"$RUN_DIR/crm.pid"
  for _ in $(seq 1 300); do
    if [[ -s "$DATA/admin-key" ]] && curl -fsS -m 2 "$CRM_URL" -H "Authorization: Bearer $(cat "$DATA/admin-key")" \
         -H 'content-type: application/json' -d '{"query":"{__typename}"}' 2>/dev/null | grep -q Query; then
      log "crm ready: $CRM_URL (pid $CRM_PID)"; return 0
    fi
    kill -0 "$CRM_PID" 2>/dev/null || { log "crm exited; last log lines:"; tail -20 "$RUN_DIR/crm.log" >&2; exit 1; }
    sleep 0.2
  done
  log "crm did not answer in 60 s"; tail -20 "$RUN_DIR/crm.log" >&2; exit 1
}

stop_crm() {
  [[ -n "$CRM_PID" ]] || return 0
  if kill -0 "$CRM_PID" 2>/dev/null; then
    kill -TERM "$CRM_PID"
    for _ in $(seq 1 150); do kill -0 "$CRM_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$CRM_PID" 2>/dev/null && { log "crm pid $CRM_PID did not stop on SIGTERM; killing it"; kill -KILL "$CRM_PID"; }
  fi
  wait "$CRM_PID" 2>/dev/null || true
  CRM_PID=""; rm -f "$RUN_DIR/crm.pid"
}
# Set once this run has set the peer up (PostGraphile and the cluster
# ${PG_VER:-15}/main that setup.sh starts).
PEER_STARTED=0
stop_peer() {
  [[ "$PEER_STARTED" == 1 && "${KEEP_PEER:-0}" != 1 ]] || return 0
  bash "$PEERS_DIR/setup.sh" --stop >/dev/null 2>&1 || true
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster "${PG_VER:-15}" main stop </dev/null >/dev/null 2>&1 || true
  fi
}
on_exit() {
  set +e
  [[ "${KEEP_SERVER:-0}" == 1 ]] || stop_crm
  stop_peer
}
trap on_exit EXIT

# ------------------------------------------------------------------ 1. build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin crm"
  (cd "$ROOT" && cargo build --release --bin crm)
fi
[[ "${SKIP_CRM:-0}" == 1 || -x "$BIN" ]] || { echo "no $BIN: build it (cargo build --release --bin crm)" >&2; exit 1; }
# a server we started in an earlier run holds the data dir
if [[ -f "$RUN_DIR/crm.pid" ]] && kill -0 "$(cat "$RUN_DIR/crm.pid")" 2>/dev/null; then
  CRM_PID="$(cat "$RUN_DIR/crm.pid")"; log "stopping our earlier server (pid $CRM_PID)"; stop_crm
fi

# ------------------------------------------------------------------ 2. peer setup
if [[ "${SKIP_PEER:-0}" != 1 ]]; then
  log "bash $PEERS_DIR/setup.sh"
  PEER_STARTED=1
  bash "$PEERS_DIR/setup.sh"
fi
command -v wrk >/dev/null || { echo "wrk not found (bash $PEERS_DIR/setup.sh installs it)" >&2; exit 1; }

# ------------------------------------------------------------------ 3. seed
if [[ "${SKIP_PEER:-0}" != 1 ]]; then
  log "seeding the peer: $N contacts"
  bash "$PEERS_DIR/seed.sh" "$N" | tee "$OUT_ROOT/seed-peer.txt"
  bash "$PEERS_DIR/setup.sh" --restart | tail -1
fi
if [[ "${SKIP_CRM:-0}" != 1 ]]; then
  log "seeding ours: $N contacts into a fresh $DATA"
  rm -rf "$DATA"; mkdir -p "$DATA"
  start_crm            # first start: tenant `default` and its admin-key
  stop_crm
  # The bundled plugins are enabled after the seed, as after an import done
  # before they were: they start at the end of the change log, so they do
  # not score or enrol the seeded records in the background during the
  # measurements (the peer has no such work), while every write measured
  # runs through their hooks.
  plugins="$("$BIN" --data-dir "$DATA" plugin list --tenant default 2>/dev/null | awk 'NR > 1 && $1 != "" { print $1 }' | sort -u)"
  for plugin in $plugins; do "$BIN" --data-dir "$DATA" plugin disable "$plugin" --tenant default >/dev/null; done
  "$BIN" --data-dir "$DATA" seed --tenant default --contacts "$N" | tee "$OUT_ROOT/seed-crm.txt"
  for plugin in $plugins; do "$BIN" --data-dir "$DATA" plugin enable "$plugin" --tenant default >/dev/null; done
  log "plugins enabled for default after the seed: $(echo $plugins)"
  start_crm
fi
sleep 3

# ------------------------------------------------------------------ 4. bench
status=0
if [[ "${SKIP_PEER:-0}" != 1 ]]; then
  log "bench: peer ($PEER_URL)"
  SEED_N="$N" MEM_MATCH="$PEER_MEM" OUT_DIR="$OUT_ROOT/peer" \
    bash "$PEERS_DIR/bench.sh" "$PEER_URL" "$PEERS_DIR/queries/postgraphile" || { status=1; log "peer bench.sh exit status 1"; }
fi
if [[ "${SKIP_CRM:-0}" != 1 ]]; then
  log "bench: crm ($CRM_URL)"
  SEED_N="$N" ID_FILE="$DATA/seed-contact-ids.txt" COMPANY_ID_FILE="$DATA/seed-company-ids.txt" \
    STAGES=SUBSCRIBER,LEAD,MARKETINGQUALIFIEDLEAD,SALESQUALIFIEDLEAD,OPPORTUNITY,CUSTOMER,EVANGELIST \
    HEADERS="Authorization: Bearer $(cat "$DATA/admin-key")" MEM_MATCH="$CRM_MEM" OUT_DIR="$OUT_ROOT/crm" \
    bash "$PEERS_DIR/bench.sh" "$CRM_URL" "$ROOT/bench/queries/crm" || { status=1; log "crm bench.sh exit status 1"; }
fi

# ------------------------------------------------------------------ 5. comparison
# summary.md rows: | workload | req/s | p50 | p90 | p99 | max | requests | errors s/h/g | peak RSS | peak PSS | CPU % | CPU ms/req | wrk % | machine % (other) |
# Rows are matched by the workload letter (the file name up to the first '_').
rows() { # $1 = summary.md -> "letter<TAB>name<TAB>rps<TAB>p50<TAB>p99<TAB>errors<TAB>rss<TAB>pss<TAB>cpu_ms_req<TAB>other"
  [[ -f "$1" ]] || return 0
  awk -F'|' 'NF >= 15 && $2 ~ /^ [a-z]_/ {
      for (i = 2; i <= 15; i++) gsub(/^ +| +$/, "", $i)
      split($2, w, "_"); other = $15; sub(/^.*\(/, "", other); sub(/\).*$/, "", other)
      if ($3 == "preflight failed") { print w[1] "\t" $2 "\tpreflight failed\t-\t-\t-\t-\t-\t-\t-"; next }
      print w[1] "\t" $2 "\t" $3 "\t" $4 "\t" $6 "\t" $9 "\t" $10 "\t" $11 "\t" $13 "\t" other }' "$1"
}
idle() { [[ -f "$1" ]] && grep -m1 '^- before the run:' "$1" | sed 's/^- before the run: *//' || echo "-"; }
{
  echo "# crm vs PostGraphile: $N contacts, $CONCURRENCY connections, $DURATION per workload ($WARMUP warm-up), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Ratios are ours / peer: above 1 means we serve more requests/s; below 1 means our latency is lower."
  echo "Memory: peer = node + postgres peak PSS (shared pages counted once); ours = peak RSS / PSS of the crm process."
  echo
  echo "| workload | peer req/s | crm req/s | req/s ratio | peer p50 ms | crm p50 ms | p50 ratio | peer p99 ms | crm p99 ms | p99 ratio | errors sock/http/gql peer · crm | peer peak PSS MiB | crm peak RSS / PSS MiB | CPU ms/req peer · crm | other CPU % peer · crm |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
  join -t $'\t' -a1 -a2 -e '-' -o '0,1.2,2.2,1.3,2.3,1.4,2.4,1.5,2.5,1.6,2.6,1.7,2.7,1.8,2.8,1.9,2.9,1.10,2.10' \
      <(rows "$OUT_ROOT/peer/summary.md" | sort) <(rows "$OUT_ROOT/crm/summary.md" | sort) |
  awk -F'\t' 'function ratio(a, b) { return (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) ? sprintf("%.2f", b / a) : "-" }
    { name = ($2 != "-") ? $2 : $3; sub(/^[a-z]_/, "", name); gsub(/_/, " ", name)
      printf "| %s %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s · %s | %s | %s / %s | %s · %s | %s · %s |\n",
        $1, name, $4, $5, ratio($4, $5), $6, $7, ratio($6, $7), $8, $9, ratio($8, $9),
        $10, $11, $14, $13, $15, $16, $17, $18, $19 }'
  echo
  echo "- peer before the run: $(idle "$OUT_ROOT/peer/summary.md")"
  echo "- crm before the run: $(idle "$OUT_ROOT/crm/summary.md")"
  [[ -f "$OUT_ROOT/seed-peer.txt" ]] && echo "- peer seed: $(grep -E 'took' "$OUT_ROOT/seed-peer.txt" | sed 's/^\[seed\] //')"
  [[ -f "$OUT_ROOT/seed-crm.txt" ]] && echo "- crm seed: $(grep -E 'done:' "$OUT_ROOT/seed-crm.txt" | sed 's/^\[seed\] //')"
  echo "- full bench.sh summaries: $OUT_ROOT/peer/summary.md, $OUT_ROOT/crm/summary.md"
} >"$OUT_ROOT/comparison.md"
echo
cat "$OUT_ROOT/comparison.md"
log "written: $OUT_ROOT/comparison.md"
exit "$status"

#!/usr/bin/env bash
# Re-scoring every contact with the lead-scoring plugin's backfill.
#
#   bash bench/backfill.sh                 # N=100000, batches of 500
#   N=5000 bash bench/backfill.sh          # a quick correctness pass
#
# Steps:
#   1. cargo build --release --bin crm                        (SKIP_BUILD=1 skips)
#   2. a fresh data dir: `crm serve` once (tenant `default`, bundled plugins
#      installed), then `crm tenant create bench`
#   3. `crm seed --tenant bench --contacts N` (+N/10 companies, N/2 deals, 2N
#      activities), with no plugin enabled for `bench`, so nothing is scored
#   4. `crm plugin enable lead-scoring --tenant bench` (default configuration)
#   5. `crm serve`, then the `leadScoringBackfill` mutation; polls
#      `leadScoringBackfillStatus` every POLL seconds until it is done
#   6. prints the wall time from the mutation to the status saying done, the
#      plugin's own started/finished times, contacts per second, and how many
#      score history records exist at that point (they are written after
#      the commit, behind the backfill)
#
# Environment (defaults):
#   N=100000 BATCH=500 POLL=2
#   CRM_LISTEN=127.0.0.1:18091   where the server listens
#   RUN_DIR=/tmp/crm-backfill-bench   data dir ($RUN_DIR/data, wiped each run) and server log
#   SKIP_BUILD=1                 use the existing target/release/crm
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-100000}"
BATCH="${BATCH:-500}"
POLL="${POLL:-2}"
CRM_LISTEN="${CRM_LISTEN:-127.0.0.1:18091}"
RUN_DIR="${RUN_DIR:-/tmp/crm-backfill-bench}"
DATA="$RUN_DIR/data"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/crm"
URL="http://$CRM_LISTEN/graphql"

log() { printf '[backfill] %s\n' "$*"; }

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap stop_crm EXIT

build_crm

fresh_data_dir
KEY="$(create_tenant bench)"

log "seeding $N contacts into tenant bench"
"$BIN" --data-dir "$DATA" seed --tenant bench --contacts "$N"
"$BIN" --data-dir "$DATA" plugin enable lead-scoring --tenant bench

start_crm
log "server up (pid $CRM_PID); starting the backfill in batches of $BATCH"
START="$(now_ms)"
STARTED="$(gql "$KEY" "mutation { leadScoringBackfill(input: {batchSize: $BATCH}) { total } }")"
TOTAL="$(field "$STARTED" data leadScoringBackfill total)"
STATUS_QUERY='mutation { leadScoringBackfillStatus(input: {}) { running done total batches startedAt finishedAt } }'
while true; do
  sleep "$POLL"
  STATUS="$(gql "$KEY" "$STATUS_QUERY")"
  DONE="$(field "$STATUS" data leadScoringBackfillStatus done)"
  RUNNING="$(field "$STATUS" data leadScoringBackfillStatus running)"
  log "progress: $DONE of $TOTAL"
  [[ "$RUNNING" == "False" ]] && break
done
END="$(now_ms)"
ELAPSED_MS=$((END - START))
HISTORY="$(field "$(gql "$KEY" '{ scoreChanges { totalCount } }')" data scoreChanges totalCount)"
UNSCORED="$(field "$(gql "$KEY" '{ contacts(filter: {scoredAt: {isNull: true}}) { totalCount } }')" data contacts totalCount)"
log "status: $STATUS"
log "re-scored $DONE of $TOTAL contacts in $(awk "BEGIN {printf \"%.1f\", $ELAPSED_MS/1000}") s (poll every $POLL s)," \
  "$(awk "BEGIN {printf \"%.0f\", $DONE*1000/$ELAPSED_MS}") contacts/s"
log "contacts without a score afterwards: $UNSCORED; score history records so far: $HISTORY"

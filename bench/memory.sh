#!/usr/bin/env bash
# Resident memory of the server with the four bundled plugins enabled on a
# tenant of N contacts, idle and after read and write load.
#
#   bash bench/memory.sh                   # N=1000000
#   N=10000 bash bench/memory.sh           # a quick correctness pass
#
# Steps:
#   1. cargo build --release --bin crm                        (SKIP_BUILD=1 skips)
#   2. a fresh data dir: `crm serve` once, `crm tenant create bench`,
#      `crm seed --tenant bench --contacts N` (+N/10 companies, N/2 deals,
#      2N activities), then `crm plugin enable` of custom-fields,
#      lead-scoring, helpdesk and marketing for `bench` (enabled after the
#      seed, so they start at the end of its change log)
#   3. `crm serve`; resident memory (VmRSS) after start, then after each
#      wrk workload against `bench` (LOAD seconds each, 2 threads, 32
#      connections): a contact by id, a page of 50 contacts of a stage with
#      their company, contact creates; and the peak (VmHWM)
#
# Environment (defaults):
#   N=1000000 LOAD=10s
#   CRM_LISTEN=127.0.0.1:18094
#   RUN_DIR=/tmp/crm-memory-bench   data dir (wiped each run) and logs
#   SKIP_BUILD=1                 use the existing target/release/crm
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-1000000}"
LOAD="${LOAD:-10s}"
CRM_LISTEN="${CRM_LISTEN:-127.0.0.1:18094}"
RUN_DIR="${RUN_DIR:-/tmp/crm-memory-bench}"
DATA="$RUN_DIR/data"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/crm"
URL="http://$CRM_LISTEN/graphql"

log() { printf '[memory] %s\n' "$*"; }

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap stop_crm EXIT

rss() { awk -v what="$1" '$1 == what ":" { printf "%.0f MiB", $2 / 1024 }' "/proc/$CRM_PID/status"; }

# workload NAME LUA_BODY: LOAD seconds of wrk with that request body.
workload() {
  cat >"$RUN_DIR/$1.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
$2
EOF
  wrk -t2 -c32 -d"$LOAD" -s "$RUN_DIR/$1.lua" "$URL" | grep -E 'Requests/sec|Non-2xx' | sed "s/^/[memory] $1: /"
  log "after $1: VmRSS $(rss VmRSS)"
}

build_crm

fresh_data_dir
KEY="$(create_tenant bench)"
log "seeding $N contacts into tenant bench"
"$BIN" --data-dir "$DATA" seed --tenant bench --contacts "$N" | grep -E 'done:'
for plugin in custom-fields lead-scoring helpdesk marketing; do
  "$BIN" --data-dir "$DATA" plugin enable "$plugin" --tenant bench >/dev/null
done
log "database files: $(du -sh "$DATA/tenants" | cut -f1)"

start_crm --rate-limit-key 0 --rate-limit-tenant 0
log "server up (pid $CRM_PID): VmRSS $(rss VmRSS)"
ID="$(head -1 "$DATA/seed-contact-ids.txt")"
workload by-id "wrk.body = '{\"query\":\"{ contact(id: \\\\\"$ID\\\\\") { id firstName lastName email title lifecycleStage leadScore companyId } }\"}'"
workload page "wrk.body = '{\"query\":\"{ contacts(first: 50, filter: {lifecycleStage: {eq: LEAD}}, orderBy: [{field: CREATED_AT, direction: ASC}]) { nodes { id firstName email company { name } } } }\"}'"
workload create "wrk.body = '{\"query\":\"mutation { createContact(input: {firstName: \\\\\"Mem\\\\\", lastName: \\\\\"Load\\\\\"}) { id } }\"}'"
log "peak: VmHWM $(rss VmHWM); tenant plugins: $(gql "$KEY" '{ tenantPlugins { id status pendingEvents } }')"

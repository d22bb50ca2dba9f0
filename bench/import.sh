#!/usr/bin/env bash
# `crm import contacts` of N new contacts from CSV: into a tenant without
# plugins, one with a single before-write plugin, and one with the four
# bundled plugins (custom-fields' and lead-scoring's hooks on every row).
#
#   bash bench/import.sh                   # N=1000000
#   N=20000 bash bench/import.sh           # a quick correctness pass
#
# Steps:
#   1. cargo build --release --bin crm                        (SKIP_BUILD=1 skips)
#   2. a fresh data dir: `crm serve` once (tenant `default` with the bundled
#      plugins), then `crm tenant create plain` (no plugin) and `crm tenant
#      create one` with only custom-fields enabled (one before-write plugin:
#      a hook on every object; with no custom field defined it accepts)
#   3. a CSV of N contacts (first_name, last_name, email, title, country,
#      lifecycle_stage) written by awk
#   4. `crm import contacts` into `plain`, `one` and `default` (custom-fields,
#      lead-scoring, helpdesk, marketing enabled; the before-write hooks of
#      the first two run on every row, lead-scoring scoring each contact),
#      timed
#
# Environment (defaults):
#   N=1000000
#   RUN_DIR=/tmp/crm-import-bench   data dir and CSV (wiped each run)
#   SKIP_BUILD=1                 use the existing target/release/crm
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-1000000}"
RUN_DIR="${RUN_DIR:-/tmp/crm-import-bench}"
DATA="$RUN_DIR/data"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/crm"
CRM_LISTEN="${CRM_LISTEN:-127.0.0.1:18095}"
URL="http://$CRM_LISTEN/graphql"

log() { printf '[import] %s\n' "$*"; }

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap stop_crm EXIT

build_crm

fresh_data_dir
"$BIN" --data-dir "$DATA" tenant create plain >/dev/null
"$BIN" --data-dir "$DATA" tenant create one >/dev/null
"$BIN" --data-dir "$DATA" plugin enable custom-fields --tenant one >/dev/null

awk -v n="$N" 'BEGIN {
  split("lead subscriber marketingqualifiedlead salesqualifiedlead customer", stages, " ")
  split("DE FR US GB NL", countries, " ")
  print "first_name,last_name,email,title,country,lifecycle_stage"
  for (i = 1; i <= n; i++) printf "First%d,Last%d,person%d@import.example,VP Sales %d,%s,%s\n", i, i, i, i % 7, countries[1 + i % 5], stages[1 + i % 5]
}' >"$RUN_DIR/contacts.csv"
log "CSV of $N contacts: $(du -h "$RUN_DIR/contacts.csv" | cut -f1)"

for tenant in plain one default; do
  start="$(now_ms)"
  "$BIN" --data-dir "$DATA" import contacts "$RUN_DIR/contacts.csv" --tenant "$tenant" 2>&1 | tail -2 | sed "s/^/[import] $tenant: /"
  elapsed=$(( $(now_ms) - start ))
  log "$tenant: $N contacts in $(awk "BEGIN {printf \"%.1f\", $elapsed/1000}") s ($(awk "BEGIN {printf \"%.0f\", $N*1000/$elapsed}") contacts/s)"
done

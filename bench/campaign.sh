#!/usr/bin/env bash
# A marketing campaign to N consenting contacts through the SMTP path.
#
#   bash bench/campaign.sh                 # N=10000
#   N=500 bash bench/campaign.sh           # a quick correctness pass
#
# Steps:
#   1. cargo build --release --bin crm                        (SKIP_BUILD=1 skips)
#   2. a fresh data dir: `crm serve` once (tenant `default`, bundled plugins
#      installed), then `crm tenant create bench`
#   3. `crm seed --tenant bench --contacts N` (+N/10 companies, N/2 deals, 2N
#      activities), then `crm import contacts` of a CSV giving every contact
#      email consent, then `crm plugin enable marketing --tenant bench`
#      (default configuration: batches of 250, no throttle)
#   4. `crm mail-sink` (the SMTP server, on loopback, keeping every message
#      as a file) and `crm serve --smtp-url smtp://<sink>`
#   5. a segment of every contact, a template with a link and a merge field,
#      a campaign; then `marketingSend`, and polls every POLL seconds
#   6. prints the time from `marketingSend` until the campaign is SENT (every
#      message handed to the outbound channel) and until every message is
#      DELIVERED (accepted by the SMTP server and its status written back),
#      messages per second, and the messages the SMTP server holds
#
# Environment (defaults):
#   N=10000 POLL=1 CONNECTIONS=8
#   CRM_LISTEN=127.0.0.1:18092   SINK_LISTEN=127.0.0.1:18093
#   RUN_DIR=/tmp/crm-campaign-bench   data dir, mail dir and logs (wiped each run)
#   SKIP_BUILD=1                 use the existing target/release/crm
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-10000}"
POLL="${POLL:-1}"
CONNECTIONS="${CONNECTIONS:-8}"
CRM_LISTEN="${CRM_LISTEN:-127.0.0.1:18092}"
SINK_LISTEN="${SINK_LISTEN:-127.0.0.1:18093}"
RUN_DIR="${RUN_DIR:-/tmp/crm-campaign-bench}"
DATA="$RUN_DIR/data"
MAIL="$RUN_DIR/mail"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/crm"
URL="http://$CRM_LISTEN/graphql"
SINK_PID=""

log() { printf '[campaign] %s\n' "$*"; }

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
stop_all() {
  stop_crm
  [[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null || true
}
trap stop_all EXIT

build_crm

rm -rf "$MAIL"
fresh_data_dir
mkdir -p "$MAIL"
KEY="$(create_tenant bench)"

log "seeding $N contacts into tenant bench and giving them email consent"
"$BIN" --data-dir "$DATA" seed --tenant bench --contacts "$N"
# The seed's addresses: contact g works at company 1 + (g-1) % (N/10).
COMPANIES=$(( N / 10 > 0 ? N / 10 : 1 ))
awk -v n="$N" -v c="$COMPANIES" 'BEGIN { print "email,email_opt_in"; for (g = 1; g <= n; g++) printf "contact%d@company%d.example,true\n", g, 1 + (g - 1) % c }' >"$RUN_DIR/consent.csv"
"$BIN" --data-dir "$DATA" import contacts --tenant bench "$RUN_DIR/consent.csv" >>"$RUN_DIR/crm.log"
"$BIN" --data-dir "$DATA" plugin enable marketing --tenant bench

"$BIN" mail-sink --listen "$SINK_LISTEN" --dir "$MAIL" >"$RUN_DIR/sink.log" 2>&1 &
SINK_PID=$!
start_crm --smtp-url "smtp://$SINK_LISTEN" --smtp-connections "$CONNECTIONS"
log "server up (pid $CRM_PID), SMTP server $SINK_LISTEN (pid $SINK_PID)"

SEGMENT="$(field "$(gql "$KEY" 'mutation { createSegment(input: {name: "Everyone", filter: "{}"}) { id } }')" data createSegment id)"
TEMPLATE_VARS='{"input": {"name": "Launch", "subject": "Our autumn launch, {{contact.first_name|friend}}", "html": "<p>Hello {{contact.first_name|there}},</p><p>See <a href=\"https://example.com/launch\">what is new</a>.</p>"}}'
TEMPLATE="$(field "$(gql "$KEY" 'mutation($input: CreateEmailTemplateInput!) { createEmailTemplate(input: $input) { id } }' "$TEMPLATE_VARS")" data createEmailTemplate id)"
CAMPAIGN="$(field "$(gql "$KEY" "mutation { createCampaign(input: {name: \"Autumn launch\", segmentId: \"$SEGMENT\", templateId: \"$TEMPLATE\"}) { id } }")" data createCampaign id)"

START="$(now_ms)"
SENT="$(gql "$KEY" "mutation { marketingSend(input: {campaignId: \"$CAMPAIGN\"}) { status segmentCount eligibleCount } }")"
ELIGIBLE="$(field "$SENT" data marketingSend eligibleCount)"
log "sending campaign $CAMPAIGN to $ELIGIBLE eligible contacts"
HANDED_MS=""
while true; do
  sleep "$POLL"
  STATE="$(gql "$KEY" "{ campaign(id: \"$CAMPAIGN\") { status sentCount deliveredCount bouncedCount failedCount } queued: outboundMessages(filter: {status: {eq: QUEUED}}) { totalCount } delivered: outboundMessages(filter: {status: {eq: DELIVERED}}) { totalCount } }")"
  STATUS="$(field "$STATE" data campaign status)"
  QUEUED="$(field "$STATE" data queued totalCount)"
  DELIVERED="$(field "$STATE" data delivered totalCount)"
  log "campaign $STATUS, handed over $(field "$STATE" data campaign sentCount), queued $QUEUED, delivered $DELIVERED"
  if [[ "$STATUS" == "SENT" && -z "$HANDED_MS" ]]; then HANDED_MS=$(( $(now_ms) - START )); fi
  [[ "$STATUS" == "SENT" && "$QUEUED" == 0 ]] && break
done
DONE_MS=$(( $(now_ms) - START ))
FILES="$(find "$MAIL" -name '*.eml' | wc -l)"
log "final: $STATE"
log "all $ELIGIBLE messages handed to the outbound channel within $(awk "BEGIN {printf \"%.1f\", $HANDED_MS/1000}") s (poll every $POLL s)"
log "all delivered through SMTP within $(awk "BEGIN {printf \"%.1f\", $DONE_MS/1000}") s: $(awk "BEGIN {printf \"%.0f\", $DELIVERED*1000/$DONE_MS}") messages/s; the SMTP server holds $FILES messages"

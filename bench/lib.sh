# Shared by bench/backfill.sh, campaign.sh, import.sh and memory.sh (sourced,
# not run). Expects ROOT, BIN, DATA, RUN_DIR, CRM_LISTEN, URL and a log
# function; sets CRM_PID.

CRM_PID=""

# build_crm: the release binary, unless SKIP_BUILD=1.
build_crm() {
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --bin crm)
  fi
}

# fresh_data_dir: wipes $DATA and has `crm serve` create it once (the
# system store, the admin key, the bundled plugins installed).
fresh_data_dir() {
  log "fresh data dir $DATA"
  rm -rf "$DATA"
  mkdir -p "$RUN_DIR"
  : >"$RUN_DIR/crm.log"
  start_crm
  stop_crm
}

# create_tenant NAME: creates the tenant and prints its admin API key.
create_tenant() {
  local key
  key="$("$BIN" --data-dir "$DATA" tenant create "$1" | sed -n 's/^admin API key (shown once): //p')"
  [[ -n "$key" ]] || { log "no key from tenant create $1" >&2; exit 1; }
  printf '%s\n' "$key"
}

stop_crm() {
  [[ -n "$CRM_PID" ]] || return 0
  if kill -0 "$CRM_PID" 2>/dev/null; then
    kill -TERM "$CRM_PID"
    wait "$CRM_PID" 2>/dev/null || true
  fi
  CRM_PID=""
}

# start_crm [SERVE_FLAGS...]: starts `crm serve` and waits until it answers.
start_crm() {
  "$BIN" --data-dir "$DATA" serve --listen "$CRM_LISTEN" "$@" >>"$RUN_DIR/crm.log" 2>&1 &
  CRM_PID=$!
  for _ in $(seq 1 300); do
    if [[ -s "$DATA/admin-key" ]] && curl -fsS -m 2 "$URL" -H "Authorization: Bearer $(cat "$DATA/admin-key")" \
         -H 'content-type: application/json' -d '{"query":"{__typename}"}' 2>/dev/null | grep -q Query; then
      return 0
    fi
    kill -0 "$CRM_PID" 2>/dev/null || { log "crm exited; last log lines:"; tail -20 "$RUN_DIR/crm.log" >&2; exit 1; }
    sleep 0.2
  done
  log "crm did not answer in 60 s"; exit 1
}

# gql KEY QUERY [VARIABLES_JSON]: prints the response body.
gql() {
  local body
  body="$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}))' "$2" "${3:-{\}}")"
  curl -fsS -m 60 "$URL" -H "Authorization: Bearer $1" -H 'content-type: application/json' -d "$body"
}

# field JSON PATH...: one value out of a response.
field() {
  python3 -c 'import json,sys
value = json.loads(sys.argv[1])
if value.get("errors"): sys.exit("GraphQL error: " + json.dumps(value["errors"]))
for part in sys.argv[2:]: value = value[part]
print(value)' "$@"
}

now_ms() { date +%s%3N; }

#!/usr/bin/env bash
# The API contract against a running node: `hongbao demo` on free loopback ports with a temporary
# data directory, then schemathesis (pinned, in a venv under the target directory) over every
# operation of the node's own /openapi.json, a bounded number of examples each: no answer may be
# a 5xx, and every answer must match the document (status, content type, headers, body schema).
# The public API is called with a demo ticket; the operator API, on the admin listener, with
# requests signed by the demo's operator key (ci/schemathesis_hooks.py).
#
#   ci/schemathesis.sh            # from the repository root; SCHEMATHESIS_EXAMPLES=25 by default
#
# Exits non-zero on any failure. About 2 minutes on 2 cores once the binary is built.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VERSION=4.32.5
# The catalog's `.br` file is served with `Content-Encoding: br` whatever the request accepts (as
# an object store serves it): without brotli, requests hands schemathesis undecoded bytes.
BROTLI=1.2.1
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"
VENV="$TARGET/schemathesis-venv"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$VERSION" \
  || ! "$VENV/bin/python" -c "import brotli; assert brotli.__version__ == '$BROTLI'" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$VERSION" "brotli==$BROTLI"
fi
cargo build --locked --quiet -p hongbao --bin hongbao
BIN="$TARGET/debug/hongbao"

WORK="$(mktemp -d)"
DEMO_PID=""
cleanup() {
  if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The example campaign with a per-user rate no fuzzer reaches: schemathesis calls as one user,
# and answers of 429 would stand in for the operations it came to test. (429 stays documented.)
sed -e 's/^user_rate_per_s = .*/user_rate_per_s = 5000/' \
    -e 's/^user_burst = .*/user_burst = 10000/' \
    config/spring-festival.toml > "$WORK/campaign.toml"
"$BIN" demo --config "$WORK/campaign.toml" --data "$WORK/data" --users 2000 --no-load \
  --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 > "$WORK/demo.log" 2>&1 < /dev/null &
DEMO_PID=$!

# The demo prints its addresses once it listens; then it must answer /readyz.
address_of() { sed -n "s#^  $1 *http://\([0-9.:]*\)/.*#\1#p" "$WORK/demo.log" | head -n 1; }
API="" ADMIN=""
for _ in $(seq 1 300); do
  API="$(address_of api)" ADMIN="$(address_of admin)"
  [ -n "$API" ] && [ -n "$ADMIN" ] && curl -sf "http://$API/readyz" > /dev/null && break
  kill -0 "$DEMO_PID" 2>/dev/null || { cat "$WORK/demo.log"; echo "the demo exited" >&2; exit 1; }
  sleep 0.2
done
curl -sf "http://$API/readyz" > /dev/null || { cat "$WORK/demo.log"; echo "not ready" >&2; exit 1; }

TICKET="$(curl -sf -X POST -H 'content-type: application/json' -d '{"user":10001}' \
  "http://$API/demo/v1/ticket" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ticket"])')"

# From the temporary directory: schemathesis keeps its cache in the working directory.
run() {
  (cd "$WORK" && "$VENV/bin/schemathesis" --no-color run "http://$API/openapi.json" --checks "$CHECKS" \
    --max-examples "$EXAMPLES" --seed 20260203 --workers 2 --request-timeout 20 \
    --suppress-health-check all "$@")
}
status=0
echo "== public API (http://$API)"
run --url "http://$API" --exclude-path-regex '^/admin/' \
  -H "Authorization: Bearer $TICKET" || status=1
echo "== operator API (http://$ADMIN, signed)"
HONGBAO_OPERATOR_KEYS="$WORK/data/operator-keys.toml" PYTHONPATH="$PWD/ci" \
  SCHEMATHESIS_HOOKS=schemathesis_hooks \
  run --url "http://$ADMIN" --include-path-regex '^/admin/' --phases examples,coverage,fuzzing \
  || status=1

if [ "$status" -ne 0 ]; then
  cp "$WORK/demo.log" "$TARGET/schemathesis-demo.log"
  echo "schemathesis found answers that break the contract; the node's log: \
$TARGET/schemathesis-demo.log" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Autobahn WebSocket conformance of the engine's own WebSocket layer
# (protocol/src/ws/ + engine/src/conn/, through engine/src/echo.rs).
#
# Starts `volley gateway` with `test_echo_route: true` on a free port and runs
# the Autobahn case set with kosoku (PyPI) against ws://127.0.0.1:PORT/echo
# (kosoku takes a full ws:// URL, path included), excluding 12.* and 13.*
# (permessage-deflate, which the engine does not negotiate). Every case must
# end OK, NON-STRICT or INFORMATIONAL, and every closing handshake OK or
# INFORMATIONAL; otherwise the failing cases are printed and the suite fails.
# The report is copied to test-artifacts/autobahn/.
#
#   bash scripts/suites/autobahn.sh            # whole suite (~25 s)
#   AUTOBAHN_CASES='9.*' bash scripts/suites/autobahn.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=${VOLLEY_BIN:-$TARGET_DIR/debug/volley}
ARTIFACTS=$ROOT/test-artifacts/autobahn

if [[ ! -x $BIN ]]; then
  echo "autobahn: $BIN not built; building it"
  cargo build -p volley
fi
if ! command -v kosoku >/dev/null; then
  echo "autobahn: kosoku is not installed (pip install kosoku==0.1.0; scripts/test.sh installs it)" >&2
  exit 1
fi

WORK=$(mktemp -d)
GATEWAY_PID=
cleanup() {
  if [[ -n $GATEWAY_PID ]]; then
    kill "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Cases 9.x send messages of up to 16 MiB: the echo route's limit is
# limits.message_bytes_max, raised here so a 16 MiB message (plus slack) fits.
cat >"$WORK/gateway.yaml" <<YAML
listen: 127.0.0.1:$PORT
workers: 2
tableros_secret_key: autobahn-suite-only-secret
test_echo_route: true
limits:
  message_bytes_max: 33554432
  connector_frame_bytes_max: 33554432
rings:
  session_bytes_max: 67108864
YAML

RUST_LOG=${RUST_LOG:-warn} "$BIN" gateway --config "$WORK/gateway.yaml" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
    echo "autobahn: the gateway exited:" >&2
    cat "$WORK/gateway.log" >&2
    exit 1
  fi
  sleep 0.1
done

SELECT=()
if [[ -n ${AUTOBAHN_CASES:-} ]]; then
  SELECT=(-i "$AUTOBAHN_CASES")
fi
echo "autobahn: kosoku against ws://127.0.0.1:$PORT/echo (excluding 12.*, 13.*)"
STARTED=$SECONDS
set +e
kosoku -m fuzzingclient "ws://127.0.0.1:$PORT/echo" "${SELECT[@]}" -x '12.*' -x '13.*' -o "$WORK/report" \
  >"$WORK/kosoku.log" 2>&1
KOSOKU_STATUS=$?
set -e
tail -n 20 "$WORK/kosoku.log"
echo "autobahn: kosoku exited $KOSOKU_STATUS after $((SECONDS - STARTED)) s"

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
cp -r "$WORK/report/." "$ARTIFACTS/"
cp "$WORK/gateway.log" "$WORK/kosoku.log" "$ARTIFACTS/"

INDEX=$(find "$WORK/report" -name index.json | head -n 1)
if [[ -z $INDEX ]]; then
  echo "autobahn: no index.json in the report" >&2
  exit 1
fi
python3 - "$INDEX" <<'PY'
import collections, json, sys

with open(sys.argv[1]) as f:
    index = json.load(f)
ok_behavior = {"OK", "NON-STRICT", "INFORMATIONAL"}
ok_close = {"OK", "INFORMATIONAL"}
tally = collections.Counter()
bad = []

def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]

for agent, cases in index.items():
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        behavior, close = result.get("behavior"), result.get("behaviorClose")
        tally[behavior] += 1
        if behavior not in ok_behavior or close not in ok_close:
            bad.append(f"  {case_id}: behavior={behavior} behaviorClose={close}")
total = sum(tally.values())
summary = ", ".join(f"{n} {name}" for name, n in sorted(tally.items(), key=lambda kv: -kv[1]))
print(f"autobahn: {total} cases: {summary}")
if total == 0:
    print("autobahn: no case ran", file=sys.stderr)
    sys.exit(1)
if bad:
    print(f"autobahn: {len(bad)} case(s) not conformant:", file=sys.stderr)
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
PY
if [[ $KOSOKU_STATUS -ne 0 ]]; then
  echo "autobahn: kosoku reported failures (see $ARTIFACTS/kosoku.log)" >&2
  exit 1
fi
echo "autobahn: report in test-artifacts/autobahn/"

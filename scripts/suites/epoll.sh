#!/usr/bin/env bash
# The engine's and the CLI's integration tests again, with io_uring refused
# by a seccomp filter (io_uring_setup, io_uring_enter and io_uring_register
# answer EPERM), as Docker 25+'s and containerd 2's default profiles refuse
# them. Every gateway the tests start, in-process or as a `volley` process,
# runs in `runtime: auto` and must fall back to epoll and pass the same
# tests. The filter is installed by testkit's `refuse-io-uring` on itself
# and inherited by cargo, nextest, the test binaries and their children.
#
# The `test` step built the test binaries; nothing is rebuilt here.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -p volley-testkit --features seccomp --bin refuse-io-uring
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
REFUSE=$TARGET_DIR/debug/refuse-io-uring

# The filter works: io_uring is refused (and the gateway says it fell back).
"$REFUSE" grep -q '^Seccomp:[[:space:]]*2' /proc/self/status

if cargo nextest --version >/dev/null 2>&1; then
  # --workspace, as the test step built them: the same features, no rebuild.
  "$REFUSE" cargo nextest run --workspace -E 'kind(test) & (package(volley-engine) | package(volley))'
else
  "$REFUSE" cargo test -p volley-engine -p volley --test '*'
fi

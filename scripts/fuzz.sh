#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 20).
#
#   scripts/fuzz.sh               # 20 s per target: a smoke run
#   scripts/fuzz.sh 600           # 10 min per target: the documented longer run
#   scripts/fuzz.sh 60 ws_frame   # one target
#
# Seeds in fuzz/seeds/TARGET are copied into a scratch corpus,
# fuzz/corpus/TARGET (gitignored; it grows across runs), so the committed
# seeds are never modified. Crashes land in fuzz/artifacts/TARGET; the script
# exits non-zero if any target crashed. cargo-fuzz needs nightly-only flags,
# which RUSTC_BOOTSTRAP=1 unlocks on the stable toolchain.
set -euo pipefail

seconds="${1:-20}"
shift || true
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=(ws_frame control_message http_upgrade http_request)
fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
failed=()
for target in "${targets[@]}"; do
    seeds="fuzz/seeds/$target"
    corpus="fuzz/corpus/$target"
    if [[ ! -d "$seeds" ]]; then
        echo "no seeds for target $target ($seeds)" >&2
        exit 2
    fi
    mkdir -p "$corpus"
    cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    echo "== $target: ${seconds}s, corpus $corpus ($(find "$corpus" -type f | wc -l) inputs)"
    # -timeout: one input taking over 10 s is a hang worth reporting.
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "no crashes in: ${targets[*]}"

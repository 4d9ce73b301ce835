#!/usr/bin/env bash
# Type-checks the connector's Windows service for Windows: the cfg(windows)
# code in connector/src/system_service/ (install/start/stop/uninstall and
# the service entry point, on the `windows-service` crate) and the `volley`
# binary that wires it are compiled by `cargo clippy -D warnings` for
# x86_64-pc-windows-gnu. Nothing is linked or run: this proves they
# type-check, not that they work on Windows.
#
# On Windows `volley` is built without the engine (its io_uring runtime,
# monoio, is Linux-only): no `gateway`, `demo` or `bench --in-process`.
# The CLI's tests are not checked for Windows (they start gateways).
#
# Installs what is missing: the rustup target, and the mingw-w64 C cross
# compiler (apt: gcc-mingw-w64-x86-64) that the build scripts of ring,
# zstd-sys and lz4-sys need even for `cargo check`.
#
#   bash scripts/suites/windows-check.sh
#   VOLLEY_SKIP=windows-check scripts/test.sh   # skip it in the test command
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=x86_64-pc-windows-gnu
MINGW_PACKAGE=gcc-mingw-w64-x86-64

# shellcheck source=scripts/lib/root.sh
source scripts/lib/root.sh

if ! command -v rustup >/dev/null 2>&1; then
  echo "windows-check: rustup is not installed; cannot add the $TARGET target" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "windows-check: rustup target add $TARGET"
  rustup target add "$TARGET"
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "windows-check: install a mingw-w64 cross compiler (x86_64-w64-mingw32-gcc), then re-run" >&2
    exit 1
  fi
  echo "windows-check: apt-get install $MINGW_PACKAGE"
  apt_install "$MINGW_PACKAGE"
fi

echo "windows-check: cargo clippy --target $TARGET -p volley-connector --all-targets -- -D warnings"
cargo clippy --target "$TARGET" -p volley-connector --all-targets -- -D warnings
echo "windows-check: cargo clippy --target $TARGET -p volley -- -D warnings"
cargo clippy --target "$TARGET" -p volley -- -D warnings
echo "windows-check: volley-connector and the volley binary type-check for $TARGET; not run on Windows"

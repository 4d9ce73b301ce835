#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every check
# Volley has, in order, stopping at the first failure. CI runs exactly this
# (.ci/run).
#
#   scripts/test.sh                      # everything
#   VOLLEY_SKIP=web,fuzz scripts/test.sh # skip steps while iterating locally
#
# Steps (names for VOLLEY_SKIP, comma-separated):
#   install   apt packages and pip packages (only what is missing)
#   web       npm ci + npm run build in web/, and the web tests (web-test)
#   fmt       cargo fmt --all --check
#   clippy    cargo clippy --workspace --all-targets -- -D warnings
#   doc       cargo doc --no-deps --workspace --document-private-items, rustdoc warnings denied
#             (broken intra-doc links after a module moves)
#   build     cargo build --workspace
#   test      cargo nextest run --workspace + cargo test --workspace --doc
#             (plain cargo test --workspace when nextest is not installed);
#             the default build, which has no ODBC
#   odbc      clippy, then the connector's tests and the CLI's source-error
#             test, with the `odbc` cargo feature (needs unixodbc-dev;
#             target/debug/volley is rebuilt as the default build after)
#   fuzz      scripts/fuzz.sh 10, when that script exists
#   suites    every scripts/suites/*.sh, in name order; one suite is
#             skipped by its file name without .sh (e.g. VOLLEY_SKIP=autobahn).
#             A suite is run with bash from the repository root, starts the
#             services it needs, and exits non-zero on failure (begin it
#             with `set -euo pipefail`).
#
# With CI set, VOLLEY_SKIP is ignored: CI runs everything.
# CARGO_TARGET_DIR is honoured; the web tests get VOLLEY_BIN pointing at the
# debug binary built in the `build` step.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
export VOLLEY_BIN="$TARGET_DIR/debug/volley"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}
# A one-shot run gains nothing from incremental state; it only costs disk.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

# binutils: readelf, for the linkage test (cli/tests/linkage.rs).
APT_PACKAGES=(chromium redis-server postgresql odbc-postgresql unixodbc unixodbc-dev pkg-config binutils)
# python import name => pip package name
PIP_MODULES=(pyarrow:pyarrow jwt:pyjwt websockets:websockets kosoku:kosoku adbc_driver_postgresql:adbc-driver-postgresql)

SKIP=",${VOLLEY_SKIP:-},"
if [[ -n ${CI:-} && $SKIP != ",," ]]; then
  echo "CI is set: ignoring VOLLEY_SKIP=${VOLLEY_SKIP} (CI runs every step)"
  SKIP=",,"
fi

RESULTS=()   # one summary line per step
STARTED=$SECONDS

BOLD="" RESET=""
if [[ -t 1 ]]; then BOLD=$'\033[1m' RESET=$'\033[0m'; fi

banner() {
  printf '\n%s==> %s%s  (%s)\n' "$BOLD" "$*" "$RESET" "$(date +%H:%M:%S)"
}

record() { # status name seconds [note]
  RESULTS+=("$(printf '%-5s %-22s %5ss  %s' "$1" "$2" "$3" "${4:-}")")
}

summary() {
  local pass=0 fail=0 skip=0 line
  echo
  echo "==> summary ($((SECONDS - STARTED))s)"
  for line in "${RESULTS[@]}"; do
    echo "  $line"
    case $line in PASS*) pass=$((pass + 1)) ;; FAIL*) fail=$((fail + 1)) ;; SKIP*) skip=$((skip + 1)) ;; esac
  done
  echo "steps: $pass passed, $fail failed, $skip skipped"
}

skipped() { [[ $SKIP == *",$1,"* ]]; }

# run_step NAME DESCRIPTION COMMAND...: runs COMMAND (a command or a shell
# function) with errexit in force, records the result, and on failure prints
# the summary and exits.
run_step() {
  local name=$1 description=$2
  shift 2
  if skipped "$name"; then
    record SKIP "$name" 0 "VOLLEY_SKIP"
    echo "--- skipping $name ($description): VOLLEY_SKIP"
    return 0
  fi
  banner "$name: $description"
  local start=$SECONDS rc=0
  # A subshell outside any `if`/`||` so that `set -e` applies inside
  # functions; the exit status is taken by hand.
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then
    record PASS "$name" $((SECONDS - start))
  else
    record FAIL "$name" $((SECONDS - start)) "exit $rc"
    echo "!!! $name failed (exit $rc)" >&2
    summary
    exit 1
  fi
}

skip_step() { # name reason
  record SKIP "$1" 0 "$2"
  echo "--- skipping $1: $2"
}

# ---- install ---------------------------------------------------------------

# shellcheck source=scripts/lib/root.sh
source scripts/lib/root.sh

apt_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_apt() {
  local wanted=("${APT_PACKAGES[@]}") missing=() pkg
  # Node and npm only matter when there is a web/ to build.
  if [[ -f web/package.json ]] && ! command -v npm >/dev/null 2>&1; then
    wanted+=(nodejs npm)
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "not a Debian/Ubuntu machine: install these yourself, then re-run with VOLLEY_SKIP=install:"
    echo "  ${wanted[*]}"
    return 1
  fi
  for pkg in "${wanted[@]}"; do
    apt_installed "$pkg" || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "apt: all present (${wanted[*]})"
    return 0
  fi
  echo "apt: installing ${missing[*]}"
  apt_install "${missing[@]}"
}

install_pip() {
  local missing=() entry module package
  for entry in "${PIP_MODULES[@]}"; do
    module=${entry%%:*}
    package=${entry#*:}
    python3 -c "import $module" >/dev/null 2>&1 || missing+=("$package")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "pip: all present (${PIP_MODULES[*]%%:*})"
    return 0
  fi
  echo "pip: installing ${missing[*]}"
  local flags=(--quiet --disable-pip-version-check)
  # Debian's own python refuses pip installs unless told (PEP 668).
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    flags+=(--break-system-packages)
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  python3 -m pip install "${flags[@]}" "${missing[@]}"
}

install_deps() {
  command -v python3 >/dev/null 2>&1 || APT_PACKAGES+=(python3 python3-pip)
  install_apt
  install_pip
}

web_build() {
  cd web
  local lock_hash stamp=node_modules/.volley-lock-sha256
  if [[ -f package-lock.json ]]; then
    lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [[ ! -d node_modules || ! -f $stamp || $(cat "$stamp") != "$lock_hash" ]]; then
      echo "npm ci (node_modules missing or package-lock.json changed)"
      npm ci --no-audit --no-fund
      mkdir -p node_modules
      echo "$lock_hash" >"$stamp"
    else
      echo "node_modules up to date with package-lock.json"
    fi
  else
    echo "web/package-lock.json is missing: running npm install (commit the lock file it writes)" >&2
    npm install --no-audit --no-fund
  fi
  npm run build --if-present
}

web_test() {
  [[ -x $VOLLEY_BIN ]] || {
    echo "VOLLEY_BIN=$VOLLEY_BIN does not exist: the build step must run first" >&2
    return 1
  }
  cd web
  npm test
}

cargo_test() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace
    cargo test --workspace --doc
  else
    echo "cargo-nextest not found: using cargo test"
    cargo test --workspace
  fi
}

# ODBC is a cargo feature, off by default (docs/decisions/
# 2026-12-07-odbc-behind-a-cargo-feature.md): the `test` step tests the
# default build, this one the connector with ODBC. Only the connector's
# targets are built with the feature, so target/debug/volley, which the later
# steps run, stays the default build.
odbc_test() {
  cargo clippy -p volley-connector -p volley --features volley/odbc --all-targets -- -D warnings
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p volley-connector --features odbc
    cargo nextest run -p volley --features odbc --test source_errors
  else
    cargo test -p volley-connector --features odbc
    cargo test -p volley --features odbc --test source_errors
  fi
  # The steps after this one run target/debug/volley: the default build again.
  cargo build -p volley
}

# ---- steps -----------------------------------------------------------------

echo "Volley tests in $ROOT (target dir $TARGET_DIR)"
[[ $SKIP != ",," ]] && echo "VOLLEY_SKIP=${VOLLEY_SKIP}"
# A full run needs roughly 15 GB of build output; say up front what is free.
echo "disk free: $(df -h --output=avail "$ROOT" | tail -1 | tr -d ' ') at $ROOT"

run_step install "system and python packages" install_deps

if [[ -f web/package.json ]]; then
  run_step web "npm ci + build in web/" web_build
else
  skip_step web "web/package.json not found"
fi

run_step fmt "cargo fmt --all --check" cargo fmt --all --check
run_step clippy "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
run_step doc "cargo doc --no-deps --workspace --document-private-items (warnings denied)" \
  env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --document-private-items
run_step build "cargo build --workspace" cargo build --workspace
run_step test "cargo tests (workspace)" cargo_test
run_step odbc "connector with --features odbc (clippy, tests)" odbc_test

if [[ ! -f web/package.json ]]; then
  skip_step web-test "web/package.json not found"
elif skipped web; then
  skip_step web-test "VOLLEY_SKIP=web"
else
  run_step web-test "web tests (npm test, VOLLEY_BIN=$VOLLEY_BIN)" web_test
fi

if [[ -f scripts/fuzz.sh ]]; then
  run_step fuzz "scripts/fuzz.sh 10" bash scripts/fuzz.sh 10
else
  skip_step fuzz "scripts/fuzz.sh not found"
fi

shopt -s nullglob
suites=(scripts/suites/*.sh)
shopt -u nullglob
if [[ ${#suites[@]} -eq 0 ]]; then
  skip_step suites "no scripts/suites/*.sh"
elif skipped suites; then
  skip_step suites "VOLLEY_SKIP"
else
  for suite in "${suites[@]}"; do
    name=$(basename "$suite" .sh)
    run_step "$name" "$suite" bash "$suite"
  done
fi

summary

#!/usr/bin/env bash
# The container image, built and run with podman: the Dockerfile's runtime
# stage, run as a real container with its USER, HEALTHCHECK, STOPSIGNAL and
# the runtime's default seccomp profile, and the Kubernetes Secret's config
# mounted the way the pod mounts it.
#
# What stands in for what (no image registry is reachable from the build
# machine, so neither the base image nor the build stages can be pulled):
#   - gcr.io/distroless/cc-debian12 -> an image made FROM scratch of this
#     machine's Debian 12 libraries (the dynamic loader, libc, libm,
#     libgcc_s), /etc/passwd and /etc/group with `nonroot` (65532) and the
#     CA bundle: what the binary needs of that base;
#   - the `builder` stage -> the volley binary scripts/test.sh built
#     ($VOLLEY_BIN, else target/debug/volley);
#   - the `web` stage -> web/dist, which the `web` step built.
# Everything from the last FROM on is the Dockerfile's own text; only the
# two COPY --from lines are pointed at those files.
#
# Sandbox notes: podman runs with runc, not crun (crun refuses hybrid
# cgroup hierarchies), and with ulimits no higher than this shell's (the
# runtime's defaults raise them, which a sandbox may refuse).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=scripts/lib/root.sh
source scripts/lib/root.sh

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
VOLLEY_BIN=${VOLLEY_BIN:-$TARGET_DIR/debug/volley}
IMAGE=localhost/volley-container-suite:$$
CONTAINER=volley-container-suite-$$

fail() {
  echo "container suite: $*" >&2
  exit 1
}

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
[[ -x $VOLLEY_BIN ]] || fail "$VOLLEY_BIN does not exist: run cargo build -p volley first (scripts/test.sh's build step does)"
[[ -f web/dist/index.html ]] || fail "web/dist is not built: run npm ci && npm run build in web/ (scripts/test.sh's web step does)"

PODMAN=(as_root podman --runtime runc)
NOFILE=$(ulimit -Sn)
LIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=1024:1024")

CONTEXT=$(mktemp -d)
cleanup() {
  "${PODMAN[@]}" rm -f "$CONTAINER" >/dev/null 2>&1 || true
  "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$CONTEXT"
}
trap cleanup EXIT

# podman schedules HEALTHCHECKs with systemd timers; without systemd it
# logs that it cannot, and this suite runs the check itself instead.
quiet() { grep -v 'unable to get systemd connection' || true; }

# ---- the stand-in base and the runtime stage --------------------------------

os=$(
  # shellcheck source=/dev/null
  . /etc/os-release && echo "${ID:-}-${VERSION_ID:-}"
)
if [[ $os != debian-12 ]]; then
  echo "note: this machine is $os, not debian-12: its libraries stand in for distroless cc-debian12's"
fi
rootfs=$CONTEXT/rootfs
mkdir -p "$rootfs/etc/ssl/certs"
base_libs=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1)
extra=()
while read -r lib path; do
  [[ -n $path ]] || continue
  mkdir -p "$rootfs$(dirname "$path")"
  cp -L "$path" "$rootfs$path"
  if [[ " ${base_libs[*]} " != *" $lib "* ]]; then extra+=("$lib"); fi
done < <(ldd "$VOLLEY_BIN" | awk '/=>/ { print $1, $3 } !/=>/ && /^\t\// { n = split($1, p, "/"); print p[n], $1 }')
if [[ ${#extra[@]} -gt 0 ]]; then
  echo "note: $VOLLEY_BIN also needs ${extra[*]}, which distroless cc-debian12 does not have;"
  echo "      they are added to the stand-in base, but the real image needs a build without them (ODBC)"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"; fi

cp "$VOLLEY_BIN" "$CONTEXT/volley"
cp -r web/dist "$CONTEXT/web-dist"
mkdir -p "$CONTEXT/packaging/container"
cp packaging/container/gateway.yaml "$CONTEXT/packaging/container/"
{
  echo "FROM scratch"
  echo "COPY rootfs/ /"
  awk '/^FROM /{ stage = NR } { line[NR] = $0 } END { for (i = stage + 1; i <= NR; i++) print line[i] }' Dockerfile |
    sed -e 's#^COPY --from=builder /out/volley #COPY volley #' -e 's#^COPY --from=web /src/web/dist #COPY web-dist #'
} >"$CONTEXT/Containerfile"
if grep -q -- '--from=' "$CONTEXT/Containerfile"; then
  fail "the runtime stage copies from a stage this suite does not stand in for: $(grep -- '--from=' "$CONTEXT/Containerfile")"
fi
echo "--- the runtime stage, as built here:"
grep -v '^#' "$CONTEXT/Containerfile"
"${PODMAN[@]}" build --quiet --format docker -t "$IMAGE" "$CONTEXT" >/dev/null

# ---- as built: no secret, so no start ---------------------------------------

set +e
bare=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" "$IMAGE" 2>&1 | quiet)
set -e
[[ $bare == *"tableros_secret_key"* ]] || fail "the image without a mounted config should refuse to start; it said: $bare"
echo "ok: without a mounted config the gateway refuses to start: ${bare##*error: }"

# ---- the Kubernetes Secret's config, mounted as the pod has it --------------

config=$CONTEXT/gateway.yaml
awk '/^  gateway.yaml: \|/ { inside = 1; next } inside && /^    / { print substr($0, 5); next } inside && !/^ *$/ { inside = 0 }' \
  packaging/kubernetes/secret.yaml >"$config"
grep -q 'tableros_secret_key: ""' "$config" || fail "secret.yaml: no empty tableros_secret_key placeholder"
sed -i -e "s/tableros_secret_key: \"\"/tableros_secret_key: \"$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')\"/" \
  -e "s/connector_secret_key: \"\"/connector_secret_key: \"$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')\"/" "$config"
as_root chown 0:65532 "$config"
as_root chmod 0440 "$config"

# The runtime's default seccomp profile refuses io_uring. A gateway with an
# epoll runtime (`volley gateway --runtime`) must start under it. One
# without cannot, which is shown, and is then run with io_uring allowed.
SECCOMP=()
if ! "$VOLLEY_BIN" gateway --help | grep -q -- '--runtime'; then
  set +e
  refused=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" -v "$config:/opt/volley/config/gateway.yaml:ro" "$IMAGE" 2>&1 | quiet)
  set -e
  [[ $refused == *io_uring* ]] || fail "expected the io_uring-only gateway to fail under the default seccomp profile: $refused"
  echo "note: this gateway has no epoll runtime; under the default seccomp profile: ${refused##*error: }"
  echo "      running the rest with a profile that also allows io_uring_setup/enter/register"
  profile=/usr/share/containers/seccomp.json
  [[ -f $profile ]] || fail "$profile (containers-common) not found"
  python3 -c 'import json, sys
p = json.load(open(sys.argv[1]))
p["syscalls"].append({"names": ["io_uring_setup", "io_uring_enter", "io_uring_register"], "action": "SCMP_ACT_ALLOW"})
json.dump(p, open(sys.argv[2], "w"))' "$profile" "$CONTEXT/seccomp.json"
  SECCOMP=(--security-opt "seccomp=$CONTEXT/seccomp.json")
fi

# As the pod's securityContext has it: read-only root (and no tmpfs on
# /tmp or /run either), no capabilities, no privilege escalation.
POD_SECURITY=(--read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges)
started=$("${PODMAN[@]}" run -d --name "$CONTAINER" "${LIMITS[@]}" "${SECCOMP[@]}" "${POD_SECURITY[@]}" -p 127.0.0.1::8081 \
  -v "$config:/opt/volley/config/gateway.yaml:ro" "$IMAGE" 2>&1) || fail "podman run: $(echo "$started" | quiet)"
PORT=$("${PODMAN[@]}" port "$CONTAINER" 8081 | head -1 | sed 's/.*://')
[[ $PORT =~ ^[0-9]+$ ]] || fail "no published port for 8081: $PORT"
for _ in $(seq 1 100); do
  "$VOLLEY_BIN" health --timeout 1 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
health=$("$VOLLEY_BIN" health "http://127.0.0.1:$PORT/health") || {
  "${PODMAN[@]}" logs "$CONTAINER" >&2
  fail "the container's /health did not answer on port $PORT"
}
echo "ok: /health through the published port: $health"
if [[ ${#SECCOMP[@]} -eq 0 ]]; then
  # Under the default profile io_uring is refused: `auto` fell back to epoll
  # and said why, once.
  [[ $health == *'"runtime":"epoll"'* ]] || fail "under the default seccomp profile /health should report epoll: $health"
  warnings=$("${PODMAN[@]}" logs "$CONTAINER" 2>&1 | grep -c 'io_uring is not available here' || true)
  [[ $warnings == 1 ]] || fail "expected one fallback warning in the logs, found $warnings"
  echo "ok: under the default seccomp profile the gateway runs on epoll: $("${PODMAN[@]}" logs "$CONTAINER" 2>&1 | grep -o 'io_uring is not available here ([^)]*)' | head -1)"
fi

user=$("${PODMAN[@]}" top "$CONTAINER" huser | tail -n +2 | head -1 | tr -d ' ')
[[ $user == 65532 ]] || fail "the gateway runs as $user, not 65532"
echo "ok: the gateway runs as uid $user"
readonly_root=$("${PODMAN[@]}" inspect "$CONTAINER" --format '{{.HostConfig.ReadonlyRootfs}}')
[[ $readonly_root == true ]] || fail "the root filesystem is not read-only ($readonly_root)"
pid=$("${PODMAN[@]}" inspect "$CONTAINER" --format '{{.State.Pid}}')
caps=$(as_root awk '/^Cap(Prm|Eff|Bnd):/ { print $2 }' "/proc/$pid/status" | sort -u)
[[ $caps == 0000000000000000 ]] || fail "the gateway holds capabilities: $caps"
echo "ok: on a read-only root, with no capabilities (permitted, effective, bounding)"

# GET / over bash's /dev/tcp: the body must be the built dashboard.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n' >&3
cat <&3 >"$CONTEXT/index.response"
exec 3<&-
sed '1,/^\r$/d' "$CONTEXT/index.response" | cmp -s - web/dist/index.html || fail "GET / is not web/dist/index.html"
echo "ok: GET / serves the built dashboard"

"${PODMAN[@]}" healthcheck run "$CONTAINER" 2>&1 | quiet
status=$("${PODMAN[@]}" inspect "$CONTAINER" --format '{{.State.Health.Status}}')
[[ $status == healthy ]] || fail "HEALTHCHECK: $status"
echo "ok: the image's HEALTHCHECK ($(grep -A1 '^HEALTHCHECK' Dockerfile | grep -o 'CMD.*')) reports healthy"

started=$SECONDS
"${PODMAN[@]}" stop -t 10 "$CONTAINER" 2>&1 | quiet >/dev/null
took=$((SECONDS - started))
code=$("${PODMAN[@]}" inspect "$CONTAINER" --format '{{.State.ExitCode}}')
logs=$("${PODMAN[@]}" logs "$CONTAINER" 2>&1)
[[ $code == 0 ]] || fail "exit code $code after podman stop (137: the stop signal did not end it, so it was killed after 10 s); logs: $logs"
[[ $logs == *"shutting down"* ]] || fail "no 'shutting down' in the logs: $logs"
[[ $took -lt 10 ]] || fail "podman stop took ${took}s"
echo "ok: podman stop (SIGTERM) -> exit 0 in ${took}s"
echo "$logs" | grep -E 'listening|workers|runtime' | head -3

#!/usr/bin/env bash
# make container-test: lint, build and run the lrr-service image for real, then the same through compose.
#
# Uses a Docker engine when one answers (`docker` + `docker compose`); otherwise sources
# ../shared/tools/container-env.sh (rootful podman, a local base image, docker-compose on podman's
# Docker-API socket). Every container, volume and compose project it makes is removed on exit.
#
# Environment: CONTAINER_ENV (path of container-env.sh), LRR_TEST_IMAGE (tag to build),
# CONTAINER_TEST_TIMEOUT (seconds for the whole run, default 900),
# BASE_IMAGE (base given to the build), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST
# (passed to the build when set).
# Under podman, "unable to get systemd connection to add healthchecks" on run/start/stop is
# harmless: container-env.sh runs the healthchecks itself.
set -euo pipefail

# A watchdog: after CONTAINER_TEST_TIMEOUT seconds (default 900) the run is stopped with SIGTERM,
# which still runs the cleanup below; a hung build or start fails instead of eating CI's time.
if [ -z "${_CONTAINER_TEST_WATCHED:-}" ]; then
  export _CONTAINER_TEST_WATCHED=1
  exec timeout -k 60 "${CONTAINER_TEST_TIMEOUT:-900}" bash "${BASH_SOURCE[0]}" "$@"
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CONTAINER_ENV=${CONTAINER_ENV:-$REPO/../shared/tools/container-env.sh}
IMAGE=${LRR_TEST_IMAGE:-localhost/lrr-service:container-test}
PROJECT_LABEL="org.opencontainers.image.title=lrr-service"   # set by the Dockerfile
RUN_ID="lrrct$$"
TOKEN="ct-token-$RANDOM$RANDOM$RANDOM"
PY="$REPO/.venv/bin/python"
STARTED_AT=$SECONDS

step() { printf '\n==> [%3ss] %s\n' "$((SECONDS - STARTED_AT))" "$*" >&2; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

# --- the toolchain: a Docker engine, or podman through container-env.sh ------------------------
ENV_STARTED_HERE=0
BUILD_FLAGS=()
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
  [ -n "${BASE_IMAGE:-}" ] && BUILD_FLAGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
elif [ -f "$CONTAINER_ENV" ]; then
  step "no Docker engine: sourcing $CONTAINER_ENV (podman)"
  ce_sock=${CONTAINER_WORKDIR:-/tmp/lrr-containers}/podman.sock
  if ! { [ -S "$ce_sock" ] && curl -fsS --unix-socket "$ce_sock" http://d/_ping >/dev/null 2>&1; }; then
    ENV_STARTED_HERE=1
  fi
  # shellcheck source=/dev/null
  source "$CONTAINER_ENV" || fail "could not set up the container toolchain"
  ENGINE=podman
  COMPOSE=(docker-compose)
  # docker format keeps HEALTHCHECK (OCI images drop it)
  BUILD_FLAGS+=(--format docker --build-arg "BASE_IMAGE=$BASE_IMAGE")
else
  fail "no Docker engine answers and $CONTAINER_ENV does not exist: install Docker or set CONTAINER_ENV"
fi
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  [ -n "${!var:-}" ] && BUILD_FLAGS+=(--build-arg "$var=${!var}")
done

CONTAINERS=()
VOLUMES=()
PROJECT=""
PROJECT_COMPOSE=()
WEIGHTS_CSV="$(mktemp -t lrr-ct-weights.XXXXXX)"
ENV_FILE="$(mktemp -t lrr-ct-env.XXXXXX)"
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    for c in "${CONTAINERS[@]}"; do echo "--- logs of $c (last 40 lines)" >&2; "$ENGINE" logs --tail 40 "$c" >&2 2>&1; done
    [ -n "$PROJECT" ] && "${PROJECT_COMPOSE[@]}" logs --tail 40 >&2 2>&1
  fi
  [ -n "$PROJECT" ] && "${PROJECT_COMPOSE[@]}" --profile demo down -v --remove-orphans >/dev/null 2>&1
  for c in "${CONTAINERS[@]}"; do "$ENGINE" rm -f "$c" >/dev/null 2>&1; done
  for v in "${VOLUMES[@]}"; do "$ENGINE" volume rm -f "$v" >/dev/null 2>&1; done
  "$ENGINE" image prune -f --filter "label=$PROJECT_LABEL" >/dev/null 2>&1   # superseded builds only
  rm -f "$WEIGHTS_CSV" "$ENV_FILE"
  [ "$ENV_STARTED_HERE" = 1 ] && container_env_stop
  if [ "$rc" -eq 0 ]; then echo "container-test: PASSED in $((SECONDS - STARTED_AT))s" >&2
  else echo "container-test: FAILED (exit $rc) after $((SECONDS - STARTED_AT))s" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "container-test: interrupted, or over CONTAINER_TEST_TIMEOUT (${CONTAINER_TEST_TIMEOUT:-900} s)" >&2; exit 130' INT TERM

# check COMMAND ARGS...: one check of scripts/container_check.py against the server with our token
check() { "$PY" "$REPO/scripts/container_check.py" "$1" --token "$TOKEN" "${@:2}"; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- 1. static checks -------------------------------------------------------------------------
step "project venv (for the websocket check client)"
make -s .venv/.installed

step "hadolint Dockerfile"
if command -v hadolint >/dev/null 2>&1; then hadolint Dockerfile
else "$ENGINE" run --rm -i docker.io/hadolint/hadolint < Dockerfile; fi

step "validate docker-compose.yml"
LRR_API_TOKEN=$TOKEN "${COMPOSE[@]}" -f docker-compose.yml --profile demo config -q
if LRR_API_TOKEN='' "${COMPOSE[@]}" -f docker-compose.yml config -q >/dev/null 2>&1; then
  fail "docker-compose.yml accepted an empty LRR_API_TOKEN; it must demand one"
fi
if command -v check-jsonschema >/dev/null 2>&1; then
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
fi
LRR_API_TOKEN=$TOKEN "${COMPOSE[@]}" -f docker-compose.yml config --format json \
  | "$PY" scripts/container_check.py settings-coverage --docs docs/deploy.md

# --- 2. the image -----------------------------------------------------------------------------
step "build $IMAGE ($ENGINE)"
# The builder stage gets a tag too: its layers (the dependencies above all) stay the build cache
# when superseded images of this project are pruned at the end.
"$ENGINE" build "${BUILD_FLAGS[@]}" --target builder -t "$IMAGE-builder" .
"$ENGINE" build "${BUILD_FLAGS[@]}" -t "$IMAGE" .
[ "$("$ENGINE" image inspect --format '{{.Config.User}}' "$IMAGE")" != "" ] || fail "image has no USER"

# --- 3. plain run: health, non-root, websocket transform, weights survive stop/start ----------
PORT=$(free_port)
CONTAINER="$RUN_ID-run"
VOLUME="$RUN_ID-state"
"$ENGINE" volume create "$VOLUME" >/dev/null
VOLUMES+=("$VOLUME")
CONTAINERS+=("$CONTAINER")
# no periodic checkpoint during the test: only the one on SIGTERM can save fitted statistics
RUN_FLAGS=(-p "127.0.0.1:$PORT:8000" -e LRR_API_TOKEN="$TOKEN" -e LRR_CHECKPOINT_SECONDS=3600 -v "$VOLUME:/var/lib/lrr")
step "run $CONTAINER on 127.0.0.1:$PORT"
"$ENGINE" run -d --name "$CONTAINER" "${RUN_FLAGS[@]}" "$IMAGE" >/dev/null
URL="http://127.0.0.1:$PORT"
check wait-ready --url "$URL"

step "runs as non-root and can write its state volume"
uid=$("$ENGINE" exec "$CONTAINER" id -u)
[ "$uid" != "0" ] || fail "the server runs as root (uid 0)"
"$ENGINE" exec "$CONTAINER" sh -c 'touch "$LRR_STATE_DIR/.write-test" && rm "$LRR_STATE_DIR/.write-test"' \
  || fail "uid $uid cannot write the state volume"
echo "uid $uid, state volume writable" >&2

step "token required, weights upload, websocket transform checked against X @ (I - W)"
check upload-and-transform --url "$URL" --key ct-plain --save "$WEIGHTS_CSV"

check fit --url "$URL" --key ct-fit

step "stop (SIGTERM) and start: fitted statistics (SIGTERM checkpoint) and weights (bit-exact) survive"
"$ENGINE" stop -t 30 "$CONTAINER" >/dev/null
exit_code=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$exit_code" = "0" ] || fail "the server exited with $exit_code on SIGTERM (expected 0: a graceful shutdown)"
"$ENGINE" start "$CONTAINER" >/dev/null
check wait-ready --url "$URL"
check same-samples --url "$URL" --key ct-fit
check same-weights --url "$URL" --key ct-plain --expect "$WEIGHTS_CSV"

step "upgrade path: a new container on the same volume keeps the weights"
"$ENGINE" rm -f "$CONTAINER" >/dev/null
CONTAINER="$RUN_ID-run2"
CONTAINERS+=("$CONTAINER")
"$ENGINE" run -d --name "$CONTAINER" "${RUN_FLAGS[@]}" "$IMAGE" >/dev/null
check wait-ready --url "$URL"
check same-samples --url "$URL" --key ct-fit
check same-weights --url "$URL" --key ct-plain --expect "$WEIGHTS_CSV"
"$ENGINE" rm -f "$CONTAINER" >/dev/null

# --- 4. the same through docker compose ---------------------------------------------------------
# the token and the rest come from an env file, as a deployment's .env would give them
PUBLISH="127.0.0.1:$(free_port)"
printf 'LRR_API_TOKEN=%s\nLRR_PUBLISH=%s\nLRR_IMAGE=%s\n' "$TOKEN" "$PUBLISH" "$IMAGE" > "$ENV_FILE"
unset LRR_API_TOKEN LRR_PUBLISH LRR_IMAGE
PROJECT="$RUN_ID"
PROJECT_COMPOSE=("${COMPOSE[@]}" -p "$PROJECT" --env-file "$ENV_FILE")
URL="http://$PUBLISH"
step "compose -p $PROJECT up -d --wait --build on $PUBLISH (the build reuses the cached layers)"
"${PROJECT_COMPOSE[@]}" up -d --build --wait --wait-timeout 120
check wait-ready --url "$URL"
root_mode=$("${PROJECT_COMPOSE[@]}" exec -T lrr awk '$2 == "/" { split($4, o, ","); print o[1] }' /proc/mounts)
[ "$root_mode" = "ro" ] || fail "the compose service's root filesystem is mounted '$root_mode'; docker-compose.yml asks for read_only"
check upload-and-transform --url "$URL" --key ct-compose --save "$WEIGHTS_CSV"

step "compose stop and start: weights survive bit-exact"
"${PROJECT_COMPOSE[@]}" stop
"${PROJECT_COMPOSE[@]}" start
check wait-ready --url "$URL"
check same-weights --url "$URL" --key ct-compose --expect "$WEIGHTS_CSV"

step "compose demo profile: a synthetic rig streamed through the service"
demo_log=$("${PROJECT_COMPOSE[@]}" --profile demo run --rm demo 2>&1) || { echo "$demo_log" >&2; fail "the demo profile failed"; }
echo "$demo_log" | tail -3 >&2
grep -q "overall artifact reduction" <<<"$demo_log" || fail "the demo printed no artifact reduction"

step "compose down"
"${PROJECT_COMPOSE[@]}" --profile demo down -v --remove-orphans
PROJECT=""

# --- 5. the cluster compose file: HAProxy, Redis and two workers; the owner of a key killed -----
if [ "$ENGINE" = podman ]; then
  step "HAProxy and Redis stand-ins for the official images (container_env_service_images)"
  container_env_service_images || fail "could not build the local HAProxy and Redis images"
fi
LRR_API_TOKEN=$TOKEN "${COMPOSE[@]}" -f docker-compose.cluster.yml config -q
PUBLISH="127.0.0.1:$(free_port)"
printf 'LRR_API_TOKEN=%s\nLRR_PUBLISH=%s\nLRR_IMAGE=%s\n' "$TOKEN" "$PUBLISH" "$IMAGE" > "$ENV_FILE"
PROJECT="$RUN_ID-cluster"
PROJECT_COMPOSE=("${COMPOSE[@]}" -f docker-compose.cluster.yml -p "$PROJECT" --env-file "$ENV_FILE")
URL="http://$PUBLISH"
step "cluster compose -p $PROJECT up -d --wait on $PUBLISH"
"${PROJECT_COMPOSE[@]}" up -d --wait --wait-timeout 120
check wait-ready --url "$URL"
check upload-and-transform --url "$URL" --key ct-cluster --save "$WEIGHTS_CSV"
owner=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/streams/ct-cluster/owner" \
  | "$PY" -c 'import json, sys, urllib.parse; print(urllib.parse.urlsplit(json.load(sys.stdin)["owner"]).hostname)')
case "$owner" in lrr-w1|lrr-w2) ;; *) fail "GET /streams/ct-cluster/owner named '$owner', not a worker of the compose file" ;; esac
step "kill -9 the owner ($owner): the other worker serves the key with its weights from Redis"
"${PROJECT_COMPOSE[@]}" kill -s KILL "$owner"
check same-weights --url "$URL" --key ct-cluster --expect "$WEIGHTS_CSV"
survivor=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/streams/ct-cluster/owner" \
  | "$PY" -c 'import json, sys, urllib.parse; print(urllib.parse.urlsplit(json.load(sys.stdin)["owner"]).hostname)')
[ "$survivor" != "$owner" ] || fail "the killed worker $owner still owns the key"
echo "moved from $owner to $survivor" >&2
"${PROJECT_COMPOSE[@]}" down -v --remove-orphans
PROJECT=""

#!/usr/bin/env bash
# `make images`: the four images, tagged as the chart's defaults name them
# ($IMAGE_PREFIX/{worker,worker-gpu,api,operator}:$IMAGE_TAG). The base is $BASE_IMAGE when set;
# otherwise the registry's debian:bookworm-slim when it can be pulled, else the local Debian base
# of `make base-image` (built first if missing). Layers are cached, and pip's downloads too (a
# cache mount): a rebuild after a code change redoes only the pip step of the changed images.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${IMAGE_PREFIX:-ghcr.io/kubeffmpeg}
TAG=${IMAGE_TAG:-0.1.0}
LOCAL_BASE=localhost/kubeffmpeg/debian:bookworm
REGISTRY_BASE=docker.io/library/debian:bookworm-slim
# A TLS-intercepting proxy's CA for pip, passed as a build secret (never stored in a layer).
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
tool=$(bash hack/image-tool.sh)

exists() {
  if [[ $tool == buildah ]]; then buildah inspect --type image "$1" >/dev/null 2>&1
  else "$tool" image inspect "$1" >/dev/null 2>&1; fi
}
if [[ -z ${BASE_IMAGE:-} ]]; then
  if exists "$REGISTRY_BASE" || timeout 60 "$tool" pull -q "$REGISTRY_BASE" >/dev/null 2>&1; then
    BASE_IMAGE=$REGISTRY_BASE
  else
    BASE_IMAGE=$LOCAL_BASE
    exists "$BASE_IMAGE" || { echo "images: $REGISTRY_BASE cannot be pulled; building $BASE_IMAGE" >&2
                              BASE_IMAGE=$BASE_IMAGE bash hack/base-image.sh; }
  fi
fi

build=("$tool" build)
[[ $tool == buildah ]] && build=(buildah bud --isolation chroot)
[[ $tool != docker ]] && build+=(--layers)
secret=()
[[ -s $CA_BUNDLE ]] && secret=(--secret "id=ca-bundle,src=$CA_BUNDLE")

one() {  # name dockerfile [target]
  local name=$1 file=$2 target=${3:-} t0=$SECONDS
  local args=(-f "$file" --build-arg "BASE_IMAGE=$BASE_IMAGE" "${secret[@]}" -t "$PREFIX/$name:$TAG")
  [[ -n $target ]] && args+=(--target "$target")
  nice -n 10 "${build[@]}" "${args[@]}" . >"${IMAGES_LOG:-/dev/null}" 2>&1 \
    || { echo "images: $name failed; rerun with IMAGES_LOG=/dev/stderr to see the build" >&2; exit 1; }
  echo "images: $PREFIX/$name:$TAG built in $((SECONDS - t0))s"
}
echo "images: base $BASE_IMAGE, builder $tool"
one worker worker-image/Dockerfile cpu
one worker-gpu worker-image/Dockerfile gpu
one api api/Dockerfile
one operator operator/Dockerfile
"$tool" images | grep -F "$PREFIX/" || true

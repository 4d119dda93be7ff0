#!/usr/bin/env bash
# Prints the image builder `make images` uses: $IMAGE_TOOL if set, else docker when a daemon
# answers (a docker client alone is not enough), else buildah, else podman.
set -euo pipefail
if [[ -n ${IMAGE_TOOL:-} ]]; then echo "$IMAGE_TOOL"; exit 0; fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; exit 0; fi
for t in buildah podman; do
  if command -v $t >/dev/null; then echo $t; exit 0; fi
done
echo "no image builder: install docker, buildah (Debian: apt-get install buildah) or podman" >&2
exit 1

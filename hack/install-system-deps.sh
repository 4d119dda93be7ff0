#!/usr/bin/env bash
# System packages the stack needs: FFmpeg/ffprobe (Debian's), Chromium and its driver for the
# dashboard's browser tests, and a Go toolchain to build the control plane. Installs only what is
# missing. `install-system-deps.sh images`: what building and running the images needs instead
# (buildah unless a docker daemon answers, mmdebstrap, runc).
set -euo pipefail
missing=()
if [[ ${1:-} == images ]]; then
  if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; } && ! command -v podman >/dev/null; then
    command -v buildah >/dev/null || missing+=(buildah)
  fi
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v runc >/dev/null || missing+=(runc)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]} from Debian" >&2
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  exit 0
fi
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
# The dashboard's browser tests (tests/integration/test_dashboard.py): Debian's Chromium and its driver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} from Debian" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
  echo "Go 1.24+ is needed to build the local control plane (https://go.dev/doc/install)." >&2
  exit 1
fi

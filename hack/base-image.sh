#!/usr/bin/env bash
# `make base-image`: a Debian bookworm base image built from Debian's own packages with
# mmdebstrap, for machines that cannot pull debian:bookworm-slim from a registry. Like the slim
# image: the minbase variant (essential packages and apt), no recommends, no man pages, docs or
# locales (the dpkg rules stay in the image, so later `apt-get install`s skip them too), and
# merged /usr set up by mmdebstrap's hook instead of the usrmerge package (which pulls in perl).
# Imported into the first image builder found (docker with a daemon, buildah, podman) as
# $BASE_IMAGE (default localhost/kubeffmpeg/debian:bookworm).
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-localhost/kubeffmpeg/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
tool=$(bash "$(dirname "$0")/image-tool.sh")
command -v mmdebstrap >/dev/null || { echo "base-image: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nice -n 10 mmdebstrap --quiet --variant=minbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/* "$1"/etc/machine-id' \
  bookworm "$work/rootfs.tar" \
  "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"
case $tool in
  buildah)
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null ;;
  docker|podman)
    "$tool" import --change 'CMD ["bash"]' "$work/rootfs.tar" "$BASE_IMAGE" >/dev/null ;;
esac
echo "base-image: $BASE_IMAGE ($tool), rootfs $(du -m "$work/rootfs.tar" | cut -f1) MB"

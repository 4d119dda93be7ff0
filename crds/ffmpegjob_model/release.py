"""The release this code belongs to: one source, the installed distribution's version (the
`version` of the pyproject.toml files, which tests/unit/test_release.py keeps equal to the image
tags that must stay literal: hack/images.sh, the dev stack's pools, the chart's appVersion)."""

from __future__ import annotations

from importlib import metadata


def _release() -> str:
    # An image installs the contract package's own distribution; a development checkout the
    # root one, which holds every package.
    for dist in ("kubeffmpeg-model", "kubeffmpeg"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "0.0.0+unknown"


RELEASE = _release()
IMAGE_REPOSITORY = "ghcr.io/kubeffmpeg"
# The worker image of a pool that names none.
DEFAULT_WORKER_IMAGE = f"{IMAGE_REPOSITORY}/worker:{RELEASE}"

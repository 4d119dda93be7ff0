"""One release number: the code reads it from the installed distribution
(`ffmpegjob_model.release`); the places that must name it literally agree with the root
pyproject.toml (each component's pyproject.toml is checked in test_packaging.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.release import DEFAULT_WORKER_IMAGE, RELEASE

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_code_reads_the_release_of_the_checkout() -> None:
    assert RELEASE == VERSION
    assert NodePool().image == DEFAULT_WORKER_IMAGE == f"ghcr.io/kubeffmpeg/worker:{VERSION}"


def test_literal_image_tags_name_the_release() -> None:
    chart = yaml.safe_load((ROOT / "charts/kubeffmpeg/Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION  # the chart's default image tag
    images = (ROOT / "hack/images.sh").read_text()
    assert re.search(r"TAG=\$\{IMAGE_TAG:-([^}]+)\}", images).group(1) == VERSION  # type: ignore[union-attr]
    pools = (ROOT / "hack/devstack/manifests/base.yaml").read_text()
    tags = re.findall(r"image: ghcr\.io/kubeffmpeg/[a-z-]+:(\S+)", pools)
    assert tags and set(tags) == {VERSION}

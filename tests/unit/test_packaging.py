"""Each image installs one component's distribution and the contract package's (docs/install.md,
"Images"); development installs everything from the root pyproject.toml. These tests keep the
two in step: the root's dependencies are exactly the union of the components', and every console
script and package of a component is the root's too."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = {"crds": "kubeffmpeg-model", "api": "kubeffmpeg-api", "operator": "kubeffmpeg-operator",
              "worker-image": "kubeffmpeg-worker", "client": "kubeffmpeg-client"}


def load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def third_party(reqs: list[str]) -> set[str]:
    return {str(Requirement(r)) for r in reqs if Requirement(r).name not in COMPONENTS.values()}


def root_runtime() -> set[str]:
    project = load(ROOT / "pyproject.toml")["project"]
    extras = project["optional-dependencies"]
    return third_party(project["dependencies"] + extras["api"] + extras["operator"] + extras["client"])


@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_component_distribution_matches_the_root(folder: str) -> None:
    root = load(ROOT / "pyproject.toml")
    comp = load(ROOT / folder / "pyproject.toml")
    assert comp["project"]["name"] == COMPONENTS[folder]
    assert comp["project"]["version"] == root["project"]["version"]
    assert third_party(comp["project"]["dependencies"]) <= root_runtime()
    if folder != "crds":  # every component needs the contract package
        assert "kubeffmpeg-model" in comp["project"]["dependencies"]
    scripts = comp["project"].get("scripts", {})
    assert scripts.items() <= root["project"]["scripts"].items()
    package_dir = root["tool"]["setuptools"]["package-dir"]
    for pkg in comp["tool"]["setuptools"]["packages"]:
        assert pkg in root["tool"]["setuptools"]["packages"]
        top = pkg.split(".")[0]
        assert package_dir[top] == f"{folder}/{top}"


def test_root_dependencies_are_the_union_of_the_components() -> None:
    union: set[str] = set()
    for folder in COMPONENTS:
        union |= third_party(load(ROOT / folder / "pyproject.toml")["project"]["dependencies"])
    assert union == root_runtime()


def test_no_image_installs_the_dev_stack() -> None:
    for folder in COMPONENTS:
        comp = load(ROOT / folder / "pyproject.toml")
        assert not any(p.startswith("devstack") for p in comp["tool"]["setuptools"]["packages"])
        assert "devstack" not in comp["project"].get("scripts", {})


def test_one_non_root_id_in_the_images_the_chart_and_the_operator() -> None:
    """The id the operator's Job, the chart's pods and the images' USER run as is one value."""
    from ffmpeg_operator.jobs import NONROOT_UID

    uid = str(NONROOT_UID)
    for dockerfile in ("worker-image/Dockerfile", "api/Dockerfile", "operator/Dockerfile"):
        users = [line.split()[1] for line in (ROOT / dockerfile).read_text().splitlines() if line.startswith("USER ")]
        assert users and all(u == f"{uid}:{uid}" for u in users), (dockerfile, users)
        chowns = [line for line in (ROOT / dockerfile).read_text().splitlines() if "chown" in line]
        assert all(f"chown {uid}:{uid}" in line for line in chowns), chowns
    helpers = (ROOT / "charts/kubeffmpeg/templates/_helpers.tpl").read_text()
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert f"{key}: {uid}" in helpers

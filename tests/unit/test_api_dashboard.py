"""The dashboard's own logic without a stack: pages and static files served (and nothing else),
its files shipped in the API's distribution, and the detail view's steps, commands and usage
per day. The pages in a real browser against the stack: tests/integration/test_dashboard.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ffmpeg_api import dashboard, errors
from ffmpeg_api.app import spec_app

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "api" / "ffmpeg_api"


@pytest.fixture(scope="module")
def ui() -> TestClient:
    app = spec_app()
    errors.install(app)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/ui/login", "/ui/jobs", "/ui/submit", "/ui/files", "/ui/usage", "/ui/jobs/job-1"])
def test_pages_are_served_without_a_key_and_carry_no_data(ui: TestClient, path: str) -> None:
    r = ui.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"] and r.headers["Cache-Control"] == "no-store"
    assert "<script>" not in r.text and "<script " in r.text  # no inline script: only our files


def test_ui_root_redirects_and_unknown_pages_and_files_are_404(ui: TestClient) -> None:
    assert ui.get("/ui", follow_redirects=False).headers["location"] == "/ui/jobs"
    for path in ("/ui/nope", "/ui/static/nope.js", "/ui/static/..%2fdashboard.py", "/ui/static/dashboard.py",
                 "/ui/static/.hidden.js"):
        assert ui.get(path).status_code == 404, path
    js = ui.get("/ui/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")


def test_every_template_and_static_file_ships_in_the_api_distribution() -> None:
    for pyproject in (ROOT / "api" / "pyproject.toml", ROOT / "pyproject.toml"):
        globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["ffmpeg_api"]
        files = [str(p.relative_to(PKG)) for d in ("templates", "static") for p in (PKG / d).iterdir()]
        assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (pyproject, files)
    # Every page's template exists, and every script a template names is in static/.
    for template, _ in dashboard.PAGES.values():
        assert (PKG / "templates" / template).is_file()
    for t in (PKG / "templates").glob("*.html"):
        for name in re.findall(r'/ui/static/([\w.-]+)', t.read_text()):
            assert (PKG / "static" / name).is_file(), (t.name, name)


def job(phase: str | None, progress: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {**({"phase": phase} if phase else {}), **status}
    if progress:
        st["progress"] = progress
    return {"metadata": {"name": "job-1", "creationTimestamp": "2026-11-20T10:00:00Z"}, "spec": {}, "status": st}


def test_steps_of_a_running_chain_split_the_jobs_percent() -> None:
    cmds = ["-i {{a}} t.mp4", "-i t.mp4 {{out.mp4}}"]
    steps = dashboard.steps_of(cmds, job("Running", {"step": 2, "steps": 2, "percent": 75}))
    assert [(s.state, s.percent) for s in steps] == [("done", 100.0), ("running", 50.0)]
    steps = dashboard.steps_of(cmds, job("Failed", {"step": 1, "steps": 2, "percent": 10}))
    assert [s.state for s in steps] == ["failed", "waiting"]
    assert [s.state for s in dashboard.steps_of(cmds, job("Succeeded"))] == ["done", "done"]
    assert [s.state for s in dashboard.steps_of(cmds, job(None))] == ["waiting", "waiting"]


def test_commands_of_the_structured_form_read_as_one_command() -> None:
    spec = {"inputs": [{"name": "in0", "options": ["-ss", "2"]}], "filterComplex": "[0:v]scale=320:-2[v]",
            "outputs": [{"name": "out.mp4", "maps": ["[v]"], "options": ["-c:v", "libx264"]}]}
    assert dashboard.commands_of(spec) == [
        "-ss 2 -i {{in0}} -filter_complex '[0:v]scale=320:-2[v]' -map [v] -c:v libx264 {{out.mp4}}"]
    assert dashboard.commands_of({"commands": ["-i {{a}} {{b.mp4}}"]}) == ["-i {{a}} {{b.mp4}}"]


def test_usage_per_day_over_finished_jobs_by_completion_day() -> None:
    usage = {"timeSec": 2.0, "inputSizeGb": 0.5, "outputSizeGb": 0.5, "gbSec": 2.0}
    jobs = [
        job("Succeeded", completionTime="2026-11-20T23:59:00Z", usage=usage),
        job("Failed", completionTime="2026-11-20T08:00:00Z", usage=usage),
        job("Succeeded", completionTime="2026-11-21T00:01:00Z", usage=usage),
        job("Running", usage=usage),  # not finished: not counted
    ]
    days = dashboard.per_day(jobs, dashboard.finished_day)
    assert [(d.day, d.jobs, d.gb_sec) for d in days] == [("2026-11-21", 1, 2.0), ("2026-11-20", 2, 4.0)]


def test_the_job_id_in_a_page_is_escaped(ui: TestClient) -> None:
    r = ui.get("/ui/jobs/a%3Cimg%20src%3Dx%3E%22")
    assert r.status_code == 200
    assert "<img src=x>" not in r.text and 'data-job-id="a&lt;img src=x&gt;&#34;"' in r.text

"""The README's examples work when pasted: every ```bash block marked `<!-- readme-test -->` runs,
in order, in one shell with `.devstack/env` sourced."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from devstack.paths import REPO_ROOT

pytestmark = pytest.mark.stack

BLOCK = re.compile(r"<!-- readme-test -->\s*```bash\n(.*?)```", re.S)


def readme_blocks() -> list[str]:
    return BLOCK.findall((REPO_ROOT / "README.md").read_text())


def test_readme_has_runnable_examples() -> None:
    assert len(readme_blocks()) >= 3


def test_readme_examples_run_as_written(stack_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    script = "set -euo pipefail\n" + "\n".join(readme_blocks())
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=stack_env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"README example failed:\n{out.stdout}\n{out.stderr}"
    text = out.stdout
    # What a reader checks: the sync result, the probe, the async job, the chain, kubectl.
    first, _ = json.JSONDecoder().raw_decode(text)
    assert first["ok"] is True and first["file"] == "compressed.mp4" and first["size"] > 0
    assert first["usage"]["gb_sec"] >= 0
    assert '"codec_name": "h264"' in text
    assert '"status": "completed"' in text
    assert '"output.mp4"' in text
    assert re.search(r"demo-cpu\s+Succeeded\s+cpu\s+100", text), text
    assert re.search(r"dir_[0-9a-f]+/output.mp4", text), text
    assert (tmp_path / "compressed.mp4").stat().st_size > 0

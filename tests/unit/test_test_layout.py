"""pytest imports test modules by base name (rootdir-relative packages are not used here), so a
unit and an integration module with the same name break collection of the whole suite."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_names_are_unique_across_the_suites() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and "__pycache__" not in p.parts)
    assert [n for n, k in names.items() if k > 1] == []

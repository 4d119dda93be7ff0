"""The checked-in CRD matches the model, and its schema is one the API server accepts."""

from __future__ import annotations

from typing import Any

import yaml
from ffmpegjob_model import crd
from ffmpegjob_model.model import FFmpegJobSpec, FFmpegJobStatus


def _walk(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, child in node.get("properties", {}).items():
            out += _walk(child, f"{path}.{key}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
    return out


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load(crd.CRD_FILE.read_text())
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crd_matches_the_model() -> None:
    assert crd.CRD_FILE.read_text() == crd.render(), "run: python -m ffmpegjob_model.crd"
    if crd.CHART_CRD_FILE.exists():
        assert crd.CHART_CRD_FILE.read_text() == crd.render(), "run: python -m ffmpegjob_model.crd"
    assert crd.main(["--check"]) == 0


def test_schema_is_structural() -> None:
    forbidden = {"$ref", "$defs", "anyOf", "title", "nullable", "additionalProperties"}
    for path, node in _walk(_schema()):
        keys = set(node.keys())
        if isinstance(node.get("additionalProperties"), dict) and "properties" not in node:
            keys.discard("additionalProperties")  # a map of typed values is structural
        assert not forbidden & keys, f"{path}: {forbidden & keys}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


def test_schema_covers_every_model_field() -> None:
    props = _schema()["properties"]
    assert set(props["spec"]["properties"]) == {f.alias for f in FFmpegJobSpec.model_fields.values()}
    assert set(props["status"]["properties"]) == {f.alias for f in FFmpegJobStatus.model_fields.values()}
    # outputs: at least one unless spec.template fills them (a CEL rule, below)
    assert set(props["spec"]["required"]) == {"output"}


def test_bounds_enums_and_defaults_come_through() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    status = _schema()["properties"]["status"]["properties"]
    assert spec["timeoutSeconds"] == {
        "default": 3600, "description": "Whole-job deadline.", "maximum": 604800, "minimum": 1, "type": "integer"
    }
    assert spec["inputs"]["default"] == []
    assert spec["outputs"]["default"] == []
    assert spec["outputs"]["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["machine"]["pattern"].startswith("^[a-z0-9]")
    assert status["phase"]["enum"] == ["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
    assert status["conditions"]["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert status["startTime"] == {"format": "date-time", "type": "string"}
    assert status["result"]["items"]["properties"]["media"]["x-kubernetes-preserve-unknown-fields"] is True
    # status carries no defaults: a worker's partial merge patch must not grow fields
    assert not [p for p, n in _walk(_schema()["properties"]["status"]) if "default" in n]


def test_every_string_a_cel_rule_reads_is_bounded() -> None:
    """kube-apiserver refuses CEL rules whose estimated cost is unbounded."""
    spec = _schema()["properties"]["spec"]
    for path, node in _walk(spec):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node or ("pattern" in node and "{" in node["pattern"]), path


def test_crd_names_columns_and_rules() -> None:
    doc = yaml.safe_load(crd.CRD_FILE.read_text())
    version = doc["spec"]["versions"][0]
    assert doc["spec"]["names"]["shortNames"] == ["ffj"]
    assert version["subresources"] == {"status": {}}
    cols = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert cols == ["Phase", "Machine", "Progress", "Age", "Duration"]
    rules = " ".join(r["rule"] for r in _schema()["properties"]["spec"]["x-kubernetes-validations"])
    assert "oldSelf" in rules
    for mutable in crd.MUTABLE_SPEC_FIELDS:
        assert f"self.{mutable}" not in rules
    assert "self.machine == oldSelf.machine" in rules

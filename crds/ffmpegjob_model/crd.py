"""Generate the FFmpegJob and FFmpegJobTemplate CustomResourceDefinitions from the pydantic models.

    python -m ffmpegjob_model.crd            # rewrite crds/ffmpegjobs.yaml, crds/ffmpegjobtemplates.yaml
                                             # (and the chart's copies)
    python -m ffmpegjob_model.crd --check    # exit 1 when a checked-in copy differs

The OpenAPI schema must be *structural* (kube-apiserver refuses anything else): every node has a
type, `$ref`/`anyOf`-with-null/`title`/`additionalProperties: false` are not allowed, so pydantic's
JSON Schema is rewritten here. What JSON Schema cannot say is written as CEL rules.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from .model import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    FFmpegJobSpec,
    FFmpegJobStatus,
)
from .templates import (
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    TEMPLATE_SHORT_NAMES,
    TEMPLATE_SINGULAR,
    FFmpegJobTemplateSpec,
)

CRDS_DIR = Path(__file__).resolve().parents[1]
CRD_FILE = CRDS_DIR / "ffmpegjobs.yaml"
CHART_CRD_FILE = CRDS_DIR.parent / "charts" / "kubeffmpeg" / "crds" / "ffmpegjobs.yaml"
TEMPLATE_CRD_FILE = CRDS_DIR / f"{TEMPLATE_PLURAL}.yaml"
CHART_TEMPLATE_CRD_FILE = CHART_CRD_FILE.parent / f"{TEMPLATE_PLURAL}.yaml"

# Spec fields that may change after creation; everything else is fixed once the object exists
# (a running Job cannot follow a changed command). ttlSecondsAfterFinished stays mutable as on a
# batch/v1 Job.
MUTABLE_SPEC_FIELDS = frozenset({"cancel", "suspend", "ttlSecondsAfterFinished", "priority"})
# Filled once by the operator from spec.template (ffmpegjob_model.templates): they may change
# while a template job has no commands yet.
TEMPLATE_FILLED_FIELDS = frozenset({"commands", "outputs"})

Schema = dict[str, Any]


# ------------------------------------------------------------------------------ JSON -> OpenAPI
def _resolve(node: Any, defs: dict[str, Any], keep_defaults: bool) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs, keep_defaults) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs, keep_defaults)
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "default" and (value is None or not keep_defaults):
            continue
        if key == "additionalProperties" and value is False:
            continue  # unknown fields are pruned by the API server instead
        if key == "properties":
            out[key] = {k: _resolve(v, defs, keep_defaults) for k, v in value.items()}
        else:
            out[key] = _resolve(value, defs, keep_defaults)
    if "const" in out:  # Literal["x"]: structural schemas have enum, not const
        out["enum"] = [out.pop("const")]
    any_of = out.pop("anyOf", None)
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {any_of} structurally")
        # No `nullable`: the API server then drops explicit nulls, so `has()` in CEL stays true
        # to its meaning and clients (exclude_none) never send them anyway.
        out = {**non_null[0], **out}
    if out.get("additionalProperties") is True and "properties" not in out:
        # dict[str, Any]: free-form object, kept as written
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    if not any(k in out for k in ("type", "properties", "items", "enum", "x-kubernetes-preserve-unknown-fields")):
        out["x-kubernetes-preserve-unknown-fields"] = True  # `Any`: a value of any JSON type
    if "format" in out and out["format"] == "date-time":
        out["type"] = "string"
    return out


def openapi(model: type[Any], keep_defaults: bool) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = _resolve(raw, raw.get("$defs", {}), keep_defaults)
    if keep_defaults:  # pydantic leaves default_factory values out of the JSON Schema
        for name, field in model.model_fields.items():
            if field.default_factory is not None:
                schema["properties"][field.alias or name]["default"] = field.default_factory()
    return schema


# ------------------------------------------------------------------------------------ CEL rules
def _immutable_rule(spec_props: dict[str, Any], required: set[str]) -> str:
    """One transition rule on the whole spec: absent-vs-present changes are caught too, which
    per-field `self == oldSelf` rules would miss."""
    parts = []
    for name in spec_props:
        if name in MUTABLE_SPEC_FIELDS:
            continue
        if name in required or "default" in spec_props[name]:
            rule = f"self.{name} == oldSelf.{name}"
        else:
            rule = f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"
        if name in TEMPLATE_FILLED_FIELDS:
            rule = f"({rule}) || (has(self.template) && !has(oldSelf.commands))"
        parts.append(rule)
    return " && ".join(f"({p})" for p in parts)


def spec_schema() -> Schema:
    schema = openapi(FFmpegJobSpec, keep_defaults=True)
    props = schema["properties"]
    # Names are placeholders and file names: unique within the list (the API server enforces
    # this natively for list-maps, and it is cheaper than CEL).
    for list_field in ("inputs", "outputs"):
        props[list_field]["x-kubernetes-list-type"] = "map"
        props[list_field]["x-kubernetes-list-map-keys"] = ["name"]
    props["webhook"].setdefault("x-kubernetes-validations", []).append(
        {
            "rule": "self.url.startsWith('https://') || self.url.startsWith('http://')",
            "message": "webhook.url must be an http(s) URL (plain http only where the operator allows it)",
        }
    )
    props["parallel"].setdefault("x-kubernetes-validations", []).append(
        {
            "rule": "(has(self.chunks) ? 1 : 0) + (has(self.chunkSeconds) ? 1 : 0) + (has(self.mode) ? 1 : 0) == 1",
            "message": "parallel takes exactly one of chunks (2..256), chunkSeconds or mode: auto",
        }
    )
    free_form = "has(self.commands) && size(self.commands) > 0"
    schema["x-kubernetes-validations"] = [
        {
            "rule": _immutable_rule(props, set(schema.get("required", []))),
            "message": "spec is immutable once created, except cancel, suspend and ttlSecondsAfterFinished",
        },
        {
            "rule": f"!({free_form}) || (!has(self.filterComplex) && self.inputs.all(i, !has(i.options)) "
            "&& self.outputs.all(o, !has(o.options) && !has(o.maps)))",
            "message": "inputs[].options, outputs[].options/maps and filterComplex are the structured form: "
            "leave them out when commands are given",
        },
        {
            "rule": f"size(self.inputs) > 0 || ({free_form}) || has(self.template)",
            "message": "at least one input is required unless commands generate their own sources",
        },
        {
            "rule": "size(self.outputs) > 0 || has(self.template)",
            "message": "at least one output is required (or a template that declares them)",
        },
        {
            "rule": "self.outputs.all(o, !self.inputs.exists(i, i.name == o.name))",
            "message": "an output may not have the name of an input",
        },
    ]
    return schema


def status_schema() -> Schema:
    return openapi(FFmpegJobStatus, keep_defaults=False)


# ------------------------------------------------------------------------------------------ CRD
PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Machine", "type": "string", "jsonPath": ".spec.machine"},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent", "description": "Percent"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Job", "type": "string", "jsonPath": ".status.jobName", "priority": 1},
    {"name": "Template", "type": "string", "jsonPath": ".spec.template.name", "priority": 1},
]


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An FFmpeg job: chained FFmpeg commands run as a Job on a node pool.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def template_spec_schema() -> Schema:
    schema = openapi(FFmpegJobTemplateSpec, keep_defaults=True)
    props = schema["properties"]
    for list_field in ("parameters", "inputs", "outputs"):
        props[list_field]["x-kubernetes-list-type"] = "map"
        props[list_field]["x-kubernetes-list-map-keys"] = ["name"]
    schema["x-kubernetes-validations"] = [
        {
            "rule": "self.outputs.all(o, !self.inputs.exists(i, i.name == o.name))",
            "message": "an output may not have the name of an input",
        },
    ]
    return schema


def template_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{TEMPLATE_PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": TEMPLATE_KIND,
                "listKind": f"{TEMPLATE_KIND}List",
                "plural": TEMPLATE_PLURAL,
                "singular": TEMPLATE_SINGULAR,
                "shortNames": list(TEMPLATE_SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {"name": "Description", "type": "string", "jsonPath": ".spec.description"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A job recipe: FFmpeg commands with typed parameters that FFmpegJobs "
                            "name in spec.template.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": template_spec_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `python -m ffmpegjob_model.crd` from crds/ffmpegjob_model/model.py: do not edit.\n"
TEMPLATE_HEADER = (
    "# Generated by `python -m ffmpegjob_model.crd` from crds/ffmpegjob_model/templates.py: do not edit.\n"
)


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=110)


def render_template_crd() -> str:
    return TEMPLATE_HEADER + yaml.safe_dump(template_crd(), sort_keys=False, width=110)


def targets() -> list[Path]:
    return [CRD_FILE] + ([CHART_CRD_FILE] if CHART_CRD_FILE.parent.is_dir() else [])


def template_targets() -> list[Path]:
    return [TEMPLATE_CRD_FILE] + ([CHART_TEMPLATE_CRD_FILE] if CHART_CRD_FILE.parent.is_dir() else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a checked-in copy is out of date")
    args = parser.parse_args(argv)
    wanted = {p: render() for p in targets()} | {p: render_template_crd() for p in template_targets()}
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p} is out of date: run python -m ffmpegjob_model.crd", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p])
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

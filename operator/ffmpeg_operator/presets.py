"""FFmpegJobs made from an FFmpegJobTemplate (`spec.template`) and written with kubectl: the
operator resolves them once, before anything else (ffmpegjob_model.templates), checks the result
with the same safety rules as any job, and writes the resolved `commands` and `outputs` into the
FFmpegJob's spec (the CRD lets them be filled exactly once, while `commands` is absent) before the
Job exists, so that the worker reads what the operator checked and users see what runs.

Jobs submitted over REST arrive resolved by the api: their `commands` are set and nothing
happens here."""

from __future__ import annotations

import logging
from typing import Any, cast

from ffmpegjob_model.lenient import read_spec
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.templates import TEMPLATE_PLURAL, TemplateError, apply_template, read_template
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from .context import Context

log = logging.getLogger("ffmpeg_operator")


class TemplateRefused(Exception):
    """The template job cannot be resolved: it ends Failed, ValidationFailed, with this message."""


def needs_resolution(spec: dict[str, Any]) -> bool:
    return bool(spec.get("template")) and not spec.get("commands")


def resolve(c: Context, namespace: str, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the spec with commands and outputs filled, a message saying from what). Not written yet."""
    ref = spec.get("template") or {}
    name = str(ref.get("name") or "")
    try:
        model = read_spec(dict(spec))
    except ValidationError as e:
        raise TemplateRefused(f"invalid spec: {e}") from None
    try:
        obj = c.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, TEMPLATE_PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            raise TemplateRefused(f"FFmpegJobTemplate {name!r} not found in namespace {namespace!r}") from None
        raise
    obj = cast(dict[str, Any], obj)
    try:
        resolved = apply_template(model, read_template(obj))
    except TemplateError as e:
        raise TemplateRefused(str(e)) from None
    new = {**spec, "commands": resolved.commands, "outputs": [o.to_k8s() for o in resolved.outputs]}
    generation = (obj.get("metadata") or {}).get("generation")
    return new, f"commands from FFmpegJobTemplate {name} (generation {generation})"


def write(c: Context, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Fill the FFmpegJob's commands and outputs; the object as the API server stored it."""
    body = {"spec": {"commands": spec["commands"], "outputs": spec["outputs"]}}
    try:
        out = c.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)
    except ApiException as e:
        if e.status == 422:  # the CRD refused (filled already, or not a template job)
            raise TemplateRefused(f"cannot record the resolved commands: {e.body}") from None
        raise
    log.info("FFmpegJob %s/%s: resolved from template %s", namespace, name, spec["template"].get("name"))
    return cast(dict[str, Any], out)

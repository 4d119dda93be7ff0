"""Presets over REST (docs/presets.md): a request on either surface may name an FFmpegJobTemplate
(`template: {name, parameters}`) instead of writing commands. The api resolves it with the one
resolver of the contract package (`ffmpegjob_model.templates.apply_template`) so that a bad
template, unknown or missing parameters are a 400 before anything is created; the FFmpegJob is
created with the resolved `commands` and `outputs` and its `spec.template` (what it was made
from), and the usual `Jobs.validate` applies the same safety rules as to hand-written commands.
`GET /api/templates` lists the templates of the API's namespace to every tenant."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Path
from ffmpegjob_model.model import GROUP, VERSION, FFmpegJobSpec, InputFile, OutputLocation, TemplateRef
from ffmpegjob_model.templates import (
    TEMPLATE_PLURAL,
    FFmpegJobTemplateSpec,
    TemplateError,
    apply_template,
    describe,
    read_template,
)
from kubernetes.client.rest import ApiException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .compile import Submission, parallel_spec
from .errors import ERROR_RESPONSES, ApiError
from .schemas import ParallelRequest, TemplateRequest
from .services import Auth, Services, Svc

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
TAG = "Presets"
TemplateName = Path(description="The template's name", min_length=1, max_length=253)


def _read(svc: Services, name: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], svc.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, svc.kube.namespace, TEMPLATE_PLURAL, name))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def load(svc: Services, name: str) -> FFmpegJobTemplateSpec:
    """The named template, or a 400 (unknown name, or a template that is not usable)."""
    obj = _read(svc, name)
    if obj is None:
        raise ApiError(400, f"template {name!r} not found (GET /api/templates lists them)")
    try:
        return read_template(obj)
    except TemplateError as e:
        raise ApiError(400, str(e)) from None


def template_spec(svc: Services, req: TemplateRequest, sub: Submission, inputs: list[InputFile], output_dir: str,
                  timeout_seconds: int, parallel: ParallelRequest | None) -> FFmpegJobSpec:
    """The FFmpegJob spec of a template request: resolved commands and outputs, `spec.template`
    recording what it was made from. 400 for anything the resolver refuses."""
    template = load(svc, req.name)
    try:
        spec = FFmpegJobSpec(
            tenant=sub.tenant, inputs=inputs, machine=sub.machine, output=OutputLocation(dir_id=output_dir),
            webhook=sub.webhook, timeout_seconds=timeout_seconds,
            ttl_seconds_after_finished=sub.ttl_seconds_after_finished, parallel=parallel_spec(parallel),
            priority=sub.priority, template=TemplateRef(name=req.name, parameters=req.parameters or None),
        )
        return apply_template(spec, template)
    except ValueError as e:  # TemplateError, or pydantic's ValidationError (e.g. the template's name)
        raise ApiError(400, str(e)) from None


def input_names(svc: Services, req: TemplateRequest, count: int) -> list[str]:
    """"FFmpeg API" tasks list inputs without names: they are the template's inputs, in order."""
    names = [f.name for f in load(svc, req.name).inputs]
    if count != len(names):
        raise ApiError(400, f"Invalid task format: template {req.name!r} takes {len(names)} input(s) "
                            f"({', '.join(names) or 'none'}), the task gives {count}")
    return names


# ------------------------------------------------------------------------------------- listing
class TemplateParameterOut(BaseModel):
    name: str
    type: str
    description: str | None = None
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, alias="maxLength")


class TemplateFileOut(BaseModel):
    name: str
    description: str | None = None


class TemplateOut(BaseModel):
    name: str
    description: str | None = None
    inputs: list[TemplateFileOut]
    outputs: list[TemplateFileOut]
    parameters: list[TemplateParameterOut]


class TemplateList(BaseModel):
    data: list[TemplateOut]


class TemplateResponse(BaseModel):
    data: TemplateOut


def _list(svc: Services) -> list[TemplateOut]:
    raw = cast(dict[str, Any], svc.kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, svc.kube.namespace, TEMPLATE_PLURAL))
    out: list[TemplateOut] = []
    for obj in sorted(raw.get("items") or [], key=lambda o: str((o.get("metadata") or {}).get("name"))):
        try:
            out.append(TemplateOut.model_validate(describe(obj)))
        except TemplateError:
            continue  # an unusable template is not offered (a request naming it gets the reason)
    return out


@router.get("/templates", response_model=TemplateList, response_model_exclude_none=True, tags=[TAG],
            summary="Extension: the job templates (presets) a request may name")
async def list_templates(who: Auth, svc: Svc) -> TemplateList:
    return TemplateList(data=await run_in_threadpool(_list, svc))


@router.get("/templates/{name}", response_model=TemplateResponse, response_model_exclude_none=True, tags=[TAG],
            summary="Extension: one job template")
async def get_template(who: Auth, svc: Svc, name: str = TemplateName) -> TemplateResponse:
    obj = await run_in_threadpool(_read, svc, name)
    if obj is None:
        raise ApiError(404, f"template {name!r} not found")
    try:
        return TemplateResponse(data=TemplateOut.model_validate(describe(obj)))
    except TemplateError as e:
        raise ApiError(404, str(e)) from None

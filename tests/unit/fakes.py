"""Fakes of the two seams the components talk through, for unit tests that need no stack:

- `FakeKubernetes`: an in-memory API server behind the subset of the official client's
  `CustomObjectsApi`, `CoreV1Api`, `BatchV1Api` and `RbacAuthorizationV1Api` calls our code
  makes (create/get/list with label selectors and paging, merge patches with resourceVersion
  preconditions, the status subresource, deletes with uid preconditions and owner cascade).
  It has no controllers: a test plays the Job controller and the kubelet (`add_pod`, `set_job_status`).
- `FakeBucket`: an in-memory S3 bucket behind the subset of boto3's S3 client our code calls.
  Presigning is left to a real boto3 client (local computation, no request).

`api_services` and `operator_context` wire the components' own classes (Kube, Storage, Jobs,
Context, ...) over them, so that what is tested is the components' code, not the fakes."""

from __future__ import annotations

import base64
import copy
import functools
import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.settings import S3Settings
from kubernetes import client
from kubernetes.client.rest import ApiException

Obj = dict[str, Any]
NAMESPACE = "ffmpeg"
S3 = S3Settings.model_validate({"endpoint_url": "http://minio.test:9000", "public_endpoint_url": "https://s3.test",
                                "bucket": "media", "region": "us-east-1",
                                "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
POOLS_YAML = """\
cpu:
  image: worker:cpu
  nodeSelector: {kubeffmpeg.io/pool: cpu}
gpu:
  image: worker:gpu
  nodeSelector: {kubeffmpeg.io/pool: gpu}
  resources: {limits: {nvidia.com/gpu: 1}}
"""

_SERIALIZER = client.ApiClient()


def stamp(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------- Kubernetes
@dataclass
class Raw:
    """What the client returns with `_preload_content=False`: the response's JSON bytes."""

    data: bytes


def _merge(target: Obj, patch: Obj) -> Obj:
    """JSON merge patch (RFC 7386): null deletes a key, objects merge, anything else replaces."""
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


KINDS = {  # kind -> (apiVersion, has a status subresource)
    "FFmpegJob": (f"{GROUP}/{VERSION}", True),
    "Job": ("batch/v1", True),
    "Pod": ("v1", True),
    "Secret": ("v1", False),
    "ConfigMap": ("v1", False),
    "ServiceAccount": ("v1", False),
    "Event": ("v1", False),
    "Role": ("rbac.authorization.k8s.io/v1", False),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", False),
}


class FakeKubernetes:
    """One in-memory cluster; `.custom`, `.core`, `.batch` and `.rbac` are the client APIs."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name) of every create, patch, delete
        # Called with each object created, after the answer is made: a test plays a controller.
        self.on_create: list[Callable[[Obj], None]] = []
        self.custom = _CustomObjects(self)
        self.core = _CoreV1(self)
        self.batch = _BatchV1(self)
        self.rbac = _RbacV1(self)

    # ------------------------------------------------------------------------- storage verbs
    def create(self, kind: str, namespace: str, body: Any) -> Obj:
        obj: Obj = copy.deepcopy(_SERIALIZER.sanitize_for_serialization(body))  # models, datetimes -> JSON
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = f"{meta.get('generateName', kind.lower() + '-')}{next(self._uid):05d}"
        key = (kind, namespace, meta["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj.setdefault("apiVersion", KINDS[kind][0])
        obj["kind"] = kind
        meta.update(namespace=namespace, uid=f"uid-{kind.lower()}-{next(self._uid)}",
                    resourceVersion=str(next(self._rv)), creationTimestamp=stamp(), generation=1)
        if kind == "Secret" and "stringData" in obj:  # the API server stores stringData as data
            obj.setdefault("data", {}).update(
                {k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
        self.objects[key] = obj
        self.writes.append(("create", kind, meta["name"]))
        answer = copy.deepcopy(obj)
        for hook in self.on_create:
            hook(copy.deepcopy(obj))
        return answer

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        return copy.deepcopy(obj)

    def find(self, kind: str, namespace: str = NAMESPACE, name: str | None = None) -> Obj | None:
        """For assertions: the object, or the only object of that kind (None when absent)."""
        if name is not None:
            return copy.deepcopy(self.objects.get((kind, namespace, name)))
        found = self.select(kind, namespace)
        assert len(found) <= 1, f"{len(found)} {kind}s"
        return found[0] if found else None

    def select(self, kind: str, namespace: str | None, selector: str | None = None) -> list[Obj]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and namespace in (None, ns)
                and selector_matches(selector, o["metadata"].get("labels") or {})]

    def list_response(self, kind: str, namespace: str | None, label_selector: str | None = None,
                      limit: int | None = None, _continue: str | None = None, **_: Any) -> Obj:
        items = self.select(kind, namespace, label_selector)
        start = int(_continue or 0)
        end = len(items) if not limit else start + limit
        meta: Obj = {"resourceVersion": str(next(self._rv))}
        if end < len(items):
            meta["continue"] = str(end)
        return {"apiVersion": KINDS[kind][0], "kind": f"{kind}List", "metadata": meta, "items": items[start:end]}

    def patch(self, kind: str, namespace: str, name: str, body: Any, subresource: str | None = None) -> Obj:
        key = (kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise ApiException(status=404, reason="NotFound")
        patch: Obj = _SERIALIZER.sanitize_for_serialization(body)
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        has_status = KINDS[kind][1]
        if subresource == "status":
            patch = {"status": patch.get("status") or {}}
        elif has_status:
            patch = {k: v for k, v in patch.items() if k != "status"}  # the main resource ignores status
        merged = _merge(current, patch)
        merged["metadata"]["resourceVersion"] = str(next(self._rv))
        if merged.get("spec") != current.get("spec"):
            merged["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        self.objects[key] = merged
        self.writes.append(("patch" if subresource is None else f"patch/{subresource}", kind, name))
        return copy.deepcopy(merged)

    def delete(self, kind: str, namespace: str, name: str, body: Any = None) -> Obj:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        pre = getattr(body, "preconditions", None)
        if pre is not None and pre.uid is not None and pre.uid != obj["metadata"]["uid"]:
            raise ApiException(status=409, reason="Conflict")
        del self.objects[(kind, namespace, name)]
        self.writes.append(("delete", kind, name))
        self._collect_garbage(obj["metadata"]["uid"])
        return obj

    def _collect_garbage(self, owner_uid: str) -> None:
        """What the garbage collector does: dependents of a deleted owner go too."""
        for (k, ns, n), o in list(self.objects.items()):
            if any(r.get("uid") == owner_uid for r in o["metadata"].get("ownerReferences") or []):
                self.delete(k, ns, n)

    # ------------------------------------------------------------- what the controllers would do
    def add_ffmpegjob(self, name: str, spec: Obj, status: Obj | None = None, namespace: str = NAMESPACE,
                      labels: dict[str, str] | None = None) -> Obj:
        body: Obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob",
                     "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        if status is not None:
            body["status"] = status
        return self.create("FFmpegJob", namespace, body)

    def set_status(self, kind: str, name: str, status: Obj, namespace: str = NAMESPACE) -> Obj:
        return self.patch(kind, namespace, name, {"status": status}, subresource="status")

    def add_pod(self, job: Obj, phase: str, node: str = "node-cpu", **status: Any) -> Obj:
        """A pod of `job`, as the Job controller creates it and the kubelet reports it."""
        template = job["spec"]["template"]
        meta = template.get("metadata") or {}
        pod = self.create("Pod", job["metadata"]["namespace"], {
            "metadata": {"generateName": f"{job['metadata']['name']}-", "labels": dict(meta.get("labels") or {}),
                         "annotations": dict(meta.get("annotations") or {}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "controller": True,
                                              "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}]},
            "spec": {**template["spec"], "nodeName": node},
        })
        return self.set_status("Pod", pod["metadata"]["name"], {"phase": phase, **status},
                               namespace=job["metadata"]["namespace"])

    def events(self, reason: str | None = None) -> list[Obj]:
        return [e for e in self.select("Event", None) if reason is None or e.get("reason") == reason]


def _returns(api_type: str | None, obj: Obj, preload: bool) -> Any:
    """The client's return value: raw JSON, the typed model, or (custom objects) a dict."""
    if not preload:
        return Raw(json.dumps(obj).encode())
    if api_type is None:
        return obj
    return _SERIALIZER.deserialize(json.dumps(obj), api_type, "application/json")


class _CustomObjects:
    def __init__(self, k: FakeKubernetes) -> None:
        self.k = k

    @staticmethod
    def _check(group: str, version: str, plural: str) -> None:
        assert (group, version, plural) == (GROUP, VERSION, PLURAL), (group, version, plural)

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: Obj, **_: Any) -> Obj:
        self._check(group, version, plural)
        return self.k.create("FFmpegJob", namespace, body)

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str, **_: Any) -> Obj:
        self._check(group, version, plural)
        return self.k.get("FFmpegJob", namespace, name)

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                      _preload_content: bool = True, **kw: Any) -> Any:
        self._check(group, version, plural)
        return _returns(None, self.k.list_response("FFmpegJob", namespace, **kw), _preload_content)

    def list_cluster_custom_object(self, group: str, version: str, plural: str, _preload_content: bool = True,
                                   **kw: Any) -> Any:
        self._check(group, version, plural)
        return _returns(None, self.k.list_response("FFmpegJob", None, **kw), _preload_content)

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                       body: Obj, **_: Any) -> Obj:
        self._check(group, version, plural)
        return self.k.patch("FFmpegJob", namespace, name, body)

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: Obj, **_: Any) -> Obj:
        self._check(group, version, plural)
        return self.k.patch("FFmpegJob", namespace, name, body, subresource="status")

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                        body: Any = None, **_: Any) -> Obj:
        self._check(group, version, plural)
        return self.k.delete("FFmpegJob", namespace, name, body)


class _Typed:
    """`<verb>_namespaced_<kind>` and `list_<kind>_for_all_namespaces` of a typed client API."""

    KINDS: dict[str, tuple[str, str]] = {}  # snake_case kind -> (Kind, model type)

    def __init__(self, k: FakeKubernetes) -> None:
        self.k = k

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        if attr.startswith("list_") and attr.endswith("_for_all_namespaces"):
            kind, model = self.KINDS[attr[len("list_"):-len("_for_all_namespaces")]]
            return lambda _preload_content=True, **kw: _returns(
                f"{model}List", self.k.list_response(kind, None, **kw), _preload_content)
        verb, sep, snake = attr.partition("_namespaced_")
        if not sep or snake not in self.KINDS:
            raise AttributeError(attr)
        kind, model = self.KINDS[snake]
        if verb == "create":
            return lambda namespace, body, **kw: _returns(model, self.k.create(kind, namespace, body),
                                                          kw.get("_preload_content", True))
        if verb == "read":
            return lambda name, namespace, **kw: _returns(model, self.k.get(kind, namespace, name),
                                                          kw.get("_preload_content", True))
        if verb == "list":
            return lambda namespace, _preload_content=True, **kw: _returns(
                f"{model}List", self.k.list_response(kind, namespace, **kw), _preload_content)
        if verb == "patch":
            return lambda name, namespace, body, **kw: _returns(model, self.k.patch(kind, namespace, name, body),
                                                                kw.get("_preload_content", True))
        if verb == "delete":
            return lambda name, namespace, body=None, **kw: self.k.delete(kind, namespace, name, body)
        raise AttributeError(attr)


class _CoreV1(_Typed):
    KINDS = {"secret": ("Secret", "V1Secret"), "config_map": ("ConfigMap", "V1ConfigMap"),
             "service_account": ("ServiceAccount", "V1ServiceAccount"), "pod": ("Pod", "V1Pod"),
             "event": ("Event", "CoreV1Event")}


class _BatchV1(_Typed):
    KINDS = {"job": ("Job", "V1Job")}


class _RbacV1(_Typed):
    KINDS = {"role": ("Role", "V1Role"), "role_binding": ("RoleBinding", "V1RoleBinding")}


# --------------------------------------------------------------------------------------- S3
@dataclass
class _Object:
    body: bytes
    content_type: str
    modified: datetime


def _missing(op: str, code: str = "NoSuchKey") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "not found"}}, op)


@dataclass
class FakeBucket:
    """One bucket: the boto3 S3 client calls of the API's storage and the operator's clean-ups."""

    name: str = S3.bucket
    objects: dict[str, _Object] = field(default_factory=dict)
    aborted_uploads: list[str] = field(default_factory=list)
    _uploads: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, key: str, body: bytes = b"", content_type: str = "binary/octet-stream") -> None:
        self.objects[key] = _Object(body, content_type, datetime.now(UTC))

    def _bucket(self, bucket: str) -> None:
        if bucket != self.name:
            raise _missing("Any", "NoSuchBucket")

    def put_object(self, Bucket: str, Key: str, Body: bytes = b"", ContentType: str = "binary/octet-stream",
                   **_: Any) -> Obj:
        self._bucket(Bucket)
        self.put(Key, Body if isinstance(Body, bytes) else Body.read(), ContentType)
        return {}

    def get_object(self, Bucket: str, Key: str, **_: Any) -> Obj:
        self._bucket(Bucket)
        o = self.objects.get(Key)
        if o is None:
            raise _missing("GetObject")
        return {"Body": io.BytesIO(o.body), "ContentLength": len(o.body), "ContentType": o.content_type,
                "LastModified": o.modified}

    def head_object(self, Bucket: str, Key: str, **_: Any) -> Obj:
        self._bucket(Bucket)
        o = self.objects.get(Key)
        if o is None:
            raise _missing("HeadObject", "404")
        return {"ContentLength": len(o.body), "ContentType": o.content_type, "LastModified": o.modified}

    def delete_object(self, Bucket: str, Key: str, **_: Any) -> Obj:
        self._bucket(Bucket)
        self.objects.pop(Key, None)
        return {}

    def delete_objects(self, Bucket: str, Delete: Obj, **_: Any) -> Obj:
        self._bucket(Bucket)
        for o in Delete["Objects"]:
            self.objects.pop(o["Key"], None)
        return {}

    def copy(self, CopySource: Obj, Bucket: str, Key: str, **_: Any) -> None:
        self._bucket(Bucket)
        src = self.objects.get(CopySource["Key"])
        if src is None:
            raise _missing("CopyObject", "404")
        self.objects[Key] = _Object(src.body, src.content_type, datetime.now(UTC))

    def upload_fileobj(self, Fileobj: Any, Bucket: str, Key: str, ExtraArgs: Obj | None = None, **_: Any) -> None:
        self.put_object(Bucket, Key, Fileobj.read(), (ExtraArgs or {}).get("ContentType", "binary/octet-stream"))

    def create_multipart_upload(self, Bucket: str, Key: str, **_: Any) -> Obj:
        self._bucket(Bucket)
        return {"UploadId": f"upload-{next(self._uploads)}"}

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str, **_: Any) -> Obj:
        self.aborted_uploads.append(UploadId)
        return {}

    def generate_presigned_url(self, op: str, Params: Obj, ExpiresIn: int = 3600, **_: Any) -> str:
        return f"{S3.endpoint_url}/{Params['Bucket']}/{Params['Key']}?X-Amz-Expires={ExpiresIn}&X-Amz-Signature=fake"

    def get_paginator(self, op: str) -> Any:
        assert op == "list_objects_v2", op
        bucket = self

        class Pages:
            def paginate(self, Bucket: str, Prefix: str = "", Delimiter: str | None = None, **_: Any) -> list[Obj]:
                bucket._bucket(Bucket)
                contents, prefixes = [], set()
                for key in sorted(bucket.objects):
                    if not key.startswith(Prefix):
                        continue
                    rest = key[len(Prefix):]
                    if Delimiter and Delimiter in rest:
                        prefixes.add(Prefix + rest.split(Delimiter, 1)[0] + Delimiter)
                        continue
                    o = bucket.objects[key]
                    contents.append({"Key": key, "Size": len(o.body), "LastModified": o.modified})
                page: Obj = {"Contents": contents} if contents else {}
                if prefixes:
                    page["CommonPrefixes"] = [{"Prefix": p} for p in sorted(prefixes)]
                return [page]

        return Pages()


# ------------------------------------------------------------------------------- wiring
@functools.cache
def _storage() -> Any:
    """The API's Storage, built once: making its boto3 clients takes most of a second."""
    from ffmpeg_api.storage import Storage

    return Storage(S3)


def add_pools(k: FakeKubernetes, name: str = "kubeffmpeg-pools", text: str = POOLS_YAML) -> None:
    from ffmpegjob_model.pools import POOLS_KEY

    k.create("ConfigMap", NAMESPACE, {"metadata": {"name": name}, "data": {POOLS_KEY: text}})


def api_services(k: FakeKubernetes, bucket: FakeBucket, keys: dict[str, str], **settings: Any) -> Any:
    """The API's `Services` as `Services.build` makes them, over the fakes: `keys` is tenant ->
    API key (stored hashed in the key Secret, as the chart does); `settings` override ApiSettings."""
    from ffmpeg_api.jobs import Jobs
    from ffmpeg_api.keystore import KeyIndex, decode_secret, hash_key
    from ffmpeg_api.kube import Kube, TTLCache
    from ffmpeg_api.services import Services
    from ffmpeg_api.settings import ApiSettings
    from ffmpeg_api.watcher import JobWatcher

    s = ApiSettings(ffmpeg_namespace=NAMESPACE, **settings)
    if k.find("ConfigMap", name=s.pools_configmap) is None:
        add_pools(k, s.pools_configmap)
    k.create("Secret", NAMESPACE, {"metadata": {"name": s.api_keys_secret},
                                   "stringData": {t: hash_key(key) for t, key in keys.items()}})
    kube = Kube(_SERIALIZER, NAMESPACE)
    kube.custom, kube.core = k.custom, k.core  # type: ignore[assignment]
    storage = copy.copy(_storage())
    storage.client = bucket  # presigning stays boto3's (local computation, no request)

    class Watcher(JobWatcher):
        """No watch: a synchronous request gets the job as it is at once, as if its wait ran out
        (or the job had finished already, when a test's `on_create` hook finished it)."""

        async def wait(self, name: str, timeout: float) -> dict[str, Any] | None:
            return self.kube.get_ffmpegjob(name)

    pools = TTLCache(lambda: kube.read_pools(s.pools_configmap), s.pools_cache_seconds)
    index = TTLCache(lambda: KeyIndex(decode_secret(kube.read_secret_data(s.api_keys_secret) or {})),
                     s.auth_cache_seconds)
    return Services(s, kube, storage, Jobs(kube, s, S3, pools), Watcher(kube), index)


def operator_context(k: FakeKubernetes, bucket: FakeBucket, **settings: Any) -> Any:
    """The operator's `Context` as `Context.from_env` makes it, over the fakes."""
    from ffmpeg_operator.context import Context, PoolCache
    from ffmpeg_operator.grants import Signer
    from ffmpeg_operator.kube import Kube
    from ffmpeg_operator.metrics import Metrics
    from ffmpeg_operator.settings import OperatorSettings

    class FakeKube(Kube):
        @property
        def core(self) -> Any:
            return k.core

        @property
        def batch(self) -> Any:
            return k.batch

        @property
        def custom(self) -> Any:
            return k.custom

        @property
        def rbac(self) -> Any:
            return k.rbac

    s = OperatorSettings(**{"ffmpeg_namespace": NAMESPACE, "grant_multipart_parts": 0, "metrics_port": 0,
                            **settings})
    if k.find("ConfigMap", name=s.pools_configmap) is None:
        add_pools(k, s.pools_configmap)
    kube = FakeKube(_SERIALIZER)
    c = Context(settings=s, kube=kube, metrics=Metrics(),
                pools=PoolCache(kube, s.home_namespace(), s.pools_configmap, s.pools_cache_seconds))
    c.__dict__.update(s3=S3, storage=bucket, signer=Signer(S3, client=bucket))  # its cached properties
    return c

"""Storage grants for worker pods: presigned URLs instead of credentials.

`presign_grants` is the generic part (any keys to read, any keys to write); `job_grants` is what
one FFmpegJob's pod gets. The format is `ffmpegjob_model.grants.Grants`. Presigning is local
computation (SigV4), except a multipart upload, which the operator initiates itself: the
CompleteMultipartUpload and UploadPart URLs must name its UploadId.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from ffmpegjob_model.grants import (
    MAX_PART_BYTES,
    MAX_PRESIGN_SECONDS,
    Grants,
    MultipartGrant,
    ObjectGrant,
    PrefixGrant,
)
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.outputs import OutputKind, output_kind
from ffmpegjob_model.s3client import s3_client
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import (
    CHECKPOINT_DONE,
    checkpoint_grant_name,
    dir_prefix,
    file_key,
    scratch_prefix,
)
from ffmpegjob_model.urls import BadInputSource, InputNotFound, input_storage_key

log = logging.getLogger("ffmpeg_operator.grants")
MAX_CHECKPOINT_OBJECTS = 256  # checkpoint objects granted per job (two URLs each)


@dataclass(frozen=True)
class Write:
    """A key to write: a single PUT (<= 5 GiB), plus a multipart upload of `parts` part URLs
    when `parts` > 0, plus a DELETE (to take back a partial result) when `delete`."""

    key: str
    parts: int = 0
    content_type: str | None = None
    delete: bool = True


class Signer:
    """Presigns requests on the bucket for the endpoint pods reach it at (`S3_ENDPOINT_URL`)."""

    def __init__(self, s3: S3Settings, client: Any | None = None) -> None:
        self.bucket = s3.bucket
        self.client = client or s3_client(s3)
        session = boto3.session.Session(aws_access_key_id=s3.access_key_id,
                                        aws_secret_access_key=s3.secret_access_key, region_name=s3.region)
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no storage credentials: the operator cannot presign worker grants")
        endpoint = s3.endpoint_url or f"https://s3.{s3.region}.amazonaws.com"
        self.sigv4 = SigV4(endpoint, s3.region, credentials)

    def get(self, key: str, expires: int) -> str:
        return self.sigv4.presign("GET", self.bucket, key, expires)

    def put(self, key: str, expires: int, content_type: str | None = None) -> str:
        return self.sigv4.presign("PUT", self.bucket, key, expires, content_type=content_type)

    def delete(self, key: str, expires: int) -> str:
        return self.sigv4.presign("DELETE", self.bucket, key, expires)

    def multipart(self, key: str, parts: int, expires: int, content_type: str | None = None) -> MultipartGrant:
        """Initiates the upload (one request to storage) and presigns its parts, complete, abort."""
        extra = {"ContentType": content_type} if content_type else {}
        upload_id = str(self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"])
        sign, up = self.sigv4.presign, {"uploadId": upload_id}
        return MultipartGrant(
            upload_id=upload_id,
            part_urls=[sign("PUT", self.bucket, key, expires, {"partNumber": str(n), **up})
                       for n in range(1, parts + 1)],
            complete_url=sign("POST", self.bucket, key, expires, up),
            abort_url=sign("DELETE", self.bucket, key, expires, up),
        )

    def post_policy(self, prefix: str, expires: int, max_bytes: int = MAX_PART_BYTES) -> PrefixGrant:
        """A POST policy for any key under `prefix` (outputs whose names are not known in advance)."""
        post = self.client.generate_presigned_post(
            self.bucket, prefix + "${filename}",
            Conditions=[["starts-with", "$key", prefix], ["content-length-range", 0, max_bytes]],
            ExpiresIn=expires,
        )
        fields = {k: str(v) for k, v in post["fields"].items() if k != "key"}
        return PrefixGrant(prefix=prefix, url=str(post["url"]), fields=fields, max_bytes=max_bytes)

    def abort(self, key: str, upload_id: str) -> bool:
        """Abort an upload the worker did not complete; False when it is gone (completed)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            return True
        except Exception:  # NoSuchUpload: completed or aborted already
            return False


class SigV4:
    """SigV4 query-string presigning (path-style, UNSIGNED-PAYLOAD), as boto3 computes it but
    ~20x cheaper: a job's grants are dozens of URLs, and a burst is thousands of jobs. The
    signing key is derived once a day; credentials come from boto3 (static keys, or the ambient
    ones: IRSA, workload identity, refreshed as they rotate)."""

    def __init__(self, endpoint: str, region: str, credentials: Any) -> None:
        parts = urlsplit(endpoint)
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        self.scheme, self.base = parts.scheme, parts.path.rstrip("/")
        # As clients send Host: without a default port.
        self.host = parts.hostname or "" if parts.port in (None, default_port) else f"{parts.hostname}:{parts.port}"
        self.region, self.credentials = region, credentials
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            k = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): k}
            key = k
        return key

    def presign(self, method: str, bucket: str, key: str, expires: int, params: dict[str, str] | None = None,
                content_type: str | None = None, now: datetime | None = None) -> str:
        creds = self.credentials.get_frozen_credentials()
        t = now or datetime.now(UTC)
        amz_date, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
        scope = f"{day}/{self.region}/s3/aws4_request"
        headers = {"host": self.host}
        if content_type:
            headers["content-type"] = content_type
        signed = ";".join(sorted(headers))
        query = {
            **(params or {}),
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{creds.access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": signed,
        }
        if creds.token:
            query["X-Amz-Security-Token"] = creds.token
        canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query.items()))
        path = f"{self.base}/{_q(bucket, safe='/')}/{_q(key, safe='/')}"
        canonical = "\n".join([
            method, path, canonical_query, "".join(f"{h}:{headers[h]}\n" for h in sorted(headers)), signed,
            "UNSIGNED-PAYLOAD",
        ])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        sig = hmac.new(self._signing_key(creds.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.scheme}://{self.host}{path}?{canonical_query}&X-Amz-Signature={sig}"


def _q(s: str, safe: str = "") -> str:
    return quote(s, safe="-_.~" + safe)


def presign_grants(signer: Signer, objects_to_read: Mapping[str, str],
                   objects_to_write: Mapping[str, str | Write], expires: int) -> dict[str, ObjectGrant]:
    """Name -> grant for every name in either mapping (name -> object key, or a `Write`); a name
    in both gets both. `expires` seconds, at most SigV4's 7 days. The one reusable entry point:
    split chunks, stitch inputs and checkpoints call it with their own scratch keys."""
    expires = max(60, min(int(expires), MAX_PRESIGN_SECONDS))
    out: dict[str, ObjectGrant] = {}
    for name, key in objects_to_read.items():
        out[name] = ObjectGrant(key=key, get_url=signer.get(key, expires))
    for name, w in objects_to_write.items():
        w = w if isinstance(w, Write) else Write(key=w)
        g = out.get(name) or ObjectGrant(key=w.key)
        if g.key != w.key:
            raise ValueError(f"grant {name!r} names two keys: {g.key} and {w.key}")
        g.put_url = signer.put(w.key, expires, w.content_type)
        g.content_type = w.content_type
        if w.delete:
            g.delete_url = signer.delete(w.key, expires)
        if w.parts > 0:
            g.multipart = signer.multipart(w.key, w.parts, expires, w.content_type)
        out[name] = g
    return out


def input_keys(spec: FFmpegJobSpec, s3: S3Settings) -> dict[str, str]:
    """Input name -> object key, for the inputs held in our bucket and inside the job's tenant
    (a storage path, or a URL into the bucket). Another tenant's key gets no grant: the worker
    reports it as not found."""
    keys: dict[str, str] = {}
    for inp in spec.inputs:
        try:
            key = input_storage_key(inp.name, inp.source, spec.tenant, s3)
        except (InputNotFound, BadInputSource):
            continue
        if key is not None:
            keys[inp.name] = key
    return keys


def checkpoint_keys(spec: FFmpegJobSpec, job_uid: str) -> dict[str, str]:
    """Grant name -> scratch key of every checkpoint object a chain's pod may write and read:
    for each step but the last, each declared output (what a step may leave for later steps and
    the results: steps write only declared outputs) and the step's `done.json` marker. Empty for
    a single command (no checkpoints)."""
    steps = len(spec.commands or [])  # the structured form is one command
    if steps < 2 or not job_uid or any(output_kind(o.name) != OutputKind.FILE for o in spec.outputs):
        return {}  # directory and pattern outputs are not checkpointed: a new attempt runs every step
    prefix = scratch_prefix(spec.tenant, job_uid)
    names = [*(o.name for o in spec.outputs), CHECKPOINT_DONE]
    keys: dict[str, str] = {}
    # Bounded, so the grants Secret stays far below its 1 MiB: the leading steps are covered,
    # later ones (of a very long chain with many outputs) are simply not checkpointed.
    for step in range(1, min(steps, 1 + MAX_CHECKPOINT_OBJECTS // len(names))):
        for n in names:
            g = checkpoint_grant_name(step, n)
            keys[g] = prefix + g
    return keys


def job_grants(signer: Signer, spec: FFmpegJobSpec, s3: S3Settings, expires: int, parts: int,
               job_uid: str = "") -> Grants:
    """One FFmpegJob's pod: GET of its storage inputs; PUT, DELETE and (with `parts`) a
    multipart upload of each declared output in its output directory; for a chain (with the
    FFmpegJob's uid), GET and PUT of its checkpoint objects (`checkpoint_keys`) - no DELETE: the
    operator deletes the scratch prefix when the job ends."""
    writes = {
        o.name: Write(key=file_key(spec.tenant, spec.output.dir_id, o.name), parts=parts,
                      content_type=mimetypes.guess_type(o.name)[0] or "application/octet-stream")
        for o in spec.outputs if output_kind(o.name) == OutputKind.FILE
    }
    ckpt = checkpoint_keys(spec, job_uid)
    ckpt_writes = {
        n: Write(key=k, delete=False,
                 content_type="application/json" if n.endswith("/" + CHECKPOINT_DONE) else "application/octet-stream")
        for n, k in ckpt.items()
    }
    expires = max(60, min(int(expires), MAX_PRESIGN_SECONDS))
    return Grants(
        expires_at=datetime.now(UTC) + timedelta(seconds=expires),
        inputs=presign_grants(signer, input_keys(spec, s3), {}, expires),
        outputs=presign_grants(signer, {}, writes, expires),
        scratch=presign_grants(signer, ckpt, ckpt_writes, expires),
        output_prefix=output_prefix_grant(signer, spec, expires),
    )


def output_prefix_grant(signer: Signer, spec: FFmpegJobSpec, expires: int) -> PrefixGrant | None:
    """Directory and pattern outputs (`ffmpegjob_model.outputs`) have no names before FFmpeg
    runs: a POST policy for any key in the job's output directory, or None without such outputs."""
    if all(output_kind(o.name) == OutputKind.FILE for o in spec.outputs):
        return None
    return signer.post_policy(dir_prefix(spec.tenant, spec.output.dir_id), max(60, min(int(expires),
                                                                                           MAX_PRESIGN_SECONDS)))


def abort_unfinished(signer: Signer, grants: Grants) -> int:
    """Abort the multipart uploads a finished job's pods left open (a single PUT was used, or
    the pod died): storage would keep their parts, invisibly, forever. Returns how many."""
    n = 0
    for g in [*grants.outputs.values(), *grants.scratch.values()]:
        if g.multipart is not None:
            with contextlib.suppress(Exception):
                n += signer.abort(g.key, g.multipart.upload_id)
    return n

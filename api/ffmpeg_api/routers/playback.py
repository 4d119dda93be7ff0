"""Playback URLs: an HLS ladder in storage opened by a player or ffprobe from one URL.

A presigned URL signs one object, and its query string does not carry over to the relative URIs
of a playlist (a master's `v0/index.m3u8`, a rendition's `seg_000.ts`). `POST /playback` (either
surface's key) returns a capability URL `/play/<token>/<path of the playlist>`: the token signs
(tenant, directory, the playlist's folder, expiry), so relative URIs resolve to
`/play/<token>/<their path>` on their own, with no rewriting. Under it, a playlist (`.m3u8`) is
served by the API (a redirect would move the player's base URL into storage); any other file is
a 307 to a short-lived presigned GET of the object. Nothing outside the playlist's folder is
reachable with a token. docs/outputs.md.

The signing key is `PLAYBACK_SECRET` (every replica the same), else derived from the storage
secret key; with neither, playback URLs are refused (503)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import posixpath
import time
from typing import Any

from botocore.exceptions import ClientError
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from ffmpegjob_model.storage_layout import file_key, split_result_path
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ERROR_RESPONSES, ApiError
from ..services import Auth, Services, Svc

router = APIRouter(responses=ERROR_RESPONSES)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_URL_SECONDS = 600  # each redirect's presigned GET (players fetch a segment at once)
MAX_PLAYBACK_SECONDS = 7 * 24 * 3600


class PlaybackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_path: str | None = Field(default=None, description="`dir_id/hls/master.m3u8` (a result's storage path)")
    job_id: str | None = Field(default=None, description="With `file_name`: a playlist of that job's result")
    file_name: str | None = Field(default=None, description="A result's `file_name`, e.g. `hls/master.m3u8`")
    expires_in: int = Field(default=3600, ge=60, le=MAX_PLAYBACK_SECONDS, description="Seconds the URL works")


class PlaybackResponse(BaseModel):
    ok: bool = True
    url: str = Field(description="Open it with a player or ffprobe; relative URIs resolve under it")
    file_path: str
    expires_in_seconds: int


def _key(svc: Services) -> bytes:
    secret = os.environ.get("PLAYBACK_SECRET") or ""
    if secret:
        return secret.encode()
    storage_secret = svc.storage.settings.secret_access_key
    if not storage_secret:
        raise ApiError(503, "Playback URLs need PLAYBACK_SECRET (the storage credentials are not static keys)")
    return hmac.new(storage_secret.encode(), b"kubeffmpeg-playback", hashlib.sha256).digest()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(key: bytes, claims: dict[str, Any]) -> str:
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return body + "." + _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def verify(key: bytes, token: str, now: float | None = None) -> dict[str, Any]:
    """The token's claims; 404 for a token that is not ours, 403 once it expired (the seed's
    "expired URL")."""
    body, _, mac = token.partition(".")
    try:
        good = hmac.compare_digest(_unb64(mac), hmac.new(key, body.encode(), hashlib.sha256).digest())
        claims: dict[str, Any] = json.loads(_unb64(body)) if good else {}
    except (ValueError, TypeError):
        claims = {}
    if not claims:
        raise ApiError(404, "Not found")
    if float(claims.get("e", 0)) < (time.time() if now is None else now):
        raise ApiError(403, "Playback URL expired")
    return claims


@router.post("/playback", response_model=PlaybackResponse, tags=["Files"],
             summary="A URL that plays an HLS playlist from storage (relative URIs resolve under it)")
def playback(req: PlaybackRequest, request: Request, who: Auth, svc: Svc) -> PlaybackResponse:
    if req.job_id:
        obj = svc.jobs.get(who.tenant, req.job_id)
        found = [r for r in (obj.get("status") or {}).get("result") or [] if r.get("fileName") == req.file_name]
        if not found:
            raise ApiError(404, f"File not found: {req.file_name} is not in the result of job {req.job_id}")
        path = str(found[0].get("storagePath", ""))
    elif req.file_path:
        path = req.file_path
    else:
        raise ApiError(400, "Give file_path (dir_id/hls/master.m3u8), or job_id and file_name")
    parts = split_result_path(path)
    if parts is None or not parts[1].endswith(".m3u8"):
        raise ApiError(400, f"{path!r} is not the storage path of a playlist (dir_id/.../name.m3u8)")
    dir_id, name = parts
    if svc.storage.head_file(who.tenant, dir_id, name) is None:
        raise ApiError(404, f"File not found: {path}")
    folder = posixpath.dirname(name)
    claims = {"t": who.tenant, "d": dir_id, "p": folder + "/" if folder else "", "e": int(time.time()) + req.expires_in}
    url = f"{str(request.base_url).rstrip('/')}/play/{sign(_key(svc), claims)}/{name}"
    return PlaybackResponse(url=url, file_path=path, expires_in_seconds=req.expires_in)


@router.get("/play/{token}/{path:path}", tags=["Files"], response_class=Response,
            summary="Playback: a playlist's bytes, or a redirect to a presigned GET of a segment (no auth: the "
                    "token is the capability)")
def play(token: str, path: str, svc: Svc) -> Response:
    claims = verify(_key(svc), token)
    tenant, dir_id, prefix = str(claims["t"]), str(claims["d"]), str(claims["p"])
    if not path.startswith(prefix) or split_result_path(f"{dir_id}/{path}") is None:
        raise ApiError(404, "Not found")
    cors = {"Access-Control-Allow-Origin": "*"}
    if not path.endswith(".m3u8"):
        expires = max(1, min(SEGMENT_URL_SECONDS, int(float(claims["e"]) - time.time())))
        return RedirectResponse(svc.storage.presign_get(tenant, dir_id, path, expires), status_code=307,
                                headers=cors)
    try:
        body = svc.storage.client.get_object(Bucket=svc.storage.bucket, Key=file_key(tenant, dir_id, path))["Body"]
        data = body.read()
    except ClientError:
        raise ApiError(404, "Not found") from None
    return Response(data, media_type=PLAYLIST_TYPE, headers={**cors, "Cache-Control": "private, max-age=2"})

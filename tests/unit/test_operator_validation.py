"""The operator judges a spec with the same URL rules and S3 settings as the api and the worker:
a URL of our own bucket (plain http on an in-cluster store) passes all three, not only the api."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from ffmpeg_operator.handlers import safety_problems
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.safety import validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules

S3 = S3Settings(endpoint_url="http://minio.storage:9000", public_endpoint_url=None, bucket="ffmpeg")
RULES = URLRules(allow_hosts="", allow_http=False)


def spec(source: str) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "tenant": "acme", "inputs": [{"name": "in", "source": source}], "outputs": [{"name": "o.mp4"}],
        "commands": ["-i {{in}} {{o.mp4}}"], "output": {"dirId": "d"}})


def test_an_own_bucket_url_passes_the_api_and_the_operator_alike() -> None:
    own = spec("http://minio.storage:9000/ffmpeg/files/acme/d/in.mp4?X-Amz-Signature=x")
    ctx = cast(Any, SimpleNamespace(url_rules=RULES, s3=S3))
    validate_spec(own, url_rules=RULES, s3=S3, resolve=lambda h, p: ["93.184.216.34"])  # the api's call
    assert safety_problems(ctx, own) == []
    other = spec("http://cdn.example/in.mp4")  # plain http elsewhere: refused by both
    assert "https" in safety_problems(ctx, other)[0]

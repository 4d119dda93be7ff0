"""The contract's settings read from the environment without pydantic-settings (envmodel.py):
the same variables, precedence and parsing as before, and the worker's start-up never imports
pydantic-settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.upper().startswith(("S3_", "URL_", "AWS_")):
            monkeypatch.delenv(var)


def test_defaults_without_environment() -> None:
    assert S3Settings().model_dump() == {"endpoint_url": None, "public_endpoint_url": None, "bucket": "ffmpeg",
                                         "region": "us-east-1", "access_key_id": None, "secret_access_key": None}
    assert (URLRules().allow_hosts, URLRules().allow_http) == ("", False)


def test_environment_prefix_alias_and_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("s3_bucket", "media")  # matched case-insensitively, as pydantic-settings did
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")  # the alias, without the prefix
    monkeypatch.setenv("URL_ALLOW_HOSTS", "minio, 10.0.0.0/8")
    monkeypatch.setenv("URL_ALLOW_HTTP", "yes")
    s3 = S3Settings()
    assert (s3.endpoint_url, s3.public_endpoint, s3.bucket, s3.access_key_id) == (
        "http://minio:9000", "http://minio:9000", "media", "key")
    rules = URLRules()
    assert rules.allow_http is True
    assert rules.allowed_entries()[0] == {"minio"}


def test_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET", "from-env")
    monkeypatch.setenv("URL_ALLOW_HTTP", "true")
    assert S3Settings(bucket="given").bucket == "given"
    assert URLRules(allow_http=False).allow_http is False
    assert S3Settings.model_validate({"endpoint_url": "http://x"}).bucket == "from-env"


def test_bad_boolean_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URL_ALLOW_HTTP", "maybe")
    with pytest.raises(ValueError, match="allow_http"):
        URLRules()


def test_worker_start_path_does_not_import_pydantic_settings() -> None:
    code = ("import sys, ffmpeg_worker.main, ffmpeg_worker.worker, ffmpeg_worker.split;"
            "from ffmpegjob_model.settings import S3Settings; from ffmpegjob_model.urls import URLRules;"
            "S3Settings(); URLRules(); print('pydantic_settings' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

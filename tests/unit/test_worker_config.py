"""The worker's configuration: its settings class, and how its API client finds the API server
(in a cluster, else the kubeconfig the local stack's process nodes give each pod)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ffmpeg_worker import kube
from ffmpeg_worker.settings import SettingsError, WorkerSettings
from ffmpegjob_model.model import GROUP, PLURAL, VERSION


def test_settings_defaults_and_values_from_the_environment() -> None:
    s = WorkerSettings.from_env({"FFMPEGJOB_NAME": "j", "PROGRESS_INTERVAL_SECONDS": "0.5", "STREAM_INPUTS": "false",
                                 "MAX_INPUT_BYTES": "1000", "POD_NAME": "p-1", "FFMPEG_WORKER_MODE": "chunk",
                                 "JOB_COMPLETION_INDEX": "3", "FFMPEG_SPLIT_PLAN": "{}"})
    assert (s.ffmpegjob_name, s.ffmpegjob_namespace, s.progress_interval) == ("j", "default", 0.5)
    assert s.stream_inputs is False and s.keep_workdir is False and s.max_input_bytes == 1000
    assert (s.fetch_concurrency, s.upload_concurrency, s.ffmpeg_bin) == (4, 8, "ffmpeg")
    assert s.pod == "p-1"  # no HOSTNAME: the downward API's POD_NAME
    assert (s.mode, s.completion_index, s.split_plan) == ("chunk", "3", "{}")
    assert WorkerSettings.from_env({"FFMPEGJOB_NAME": "j", "HOSTNAME": "h", "POD_NAME": "p"}).pod == "h"


@pytest.mark.parametrize(("env", "message"), [
    ({}, "missing environment variable(s): FFMPEGJOB_NAME"),
    ({"FFMPEGJOB_NAME": "j", "PROGRESS_INTERVAL_SECONDS": "0.01"}, "PROGRESS_INTERVAL_SECONDS='0.01': must be >= 0.1"),
    ({"FFMPEGJOB_NAME": "j", "FETCH_CONCURRENCY": "100"}, "FETCH_CONCURRENCY='100': must be >= 1 and <= 64"),
    ({"FFMPEGJOB_NAME": "j", "STREAM_INPUTS": "maybe"}, "STREAM_INPUTS='maybe' is not a valid"),
    ({"FFMPEGJOB_NAME": "j", "MAX_INPUT_BYTES": "1GB"}, "MAX_INPUT_BYTES='1GB' is not a valid"),
])
def test_settings_refuse_what_they_cannot_read(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as e:
        WorkerSettings.from_env(env)
    assert message in str(e.value)


def test_a_bad_environment_exits_2_before_anything_else(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ffmpeg_worker.main"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "bad environment: missing environment variable(s): FFMPEGJOB_NAME" in proc.stderr


def test_the_entry_point_imports_no_model_and_no_kubernetes_client() -> None:
    """What runs before the first requests leave: the standard library only (start-up, issue 15)."""
    code = ("import sys, ffmpeg_worker.main, ffmpeg_worker.kube, ffmpeg_worker.early; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'ffmpegjob_model', 'kubernetes', 'httpx', 'yaml', 'tenacity')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_api_path_is_the_models() -> None:
    assert f"/apis/{GROUP}/{VERSION}" == kube.API_PATH and kube.PLURAL == PLURAL


def _kubeconfig(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any]) -> Path:
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ns"}}],
           "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}],
           "users": [{"name": "u", "user": user}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_process_nodes_kubeconfig_reads_the_token_file_for_every_request(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    path = _kubeconfig(tmp_path, {"tokenFile": str(token)}, {"certificate-authority": "ca.crt"})
    cfg = kube.ApiConfig.load({"KUBECONFIG": str(path)})
    assert (cfg.host, cfg.port, cfg.ca_file) == ("127.0.0.1", 6443, str(tmp_path / "ca.crt"))
    assert cfg.bearer() == "first"
    token.write_text("rotated")
    assert cfg.bearer() == "rotated"


def test_an_admin_kubeconfig_with_inline_client_certificate(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    b64 = base64.b64encode(pem.encode()).decode()
    path = _kubeconfig(tmp_path, {"client-certificate-data": b64, "client-key-data": b64},
                       {"certificate-authority-data": b64})
    cfg = kube.ApiConfig.load({"KUBECONFIG": str(path)})
    assert cfg.ca_data == pem and cfg.token is None
    assert cfg.cert_file and Path(cfg.cert_file).read_text() == pem
    kube.remove_temp_files()
    assert not Path(cfg.cert_file).exists()


def test_in_cluster_needs_the_service_host_and_the_token(tmp_path: Path) -> None:
    if kube.SA_DIR.joinpath("token").is_file():
        pytest.skip("this machine is a pod: its real service-account token rules out the not-in-a-cluster error")
    with pytest.raises(kube.ConfigError, match="neither in a cluster"):
        kube.ApiConfig.load({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
                             "KUBECONFIG": str(tmp_path / "none")})
    with pytest.raises(kube.ConfigError, match="only https"):
        kube.ApiConfig.from_kubeconfig(_kubeconfig(tmp_path, {}, {"server": "http://127.0.0.1:8080"}))


class _Flaky(kube.KubeApi):
    """Fails the first `fail` calls with the given error, then answers."""

    def __init__(self, errors: list[Exception]) -> None:
        super().__init__(kube.ApiConfig(host="h", port=1))
        self.errors, self.calls = errors, 0

    def _once(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"method": method, "body": json.loads(data) if data else None, "type": content_type}


def test_transient_failures_are_retried_and_others_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube.time, "sleep", lambda s: None)
    api = _Flaky([ConnectionResetError("reset"), kube.ApiError(503, "busy"), kube.ApiError(409, "conflict")])
    jobs = kube.JobClient(api, "ns", "j")
    jobs.patch_status({"progress": {"percent": 5}})
    assert api.calls == 4
    api = _Flaky([kube.ApiError(403, "forbidden")])
    assert kube.JobClient(api, "ns", "j").try_patch_status({"x": 1}) is False and api.calls == 1
    api = _Flaky([kube.ApiError(503, "busy")] * kube.ATTEMPTS)
    with pytest.raises(kube.ApiError, match="busy"):
        kube.JobClient(api, "ns", "j").get_object()
    assert api.calls == kube.ATTEMPTS

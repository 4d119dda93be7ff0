"""Turn a pod's spec into what a local process needs: files for its volumes, an environment, and
argv with container paths mapped onto host folders.

Process nodes have no mount namespaces: a volume mounted at `/scratch` becomes a folder under the
pod's directory, and any argument or environment value that starts with a mount path is rewritten
to the matching folder. The container's service-account token is exposed the way clients expect
outside a cluster: a `KUBECONFIG` whose user reads the projected token file."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 7 * 24 * 3600
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class ConfigError(Exception):
    """The pod cannot be started as written (kubelet's CreateContainerConfigError)."""


@dataclass
class PreparedContainer:
    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    termination_log: Path
    log: Path
    mounts: dict[str, Path] = field(default_factory=dict)


def _get(obj: dict[str, Any] | None, *keys: str, default: Any = None) -> Any:
    cur: Any = obj
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


class PodPreparer:
    """Reads what a pod refers to (Secrets, ConfigMaps, tokens) through the API, as a kubelet."""

    def __init__(self, core: client.CoreV1Api, api_server: str, ca_crt: Path) -> None:
        self.core, self.api_server, self.ca_crt = core, api_server, ca_crt

    # ----------------------------------------------------------------------------- lookups
    def _secret(self, ns: str, name: str, optional: bool) -> dict[str, str] | None:
        try:
            data = self.core.read_namespaced_secret(name, ns).data or {}
        except client.ApiException as e:
            if e.status == 404 and optional:
                return None
            raise ConfigError(f'secret "{name}" not found') from e
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}

    def _configmap(self, ns: str, name: str, optional: bool) -> dict[str, str] | None:
        try:
            return dict(self.core.read_namespaced_config_map(name, ns).data or {})
        except client.ApiException as e:
            if e.status == 404 and optional:
                return None
            raise ConfigError(f'configmap "{name}" not found') from e

    def _field(self, pod: dict[str, Any], path: str) -> str:
        meta = pod["metadata"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        simple = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
            "metadata.uid": meta.get("uid"),
            "spec.nodeName": _get(pod, "spec", "nodeName"),
            "spec.serviceAccountName": _get(pod, "spec", "serviceAccountName"),
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path not in simple:
            raise ConfigError(f"unsupported fieldRef {path!r}")
        return str(simple[path] or "")

    def _token(self, pod: dict[str, Any], audience: str | None, seconds: int | None) -> str:
        meta = pod["metadata"]
        sa = _get(pod, "spec", "serviceAccountName") or "default"
        spec = client.V1TokenRequestSpec(
            audiences=[audience] if audience else [],
            expiration_seconds=max(seconds or 0, TOKEN_SECONDS),
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=meta["name"], uid=meta["uid"]
            ),
        )
        req = self.core.create_namespaced_service_account_token(
            sa, meta["namespace"], client.AuthenticationV1TokenRequest(spec=spec)
        )
        if req.status is None or not req.status.token:
            raise ConfigError(f"no token issued for service account {sa!r}")
        return str(req.status.token)

    # ----------------------------------------------------------------------------- volumes
    def volumes(self, pod: dict[str, Any], root: Path) -> dict[str, Path]:
        """Materialise every volume as a folder; returns volume name -> folder."""
        out: dict[str, Path] = {}
        for vol in _get(pod, "spec", "volumes", default=[]) or []:
            name = vol["name"]
            folder = root / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
            files: dict[str, str] = {}
            if "hostPath" in vol:
                out[name] = Path(vol["hostPath"]["path"])
                continue
            # A secret/configMap/downwardAPI volume is a projected volume with one source.
            if "secret" in vol:
                src = dict(vol["secret"])
                sources = [{"secret": {**src, "name": src.pop("secretName")}}]
            elif "configMap" in vol or "downwardAPI" in vol:
                sources = [{k: vol[k]} for k in ("configMap", "downwardAPI") if k in vol]
            elif "projected" in vol:
                sources = vol["projected"].get("sources", [])
            elif "emptyDir" in vol:
                sources = []
            else:
                raise ConfigError(f"volume {name!r}: only emptyDir, secret, configMap, downwardAPI, "
                                  "projected and hostPath volumes run on process nodes")
            for source in sources:
                files.update(self._projected(pod, source))
            for rel, content in files.items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            out[name] = folder
        return out

    def _projected(self, pod: dict[str, Any], source: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        if "serviceAccountToken" in source:
            s = source["serviceAccountToken"]
            return {s["path"]: self._token(pod, s.get("audience"), s.get("expirationSeconds"))}
        if "configMap" in source:
            s = source["configMap"]
            return _select(self._configmap(ns, s["name"], s.get("optional", False)) or {}, s.get("items"))
        if "secret" in source:
            s = source["secret"]
            return _select(self._secret(ns, s["name"], s.get("optional", False)) or {}, s.get("items"))
        if "downwardAPI" in source:
            return {i["path"]: self._field(pod, i["fieldRef"]["fieldPath"]) for i in source["downwardAPI"]["items"]}
        return {}

    # ----------------------------------------------------------------------------- containers
    def container(
        self, pod: dict[str, Any], c: dict[str, Any], root: Path, volumes: dict[str, Path], base_env: dict[str, str]
    ) -> PreparedContainer:
        ns = pod["metadata"]["namespace"]
        mounts: dict[str, Path] = {}
        for m in c.get("volumeMounts", []) or []:
            if m["name"] not in volumes:
                raise ConfigError(f"volumeMount {m['name']!r} names no volume")
            host = volumes[m["name"]] / m.get("subPath", "")
            host.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"].rstrip("/") or "/"] = host

        env = {k: _map_paths(v, mounts) for k, v in self.env(pod, c).items()}
        command = [expand(a, env) for a in c.get("command", []) or []]
        args = [expand(a, env) for a in c.get("args", []) or []]
        if not command:
            raise ConfigError(
                f"container {c['name']!r} has no command: process nodes cannot read an image's entrypoint"
            )
        argv = [_map_paths(a, mounts) for a in command + args]

        term_path = c.get("terminationMessagePath", "/dev/termination-log")
        term_log = root / f"{c['name']}.termination-log"
        term_log.write_text("")
        full_env = {**base_env, "HOSTNAME": pod["metadata"]["name"], "TERMINATION_LOG_PATH": str(term_log), **env}
        if term_path != "/dev/termination-log":
            mounts.setdefault(term_path, term_log)
        if SA_MOUNT in mounts:
            full_env.setdefault("KUBECONFIG", str(self._sa_kubeconfig(root, mounts[SA_MOUNT], ns)))
        workdir = Path(_map_paths(c.get("workingDir", ""), mounts)) if c.get("workingDir") else root
        workdir.mkdir(parents=True, exist_ok=True)
        return PreparedContainer(
            name=c["name"],
            argv=argv,
            env=full_env,
            workdir=workdir,
            termination_log=term_log,
            log=root / f"{c['name']}.log",
            mounts=mounts,
        )

    def env(self, pod: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
        """The container's `envFrom` and `env`, resolved as a kubelet does (container paths kept)."""
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for ef in c.get("envFrom", []) or []:
            prefix = ef.get("prefix", "")
            if "secretRef" in ef:
                data = self._secret(ns, ef["secretRef"]["name"], ef["secretRef"].get("optional", False)) or {}
            else:
                data = self._configmap(ns, ef["configMapRef"]["name"], ef["configMapRef"].get("optional", False)) or {}
            env.update({prefix + k: v for k, v in data.items()})
        for e in c.get("env", []) or []:
            if "valueFrom" not in e:
                env[e["name"]] = expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            value: str | None
            if "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                value = (self._secret(ns, r["name"], r.get("optional", False)) or {}).get(r["key"])
                if value is None and not r.get("optional", False):
                    raise ConfigError(f'couldn\'t find key {r["key"]} in Secret {ns}/{r["name"]}')
            elif "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                value = (self._configmap(ns, r["name"], r.get("optional", False)) or {}).get(r["key"])
                if value is None and not r.get("optional", False):
                    raise ConfigError(f'couldn\'t find key {r["key"]} in ConfigMap {ns}/{r["name"]}')
            elif "fieldRef" in vf:
                value = self._field(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                value = _resource_value(c, vf["resourceFieldRef"])
            else:
                raise ConfigError(f"env {e['name']}: unsupported valueFrom")
            if value is not None:
                env[e["name"]] = value
        return env

    def _sa_kubeconfig(self, root: Path, sa_dir: Path, namespace: str) -> Path:
        """Outside a cluster, clients find the API server through KUBECONFIG: point it at the
        pod's own projected token (re-read on every request) and the cluster CA."""
        ca = sa_dir / "ca.crt"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "in-cluster", "cluster": {
                "server": self.api_server,
                "certificate-authority": str(ca if ca.exists() else self.ca_crt),
            }}],
            "users": [{"name": "sa", "user": {"tokenFile": str(sa_dir / "token")}}],
            "contexts": [{"name": "in-cluster", "context": {
                "cluster": "in-cluster", "user": "sa", "namespace": namespace}}],
            "current-context": "in-cluster",
        }
        path = root / "serviceaccount.kubeconfig"
        # JSON (a kubeconfig may be YAML or JSON): the worker reads JSON without importing a YAML
        # parser, as in a cluster, where it reads no kubeconfig at all.
        path.write_text(json.dumps(cfg))
        return path


def _select(data: dict[str, str], items: list[dict[str, str]] | None) -> dict[str, str]:
    if not items:
        return dict(data)
    return {i["path"]: data[i["key"]] for i in items if i["key"] in data}


def _map_paths(value: str, mounts: dict[str, Path]) -> str:
    """Rewrite a value that starts with a mount path (longest first) onto its host folder."""
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount or value.startswith(mount + "/"):
            return str(mounts[mount]) + value[len(mount):]
        if value.startswith("-") and "=" in value:  # --flag=/mount/path
            flag, _, rest = value.partition("=")
            if rest == mount or rest.startswith(mount + "/"):
                return f"{flag}={mounts[mount]}{rest[len(mount):]}"
    return value


def _resource_value(c: dict[str, Any], ref: dict[str, Any]) -> str:
    kind, _, res = ref["resource"].partition(".")
    value = str(_get(c, "resources", kind, res, default="0"))
    if res == "cpu" and value.endswith("m"):
        return str(max(1, -(-int(value[:-1]) // 1000)))
    return value

"""Create an API key for a tenant: `python -m ffmpeg_api.keys create --tenant default`.

Prints the key (shown once, on the last line) and adds its hash to the `API_KEYS_SECRET`
Secret, creating the Secret when it is missing. Other keys of the tenant stay valid."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .keystore import TenantEntry, decode_secret, encode_entry, hash_key, new_key, valid_tenant
from .kube import load_api_client
from .settings import ApiSettings


def create_key(
    core: client.CoreV1Api, namespace: str, secret: str, tenant: str,
    max_active_jobs: int | None = None, max_gb_sec: float | None = None,
) -> str:
    if not valid_tenant(tenant):
        raise ValueError(f"tenant {tenant!r} must be a DNS label (a-z, 0-9, '-', at most 63 characters)")
    key = new_key()
    for _ in range(5):  # optimistic concurrency: retry when someone else wrote the Secret meanwhile
        try:
            sec = core.read_namespaced_secret(secret, namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            sec = None
        data = {str(k): str(v) for k, v in ((sec.data if sec is not None else None) or {}).items()}
        entries = decode_secret(data)
        entry = entries.get(tenant, TenantEntry())
        entry.keys.append(hash_key(key))
        if max_active_jobs is not None:
            entry.quota.max_active_jobs = max_active_jobs
        if max_gb_sec is not None:
            entry.quota.max_gb_sec = max_gb_sec
        try:
            if sec is None:
                body: Any = client.V1Secret(
                    metadata=client.V1ObjectMeta(name=secret, labels={"app.kubernetes.io/part-of": "kubeffmpeg"}),
                    type="Opaque", data={tenant: encode_entry(entry)},
                )
                core.create_namespaced_secret(namespace, body)
            else:
                rv = sec.metadata.resource_version if sec.metadata is not None else None
                patch = {"metadata": {"resourceVersion": rv},
                         "data": {tenant: encode_entry(entry)}}
                core.patch_namespaced_secret(secret, namespace, patch)
            return key
        except ApiException as e:
            if e.status != 409:
                raise
    raise RuntimeError(f"Secret {namespace}/{secret} kept changing; try again")


def main(argv: list[str] | None = None) -> int:
    settings = ApiSettings()
    p = argparse.ArgumentParser(prog="python -m ffmpeg_api.keys", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create a key for a tenant and print it")
    c.add_argument("--tenant", default="default")
    c.add_argument("--namespace", default=settings.ffmpeg_namespace)
    c.add_argument("--secret", default=settings.api_keys_secret)
    c.add_argument("--max-active-jobs", type=int, default=None)
    c.add_argument("--max-gb-sec", type=float, default=None)
    args = p.parse_args(argv)
    core = client.CoreV1Api(load_api_client())
    try:
        key = create_key(core, args.namespace, args.secret, args.tenant, args.max_active_jobs, args.max_gb_sec)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())

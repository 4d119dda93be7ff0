"""API keys and webhook signing secrets of tenants.

`python -m ffmpeg_api.keys create --tenant default` adds a key's hash to the `API_KEYS_SECRET`
Secret (created when missing; other keys of the tenant stay valid) and prints the key, shown
once, on the last line. A tenant's first key also creates its webhook signing secret (in
`WEBHOOK_SECRETS_SECRET`), printed once above the key.
`rotate-signing-secret --tenant T` replaces the signing secret and prints the new one;
`set-limits --tenant T ...` changes a tenant's quota and rate limit without a new key."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ffmpegjob_model.webhooks import store_signing_secret
from kubernetes import client
from kubernetes.client.rest import ApiException

from .keystore import TenantEntry, decode_secret, encode_entry, hash_key, new_key, valid_tenant
from .kube import load_api_client
from .settings import ApiSettings


def create_key(
    core: client.CoreV1Api, namespace: str, secret: str, tenant: str,
    max_active_jobs: int | None = None, max_gb_sec: float | None = None,
    requests_per_second: float | None = None, burst: int | None = None, add_key: bool = True,
    max_queued_jobs: int | None = None,
) -> str:
    """Add a key (unless `add_key` is false) and the given limits to the tenant's entry."""
    if not valid_tenant(tenant):
        raise ValueError(f"tenant {tenant!r} must be a DNS label (a-z, 0-9, '-', at most 63 characters)")
    key = new_key() if add_key else ""
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
        if add_key:
            entry.keys.append(hash_key(key))
        if requests_per_second is not None:
            entry.rate_limit.requests_per_second = requests_per_second
        if burst is not None:
            entry.rate_limit.burst = burst
        if max_active_jobs is not None:
            entry.quota.max_active_jobs = max_active_jobs
        if max_gb_sec is not None:
            entry.quota.max_gb_sec = max_gb_sec
        if max_queued_jobs is not None:
            entry.quota.max_queued_jobs = max_queued_jobs
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


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-active-jobs", type=int, default=None)
    p.add_argument("--max-gb-sec", type=float, default=None)
    p.add_argument("--max-queued-jobs", type=int, default=None,
                   help="with Kueue: jobs waiting beyond --max-active-jobs before a 429")
    p.add_argument("--requests-per-second", type=float, default=None, help="per key; 0 = unlimited")
    p.add_argument("--burst", type=int, default=None, help="requests allowed at once above the rate")


def main(argv: list[str] | None = None) -> int:
    settings = ApiSettings()
    p = argparse.ArgumentParser(prog="python -m ffmpeg_api.keys", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tenant", default="default")
    common.add_argument("--namespace", default=settings.ffmpeg_namespace)
    common.add_argument("--secret", default=settings.api_keys_secret, help="the key store Secret")
    common.add_argument("--signing-secrets", default=settings.webhook_secrets_secret,
                        help="the Secret of webhook signing secrets")
    sub = p.add_subparsers(dest="cmd", required=True)
    _limit_args(sub.add_parser("create", parents=[common], help="create a key for a tenant and print it"))
    sub.add_parser("rotate-signing-secret", parents=[common],
                   help="replace a tenant's webhook signing secret and print it")
    _limit_args(sub.add_parser("set-limits", parents=[common], help="change a tenant's quota and rate limit"))
    args = p.parse_args(argv)
    core = client.CoreV1Api(load_api_client())
    try:
        if args.cmd == "rotate-signing-secret":
            if not valid_tenant(args.tenant):
                raise ValueError(f"tenant {args.tenant!r} must be a DNS label")
            value, _ = store_signing_secret(core, args.namespace, args.signing_secrets, args.tenant, rotate=True)
            print(f"# webhook signing secret of tenant {args.tenant} (shown once):")
            print(value)
            return 0
        limits = dict(max_active_jobs=args.max_active_jobs, max_gb_sec=args.max_gb_sec,
                      requests_per_second=args.requests_per_second, burst=args.burst,
                      max_queued_jobs=args.max_queued_jobs)
        if args.cmd == "set-limits":
            create_key(core, args.namespace, args.secret, args.tenant, add_key=False, **limits)
            print(f"limits of tenant {args.tenant} updated")
            return 0
        key = create_key(core, args.namespace, args.secret, args.tenant, **limits)
        signing, created = store_signing_secret(core, args.namespace, args.signing_secrets, args.tenant)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if created:
        print(f"# webhook signing secret of tenant {args.tenant} (shown once; "
              "replace it with rotate-signing-secret or POST /webhook-secret/rotate):")
        print(signing)
    print(f"# API key of tenant {args.tenant} (shown once):")
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())

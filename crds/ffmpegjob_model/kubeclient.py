"""How every component reaches the API server (CONTRACTS.md, "Kubernetes clients")."""

from __future__ import annotations

import os

from kubernetes import client, config


def load_client(pool_size: int | None = None) -> client.ApiClient:
    """In-cluster config first, then KUBECONFIG (read now, not at import; process nodes give pods
    one). `pool_size` should exceed the threads that share the client: with fewer pooled
    connections urllib3 discards one after each burst and the next request pays a TLS handshake."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
    if pool_size:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)

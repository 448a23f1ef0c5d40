"""Kubernetes API clients built from a kubeconfig file."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An ApiClient for `kubeconfig`, independent of the process-wide default configuration."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def in_cluster_client() -> client.ApiClient:
    """An ApiClient with the ServiceAccount of the pod this process runs in."""
    cfg = client.Configuration()
    config.load_incluster_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    """The core/v1 API for `kubeconfig`."""
    return client.CoreV1Api(api_client(kubeconfig))

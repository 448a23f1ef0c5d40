"""Kubernetes API clients, and raw JSON requests through them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An ApiClient for `kubeconfig`, independent of the process-wide default configuration."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return _pooled(cfg)


def in_cluster_client() -> client.ApiClient:
    """An ApiClient with the ServiceAccount of the pod this process runs in."""
    cfg = client.Configuration()
    config.load_incluster_config(client_configuration=cfg)
    return _pooled(cfg)


def _pooled(cfg: client.Configuration) -> client.ApiClient:
    """An ApiClient whose connection pool serves parallel requests and watches."""
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    """The core/v1 API for `kubeconfig`."""
    return client.CoreV1Api(api_client(kubeconfig))


def send_json(api: client.ApiClient, method: str, path: str, *, body: Any = None,
              query: Mapping[str, str] | None = None, content_type: str = "application/json",
              timeout: float | urllib3.Timeout = 30.0, stream: bool = False) -> Any:
    """One request through `api`'s urllib3 pool and credentials; the raw urllib3 response.

    A str `body` is sent as is, anything else as JSON. Only the pool and the configuration are used, which
    every kubernetes-client generation has alike (Debian's 22.x and PyPI's 3x differ in `ApiClient`'s
    calls). A non-2xx answer raises ApiException with the status, the decoded body and the headers.
    """
    cfg = api.configuration
    headers = {"Accept": "application/json"}
    bearer = cfg.auth_settings().get("BearerToken")
    if bearer and bearer.get("value"):
        headers[bearer["key"]] = bearer["value"]
    data = None
    if body is not None:
        headers["Content-Type"] = content_type
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    url = cfg.host + path + (f"?{urlencode(dict(query))}" if query else "")
    resp = api.rest_client.pool_manager.request(method, url, body=data, headers=headers,
                                                preload_content=not stream, timeout=timeout)
    if not 200 <= resp.status <= 299:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body, exc.headers = resp.data.decode(errors="replace"), resp.headers
        raise exc
    return resp

"""Thin Kubernetes access for the operator: raw JSON lists, server-side apply, exec with exit codes."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from sunkbridge.k8s.client import api_client, in_cluster_client, send_json

FIELD_MANAGER = "sunkbridge-operator"

# apiVersion/kind → (path prefix, plural); every kind the operator writes.
_RESOURCES = {
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("/apis/rbac.authorization.k8s.io/v1",
                                                             "clusterrolebindings"),
}


def load_client(kubeconfig: Path | str | None = None) -> client.ApiClient:
    """An ApiClient from `kubeconfig`, $KUBECONFIG, or the pod's service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    return api_client(Path(path)) if path else in_cluster_client()


class Kube:
    """The calls the operator makes, over one ApiClient (and a second one reserved for exec)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        # `stream` swaps the request function of the client it uses; keep it away from the shared one.
        self._exec_core = client.CoreV1Api(client.ApiClient(api.configuration))
        self._exec_lock = threading.Lock()

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json") -> Any:
        """One API call; returns the decoded JSON answer. Raises ApiException on an error status."""
        resp = send_json(self.api, method, path, body=body, query=query, content_type=content_type, timeout=120)
        return json.loads(resp.data) if resp.data else None

    def get_json(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET `path` and return the decoded JSON (fast for lists of thousands of objects)."""
        return dict(self.request("GET", path, query=query))

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get_json(path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def path_of(manifest: Mapping[str, Any], name: str | None = None) -> str:
        prefix, plural = _RESOURCES[(manifest["apiVersion"], manifest["kind"])]
        meta = manifest["metadata"]
        base = f"{prefix}/namespaces/{meta['namespace']}/{plural}" if meta.get("namespace") else f"{prefix}/{plural}"
        return f"{base}/{name or meta['name']}"

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply `manifest` (creates or updates; fields other managers own are left alone)."""
        return dict(self.request("PATCH", self.path_of(manifest),
                                 query={"fieldManager": FIELD_MANAGER, "force": "true"},
                                 body=json.dumps(manifest), content_type="application/apply-patch+yaml"))

    def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create `manifest`; False when it exists already."""
        path = self.path_of(manifest).rsplit("/", 1)[0]
        try:
            self.request("POST", path, body=manifest)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete(self, manifest_or_path: Mapping[str, Any] | str) -> None:
        path = manifest_or_path if isinstance(manifest_or_path, str) else self.path_of(manifest_or_path)
        try:
            self.request("DELETE", path)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> None:
        self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def exec(self, namespace: str, pod: str, container: str, argv: list[str],
             timeout: float = 60.0) -> tuple[int, str, str]:
        """Run `argv` in a container; returns (exit code, stdout, stderr)."""
        try:
            return self._exec(namespace, pod, container, argv, timeout)
        except (ApiException, OSError, ValueError, KeyError, TypeError) as exc:
            # No kubelet behind the pod (KWOK), a closed stream or an upgrade refused: report, do not raise.
            return 255, "", f"exec in {namespace}/{pod} failed: {exc}"

    def _exec(self, namespace: str, pod: str, container: str, argv: list[str],
              timeout: float) -> tuple[int, str, str]:
        with self._exec_lock:
            resp = stream(self._exec_core.connect_get_namespaced_pod_exec, pod, namespace, container=container,
                          command=argv, stdout=True, stderr=True, stdin=False, tty=False,
                          _preload_content=False, _request_timeout=timeout)
            out: list[str] = []
            err: list[str] = []
            try:
                resp.run_forever(timeout=timeout)
                out.append(resp.read_stdout() or "")
                err.append(resp.read_stderr() or "")
                code = resp.returncode
            finally:
                resp.close()
        return (code if code is not None else 255), "".join(out), "".join(err)

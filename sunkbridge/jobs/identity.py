"""The launcher's least-privilege identity and the kubeconfig that carries it to slurmd hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.jobs.launcher import GROUP, PLURAL

LAUNCHER_SA = "sunk-launcher"

LAUNCHER_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
)
"""The launcher: SlurmJobs create/get/list/watch/delete, pods' logs get. Nothing else, one namespace."""

CONTROLLER_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [GROUP], "resources": [PLURAL, f"{PLURAL}/status"],
     "verbs": ["get", "list", "watch", "patch", "update", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "services", "secrets", "configmaps"],
     "verbs": ["get", "list", "watch", "create", "delete", "patch"]},
)
"""What the SlurmJob controller needs in its namespace."""

NODE_READER_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
)
"""The one cluster-wide right of the SlurmJob controller: read nodes, to check a job's pods fit them."""


def _rules(rules: tuple[dict[str, list[str]], ...]) -> list[dict[str, list[str]]]:
    return [{k: list(v) for k, v in rule.items()} for rule in rules]


def launcher_role(namespace: str, name: str = LAUNCHER_SA) -> dict[str, Any]:
    """The launcher's Role in `namespace`."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": _rules(LAUNCHER_RULES)}


def controller_role(namespace: str, name: str = "sunk-jobs-controller") -> dict[str, Any]:
    """The SlurmJob controller's Role in `namespace`."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": _rules(CONTROLLER_RULES)}


def controller_node_reader(name: str = "sunk-jobs-controller-nodes") -> dict[str, Any]:
    """The SlurmJob controller's node-reading ClusterRole."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": _rules(NODE_READER_RULES)}


def _apply(fn_create: Any, fn_replace: Any, namespace: str, body: dict[str, Any]) -> None:
    try:
        fn_create(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        fn_replace(body["metadata"]["name"], namespace, body)


def write_launcher_kubeconfig(api: client.ApiClient, namespace: str, server: str, ca_file: Path, out: Path,
                              expiration_seconds: int = 86400) -> Path:
    """Create the launcher's ServiceAccount, Role and RoleBinding and write a token kubeconfig to `out`."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": LAUNCHER_SA, "namespace": namespace}}
    try:
        core.create_namespaced_service_account(namespace, sa)
    except ApiException as exc:
        if exc.status != 409:
            raise
    _apply(rbac.create_namespaced_role, rbac.replace_namespaced_role, namespace, launcher_role(namespace))
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": LAUNCHER_SA, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LAUNCHER_SA},
               "subjects": [{"kind": "ServiceAccount", "name": LAUNCHER_SA, "namespace": namespace}]}
    _apply(rbac.create_namespaced_role_binding, rbac.replace_namespaced_role_binding, namespace, binding)
    token = core.create_namespaced_service_account_token(
        LAUNCHER_SA, namespace, {"spec": {"expirationSeconds": expiration_seconds}}).status.token
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "sunk", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
           "users": [{"name": LAUNCHER_SA, "user": {"token": token}}],
           "contexts": [{"name": "sunk", "context": {"cluster": "sunk", "user": LAUNCHER_SA,
                                                     "namespace": namespace}}],
           "current-context": "sunk"}
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out

"""Go tools the operator's packaging needs, built from their official modules and cached by version."""

from __future__ import annotations

from pathlib import Path

from sunkbridge.k8s import binaries

HELM_VERSION = "v4.3.1"

HELM = binaries.GoTool(
    name="helm",
    module="helm.sh/helm/v4",
    version=HELM_VERSION,
    binaries={"helm": "helm.sh/helm/v4/cmd/helm"},
    ldflags=f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
)


def helm() -> Path:
    """The path of the helm binary, building it on first use."""
    binaries.build(HELM)
    return HELM.path("helm")


def kubectl() -> Path:
    """The path of kubectl (built with the control plane)."""
    binaries.build(binaries.KUBERNETES)
    return binaries.KUBERNETES.path("kubectl")

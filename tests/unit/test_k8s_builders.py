"""Pure builders of the Kubernetes lane: Go build inputs, node pools, certificates."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from sunkbridge.k8s import binaries
from sunkbridge.k8s.pools import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    KWOK_ANNOTATION,
    POOL_LABEL,
    RACK_LABEL,
    PoolSpec,
    node_manifest,
    parse_pools,
)
from sunkbridge.lanes import pki

UPSTREAM_GOMOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_modules_are_read_from_the_upstream_replace_block() -> None:
    assert binaries.staging_modules(UPSTREAM_GOMOD) == ["k8s.io/api", "k8s.io/client-go"]


@pytest.mark.parametrize(("k8s", "twin"), [("v1.36.3", "v0.36.3"), ("v1.34.0", "v0.34.0")])
def test_staging_twins_follow_the_kubernetes_version(k8s: str, twin: str) -> None:
    assert binaries.staging_version(k8s) == twin


def test_kubernetes_version_is_stamped_into_the_binaries() -> None:
    assert "gitVersion=v1.36.3" in binaries.KUBERNETES.ldflags
    assert "gitMinor=36" in binaries.KUBERNETES.ldflags


def test_gpu_node_manifest_carries_allocatable_gpus_labels_and_kwok_annotation() -> None:
    pool = PoolSpec("h100", 20, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3", nodes_per_rack=8)
    node = node_manifest(pool, 9)
    assert node["metadata"]["name"] == "h100-0009"
    assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
    labels = node["metadata"]["labels"]
    assert labels[POOL_LABEL] == "h100"
    assert labels[GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert labels[RACK_LABEL] == "h100-rack-002"
    assert node["status"]["allocatable"][GPU_RESOURCE] == "8"


def test_cpu_node_has_no_gpu_resource() -> None:
    node = node_manifest(PoolSpec("cpu", 1, gpus=0), 1)
    assert GPU_RESOURCE not in node["status"]["allocatable"]
    assert GPU_PRODUCT_LABEL not in node["metadata"]["labels"]


def test_parse_pools_reads_name_count_pairs() -> None:
    pools = parse_pools("h100=3, a100=1,cpu=2")
    assert [(p.name, p.count, p.gpus) for p in pools] == [("h100", 3, 8), ("a100", 1, 8), ("cpu", 2, 0)]


@pytest.mark.parametrize("text", ["h100", "h100=x", "H100=2", "=3"])
def test_parse_pools_rejects_malformed_entries_with_the_entry_named(text: str) -> None:
    with pytest.raises(ValueError, match="pool"):
        parse_pools(text)


def test_leaf_certificates_chain_to_the_ca_and_carry_identity(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path)
    leaf = pki.issue(ca, tmp_path, "admin", "sunk-admin", organization="system:masters")
    server = pki.issue(ca, tmp_path, "api", "kube-apiserver", server=True, client=False,
                       dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    for pair in (leaf, server):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert pair.key.stat().st_mode & 0o077 == 0
    admin = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    assert admin.subject.rfc4514_string() == "O=system:masters,CN=sunk-admin"
    sans = x509.load_pem_x509_certificate(server.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]

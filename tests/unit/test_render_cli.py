"""`sunk render`: the operator's output for a SlurmCluster file, offline."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from sunk_cli.main import main

CLUSTER = Path(__file__).resolve().parents[2] / "manifests" / "overlays" / "sandbox" / "slurmcluster.yaml"


def _nodes(tmp_path: Path) -> Path:
    nodes = [{"metadata": {"name": f"sunk-node-{i}", "labels": {"sunkbridge.io/pool": "real",
                                                                  "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
              "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "4"}}} for i in (1, 2)]
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump({"items": nodes}))
    return path


def test_render_files(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["render", str(CLUSTER), "--nodes", str(_nodes(tmp_path)), "--files"])
    assert out.exit_code == 0, out.output
    assert "NodeName=sunk-node-[1-2] NodeAddr=<sunk-node-1-pod-ip>,<sunk-node-2-pod-ip> CPUs=8 RealMemory=32768 " \
           "Gres=gpu:h100:4 State=UNKNOWN" in out.output
    assert "PartitionName=real Nodes=sunk-node-[1-2] Default=YES MaxTime=4:00:00 State=UP" in out.output


def test_render_manifests(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["render", str(CLUSTER), "--nodes", str(_nodes(tmp_path))])
    assert out.exit_code == 0, out.output
    kinds = [d["kind"] for d in yaml.safe_load_all(out.output) if d]
    assert kinds.count("Pod") == 2 and "StatefulSet" in kinds and "PodDisruptionBudget" in kinds


def test_render_rejects_bad_spec(tmp_path: Path) -> None:
    bad = yaml.safe_load(CLUSTER.read_text())
    bad["spec"]["slurmConf"] = {"overrides": {"SlurmctldHost": "x"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = CliRunner().invoke(main, ["render", str(path)])
    assert out.exit_code == 2
    assert "spec.slurmConf.overrides.SlurmctldHost: is set by the operator" in out.output

"""The operator's Slurm configuration renderers, as pure functions."""

from __future__ import annotations

from sunkbridge.sbatch.hostlist import expand_hostlist
from sunkbridge.slurm.conf import (
    ConfInputs,
    Partition,
    SlurmNode,
    needs_restart,
    node_groups,
    render_all,
    render_gres_conf,
    render_job_submit_lua,
    render_slurm_conf,
    render_topology_conf,
)


def _nodes(count: int, pool: str = "h100", gpus: int = 8) -> tuple[SlurmNode, ...]:
    return tuple(SlurmNode(f"{pool}-{i:04d}", pool, 96, 1_048_576, gpus, "h100" if gpus else None, (pool,),
                           f"{pool}-rack-{(i - 1) // 8 + 1}", addr=f"10.0.0.{i}") for i in range(1, count + 1))


def _inputs(**kw: object) -> ConfInputs:
    base: dict[str, object] = {"cluster_name": "c1", "nodes": _nodes(3) + _nodes(2, "cpu", 0),
                               "partitions": (Partition("h100", True, {"MaxTime": "4:00:00"}), Partition("cpu"))}
    base.update(kw)
    return ConfInputs(**base)  # type: ignore[arg-type]


def test_identical_nodes_share_one_line_with_addresses_in_expansion_order() -> None:
    nodes = tuple(SlurmNode(f"n-{i}", "p", 4, 1000, addr=f"10.1.0.{i}") for i in (1, 2, 10, 3))
    (group,) = node_groups(nodes)
    assert group.hostlist == "n-[1-3,10]"
    assert group.addrs == ",".join(f"10.1.0.{i}" for i in (1, 2, 3, 10))
    assert [f"10.1.0.{n.split('-')[1]}" for n in expand_hostlist(group.hostlist)] == group.addrs.split(",")


def test_slurm_conf_has_nodes_partitions_and_gres() -> None:
    text = render_slurm_conf(_inputs())
    assert "ClusterName=c1" in text.splitlines()
    assert ("NodeName=h100-[0001-0003] NodeAddr=10.0.0.1,10.0.0.2,10.0.0.3 CPUs=96 RealMemory=1048576 "
            "Gres=gpu:h100:8 Features=h100 State=UNKNOWN") in text
    assert "PartitionName=h100 Nodes=h100-[0001-0003] Default=YES MaxTime=4:00:00 State=UP" in text
    assert "PartitionName=cpu Nodes=cpu-[0001-0002] Default=NO State=UP" in text
    assert "GresTypes=gpu" in text
    assert "JobSubmitPlugins" not in text


def test_empty_partition_is_written_with_an_empty_node_list() -> None:
    text = render_slurm_conf(_inputs(nodes=()))
    assert 'PartitionName=h100 Nodes="" Default=YES' in text
    assert "GresTypes" not in text


def test_overrides_come_before_nodes() -> None:
    text = render_slurm_conf(_inputs(overrides={"MaxJobCount": "5000"}))
    assert text.index("MaxJobCount=5000") < text.index("NodeName=")


def test_gres_conf_files_per_gpu() -> None:
    text = render_gres_conf(_inputs())
    assert "AutoDetect=off" in text
    assert "NodeName=h100-[0001-0003] Name=gpu Type=h100 File=/dev/nvidia[0-7]" in text
    assert "cpu-" not in text


def test_topology_groups_nodes_by_label_value() -> None:
    nodes = _nodes(10)
    text = render_topology_conf(_inputs(nodes=nodes))
    assert "SwitchName=h100-rack-1 Nodes=h100-[0001-0008]" in text
    assert "SwitchName=h100-rack-2 Nodes=h100-[0009-0010]" in text
    assert "SwitchName=c1-root Switches=h100-rack-1,h100-rack-2" in text
    files = render_all(_inputs(nodes=nodes))
    assert "TopologyPlugin=topology/tree" in files["slurm.conf"]


def test_job_submit_lua_lists_podgroup_partitions_and_launcher() -> None:
    inputs = _inputs(partitions=(Partition("h100", True), Partition("pg", podgroup=True)),
                     launcher_path="/opt/sunk/launch")
    text = render_job_submit_lua(inputs)
    assert '["pg"] = true' in text and '["h100"]' not in text
    assert 'local launcher = "/opt/sunk/launch"' in text
    assert 'local default_partition = "h100"' in text
    files = render_all(inputs)
    assert "JobSubmitPlugins=lua" in files["slurm.conf"]
    assert "job_submit.lua" in files


def test_1000_nodes_render_to_few_lines() -> None:
    text = render_slurm_conf(_inputs(nodes=_nodes(1000)))
    assert sum(line.startswith("NodeName=") for line in text.splitlines()) == 1
    assert "NodeName=h100-[0001-1000]" in text


def test_restart_needed_for_node_changes_not_partition_options() -> None:
    old = render_all(_inputs())
    options = render_all(_inputs(partitions=(Partition("h100", True, {"MaxTime": "8:00:00"}), Partition("cpu"))))
    assert not needs_restart(old, options)
    more = render_all(_inputs(nodes=_nodes(4) + _nodes(2, "cpu", 0)))
    assert needs_restart(old, more)
    plugin = render_all(_inputs(overrides={"SelectType": "select/linear"}))
    assert needs_restart(old, plugin)

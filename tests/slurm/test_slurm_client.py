"""SlurmClient on the real daemons: CLI and slurmrestd v0.0.38 read the same nodes; writes land in slurmctld."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir
from sunkbridge.slurm.client import SYNC_SLURM_CONF, CliSlurmClient, NewNode, RestSlurmClient, SlurmError

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def dyn_lane() -> Iterator[SlurmLane]:
    """A Slurm lane configured for the syncer (dynamic nodes, visible cloud nodes) with one static node."""
    base = make_base_dir("sunk-client-")
    lane = SlurmLane(SlurmLaneConfig(
        base_dir=base / "lane", cluster_name="client",
        nodes=(NodeSpec("static-001", cpus=2, memory_mb=1000),),
        partitions=(PartitionSpec("static", ("static-001",), default=True),),
        extra_conf=SYNC_SLURM_CONF)).start()
    try:
        yield lane
    finally:
        lane.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def cli(dyn_lane: SlurmLane) -> CliSlurmClient:
    return CliSlurmClient(dyn_lane.env())


@pytest.fixture()
def rest(dyn_lane: SlurmLane, cli: CliSlurmClient) -> RestSlurmClient:
    return RestSlurmClient(dyn_lane.restd_url, dyn_lane.token, cli)


def test_create_cloud_nodes_with_gres_and_features(cli: CliSlurmClient) -> None:
    cli.create_nodes([NewNode(f"c-{i:04d}", 8, 2000, "gpu:h100:8", ("h100", "pool_c")) for i in range(1, 4)]
                     + [NewNode("d-0001", 4, 1000)])
    nodes = cli.nodes()
    assert {"c-0001", "c-0002", "c-0003", "d-0001", "static-001"} <= set(nodes)
    c1 = nodes["c-0001"]
    assert (c1.cpus, c1.memory_mb, c1.gres, c1.features) == (8, 2000, "gpu:h100:8", ("h100", "pool_c"))
    assert {"CLOUD", "DYNAMIC_NORM"} <= c1.flags and c1.dynamic and not c1.drained
    assert nodes["d-0001"].gres == "" and not nodes["static-001"].dynamic
    cli.delete_nodes(["c-0001", "c-0002", "c-0003", "d-0001"])
    assert set(cli.nodes()) == {"static-001"}


def test_drain_down_resume_keep_reason_and_user(cli: CliSlurmClient) -> None:
    cli.create_nodes([NewNode("e-0001", 4, 1000), NewNode("e-0002", 4, 1000)])
    try:
        cli.drain(["e-0001", "e-0002"], "sunk: cordoned")
        nodes = cli.nodes()
        assert nodes["e-0001"].drained and nodes["e-0001"].reason == "sunk: cordoned"
        assert nodes["e-0001"].reason_user == "root" and nodes["e-0001"].display_state == "drain~"
        cli.down(["e-0002"], "sunk: node deleted")
        e2 = cli.nodes()["e-0002"]
        assert e2.down and e2.reason == "sunk: node deleted"
        cli.resume(["e-0001", "e-0002"])
        nodes = cli.nodes()
        assert not nodes["e-0001"].drained and not nodes["e-0002"].down and nodes["e-0001"].reason == ""
    finally:
        cli.delete_nodes(["e-0001", "e-0002"])


def test_partition_membership_created_and_replaced(cli: CliSlurmClient) -> None:
    cli.create_nodes([NewNode(f"p-{i:04d}", 4, 1000) for i in range(1, 5)])
    try:
        cli.set_partition_nodes("pool-p", ["p-0001", "p-0002", "p-0003"])
        assert cli.partitions()["pool-p"].nodes == ("p-0001", "p-0002", "p-0003")
        assert cli.nodes()["p-0002"].partitions == ("pool-p",)
        cli.set_partition_nodes("pool-p", ["p-0003", "p-0004"])
        assert cli.partitions()["pool-p"].nodes == ("p-0003", "p-0004")
        cli.set_partition_nodes("pool-p", [])
        assert cli.partitions()["pool-p"].nodes == ()
    finally:
        cli.delete_nodes([f"p-{i:04d}" for i in range(1, 5)])


def test_features_and_gres_update(cli: CliSlurmClient) -> None:
    cli.create_nodes([NewNode("f-0001", 4, 1000, "gpu:a100:8", ("a100",))])
    try:
        cli.set_features("f-0001", ["a100", "rack_7"])
        cli.set_gres("f-0001", "gpu:a100:4")
        node = cli.nodes()["f-0001"]
        assert node.features == ("a100", "rack_7") and node.gres == "gpu:a100:4"
    finally:
        cli.delete_nodes(["f-0001"])


def test_rest_reads_what_cli_reads(cli: CliSlurmClient, rest: RestSlurmClient) -> None:
    cli.create_nodes([NewNode("r-0001", 4, 1000, "gpu:h100:2", ("h100",))])
    try:
        cli.drain(["r-0001"], "admin maintenance")
        cli.set_partition_nodes("pool-r", ["r-0001"])
        assert rest.ping() and cli.ping()
        assert rest.nodes() == cli.nodes()
        assert rest.partitions()["pool-r"].nodes == cli.partitions()["pool-r"].nodes == ("r-0001",)
        # update_time: nothing changed since a moment from now -> 304, reported as None
        assert rest.nodes_if_changed(time.time() + 60) is None
        changed = rest.nodes_if_changed(time.time() - 3600)
        assert changed is not None and changed["r-0001"].reason == "admin maintenance"
    finally:
        cli.delete_nodes(["r-0001"])


def test_errors_name_the_command_and_slurms_answer(cli: CliSlurmClient) -> None:
    with pytest.raises(SlurmError, match=r"scontrol update NodeName=no-such-node .*exited 1"):
        cli.drain(["no-such-node"], "sunk: x")

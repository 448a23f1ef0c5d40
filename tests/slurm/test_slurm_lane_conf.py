"""Pure parts of the Slurm lane: configuration rendering, validation and error messages (no daemons)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sunkbridge.lanes.slurm as slurm_lane_module
from sunkbridge.lanes.slurm import (
    LanePaths,
    LanePorts,
    NodeSpec,
    PartitionSpec,
    SlurmLaneConfig,
    SlurmLaneError,
    ensure_installed,
    missing_packages,
    render_cgroup_conf,
    render_gres_conf,
    render_mariadb_cnf,
    render_slurm_conf,
    render_slurmdbd_conf,
    runtime_dir_for,
)

BASE = Path("/tmp/lane-x")


def _rendered() -> tuple[SlurmLaneConfig, str]:
    config = SlurmLaneConfig(base_dir=BASE)
    return config, render_slurm_conf(config, LanePaths(BASE), _ports(config))


def _ports(config: SlurmLaneConfig) -> LanePorts:
    return LanePorts(slurmctld=21000, slurmd={n.name: 21001 + i for i, n in enumerate(config.nodes)},
                     restd=21100, slurmdbd=21200, mariadb=21201)


def _settings(conf: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in conf.splitlines() if " " not in line and "=" in line)


def test_slurm_conf_gives_every_slurmd_its_own_port_and_paths() -> None:
    config, conf = _rendered()
    node_lines = [line for line in conf.splitlines() if line.startswith("NodeName=")]
    assert len(node_lines) == len(config.nodes) >= 4
    assert len({line.split("Port=")[1].split()[0] for line in node_lines}) == len(node_lines)
    assert "NodeName=gpu-001 NodeHostname=localhost NodeAddr=127.0.0.1 Port=21001 CPUs=32 RealMemory=16000 " \
           "Gres=gpu:h100:8 Features=h100,nvlink,ib State=UNKNOWN" in node_lines
    settings = _settings(conf)
    assert settings["SlurmdSpoolDir"] == f"{BASE}/spool/%n"
    assert settings["SlurmdPidFile"] == f"{BASE}/run/slurmd-%n.pid"
    assert settings["SlurmdLogFile"] == f"{BASE}/log/slurmd-%n.log"
    assert settings["AuthInfo"] == f"socket={BASE}/munge/munge.socket"
    assert settings["SlurmctldPort"] == "21000"


def test_slurm_conf_settings_the_tests_rely_on() -> None:
    _, conf = _rendered()
    settings = _settings(conf)
    for key, value in {
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core_Memory",
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none", "GresTypes": "gpu",
        "MaxArraySize": "1001", "SlurmUser": "root", "ReturnToService": "2",
        "SlurmdParameters": "config_overrides", "AuthAltTypes": "auth/jwt", "DefMemPerCPU": "1000",
        "StateSaveLocation": f"{BASE}/spool/ctld",
    }.items():
        assert settings[key] == value, key
    partitions = [line for line in conf.splitlines() if line.startswith("PartitionName=")]
    assert [p.split()[0].split("=")[1] for p in partitions] == ["h100", "a100", "cpu"]
    assert [("Default=YES" in p) for p in partitions] == [True, False, False]


def test_accounting_goes_through_slurmdbd_unless_turned_off() -> None:
    _, conf = _rendered()
    settings = _settings(conf)
    assert settings["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert settings["AccountingStoragePort"] == "21200"
    assert settings["AccountingStoragePass"] == f"{BASE}/munge/munge.socket"
    assert settings["JobAcctGatherType"] == "jobacct_gather/linux"
    assert "AccountingStorageEnforce" not in settings
    off = SlurmLaneConfig(base_dir=BASE, accounting=False)
    settings = _settings(render_slurm_conf(off, LanePaths(BASE), LanePorts(1, {n.name: 2 for n in off.nodes}, 3)))
    assert settings["AccountingStorageType"] == "accounting_storage/none"
    assert settings["JobAcctGatherType"] == "jobacct_gather/none"
    assert "AccountingStoragePort" not in settings


def test_slurmdbd_conf_stores_into_the_lanes_mariadb() -> None:
    config = SlurmLaneConfig(base_dir=BASE)
    conf = render_slurmdbd_conf(config, LanePaths(BASE), _ports(config), "s3cret")
    assert _settings(conf) == {
        "AuthType": "auth/munge", "AuthInfo": f"socket={BASE}/munge/munge.socket", "DbdHost": "localhost",
        "DbdAddr": "127.0.0.1", "DbdPort": "21200", "SlurmUser": "root", "PidFile": f"{BASE}/run/slurmdbd.pid",
        "LogFile": f"{BASE}/log/slurmdbd.log", "DebugLevel": "info",
        "StorageType": "accounting_storage/mysql", "StorageHost": "127.0.0.1", "StoragePort": "21201",
        "StorageUser": "slurm", "StoragePass": "s3cret", "StorageLoc": "slurm_acct_db",
    }


def test_mariadb_listens_on_loopback_with_its_own_files() -> None:
    config = SlurmLaneConfig(base_dir=BASE)
    lines = render_mariadb_cnf(LanePaths(BASE), _ports(config)).splitlines()
    assert lines[0] == "[mysqld]"
    for line in (f"datadir={BASE}/db/data", f"socket={BASE}/db/mariadbd.sock", "port=21201",
                 "bind-address=127.0.0.1", "skip-name-resolve"):
        assert line in lines
    assert lines[lines.index("[client]") + 1:] == [f"socket={BASE}/db/mariadbd.sock", "user=root"]


def test_cluster_name_must_be_lowercase() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        SlurmLaneConfig(base_dir=BASE, cluster_name="Sunk")


def test_jwt_can_be_left_out() -> None:
    config = SlurmLaneConfig(base_dir=BASE, jwt=False, def_mem_per_cpu_mb=None)
    conf = render_slurm_conf(config, LanePaths(BASE), _ports(config))
    assert "AuthAlt" not in conf and "DefMemPerCPU" not in conf


def test_gres_conf_backs_each_gpu_with_a_device_file() -> None:
    config = SlurmLaneConfig(base_dir=BASE, nodes=(
        NodeSpec("g1", gpus=8, gpu_type="h100"), NodeSpec("g2", gpus=1), NodeSpec("c1"),
    ), partitions=(PartitionSpec("p", ("g1", "g2", "c1")),))
    assert render_gres_conf(config, LanePaths(BASE)).splitlines() == [
        "AutoDetect=off",
        f"NodeName=g1 Name=gpu Type=h100 File={BASE}/dev/g1/nvidia[0-7]",
        f"NodeName=g2 Name=gpu File={BASE}/dev/g2/nvidia0",
    ]
    assert "ConstrainDevices=no" in render_cgroup_conf()


def test_config_rejects_partitions_over_unknown_nodes() -> None:
    with pytest.raises(ValueError, match="unknown nodes"):
        SlurmLaneConfig(base_dir=BASE, nodes=(NodeSpec("a"),), partitions=(PartitionSpec("p", ("a", "b")),))
    with pytest.raises(ValueError, match="repeat"):
        SlurmLaneConfig(base_dir=BASE, nodes=(NodeSpec("a"), NodeSpec("a")), partitions=())


def test_errors_are_one_line_with_step_log_and_fix() -> None:
    err = SlurmLaneError("start slurmd g1", "died:\nfatal: bad", log=Path("/x/slurmd.log"), fix="read it")
    assert str(err) == ("slurm lane: start slurmd g1 failed: died: fatal: bad; log: /x/slurmd.log; "
                        "fix: read it")


def test_runtime_dir_only_when_the_base_is_private(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert runtime_dir_for(Path("/tmp/some-lane")) is None
    elsewhere = runtime_dir_for(private / "lane")
    assert elsewhere is not None and elsewhere.name.startswith("slurm-")
    assert elsewhere == runtime_dir_for(private / "lane")
    assert LanePaths(private, elsewhere).slurm_conf == elsewhere / "etc" / "slurm.conf"
    assert LanePaths(private, elsewhere).slurmctld_log == private / "log" / "slurmctld.log"


def test_everything_the_lane_needs_is_installed_here() -> None:
    # On a fresh machine `ensure_installed()` runs apt-get; here the packages are present, so it is a no-op.
    if os.geteuid() != 0 or missing_packages():
        pytest.skip("needs root and the Debian Slurm packages")
    assert ensure_installed() == []


def test_failed_apt_step_is_reported_mocked_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in apt-get: a real apt failure cannot be provoked safely on a shared machine.
    if os.geteuid() != 0:
        pytest.skip("ensure_installed only runs apt-get as root")
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package slurmd' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(slurm_lane_module, "missing_packages", lambda accounting: ["slurmd"])
    monkeypatch.setattr(slurm_lane_module, "_apt_updated", False)
    with pytest.raises(SlurmLaneError) as err:
        ensure_installed()
    message = str(err.value)
    assert message.startswith("slurm lane: apt-get update failed:")
    assert "exited 100: E: Unable to locate package slurmd" in message
    assert "fix: run `apt-get update && apt-get install -y" in message
    assert "\n" not in message

"""The launcher's pure parts: Slurm filename patterns, the allocation from Slurm's environment, names,
the API configuration from a ServiceAccount token folder."""

from __future__ import annotations

import io
import os
import pwd
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sunkbridge.jobs.launcher import (
    IN_CLUSTER_SERVER,
    LaunchError,
    LogCopy,
    Mount,
    PatternContext,
    build_slurmjob,
    expand_counts,
    expand_hostlist,
    expand_pattern,
    main,
    normalise_image,
    parse_log_line,
    parse_mounts,
    partition_default_image,
    read_token,
    sanitise_name,
    slurmjob_name,
    token_configuration,
)
from sunkbridge.sbatch.hostlist import compress_hostlist
from sunkbridge.sbatch.hostlist import expand_hostlist as sbatch_expand

CTX = PatternContext(job_id=42, job_name="train", user="alice", node="gpu-001")
ARRAY = PatternContext(job_id=45, job_name="sweep", user="bob", node="n1", array_job_id=43, array_task_id=2)


@pytest.mark.parametrize(("pattern", "ctx", "expected"), [
    ("slurm-%j.out", CTX, "slurm-42.out"),
    ("%x-%u-%N.%n.%t.%s", CTX, "train-alice-gpu-001.0.0.batch"),
    ("%J", CTX, "42"),
    ("%J", PatternContext(job_id=42, job_name="x", user="u", node="n", step="3"), "42.3"),
    ("%6j", CTX, "000042"),
    ("%A_%a", CTX, "42_4294967294"),
    ("slurm-%A_%a.out", ARRAY, "slurm-43_2.out"),
    ("%3a-%j", ARRAY, "002-45"),
    ("100%%-%j", CTX, "100%-42"),
    ("%12j", CTX, "0000000042"),  # padding stops at 10 digits
    ("lit\\%j", CTX, "lit%j"),  # a backslash turns expansion off
    ("%q-%j", CTX, "%q-42"),
])
def test_patterns_expand_as_slurmd(pattern: str, ctx: PatternContext, expected: str) -> None:
    assert expand_pattern(pattern, ctx) == expected


def test_counts_and_hostlists() -> None:
    assert expand_counts("2(x3),1") == [2, 2, 2, 1]
    assert expand_hostlist("gpu-[001-003,007],cpu-1") == ["gpu-001", "gpu-002", "gpu-003", "gpu-007", "cpu-1"]


names = st.lists(st.builds(lambda p, n, w: f"{p}{str(n).zfill(w)}", st.sampled_from(["a", "gpu-", "n"]),
                           st.integers(0, 120), st.integers(1, 3)), min_size=1, max_size=12)


@given(names)
def test_launcher_hostlist_agrees_with_the_sbatch_parser(hosts: list[str]) -> None:
    text = compress_hostlist(hosts)
    assert expand_hostlist(text) == sbatch_expand(text) == hosts


def _log(*lines: tuple[str, str]) -> bytes:
    """A ``timestamps=true`` pod log of (time, text) lines."""
    return b"".join(f"{t} {x}".encode() for t, x in lines)


LOG = (("2026-11-26T17:18:09.5Z", "one\n"), ("2026-11-26T17:18:09.500000001Z", "two\r\n"),
       ("2026-11-26T17:18:10Z", "three\n"), ("2026-11-26T17:18:10Z", "no newline"))


def test_log_lines_carry_the_kubelets_time() -> None:
    assert parse_log_line(b"2026-11-26T17:18:09.5Z a b\n") == ((1795713489, 500000000), b"a b\n")
    assert parse_log_line(b"2026-11-26T18:18:09.000000002+01:00 x") == ((1795713489, 2), b"x")
    with pytest.raises(ValueError):
        parse_log_line(b"bye\n")


@pytest.mark.parametrize("chunks", [
    [],  # the follow stream never opened (the container had ended): the final read copies all
    [_log(*LOG[:1])[:7]],  # the stream ended inside the first line's time
    [_log(*LOG[:2])[:-1]],  # ... inside the second line
    [_log(*LOG[:1]), _log(*LOG[1:3])],  # ... at a line's end
    [_log(*LOG)],  # the stream had everything, the last line without its newline
])
def test_the_final_read_writes_exactly_what_the_stream_did_not(chunks: list[bytes]) -> None:
    sink = io.BytesIO()
    copy = LogCopy(sink)
    for chunk in chunks:
        copy.feed(chunk)
    copy.close()
    copy.feed(_log(*LOG))  # a stream that is closed writes nothing more
    copy.complete(_log(*LOG))
    assert sink.getvalue() == b"one\ntwo\r\nthree\nno newline"


def test_after_a_rotation_the_final_read_goes_on_after_the_last_copied_time() -> None:
    sink = io.BytesIO()
    copy = LogCopy(sink, "Stdout")
    copy.feed(_log(*LOG[:2]))
    copy.complete(_log(*LOG[1:]))  # the kubelet rotated the file after the first line
    assert sink.getvalue() == b"one\ntwo\r\nthree\nno newline"
    assert copy.request(follow=True)["stream"] == "Stdout" and copy.request(follow=False)["timestamps"]


def test_mounts_and_images() -> None:
    assert parse_mounts("/data:/data:ro,/scratch") == [Mount("/data", "/data", True), Mount("/scratch", "/scratch")]
    for bad in ("data:/x", "/a:/b:rx", "/a:/b:ro:x", "/a,,/b"):
        with pytest.raises(LaunchError, match="container-mounts"):
            parse_mounts(bad)
    assert normalise_image("nvcr.io#nvidia/pytorch:24.01") == "nvcr.io/nvidia/pytorch:24.01"
    for bad in ("", "UPPER CASE", "img:", "a//b"):
        with pytest.raises(LaunchError, match="container-image"):
            normalise_image(bad)


def test_names_are_dns_labels() -> None:
    assert sanitise_name("My_Cluster.01!") == "my-cluster-01"
    assert len(sanitise_name("x" * 100)) == 63
    assert slurmjob_name("Sunk", 7, 0) == "sunk-7"
    assert slurmjob_name("Sunk", 7, 2) == "sunk-7-r2"


def _env(**extra: str) -> dict[str, str]:
    me = pwd.getpwuid(os.getuid())
    return {"SLURM_JOB_ID": "12", "SLURM_JOB_NODELIST": "node-[1-2]", "SLURM_JOB_CPUS_PER_NODE": "2(x2)",
            "SLURM_JOB_UID": str(me.pw_uid), "SLURM_JOB_GID": str(me.pw_gid), "SLURM_JOB_USER": me.pw_name,
            "SLURM_MEM_PER_CPU": "1000", "SLURM_JOB_PARTITION": "pg", "PATH": "/host/bin", "HOME": "/home/x",
            **extra}


def test_slurmjob_from_the_batch_environment() -> None:
    env = _env(SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_container_image="local/app:1",
               SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_container_mounts="/data:/mnt/data:ro",
               SLURM_ARRAY_JOB_ID="10", SLURM_ARRAY_TASK_ID="2", SLURM_GPUS_ON_NODE="4")
    body = build_slurmjob(env, "#!/bin/sh\necho hi\n", ["a b"], cluster="sunk", namespace="jobs",
                          default_image=None, cwd="/work")
    spec = body["spec"]
    assert body["metadata"]["name"] == "sunk-12"
    assert [n["name"] for n in spec["nodes"]] == ["node-1", "node-2"]
    assert spec["nodes"][0] == {"name": "node-1", "kubernetesNode": "node-1", "cpus": 2, "gpus": 4,
                                "memoryMB": 2000}
    assert spec["image"] == "local/app:1"
    assert spec["mounts"] == [{"source": "/data", "target": "/mnt/data", "readOnly": True}]
    assert spec["user"]["uid"] == os.getuid()
    assert spec["arrayJobId"] == 10 and spec["arrayTaskId"] == 2
    assert "PATH" not in spec["env"] and spec["env"]["HOME"] == "/home/x"
    assert spec["workingDir"] == "/work" and spec["args"] == ["a b"]


def test_bad_input_fails_with_a_reason() -> None:
    with pytest.raises(LaunchError, match="no --container-image"):
        build_slurmjob(_env(), "", [], cluster="c", namespace="n", default_image=None, cwd="/")
    with pytest.raises(LaunchError, match="no uid mapping"):
        build_slurmjob(_env(SLURM_JOB_UID="4000123"), "", [], cluster="c", namespace="n", default_image="i",
                       cwd="/")
    with pytest.raises(LaunchError, match="container-workdir"):
        build_slurmjob(_env(SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_container_workdir="rel"), "", [],
                       cluster="c", namespace="n", default_image="i", cwd="/")


def _token_dir(folder: Path, token: str = "first-token") -> Path:
    folder.mkdir()
    (folder / "token").write_text(token + "\n")
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return folder


def test_token_folder_gives_a_bearer_configuration_that_follows_rotation(tmp_path: Path) -> None:
    folder = _token_dir(tmp_path / "launcher")
    cfg = token_configuration(folder)
    assert cfg.host == IN_CLUSTER_SERVER == "https://kubernetes.default.svc"
    assert cfg.ssl_ca_cert == str(folder / "ca.crt")
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer first-token"
    # The kubelet rotates a projected token by swapping the file under a new name.
    (folder / "token.new").write_text("second-token")
    (folder / "token.new").replace(folder / "token")
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer second-token"
    (folder / "token").unlink()  # a failed re-read keeps the token in hand
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer second-token"
    assert token_configuration(_token_dir(tmp_path / "b"), "https://10.0.0.1:6443").host == "https://10.0.0.1:6443"


def test_a_missing_or_unusable_token_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "token"
    with pytest.raises(LaunchError, match=re.escape(f"cannot read the launcher's token {missing} (No such file")):
        read_token(missing)
    (tmp_path / "dir" / "token").mkdir(parents=True)
    with pytest.raises(LaunchError, match=r"Is a directory.*must mount the launcher's ServiceAccount token"):
        token_configuration(tmp_path / "dir")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "token").write_text("\n")
    with pytest.raises(LaunchError, match="is empty"):
        read_token(tmp_path / "empty" / "token")
    folder = _token_dir(tmp_path / "noca")
    (folder / "ca.crt").unlink()
    with pytest.raises(LaunchError, match=re.escape(f"no CA certificate at {folder / 'ca.crt'}")):
        token_configuration(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid in a child process needs root")
def test_a_root_only_token_tells_a_job_user_that_only_root_can_submit() -> None:
    """The kubelet's token is mode 0400, owned by root; a job of another user gets EACCES for real."""
    with tempfile.TemporaryDirectory() as top:  # pytest's tmp_path sits below a folder only root may enter
        Path(top).chmod(0o755)
        token = _token_dir(Path(top) / "launcher") / "token"
        token.chmod(0o400)
        message = _read_token_as_nobody(token)
    assert message == (f"cannot read the launcher's token {token} as uid 65534: pod-group jobs of this "
                       "cluster can only be submitted by root until the controller verifies job owners")


def _read_token_as_nobody(token: Path) -> str:
    """What read_token says in a child process that dropped to uid/gid 65534."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to nobody, as slurmd does for a job's user
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            try:
                answer = "read " + read_token(token)
            except LaunchError as exc:
                answer = str(exc)
            os.write(write, answer.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return message


def test_the_launcher_needs_exactly_one_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SUNK_LAUNCHER_KUBECONFIG", raising=False)
    for argv, reason in [
        ([], "give --kubeconfig FILE or --token-dir DIR"),
        (["--kubeconfig", "k", "--token-dir", str(tmp_path), "--"], "not allowed with argument"),
        (["--kubeconfig", "k", "--server", "https://x", "--"], "--server goes with --token-dir"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert reason in capsys.readouterr().err


def test_partition_image_picks_the_default_image_of_the_jobs_partition() -> None:
    pairs = ["gpu=registry.example/train:1", "cpu=local/job:1"]
    assert partition_default_image({"SLURM_JOB_PARTITION": "cpu"}, pairs, "fallback:1") == "local/job:1"
    assert partition_default_image({"SLURM_JOB_PARTITION": "other"}, pairs, "fallback:1") == "fallback:1"
    assert partition_default_image({}, [], None) is None
    with pytest.raises(LaunchError, match="'gpu' is not PARTITION=IMAGE"):
        partition_default_image({"SLURM_JOB_PARTITION": "gpu"}, ["gpu"], None)

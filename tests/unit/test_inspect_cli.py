"""`sunk inspect` through click's CliRunner."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sunk_cli.inspect_cmd import inspect_cmd

from sunkbridge.sbatch import CONTRACT_KEYS

SCRIPT = "#!/bin/bash\n#SBATCH -N 2 --gpus-per-node=h100:8\n#SBATCH -t 2:00:00\nsrun python train.py\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "train.sbatch").write_text(SCRIPT)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def invoke(
    args: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[int, str, str]:
    clean = {k: None for k in os.environ if k.startswith(("SBATCH_", "SLURM_", "SUNK_"))}
    runner = CliRunner()
    result = runner.invoke(inspect_cmd, args, env={**clean, **(env or {})}, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_json_is_one_contract_object(workdir: Path) -> None:
    code, out, err = invoke(["--json", "train.sbatch", "--epochs", "3"])
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == list(CONTRACT_KEYS)
    assert data["nodes"] == {"min": 2, "max": 2}
    assert data["gres_per_node"] == ["gpu:h100:8"]
    assert data["time_limit_minutes"] == 120
    assert data["script_args"] == ["--epochs", "3"]
    assert data["chdir"] == os.getcwd()


def test_sbatch_options_pass_through_click(workdir: Path) -> None:
    code, out, err = invoke(["--json", "-HN4", "--ntasks-per-n=2", "--time", "30", "-J", "x", "train.sbatch"])
    assert code == 0, err
    data = json.loads(out)
    assert (
        data["hold"],
        data["nodes"]["min"],
        data["ntasks"],
        data["time_limit_minutes"],
        data["job_name"],
    ) == (
        True,
        4,
        8,
        30,
        "x",
    )


def test_only_a_leading_json_is_ours(workdir: Path) -> None:
    code, _, err = invoke(["-N", "2", "--json", "train.sbatch"])
    assert code == 1
    assert err.strip().startswith("sunk inspect: error: unrecognized option '--json'; check the spelling")


def test_environment_is_read(workdir: Path) -> None:
    code, out, _ = invoke(
        ["--json", "train.sbatch"], env={"SBATCH_PARTITION": "a100", "SBATCH_TIMELIMIT": "5"}
    )
    assert code == 0
    data = json.loads(out)
    assert (data["partition"], data["time_limit_minutes"]) == ("a100", 5)


def test_script_from_stdin(workdir: Path) -> None:
    code, out, err = invoke(["--json", "-n", "3"], stdin="#!/bin/sh\n#SBATCH -J piped\nhostname\n")
    assert code == 0, err
    data = json.loads(out)
    assert (data["job_name"], data["ntasks"]) == ("piped", 3)


def test_wrap(workdir: Path) -> None:
    code, out, _ = invoke(["--json", "--wrap", "srun hostname"])
    assert code == 0
    data = json.loads(out)
    assert (data["wrap"], data["job_name"]) == ("srun hostname", "wrap")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--json", "--time=xx", "train.sbatch"], None, "--time='xx': invalid time"),
        (["--bogus", "train.sbatch"], None, "unrecognized option '--bogus'"),
        (["missing.sbatch"], None, "missing.sbatch: unable to open the batch script"),
        (["--wrap=hostname", "train.sbatch"], None, "script arguments are not permitted with --wrap"),
        (["--json"], "#!/bin/sh\r\necho\r\n", "DOS line breaks"),
        (["--json"], "", "batch script is empty"),
        (["--array=0-5000", "train.sbatch"], None, "MaxArraySize=1001"),
    ],
)
def test_rejections_are_one_line_on_stderr(
    workdir: Path, args: list[str], stdin: str | None, message: str
) -> None:
    code, out, err = invoke(args, stdin=stdin)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sunk inspect: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_max_array_size_from_the_environment(workdir: Path) -> None:
    code, out, _ = invoke(["--json", "--array=0-5000", "train.sbatch"], env={"SUNK_MAX_ARRAY_SIZE": "10001"})
    assert code == 0
    assert len(json.loads(out)["array"]["indices"]) == 5001
    code, _, err = invoke(["--json", "train.sbatch"], env={"SUNK_MAX_ARRAY_SIZE": "lots"})
    assert code == 1 and "SUNK_MAX_ARRAY_SIZE" in err


def test_summary_without_json(workdir: Path) -> None:
    code, out, _ = invoke(["-w", "gpu-[001-002]", "--container-image=img:1", "train.sbatch", "a"])
    assert code == 0
    for expected in (
        "train.sbatch",
        "gpu:h100:8",
        "02:00:00",
        "gpu-001,gpu-002",
        "img:1",
        "(cluster default)",
    ):
        assert expected in out


def test_warnings_go_to_stderr(workdir: Path) -> None:
    code, out, err = invoke(["--json", "-N", "3", "-n", "2", "train.sbatch"])
    assert code == 0
    assert json.loads(out)["nodes"] == {"min": 2, "max": 2}
    assert err.strip() == "sunk inspect: warning: can't run 2 processes on 3 nodes, setting nnodes to 2"


@pytest.mark.parametrize("flag", ["--help", "--usage", "-h"])
def test_help(workdir: Path, flag: str) -> None:
    code, out, _ = invoke([flag])
    assert code == 0
    assert "Usage: inspect [--json] [SBATCH OPTIONS...] [SCRIPT [ARGS...]]" in out


def test_version(workdir: Path) -> None:
    code, out, _ = invoke(["-V"])
    assert code == 0 and "22.05" in out


def test_registered_on_the_sunk_group() -> None:
    from sunk_cli.main import main

    result = CliRunner().invoke(main, ["inspect", "--help"], prog_name="sunk")
    assert result.exit_code == 0
    assert "Usage: sunk inspect [--json]" in result.stdout

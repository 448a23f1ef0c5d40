"""Batch script checks and #SBATCH directive reading (behaviour seen with sbatch 22.05.8)."""

from __future__ import annotations

import pytest

from sunkbridge.sbatch import SbatchError
from sunkbridge.sbatch.script import check_script, find_wrapper_directive, read_directives, wrap_script


def words(body: str) -> list[str]:
    return [w.text for w in read_directives("#!/bin/sh\n" + body, "job.sh").words]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("#SBATCH -N 2\n#SBATCH --time=10\necho\n", ["-N", "2", "--time=10"]),
        ("#SBATCH --nodes 2\n", ["--nodes", "2"]),
        ("#SBATCH -N 2 -t 10 --job-name=foo\n", ["-N", "2", "-t", "10", "--job-name=foo"]),
        ("#SBATCH --job-name=a#b\n", ["--job-name=a"]),
        ("#SBATCH --job-name=ab # a comment -N 2\n", ["--job-name=ab"]),
        ('#SBATCH --job-name="a b"\n', ["--job-name=a b"]),
        ("#SBATCH --job-name='a b#c'\n", ["--job-name=a b#c"]),
        ('#SBATCH --job-name=x"a b"y\n', ["--job-name=xa by"]),
        ("#SBATCH --job-name=a\\ b\\#c\n", ["--job-name=a", "b#c"]),  # an escaped blank still splits
        ('#SBATCH --job-name=a\\"b\n', ['--job-name=a"b']),
        ('#SBATCH --job-name="a\\"b"\n', ['--job-name=a"b']),
        ("#SBATCH-N 2\n", ["-N", "2"]),
        ("#SBATCH--nodes=2\n", ["--nodes=2"]),
        ("#SBATCH\t-N\t2\n", ["-N", "2"]),
        ("  #SBATCH -N 2\n", []),  # not in column 1: a comment, ignored
        ("#sbatch -N 2\n", []),  # case-sensitive
        ("echo hi\n#SBATCH -N 2\n", []),  # stops at the first command
        ("\n\n\n#SBATCH -N 2\n", ["-N", "2"]),  # blank lines do not stop it
        ("# hello\n   # indented comment\n#SBATCH -N 2\n", ["-N", "2"]),
        ("   \t\n#SBATCH -N 2\n", ["-N", "2"]),
        ('#SBATCH --job-name="" -N 2\n', ["--job-name=", "-N", "2"]),
        ("#SBATCH '' -N 2\n", []),  # an empty word ends the line, as in sbatch
        ("#SBATCH -N 2 '' -t 5\n", ["-N", "2"]),
        ("#SBATCH --time\n#SBATCH -N 2\n", ["--time", "-N", "2"]),  # one argv across lines
        ("#SBATCH --wrap=hostname\n", ["--wrap=hostname"]),
    ],
)
def test_directive_words(body: str, expected: list[str]) -> None:
    assert words(body) == expected


def test_directive_line_numbers() -> None:
    d = read_directives("#!/bin/sh\n\n#SBATCH -N 2\n#SBATCH -t 5\n", "job.sh")
    assert [(w.text, w.line) for w in d.words] == [("-N", 3), ("2", 3), ("-t", 4), ("5", 4)]


def test_slurm_magic_word_is_read_with_a_warning() -> None:
    d = read_directives("#!/bin/sh\n#SLURM -N 2\n", "job.sh")
    assert [w.text for w in d.words] == ["-N", "2"]
    assert "change them to #SBATCH" in d.warnings[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('#SBATCH --job-name="ab\n', 'job.sh line 2: unmatched " in'),
        ("#SBATCH : -N 2\n", "job.sh line 2: unexpected ':'"),
        ("#SBATCH -N 1\n#SBATCH hetjob\n#SBATCH -N 2\n", "job.sh line 3: heterogeneous jobs"),
        ("#SBATCH packjob\n", "job.sh line 2: heterogeneous jobs"),
    ],
)
def test_directive_errors(body: str, message: str) -> None:
    with pytest.raises(SbatchError) as info:
        words(body)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "batch script is empty"),
        (b"   \n\n", "contains only whitespace"),
        (b"\0#!/bin/sh\n", "contains only whitespace"),  # sbatch reads it as a C string
        (b"#/bin/sh\n", "does not look like a batch script"),
        (b" #!/bin/sh\n", "does not look like a batch script"),
        (b"echo hi\n", "first line must start with #!"),
        (b"#!/bin/sh\n\0\n", "NUL byte"),
        (b"\x7fELF\x02\x01\x01\0\0", "does not look like a batch script"),
        (b"#!/bin/sh\r\n#SBATCH -N 2\r\n", "DOS line breaks"),
    ],
)
def test_script_rejections(data: bytes, message: str) -> None:
    with pytest.raises(SbatchError) as info:
        check_script(data, "job.sh")
    assert message in str(info.value)
    assert str(info.value).startswith("job.sh: ")


@pytest.mark.parametrize(
    "data", [b"#!", b"#!/bin/sh -N 2\n", b"#!/bin/sh\r#SBATCH -N 2\r", b"#!/bin/sh\n\xff\xfe\n"]
)
def test_scripts_sbatch_accepts(data: bytes) -> None:
    assert check_script(data, "job.sh").startswith("#!")


def test_old_mac_line_breaks_are_one_line() -> None:
    text = check_script(b"#!/bin/sh\r#SBATCH -N 2\r", "job.sh")
    assert read_directives(text, "job.sh").words == ()


def test_wrap_script() -> None:
    assert (
        wrap_script("srun hostname")
        == "#!/bin/sh\n# This script was created by sbatch --wrap.\n\nsrun hostname\n"
    )


def test_wrapper_directives_found() -> None:
    assert find_wrapper_directive("#!/bin/sh\n#PBS -N x\n") == (2, "#PBS")
    assert find_wrapper_directive("#!/bin/sh\necho\n#BSUB -J x\n") == (3, "#BSUB")
    assert find_wrapper_directive("#!/bin/sh\n#SBATCH -N 1\n") is None

"""Value grammars: memory, arrays, gres/gpus, dependencies, signals, node counts.

Accepted/rejected sets and resolved values are what sbatch/slurmctld 22.05.8 did with held jobs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sunkbridge.sbatch import (
    ArraySpec,
    SbatchError,
    format_array,
    parse_array,
    parse_dependency,
    parse_gpus,
    parse_gres,
    parse_mem_mb,
)
from sunkbridge.sbatch.gres import format_gres
from sunkbridge.sbatch.values import (
    parse_cpu_freq,
    parse_distribution,
    parse_exclusive,
    parse_extra_node_info,
    parse_hint,
    parse_int,
    parse_mail_type,
    parse_no_kill,
    parse_nodes,
    parse_open_mode,
    parse_priority,
    parse_profile,
    parse_propagate,
    parse_signal,
    parse_switches,
)

# --- memory -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("0", 0),
        ("100", 100),
        ("0100", 100),
        (" 100", 100),
        ("+5", 5),
        ("1024K", 1),
        ("1000K", 1),  # rounds up
        ("1K", 1),
        ("2048K", 2),
        ("1M", 1),
        ("1Mb", 1),
        ("1g", 1024),
        ("1GB", 1024),
        ("1Gb", 1024),
        ("2T", 2 * 1024 * 1024),
    ],
)
def test_memory_sizes(text: str, mb: int) -> None:
    assert parse_mem_mb(text) == mb


@pytest.mark.parametrize(
    "text", ["1.5G", "1P", "-1", "x", "10x", "100 ", "0x10", "1Gx", "1 G", "1GiB", "100B", ""]
)
def test_memory_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--mem-per-cpu="):
        parse_mem_mb(text, "--mem-per-cpu")


# --- arrays -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "indices", "max_running"),
    [
        ("0-3", [0, 1, 2, 3], None),
        ("1,3,5", [1, 3, 5], None),
        ("0-10:2", [0, 2, 4, 6, 8, 10], None),
        ("0-10:3", [0, 3, 6, 9], None),
        ("0-10%2", list(range(11)), 2),
        ("1-1000", list(range(1, 1001)), None),
        ("1000", [1000], None),
        ("1-5%0", [1, 2, 3, 4, 5], None),
        ("1-3%", [1, 2, 3], None),
        ("1,,2", [1, 2], None),
        ("1,", [1], None),
        (",1", [1], None),
        (" 1", [1], None),
        ("+3", [3], None),
        ("1-3:+1", [1, 2, 3], None),
        ("007", [7], None),
        ("3,1,2,1", [1, 2, 3], None),
        ("5-5", [5], None),
        ("1-5:2,7,9-10", [1, 3, 5, 7, 9, 10], None),
        ("1%2", [1], 2),
    ],
)
def test_arrays(text: str, indices: list[int], max_running: int | None) -> None:
    assert parse_array(text) == ArraySpec(tuple(indices), max_running)


@pytest.mark.parametrize(
    "text",
    [
        "1-3:0",
        "3-1",
        "1:2",
        "0-1001",
        "1001",
        "1000-1001",
        "a",
        "-1",
        "1 ",
        "1-2-3",
        "1-3:2:1",
        "0x3",
        "1-3:-1",
        "0-4294967295",
        "4-2:1",
        "",
        "%2",
        "1-3%x",
        "1-5%2%3",
    ],
)
def test_array_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--array="):
        parse_array(text)


def test_array_bound_is_a_parameter() -> None:
    assert parse_array("0-4000", max_array_size=4001).indices[-1] == 4000
    with pytest.raises(SbatchError, match="MaxArraySize=10"):
        parse_array("10", max_array_size=10)


_spec = st.builds(
    lambda idx, mr: ArraySpec(tuple(sorted(idx)), mr),
    st.sets(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60),
    st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
)


@given(_spec)
def test_array_format_parse_round_trip(spec: ArraySpec) -> None:
    assert parse_array(format_array(spec)) == spec


@given(st.integers(0, 900), st.integers(0, 90), st.integers(1, 9))
def test_array_step_ranges(first: int, span: int, step: int) -> None:
    spec = parse_array(f"{first}-{first + span}:{step}")
    assert spec.indices == tuple(range(first, first + span + 1, step))
    assert parse_array(format_array(spec)) == spec


# --- gres / gpus --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("gpu:h100:2", ["gpu:h100:2"]),
        ("gpu:2", ["gpu:2"]),
        ("gpu", ["gpu:1"]),
        ("gpu:h100", ["gpu:h100:1"]),
        ("gres:gpu:2", ["gpu:2"]),
        ("gpu:h100:1,gpu:h100:1", ["gpu:h100:1", "gpu:h100:1"]),
        ("gpu,gpu", ["gpu:1", "gpu:1"]),
        ("gpu:2k", ["gpu:2048"]),
        ("gpu:2M", ["gpu:2097152"]),
        ("gpu:0", ["gpu:0"]),
        ("gpu:-1", ["gpu:-1:1"]),  # sbatch reads a non-digit second field as a type
        ("none", []),
        ("gpu:2,mps:100", ["gpu:2", "mps:100"]),
    ],
)
def test_gres(text: str, normalised: list[str]) -> None:
    assert format_gres(parse_gres(text)) == normalised


@pytest.mark.parametrize(
    "text",
    [
        "gpu:h100:x",
        "gpu:a:b:c:1",
        "gpu:h100:2:x",
        "gpu:2.5",
        "",
        ",",
        "gpu:1,gpu:h100:1",
        "gpu:h100:1 ",
        "gpu::1",
    ],
)
def test_gres_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--gres="):
        parse_gres(text)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("3", ["gpu:3"]),
        ("h100:3", ["gpu:h100:3"]),
        ("h100:1,gpu:2", ["gpu:h100:1", "gpu:gpu:2"]),  # as slurmctld shows it: gres:gpu:gpu:2
        ("x", ["gpu:x:1"]),
        ("h100", ["gpu:h100:1"]),
        ("0", ["gpu:0"]),
    ],
)
def test_gpus(text: str, normalised: list[str]) -> None:
    assert format_gres(parse_gpus(text)) == normalised


@pytest.mark.parametrize("text", ["h100:x", "a:b:2", "", "1,"])
def test_gpus_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--gpus-per-node="):
        parse_gpus(text, "--gpus-per-node")


# --- dependencies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("after:189", "after:189"),
        ("afterany:189", "afterany:189"),
        ("afterok:189", "afterok:189"),
        ("afternotok:189", "afternotok:189"),
        ("aftercorr:189", "aftercorr:189"),
        ("afterburstbuffer:189", "afterburstbuffer:189"),
        ("singleton", "singleton"),
        ("Singleton", "singleton"),
        ("AFTEROK:189", "afterok:189"),
        ("afterok:189:190", "afterok:189,afterok:190"),
        ("afterok:189,afterany:190", "afterok:189,afterany:190"),
        ("afterok:189?afterany:190", "afterok:189?afterany:190"),
        ("afterok:189,afterok:190?singleton", "afterok:189?afterok:190?singleton"),
        ("afterok:189+10", "afterok:189+10"),
        ("after:189+10:190+5", "after:189+10,after:190+5"),
        ("afterok:189,singleton", "afterok:189,singleton"),
        ("afterok:189_1", "afterok:189_1"),
        ("afterok:189_*", "afterok:189_*"),
        ("afterok:189_*+3", "afterok:189_*+3"),
        ("afterok:189_[1-3]", "afterok:189_1,afterok:189_2,afterok:189_3"),
        ("189", "afterany:189"),
        ("189_1", "afterany:189_1"),
        ("afterok:99999", "afterok:99999"),
    ],
)
def test_dependencies_normalise_like_scontrol(text: str, shown: str) -> None:
    assert str(parse_dependency(text)) == shown


def test_empty_dependency_is_none() -> None:
    assert parse_dependency("") is None


@pytest.mark.parametrize(
    "text",
    [
        "afterok",
        "afterok:",
        "foo:189",
        "expand:189",
        "189:190",
        "afterok:189::",
        "afterok:189,,afterok:190",
        "afterok:189 ",
        "after:189+x",
        "after:189+",
        "after:189+-1",
        "afterok:x",
        "singleton:5",
        "189+5",
        "after:189+0",
        "afterok:189?",
        "?afterok:189",
        "afterok:0",
        "after:189+1.5",
    ],
)
def test_dependency_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--dependency="):
        parse_dependency(text)


# --- signals, node counts, modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number", "seconds", "batch", "reservation"),
    [
        ("USR1", 10, 60, False, False),
        ("USR1@60", 10, 60, False, False),
        ("SIGUSR1@90", 10, 90, False, False),
        ("usr1", 10, 60, False, False),
        ("10@60", 10, 60, False, False),
        ("B:USR1@60", 10, 60, True, False),
        ("b:USR1", 10, 60, True, False),
        ("R:USR1", 10, 60, False, True),
        ("RB:USR1@5", 10, 5, True, True),
        ("BR:10", 10, 60, True, True),
        ("B:USR1@", 10, 0, True, False),
        ("65", 65, 60, False, False),
        ("URG", 23, 60, False, False),
        ("TERM@+5", 15, 5, False, False),
    ],
)
def test_signals(text: str, number: int, seconds: int, batch: bool, reservation: bool) -> None:
    spec = parse_signal(text)
    assert (spec.number, spec.seconds, spec.batch_only, spec.reservation) == (
        number,
        seconds,
        batch,
        reservation,
    )


@pytest.mark.parametrize(
    "text", ["USR1@x", "FOO", "0", "@60", "", "R@60", "USR1@-5", "USR1@70000", "R:B:USR1", "SEGV"]
)
def test_signal_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--signal="):
        parse_signal(text)


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("1", (1, 1)),
        ("2", (2, 2)),
        ("1-2", (1, 2)),
        ("0", (0, None)),
        ("0-2", (0, 2)),
        ("1-0", (1, None)),
        ("2k", (2048, 2048)),
        ("1k-2k", (1024, 2048)),
        (" 2", (2, 2)),
        ("+2", (2, 2)),
        ("02", (2, 2)),
    ],
)
def test_node_counts(text: str, nodes: tuple[int, int | None]) -> None:
    assert parse_nodes(text) == nodes


@pytest.mark.parametrize("text", ["2-1", "-1", "1-", "x", "1,2", "1:2", "2 ", "1-2-3", ""])
def test_node_count_rejections(text: str) -> None:
    with pytest.raises(SbatchError, match=r"^--nodes="):
        parse_nodes(text)


def test_positive_ints() -> None:
    assert parse_int(" 3", "--ntasks", minimum=1) == 3
    assert parse_int("01", "--ntasks", minimum=1) == 1
    for bad in ("0", "-1", "x", "2.5", "3k", ""):
        with pytest.raises(SbatchError, match=r"^--ntasks="):
            parse_int(bad, "--ntasks", minimum=1)


def test_modes() -> None:
    assert [parse_open_mode(t) for t in ("a", "app", "append", "APPEND", "t", "trunc")] == [
        "append",
        "append",
        "append",
        "append",
        "truncate",
        "truncate",
    ]
    for bad in ("x", ""):
        with pytest.raises(SbatchError):
            parse_open_mode(bad)
    assert [parse_exclusive(t) for t in (None, "", "user", "MCS")] == [
        "exclusive",
        "exclusive",
        "user",
        "mcs",
    ]
    with pytest.raises(SbatchError):
        parse_exclusive("foo")
    assert [parse_no_kill(t) for t in (None, "set", "off", "no")] == [True, True, False, False]
    with pytest.raises(SbatchError):
        parse_no_kill("x")
    assert parse_mail_type("begin,,END") == ("BEGIN", "END")
    for bad in ("foo", ""):
        with pytest.raises(SbatchError):
            parse_mail_type(bad)


# --- options outside the contract, still checked like sbatch 22.05.8 -----------------------------------


@pytest.mark.parametrize(
    ("parser", "good", "bad"),
    [
        (parse_propagate, ["ALL", "NONE", "NOFILE,CORE", "STACK"], ["nofile", "zz", "ALL,CORE", ""]),
        (parse_profile, ["all", "none", "energy,task", "Task"], ["zz", ""]),
        (
            parse_hint,
            ["compute_bound", "nomultithread", "COMPUTE_BOUND", "compute_bound,nomultithread"],
            ["zz"],
        ),
        (parse_switches, ["2", "2@10:00", "2@x"], ["x", "@5"]),
        (parse_extra_node_info, ["2", "2:4:1", "*:2", "1-2", "2:4:1:3"], ["x", "2:x"]),
        (
            parse_distribution,
            [
                "block",
                "cyclic:block",
                "plane=4",
                "arbitrary",
                "block:cyclic:fcyclic",
                "block,Pack",
                "Block",
                "block:*",
                "*:cyclic",
            ],
            ["zz", "plane=x", "block:zz", "block,zz"],
        ),
        (parse_cpu_freq, ["low", "2000000", "low-high:performance", "Performance", "1000-2000"], ["zz", ""]),
        (parse_priority, ["TOP", "5", "+5", "x"], ["-1"]),
    ],
)
def test_other_option_grammars(parser: Callable[[str], str], good: list[str], bad: list[str]) -> None:
    for text in good:
        assert parser(text) == text
    for text in bad:
        with pytest.raises(SbatchError):
            parser(text)

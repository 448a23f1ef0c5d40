"""Hostlist expansion and compression; expected values are what Slurm 22.05.8's scontrol printed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sunkbridge.sbatch import SbatchError, compress_hostlist, expand_hostlist, unique_hosts


@pytest.mark.parametrize(
    ("expr", "hosts"),
    [
        ("gpu-[001-003]", ["gpu-001", "gpu-002", "gpu-003"]),
        ("gpu-[001-004,007]", ["gpu-001", "gpu-002", "gpu-003", "gpu-004", "gpu-007"]),
        ("gpu-[1-10]", [f"gpu-{i}" for i in range(1, 11)]),
        ("gpu-[01-10]", [f"gpu-{i:02d}" for i in range(1, 11)]),
        ("gpu-[001-2]", ["gpu-001", "gpu-002"]),
        ("a[9-011]", ["a9", "a10", "a11"]),
        ("a[0010-11]", ["a0010", "a0011"]),
        ("a[099-101]", ["a099", "a100", "a101"]),
        ("a[1-2]b[3-4]", ["a1b3", "a1b4", "a2b3", "a2b4"]),
        ("r[1-2]-n[01-02]", ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]),
        ("a[1-3]x[1]", ["a1x1", "a2x1", "a3x1"]),
        ("a,b c", ["a", "b", "c"]),
        ("a[1-3,5]", ["a1", "a2", "a3", "a5"]),
        ("a[1-3],a[2-4]", ["a1", "a2", "a3", "a2", "a3", "a4"]),
        ("a[5-5]", ["a5"]),
        ("[1-2]", ["1", "2"]),
        ("a[1-2],", ["a1", "a2"]),
        (",a", ["a"]),
        ("node7", ["node7"]),
        ("", []),
    ],
)
def test_expand_matches_scontrol(expr: str, hosts: list[str]) -> None:
    assert expand_hostlist(expr) == hosts


@pytest.mark.parametrize(
    "expr",
    [
        "gpu-[2-1]",  # backwards range
        "gpu-[a-b]",  # not digits
        "gpu-[001-",  # unclosed
        "gpu-001]",  # stray ]
        "a[1-2]b[3-4]c",  # text after the last group (22.05: Invalid hostlist)
        "a[1-2]b",
        "a[1-2]5",
        "gpu-[[001]]",  # nested
        "x[]",
        "a[1,,2]",
        "a[1-2-3]",
        "a[1--3]",
        "a[-1]",
        "a[ 1-2]",
    ],
)
def test_expand_rejects_what_scontrol_rejects(expr: str) -> None:
    with pytest.raises(SbatchError) as info:
        expand_hostlist(expr, "--nodelist")
    assert "--nodelist" in str(info.value)
    assert "\n" not in str(info.value)


def test_expand_refuses_huge_lists() -> None:
    with pytest.raises(SbatchError, match="more than"):
        expand_hostlist("n[0-99999999]")


@pytest.mark.parametrize(
    ("hosts", "compressed"),
    [
        ("gpu-001,gpu-002,gpu-003,gpu-007", "gpu-[001-003,007]"),
        ("gpu-1,gpu-2,gpu-3", "gpu-[1-3]"),
        ("gpu-01,gpu-1", "gpu-[01,1]"),
        ("a1,a2,b1,b2", "a[1-2],b[1-2]"),
        ("b1,a1,a2", "b1,a[1-2]"),
        ("a1,a1,a2", "a[1,1-2]"),
        ("a9,a10,a11", "a[9-11]"),
        ("a09,a10", "a[09-10]"),
        ("a1b1,a1b2,a2b1,a2b2", "a1b[1-2],a2b[1-2]"),
        ("node,node1,node2", "node,node[1-2]"),
        ("a,b,c", "a,b,c"),
        ("a1,a3,a5", "a[1,3,5]"),
        ("n1.ib,n2.ib", "n1.ib,n2.ib"),
        ("x-1,x-2", "x-[1-2]"),
        ("gpu-001,gpu-002,cpu-001", "gpu-[001-002],cpu-001"),
        ("a10,a9", "a[10,9]"),
        ("a001,a002,a0003", "a[001-002,0003]"),
        ("r1-n01,r1-n02,r2-n01,r2-n02", "r1-n[01-02],r2-n[01-02]"),
        ("a0,a00,a000", "a[0,00,000]"),
        ("1,2", "[1-2]"),
        ("gpu-1,gpu-01,gpu-2", "gpu-[1,01,2]"),
    ],
)
def test_compress_matches_scontrol_show_hostlist(hosts: str, compressed: str) -> None:
    assert compress_hostlist(hosts.split(",")) == compressed


def test_compress_empty() -> None:
    assert compress_hostlist([]) == ""


def test_unique_hosts_sorts_naturally_and_dedupes() -> None:
    assert unique_hosts(["gpu-010", "gpu-002", "gpu-002", "gpu-9"]) == ["gpu-002", "gpu-9", "gpu-010"]
    assert unique_hosts(["node", "node1"]) == ["node", "node1"]


_prefix = st.text(alphabet="abcgpu-._", min_size=0, max_size=4)
_number = st.integers(min_value=0, max_value=120).flatmap(
    lambda n: st.sampled_from([str(n), str(n).zfill(2), str(n).zfill(3)])
)
_host = st.one_of(
    st.builds(lambda p, n: p + n, _prefix, _number),
    st.text(alphabet="abc-.", min_size=1, max_size=4),
)


@given(st.lists(_host, max_size=40))
def test_expand_of_compress_gives_back_the_hosts(hosts: list[str]) -> None:
    assert expand_hostlist(compress_hostlist(hosts)) == hosts


@given(
    st.lists(st.integers(min_value=0, max_value=300), max_size=60),
    st.sampled_from(["gpu-", "n", "rack1-node"]),
)
def test_compress_of_a_padded_node_set_round_trips(numbers: list[int], prefix: str) -> None:
    hosts = [f"{prefix}{n:03d}" for n in sorted(set(numbers))]
    compressed = compress_hostlist(hosts)
    assert expand_hostlist(compressed) == hosts
    assert compressed.count("[") <= 1

"""getopt_long behaviour of sbatch 22.05: prefixes, clusters, values, errors (seen with sbatch 22.05.8)."""

from __future__ import annotations

import pytest

from sunkbridge.sbatch import SbatchError
from sunkbridge.sbatch.options import OPTIONS, Arg, Operands, getopt_long, lookup_long


def parse(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    stop = Operands()
    opts = [(o.key, o.value) for o in getopt_long(argv, stop=stop)]
    return opts, argv[stop.start :]


def test_table_has_every_sbatch_22_05_long_option() -> None:
    # The names the real binary lists in its "ambiguous option" messages (--a ... --w) plus the
    # three unique first letters j, k, l.
    real = [
        "account",
        "acctg-freq",
        "array",
        "batch",
        "begin",
        "bb",
        "bbf",
        "cluster-constraint",
        "chdir",
        "cluster",
        "clusters",
        "comment",
        "container",
        "context",
        "contiguous",
        "constraint",
        "core-spec",
        "cores-per-socket",
        "cpu-freq",
        "cpus-per-gpu",
        "cpus-per-task",
        "deadline",
        "delay-boot",
        "dependency",
        "distribution",
        "error",
        "exclude",
        "exclusive",
        "export",
        "export-file",
        "extra-node-info",
        "get-user-env",
        "gid",
        "gpu-bind",
        "gpu-freq",
        "gpus",
        "gpus-per-node",
        "gpus-per-socket",
        "gpus-per-task",
        "gres",
        "gres-flags",
        "help",
        "hint",
        "hold",
        "ignore-pbs",
        "input",
        "job-name",
        "kill-on-invalid-dep",
        "licenses",
        "mail-type",
        "mail-user",
        "mcs-label",
        "mem",
        "mem-bind",
        "mem-per-cpu",
        "mem-per-gpu",
        "mincpus",
        "network",
        "nice",
        "no-kill",
        "no-requeue",
        "nodefile",
        "nodelist",
        "nodes",
        "ntasks",
        "ntasks-per-core",
        "ntasks-per-gpu",
        "ntasks-per-node",
        "ntasks-per-socket",
        "ntasks-per-tres",
        "open-mode",
        "output",
        "overcommit",
        "oversubscribe",
        "parsable",
        "partition",
        "power",
        "prefer",
        "priority",
        "profile",
        "propagate",
        "qos",
        "quiet",
        "reboot",
        "requeue",
        "reservation",
        "signal",
        "sockets-per-node",
        "spread-job",
        "switches",
        "tasks-per-node",
        "test-only",
        "thread-spec",
        "threads-per-core",
        "time",
        "time-min",
        "tmp",
        "uid",
        "use-min-nodes",
        "usage",
        "verbose",
        "version",
        "wait",
        "wait-all-nodes",
        "wckey",
        "wrap",
    ]
    ours = {n for spec in OPTIONS if not spec.extension for n in spec.names}
    assert ours == set(real)


def test_short_letters_match_the_binary() -> None:
    shorts = {spec.short for spec in OPTIONS if spec.short}
    assert shorts == set("aAbBcCdDeFGhHiJkLmMnNoOpqQsStvVwWx")
    optional = {spec.key for spec in OPTIONS if spec.arg is Arg.OPTIONAL}
    assert optional == {"exclusive", "get-user-env", "nice", "no-kill", "propagate"}


@pytest.mark.parametrize(
    ("argv", "opts", "rest"),
    [
        (["--nodes=2", "job.sh"], [("nodes", "2")], ["job.sh"]),
        (["--nodes", "2", "job.sh"], [("nodes", "2")], ["job.sh"]),
        (["-N2", "job.sh"], [("nodes", "2")], ["job.sh"]),
        (["-N", "2", "job.sh"], [("nodes", "2")], ["job.sh"]),
        (["-N=2"], [("nodes", "=2")], []),  # sbatch then says '"=2" is not a valid node count'
        (["--cpus-per-t=4"], [("cpus-per-task", "4")], []),
        (["--tasks-per=2"], [("ntasks-per-node", "2")], []),
        (["--ntasks-per-n=2"], [("ntasks-per-node", "2")], []),
        (["--time-=10"], [("time-min", "10")], []),
        (["--cluster=a"], [("clusters", "a")], []),
        (["--clusters=a"], [("clusters", "a")], []),
        (["-HN2"], [("hold", None), ("nodes", "2")], []),
        (["-HvN2"], [("hold", None), ("verbose", None), ("nodes", "2")], []),
        (["-Hn4"], [("hold", None), ("ntasks", "4")], []),
        (["-k"], [("no-kill", None)], []),
        (["-kN2"], [("no-kill", "N2")], []),  # optional value: the rest of the word
        (["-Hk", "job.sh"], [("hold", None), ("no-kill", None)], ["job.sh"]),
        (["--exclusive", "user"], [("exclusive", None)], ["user"]),  # optional value needs '='
        (["--exclusive=user"], [("exclusive", "user")], []),
        (["--job-name="], [("job-name", "")], []),
        (["-J", ""], [("job-name", "")], []),
        (["--time", "-5"], [("time", "-5")], []),  # a required value may start with '-'
        (["--", "job.sh", "-N", "3"], [], ["job.sh", "-N", "3"]),
        (["job.sh", "-N", "3"], [], ["job.sh", "-N", "3"]),
        (["-J", "x", "-", "a"], [("job-name", "x")], ["-", "a"]),
        (["--contai=/b"], [("container", "/b")], []),  # extensions never make a prefix ambiguous
        (["--container-image=img:1"], [("container-image", "img:1")], []),
        (["--container-mounts", "/a:/b"], [("container-mounts", "/a:/b")], []),
    ],
)
def test_getopt(argv: list[str], opts: list[tuple[str, str | None]], rest: list[str]) -> None:
    assert parse(argv) == (opts, rest)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cpus", "4"], "option '--cpus' is ambiguous (could be --cpus-per-gpu, --cpus-per-task)"),
        (["--nod=2"], "option '--nod' is ambiguous"),
        (["--node=2"], "ambiguous"),
        (["--t=10"], "ambiguous"),
        (["--ti=10"], "could be --time, --time-min"),
        (["--clust=x"], "could be --cluster-constraint, --clusters, --cluster"),
        (["--ntasks-per=2"], "ambiguous"),
        (["--bogus=1"], "unrecognized option '--bogus'"),
        (["--container-im=x"], "unrecognized option '--container-im'"),
        (["--f"], "unrecognized option '--f'"),
        (["-f"], "invalid option '-f'"),
        (["-Hf"], "invalid option '-f'"),
        (["--time"], "option '--time' requires a value"),
        (["-t"], "option '-t' requires a value"),
        (["--hold=yes"], "option '--hold' does not take a value"),
        (["--parsable=x"], "does not take a value"),
        (["--wrap"], "requires a value"),
    ],
)
def test_getopt_errors(argv: list[str], message: str) -> None:
    with pytest.raises(SbatchError) as info:
        parse(argv)
    assert message in str(info.value)


def test_labels_prefix_errors() -> None:
    with pytest.raises(SbatchError, match=r"^job.sh line 3: unrecognized option"):
        list(getopt_long(["--bogus"], ["job.sh line 3"]))


def test_lookup_long_exact_wins_over_prefix() -> None:
    assert lookup_long("gpus").key == "gpus"
    assert lookup_long("mem").key == "mem"
    assert lookup_long("time").key == "time"
    assert lookup_long("nodes").key == "nodes"

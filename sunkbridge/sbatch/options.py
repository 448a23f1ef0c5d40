"""sbatch 22.05's option table and a ``getopt_long`` reader with glibc's rules.

The table lists every option the real ``sbatch`` 22.05.8 binary accepts (taken from its own
"ambiguous option" listings and probed one by one for required/optional/no argument), plus three
sunkbridge extensions in the style of the pyxis SPANK plugin: ``--container-image``,
``--container-mounts`` and ``--container-workdir``. Extensions only match when spelled in full, so
they never make an abbreviation of a real option ambiguous (``--contai`` still means ``--container``).

Reading rules (glibc ``getopt_long`` with sbatch's leading ``+``):

* reading stops at the first operand (the script) or after ``--``; ``-`` alone is an operand;
* ``--name=value`` or ``--name value`` for options that require a value (the next word is taken
  even if it starts with ``-``); options with an optional value only take it as ``--name=value``;
* a long name may be abbreviated to any unambiguous prefix; an exact name always wins; a prefix
  shared by aliases of the same option (``--cluster``/``--clusters``) is not ambiguous;
* short options may be clustered (``-HN2`` is ``-H -N 2``); a short option that requires a value
  takes the rest of the word or the next word (``-N2``, ``-N 2``); ``-k`` (optional value) only
  takes the rest of the word.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError


class Arg(enum.Enum):
    """Whether an option takes a value."""

    NONE = "none"
    REQUIRED = "required"
    OPTIONAL = "optional"


@dataclass(frozen=True)
class OptionSpec:
    """One sbatch option: canonical ``key``, long names, short letter and argument kind.

    ``early`` options (help, usage, version, wrap) are read only from the command line; sbatch
    ignores them in ``#SBATCH`` lines. ``extension`` options are sunkbridge's, not sbatch's.
    """

    key: str
    names: tuple[str, ...]
    short: str | None
    arg: Arg
    early: bool = False
    extension: bool = False


def _o(
    names: str, short: str | None = None, arg: Arg = Arg.REQUIRED, early: bool = False, ext: bool = False
) -> OptionSpec:
    parts = tuple(names.split("|"))
    return OptionSpec(parts[0], parts, short, arg, early, ext)


_N = Arg.NONE
_OPT = Arg.OPTIONAL

#: All options of sbatch 22.05 (alphabetical by key), then sunkbridge's extensions.
OPTIONS: tuple[OptionSpec, ...] = (
    _o("account", "A"),
    _o("acctg-freq"),
    _o("array", "a"),
    _o("batch"),
    _o("bb"),
    _o("bbf"),
    _o("begin", "b"),
    _o("chdir", "D"),
    _o("cluster-constraint"),
    _o("clusters|cluster", "M"),
    _o("comment"),
    _o("constraint", "C"),
    _o("container"),
    _o("context"),
    _o("contiguous", arg=_N),
    _o("core-spec", "S"),
    _o("cores-per-socket"),
    _o("cpu-freq"),
    _o("cpus-per-gpu"),
    _o("cpus-per-task", "c"),
    _o("deadline"),
    _o("delay-boot"),
    _o("dependency", "d"),
    _o("distribution", "m"),
    _o("error", "e"),
    _o("exclude", "x"),
    _o("exclusive", arg=_OPT),
    _o("export"),
    _o("export-file"),
    _o("extra-node-info", "B"),
    _o("get-user-env", arg=_OPT),
    _o("gid"),
    _o("gpu-bind"),
    _o("gpu-freq"),
    _o("gpus", "G"),
    _o("gpus-per-node"),
    _o("gpus-per-socket"),
    _o("gpus-per-task"),
    _o("gres"),
    _o("gres-flags"),
    _o("help", "h", _N, early=True),
    _o("hint"),
    _o("hold", "H", _N),
    _o("ignore-pbs", arg=_N),
    _o("input", "i"),
    _o("job-name", "J"),
    _o("kill-on-invalid-dep"),
    _o("licenses", "L"),
    _o("mail-type"),
    _o("mail-user"),
    _o("mcs-label"),
    _o("mem"),
    _o("mem-bind"),
    _o("mem-per-cpu"),
    _o("mem-per-gpu"),
    _o("mincpus"),
    _o("network"),
    _o("nice", arg=_OPT),
    _o("no-kill", "k", _OPT),
    _o("no-requeue", arg=_N),
    _o("nodefile", "F"),
    _o("nodelist", "w"),
    _o("nodes", "N"),
    _o("ntasks", "n"),
    _o("ntasks-per-core"),
    _o("ntasks-per-gpu"),
    _o("ntasks-per-node|tasks-per-node"),
    _o("ntasks-per-socket"),
    _o("ntasks-per-tres"),
    _o("open-mode"),
    _o("output", "o"),
    _o("overcommit", "O", _N),
    _o("oversubscribe", "s", _N),
    _o("parsable", arg=_N),
    _o("partition", "p"),
    _o("power"),
    _o("prefer"),
    _o("priority"),
    _o("profile"),
    _o("propagate", arg=_OPT),
    _o("qos", "q"),
    _o("quiet", "Q", _N),
    _o("reboot", arg=_N),
    _o("requeue", arg=_N),
    _o("reservation"),
    _o("signal"),
    _o("sockets-per-node"),
    _o("spread-job", arg=_N),
    _o("switches"),
    _o("test-only", arg=_N),
    _o("thread-spec"),
    _o("threads-per-core"),
    _o("time", "t"),
    _o("time-min"),
    _o("tmp"),
    _o("uid"),
    _o("usage", arg=_N, early=True),
    _o("use-min-nodes", arg=_N),
    _o("verbose", "v", _N),
    _o("version", "V", _N, early=True),
    _o("wait", "W", _N),
    _o("wait-all-nodes"),
    _o("wckey"),
    _o("wrap", early=True),
    # sunkbridge extensions (pyxis-style container options); exact names only
    _o("container-image", ext=True),
    _o("container-mounts", ext=True),
    _o("container-workdir", ext=True),
)

BY_KEY: dict[str, OptionSpec] = {spec.key: spec for spec in OPTIONS}
_BY_SHORT: dict[str, OptionSpec] = {spec.short: spec for spec in OPTIONS if spec.short}
_LONG: tuple[tuple[str, OptionSpec], ...] = tuple((name, spec) for spec in OPTIONS for name in spec.names)


@dataclass(frozen=True)
class ParsedOption:
    """One option occurrence: its spec, the value (None if it took none) and how it was spelled."""

    spec: OptionSpec
    value: str | None
    spelled: str
    index: int

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class Operands:
    """Filled by :func:`getopt_long` when it stops: the index of the first operand in ``argv``."""

    start: int = 0


def _where(labels: Sequence[str] | None, index: int) -> str:
    if labels is None or index >= len(labels):
        return ""
    return labels[index] + ": "


def lookup_long(name: str) -> OptionSpec:
    """Resolve a long option name or unambiguous prefix (without ``--``) to its spec."""
    for long_name, spec in _LONG:
        if long_name == name:
            return spec
    candidates = [(n, s) for n, s in _LONG if not s.extension and n.startswith(name)]
    if not candidates:
        raise SbatchError(
            f"unrecognized option '--{name}'; check the spelling against `sbatch --help` (Slurm 22.05)"
        )
    first = candidates[0][1]
    if all(s.key == first.key for _, s in candidates):
        return first
    listing = ", ".join("--" + n for n, _ in candidates)
    raise SbatchError(f"option '--{name}' is ambiguous (could be {listing}); write more of the name")


def getopt_long(
    argv: Sequence[str], labels: Sequence[str] | None = None, *, stop: Operands | None = None
) -> Iterator[ParsedOption]:
    """Yield the options of ``argv`` in order, raising :class:`SbatchError` where sbatch would fail.

    ``labels[i]`` (if given) prefixes errors about ``argv[i]``, e.g. ``job.sh line 3``. When the
    generator finishes, ``stop.start`` is the index of the first operand (``len(argv)`` if none).
    """
    i = 0
    n = len(argv)
    while i < n:
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        where = _where(labels, i)
        if word.startswith("--"):
            body = word[2:]
            name, eq, inline = body.partition("=")
            try:
                spec = lookup_long(name)
            except SbatchError as exc:
                raise SbatchError(where + exc.message) from None
            spelled = "--" + (name if name in spec.names else spec.names[0])
            if spec.arg is Arg.NONE:
                if eq:
                    raise SbatchError(
                        f"{where}option '--{spec.key}' does not take a value; write just --{spec.key}"
                    )
                yield ParsedOption(spec, None, spelled, i)
            elif spec.arg is Arg.OPTIONAL:
                yield ParsedOption(spec, inline if eq else None, spelled, i)
            elif eq:
                yield ParsedOption(spec, inline, spelled, i)
            elif i + 1 < n:
                i += 1
                yield ParsedOption(spec, argv[i], spelled, i - 1)
            else:
                raise SbatchError(f"{where}option '--{spec.key}' requires a value; write --{spec.key}=VALUE")
            i += 1
            continue
        # a cluster of short options
        j = 1
        while j < len(word):
            letter = word[j]
            short_spec = _BY_SHORT.get(letter)
            if short_spec is None:
                raise SbatchError(f"{where}invalid option '-{letter}'; check `sbatch --help` (Slurm 22.05)")
            rest = word[j + 1 :]
            if short_spec.arg is Arg.NONE:
                yield ParsedOption(short_spec, None, "-" + letter, i)
                j += 1
                continue
            if short_spec.arg is Arg.OPTIONAL:
                yield ParsedOption(short_spec, rest or None, "-" + letter, i)
            elif rest:
                yield ParsedOption(short_spec, rest, "-" + letter, i)
            elif i + 1 < n:
                i += 1
                yield ParsedOption(short_spec, argv[i], "-" + letter, i - 1)
            else:
                raise SbatchError(f"{where}option '-{letter}' requires a value; write -{letter} VALUE")
            break
        i += 1
    if stop is not None:
        stop.start = i

"""Small sbatch value grammars: numbers, node counts, signals, modes and keyword lists.

Every parser takes the text and ``what`` (the option or variable name used in error messages) and
either returns the value or raises :class:`SbatchError`. Rules come from Slurm 22.05's
``slurm_opt.c``/``proc_args.c`` and were checked against the real sbatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

_WS = "[ \t\n\v\f\r]*"
_INT_RE = re.compile(_WS + r"([+-]?[0-9]+)")
_INT_MAX = 2**31 - 1


def parse_int(text: str, what: str, *, minimum: int = 0) -> int:
    """Parse a decimal integer like Slurm's ``parse_int`` (leading blanks and a sign allowed).

    ``minimum`` is 1 for options that must be positive (``--ntasks``, ``--cpus-per-task``...).
    """
    m = _INT_RE.fullmatch(text)
    if m is None or int(m.group(1)) < minimum or int(m.group(1)) > _INT_MAX:
        low = "a positive" if minimum >= 1 else "a non-negative"
        raise SbatchError(f"{what}={text!r}: invalid number; use {low} whole number")
    return int(m.group(1))


_COUNT_RE = re.compile(_WS + r"\+?([0-9]+)([kKmMgG]?)")
_COUNT_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _node_count(text: str, what: str, value: str) -> int:
    m = _COUNT_RE.fullmatch(text)
    if m is None:
        raise SbatchError(f"{what}={value!r}: invalid node count; use N or MIN-MAX, e.g. 4 or 2-8")
    return int(m.group(1)) * _COUNT_SUFFIX[m.group(2).lower()]


def parse_nodes(text: str, what: str = "--nodes") -> tuple[int, int | None]:
    """Parse ``-N MIN[-MAX]`` (``k``/``m``/``g`` suffixes allowed); ``MAX`` of 0 means unset.

    ``-N 2`` is ``(2, 2)``; ``-N 2-4`` is ``(2, 4)``; ``-N 0`` is ``(0, None)``. Deliberate
    difference: sbatch reads ``-N -1`` as one node; here negative counts are rejected.
    """
    low_text, sep, high_text = text.partition("-")
    low = _node_count(low_text, what, text)
    if not sep:
        return low, (low or None)
    high = _node_count(high_text, what, text)
    if high == 0:
        return low, None
    if high < low:
        raise SbatchError(
            f"{what}={text!r}: maximum node count {high} is below the minimum {low}; write MIN-MAX"
        )
    return low, high


#: The signal names Slurm 22.05's ``sig_name2num`` knows (optionally prefixed by ``SIG``, any case).
SIGNAL_NAMES = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "ABRT": 6,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "ALRM": 14,
    "TERM": 15,
    "CONT": 18,
    "STOP": 19,
    "TSTP": 20,
    "TTIN": 21,
    "TTOU": 22,
    "URG": 23,
}

SIGNAL_FORMS = "[R|B|RB:]SIGNAL[@SECONDS] with SIGNAL a name (USR1, TERM...) or number, e.g. B:USR1@120"


@dataclass(frozen=True)
class SignalSpec:
    """A parsed ``--signal``: number, seconds before the limit, batch-shell-only and reservation flags."""

    number: int
    seconds: int = 60
    batch_only: bool = False
    reservation: bool = False


def parse_signal(text: str, what: str = "--signal") -> SignalSpec:
    """Parse ``--signal=[{R|B|RB|BR}:]SIG[@TIME]`` (TIME 0-65535 seconds, default 60)."""
    rest = text
    batch = reservation = False
    head, sep, tail = rest.partition(":")
    if sep and head.upper() in ("B", "R", "RB", "BR"):
        batch = "B" in head.upper()
        reservation = "R" in head.upper()
        rest = tail
    sig_text, at, secs_text = rest.partition("@")
    number = _signal_number(sig_text)
    if number is None or not 1 <= number <= 0xFFFF:
        raise SbatchError(f"{what}={text!r}: unknown signal {sig_text!r}; use {SIGNAL_FORMS}")
    seconds = 60
    if at:
        if secs_text == "":
            seconds = 0
        elif re.fullmatch(_WS + r"\+?[0-9]+", secs_text) and int(secs_text) <= 0xFFFF:
            seconds = int(secs_text)
        else:
            raise SbatchError(f"{what}={text!r}: invalid time {secs_text!r} after '@'; use 0-65535 seconds")
    return SignalSpec(number, seconds, batch, reservation)


def _signal_number(text: str) -> int | None:
    m = re.fullmatch(_WS + r"([+-]?[0-9]+)" + _WS, text)
    if m:
        return int(m.group(1))
    name = text.strip(" \t\n\v\f\r").upper()
    if name.startswith("SIG"):
        name = name[3:]
    return SIGNAL_NAMES.get(name)


def parse_open_mode(text: str, what: str = "--open-mode") -> str:
    """``append`` or ``truncate``; Slurm only looks at the first letter (``a``/``t``, any case)."""
    if text[:1] in ("a", "A"):
        return "append"
    if text[:1] in ("t", "T"):
        return "truncate"
    raise SbatchError(f"{what}={text!r}: use append or truncate")


def parse_exclusive(text: str | None, what: str = "--exclusive") -> str:
    """``--exclusive[=exclusive|user|mcs|oversubscribe]`` (any case): the sharing mode it selects.

    sbatch 22.05 also takes ``oversubscribe`` here, which means the opposite of exclusive.
    """
    if text is None or text == "":
        return "exclusive"
    lowered = text.lower()
    if lowered in ("exclusive", "user", "mcs", "oversubscribe"):
        return lowered
    raise SbatchError(f"{what}={text!r}: use --exclusive, --exclusive=user or --exclusive=mcs")


def parse_no_kill(text: str | None, what: str = "--no-kill") -> bool:
    """``--no-kill[=set|off|no]``."""
    if text is None or text.lower() == "set":
        return True
    if text.lower() in ("off", "no"):
        return False
    raise SbatchError(f"{what}={text!r}: use --no-kill, --no-kill=set or --no-kill=off")


MAIL_TYPES = (
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
    "INVALID_DEPEND",
)


def parse_mail_type(text: str, what: str = "--mail-type") -> tuple[str, ...]:
    """Comma list of mail events (any case, empty items skipped)."""
    items = tuple(i.upper() for i in text.split(",") if i)
    if not items or any(i not in MAIL_TYPES for i in items):
        raise SbatchError(f"{what}={text!r}: use a comma list of {', '.join(MAIL_TYPES)}")
    return items


def parse_choice(text: str, what: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive)."""
    if text.lower() in choices:
        return text.lower()
    raise SbatchError(f"{what}={text!r}: use one of {', '.join(choices)}")


def parse_nice(text: str | None, what: str = "--nice") -> int:
    """``--nice[=ADJ]``: default 100; sbatch reads the number with ``strtol`` semantics."""
    if text is None:
        return 100
    m = re.match(_WS + r"([+-]?[0-9]+)", text)
    value = int(m.group(1)) if m else 0
    if abs(value) > 2147483645:
        raise SbatchError(f"{what}={text!r}: nice value out of range; use -2147483645 to 2147483645")
    return value


def parse_get_user_env(text: str | None, what: str = "--get-user-env") -> str | None:
    """``--get-user-env[=TIMEOUT][S|L]``."""
    if text is None or re.fullmatch(r"[0-9]*[SsLl]?", text):
        return text
    raise SbatchError(f"{what}={text!r}: use --get-user-env[=TIMEOUT][S|L], e.g. --get-user-env=10L")


RLIMITS = ("AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "NOFILE", "NPROC", "RSS", "STACK")


def parse_propagate(text: str, what: str = "--propagate") -> str:
    """``ALL``, ``NONE`` or a comma list of rlimit names (upper case, as sbatch requires)."""
    if text in ("ALL", "NONE") or (text and all(name in RLIMITS for name in text.split(","))):
        return text
    raise SbatchError(f"{what}={text!r}: use ALL, NONE or a comma list of {', '.join(RLIMITS)}")


def parse_profile(text: str, what: str = "--profile") -> str:
    """Comma list of ``all``, ``none``, ``energy``, ``lustre``, ``network``, ``task`` (any case)."""
    names = ("all", "none", "energy", "lustre", "network", "task")
    if text and all(item.lower() in names for item in text.split(",")):
        return text
    raise SbatchError(f"{what}={text!r}: use a comma list of {', '.join(names)}")


def parse_hint(text: str, what: str = "--hint") -> str:
    """Comma list of ``compute_bound``, ``memory_bound``, ``multithread``, ``nomultithread`` (any case)."""
    names = ("compute_bound", "memory_bound", "multithread", "nomultithread")
    if text and all(item.lower() in names for item in text.split(",")):
        return text
    raise SbatchError(f"{what}={text!r}: use a comma list of {', '.join(names)}")


def parse_switches(text: str, what: str = "--switches") -> str:
    """``COUNT[@MAX_WAIT]``; sbatch checks the count only."""
    count, _, _ = text.partition("@")
    parse_int(count, what)
    return text


def parse_extra_node_info(text: str, what: str = "-B/--extra-node-info") -> str:
    """``SOCKETS[:CORES[:THREADS]]``, each ``*``, ``N`` or ``MIN-MAX`` (further fields are ignored)."""
    for position, field in zip(("first", "second", "third"), text.split(":"), strict=False):
        if field == "*":
            continue
        if re.fullmatch(_WS + r"\+?[0-9]+(-[0-9]+)?", field) is None:
            raise SbatchError(
                f"{what}={text!r}: invalid {position} field {field!r}; use S[:C[:T]], e.g. 2:8:1"
            )
    return text


_DIST_FIRST = re.compile(r"(?i)(block|cyclic|arbitrary|\*|plane=[0-9]+)")
_DIST_NEXT = re.compile(r"(?i)(block|cyclic|fcyclic|\*)")


def parse_distribution(text: str, what: str = "-m/--distribution") -> str:
    """``{block|cyclic|arbitrary|plane=N|*}[:{block|cyclic|fcyclic|*}[:...]][,Pack|,NoPack]``."""
    spec, _, pack = text.partition(",")
    levels = spec.split(":")
    ok = (
        0 < len(levels) <= 3
        and _DIST_FIRST.fullmatch(levels[0]) is not None
        and all(_DIST_NEXT.fullmatch(level) for level in levels[1:])
        and pack.lower() in ("", "pack", "nopack")
    )
    if not ok:
        raise SbatchError(
            f"{what}={text!r}: use block, cyclic, arbitrary or plane=N, optionally followed by "
            ":block|cyclic|fcyclic levels and ,Pack or ,NoPack"
        )
    return text


_FREQ = r"(low|medium|highm1|high|[0-9]+)"
_GOVERNORS = r"(conservative|ondemand|performance|powersave|userspace|schedutil)"
_CPU_FREQ_RE = re.compile(rf"(?i)({_FREQ}(-{_FREQ})?(:{_GOVERNORS})?|{_GOVERNORS})")


def parse_cpu_freq(text: str, what: str = "--cpu-freq") -> str:
    """``FREQ``, ``MIN-MAX``, ``MIN-MAX:GOVERNOR`` or ``GOVERNOR`` (FREQ: kHz or low/medium/high/highm1)."""
    if _CPU_FREQ_RE.fullmatch(text) is None:
        raise SbatchError(f"{what}={text!r}: use e.g. high, 2000000, low-high:performance or ondemand")
    return text


def parse_priority(text: str, what: str = "--priority") -> str:
    """``TOP`` or a number; sbatch refuses negative numbers (other text is read as 0)."""
    m = re.match(_WS + r"([+-]?[0-9]+)", text)
    if m is not None and int(m.group(1)) < 0:
        raise SbatchError(f"{what}={text!r}: priority must be >= 0 (or TOP)")
    return text

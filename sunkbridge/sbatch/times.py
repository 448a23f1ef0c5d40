"""Slurm time limits: parsing ``--time`` values and printing durations as Slurm does.

Grammar (Slurm 22.05 ``time_str2secs``, checked against the real sbatch): ``M``, ``M:S``, ``H:M:S``,
``D-H``, ``D-H:M``, ``D-H:M:S``, plus ``D-`` (days only). Fields are unbounded decimal numbers
(``1:99:99`` is 1 h 99 min 99 s). Seconds round up to whole minutes (``45:30`` is 46 minutes). The
words ``INFINITE`` and ``UNLIMITED`` (any case) and ``-1`` mean no limit, and so does any value that
adds up to zero (``0``, ``0:0``, ``0-0``). Whitespace, signs, decimals and unit letters are errors.

Deliberate difference: sbatch accepts other negative numbers (``-2``) and overflowing values and turns
them into absurd limits (``2982614-04:17:00``); here they are rejected.
"""

from __future__ import annotations

from typing import Final, Literal

from sunkbridge.sbatch.errors import SbatchError

#: The value Slurm prints for "no time limit".
UNLIMITED: Final = "UNLIMITED"
Unlimited = Literal["UNLIMITED"]

TIME_FORMS = "M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 90, 1:30:00 or 2-00:00:00), or UNLIMITED"

# Largest limit Slurm can store: time limits are uint32 minutes and NO_VAL/INFINITE take the top values.
MAX_MINUTES: Final = 0xFFFFFFFD
_INT32_MAX: Final = 0x7FFFFFFF


def _valid_timespec(text: str) -> bool:
    """Mirror Slurm's character-class check: digit groups, at most one '-' (before any ':'), two ':'."""
    groups = dashes = colons = 0
    in_digits = False
    for ch in text:
        if "0" <= ch <= "9":
            if not in_digits:
                groups += 1
                in_digits = True
        elif ch == "-":
            in_digits = False
            dashes += 1
            if colons:
                return False
        elif ch == ":":
            in_digits = False
            colons += 1
        else:
            return False
    if groups == 0 or dashes > 1 or colons > 2:
        return False
    if dashes:
        return not ((colons == 1 and groups < 3) or (colons == 2 and groups < 4))
    return not ((colons == 1 and groups < 2) or (colons == 2 and groups < 3))


def parse_time_seconds(text: str, what: str = "--time") -> int | Unlimited:
    """Parse a Slurm duration into seconds, or ``"UNLIMITED"``.

    ``what`` names the input in error messages. Unlike :func:`parse_time_limit`, zero stays zero.
    """
    if text.upper() in ("INFINITE", "UNLIMITED") or text == "-1":
        return UNLIMITED
    if not _valid_timespec(text):
        raise SbatchError(f"{what}={text!r}: invalid time; use {TIME_FORMS}")
    if text.startswith("-"):
        raise SbatchError(f"{what}={text!r}: negative time; use {TIME_FORMS}")
    days = hours = minutes = seconds = 0
    if "-" in text:
        day_part, _, rest = text.partition("-")
        days = int(day_part)
        fields = [int(f) for f in rest.split(":")] if rest else []
        hours, minutes, seconds = ([*fields, 0, 0, 0])[:3]
    else:
        fields = [int(f) for f in text.split(":")]
        if len(fields) == 3:
            hours, minutes, seconds = fields
        elif len(fields) == 2:
            minutes, seconds = fields
        else:
            minutes = fields[0]
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total > _INT32_MAX:
        raise SbatchError(f"{what}={text!r}: time is too large for Slurm; use at most 24855 days")
    return total


def parse_time_limit(text: str, what: str = "--time") -> int | Unlimited:
    """Parse a ``--time`` value into whole minutes (seconds round up); zero means ``"UNLIMITED"``."""
    secs = parse_time_seconds(text, what)
    if isinstance(secs, str):
        return UNLIMITED
    minutes = (secs + 59) // 60
    return UNLIMITED if minutes == 0 else minutes


def format_minutes(minutes: int | Unlimited) -> str:
    """Print a limit in minutes as scontrol does: ``HH:MM:SS`` or ``D-HH:MM:SS``, or ``UNLIMITED``."""
    if isinstance(minutes, str):
        return UNLIMITED
    return format_seconds(minutes * 60)


def _split_seconds(seconds: int) -> tuple[int, int, int, int]:
    """Split a non-negative count of seconds into days, hours, minutes and seconds."""
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    mins, secs = divmod(rem, 60)
    return days, hours, mins, secs


def format_seconds(seconds: int | Unlimited) -> str:
    """Print seconds as Slurm's ``secs2time_str``: ``HH:MM:SS`` or ``D-HH:MM:SS``, or ``UNLIMITED``."""
    if isinstance(seconds, str):
        return UNLIMITED
    if seconds < 0:
        return "INVALID"
    days, hours, mins, secs = _split_seconds(seconds)
    if days:
        return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"
    return f"{hours:02d}:{mins:02d}:{secs:02d}"


def format_squeue_seconds(seconds: int | Unlimited) -> str:
    """Print seconds as squeue's ``%M``/``%l`` columns: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``."""
    if isinstance(seconds, str) or seconds < 0 or seconds >= 86400:
        return format_seconds(seconds)
    _, hours, mins, secs = _split_seconds(seconds)
    if hours:
        return f"{hours}:{mins:02d}:{secs:02d}"
    return f"{mins}:{secs:02d}"

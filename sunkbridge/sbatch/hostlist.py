"""Slurm hostlists: expansion and compression with Slurm 22.05's rules.

Grammar accepted by :func:`expand_hostlist` (checked against ``scontrol show hostnames`` of 22.05.8):

* a list of host expressions separated by commas or whitespace outside brackets (empty items are
  skipped, so ``a,,b`` and ``a,`` are fine);
* a host expression is literal text, optionally followed by bracket groups:
  ``prefix[ranges]`` or ``prefix[ranges]infix[ranges]...``; nothing may follow the last ``]``
  (22.05 rejects ``a[1-2]b`` and ``a[1-2]5``), brackets do not nest and may not be empty;
* ``ranges`` is a comma list of ``N`` or ``N-M`` (decimal digits, ``N <= M``); the width of the low
  bound sets the zero padding of every number in the range (``[001-2]`` gives ``001 002``,
  ``[9-011]`` gives ``9 10 11``);
* several bracket groups form a Cartesian product, leftmost group varying slowest.

:func:`compress_hostlist` produces what ``scontrol show hostlist`` prints: order and duplicates are
kept, runs of consecutive numbers with the same prefix and compatible width become ``lo-hi``, and
neighbouring runs with the same prefix share one bracket (``gpu-[001-003,007]``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

#: Refuse expansions beyond this many names (a typo such as ``n[0-99999999]`` would exhaust memory).
MAX_EXPANDED_HOSTS = 1_000_000

_TRAILING_DIGITS = re.compile(r"^(.*?)([0-9]+)$", re.DOTALL)
_C_SPACE = " \t\n\v\f\r"


def _split_top_level(expr: str, what: str) -> list[str]:
    """Split on commas and whitespace that are outside brackets."""
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in expr:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise SbatchError(f"{what}={expr!r}: nested '[' in hostlist; write ranges as prefix[1-4,7]")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SbatchError(f"{what}={expr!r}: ']' without '[' in hostlist; write prefix[1-4]")
        if depth == 0 and (ch == "," or ch in _C_SPACE):
            if current:
                items.append("".join(current))
            current = []
            continue
        current.append(ch)
    if depth != 0:
        raise SbatchError(f"{what}={expr!r}: '[' is never closed in hostlist; write prefix[1-4]")
    if current:
        items.append("".join(current))
    return items


def _parse_ranges(body: str, expr: str, what: str) -> list[str]:
    """Expand the inside of one bracket group into zero-padded number strings."""
    if body == "":
        raise SbatchError(f"{what}={expr!r}: empty brackets in hostlist; write prefix[1-4]")
    numbers: list[str] = []
    for part in body.split(","):
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if m is None:
            raise SbatchError(
                f"{what}={expr!r}: invalid range {part!r} in hostlist; use N or N-M with decimal digits"
            )
        low_text, high_text = m.group(1), m.group(2)
        low = int(low_text)
        high = low if high_text is None else int(high_text)
        if high < low:
            raise SbatchError(f"{what}={expr!r}: range {part!r} runs backwards; write the low bound first")
        if len(numbers) + (high - low + 1) > MAX_EXPANDED_HOSTS:
            raise SbatchError(f"{what}={expr!r}: hostlist expands to more than {MAX_EXPANDED_HOSTS} names")
        width = len(low_text)
        numbers.extend(str(n).zfill(width) for n in range(low, high + 1))
    return numbers


def _expand_one(item: str, expr: str, what: str) -> list[str]:
    if "[" not in item:
        return [item]
    pieces = re.split(r"\[([^\[\]]*)\]", item)
    # pieces alternates text, bracket body, text, ..., text
    texts = pieces[0::2]
    bodies = pieces[1::2]
    if texts[-1] != "":
        raise SbatchError(
            f"{what}={expr!r}: text {texts[-1]!r} after ']' is not allowed in a Slurm 22.05 hostlist; "
            "end the name with the bracket group"
        )
    groups = [_parse_ranges(body, expr, what) for body in bodies]
    total = 1
    for g in groups:
        total *= len(g)
    if total > MAX_EXPANDED_HOSTS:
        raise SbatchError(f"{what}={expr!r}: hostlist expands to more than {MAX_EXPANDED_HOSTS} names")
    out: list[str] = []
    for combo in itertools.product(*groups):
        out.append("".join(t + n for t, n in zip(texts, combo, strict=False)))
    return out


def expand_hostlist(expr: str, what: str = "hostlist") -> list[str]:
    """Expand a Slurm hostlist expression into host names, keeping order and duplicates.

    ``what`` names the input in error messages (for example ``--nodelist``).
    """
    hosts: list[str] = []
    for item in _split_top_level(expr, what):
        hosts.extend(_expand_one(item, expr, what))
        if len(hosts) > MAX_EXPANDED_HOSTS:
            raise SbatchError(f"{what}={expr!r}: hostlist expands to more than {MAX_EXPANDED_HOSTS} names")
    return hosts


@dataclass
class _Range:
    prefix: str
    lo: int
    hi: int
    width: int
    numbered: bool


def _split_host(host: str) -> _Range:
    m = _TRAILING_DIGITS.match(host)
    if m is None:
        return _Range(host, 0, 0, 0, False)
    digits = m.group(2)
    return _Range(m.group(1), int(digits), int(digits), len(digits), True)


def _natural(number: int, width: int) -> bool:
    """True if ``number`` written in ``width`` characters needs no leading zero."""
    return len(str(number)) == width


def _joinable(last: _Range, new: _Range) -> bool:
    if not (last.numbered and new.numbered and last.prefix == new.prefix and last.hi + 1 == new.lo):
        return False
    if last.width == new.width:
        return True
    if last.width < new.width:
        return _natural(new.lo, new.width)
    return _natural(last.lo, last.width)


def _ranges(hosts: Iterable[str]) -> list[_Range]:
    out: list[_Range] = []
    for host in hosts:
        new = _split_host(host)
        if out and _joinable(out[-1], new):
            last = out[-1]
            last.hi = new.hi
            last.width = min(last.width, new.width)
        else:
            out.append(new)
    return out


def _fmt(n: int, width: int) -> str:
    return str(n).zfill(width)


def _range_text(r: _Range) -> str:
    if r.lo == r.hi:
        return _fmt(r.lo, r.width)
    return f"{_fmt(r.lo, r.width)}-{_fmt(r.hi, r.width)}"


def compress_hostlist(hosts: Iterable[str]) -> str:
    """Compress host names the way ``scontrol show hostlist`` does (order and duplicates kept)."""
    ranges = _ranges(hosts)
    parts: list[str] = []
    i = 0
    while i < len(ranges):
        r = ranges[i]
        if not r.numbered:
            parts.append(r.prefix)
            i += 1
            continue
        j = i + 1
        while j < len(ranges) and ranges[j].numbered and ranges[j].prefix == r.prefix:
            j += 1
        group = ranges[i:j]
        if len(group) == 1 and r.lo == r.hi:
            parts.append(r.prefix + _fmt(r.lo, r.width))
        else:
            parts.append(r.prefix + "[" + ",".join(_range_text(g) for g in group) + "]")
        i = j
    return ",".join(parts)


def _natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(tok)) if tok[0] in "0123456789" else (1, tok) for tok in re.findall(r"[0-9]+|[^0-9]+", text)
    )


def unique_hosts(hosts: Iterable[str]) -> list[str]:
    """Sort and de-duplicate host names like Slurm's ``hostlist_uniq`` (prefix, then number)."""

    def key(host: str) -> tuple[object, ...]:
        r = _split_host(host)
        return (_natural_key(r.prefix), r.numbered, r.lo, r.width, host)

    return sorted(set(hosts), key=key)

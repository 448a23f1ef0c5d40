"""Job array specifications (``--array``/``-a``, ``SBATCH_ARRAY_INX``).

Grammar (slurmctld 22.05, checked by submitting to a real controller): a comma list of ``N``,
``N-M`` or ``N-M:S`` followed by an optional ``%P`` (at most P tasks running at once). Indices are
decimal, ``N <= M``, the step ``S`` is positive and only allowed on a range, every index must be below
``MaxArraySize`` (1001 by default). Empty list items are skipped (``1,,2`` is ``1,2``); ``%0`` and a
bare ``%`` mean no limit. Indices are returned sorted and without duplicates, as Slurm stores them.

Deliberate differences: slurmctld reads a throttle with ``strtol`` and ignores trailing text
(``%2x`` is ``%2``) and treats an empty list (``%4``) as index 0; both are rejected here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

#: Slurm's default ``MaxArraySize``: indices must be strictly below it.
DEFAULT_MAX_ARRAY_SIZE = 1001

ARRAY_FORMS = "N, N-M or N-M:STEP items separated by commas, optionally followed by %MAX (e.g. 0-15:2,20%4)"

_ITEM_RE = re.compile(
    r"[ \t\n\v\f\r]*\+?([0-9]+)(?:-[ \t\n\v\f\r]*\+?([0-9]+)(?::[ \t\n\v\f\r]*\+?([0-9]+))?)?"
)


@dataclass(frozen=True)
class ArraySpec:
    """A parsed job array: the task indices (sorted, unique) and the optional running limit."""

    indices: tuple[int, ...]
    max_running: int | None = None


def parse_array(text: str, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE, what: str = "--array") -> ArraySpec:
    """Parse an array specification; indices must be below ``max_array_size`` (Slurm's MaxArraySize)."""
    spec, sep, throttle = text.partition("%")
    max_running: int | None = None
    if sep:
        if throttle == "":
            max_running = None
        elif re.fullmatch(r"[0-9]+", throttle):
            max_running = int(throttle) or None
        else:
            raise SbatchError(f"{what}={text!r}: invalid task limit after '%'; use {ARRAY_FORMS}")
    indices: set[int] = set()
    for item in spec.split(","):
        if item == "":
            continue
        m = _ITEM_RE.fullmatch(item)
        if m is None:
            raise SbatchError(f"{what}={text!r}: invalid array item {item!r}; use {ARRAY_FORMS}")
        first = int(m.group(1))
        last = first if m.group(2) is None else int(m.group(2))
        step = 1 if m.group(3) is None else int(m.group(3))
        if last < first:
            raise SbatchError(f"{what}={text!r}: range {item!r} runs backwards; write the low index first")
        if step == 0:
            raise SbatchError(f"{what}={text!r}: step in {item!r} must be at least 1")
        if last >= max_array_size:
            raise SbatchError(
                f"{what}={text!r}: index {last} is not below MaxArraySize={max_array_size}; "
                f"use indices 0-{max_array_size - 1}"
            )
        indices.update(range(first, last + 1, step))
    if not indices:
        raise SbatchError(f"{what}={text!r}: no array indices given; use {ARRAY_FORMS}")
    return ArraySpec(tuple(sorted(indices)), max_running)


def _runs(indices: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Group sorted indices into (first, last, step) runs, greedily, preferring long runs."""
    runs: list[tuple[int, int, int]] = []
    i = 0
    n = len(indices)
    while i < n:
        if i + 1 < n:
            step = indices[i + 1] - indices[i]
            j = i + 1
            while j + 1 < n and indices[j + 1] - indices[j] == step:
                j += 1
            if j - i + 1 >= 3 or step == 1:
                runs.append((indices[i], indices[j], step))
                i = j + 1
                continue
        runs.append((indices[i], indices[i], 1))
        i += 1
    return runs


def format_array(spec: ArraySpec) -> str:
    """Write an :class:`ArraySpec` back in sbatch's syntax (``0-15:2,20%4``); parses back to itself."""
    parts = []
    for first, last, step in _runs(spec.indices):
        if first == last:
            parts.append(str(first))
        elif step == 1:
            parts.append(f"{first}-{last}")
        else:
            parts.append(f"{first}-{last}:{step}")
    text = ",".join(parts)
    if spec.max_running:
        text += f"%{spec.max_running}"
    return text

"""Job dependencies (``--dependency``/``-d``).

Grammar (slurmctld 22.05, checked by submitting to a real controller):

* conditions separated by ``,`` (all must hold) or ``?`` (any may hold); when a ``?`` appears the
  whole list is an "any" list, as Slurm then prints every separator as ``?``;
* a condition is ``TYPE:JOB[+MIN][:JOB[+MIN]...]`` with ``TYPE`` one of ``after``, ``afterany``,
  ``afterok``, ``afternotok``, ``aftercorr``, ``afterburstbuffer`` (any case), or ``singleton``,
  or a bare job id (read as ``afterany:JOB``);
* ``JOB`` is a positive job id, an array task ``ID_INDEX``, a task list ``ID_[1-3,5]`` or a whole
  array ``ID_*``; ``+MIN`` is a delay of at least one minute (not allowed on a bare job id);
* an empty value means no dependency.

The normalised text lists one job per condition, the way ``scontrol show job`` prints it
(``afterok:10:11`` becomes ``afterok:10,afterok:11``). ``expand:`` (heterogeneous job expansion) is
refused by slurmctld 22.05 ("Requested operation not supported") and here.

Deliberate difference: slurmctld reads ``+MIN`` with ``strtol`` and ignores trailing text
(``+1.5`` is ``+1``); here the delay must be digits only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

DEPENDENCY_TYPES = ("after", "afterany", "afterok", "afternotok", "aftercorr", "afterburstbuffer")

DEPENDENCY_FORMS = (
    "TYPE:JOBID[+MINUTES][:JOBID...] with TYPE after, afterany, afterok, afternotok, aftercorr or "
    "afterburstbuffer, or singleton; join conditions with ',' (all) or '?' (any), e.g. afterok:123:124"
)

_JOB_RE = re.compile(r"([0-9]+)(?:_([0-9]+|\*|\[[0-9,\-]+\]))?(?:\+([0-9]+))?")
_BARE_JOB_RE = re.compile(r"[0-9]+(?:_(?:[0-9]+|\*))?")


@dataclass(frozen=True)
class DependencyCondition:
    """One dependency condition: its type, the job it refers to (None for singleton), a delay."""

    type: str
    job: str | None = None
    delay_minutes: int | None = None

    def __str__(self) -> str:
        if self.job is None:
            return self.type
        text = f"{self.type}:{self.job}"
        if self.delay_minutes is not None:
            text += f"+{self.delay_minutes}"
        return text


@dataclass(frozen=True)
class Dependency:
    """A parsed dependency list; ``any_of`` is True for ``?``-separated lists."""

    conditions: tuple[DependencyCondition, ...]
    any_of: bool = False

    def __str__(self) -> str:
        return ("?" if self.any_of else ",").join(str(c) for c in self.conditions)


def _jobs(kind: str, jobs: list[str], element: str, value: str, what: str) -> list[DependencyCondition]:
    if not jobs or any(j == "" for j in jobs):
        raise SbatchError(f"{what}={value!r}: {element!r} names no job id; use {DEPENDENCY_FORMS}")
    out = []
    for job in jobs:
        m = _JOB_RE.fullmatch(job)
        if m is None:
            raise SbatchError(
                f"{what}={value!r}: invalid job id {job!r} in {element!r}; use {DEPENDENCY_FORMS}"
            )
        if int(m.group(1)) == 0:
            raise SbatchError(f"{what}={value!r}: job id 0 in {element!r} is not a job; use a real job id")
        delay = None if m.group(3) is None else int(m.group(3))
        if delay == 0:
            raise SbatchError(f"{what}={value!r}: delay '+0' in {element!r} must be at least 1 minute")
        for task in _tasks(m.group(2), element, value, what):
            out.append(DependencyCondition(kind, m.group(1) + task, delay))
    return out


def _tasks(spec: str | None, element: str, value: str, what: str) -> list[str]:
    """Array task suffixes: none, one index, ``*``, or a bracketed list such as ``[1-3,5]``."""
    if spec is None:
        return [""]
    if not spec.startswith("["):
        return ["_" + spec]
    tasks: list[str] = []
    for part in spec[1:-1].split(","):
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise SbatchError(
                f"{what}={value!r}: invalid array task list in {element!r}; write e.g. 123_[1-3,5]"
            )
        first = int(m.group(1))
        last = first if m.group(2) is None else int(m.group(2))
        tasks.extend(f"_{i}" for i in range(first, last + 1))
    return tasks


def parse_dependency(value: str, what: str = "--dependency") -> Dependency | None:
    """Parse and normalise a dependency list (``None`` for an empty value)."""
    if value == "":
        return None
    any_of = "?" in value
    elements = re.split(r"[,?]", value)
    conditions: list[DependencyCondition] = []
    for element in elements:
        if element == "":
            raise SbatchError(f"{what}={value!r}: empty condition; use {DEPENDENCY_FORMS}")
        head, sep, rest = element.partition(":")
        kind = head.lower()
        if kind == "singleton":
            if sep:
                raise SbatchError(f"{what}={value!r}: singleton takes no job ids; write just 'singleton'")
            conditions.append(DependencyCondition("singleton"))
        elif kind in DEPENDENCY_TYPES:
            conditions.extend(_jobs(kind, rest.split(":") if sep else [], element, value, what))
        elif kind == "expand":
            raise SbatchError(
                f"{what}={value!r}: 'expand' dependencies are not supported by Slurm 22.05; "
                "use afterany/afterok instead"
            )
        elif not sep and _BARE_JOB_RE.fullmatch(element):
            conditions.extend(_jobs("afterany", [element], element, value, what))
        else:
            raise SbatchError(f"{what}={value!r}: unknown dependency {element!r}; use {DEPENDENCY_FORMS}")
    return Dependency(tuple(conditions), any_of)

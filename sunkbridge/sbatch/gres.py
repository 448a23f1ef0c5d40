"""Generic resources: ``--gres``, ``--gpus``, ``--gpus-per-node`` and friends.

Grammar (Slurm 22.05, checked against the real sbatch and slurmctld):

* ``--gres`` is a comma list of ``[gres:]name[:type][:count]``; a second field that starts with a digit
  is the count, otherwise it is the type; the count is a whole number with an optional ``k``, ``m``,
  ``g``, ``t`` or ``p`` suffix (powers of 1024); a missing count is 1. ``--gres=none`` clears it.
* ``--gpus``, ``--gpus-per-node``, ``--gpus-per-task`` and ``--gpus-per-socket`` take a comma list of
  ``[type:]count``; sbatch prefixes every item with ``gpu:`` and reads it with the same rules, so
  ``--gpus=h100`` is one GPU of type ``h100`` and ``--gpus-per-node=h100:2`` is ``gpu:h100:2``.
* Within one request, the same name may not appear both with and without a type
  (``--gpus-per-node=2 --gres=gpu:h100:1`` is rejected).

Requests are normalised to ``name[:type]:count``. Whether a name (``gpu``, ``mps``...) or type exists
is a property of the cluster, not of the submission, and is not checked here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

_COUNT_RE = re.compile(r"([0-9]+)([kKmMgGtTpP]?)")
_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}

GRES_FORMS = "name[:type][:count] items separated by commas, e.g. gpu:4 or gpu:h100:8"
GPU_FORMS = "[type:]count items separated by commas, e.g. 4 or h100:8"


@dataclass(frozen=True)
class GresRequest:
    """One generic resource request: ``name``, optional ``type`` and ``count``."""

    name: str
    type: str | None
    count: int

    def __str__(self) -> str:
        if self.type is None:
            return f"{self.name}:{self.count}"
        return f"{self.name}:{self.type}:{self.count}"


def _parse_count(text: str, item: str, what: str, value: str, forms: str) -> int:
    m = _COUNT_RE.fullmatch(text)
    if m is None:
        raise SbatchError(f"{what}={value!r}: invalid count {text!r} in {item!r}; use {forms}")
    return int(m.group(1)) * _SUFFIX[m.group(2).lower()]


def _parse_item(item: str, what: str, value: str, forms: str) -> GresRequest:
    if item.startswith("gres:"):
        item = item[len("gres:") :]
    fields = item.split(":")
    if (
        item == ""
        or any(ch in " \t\n\v\f\r" for ch in item)
        or any(f == "" for f in fields)
        or len(fields) > 3
    ):
        raise SbatchError(f"{what}={value!r}: invalid generic resource {item!r}; use {forms}")
    name = fields[0]
    if len(fields) == 1:
        return GresRequest(name, None, 1)
    if len(fields) == 2:
        second = fields[1]
        if second[0] in "0123456789":
            return GresRequest(name, None, _parse_count(second, item, what, value, forms))
        return GresRequest(name, second, 1)
    return GresRequest(name, fields[1], _parse_count(fields[2], item, what, value, forms))


def check_typed_consistency(requests: Iterable[GresRequest], what: str) -> None:
    """Reject a request that names the same resource with and without a type, as sbatch does."""
    typed: set[str] = set()
    untyped: set[str] = set()
    for r in requests:
        (untyped if r.type is None else typed).add(r.name)
    both = sorted(typed & untyped)
    if both:
        raise SbatchError(
            f"{what}: {both[0]!r} is requested both with and without a type; "
            f"give every {both[0]} request a type (e.g. {both[0]}:h100:1) or none"
        )


def parse_gres(value: str, what: str = "--gres") -> tuple[GresRequest, ...]:
    """Parse a ``--gres`` value; ``none`` gives an empty request."""
    if value.lower() == "none":
        return ()
    requests = tuple(_parse_item(item, what, value, GRES_FORMS) for item in value.split(","))
    check_typed_consistency(requests, f"{what}={value!r}")
    return requests


def parse_gpus(value: str, what: str = "--gpus") -> tuple[GresRequest, ...]:
    """Parse a ``--gpus``-style value (``[type:]count`` list) into ``gpu`` requests."""
    requests = []
    for item in value.split(","):
        if item == "" or item.count(":") > 1:
            raise SbatchError(f"{what}={value!r}: invalid GPU request {item!r}; use {GPU_FORMS}")
        requests.append(_parse_item("gpu:" + item, what, value, GPU_FORMS))
    result = tuple(requests)
    check_typed_consistency(result, f"{what}={value!r}")
    return result


def format_gres(requests: Iterable[GresRequest]) -> list[str]:
    """Normalised ``name[:type]:count`` strings."""
    return [str(r) for r in requests]

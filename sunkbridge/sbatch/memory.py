"""Memory sizes as sbatch reads ``--mem``, ``--mem-per-cpu``, ``--mem-per-gpu`` and ``--tmp``.

Grammar (Slurm 22.05 ``str_to_mbytes``, checked against the real sbatch): an optional leading blank
or ``+``, decimal digits, then an optional unit ``K``, ``M``, ``G`` or ``T`` (either case), optionally
followed by ``B``/``b`` (``1GB``). No unit means MiB. ``K`` rounds up to whole MiB (``1000K`` is
1 MiB). ``0`` means "all the memory of the node" for ``--mem`` (and is kept as 0). Decimals,
negative numbers, ``P``, ``GiB`` and trailing blanks are errors.
"""

from __future__ import annotations

import re

from sunkbridge.sbatch.errors import SbatchError

_MEM_RE = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)([kKmMgGtT]?)([bB]?)")
_FACTOR_MB = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}

MEM_FORMS = "a whole number with an optional unit K, M, G or T (MiB if none), e.g. 4000 or 64G"


def parse_mem_mb(text: str, what: str = "--mem") -> int:
    """Parse a memory size into MiB (``K`` rounds up); ``what`` names the input in errors."""
    m = _MEM_RE.fullmatch(text)
    if m is None or (m.group(3) and not m.group(2)):
        raise SbatchError(f"{what}={text!r}: invalid memory size; use {MEM_FORMS}")
    number = int(m.group(1))
    unit = m.group(2).lower()
    mb = (number + 1023) // 1024 if unit == "k" else number * _FACTOR_MB[unit]
    if mb >= 2**63 - 2:
        raise SbatchError(f"{what}={text!r}: memory size too large; use {MEM_FORMS}")
    return mb

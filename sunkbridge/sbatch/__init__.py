"""Read a batch submission exactly as Slurm 22.05's sbatch does.

Entry point: :func:`resolve` turns sbatch's argv, environment and script into a :class:`Submission`
(``Submission.to_contract()`` is the ``sunk inspect --json`` object). The grammar modules are usable
on their own: :mod:`.hostlist`, :mod:`.times`, :mod:`.memory`, :mod:`.arrays`, :mod:`.gres`,
:mod:`.dependency`, :mod:`.values`, :mod:`.options`, :mod:`.script`, :mod:`.env`. Every rejection is
a :class:`SbatchError` with a one-line message.
"""

from sunkbridge.sbatch.arrays import DEFAULT_MAX_ARRAY_SIZE, ArraySpec, format_array, parse_array
from sunkbridge.sbatch.dependency import Dependency, DependencyCondition, parse_dependency
from sunkbridge.sbatch.errors import SbatchError
from sunkbridge.sbatch.gres import GresRequest, parse_gpus, parse_gres
from sunkbridge.sbatch.hostlist import compress_hostlist, expand_hostlist, unique_hosts
from sunkbridge.sbatch.memory import parse_mem_mb
from sunkbridge.sbatch.resolve import SbatchInfoRequest, resolve
from sunkbridge.sbatch.submission import CONTRACT_KEYS, Submission
from sunkbridge.sbatch.times import (
    UNLIMITED,
    format_minutes,
    format_seconds,
    format_squeue_seconds,
    parse_time_limit,
    parse_time_seconds,
)

__all__ = [
    "CONTRACT_KEYS",
    "DEFAULT_MAX_ARRAY_SIZE",
    "UNLIMITED",
    "ArraySpec",
    "Dependency",
    "DependencyCondition",
    "GresRequest",
    "SbatchError",
    "SbatchInfoRequest",
    "Submission",
    "compress_hostlist",
    "expand_hostlist",
    "format_array",
    "format_minutes",
    "format_seconds",
    "format_squeue_seconds",
    "parse_array",
    "parse_dependency",
    "parse_gpus",
    "parse_gres",
    "parse_mem_mb",
    "parse_time_limit",
    "parse_time_seconds",
    "resolve",
    "unique_hosts",
]

"""`sunk inspect`: show how a submission is read, exactly as Slurm 22.05's sbatch reads it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table

from sunkbridge.sbatch import (
    DEFAULT_MAX_ARRAY_SIZE,
    SbatchError,
    SbatchInfoRequest,
    Submission,
    format_array,
    format_minutes,
    resolve,
)

PROG = "sunk inspect"

HELP = """Show how sbatch would read a submission.

Takes exactly sbatch's arguments and the SBATCH_* environment. The script is read from SCRIPT, from
--wrap, or from standard input. Only a leading --json belongs to sunk inspect: it prints the resolved
submission as one JSON object. Whatever sbatch rejects is rejected with exit status 1 and a one-line
reason on stderr. SUNK_MAX_ARRAY_SIZE sets the cluster's MaxArraySize (default 1001).
"""


def _max_array_size(env: dict[str, str]) -> int:
    raw = env.get("SUNK_MAX_ARRAY_SIZE")
    if raw is None:
        return DEFAULT_MAX_ARRAY_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise SbatchError(f"SUNK_MAX_ARRAY_SIZE={raw!r}: use a positive whole number (Slurm's MaxArraySize)")
    return int(raw)


def _or(value: object, fallback: str) -> str:
    return fallback if value is None else str(value)


def summary_table(sub: Submission) -> Table:
    """A readable two-column view of a resolved submission."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    c = sub.to_contract()
    script = sub.script_path or ("(--wrap)" if sub.wrap is not None else "(standard input)")
    nodes = (
        str(sub.nodes_min) if sub.nodes_max in (None, sub.nodes_min) else f"{sub.nodes_min}-{sub.nodes_max}"
    )
    if sub.nodes_max is None and "nodes" not in sub.options:
        nodes += " (at least)"
    tasks = str(sub.ntasks) + (f" ({sub.ntasks_per_node} per node)" if sub.ntasks_per_node else "")
    memory = "(cluster default)"
    if sub.mem_per_node_mb is not None:
        memory = "all of each node" if sub.mem_per_node_mb == 0 else f"{sub.mem_per_node_mb} MiB per node"
    elif sub.mem_per_cpu_mb is not None:
        memory = f"{sub.mem_per_cpu_mb} MiB per CPU"
    elif sub.mem_per_gpu_mb is not None:
        memory = f"{sub.mem_per_gpu_mb} MiB per GPU"
    time_limit = (
        "(partition default)" if sub.time_limit_minutes is None else format_minutes(sub.time_limit_minutes)
    )
    rows: list[tuple[str, str]] = [
        ("script", script),
        ("job name", sub.job_name),
        ("partition", _or(sub.partition, "(cluster default)")),
        ("nodes", nodes),
        ("tasks", tasks),
        ("cpus per task", str(sub.cpus_per_task)),
        ("memory", memory),
        ("gres per node", ", ".join(c["gres_per_node"]) or "-"),
        ("gpus (job)", ", ".join(c["gpus"]) or "-"),
        ("time limit", time_limit),
        ("array", "-" if sub.array is None else format_array(sub.array)),
        ("dependency", _or(c["dependency"], "-")),
        (
            "output",
            _or(sub.output, "slurm-%A_%a.out" if sub.array else "slurm-%j.out")
            + ("" if sub.output else " (default)"),
        ),
        ("error", _or(sub.error, "(with output)")),
        ("working dir", sub.chdir),
        ("exclusive", sub.exclusive_mode or "no"),
        ("constraint", _or(sub.constraint, "-")),
        ("nodelist", ",".join(sub.nodelist) or "-"),
        ("exclude", ",".join(sub.exclude) or "-"),
        ("requeue", "(cluster default)" if sub.requeue is None else ("yes" if sub.requeue else "no")),
        ("hold", "yes" if sub.hold else "no"),
        ("account", _or(sub.account, "(user default)")),
        ("qos", _or(sub.qos, "(default)")),
        ("export", sub.export),
        ("open mode", _or(sub.open_mode, "(cluster default)")),
        ("signal", _or(sub.signal, "-")),
        ("container image", _or(sub.container_image, "-")),
        ("script args", " ".join(sub.script_args) or "-"),
    ]
    if sub.wrap is not None:
        rows.insert(1, ("wrap", sub.wrap))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _fail(message: str) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(1)


@click.command(
    "inspect",
    help=HELP,
    add_help_option=False,
    options_metavar="",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument(
    "args", nargs=-1, type=click.UNPROCESSED, metavar="[--json] [SBATCH OPTIONS...] [SCRIPT [ARGS...]]"
)
@click.pass_context
def inspect_cmd(ctx: click.Context, args: Sequence[str]) -> None:
    """Show how sbatch would read a submission (see HELP)."""
    argv = list(args)
    as_json = bool(argv) and argv[0] == "--json"
    if as_json:
        argv = argv[1:]
    env = dict(os.environ)
    try:
        sub = resolve(
            argv,
            env,
            os.getcwd(),
            read_stdin=lambda: click.get_binary_stream("stdin").read(),
            max_array_size=_max_array_size(env),
        )
    except SbatchInfoRequest as info:
        if info.kind == "version":
            click.echo("sunk inspect: reads submissions as slurm-wlm 22.05 sbatch does")
        else:
            click.echo(ctx.get_help())
        return
    except SbatchError as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # never show a traceback for a submission
        _fail(f"could not read the submission ({type(exc).__name__}: {exc}); please report this")
        return
    for warning in sub.warnings:
        click.echo(f"{PROG}: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(sub.to_contract(), indent=2))
        return
    Console(highlight=False).print(summary_table(sub))

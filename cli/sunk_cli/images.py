"""`sunk images`: the project's container images, built locally from debootstrap (no registry)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

from sunkbridge.images import build as imgbuild
from sunkbridge.images.base import SUITES, ensure_base
from sunkbridge.images.compose import COMPOSE_VERSION, ensure_compose
from sunkbridge.k8s.binaries import BuildError
from sunkbridge.lanes.daemons import LaneError

console = Console(stderr=True, log_path=False)
out = Console() if sys.stdout.isatty() else Console(width=200)  # whole tags when piped

_LINES = [*imgbuild.SLURM_LINES, *(line.slurm for line in imgbuild.SLURM_LINES.values())]


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[red]sunk images: error:[/] {exc}", highlight=False, soft_wrap=True)
    sys.exit(1)


@contextmanager
def _progress(title: str) -> Iterator[imgbuild.Progress]:
    started = time.monotonic()
    with console.status(title) as status:
        def on_step(step: str) -> None:
            status.update(f"[bold]{step}[/] [dim]({time.monotonic() - started:.0f}s)[/]")
            if ": step " not in step:
                console.log(step, highlight=False)
        yield on_step


def _size(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


@click.group()
def images() -> None:
    """Build and list the project's images (Debian base, Slurm daemons, login, controller)."""


@images.command()
@click.option("--suite", type=click.Choice(SUITES), default="bookworm", show_default=True,
              help="Debian suite of the base image.")
@click.option("--rebuild", is_flag=True, help="Run debootstrap again even when the image exists.")
def base(suite: str, rebuild: bool) -> None:
    """Make local/debian:SUITE from a cached debootstrap tarball."""
    try:
        with _progress(f"base image {suite}") as on_step:
            tag = ensure_base(suite, rebuild=rebuild, on_step=on_step)
    except LaneError as exc:
        _fail(exc)
    out.print(tag)


@images.command("build")
@click.option("--line", type=click.Choice(_LINES), default=imgbuild.DEFAULT_LINE, show_default=True,
              help="Slurm line: bookworm (22.05), trixie (24.11) or sid (26.05).")
@click.option("--rebuild", is_flag=True, help="Build the named images again (docker --no-cache).")
@click.argument("names", nargs=-1, type=click.Choice(imgbuild.IMAGE_NAMES))
def build_cmd(line: str, rebuild: bool, names: tuple[str, ...]) -> None:
    """Build the images of one Slurm line (all of them, or NAMES); unchanged images are skipped."""
    started = time.monotonic()
    try:
        with _progress(f"images of {line}") as on_step:
            built = imgbuild.build_slurm_images(line, names or None, rebuild=rebuild, on_step=on_step)
    except (imgbuild.ImageBuildError, LaneError, ValueError) as exc:
        _fail(exc)
    table = Table("image", "tag", "size", "build")
    for image in built:
        table.add_row(image.name, image.tag, _size(image.size_bytes),
                      "cached" if image.cached else f"{image.seconds:.0f}s")
    out.print(table)
    console.print(f"[green]done[/] in {time.monotonic() - started:.0f}s")


@images.command("list")
def list_cmd() -> None:
    """List the images `sunk images build` made, with their sizes."""
    try:
        found = imgbuild.list_images()
    except (LaneError, OSError) as exc:
        _fail(exc)
    order = {name: i for i, name in enumerate(imgbuild.IMAGE_NAMES)}
    found.sort(key=lambda b: (b.tag.rsplit(":", 1)[-1], order.get(b.name, len(order)), b.tag))
    table = Table("image", "tag", "id", "size")
    for image in found:
        table.add_row(image.name, image.tag, image.image_id.removeprefix("sha256:")[:12],
                      _size(image.size_bytes))
    out.print(table)


@images.command()
def compose() -> None:
    """Provide `docker compose`: build the v2 plugin from its Go module (cached) unless one answers."""
    try:
        with _progress(f"docker compose {COMPOSE_VERSION}") as on_step:
            path = ensure_compose(on_step)
    except (BuildError, LaneError) as exc:
        _fail(exc)
    out.print(str(path))

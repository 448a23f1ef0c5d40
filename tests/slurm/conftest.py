"""Fixtures of the Slurm lane: one real Slurm cluster on loopback for the whole test session.

`SUNK_SLURM_LANE_DIR=/path` reuses a lane already running there (started with `SlurmLane(...).start()`)
and leaves it running afterwards; `SUNK_KEEP_SLURM_LANE=1` keeps the session's lane directory (configs and
logs) after stopping it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from sunkbridge.lanes.slurm import SlurmLane, SlurmLaneConfig, make_base_dir


@dataclass
class Scoreboard:
    """Differential results gathered during the session, printed in the terminal summary."""

    agree: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    lane_start_seconds: float | None = None


SCOREBOARD = pytest.StashKey[Scoreboard]()


def _board(config: pytest.Config) -> Scoreboard:
    if SCOREBOARD not in config.stash:
        config.stash[SCOREBOARD] = Scoreboard()
    return config.stash[SCOREBOARD]


@pytest.fixture(scope="session")
def scoreboard(request: pytest.FixtureRequest) -> Scoreboard:
    """Where the differential tests record, per corpus case, whether `sunk inspect` agreed with Slurm."""
    return _board(request.config)


@pytest.fixture(scope="session")
def slurm_lane(request: pytest.FixtureRequest) -> Iterator[SlurmLane]:
    """A running Slurm lane (munged, slurmctld, six slurmd, slurmrestd), stopped after the session."""
    reuse = os.environ.get("SUNK_SLURM_LANE_DIR")
    if reuse:
        lane = SlurmLane.attach(reuse)
        if not lane.is_running():
            pytest.fail(f"SUNK_SLURM_LANE_DIR={reuse} holds no running lane; unset it or start one there")
        yield lane
        return
    base = make_base_dir()
    lane = SlurmLane(SlurmLaneConfig(base_dir=base / "lane"))
    started = time.monotonic()
    lane.start()
    _board(request.config).lane_start_seconds = time.monotonic() - started
    try:
        yield lane
    finally:
        lane.stop()
        if not os.environ.get("SUNK_KEEP_SLURM_LANE"):
            shutil.rmtree(base, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    board = config.stash.get(SCOREBOARD, None)
    if board is None:
        return
    if board.lane_start_seconds is not None:
        terminalreporter.write_line(f"slurm lane started in {board.lane_start_seconds:.1f}s")
    if not board.agree:
        return
    terminalreporter.section("sunk inspect vs slurmctld")
    for name in sorted(board.agree):
        if not board.agree[name]:
            for note in board.notes.get(name, []):
                terminalreporter.write_line(f"DISAGREE {name}: {note}")
    agreeing = sum(board.agree.values())
    terminalreporter.write_line(f"differential score: {agreeing}/{len(board.agree)} cases agree")

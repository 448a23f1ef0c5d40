"""Start background daemons that outlive the starting process, and stop them later by pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class LaneError(RuntimeError):
    """A lane could not start or stop; the message names the step and the fix."""


@dataclass(frozen=True)
class Daemon:
    """One long-running process of a lane, with its log and pid file."""

    name: str
    argv: list[str]
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "pids" / f"{self.name}.pid"

    def start(self) -> int:
        """Launch the daemon in its own session, output to its log; returns the pid."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **self.env})
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the daemon's log, joined for a one-line message."""
        if not self.log.exists():
            return "(no log)"
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in `pidfile` (its first word), or None."""
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def running(pidfile: Path) -> bool:
    """True when the process recorded in `pidfile` is alive."""
    pid = read_pid(pidfile)
    return pid is not None and pid_alive(pid)


def stop_pidfile(pidfile: Path, timeout: float = 10.0) -> None:
    """Terminate the process group recorded in `pidfile` (TERM, then KILL) and remove the file."""
    pid = read_pid(pidfile)
    if pid is not None and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid) and time.monotonic() < deadline + 5:
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)
    pidfile.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_ports(ports: dict[str, int], flag_hint: str) -> None:
    """Raise a LaneError naming the first taken port and how to choose another."""
    for what, port in ports.items():
        if not port_free(port):
            raise LaneError(
                f"port {port} for {what} is already in use on 127.0.0.1; stop whatever listens there "
                f"(`ss -ltnp 'sport = :{port}'`) or choose another port with {flag_hint}"
            )


def wait_until(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None = None,
               interval: float = 0.2) -> None:
    """Poll `check` until true; fail with the daemon's log tail if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if daemon is not None and not running(daemon.pidfile):
            raise LaneError(f"{daemon.name} exited while waiting for {what}; log {daemon.log}: "
                            f"{daemon.log_tail()}")
        time.sleep(interval)
    hint = f"; log {daemon.log}: {daemon.log_tail()}" if daemon else ""
    raise LaneError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")

"""Building the lane's Go tools: a failed build says which tool, where the log is and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from sunkbridge.k8s import binaries

pytestmark = pytest.mark.k8s


def test_a_module_the_proxy_does_not_serve_fails_with_the_tool_and_log_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNK_CACHE", str(tmp_path))
    tool = binaries.GoTool(name="missing", module="sigs.k8s.io/kwok", version="v0.0.0-does-not-exist",
                           binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"})
    with pytest.raises(binaries.BuildError) as failure:
        binaries.build(tool)
    message = str(failure.value)
    assert "building missing v0.0.0-does-not-exist failed" in message
    assert str(tmp_path / "logs" / "build-missing-v0.0.0-does-not-exist.log") in message
    assert "sunk dev prepare" in message
    assert not tool.bin_dir.exists()


def test_cached_binaries_are_reused_without_go(monkeypatch: pytest.MonkeyPatch) -> None:
    binaries.build(binaries.KWOK)  # present after `sunk dev prepare`
    monkeypatch.setenv("PATH", "/nonexistent")
    assert binaries.build(binaries.KWOK) == binaries.KWOK.bin_dir

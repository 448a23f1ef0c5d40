"""Build the Kubernetes lane's Go binaries from the official modules, once, and cache them by version."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sunkbridge.paths import cache_root

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
COREDNS_VERSION = "v1.14.7"


class BuildError(RuntimeError):
    """A Go build failed; the message names the tool, the log and the fix."""


@dataclass(frozen=True)
class GoTool:
    """One cached set of binaries built from a single Go module at one version."""

    name: str
    module: str
    version: str
    binaries: dict[str, str]
    ldflags: str = "-s -w"
    staging_replaces: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}"

    def path(self, binary: str) -> Path:
        return self.bin_dir / binary

    def is_built(self) -> bool:
        return all((self.bin_dir / b).is_file() for b in self.binaries)


def _k8s_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor}"
        f" -X {pkg}.gitTreeState=clean"
    )


KUBERNETES = GoTool(
    name="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
    ldflags=_k8s_ldflags(KUBERNETES_VERSION),
    staging_replaces=True,
)
ETCD = GoTool(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    binaries={"etcd": "go.etcd.io/etcd/server/v3"},
)
KWOK = GoTool(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
)
COREDNS = GoTool(
    name="coredns",
    module="github.com/coredns/coredns",
    version=COREDNS_VERSION,
    binaries={"coredns": "github.com/coredns/coredns"},
)
ALL_TOOLS = (ETCD, KWOK, KUBERNETES)
REAL_NODE_TOOLS = (COREDNS,)

_REPLACE_LINE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/")


def staging_modules(upstream_gomod: str) -> list[str]:
    """The staging module paths that k/k's go.mod replaces with local folders."""
    return [m.group(1) for line in upstream_gomod.splitlines() if (m := _REPLACE_LINE.match(line))]


def staging_version(k8s_version: str) -> str:
    """Staging modules are published as v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>."""
    return "v0." + k8s_version.lstrip("v").split(".", 1)[1]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})
    return env


def _run(cmd: list[str], cwd: Path, log: Path, tool: GoTool) -> str:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=_go_env() | tool.extra_env, text=True,
                              stdout=subprocess.PIPE, stderr=fh)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise BuildError(
            f"building {tool.name} {tool.version} failed at `{' '.join(cmd[:3])}`; "
            f"see {log} (last lines: {' | '.join(tail)}). Check that the Go module proxy is reachable "
            f"and there is disk space, then run `sunk dev prepare` again."
        )
    return proc.stdout


def build(tool: GoTool, on_step: Callable[[str], None] = lambda _s: None) -> Path:
    """Build `tool`'s binaries into its cache folder unless they are there already."""
    if tool.is_built():
        return tool.bin_dir
    if shutil.which("go") is None:
        raise BuildError(f"building {tool.name} needs Go on PATH (install Go 1.26 or newer)")
    work = cache_root() / "gobuild" / f"{tool.name}-{tool.version}"
    work.mkdir(parents=True, exist_ok=True)
    log = cache_root() / "logs" / f"build-{tool.name}-{tool.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    (work / "go.mod").write_text(f"module sunkbridge.local/build/{tool.name}\n\ngo 1.26\n")
    on_step(f"{tool.name}: resolving {tool.module}@{tool.version}")
    _run(["go", "mod", "edit", f"-require={tool.module}@{tool.version}"], work, log, tool)
    if tool.staging_replaces:
        info = json.loads(_run(["go", "mod", "download", "-json", f"{tool.module}@{tool.version}"],
                               work, log, tool))
        twin = staging_version(tool.version)
        edits = [f"-replace={m}={m}@{twin}" for m in staging_modules(Path(info["GoMod"]).read_text())]
        _run(["go", "mod", "edit", *edits], work, log, tool)
    staging = tool.bin_dir.with_name(tool.bin_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for binary, package in tool.binaries.items():
        on_step(f"{tool.name}: compiling {binary} (the first build takes minutes)")
        _run(["go", "build", "-trimpath", "-ldflags", tool.ldflags, "-o", str(staging / binary), package],
             work, log, tool)
    shutil.rmtree(tool.bin_dir, ignore_errors=True)
    staging.rename(tool.bin_dir)
    return tool.bin_dir


def build_all(on_step: Callable[[str], None] = lambda _s: None,
              tools: tuple[GoTool, ...] = ALL_TOOLS) -> dict[str, Path]:
    """Build `tools` (by default the control plane's); returns binary name → path."""
    paths: dict[str, Path] = {}
    for tool in tools:
        build(tool, on_step)
        paths.update({b: tool.path(b) for b in tool.binaries})
    return paths

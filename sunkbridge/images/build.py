"""Build the project's container images on the local engine, from the debootstrap base images.

There is no registry: every image starts `FROM local/debian:<suite>` (made by `ensure_base`), and the
Slurm images share one intermediate image with munge and the Slurm client (`local/sunk-slurm-base`).

Slurm lines and tags. Each Debian suite ships one Slurm release, and the images of a line are tagged
with that release (the version a cluster's configuration must match), not with the suite:

    line      suite     Slurm   tags
    bookworm  bookworm  22.05   local/sunk-slurmctld:22.05, local/sunk-slurmd:22.05, ...
    trixie    trixie    24.11   local/sunk-slurmctld:24.11, ...
    sid       sid       26.05   local/sunk-slurmctld:26.05, ...

A line may be named by suite or by release (`--line 24.11`). The base layer checks at build time that
the suite still ships the expected release, so a suite moving on fails loudly instead of mislabelling.

Caching. Each image carries the label `io.sunkbridge.inputs`: a hash of its build context (paths, modes,
contents), its build arguments and the ids of its parent images. An image whose label matches is not
built again unless `rebuild=True` (which also passes `--no-cache`, so apt runs afresh).

Builds use Docker's classic builder (`DOCKER_BUILDKIT=0`: no buildx needed, and its `Step N/M` output
is parsed for progress and for the one-line error raised when a step fails).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sunkbridge.images.base import SUITES, base_tag, ensure_base, image_exists
from sunkbridge.images.engine import ensure_engine
from sunkbridge.paths import cache_root

INPUTS_LABEL = "io.sunkbridge.inputs"
"""Label holding the hash of an image's inputs; also marks images this module built."""

KOPF_VERSION = "1.38.0"
"""kopf for the controller image (Debian has no package). 1.38 works with bookworm's click and aiohttp."""

IMAGE_NAMES = ("base", "slurmctld", "slurmd", "login", "slurmrestd", "slurmdbd", "controller")
"""Every image of a line, in build order (`base` is the shared Slurm layer the daemons start from)."""

_SOURCE_IMAGES = frozenset({"login", "controller"})  # get this repository's Python source in src/
_LAUNCHER_IMAGES = frozenset({"slurmd"})  # get the pod-group launcher (a standalone file) as launcher.py
_DEBIAN_IMAGES = frozenset({"base", "controller"})  # start FROM local/debian:<suite>

Progress = Callable[[str], None]


def _quiet(_step: str) -> None:
    """Default progress callback: say nothing."""


@dataclass(frozen=True)
class SlurmLine:
    """One Debian suite and the Slurm release it ships."""

    suite: str
    slurm: str
    extra_packages: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        """The tag of this line's images: the Slurm release, e.g. `22.05`."""
        return self.slurm


SLURM_LINES: dict[str, SlurmLine] = {
    # bookworm's mpi/pmix plugin dlopens libpmix2 without depending on it (slurmd logs errors without it).
    "bookworm": SlurmLine("bookworm", "22.05", ("libpmix2",)),
    "trixie": SlurmLine("trixie", "24.11"),
    "sid": SlurmLine("sid", "26.05"),
}
DEFAULT_LINE = "bookworm"


@dataclass(frozen=True)
class BuiltImage:
    """The outcome of one image build (or cache hit)."""

    name: str
    tag: str
    image_id: str
    size_bytes: int
    cached: bool
    seconds: float
    replaced: str = ""
    """Id of the image the tag pointed at before this build ("" when new or cached)."""


class ImageBuildError(RuntimeError):
    """A build failed. The one-line message names the image, the failed step, the reason, log and fix."""

    def __init__(self, image: str, step: str, reason: str, fix: str, log: Path | None = None) -> None:
        self.image = image
        self.step = step
        self.reason = reason
        self.fix = fix
        self.log = log
        parts = [f"building image {image} failed at {step}: {reason}"]
        if log is not None:
            parts.append(f"log: {log}")
        parts.append(f"fix: {fix}")
        super().__init__("; ".join(p.replace("\n", " ") for p in parts))


# ---------------------------------------------------------------------------------------------------------
# Names and places


def resolve_line(line: str) -> SlurmLine:
    """The Slurm line named by suite (`trixie`) or by release (`24.11`)."""
    if line in SLURM_LINES:
        return SLURM_LINES[line]
    for known in SLURM_LINES.values():
        if line == known.slurm:
            return known
    choices = ", ".join(f"{s} ({v.slurm})" for s, v in SLURM_LINES.items())
    raise ValueError(f"unknown Slurm line {line!r}; choose one of {choices}")


def image_tag(name: str, line: str = DEFAULT_LINE) -> str:
    """The local tag of image `name` in `line`, e.g. `local/sunk-slurmctld:22.05`."""
    if name not in IMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}; choose from {', '.join(IMAGE_NAMES)}")
    repo = "slurm-base" if name == "base" else name
    return f"local/sunk-{repo}:{resolve_line(line).tag}"


def repo_root() -> Path:
    """The source checkout this package runs from (holds slurm-images/ and the Python sources)."""
    return Path(__file__).resolve().parents[2]


def images_dir() -> Path:
    """The folder of Dockerfiles; `SUNK_IMAGES_DIR` overrides `<repo>/slurm-images`."""
    folder = Path(os.environ.get("SUNK_IMAGES_DIR") or repo_root() / "slurm-images")
    if not (folder / "base" / "Dockerfile").is_file():
        raise ImageBuildError("(all)", "setup", f"no Dockerfiles under {folder}",
                              "run from a source checkout of sunkbridge or set SUNK_IMAGES_DIR")
    return folder


def _log_path(tag: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
    return cache_root() / "logs" / f"image-{safe}.log"


# ---------------------------------------------------------------------------------------------------------
# Pure helpers: input hashing, FROM resolution, reading the builder's output


def context_digest(context: Path, build_args: Mapping[str, str], parents: Mapping[str, str] = {},
                   dockerfile: Path | None = None) -> str:
    """A hash of everything a build depends on: the context's files, the arguments and parent ids."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(context).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        digest.update(f"file {rel} {path.lstat().st_mode & 0o777:o}\n".encode())
        digest.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    if dockerfile is not None and not dockerfile.resolve().is_relative_to(context.resolve()):
        digest.update(b"dockerfile\n" + dockerfile.read_bytes())
    for key in sorted(build_args):
        digest.update(f"arg {key}={build_args[key]}\n".encode())
    for ref in sorted(parents):
        digest.update(f"parent {ref}={parents[ref]}\n".encode())
    return digest.hexdigest()


_ARG_LINE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.IGNORECASE)
_FROM_LINE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def parent_images(dockerfile_text: str, build_args: Mapping[str, str]) -> list[str]:
    """The images a Dockerfile starts from (FROM lines, with ARGs substituted; stage names skipped)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    parents: list[str] = []
    seen_from = False
    for raw in dockerfile_text.splitlines():
        if not seen_from and (m := _ARG_LINE.match(raw)):
            args[m.group(1)] = build_args.get(m.group(1), m.group(2) or "")
            continue
        if m := _FROM_LINE.match(raw):
            seen_from = True

            def sub(v: re.Match[str]) -> str:
                name = v.group(1) or v.group(3)
                return args.get(name) or (v.group(2) or "")

            ref = _VAR.sub(sub, m.group(1))
            if ref.lower() != "scratch" and ref not in stages and ref not in parents:
                parents.append(ref)
            if m.group(2):
                stages.add(m.group(2))
    return parents


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""The colour codes the classic builder wraps around a step's stderr, at arbitrary points of a line."""
_FAILED_CMD = re.compile(r"The command '(.*)' returned a non-zero code: (\d+)")
_APT_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"E: Unable to locate package (\S+)"), "Debian {suite} has no package `{0}`",
     "check the name with `apt-cache search {0}` in a {suite} container and fix the apt-get line "
     "in {dockerfile}"),
    (re.compile(r"E: Package '([^']+)' has no installation candidate"),
     "package `{0}` has no installation candidate in Debian {suite}",
     "pick a package that {suite} ships and fix the apt-get line in {dockerfile}"),
    (re.compile(r"E: Version '([^']+)' for '([^']+)' was not found"),
     "version {0} of `{1}` is not in Debian {suite}",
     "drop the version pin or pick one `apt-cache policy {1}` lists; edit {dockerfile}"),
    (re.compile(r"(Temporary failure resolving '[^']+'|Could not resolve '[^']+'|"
                r"Failed to fetch \S+|Unable to connect to \S+)"),
     "the build container could not reach the Debian mirror ({0})",
     "check dockerd's network and DNS (`docker run --rm {base} apt-get update`), then build again"),
    (re.compile(r"E: Unable to correct problems, you have held broken packages|"
                r"The following packages have unmet dependencies"),
     "apt could not resolve the package dependencies",
     "read the log for the conflicting packages and fix the apt-get line in {dockerfile}"),
    (re.compile(r"(dpkg: error processing package \S+)"), "{0}",
     "read the log for the maintainer script's error; fix the RUN step in {dockerfile}"),
)


@dataclass(frozen=True)
class BuildFailure:
    """What went wrong in a failed `docker build`, read from its output."""

    step: str
    reason: str
    fix: str


def diagnose_build_output(output: str, *, dockerfile: str, suite: str = "bookworm",
                          base: str = "local/debian:bookworm", appended_steps: int = 0) -> BuildFailure:
    """Read the classic builder's output of a failed build: the failed step, why, and the fix.

    `appended_steps` is the number of steps the builder added after the Dockerfile's own (one per
    `--label`); step totals are reported as the Dockerfile counts them.
    """
    lines = _ANSI.sub("", output).splitlines()
    step = "an unknown step"
    step_at = 0
    for i, line in enumerate(lines):
        if m := _STEP.match(line.strip()):
            total = max(int(m.group(2)) - appended_steps, int(m.group(1)))
            step = f"step {m.group(1)}/{total} `{_shorten(m.group(3))}`"
            step_at = i
    after = "\n".join(lines[step_at:])
    fmt = {"suite": suite, "dockerfile": dockerfile, "base": base}
    for pattern, reason, fix in _APT_PATTERNS:
        if m := pattern.search(after):
            groups = m.groups() or (m.group(0),)
            return BuildFailure(step, reason.format(*groups, **fmt), fix.format(*groups, **fmt))
    if m := re.search(r"(pull access denied for \S+|No such image: \S+|repository \S+ not found)", output):
        return BuildFailure(step, f"a parent image is missing ({m.group(1)})",
                            "no registry is used: build the parent first (`sunk images base` / "
                            "`sunk images build`)")
    if m := re.search(r"(COPY failed: .*|ADD failed: .*|failed to compute cache key: .*)", after):
        fix = f"the file is missing from the build context; check the COPY line in {dockerfile}"
        return BuildFailure(step, m.group(1).strip(), fix)
    if m := _FAILED_CMD.search(after):
        tail = [ln.strip() for ln in lines[step_at + 1:] if ln.strip() and not _builder_noise(ln)][-2:]
        detail = " | ".join(tail) if tail else f"exit code {m.group(2)}"
        return BuildFailure(step, f"the RUN command exited {m.group(2)} ({_shorten(detail, 200)})",
                            f"read the log and fix the RUN step in {dockerfile}")
    tail = [ln.strip() for ln in lines if ln.strip()][-2:]
    return BuildFailure(step, _shorten(" | ".join(tail) or "docker build failed", 200),
                        "read the log; check that dockerd runs (`docker info`)")


def _builder_noise(line: str) -> bool:
    """Lines the classic builder prints about itself, not the step's own output."""
    return (line.startswith((" ---> ", "Removing intermediate container", "DEPRECATED:"))
            or bool(_FAILED_CMD.search(line)))


def _shorten(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# Docker


def image_info(tag: str) -> dict[str, object] | None:
    """`docker image inspect` of `tag`, or None when the engine does not hold it."""
    proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


def _label(info: Mapping[str, object], key: str) -> str | None:
    config = info.get("Config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    value = labels.get(key) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else None


def _built(name: str, tag: str, cached: bool, seconds: float, replaced: str = "") -> BuiltImage:
    info = image_info(tag) or {}
    image_id = info.get("Id")
    size = info.get("Size")
    return BuiltImage(name=name, tag=tag, image_id=image_id if isinstance(image_id, str) else "",
                      size_bytes=size if isinstance(size, int) else 0, cached=cached, seconds=seconds,
                      replaced=replaced if replaced != image_id else "")


def remove_if_untagged(image_id: str) -> bool:
    """Remove an image this module replaced, once no tag names it and nothing uses it; True if removed."""
    info = image_info(image_id)
    if not image_id or info is None or info.get("RepoTags"):
        return False
    return subprocess.run(["docker", "image", "rm", image_id], capture_output=True).returncode == 0


def _ensure_parents(tag: str, parents: Sequence[str], dockerfile: Path, on_step: Progress) -> dict[str, str]:
    """Parent image ids; a missing debootstrap base is made, any other missing parent is an error."""
    ids: dict[str, str] = {}
    for ref in parents:
        info = image_info(ref)
        suite = ref.split(":", 1)[1] if ref.startswith("local/debian:") else None
        if info is None and suite in SUITES:
            on_step(f"{tag}: base image {ref} is missing; making it")
            ensure_base(suite, on_step=on_step)
            info = image_info(ref)
        if info is None:
            if suite is not None:
                fix = (f"`{suite}` is not a suite the project bootstraps ({', '.join(SUITES)}); "
                       f"fix the FROM line or the SUITE build argument")
            elif ref.startswith("local/sunk-"):
                fix = "build it first: `sunk images build` builds the base layer before the daemons"
            else:
                fix = "no registry can be reached: make the image locally first or change the FROM line"
            raise ImageBuildError(tag, f"`FROM {ref}` in {dockerfile}", f"parent image {ref} does not exist",
                                  fix)
        image_id = info.get("Id")
        ids[ref] = image_id if isinstance(image_id, str) else ""
    return ids


def build_image(context: Path, tag: str, build_args: Mapping[str, str] | None = None, *,
                on_step: Progress = _quiet, dockerfile: Path | None = None,
                labels: Mapping[str, str] | None = None, rebuild: bool = False, name: str | None = None,
                suite: str | None = None) -> BuiltImage:
    """Build `context` (its Dockerfile, or `dockerfile`) as `tag`, unless one with the same inputs exists.

    Missing `local/debian:<suite>` parents are made from debootstrap; other missing parents raise
    ImageBuildError. A failed build raises ImageBuildError naming the step, the reason (apt errors are
    recognised), the log file and the fix.
    """
    ensure_engine()
    args = dict(build_args or {})
    context = Path(context)
    dockerfile = Path(dockerfile) if dockerfile is not None else context / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageBuildError(tag, "setup", f"no Dockerfile at {dockerfile}", "check the path of the context")
    parents = parent_images(dockerfile.read_text(), args)
    parent_ids = _ensure_parents(tag, parents, dockerfile, on_step)
    inputs = context_digest(context, args, parent_ids, dockerfile)
    label = name or tag
    info = image_info(tag)
    if info is not None and not rebuild and _label(info, INPUTS_LABEL) == inputs:
        on_step(f"{tag}: up to date")
        return _built(label, tag, cached=True, seconds=0.0)

    log = _log_path(tag)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["docker", "build", "--force-rm", "-t", tag, "-f", str(dockerfile),
           "--label", f"{INPUTS_LABEL}={inputs}"]
    for key, value in sorted((labels or {}).items()):
        cmd += ["--label", f"{key}={value}"]
    for key, value in sorted(args.items()):
        cmd += ["--build-arg", f"{key}={value}"]
    if rebuild:
        cmd.append("--no-cache")
    cmd.append(str(context))
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    on_step(f"{tag}: building (log {log})")
    started = time.monotonic()
    with log.open("w") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if m := _STEP.match(line.strip()):
                total = max(int(m.group(2)) - 1 - len(labels or {}), int(m.group(1)))
                on_step(f"{tag}: step {m.group(1)}/{total} {_shorten(m.group(3), 70)}")
        code = proc.wait()
    if code != 0:
        where = suite or next((p.split(":", 1)[1] for p in parents if p.startswith("local/debian:")),
                              "bookworm")
        failure = diagnose_build_output(log.read_text(errors="replace"), dockerfile=str(dockerfile),
                                        suite=where, base=base_tag(where), appended_steps=1 + len(labels or {}))
        raise ImageBuildError(tag, failure.step, failure.reason, failure.fix, log)
    old_id = info.get("Id") if info is not None else None
    built = _built(label, tag, cached=False, seconds=time.monotonic() - started,
                   replaced=old_id if isinstance(old_id, str) else "")
    remove_if_untagged(built.replaced)  # fails quietly while older images still build on it
    return built


# ---------------------------------------------------------------------------------------------------------
# The project's images


def _copy_sources(dest: Path) -> None:
    """This repository's Python packages (sunkbridge, sunk_cli) into dest, without caches."""
    root = repo_root()
    sources = {"sunkbridge": root / "sunkbridge", "sunk_cli": root / "cli" / "sunk_cli"}
    for pkg, src in sources.items():
        if not (src / "__init__.py").is_file():
            raise ImageBuildError("login/controller", "staging the sources", f"no package at {src}",
                                  "run from a source checkout of sunkbridge")
        shutil.copytree(src, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))


def _copy_launcher(dest: Path) -> None:
    """The pod-group launcher into dest/launcher.py, readable by every job's user."""
    src = repo_root() / "sunkbridge" / "jobs" / "launcher.py"
    if not src.is_file():
        raise ImageBuildError("slurmd", "staging the launcher", f"no launcher at {src}",
                              "run from a source checkout of sunkbridge")
    shutil.copyfile(src, dest / "launcher.py")
    (dest / "launcher.py").chmod(0o644)


def kopf_wheel(on_step: Progress = _quiet) -> Path:
    """kopf's wheel from PyPI (cached): the controller image's only non-Debian Python package."""
    folder = cache_root() / "wheels"
    found = sorted(folder.glob(f"kopf-{KOPF_VERSION}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    on_step(f"downloading the kopf {KOPF_VERSION} wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--dest", str(folder), f"kopf=={KOPF_VERSION}"], capture_output=True, text=True)
    found = sorted(folder.glob(f"kopf-{KOPF_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
        raise ImageBuildError("controller", "fetching kopf",
                              f"pip download kopf=={KOPF_VERSION} failed ({tail})",
                              f"check that PyPI is reachable and that {sys.executable} has pip")
    return found[0]


def stage_context(name: str, on_step: Progress = _quiet) -> Path:
    """The build context of image `name`: its folder, plus the sources, launcher or wheels it needs."""
    folder = images_dir() / name
    if not (folder / "Dockerfile").is_file():
        raise ImageBuildError(name, "setup", f"no Dockerfile at {folder}", "restore slurm-images/ from git")
    if name not in _SOURCE_IMAGES | _LAUNCHER_IMAGES:
        return folder
    staged = cache_root() / "image-contexts" / name
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(folder, staged)
    if name in _SOURCE_IMAGES:
        _copy_sources(staged / "src")
    if name in _LAUNCHER_IMAGES:
        _copy_launcher(staged)
    if name == "controller":
        (staged / "wheels").mkdir()
        wheel = kopf_wheel(on_step)
        shutil.copyfile(wheel, staged / "wheels" / wheel.name)
    return staged


def build_args_for(name: str, line: SlurmLine) -> dict[str, str]:
    """The build arguments of image `name` in `line`."""
    if name == "base":
        return {"SUITE": line.suite, "SLURM_LINE": line.slurm, "EXTRA_PACKAGES": " ".join(line.extra_packages)}
    if name in _DEBIAN_IMAGES:
        return {"SUITE": line.suite}
    return {"BASE_IMAGE": image_tag("base", line.suite)}


def build_slurm_images(line: str = DEFAULT_LINE, names: Iterable[str] | None = None, *,
                       rebuild: bool = False, on_step: Progress = _quiet) -> list[BuiltImage]:
    """Build the images of one Slurm line (all of slurm-images/, or `names`); returns them in build order.

    The line's debootstrap base image is made first when missing, and the shared `base` layer is built
    (or found up to date) whenever a daemon image is asked for. `rebuild` rebuilds only the images asked
    for (all of them when `names` is None).
    """
    chosen = resolve_line(line)
    wanted = list(dict.fromkeys(names)) if names is not None else list(IMAGE_NAMES)
    unknown = [n for n in wanted if n not in IMAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown image(s) {', '.join(unknown)}; choose from {', '.join(IMAGE_NAMES)}")
    ensure_engine()
    if not image_exists(base_tag(chosen.suite)):
        on_step(f"making {base_tag(chosen.suite)} (debootstrap, about a minute)")
    ensure_base(chosen.suite, on_step=on_step)
    order = [n for n in IMAGE_NAMES if n in wanted or (n == "base" and set(wanted) - _DEBIAN_IMAGES)]
    built: list[BuiltImage] = []
    for name in order:
        context = stage_context(name, on_step)
        built.append(build_image(context, image_tag(name, chosen.suite), build_args_for(name, chosen),
                                 on_step=on_step, rebuild=rebuild and name in wanted, name=name,
                                 suite=chosen.suite,
                                 labels={"io.sunkbridge.image": name, "io.sunkbridge.slurm": chosen.slurm}))
    for image in reversed(built):  # children first, so replaced parents are free to go too
        remove_if_untagged(image.replaced)
    return [b for b in built if b.name in wanted]


def list_images() -> list[BuiltImage]:
    """Every image this module built that the engine holds (name, tag, id, size)."""
    ensure_engine()
    proc = subprocess.run(["docker", "image", "ls", "--filter", f"label={INPUTS_LABEL}", "--format",
                           "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=True)
    images: list[BuiltImage] = []
    for tag in sorted(set(proc.stdout.split())):
        if tag.endswith(":<none>"):
            continue
        info = image_info(tag) or {}
        name = _label(info, "io.sunkbridge.image") or tag
        size = info.get("Size")
        image_id = info.get("Id")
        images.append(BuiltImage(name=name, tag=tag, image_id=image_id if isinstance(image_id, str) else "",
                                 size_bytes=size if isinstance(size, int) else 0, cached=True, seconds=0.0))
    return images

"""The launcher: what a pod-group job's batch script becomes.

job_submit.lua replaces the script of jobs in podgroup partitions with a few lines that run this program
with the original script on standard input. slurmd starts it on the job's first node, as the job's user,
with the environment Slurm gives a batch script. The launcher:

* turns that environment into a ``SlurmJob`` object (one pod per allocated node is the controller's job);
* copies rank 0's output into its own standard output and error, which slurmd has already opened on the
  job's ``--output``/``--error`` files: it follows the log while the container runs, and once the job has
  ended reads the whole log again and writes what the stream had not (the pod stays until the launcher
  deletes the SlurmJob);
* exits with the job's status (a task killed by a signal makes the launcher die of the same signal);
* on SIGTERM (``scancel``, time limit) deletes the ``SlurmJob``, and with it every pod, then exits.

It needs only the standard library and the ``kubernetes`` client, so it runs wherever slurmd runs. It
authenticates with a kubeconfig (``--kubeconfig``) or with a projected ServiceAccount token mounted into the
slurmd pod (``--token-dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

GROUP = "sunkbridge.io"
VERSION = "v1alpha1"
PLURAL = "slurmjobs"
NO_VAL = 4294967294  # what Slurm prints for %a of a job that is not part of an array
SPANK_PREFIXES = ("SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_", "_SLURM_SPANK_OPTION_pyxis_")
TERMINAL = ("Succeeded", "Failed", "Cancelled")
RELEASE_S = 60.0
"""How long the launcher waits for the pods of an ended job to be gone before it lets Slurm free the nodes."""
RELEASE_ON_SIGNAL_S = 20.0
"""The same after scancel or a time limit: within Slurm's default KillWait of 30 s."""
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
"""The API server ``--token-dir`` talks to unless ``--server`` says otherwise."""

# Variables of the login/slurmd host that must not leak into the pods (the image has its own).
_HOST_ONLY = frozenset({
    "PATH", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "KUBECONFIG", "LD_LIBRARY_PATH", "LD_PRELOAD",
    "SLURM_CONF", "SLURM_SCRIPT_CONTEXT", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "TERM", "MAIL", "LOGNAME",
    "SSH_AUTH_SOCK", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "DISPLAY", "XDG_RUNTIME_DIR",
    "XDG_SESSION_ID", "DBUS_SESSION_BUS_ADDRESS", "ENVIRONMENT",
})


class LaunchError(Exception):
    """The job cannot run as a pod group; the message names the input and the fix."""


# ---------------------------------------------------------------------------------------------------------
# Slurm's filename patterns


@dataclass(frozen=True)
class PatternContext:
    """What Slurm substitutes into ``--output``/``--error`` patterns for one stream."""

    job_id: int
    job_name: str
    user: str
    node: str  # %N: the short host name of the node that opens the file
    array_job_id: int | None = None
    array_task_id: int | None = None
    step: str = "batch"
    node_id: int = 0
    task_id: int = 0


_PATTERN = re.compile(r"%(\d*)([AajJxuNnts%])")


def expand_pattern(pattern: str, ctx: PatternContext) -> str:
    """Expand ``%A %a %j %J %x %u %N %n %t %s %%`` (with zero padding such as ``%4j``) as slurmd does.

    A backslash anywhere in the pattern turns expansion off (Slurm's rule). Unknown ``%`` sequences are
    kept as written.
    """
    if "\\" in pattern:
        return pattern.replace("\\", "")

    def number(value: int, width: str) -> str:
        return str(value).zfill(min(int(width), 10)) if width else str(value)

    def sub(match: re.Match[str]) -> str:
        width, code = match.group(1), match.group(2)
        if code == "%":
            return "%"
        if code == "A":
            return number(ctx.array_job_id if ctx.array_job_id is not None else ctx.job_id, width)
        if code == "a":
            return number(ctx.array_task_id if ctx.array_task_id is not None else NO_VAL, width)
        if code == "j":
            return number(ctx.job_id, width)
        if code == "J":  # the batch step has no ".step" suffix
            return number(ctx.job_id, width) if ctx.step == "batch" else f"{number(ctx.job_id, width)}.{ctx.step}"
        if code == "s":
            return ctx.step if not ctx.step.isdigit() else number(int(ctx.step), width)
        if code == "n":
            return number(ctx.node_id, width)
        if code == "t":
            return number(ctx.task_id, width)
        if code == "x":
            return ctx.job_name
        if code == "u":
            return ctx.user
        return ctx.node  # %N

    return _PATTERN.sub(sub, pattern)


# ---------------------------------------------------------------------------------------------------------
# Reading the allocation from Slurm's environment


def expand_counts(text: str) -> list[int]:
    """Slurm's ``2(x3),1`` form (``SLURM_JOB_CPUS_PER_NODE``, ``SLURM_TASKS_PER_NODE``) as a list."""
    out: list[int] = []
    for item in filter(None, text.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m:
            raise LaunchError(f"cannot read the per-node count {text!r}")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def expand_hostlist(expr: str) -> list[str]:
    """Expand a Slurm hostlist (``gpu-[001-003,007],cpu-1``)."""
    hosts: list[str] = []
    depth, start = 0, 0
    items: list[str] = []
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(expr[start:i])
            start = i + 1
    items.append(expr[start:])
    for item in filter(None, (x.strip() for x in items)):
        parts = re.split(r"\[([^\]]*)\]", item)
        names = [parts[0]]
        for k in range(1, len(parts), 2):
            choices: list[str] = []
            for rng in parts[k].split(","):
                lo, _, hi = rng.partition("-")
                width = len(lo)
                choices += [str(n).zfill(width) for n in range(int(lo), int(hi or lo) + 1)]
            names = [n + c + parts[k + 1] for n in names for c in choices]
        hosts += names
    return hosts


@dataclass(frozen=True)
class Mount:
    """One ``--container-mounts`` entry: ``SRC[:DST[:FLAGS]]``."""

    source: str
    target: str
    read_only: bool = False


def parse_mounts(text: str) -> list[Mount]:
    """Parse pyxis' ``--container-mounts`` value; absolute paths only, flags ``ro``/``rw``."""
    mounts: list[Mount] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise LaunchError(f"--container-mounts={text!r}: empty entry; write SRC[:DST[:ro|rw]],...")
        parts = item.split(":")
        if len(parts) > 3:
            raise LaunchError(f"--container-mounts: {item!r} has too many ':'; write SRC[:DST[:ro|rw]]")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1] else src
        flags = parts[2] if len(parts) == 3 else "rw"
        if not src.startswith("/") or not dst.startswith("/"):
            raise LaunchError(f"--container-mounts: {item!r} needs absolute paths on both sides")
        if flags not in ("ro", "rw"):
            raise LaunchError(f"--container-mounts: {item!r} has flag {flags!r}; use ro or rw")
        mounts.append(Mount(src, dst, flags == "ro"))
    return mounts


_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@+-]*$", re.IGNORECASE)


def normalise_image(text: str) -> str:
    """Turn pyxis' image forms (``ubuntu:22.04``, ``nvcr.io#nvidia/pytorch:24.01``) into a pod image."""
    image = text.strip()
    if "#" in image:  # enroot's registry#image form
        registry, _, rest = image.partition("#")
        image = f"{registry}/{rest}"
    if not image or not _IMAGE.match(image) or "//" in image or image.endswith((":", "/")):
        raise LaunchError(f"--container-image={text!r} is not an image reference; write NAME[:TAG]")
    return image


def sanitise_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from user input (lower case, ``[a-z0-9-]``, starts and ends alphanumeric)."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    out = re.sub(r"-{2,}", "-", out)[:limit].strip("-")
    return out or "x"


def spank_option(env: Mapping[str, str], name: str) -> str | None:
    """A pyxis-style SPANK option as the job sees it (``--container-image`` → ``container_image``)."""
    for prefix in SPANK_PREFIXES:
        value = env.get(prefix + name)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def job_user(env: Mapping[str, str]) -> JobUser:
    """The submitting user from ``SLURM_JOB_UID``/``SLURM_JOB_GID``/``SLURM_JOB_USER``, checked with NSS."""
    uid_text, user = env.get("SLURM_JOB_UID"), env.get("SLURM_JOB_USER")
    try:
        if uid_text is not None:
            entry = pwd.getpwuid(int(uid_text))
        elif user:
            entry = pwd.getpwnam(user)
        else:
            raise LaunchError("neither SLURM_JOB_UID nor SLURM_JOB_USER is set: not started by slurmd?")
    except (KeyError, ValueError) as exc:
        raise LaunchError(f"user {user or uid_text!r} has no uid mapping on {socket.gethostname()}; "
                          "add the user to the node's passwd (or its directory service)") from exc
    gid = int(env.get("SLURM_JOB_GID", entry.pw_gid))
    groups: tuple[int, ...] = ()
    with contextlib.suppress(Exception):
        groups = tuple(sorted({g for g in os.getgrouplist(entry.pw_name, gid) if g != gid}))
    return JobUser(entry.pw_name, entry.pw_uid, gid, groups)


def job_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What the pods' batch script should see: the job's environment without host-only variables."""
    return {k: v for k, v in env.items()
            if k not in _HOST_ONLY and not k.startswith(("SUNK_", "BASH_FUNC_"))}


def slurmjob_name(cluster: str, job_id: int, restart: int) -> str:
    """The SlurmJob's name: cluster and job id (and the restart count after a requeue)."""
    base = sanitise_name(f"{cluster}-{job_id}", 50)
    return f"{base}-r{restart}" if restart else base


def partition_default_image(env: Mapping[str, str], partition_images: Sequence[str],
                            fallback: str | None) -> str | None:
    """The default image of the job's partition from ``PART=IMAGE`` pairs, else `fallback`."""
    images: dict[str, str] = {}
    for pair in partition_images:
        part, sep, image = pair.partition("=")
        if not sep or not part or not image:
            raise LaunchError(f"--partition-image {pair!r} is not PARTITION=IMAGE")
        images[part] = image
    return images.get(env.get("SLURM_JOB_PARTITION", ""), fallback)


def build_slurmjob(env: Mapping[str, str], script: str, args: Sequence[str], *, cluster: str, namespace: str,
                   default_image: str | None, cwd: str) -> dict[str, Any]:
    """The SlurmJob object for the batch job described by Slurm's environment `env`."""
    try:
        job_id = int(env["SLURM_JOB_ID"])
        node_list = env["SLURM_JOB_NODELIST"]
    except (KeyError, ValueError) as exc:
        raise LaunchError(f"SLURM_JOB_ID/SLURM_JOB_NODELIST missing or bad ({exc}): not started by slurmd?") \
            from exc
    names = expand_hostlist(node_list)
    cpus = expand_counts(env.get("SLURM_JOB_CPUS_PER_NODE", "")) or [0] * len(names)
    if len(cpus) != len(names):
        raise LaunchError(f"SLURM_JOB_CPUS_PER_NODE={env.get('SLURM_JOB_CPUS_PER_NODE')!r} does not match "
                          f"{len(names)} nodes")
    gpus = int(env.get("SLURM_GPUS_ON_NODE", "0") or 0)
    mem_node = env.get("SLURM_MEM_PER_NODE")
    mem_cpu = env.get("SLURM_MEM_PER_CPU")
    nodes: list[dict[str, Any]] = []
    for name, cpu in zip(names, cpus, strict=True):
        node: dict[str, Any] = {"name": name, "kubernetesNode": name, "cpus": cpu, "gpus": gpus}
        if mem_node:
            node["memoryMB"] = int(mem_node)
        elif mem_cpu:
            node["memoryMB"] = int(mem_cpu) * cpu
        nodes.append(node)
    image_opt = spank_option(env, "container_image")
    if image_opt is not None:
        image = normalise_image(image_opt)
    elif default_image:
        image = default_image
    else:
        raise LaunchError("no --container-image and the partition has no default image; "
                          "submit with --container-image=IMAGE")
    mounts_opt = spank_option(env, "container_mounts")
    mounts = parse_mounts(mounts_opt) if mounts_opt else []
    workdir = spank_option(env, "container_workdir")
    if workdir is not None and not workdir.startswith("/"):
        raise LaunchError(f"--container-workdir={workdir!r} must be an absolute path")
    user = job_user(env)
    restart = int(env.get("SLURM_RESTART_COUNT", "0") or 0)
    spec: dict[str, Any] = {
        "jobId": job_id, "cluster": cluster, "partition": env.get("SLURM_JOB_PARTITION", ""),
        "nodeList": node_list, "nodes": nodes, "image": image,
        "user": {"name": user.name, "uid": user.uid, "gid": user.gid,
                 "supplementalGroups": list(user.groups)},
        "workingDir": workdir or cwd, "env": job_environment(env), "script": script, "args": list(args),
        "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in mounts],
        "restartCount": restart,
    }
    if env.get("SLURM_ARRAY_JOB_ID"):
        spec["arrayJobId"] = int(env["SLURM_ARRAY_JOB_ID"])
        spec["arrayTaskId"] = int(env["SLURM_ARRAY_TASK_ID"])
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmJob",
        "metadata": {"name": slurmjob_name(cluster, job_id, restart), "namespace": namespace,
                     "labels": {f"{GROUP}/cluster": sanitise_name(cluster), f"{GROUP}/job-id": str(job_id)}},
        "spec": spec,
    }


def exit_status(status: Mapping[str, Any]) -> tuple[int, int]:
    """(exit code, signal) of a finished SlurmJob's status."""
    return int(status.get("exitCode") or 0), int(status.get("signal") or 0)


# ---------------------------------------------------------------------------------------------------------
# Copying rank 0's log


def parse_log_line(line: bytes) -> tuple[tuple[int, int], bytes]:
    """Split a line of a ``timestamps=true`` pod log into ((epoch seconds, nanoseconds), the line's text).

    The kubelet writes RFC 3339 times with up to nine fractional digits (trailing zeros dropped).
    """
    stamp, _, text = line.partition(b" ")
    whole, _, rest = stamp.decode("ascii", "replace").partition(".")
    digits = "".join(itertools.takewhile(str.isdigit, rest))
    zone = rest[len(digits):] if rest else ""
    when = datetime.fromisoformat(whole + zone)  # ValueError for a line without a time
    return (int(when.timestamp()), int(digits.ljust(9, "0")[:9] or 0)), text


def split_log(data: bytes) -> list[bytes]:
    """The lines of a log (each with its newline; the last may lack one). Only ``\\n`` ends a line."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _stamp(line: bytes) -> tuple[int, int]:
    try:
        return parse_log_line(line)[0]
    except ValueError:
        return (0, 0)


@dataclass
class LogCopy:
    """One stream of rank 0's log (both when `stream` is None) copied into `sink`, line by line.

    The follow stream writes complete lines only, and remembers how many it wrote and the time of the last
    one; :meth:`complete` then writes the rest of the ended container's log from there, so nothing is
    written twice or left out whatever the follow stream managed.
    """

    sink: BinaryIO
    stream: str | None = None
    lines: int = 0
    last: tuple[int, int] = (0, 0)
    followed: bool = False  # the follow stream ran to its end (the kubelet closes it when the container ends)
    _buffer: bytes = b""
    _closed: bool = False
    _response: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, follow: bool) -> dict[str, Any]:
        """Keyword arguments of ``read_namespaced_pod_log`` for this stream."""
        kwargs: dict[str, Any] = {"container": "main", "timestamps": True, "follow": follow,
                                  "_preload_content": False}
        if self.stream:
            kwargs["stream"] = self.stream
        return kwargs

    def attach(self, response: Any) -> None:
        """Remember the open follow response, so :meth:`close` can end it."""
        with self._lock:
            self._response = response

    def _write(self, line: bytes) -> None:
        try:
            self.last, text = parse_log_line(line)
        except ValueError:  # not the kubelet's form: copy it as it is
            text = line
        self.sink.write(text)
        self.lines += 1

    def feed(self, chunk: bytes) -> None:
        """Write the complete lines of the follow stream that `chunk` ends."""
        with self._lock:
            if self._closed:
                return
            *complete, self._buffer = (self._buffer + chunk).split(b"\n")
            for line in complete:
                self._write(line + b"\n")
            if complete:
                self.sink.flush()

    def close(self) -> None:
        """Stop the follow stream: it writes nothing after this."""
        with self._lock:
            self._closed = True
            if self._response is not None:
                with contextlib.suppress(Exception):
                    self._response.close()

    def complete(self, data: bytes) -> None:
        """Write what the follow stream did not of `data`, the whole log of the ended container."""
        lines = split_log(data)
        start = 0
        if self.lines:
            if len(lines) >= self.lines and _stamp(lines[self.lines - 1]) == self.last:
                start = self.lines  # the same file the stream read: go on from its last line
            else:  # the kubelet rotated the file: go on after the last time the stream copied
                start = next((i for i, ln in enumerate(lines) if _stamp(ln) > self.last), len(lines))
        with self._lock:
            for line in lines[start:]:
                self._write(line)
            self.sink.flush()


# ---------------------------------------------------------------------------------------------------------
# Side effects


@dataclass
class Launcher:
    """One run of the launcher against the Kubernetes API."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    body: dict[str, Any]
    out: BinaryIO
    err: BinaryIO
    separate_error: bool
    log: Callable[[str], None] = field(default=lambda m: print(f"sunk-launcher: {m}", file=sys.stderr))
    _stop: threading.Event = field(default_factory=threading.Event)
    _ended: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def _custom(self) -> Any:
        from kubernetes import client
        return client.CustomObjectsApi(self.api)

    def create(self) -> None:
        """Create the SlurmJob; a leftover of an earlier run of the same job is replaced."""
        from kubernetes.client.exceptions import ApiException
        api = self._custom()
        for _ in range(30):
            try:
                api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self.delete()
                time.sleep(0.5)
        raise LaunchError(f"SlurmJob {self.name} already exists and does not go away")

    def delete(self, wait: float = 0.0) -> None:
        """Delete the SlurmJob; its pods, Service and Secret follow through their owner references.

        With `wait`, the deletion runs in the foreground and this returns once the pods are gone, or after
        `wait` seconds: Slurm frees the nodes when the launcher exits, and a next job's pods must not find
        the kubelet still counting this job's CPUs and memory.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        api = self._custom()
        try:
            api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name,
                body=client.V1DeleteOptions(propagation_policy="Foreground" if wait else "Background",
                                            grace_period_seconds=0))
        except ApiException:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            except ApiException as exc:
                if exc.status == 404:
                    return
            time.sleep(0.2)

    def _watch(self) -> Iterator[dict[str, Any]]:
        """The SlurmJob's successive versions until it ends (re-listing after watch timeouts)."""
        from kubernetes import watch
        api = self._custom()
        while not self._stop.is_set():
            obj = api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            yield obj
            w = watch.Watch()
            for event in w.stream(api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                                  field_selector=f"metadata.name={self.name}",
                                  resource_version=obj["metadata"]["resourceVersion"], timeout_seconds=30):
                if event["type"] == "DELETED":
                    raise LaunchError(f"SlurmJob {self.name} was deleted while the job ran")
                yield event["object"]
                if self._stop.is_set():
                    w.stop()
                    return

    def _stream(self, pod: str, copy: LogCopy) -> None:
        """Follow `copy`'s stream of `pod` from its first line until the container ends or the job is over."""
        from kubernetes import client
        core = client.CoreV1Api(self.api)
        while not self._stop.is_set() and not self._ended.is_set():
            try:
                resp = core.read_namespaced_pod_log(pod, self.namespace, **copy.request(follow=True))
                copy.attach(resp)
                for chunk in resp.stream(4096):
                    copy.feed(chunk)
                copy.followed = True
                return
            except Exception:  # the container may not have started yet; the final read covers the rest
                time.sleep(0.5)

    def _finish(self, pod: str, copies: Sequence[LogCopy], streams: Sequence[threading.Thread]) -> None:
        """Copy what the follow streams did not: the whole log of the ended container, from where they stopped.

        The pod stays until the launcher deletes the SlurmJob, so this read sees everything the container
        wrote (only lines the kubelet has already rotated away can be out of its reach).
        """
        from kubernetes import client
        self._ended.set()
        for t in streams:
            t.join(timeout=10)
        for copy in copies:
            copy.close()  # a stream that is still open stops here, and writes nothing more
        core = client.CoreV1Api(self.api)
        for copy in copies:
            for attempt in range(5):
                try:
                    data = core.read_namespaced_pod_log(pod, self.namespace, **copy.request(follow=False)).data
                except Exception as exc:
                    if attempt == 4 and not copy.followed:  # else the stream had all the kubelet gave
                        self.log(f"cannot read the end of the log of {pod}: {_reason(exc)}")
                    time.sleep(0.5)
                    continue
                copy.complete(data)
                break

    def _split_refused(self, pod: str) -> bool:
        """True (and said on the error stream) when the API server serves no per-stream pod logs.

        Reading stdout and stderr apart needs Kubernetes' ``PodLogsQuerySplitStreams`` feature; without it
        both streams go to the ``--output`` file.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        try:
            client.CoreV1Api(self.api).read_namespaced_pod_log(
                pod, self.namespace, container="main", stream="Stdout", limit_bytes=1, _preload_content=False
            ).release_conn()
        except ApiException as exc:
            if exc.status == 422:
                self.log(f"the Kubernetes API server does not serve standard output and error apart "
                         f"({_reason(exc)}): both are copied to the --output file; enable the "
                         "PodLogsQuerySplitStreams feature gate for a separate --error file")
                return True
        except Exception:  # the streams themselves retry and report
            pass
        return False

    def run(self) -> tuple[int, int, str]:
        """Create the SlurmJob, copy rank 0's output, and return (exit code, signal, message)."""
        self.create()
        streams: list[threading.Thread] = []
        copies: list[LogCopy] = []
        for obj in self._watch():
            status = obj.get("status") or {}
            pods = status.get("pods") or []
            rank0 = next((p for p in pods if p.get("rank") == 0), None)
            if not streams and rank0 and rank0.get("started"):
                if self.separate_error and not self._split_refused(rank0["name"]):
                    copies = [LogCopy(self.out, "Stdout"), LogCopy(self.err, "Stderr")]
                else:
                    copies = [LogCopy(self.out)]
                for copy in copies:
                    t = threading.Thread(target=self._stream, args=(rank0["name"], copy), daemon=True)
                    t.start()
                    streams.append(t)
            if status.get("phase") in TERMINAL:
                if rank0 and rank0.get("started"):
                    self._finish(rank0["name"], copies, streams)
                code, sig = exit_status(status)
                # Only a failure of the bridge itself is reported; the script's own exit speaks for itself.
                return code, sig, str(status.get("message") or "") if status.get("reason") else ""
        return 0, signal.SIGTERM, "terminated"


def _reason(exc: Exception) -> str:
    """An API error's message (the Status body's ``message``), else the exception's text."""
    body = getattr(exc, "body", None)
    if body:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            return str(json.loads(body)["message"])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_token(path: Path) -> str:
    """The bearer token in `path`; a file the job's user cannot read is a LaunchError that says why."""
    try:
        token = path.read_text().strip()
    except PermissionError as exc:
        raise LaunchError(f"cannot read the launcher's token {path} as uid {os.geteuid()}: pod-group jobs of "
                          "this cluster can only be submitted by root until the controller verifies job owners"
                          ) from exc
    except OSError as exc:
        raise LaunchError(f"cannot read the launcher's token {path} ({exc.strerror or exc}): the slurmd pod "
                          "must mount the launcher's ServiceAccount token there (pools of mode podgroup get "
                          "it from the operator), or the launcher needs --kubeconfig") from exc
    if not token:
        raise LaunchError(f"the launcher's token {path} is empty; mount a ServiceAccount token there")
    return token


def token_configuration(token_dir: Path, server: str = IN_CLUSTER_SERVER) -> Any:
    """A ``kubernetes.client.Configuration`` for `server` with the ServiceAccount token in `token_dir`.

    `token_dir` is laid out like a projected ServiceAccount volume: ``token`` and ``ca.crt``. The token is
    read again before each request, so the kubelet's rotations take effect (a failed re-read keeps the
    token in hand).
    """
    from kubernetes import client
    token_file, ca_file = token_dir / "token", token_dir / "ca.crt"
    token = read_token(token_file)
    if not ca_file.is_file():
        raise LaunchError(f"no CA certificate at {ca_file}: mount the cluster's ca.crt beside the token")
    cfg = client.Configuration()
    cfg.host = server
    cfg.ssl_ca_cert = str(ca_file)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}

    def refresh(config: Any) -> None:
        with contextlib.suppress(LaunchError):
            config.api_key["authorization"] = read_token(token_file)

    cfg.refresh_api_key_hook = refresh
    return cfg


def _annotate(job_id: str, message: str) -> None:
    """Put the reason into the job's Comment, where squeue (%k) and scontrol show job show it."""
    text = ("sunk: " + message).replace("\n", " ")[:200]
    with contextlib.suppress(Exception):
        subprocess.run(["scontrol", "update", f"JobId={job_id}", f"Comment={text}"], capture_output=True,
                       timeout=10, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``launcher (--kubeconfig F | --token-dir D [--server URL]) [--namespace N] [--cluster C]
    [--default-image I] [--partition-image PART=I ...] [-- ARGS...]``."""
    parser = argparse.ArgumentParser(prog="sunk-launcher", add_help=True)
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--kubeconfig", help="kubeconfig of the launcher's identity")
    auth.add_argument("--token-dir", type=Path,
                      help="folder with a ServiceAccount token (`token`, `ca.crt`), re-read when it rotates")
    parser.add_argument("--server", help=f"API server for --token-dir (default {IN_CLUSTER_SERVER})")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--cluster", default=os.environ.get("SLURM_CLUSTER_NAME", "slurm"))
    parser.add_argument("--default-image", default=None)
    parser.add_argument("--partition-image", action="append", default=[], metavar="PARTITION=IMAGE",
                        help="the default image of one partition's jobs (repeatable; wins over --default-image)")
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:  # the rendered launcher ends its own options with "--"; the script's arguments follow
        cut = args.index("--")
        opts, script_args = parser.parse_args(args[:cut]), args[cut + 1:]
    else:
        opts, script_args = parser.parse_known_args(args)
    if opts.kubeconfig is None and opts.token_dir is None:
        opts.kubeconfig = os.environ.get("SUNK_LAUNCHER_KUBECONFIG")
        if not opts.kubeconfig:
            parser.error("give --kubeconfig FILE or --token-dir DIR: the launcher needs an identity "
                         "to create SlurmJob objects")
    if opts.server is not None and opts.token_dir is None:
        parser.error("--server goes with --token-dir (a kubeconfig names its own server)")
    env = dict(os.environ)
    job_id = env.get("SLURM_JOB_ID", "?")
    script = sys.stdin.read()
    try:
        default_image = partition_default_image(env, opts.partition_image, opts.default_image)
        body = build_slurmjob(env, script, script_args, cluster=opts.cluster, namespace=opts.namespace,
                              default_image=default_image, cwd=os.getcwd())
        cfg = (token_configuration(opts.token_dir, opts.server or IN_CLUSTER_SERVER)
               if opts.token_dir is not None else None)
    except LaunchError as exc:
        print(f"sunk-launcher: job {job_id}: {exc}", file=sys.stderr)
        _annotate(job_id, str(exc))
        return 1
    from kubernetes import client, config
    if cfg is None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=opts.kubeconfig, client_configuration=cfg)
    api = client.ApiClient(cfg)
    separate = _separate_error()
    launcher = Launcher(api, opts.namespace, body, sys.stdout.buffer, sys.stderr.buffer, separate)

    def on_term(signum: int, _frame: Any) -> None:
        launcher._stop.set()
        launcher.delete(wait=RELEASE_ON_SIGNAL_S)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        code, sig, message = launcher.run()
    except LaunchError as exc:
        print(f"sunk-launcher: job {job_id}: {exc}", file=sys.stderr)
        _annotate(job_id, str(exc))
        launcher.delete(wait=RELEASE_S)
        return 1
    if message and (code or sig):
        print(f"sunk-launcher: job {job_id}: {message}", file=sys.stderr)
        _annotate(job_id, message)
    launcher.delete(wait=RELEASE_S)
    sys.stdout.flush()
    sys.stderr.flush()
    if sig:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(5)
    return code


def _separate_error() -> bool:
    """True when slurmd opened different files for the script's standard output and error."""
    try:
        out, err = os.fstat(1), os.fstat(2)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) != (err.st_dev, err.st_ino)


if __name__ == "__main__":
    sys.exit(main())

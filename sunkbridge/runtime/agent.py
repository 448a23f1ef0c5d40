#!/usr/bin/env python3
"""The in-pod runtime of a pod-group job (standard library only; runs with the job image's python3).

An init container copies this file and the ``srun``/``scontrol`` shims into an emptyDir. Every pod of the
group runs ``agent.py run``: it serves task requests on the pod network, authenticated with the per-job
secret. Rank 0 also runs the batch script, once. ``srun`` (the shim runs ``agent.py srun``) lays tasks out
over the group's pods as Slurm's block distribution does and asks each pod's agent to start them with the
per-task variables Slurm's srun sets; their output comes back to srun's own standard output and error.

Files (mounted from the job's Secret): ``job.json`` (nodes, environment, script) and ``token``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

JOB_DIR = os.environ.get("SUNK_JOB_DIR", "/var/run/sunk")
RUNTIME_DIR = os.environ.get("SUNK_RUNTIME_DIR", "/opt/sunk")
PORT = int(os.environ.get("SUNK_AGENT_PORT", "7777"))
MAX_SKEW = 300.0
_children: set[int] = set()
_children_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------------------
# Pure helpers (hostlists, counts, layout, environments)


def expand_hostlist(expr: str) -> list[str]:
    """Expand ``pre[1-3,07]suf,other`` into names (brackets form a product, padding from the low bound)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += (ch == "[") - (ch == "]")
        if ch in ", " and depth == 0:
            items.append(expr[start:i])
            start = i + 1
    items.append(expr[start:])
    hosts: list[str] = []
    for item in filter(None, items):
        parts = re.split(r"\[([^\]]*)\]", item)
        names = [parts[0]]
        for k in range(1, len(parts), 2):
            choices: list[str] = []
            for rng in parts[k].split(","):
                lo, _, hi = rng.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()) or int(hi or lo) < int(lo):
                    raise ValueError(f"Invalid hostlist: {expr}")
                choices += [str(n).zfill(len(lo)) for n in range(int(lo), int(hi or lo) + 1)]
            names = [n + c + parts[k + 1] for n in names for c in choices]
        hosts += names
    return hosts


def compress_hostlist(hosts: list[str]) -> str:
    """Slurm's compressed form (order kept): consecutive numbers of one prefix share a bracket."""
    ranges: list[list[Any]] = []  # [prefix, lo, hi, width, numbered]
    for host in hosts:
        m = re.fullmatch(r"(.*?)(\d+)", host)
        if m is None:
            ranges.append([host, 0, 0, 0, False])
            continue
        prefix, n, w = m.group(1), int(m.group(2)), len(m.group(2))
        if ranges and ranges[-1][4] and ranges[-1][0] == prefix and ranges[-1][2] + 1 == n:
            last = ranges[-1]
            ok = last[3] == w or (len(str(n)) == w if last[3] < w else len(str(last[1])) == last[3])
            if ok:
                last[2], last[3] = n, min(last[3], w)
                continue
        ranges.append([prefix, n, n, w, True])
    parts: list[str] = []
    i = 0
    while i < len(ranges):
        prefix, lo, hi, w, numbered = ranges[i]
        if not numbered:
            parts.append(prefix)
            i += 1
            continue
        j = i + 1
        while j < len(ranges) and ranges[j][4] and ranges[j][0] == prefix:
            j += 1
        group = ranges[i:j]
        if len(group) == 1 and lo == hi:
            parts.append(prefix + str(lo).zfill(w))
        else:
            parts.append(prefix + "[" + ",".join(
                str(g[1]).zfill(g[3]) if g[1] == g[2] else f"{str(g[1]).zfill(g[3])}-{str(g[2]).zfill(g[3])}"
                for g in group) + "]")
        i = j
    return ",".join(parts)


def compress_counts(counts: list[int]) -> str:
    """Slurm's ``2(x3),1`` form."""
    out: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j + 1 < len(counts) and counts[j + 1] == counts[i]:
            j += 1
        out.append(str(counts[i]) if j == i else f"{counts[i]}(x{j - i + 1})")
        i = j + 1
    return ",".join(out)


def expand_counts(text: str) -> list[int]:
    out: list[int] = []
    for item in filter(None, text.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if m:
            out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def layout(ntasks: int, nnodes: int, per_node: int | None = None) -> list[int]:
    """Tasks on each of the step's nodes (block distribution: the first nodes take the remainder)."""
    if per_node:
        return [per_node] * nnodes
    base, extra = divmod(ntasks, nnodes)
    return [base + (1 if i < extra else 0) for i in range(nnodes)]


def master_port(job_id: int) -> int:
    """A port for torch's rendezvous, stable for the job (the convention of several Slurm launchers)."""
    return 10000 + job_id % 20000


def batch_environment(job: dict[str, Any], path: str) -> dict[str, str]:
    """The batch script's environment: what Slurm set for the batch step, plus the torch rendezvous."""
    env = dict(job["env"])
    nodes = job["nodes"]
    env["PATH"] = f"{RUNTIME_DIR}/bin:{path}"
    env.update(SUNK_RUNTIME_DIR=RUNTIME_DIR, SUNK_JOB_DIR=JOB_DIR, SUNK_AGENT_PORT=str(PORT))
    env.setdefault("HOME", "/")
    env["MASTER_ADDR"] = nodes[0]["host"]
    env["MASTER_PORT"] = str(master_port(int(job["jobId"])))
    env["WORLD_SIZE"] = env.get("SLURM_NTASKS", str(len(nodes)))
    env["RANK"] = "0"
    return env


def task_environments(base: dict[str, str], job: dict[str, Any], step_id: int, step_nodes: list[dict[str, Any]],
                      counts: list[int], gpus_per_task: int | None = None) -> list[tuple[int, dict[str, str]]]:
    """(node index in the step, environment) of every task of a step, in task-id order."""
    ntasks = sum(counts)
    names = [n["name"] for n in step_nodes]
    nodelist = compress_hostlist(names)
    tpn = compress_counts(counts)
    common = dict(base)
    common.update({
        "SLURM_STEP_ID": str(step_id), "SLURM_STEPID": str(step_id),
        "SLURM_STEP_NODELIST": nodelist, "SLURM_STEP_NUM_NODES": str(len(step_nodes)),
        "SLURM_STEP_NUM_TASKS": str(ntasks), "SLURM_STEP_TASKS_PER_NODE": tpn,
        "SLURM_NODELIST": nodelist, "SLURM_NNODES": str(len(step_nodes)), "SLURM_NTASKS": str(ntasks),
        "SLURM_NPROCS": str(ntasks), "SLURM_TASKS_PER_NODE": tpn,
        "SLURM_LAUNCH_NODE_IPADDR": _my_address(), "SLURM_SRUN_COMM_HOST": _my_address(),
        "WORLD_SIZE": str(ntasks), "MASTER_ADDR": step_nodes[0]["host"],
        "MASTER_PORT": str(master_port(int(job["jobId"]))),
    })
    out: list[tuple[int, dict[str, str]]] = []
    proc = 0
    for node_index, (node, count) in enumerate(zip(step_nodes, counts, strict=True)):
        gtids = ",".join(str(proc + i) for i in range(count))
        gpus = int(node.get("gpus") or 0)
        for local in range(count):
            env = dict(common)
            env.update({
                "SLURM_PROCID": str(proc), "SLURM_LOCALID": str(local), "SLURM_NODEID": str(node_index),
                "SLURMD_NODENAME": node["name"], "SLURM_GTIDS": gtids, "SLURM_CPUS_ON_NODE": str(node["cpus"]),
                "RANK": str(proc), "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(count),
                "GROUP_RANK": str(node_index),
            })
            if gpus:
                if gpus_per_task:
                    ids = range(local * gpus_per_task, min(gpus, (local + 1) * gpus_per_task))
                else:
                    ids = range(gpus)
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)
                env["SLURM_STEP_GPUS"] = env["CUDA_VISIBLE_DEVICES"]
            else:
                env.pop("CUDA_VISIBLE_DEVICES", None)
            out.append((node_index, env))
            proc += 1
    return out


_SRUN_VALUE = {
    "-N": "nodes", "--nodes": "nodes", "-n": "ntasks", "--ntasks": "ntasks", "--ntasks-per-node": "tpn",
    "-c": "cpus", "--cpus-per-task": "cpus", "-o": "output", "--output": "output", "-e": "error",
    "--error": "error", "-w": "nodelist", "--nodelist": "nodelist", "-x": "exclude", "--exclude": "exclude",
    "-J": "name", "--job-name": "name", "--gpus-per-task": "gpt", "--gres": "gres", "--mpi": "mpi",
    "--cpu-bind": "cpubind", "-m": "dist", "--distribution": "dist", "--export": "export", "--mem": "mem",
    "-t": "time", "--time": "time", "-D": "chdir", "--chdir": "chdir", "-p": "partition", "--partition": "partition",
    "-A": "account", "--account": "account", "-W": "wait", "--wait": "wait", "--gpus": "gpus", "-G": "gpus",
    "--mem-per-cpu": "mem", "--mem-per-gpu": "mem", "--gpu-bind": "gpubind", "--ntasks-per-gpu": "ntpg",
    "--signal": "signal", "-i": "input", "--input": "input", "--open-mode": "openmode", "-r": "relative",
    "--relative": "relative", "--gpus-per-node": "gpn", "--cpus-per-gpu": "cpg", "--het-group": "het",
}
_SRUN_FLAG = {
    "-l": "label", "--label": "label", "-u": "unbuffered", "--unbuffered": "unbuffered", "--exclusive": "excl",
    "--overlap": "overlap", "-K": "kill", "--kill-on-bad-exit": "kill", "-Q": "quiet", "--quiet": "quiet",
    "-v": "verbose", "--verbose": "verbose", "--exact": "exact", "-O": "overcommit", "--overcommit": "overcommit",
    "-X": "disable_status", "--disable-status": "disable_status",
}


class SrunError(Exception):
    pass


def parse_srun(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """srun's options (getopt-style: ``-N2``, ``-N 2``, ``--nodes=2``, ``--nodes 2``) and the command."""
    opts: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return opts, argv[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return opts, argv[i:]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name in _SRUN_FLAG and not (eq or (value and not arg.startswith("--"))):
            opts[_SRUN_FLAG[name]] = True
        elif name in _SRUN_FLAG and name in ("-K", "--kill-on-bad-exit"):
            opts["kill"] = True
        elif name in _SRUN_VALUE:
            if not eq and not value:
                i += 1
                if i >= len(argv):
                    raise SrunError(f"option '{name}' requires an argument")
                value = argv[i]
            opts[_SRUN_VALUE[name]] = value
        else:
            raise SrunError(f"unrecognized option '{arg}'")
        i += 1
    raise SrunError("no command given")


def _count(text: str, what: str) -> int:
    m = re.fullmatch(r"(\d+)(?:-\d+)?", text.strip())
    if not m or int(m.group(1)) < 1:
        raise SrunError(f"invalid {what} count: {text}")
    return int(m.group(1))


def plan_step(opts: dict[str, Any], job: dict[str, Any], env: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The step's nodes and tasks per node, from srun's options and the job's allocation."""
    nodes = list(job["nodes"])
    if "nodelist" in opts:
        wanted = expand_hostlist(opts["nodelist"])
        unknown = [w for w in wanted if w not in {n["name"] for n in nodes}]
        if unknown:
            raise SrunError(f"Requested node configuration is not available: {','.join(unknown)} not in the job")
        nodes = [n for n in nodes if n["name"] in wanted]
    if "exclude" in opts:
        drop = set(expand_hostlist(opts["exclude"]))
        nodes = [n for n in nodes if n["name"] not in drop]
    tpn = _count(opts["tpn"], "ntasks-per-node") if "tpn" in opts else None
    nn = _count(opts["nodes"], "node") if "nodes" in opts else None
    nt = _count(opts["ntasks"], "task") if "ntasks" in opts else None
    if nn is None and nt is None and tpn is None:
        env_tpn = env.get("SLURM_NTASKS_PER_NODE")
        nt = int(env["SLURM_NTASKS"]) if env.get("SLURM_NTASKS") else None
        tpn = int(env_tpn) if env_tpn and env_tpn.isdigit() else None
        if nt is None:
            nt = len(nodes) * (tpn or 1)
        nn = min(len(nodes), nt) if tpn is None else len(nodes)
    if nn is None:
        nn = min(len(nodes), nt) if nt is not None else len(nodes)
    if nn > len(nodes):
        raise SrunError(f"Requested node configuration is not available: {nn} nodes, the job has {len(nodes)}")
    if nt is None:
        nt = nn * (tpn or 1)
    if nt < nn:
        nn = nt
    step_nodes = nodes[:nn]
    if tpn is not None and tpn * nn < nt:
        raise SrunError(f"can't run {nt} tasks with --ntasks-per-node={tpn} on {nn} nodes")
    counts = layout(nt, nn, tpn if tpn is not None and tpn * nn == nt else None)
    return step_nodes, counts


# ---------------------------------------------------------------------------------------------------------
# Authenticated messages


def _token() -> bytes:
    with open(os.path.join(JOB_DIR, "token"), "rb") as f:
        return f.read().strip()


def sign(body: dict[str, Any], token: bytes) -> bytes:
    """One request line: the body with a timestamp, a nonce and an HMAC-SHA256 over both."""
    msg = dict(body, ts=time.time(), nonce=secrets.token_hex(8))
    payload = json.dumps(msg, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(token, payload.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"payload": payload, "mac": mac}).encode() + b"\n"


_seen_nonces: dict[str, float] = {}


def verify(line: bytes, token: bytes) -> dict[str, Any]:
    """The body of a signed request; raises PermissionError for a bad MAC, an old or replayed request."""
    outer = json.loads(line)
    payload = outer["payload"]
    mac = hmac.new(token, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, str(outer.get("mac", ""))):
        raise PermissionError("bad signature")
    msg: dict[str, Any] = json.loads(payload)
    now = time.time()
    if abs(now - float(msg["ts"])) > MAX_SKEW or msg["nonce"] in _seen_nonces:
        raise PermissionError("stale or replayed request")
    _seen_nonces[msg["nonce"]] = now
    for nonce, ts in list(_seen_nonces.items()):
        if now - ts > MAX_SKEW:
            del _seen_nonces[nonce]
    return msg


# ---------------------------------------------------------------------------------------------------------
# The agent's server


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _send(self, frame: dict[str, Any]) -> None:
        with self.server.write_lock(self):
            self.wfile.write(json.dumps(frame).encode() + b"\n")
            self.wfile.flush()

    def handle(self) -> None:
        try:
            msg = verify(self.rfile.readline(), self.server.token)
        except Exception as exc:
            self.wfile.write(json.dumps({"t": "denied", "why": str(exc)}).encode() + b"\n")
            return
        op = msg.get("op")
        if op == "ping":
            self._send({"t": "pong"})
        elif op == "shutdown":
            self._send({"t": "bye"})
            self.server.done.set()
        elif op == "exec":
            self._exec(msg)

    def _exec(self, msg: dict[str, Any]) -> None:
        env, argv = msg["env"], msg["argv"]
        outs: list[Any] = []
        for key in ("stdout", "stderr"):
            path = msg.get(key)
            outs.append(open(path, "ab") if path else subprocess.PIPE)  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, env=env, cwd=msg.get("cwd") or None, stdin=subprocess.DEVNULL,
                                    stdout=outs[0], stderr=outs[1], start_new_session=True)
        except OSError as exc:
            self._send({"t": "e", "d": base64.b64encode(f"srun: error: {argv[0]}: {exc.strerror}\n".encode())
                        .decode()})
            self._send({"t": "x", "code": 2, "signal": 0})
            return
        with _children_lock:
            _children.add(proc.pid)
        pumps = []
        for kind, pipe in (("o", proc.stdout), ("e", proc.stderr)):
            if pipe is None:
                continue
            t = threading.Thread(target=self._pump, args=(kind, pipe, proc), daemon=True)
            t.start()
            pumps.append(t)
        for t in pumps:
            t.join()
        rc = proc.wait()
        with _children_lock:
            _children.discard(proc.pid)
        for f in outs:
            if f is not subprocess.PIPE:
                f.close()
        with contextlib.suppress(OSError):
            self._send({"t": "x", "code": rc if rc >= 0 else 0, "signal": -rc if rc < 0 else 0})

    def _pump(self, kind: str, pipe: Any, proc: subprocess.Popen[bytes]) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                self._send({"t": kind, "d": base64.b64encode(chunk).decode()})
        except OSError:  # srun went away: the task goes too
            _kill_group(proc.pid, signal.SIGKILL)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET

    def __init__(self, port: int, token: bytes) -> None:
        self.token = token
        self.done = threading.Event()
        self._locks: dict[int, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        try:
            super().__init__(("::", port), _Handler)
        except OSError:
            self.address_family = socket.AF_INET
            super().__init__(("0.0.0.0", port), _Handler)

    def write_lock(self, handler: _Handler) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(id(handler), threading.Lock())


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)


def _my_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _request(host: str, body: dict[str, Any], token: bytes, timeout: float | None = 10.0) -> socket.socket:
    sock = socket.create_connection((host, PORT), timeout=timeout)
    sock.settimeout(None)
    sock.sendall(sign(body, token))
    return sock


def _wait_peers(job: dict[str, Any], token: bytes, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    for node in job["nodes"][1:]:
        while True:
            try:
                with _request(node["host"], {"op": "ping"}, token, timeout=2.0) as s:
                    if s.makefile("rb").readline():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"sunk: peer {node['name']} ({node['host']}) did not answer in {timeout:.0f}s")
            time.sleep(0.2)


def _load_job() -> dict[str, Any]:
    with open(os.path.join(JOB_DIR, "job.json")) as f:
        job: dict[str, Any] = json.load(f)
    return job


def _terminate(signum: int, _frame: Any) -> None:
    with _children_lock:
        pids = list(_children)
    for pid in pids:
        _kill_group(pid, signal.SIGTERM)
    time.sleep(0.5)
    for pid in pids:
        _kill_group(pid, signal.SIGKILL)
    os._exit(128 + signum)


def run(rank: int) -> int:
    """The pod's main process: serve task requests; on rank 0 also run the batch script once."""
    job, token = _load_job(), _token()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    server = _Server(PORT, token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if rank != 0:
        server.done.wait()
        return 0
    _wait_peers(job, token)
    state = os.path.join(RUNTIME_DIR, "state")
    os.makedirs(state, exist_ok=True)
    script = os.path.join(state, "slurm_script")
    with open(script, "w") as f:
        f.write(job["script"])
    os.chmod(script, 0o700)
    env = batch_environment(job, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
    proc = subprocess.Popen([script, *job.get("args", [])], env=env, cwd=job.get("workingDir") or None,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    with _children_lock:
        _children.add(proc.pid)
    rc = proc.wait()
    code, sig = (rc, 0) if rc >= 0 else (0, -rc)
    try:
        with open("/dev/termination-log", "w") as f:
            f.write(f"{code}:{sig}")
    except OSError:
        pass
    for node in job["nodes"][1:]:
        try:
            with _request(node["host"], {"op": "shutdown"}, token, timeout=2.0) as s:
                s.makefile("rb").readline()
        except OSError:
            pass
    sys.stdout.flush()
    return 128 + sig if sig else code


def _next_step() -> int:
    state = os.path.join(RUNTIME_DIR, "state")
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "steps"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        step = int(f.read().strip() or "0")
        f.seek(0)
        f.truncate()
        f.write(str(step + 1))
    return step


def _step_pattern(pattern: str | None, env: dict[str, str], step: int, node: str, node_id: int,
                  task: int) -> str | None:
    if not pattern or pattern == "none":
        return None if not pattern else "/dev/null"
    job_id = int(env.get("SLURM_JOB_ID", "0"))
    array_job = env.get("SLURM_ARRAY_JOB_ID")
    array_task = env.get("SLURM_ARRAY_TASK_ID")
    values = {"A": array_job or str(job_id), "a": array_task or "4294967294", "j": str(job_id),
              "J": f"{job_id}.{step}", "s": str(step), "n": str(node_id), "t": str(task), "N": node,
              "u": env.get("SLURM_JOB_USER", ""), "x": env.get("SLURM_JOB_NAME", "")}

    def sub(m: re.Match[str]) -> str:
        width, code = m.group(1), m.group(2)
        if code == "%":
            return "%"
        value = values[code]
        return value.zfill(min(int(width), 10)) if width and value.isdigit() else value

    path = re.sub(r"%(\d*)([AajJsntNux%])", sub, pattern)
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    return path


def srun(argv: list[str]) -> int:
    """Run one job step across the group."""
    try:
        opts, command = parse_srun(argv)
        job, token = _load_job(), _token()
        env = dict(os.environ)
        step_nodes, counts = plan_step(opts, job, env)
    except (SrunError, ValueError) as exc:
        print(f"srun: error: {exc}", file=sys.stderr)
        return 1
    step = _next_step()
    gpt = int(opts["gpt"]) if str(opts.get("gpt", "")).isdigit() else None
    tasks = task_environments(env, job, step, step_nodes, counts, gpt)
    label = bool(opts.get("label"))
    cwd = opts.get("chdir") or os.getcwd()
    results: dict[int, tuple[int, int]] = {}
    out_lock = threading.Lock()
    socks: list[socket.socket] = []
    partial: dict[tuple[int, str], bytes] = {}

    def emit(task: int, kind: str, data: bytes) -> None:
        stream = sys.stdout.buffer if kind == "o" else sys.stderr.buffer
        with out_lock:
            if not label:
                stream.write(data)
            else:
                buf = partial.get((task, kind), b"") + data
                *lines, rest = buf.split(b"\n")
                for line in lines:
                    stream.write(f"{task}: ".encode() + line + b"\n")
                partial[(task, kind)] = rest
            stream.flush()

    def one(task: int, node_index: int, task_env: dict[str, str]) -> None:
        node = step_nodes[node_index]
        body = {"op": "exec", "argv": command, "env": task_env, "cwd": cwd,
                "stdout": _step_pattern(opts.get("output"), task_env, step, node["name"], node_index, task),
                "stderr": _step_pattern(opts.get("error") or opts.get("output"), task_env, step, node["name"],
                                        node_index, task)}
        try:
            sock = _request(node["host"], body, token)
        except OSError as exc:
            emit(task, "e", f"srun: error: {node['name']}: task {task}: {exc}\n".encode())
            results[task] = (1, 0)
            return
        socks.append(sock)
        for line in sock.makefile("rb"):
            frame = json.loads(line)
            if frame["t"] in ("o", "e"):
                emit(task, frame["t"], base64.b64decode(frame["d"]))
            elif frame["t"] == "x":
                results[task] = (int(frame["code"]), int(frame["signal"]))
            elif frame["t"] == "denied":
                emit(task, "e", f"srun: error: {node['name']}: request denied\n".encode())
        results.setdefault(task, (1, 0))

    def stop(signum: int, _frame: Any) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=one, args=(t, ni, e), daemon=True) for t, (ni, e) in enumerate(tasks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with out_lock:
        for (task, kind), rest in partial.items():
            if rest:
                (sys.stdout.buffer if kind == "o" else sys.stderr.buffer).write(f"{task}: ".encode() + rest)
    worst = 0
    for task in sorted(results):
        code, sig = results[task]
        if sig:
            print(f"srun: error: {tasks[task][1]['SLURMD_NODENAME']}: task {task}: "
                  f"{signal.Signals(sig).name.title()[3:] if sig in signal.valid_signals() else sig}",
                  file=sys.stderr)
            worst = max(worst, 128 + sig)
        elif code:
            print(f"srun: error: {tasks[task][1]['SLURMD_NODENAME']}: task {task}: Exited with exit code {code}",
                  file=sys.stderr)
            worst = max(worst, code)
    return worst


def scontrol(argv: list[str]) -> int:
    """``scontrol show hostnames|hostlist [LIST]``; other requests go nowhere inside the pods."""
    if len(argv) >= 2 and argv[0] == "show" and argv[1] in ("hostnames", "hostname"):
        expr = argv[2] if len(argv) > 2 else os.environ.get("SLURM_JOB_NODELIST", "")
        try:
            hosts = expand_hostlist(expr)
        except ValueError as exc:
            print(f"scontrol: error: {exc}", file=sys.stderr)
            return 1
        print("\n".join(hosts))
        return 0
    if len(argv) >= 3 and argv[0] == "show" and argv[1] in ("hostlist", "hostlistsorted"):
        hosts = expand_hostlist(argv[2])
        print(compress_hostlist(sorted(hosts) if argv[1] == "hostlistsorted" else hosts))
        return 0
    print(f"scontrol: error: `scontrol {' '.join(argv)}` is not available inside a pod group; "
          "run it on a login node", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: agent.py run --rank N | srun ARGS | scontrol ARGS", file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        rank = int(rest[rest.index("--rank") + 1]) if "--rank" in rest else int(os.environ.get("SUNK_RANK", "0"))
        return run(rank)
    if cmd == "srun":
        return srun(rest)
    if cmd == "scontrol":
        return scontrol(rest)
    print(f"agent.py: unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

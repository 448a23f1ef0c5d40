"""Plain JSON calls to the API server and informers: one list+watch per kind feeding a thread-safe store.

The typed client turns every body into models and back, which costs more CPU than the request itself
for pods; controllers that handle thousands of pods talk JSON through the same ApiClient's connection
pool and credentials instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.k8s.client import send_json

log = logging.getLogger("sunkbridge.jobs")
MERGE_PATCH = "application/merge-patch+json"


class JsonApi:
    """JSON requests and watch streams through an ApiClient, without model round trips."""

    def __init__(self, api: client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, str] | None = None,
             content_type: str = "application/json") -> Any:
        """One request; the decoded JSON answer. Non-2xx answers raise ApiException with the status."""
        resp = send_json(self.api, method, path, body=body, query=query, content_type=content_type,
                         timeout=urllib3.Timeout(total=self.timeout))
        return json.loads(resp.data) if resp.data else None

    def open_stream(self, path: str, query: Mapping[str, str], read_timeout: float) -> Any:
        """Start a streaming GET (a watch); the raw urllib3 response, to be read line by line."""
        return send_json(self.api, "GET", path, query=query,
                         timeout=urllib3.Timeout(connect=self.timeout, read=read_timeout), stream=True)


def name_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


class Gone(Exception):
    """The API server no longer has the resourceVersion a watch asked for (410): relist."""


class Informer:
    """List then watch one collection into a thread-safe store of its objects by name.

    ``on_change`` receives every object that was added, modified or deleted (the last state seen), and
    every object of a relist, so the consumer can stay level-triggered. ``index`` (optional) groups the
    objects by a key, e.g. pods by their SlurmJob. A watch that ends is resumed from the last
    resourceVersion seen (bookmarks included); a 410 Gone answer makes the informer list again and drop
    the objects that disappeared meanwhile.
    """

    def __init__(self, rest: JsonApi, path: str, on_change: Callable[[dict[str, Any]], None],
                 label_selector: str | None = None, index: Callable[[dict[str, Any]], str | None] | None = None,
                 watch_timeout: int = 300) -> None:
        self.rest, self.path, self.on_change = rest, path, on_change
        self.label_selector, self.index, self.watch_timeout = label_selector, index, watch_timeout
        self.resource_version = ""
        self.relists = 0
        self.last_error = ""  # the last failure of the loop, for messages
        self.synced = threading.Event()
        self._objects: dict[str, dict[str, Any]] = {}
        self._indexed: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread: threading.Thread | None = None

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def indexed(self, key: str) -> list[dict[str, Any]]:
        """The objects whose index key is `key`."""
        with self._lock:
            return list(self._indexed.get(key, {}).values())

    # -- store -----------------------------------------------------------------------------------------

    def _put(self, obj: dict[str, Any]) -> None:
        name = name_of(obj)
        self._drop(name)
        self._objects[name] = obj
        key = self.index(obj) if self.index else None
        if key is not None:
            self._indexed.setdefault(key, {})[name] = obj

    def _drop(self, name: str) -> dict[str, Any] | None:
        old = self._objects.pop(name, None)
        if old is not None and self.index:
            key = self.index(old)
            group = self._indexed.get(key) if key is not None else None
            if group is not None:
                group.pop(name, None)
                if not group:
                    del self._indexed[key]  # type: ignore[arg-type]
        return old

    # -- loop ------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Informer:
        """Run the list+watch loop in a daemon thread (again after `stop`, from the last resourceVersion)."""
        if self.running:
            raise RuntimeError(f"the informer of {self.path} runs already")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, daemon=True, name=f"sunk-informer-{self.path}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.interrupt()

    def interrupt(self) -> None:
        """Drop the current watch connection, as a network failure would; the loop resumes from the last
        resourceVersion seen."""
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self._relist()
                self._watch()
            except Gone:
                log.info("watch of %s: resourceVersion %s is gone, listing again", self.path,
                         self.resource_version)
                self.resource_version = ""
            except Exception as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, ApiException) and exc.status == 410:
                    self.resource_version = ""
                self.last_error = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
                log.info("watch of %s restarts: %s", self.path, self.last_error)
                self._stop.wait(0.5)

    def _query(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    def _relist(self) -> None:
        listing = self.rest.call("GET", self.path, query=self._query())
        fresh = {name_of(o): o for o in listing["items"]}
        with self._lock:
            gone = [o for n, o in self._objects.items() if n not in fresh]
            for name in [name_of(o) for o in gone]:
                self._drop(name)
            for obj in fresh.values():
                self._put(obj)
            self.resource_version = listing["metadata"]["resourceVersion"]
            self.relists += 1
        self.synced.set()
        for obj in [*gone, *fresh.values()]:
            self.on_change(obj)

    def _events(self) -> Iterator[dict[str, Any]]:
        query = {**self._query(), "watch": "true", "resourceVersion": self.resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(self.watch_timeout)}
        resp = self.rest.open_stream(self.path, query, read_timeout=self.watch_timeout + 30)
        self._resp = resp
        try:
            buffer = b""
            for chunk in resp.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                yield from (json.loads(line) for line in lines if line.strip())
        finally:
            self._resp = None
            with contextlib.suppress(Exception):
                resp.release_conn()

    def _watch(self) -> None:
        for event in self._events():
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message"))
                raise RuntimeError(f"watch error: {obj.get('message')}")
            with self._lock:
                if kind == "DELETED":
                    self._drop(name_of(obj))
                elif kind in ("ADDED", "MODIFIED"):
                    self._put(obj)
                self.resource_version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self.on_change(obj)
            if self._stop.is_set():
                return

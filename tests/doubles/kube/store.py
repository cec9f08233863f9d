"""In-memory object storage with one resourceVersion counter and a change history (the watch cache)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._util import JSON, deepcopy

Objects = list[JSON]


@dataclass(frozen=True)
class Change:
    """One stored change; `obj` and `prev` are snapshots that nobody mutates."""

    seq: int
    rv: int
    resource: str
    namespace: str
    name: str
    type: str
    obj: JSON
    prev: JSON | None


class TooOld(Exception):
    """A watch asked for history the store no longer has (HTTP 200 + ERROR 410 on the wire)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Closed(Exception):
    """The store was shut down; streams end."""


class Store:
    """Every object of every resource, behind one lock; a Condition wakes watchers on each change."""

    def __init__(self, start_rv: int = 1000, history_limit: int = 20000) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {}
        self._rv = start_rv
        self._floor = start_rv
        self._changes: list[Change] = []
        self._change_rvs: list[int] = []
        self._first_seq = 0
        self._next_seq = 0
        self._history_limit = history_limit
        self.closed = False

    # ----------------------------------------------------------------- reading
    @property
    def current_rv(self) -> int:
        with self.lock:
            return self._rv

    @property
    def oldest_rv(self) -> int:
        with self.lock:
            return self._floor

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        with self.lock:
            obj = self._objects.get(resource, {}).get((namespace, name))
            return deepcopy(obj) if obj is not None else None

    def peek(self, resource: str, namespace: str, name: str) -> JSON | None:
        """The stored object itself (do not mutate); for hot read paths under the caller's care."""
        with self.lock:
            return self._objects.get(resource, {}).get((namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> Objects:
        with self.lock:
            items = self._objects.get(resource, {})
            keys = sorted(k for k in items if namespace is None or k[0] == namespace)
            return [deepcopy(items[k]) for k in keys]

    def snapshot_at(self, resource: str, namespace: str | None, rv: int) -> Objects:
        """The objects as they were at `rv` (rewinds the history); TooOld if that is gone."""
        with self.lock:
            if rv < self._floor:
                raise TooOld(rv, self._floor)
            state = {k: v for k, v in self._objects.get(resource, {}).items()}
            for change in reversed(self._changes):
                if change.rv <= rv:
                    break
                if change.resource != resource:
                    continue
                key = (change.namespace, change.name)
                if change.prev is None:
                    state.pop(key, None)
                else:
                    state[key] = change.prev
            keys = sorted(k for k in state if namespace is None or k[0] == namespace)
            return [deepcopy(state[k]) for k in keys]

    # ----------------------------------------------------------------- writing
    def _record(self, resource: str, ns: str, name: str, type_: str, obj: JSON, prev: JSON | None) -> None:
        change = Change(self._next_seq, self._rv, resource, ns, name, type_, obj, prev)
        self._next_seq += 1
        self._changes.append(change)
        self._change_rvs.append(change.rv)
        if len(self._changes) > self._history_limit:
            drop = len(self._changes) - self._history_limit
            self._floor = self._changes[drop - 1].rv
            del self._changes[:drop]
            del self._change_rvs[:drop]
            self._first_seq += drop
        self.cond.notify_all()

    def _bump(self, obj: JSON) -> JSON:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        return obj

    def create(self, resource: str, obj: JSON) -> JSON | None:
        """Store a new object; None if (namespace, name) is taken."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.lock:
            bucket = self._objects.setdefault(resource, {})
            if key in bucket:
                return None
            stored = self._bump(deepcopy(obj))
            bucket[key] = stored
            self._record(resource, key[0], key[1], "ADDED", stored, None)
            return deepcopy(stored)

    def mutate(self, resource: str, namespace: str, name: str, fn: Callable[[JSON], Any]) -> JSON | None:
        """Change an object in place under the lock; fn returns False to abort. None if it does not exist."""
        with self.lock:
            bucket = self._objects.get(resource, {})
            current = bucket.get((namespace, name))
            if current is None:
                return None
            updated = deepcopy(current)
            if fn(updated) is False:
                return deepcopy(current)
            stored = self._bump(updated)
            bucket[(namespace, name)] = stored
            self._record(resource, namespace, name, "MODIFIED", stored, current)
            return deepcopy(stored)

    def replace(self, resource: str, obj: JSON) -> JSON | None:
        meta = obj["metadata"]
        return self.mutate(resource, meta.get("namespace", ""), meta["name"], lambda cur: _assign(cur, obj))

    def remove(self, resource: str, namespace: str, name: str) -> JSON | None:
        """Delete for good (the DELETED event carries a fresh resourceVersion, as the server's does)."""
        with self.lock:
            bucket = self._objects.get(resource, {})
            current = bucket.pop((namespace, name), None)
            if current is None:
                return None
            final = self._bump(deepcopy(current))
            self._record(resource, namespace, name, "DELETED", final, current)
            return deepcopy(final)

    def compact(self) -> None:
        """Forget the whole history (like an etcd compaction): older resourceVersions become 410."""
        with self.lock:
            self._floor = self._rv
            self._first_seq = self._next_seq
            self._changes.clear()
            self._change_rvs.clear()
            self.cond.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.cond.notify_all()

    def touch(self) -> None:
        """Wake every waiter (a fault or the clock changed something they poll)."""
        with self.lock:
            self.cond.notify_all()

    # ----------------------------------------------------------------- watching
    def cursor(self, after_rv: int | None = None) -> Cursor:
        """A reader of changes with rv > after_rv (None: from now on)."""
        with self.lock:
            if after_rv is None or after_rv >= self._rv:
                return Cursor(self, self._next_seq)
            if after_rv < self._floor:
                raise TooOld(after_rv, self._floor)
            index = bisect.bisect_right(self._change_rvs, after_rv)
            return Cursor(self, self._first_seq + index)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    return predicate()
                self.cond.wait(min(remaining, 0.5))
            return True


def _assign(current: JSON, new: JSON) -> None:
    current.clear()
    current.update(deepcopy(new))


class Cursor:
    """Position in the change history; `next` blocks until changes arrive, the timeout, or close."""

    def __init__(self, store: Store, seq: int) -> None:
        self.store = store
        self.seq = seq

    def next(self, timeout: float) -> list[Change]:
        """Changes since the last call ([] on timeout or wake-up); TooOld if history moved on; Closed."""
        store = self.store
        deadline = time.monotonic() + timeout
        with store.cond:
            while True:
                if store.closed:
                    raise Closed()
                if self.seq < store._first_seq:
                    raise TooOld(store._floor, store._floor)
                if self.seq < store._next_seq:
                    start = self.seq - store._first_seq
                    batch = store._changes[start:]
                    self.seq = store._next_seq
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                store.cond.wait(remaining)
                if not store.closed and store._first_seq <= self.seq >= store._next_seq:
                    return []  # woken without news (a touch or the timeout): the caller checks its own flags

"""Events as the scheduler (events.k8s.io via core/v1) and the kubelet (core/v1, counted) write them."""

from __future__ import annotations

import threading

from ._util import JSON, new_uid, now_ns, rfc3339, rfc3339_micro
from .defaults import managed_entry
from .resources import EVENTS
from .store import Store


class EventRecorder:
    def __init__(self, store: Store, node_name: str) -> None:
        self.store = store
        self.node_name = node_name
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, ...], str] = {}

    @staticmethod
    def _involved(pod: JSON, field_path: str | None) -> JSON:
        meta = pod["metadata"]
        ref: JSON = {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            ref["fieldPath"] = field_path
        return ref

    def scheduler(self, pod: JSON, reason: str, message: str, type_: str, action: str) -> None:
        """A scheduler event: source {}, first/lastTimestamp null, eventTime set, action and reporter."""
        ns = pod["metadata"]["namespace"]
        now = now_ns()
        event: JSON = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": f"{pod['metadata']['name']}.{now:x}",
                "namespace": ns,
                "uid": new_uid(),
                "creationTimestamp": rfc3339(now),
                "managedFields": [
                    managed_entry(
                        "kube-scheduler",
                        "Update",
                        "events.k8s.io/v1",
                        rfc3339(now),
                        {
                            f"f:{k}": {}
                            for k in (
                                "action",
                                "eventTime",
                                "note",
                                "reason",
                                "regarding",
                                "reportingController",
                                "reportingInstance",
                                "type",
                            )
                        },
                    )
                ],
            },
            "involvedObject": self._involved(pod, None),
            "reason": reason,
            "message": message,
            "source": {},
            "firstTimestamp": None,
            "lastTimestamp": None,
            "type": type_,
            "eventTime": rfc3339_micro(now),
            "action": action,
            "reportingComponent": "default-scheduler",
            "reportingInstance": f"default-scheduler-{self.node_name}",
        }
        self.store.create(EVENTS.key, event)

    def kubelet(
        self, pod: JSON, reason: str, message: str, type_: str = "Normal", field_path: str | None = None
    ) -> None:
        """A kubelet event; a repeat (same object, field, reason, message) bumps count and lastTimestamp."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["uid"], field_path or "", reason, message, type_)
        now = now_ns()
        stamp = rfc3339(now)
        with self._lock:
            existing = self._seen.get(key)
            if existing is not None:

                def bump(ev: JSON) -> None:
                    ev["count"] = int(ev.get("count") or 1) + 1
                    ev["lastTimestamp"] = stamp
                    ev["metadata"]["managedFields"][0]["time"] = stamp

                if self.store.mutate(EVENTS.key, meta["namespace"], existing, bump) is not None:
                    return
            name = f"{meta['name']}.{now:x}"
            self._seen[key] = name
        fields: JSON = {
            f"f:{k}": {}
            for k in (
                "count",
                "firstTimestamp",
                "involvedObject",
                "lastTimestamp",
                "message",
                "reason",
                "reportingComponent",
                "reportingInstance",
            )
        }
        fields["f:source"] = {"f:component": {}, "f:host": {}}
        fields["f:type"] = {}
        event: JSON = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "uid": new_uid(),
                "creationTimestamp": stamp,
                "managedFields": [managed_entry("kubelet", "Update", "v1", stamp, fields)],
            },
            "involvedObject": self._involved(pod, field_path),
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        }
        self.store.create(EVENTS.key, event)

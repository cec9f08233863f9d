"""Control-plane loops: the scheduler (one node), the namespace finalizer and the garbage collector."""

from __future__ import annotations

import sys
import threading
import traceback
from decimal import Decimal
from typing import TYPE_CHECKING

from ._util import JSON, parse_quantity, rfc3339
from .defaults import managed_entry, pod_requests
from .resources import ALL, NAMESPACES, NODES, PODS
from .selectors import match_node_selector_term
from .store import Change, Closed, TooOld

if TYPE_CHECKING:
    from .double import KubeDouble

PREEMPTION_NOT_HELPFUL = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
PREEMPTION_NO_VICTIMS = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."


def _tolerates(pod: JSON, taint: JSON) -> bool:
    for tol in pod["spec"].get("tolerations") or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol.get("key") == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


class Controllers:
    """One thread reacting to changes: binds pending pods, finishes namespace deletion, collects garbage."""

    def __init__(self, cluster: KubeDouble) -> None:
        self.c = cluster
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-double-controllers", daemon=True)
        self._unschedulable_seen: dict[str, str] = {}

    def start(self) -> None:
        self._cursor = self.c.store.cursor(None)
        self._resync()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.c.store.touch()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                changes = self._cursor.next(0.5)
            except Closed:
                return
            except TooOld:
                self._cursor = self.c.store.cursor(None)
                self._resync()
                continue
            try:
                for change in changes:
                    self._handle(change)
            except Exception:
                self.c.record_error("controllers: " + traceback.format_exc())
                traceback.print_exc(file=sys.stderr)

    def _resync(self) -> None:
        self.schedule_pending(force=True)
        for ns in self.c.store.list(NAMESPACES.key):
            if ns["metadata"].get("deletionTimestamp"):
                self._finalize_namespace(ns["metadata"]["name"])

    def _handle(self, change: Change) -> None:
        if change.resource == PODS.key:
            if change.type == "ADDED" and not change.obj["spec"].get("nodeName"):
                self._schedule(change.obj)
            if change.type == "DELETED":
                self._unschedulable_seen.pop(change.obj["metadata"]["uid"], None)
                ns = self.c.store.peek(NAMESPACES.key, "", change.namespace)
                if ns is not None and ns["metadata"].get("deletionTimestamp"):
                    self._finalize_namespace(change.namespace)
        elif change.resource == NODES.key and change.type == "MODIFIED":
            self.schedule_pending(force=True)
        elif (
            change.resource == NAMESPACES.key
            and change.type == "MODIFIED"
            and change.obj["metadata"].get("deletionTimestamp")
        ):
            self._finalize_namespace(change.name)
        if change.type == "DELETED":
            self._collect_garbage(change.obj["metadata"].get("uid", ""))
            if change.resource == PODS.key:
                self.schedule_pending(force=False)

    # ------------------------------------------------------------ scheduler
    def schedule_pending(self, force: bool) -> None:
        for pod in self.c.store.list(PODS.key):
            if not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                self._schedule(pod, retry=force)

    def _fit(self, pod: JSON, node: JSON) -> tuple[list[str], bool]:
        """Reasons the node does not fit (scheduler wording) and whether preemption could help."""
        reasons: list[str] = []
        labels = node["metadata"].get("labels") or {}
        node_name = node["metadata"]["name"]
        spec = pod["spec"]
        selector = spec.get("nodeSelector") or {}
        affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        selector_ok = all(labels.get(k) == v for k, v in selector.items())
        if affinity is not None:
            terms = affinity.get("nodeSelectorTerms") or []
            selector_ok = selector_ok and any(match_node_selector_term(t, labels, node_name) for t in terms)
        if not selector_ok:
            reasons.append("1 node(s) didn't match Pod's node affinity/selector")
        if node["spec"].get("unschedulable") and not any(
            t.get("key") == "node.kubernetes.io/unschedulable" and _tolerates(pod, t)
            for t in [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
        ):
            reasons.append("1 node(s) were unschedulable")
        for taint in node["spec"].get("taints") or []:
            if taint.get("key") == "node.kubernetes.io/unschedulable":
                continue
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
                value = taint.get("value", "")
                reasons.append(f"1 node(s) had untolerated taint {{{taint.get('key')}: {value}}}")
        insufficient = False
        if not reasons:
            allocatable = node["status"].get("allocatable") or {}
            used: dict[str, Decimal] = {"cpu": Decimal(0), "memory": Decimal(0)}
            for other in self.c.store.list(PODS.key):
                if other["spec"].get("nodeName") == node_name and other["status"].get("phase") not in (
                    "Succeeded",
                    "Failed",
                ):
                    for key, value in pod_requests(other).items():
                        used[key] += value
            for key, value in pod_requests(pod).items():
                if value and used[key] + value > parse_quantity(allocatable.get(key, "0")):
                    reasons.append(f"1 Insufficient {key}")
                    insufficient = True
        return sorted(reasons), insufficient

    def _schedule(self, pod: JSON, retry: bool = False) -> None:
        spec = pod["spec"]
        meta = pod["metadata"]
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        if spec.get("schedulingGates"):
            self._set_unschedulable(
                pod, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates", event=False
            )
            return
        node = self.c.store.get(NODES.key, "", self.c.node.name)
        if node is None:
            return
        reasons, insufficient = self._fit(pod, node)
        if reasons:
            tail = PREEMPTION_NO_VICTIMS if insufficient else PREEMPTION_NOT_HELPFUL
            message = f"0/1 nodes are available: {', '.join(reasons)}. no new claims to deallocate, {tail}"
            if retry or self._unschedulable_seen.get(meta["uid"]) != message:
                self._unschedulable_seen[meta["uid"]] = message
                self._set_unschedulable(pod, "Unschedulable", message, event=True)
            return
        now = rfc3339()

        def bind(obj: JSON) -> bool:
            if obj["metadata"].get("uid") != meta["uid"] or obj["spec"].get("nodeName"):
                return False
            if obj["metadata"].get("deletionTimestamp"):
                return False
            obj["spec"]["nodeName"] = self.c.node.name
            conditions = [c for c in obj["status"].get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            )
            obj["status"]["conditions"] = conditions
            return True

        bound = self.c.store.mutate(PODS.key, meta["namespace"], meta["name"], bind)
        if bound is not None and bound["spec"].get("nodeName") == self.c.node.name:
            self._unschedulable_seen.pop(meta["uid"], None)
            self.c.events.scheduler(
                pod,
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.c.node.name}",
                "Normal",
                "Binding",
            )

    def _set_unschedulable(self, pod: JSON, reason: str, message: str, event: bool) -> None:
        meta = pod["metadata"]
        now = rfc3339()

        def mark(obj: JSON) -> bool:
            if obj["metadata"].get("uid") != meta["uid"] or obj["spec"].get("nodeName"):
                return False
            current = [c for c in obj["status"].get("conditions") or [] if c.get("type") == "PodScheduled"]
            if current and current[0].get("reason") == reason and current[0].get("message") == message:
                return False
            cond = {
                "type": "PodScheduled",
                "observedGeneration": int(obj["metadata"].get("generation") or 1),
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": current[0]["lastTransitionTime"] if current else now,
                "reason": reason,
                "message": message,
            }
            obj["status"]["conditions"] = [cond]
            entries = [
                m for m in obj["metadata"].get("managedFields") or [] if m.get("manager") != "kube-scheduler"
            ]
            entries.insert(
                0,
                managed_entry(
                    "kube-scheduler", "Update", "v1", now, {"f:status": {"f:conditions": {}}}, "status"
                ),
            )
            obj["metadata"]["managedFields"] = entries
            return True

        self.c.store.mutate(PODS.key, meta["namespace"], meta["name"], mark)
        if event:
            self.c.events.scheduler(pod, "FailedScheduling", message, "Warning", "Scheduling")

    # ------------------------------------------------------------ namespaces and garbage
    def _finalize_namespace(self, name: str) -> None:
        remaining_pods = False
        for rt in ALL:
            if not rt.namespaced or not rt.stored:
                continue
            for obj in self.c.store.list(rt.key, name):
                if rt is PODS:
                    remaining_pods = True
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.c.delete_pod_gracefully(name, obj["metadata"]["name"], None)
                else:
                    self.c.store.remove(rt.key, name, obj["metadata"]["name"])
        if not remaining_pods:
            self.c.store.remove(NAMESPACES.key, "", name)

    def _collect_garbage(self, owner_uid: str) -> None:
        if not owner_uid:
            return
        for rt in ALL:
            if not rt.stored:
                continue
            for obj in self.c.store.list(rt.key):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == owner_uid for r in refs):
                    meta = obj["metadata"]
                    if rt is PODS:
                        self.c.delete_pod_gracefully(meta.get("namespace", ""), meta["name"], None)
                    else:
                        self.c.store.remove(rt.key, meta.get("namespace", ""), meta["name"])

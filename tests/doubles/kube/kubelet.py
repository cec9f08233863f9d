"""The node agent: runs each pod bound to the node as real processes and reports status like a kubelet.

One PodWorker thread per pod drives the lifecycle the recordings show: volumes, sandbox, init
containers in order (native sidecars started and left running), main containers in parallel,
sidecars stopped after the main containers (TERM, KILL after the grace period), terminal phase a
moment after everything stopped, graceful deletion and activeDeadlineSeconds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._util import JSON, deepcopy, parse_quantity, rfc3339
from .defaults import managed_entry
from .logs import ContainerLog
from .resources import CONFIGMAPS, PODS, SECRETS
from .sandbox import LaunchSpec, Mount, kept_under_tmp
from .store import Closed, TooOld

if TYPE_CHECKING:
    from .double import KubeDouble

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
NOT_LOCATED = "The container could not be located when the pod was terminated"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined names are replaced, $$ escapes, unknown references stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass
class Slot:
    """One container of the pod and everything the kubelet knows about it."""

    name: str
    spec: JSON
    kind: str  # init | sidecar | main
    state: JSON
    last_state: JSON = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str = ""
    image_id: str = ""
    proc: Any = None
    log: ContainerLog | None = None
    running: bool = False
    ever_started: bool = False
    final: bool = False
    exit_code: int | None = None
    exit_result: tuple[int, bool, str] | None = None  # (code, oom, start error message)
    force_oom: bool = False
    stopping: bool = False
    next_try: float = 0.0
    pulled: bool = False
    pull_phase: str | None = None
    pull_attempts: int = 0
    crash_count: int = 0
    started_at: str = ""
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def field_path(self) -> str:
        return f"spec.{'containers' if self.kind == 'main' else 'initContainers'}{{{self.name}}}"

    @property
    def image(self) -> str:
        return str(self.spec.get("image") or "")

    @property
    def waiting_reason(self) -> str | None:
        waiting = self.state.get("waiting")
        return waiting.get("reason") if isinstance(waiting, dict) else None


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: JSON) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"kube-double-pod-{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.c = kubelet.c
        self.pod = deepcopy(pod)
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.cv = threading.Condition()
        spec = pod["spec"]
        has_init = bool(spec.get("initContainers"))
        self.init_slots = [
            Slot(
                c["name"],
                c,
                "sidecar" if c.get("restartPolicy") == "Always" else "init",
                {"waiting": {"reason": "PodInitializing"}},
            )
            for c in spec.get("initContainers") or []
        ]
        self.main_slots = [
            Slot(
                c["name"],
                c,
                "main",
                {"waiting": {"reason": "PodInitializing" if has_init else "ContainerCreating"}},
            )
            for c in spec.get("containers") or []
        ]
        self.sidecars = [s for s in self.init_slots if s.kind == "sidecar"]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.grace: float = float(spec.get("terminationGracePeriodSeconds", 30))
        self.deadline_s: int | None = spec.get("activeDeadlineSeconds")
        self.pod_dir = self.c.state_dir / "pods" / self.uid
        self.volumes: dict[str, tuple[str, bool]] = {}  # name -> (host path, always read-only)
        self.start_time = ""
        self.started_mono = 0.0
        self.sandbox_ready = False
        self.sandbox_down = False
        self.pod_ip: str | None = None
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.init_done = not self.init_slots
        self.init_failed = False
        self.done = False
        self.success = False
        self.terminal = False
        self.phase_at: float | None = None
        self.stopping_sidecars = False
        self.sidecar_deadline = 0.0
        self.terminating = False
        self.term_reason = ""
        self.term_deadline = 0.0
        self.deletion_grace: float | None = None
        self.force = False
        self.finished = threading.Event()
        self.cond_state: dict[str, tuple[str, str]] = {}
        self._mount_warned: set[str] = set()

    # ------------------------------------------------------------- notifications
    def observe(self, pod: JSON) -> None:
        meta = pod["metadata"]
        with self.cv:
            self.pod = deepcopy(pod)
            if meta.get("deletionTimestamp") and self.deletion_grace is None:
                self.deletion_grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            self.cv.notify_all()

    def force_stop(self) -> None:
        with self.cv:
            self.force = True
            self.cv.notify_all()

    def oom_kill(self, container: str) -> bool:
        """Kill a running container the way the kernel OOM killer would (reported as OOMKilled, 137)."""
        with self.cv:
            slot = self.slot(container)
            if slot is None or slot.proc is None:  # launched (its output may arrive before `running` is set)
                return False
            slot.force_oom = True
            proc = slot.proc
        proc.kill()
        return True

    def slot(self, name: str) -> Slot | None:
        for s in [*self.init_slots, *self.main_slots]:
            if s.name == name:
                return s
        return None

    def container_state(self, name: str) -> tuple[JSON, JSON] | None:
        with self.cv:
            slot = self.slot(name)
            return (deepcopy(slot.state), deepcopy(slot.last_state)) if slot is not None else None

    # ------------------------------------------------------------- main loop
    def run(self) -> None:
        try:
            self._main()
        except Exception:  # a bug in the double must be loud, not a hung test
            self.c.record_error(f"pod worker {self.ns}/{self.pod_name}: " + traceback.format_exc())
            traceback.print_exc(file=sys.stderr)
        finally:
            self._cleanup()
            self.finished.set()
            self.kubelet.forget(self.uid)

    def _wait(self, timeout: float) -> None:
        with self.cv:
            if self.force or self._has_news():
                return
            self.cv.wait(max(0.0, timeout))

    def _sleep(self, seconds: float) -> None:
        """Let time pass (a control-loop delay); only a forced stop cuts it short."""
        deadline = time.monotonic() + seconds
        with self.cv:
            while not self.force:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.cv.wait(remaining)

    def _has_news(self) -> bool:
        if self.deletion_grace is not None and not self.terminating:
            return True
        return any(s.exit_result is not None for s in [*self.init_slots, *self.main_slots])

    def _main(self) -> None:
        self.start_time = rfc3339()
        self.started_mono = time.monotonic()
        self._post()
        while not self._setup_volumes():
            if self._stop_requested():
                return self._terminate_now()
            self._wait(self.c.timings.mount_retry)
        self._sleep(self.c.timings.sandbox_ready)
        if self.force:
            return None
        self.sandbox_ready = True
        self._post()
        while True:
            with self.cv:
                if self.force:
                    return None
                deletion = self.deletion_grace
            exits = self._handle_exits()
            now = time.monotonic()
            if self.terminating:
                if self._progress_termination(now):
                    self._finish_termination()
                    if self.term_reason == "delete":
                        self._sleep(self.c.timings.deletion_delay)
                        self.c.finalize_pod_deletion(self.ns, self.pod_name, self.uid)
                        return None
                    self.terminating = False
                elif exits:
                    self._post()
            elif deletion is not None and not self.terminal:
                self._begin_termination(deletion, "delete")
                continue
            elif deletion is not None and self.terminal:
                self.c.finalize_pod_deletion(self.ns, self.pod_name, self.uid)
                return None
            elif self._deadline_passed(now) and not self.done:
                self._deadline_exceeded()
                continue
            elif not self.done:
                self._advance(now, exits)
            elif exits:
                self._post()
            elif not self.terminal and self.phase_at is not None and now >= self.phase_at:
                self.phase = "Succeeded" if self.success else "Failed"
                self.sandbox_down = True
                self.terminal = True
                self._post()
            self._wait(self._next_timer(time.monotonic()))

    def _stop_requested(self) -> bool:
        with self.cv:
            return self.force or self.deletion_grace is not None

    def _terminate_now(self) -> None:
        if not self.force:
            self._begin_termination(0, "delete")
            self._finish_termination()
            self.c.finalize_pod_deletion(self.ns, self.pod_name, self.uid)

    def _next_timer(self, now: float) -> float:
        candidates = [1.0]
        for slot in [*self.init_slots, *self.main_slots]:
            if slot.next_try > now:
                candidates.append(slot.next_try - now)
        if self.terminating:
            candidates.append(max(0.0, self.term_deadline - now))
        if self.stopping_sidecars:
            candidates.append(max(0.0, self.sidecar_deadline - now))
        if self.phase_at is not None and not self.terminal:
            candidates.append(max(0.0, self.phase_at - now))
        if self.deadline_s is not None and not self.done:
            candidates.append(max(0.0, self.started_mono + self.deadline_s - now))
        return max(0.0, min(candidates))

    def _deadline_passed(self, now: float) -> bool:
        return self.deadline_s is not None and now >= self.started_mono + self.deadline_s

    # ------------------------------------------------------------- volumes
    def _setup_volumes(self) -> bool:
        vol_root = self.pod_dir / "volumes"
        vol_root.mkdir(parents=True, exist_ok=True)
        ok = True
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            if name in self.volumes:
                continue
            try:
                result = self._make_volume(vol, vol_root / name)
            except _MountError as exc:
                ok = False
                self.c.events.kubelet(
                    self.pod,
                    "FailedMount",
                    f'MountVolume.SetUp failed for volume "{name}" : {exc}',
                    "Warning",
                )
                continue
            self.volumes[name] = result
        return ok

    def _make_volume(self, vol: JSON, path: Path) -> tuple[str, bool]:
        if "hostPath" in vol:
            hp = vol["hostPath"]
            host = Path(hp["path"])
            kind = hp.get("type") or ""
            if kind in ("DirectoryOrCreate", ""):
                if not host.exists():
                    host.mkdir(parents=True, exist_ok=True)
            elif kind == "Directory" and not host.is_dir():
                raise _MountError(f"hostPath type check failed: {host} is not a directory")
            elif kind == "FileOrCreate" and not host.exists():
                host.parent.mkdir(parents=True, exist_ok=True)
                host.touch()
            elif kind == "File" and not host.is_file():
                raise _MountError(f"hostPath type check failed: {host} is not a file")
            return str(host), False
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            shared = self.c.state_dir / "pvc" / self.ns / claim
            shared.mkdir(parents=True, exist_ok=True)
            return str(shared), bool(vol["persistentVolumeClaim"].get("readOnly"))
        path.mkdir(parents=True, exist_ok=True)
        if "secret" in vol:
            src = vol["secret"]
            self._write_keyed(
                path,
                "secret",
                src.get("secretName", ""),
                src.get("items"),
                src.get("defaultMode", 420),
                bool(src.get("optional")),
            )
            return str(path), True
        if "configMap" in vol:
            src = vol["configMap"]
            self._write_keyed(
                path,
                "configmap",
                src.get("name", ""),
                src.get("items"),
                src.get("defaultMode", 420),
                bool(src.get("optional")),
            )
            return str(path), True
        if "downwardAPI" in vol:
            src = vol["downwardAPI"]
            self._write_downward(path, src.get("items") or [], src.get("defaultMode", 420))
            return str(path), True
        if "projected" in vol:
            src = vol["projected"]
            mode = src.get("defaultMode", 420)
            for source in src.get("sources") or []:
                if "serviceAccountToken" in source:
                    tok = source["serviceAccountToken"]
                    token = self.c.issue_pod_token(
                        self.pod, int(tok.get("expirationSeconds") or 3600), tok.get("audience")
                    )
                    _write(path / tok.get("path", "token"), token.encode(), mode)
                elif "secret" in source:
                    s = source["secret"]
                    self._write_keyed(
                        path, "secret", s.get("name", ""), s.get("items"), mode, bool(s.get("optional"))
                    )
                elif "configMap" in source:
                    s = source["configMap"]
                    self._write_keyed(
                        path, "configmap", s.get("name", ""), s.get("items"), mode, bool(s.get("optional"))
                    )
                elif "downwardAPI" in source:
                    self._write_downward(path, source["downwardAPI"].get("items") or [], mode)
            return str(path), True
        return str(path), False  # emptyDir and every other kind: a plain directory

    def _write_keyed(
        self, path: Path, kind: str, name: str, items: list[JSON] | None, mode: int, optional: bool
    ) -> None:
        resource = SECRETS.key if kind == "secret" else CONFIGMAPS.key
        obj = self.c.store.get(resource, self.ns, name)
        if obj is None:
            if optional:
                return
            raise _MountError(f'{kind} "{name}" not found')
        data: dict[str, bytes] = {}
        if kind == "secret":
            for key, value in (obj.get("data") or {}).items():
                data[key] = base64.b64decode(value)
        else:
            for key, value in (obj.get("data") or {}).items():
                data[key] = str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                data[key] = base64.b64decode(value)
        if items:
            for item in items:
                key = item.get("key", "")
                if key not in data:
                    if optional:
                        continue
                    raise _MountError(
                        f"configmap references non-existent config key: {key}"
                        if kind == "configmap"
                        else f"references non-existent secret key: {key}"
                    )
                _write(path / item.get("path", key), data[key], item.get("mode", mode))
        else:
            for key, value in data.items():
                _write(path / key, value, mode)

    def _write_downward(self, path: Path, items: list[JSON], mode: int) -> None:
        for item in items:
            ref = item.get("fieldRef") or {}
            value = self._field_value(ref.get("fieldPath", ""))
            _write(path / item.get("path", "value"), value.encode(), item.get("mode", mode))

    def _field_value(self, field_path: str) -> str:
        meta = self.pod["metadata"]
        spec = self.pod["spec"]
        match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", field_path)
        if match:
            return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
        if field_path in ("metadata.labels", "metadata.annotations"):
            values = meta.get(field_path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        simple = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": self.c.node.ip,
            "status.hostIPs": self.c.node.ip,
            "status.podIP": self.c.node.ip,
            "status.podIPs": self.c.node.ip,
        }
        return str(simple.get(field_path, ""))

    # ------------------------------------------------------------- status
    def _condition(
        self, type_: str, ok: bool, gen: int, reason: str | None = None, message: str | None = None
    ) -> JSON:
        status = "True" if ok else "False"
        previous = self.cond_state.get(type_)
        if previous is None or previous[0] != status:
            self.cond_state[type_] = (status, rfc3339())
        cond: JSON = {
            "type": type_,
            "observedGeneration": gen,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.cond_state[type_][1],
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _container_status(self, slot: Slot) -> JSON:
        st: JSON = {
            "name": slot.name,
            "state": deepcopy(slot.state),
            "lastState": deepcopy(slot.last_state),
            "ready": slot.ready,
            "restartCount": slot.restart_count,
            "image": slot.image,
            "imageID": slot.image_id,
        }
        if slot.container_id:
            st["containerID"] = slot.container_id
        st["started"] = slot.started
        if slot.ever_started:
            resources = deepcopy(slot.spec.get("resources") or {})
            if resources.get("requests"):
                st["allocatedResources"] = deepcopy(resources["requests"])
            st["resources"] = resources
        mounts = []
        for m in slot.spec.get("volumeMounts") or []:
            entry: JSON = {"name": m.get("name"), "mountPath": m.get("mountPath")}
            if m.get("readOnly"):
                entry["readOnly"] = True
                entry["recursiveReadOnly"] = "Disabled"
            mounts.append(entry)
        if mounts:
            st["volumeMounts"] = mounts
        return st

    def _status(self, pod: JSON) -> JSON:
        gen = int(pod["metadata"].get("generation") or 1)
        old = pod.get("status") or {}
        old_conditions = old.get("conditions") or []
        conditions: list[JSON] = [deepcopy(c) for c in old_conditions if c.get("type") == "DisruptionTarget"]
        conditions.append(
            self._condition("PodReadyToStartContainers", self.sandbox_ready and not self.sandbox_down, gen)
        )
        pending = [
            s.name
            for s in self.init_slots
            if not (s.kind == "sidecar" and s.ever_started)
            and not (s.kind == "init" and s.final and s.exit_code == 0)
        ]
        if pending and not self.init_done:
            conditions.append(
                self._condition(
                    "Initialized",
                    False,
                    gen,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(pending)}]",
                )
            )
        else:
            conditions.append(
                self._condition(
                    "Initialized", True, gen, "PodCompleted" if self.done and self.success else None
                )
            )
        if self.done and all(s.ever_started for s in self.main_slots):
            reason = "PodCompleted" if self.success else "PodFailed"
            conditions.append(self._condition("Ready", False, gen, reason))
            conditions.append(self._condition("ContainersReady", False, gen, reason))
        else:
            unready = [s.name for s in self.sidecars if not s.ready] + [
                s.name for s in self.main_slots if not s.ready
            ]
            message = f"containers with unready status: [{' '.join(unready)}]" if unready else None
            why = "ContainersNotReady" if unready else None
            conditions.append(self._condition("Ready", not unready, gen, why, message))
            conditions.append(self._condition("ContainersReady", not unready, gen, why, message))
        for cond in old_conditions:
            if cond.get("type") == "PodScheduled":
                sched = deepcopy(cond)
                sched["observedGeneration"] = gen
                conditions.append(
                    {
                        k: sched[k]
                        for k in (
                            "type",
                            "observedGeneration",
                            "status",
                            "lastProbeTime",
                            "lastTransitionTime",
                        )
                        if k in sched
                    }
                )
        status: JSON = {"observedGeneration": gen, "phase": self.phase, "conditions": conditions}
        if self.message:
            status["message"] = self.message
        if self.reason:
            status["reason"] = self.reason
        status["hostIP"] = self.c.node.ip
        status["hostIPs"] = [{"ip": self.c.node.ip}]
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        status["startTime"] = self.start_time
        if self.init_slots:
            status["initContainerStatuses"] = [self._container_status(s) for s in self.init_slots]
        status["containerStatuses"] = [self._container_status(s) for s in self.main_slots]
        status["qosClass"] = old.get("qosClass", "BestEffort")
        status["resources"] = {}
        return status

    def _post(self) -> None:
        def update(obj: JSON) -> bool:
            if obj["metadata"].get("uid") != self.uid:
                return False
            new = self._status(obj)
            if new == obj.get("status"):
                return False
            obj["status"] = new
            entries = [m for m in obj["metadata"].get("managedFields") or [] if m.get("manager") != "kubelet"]
            entries.append(managed_entry("kubelet", "Update", "v1", rfc3339(), {"f:status": {}}, "status"))
            obj["metadata"]["managedFields"] = entries
            return True

        result = self.c.store.mutate(PODS.key, self.ns, self.pod_name, update)
        if result is not None and result["metadata"].get("uid") == self.uid:
            with self.cv:
                self.pod = result

    # ------------------------------------------------------------- progress
    def _advance(self, now: float, changed: bool) -> None:
        if not self.init_done:
            for slot in self.init_slots:
                if slot.kind == "sidecar":
                    if slot.running:
                        continue
                    if slot.final:
                        continue
                    if self._try_start(slot, now):
                        changed = True
                        self._post()
                        continue
                    break
                if slot.final:
                    if slot.exit_code == 0:
                        continue
                    self.init_failed = True  # restartPolicy Never: the pod fails, main containers never run
                    for main in self.main_slots:
                        main.final = True
                    break
                if slot.running:
                    break
                if self._try_start(slot, now):
                    changed = True
                break
            else:
                self.init_done = True
                changed = True
                self._post()
            if not self.init_done and not self.init_failed:
                if changed:
                    self._post()
                return
        for slot in self.main_slots:
            if not slot.running and not slot.final and now >= slot.next_try and self._try_start(slot, now):
                changed = True
        for slot in self.sidecars:
            if (
                not slot.running
                and not slot.final
                and not self.stopping_sidecars
                and now >= slot.next_try
                and slot.ever_started
            ) and self._try_start(slot, now):
                changed = True
        if any(s.running for s in self.main_slots) and self.phase == "Pending":
            self.phase = "Running"
        if all(s.final for s in self.main_slots):
            running_sidecars = [s for s in self.sidecars if s.running]
            if running_sidecars and not self.stopping_sidecars:
                self.stopping_sidecars = True
                self.sidecar_deadline = now + self._cap(self.grace)
                for slot in reversed(running_sidecars):
                    self._send_term(slot)
            elif running_sidecars and now >= self.sidecar_deadline:
                for slot in running_sidecars:
                    slot.proc.kill()
            elif not running_sidecars:
                self._complete(now)
                return
        if changed:
            self._post()

    def _complete(self, now: float) -> None:
        for slot in self.sidecars:
            slot.final = True
        self.success = not self.init_failed and all(s.final and s.exit_code == 0 for s in self.main_slots)
        self.done = True
        if self.sidecars:
            self.sandbox_down = True
        self.phase_at = now + self.c.timings.terminal_phase_delay
        self._post()

    def _cap(self, seconds: float) -> float:
        cap = self.c.timings.grace_period_cap
        return min(seconds, cap) if cap is not None else seconds

    def _send_term(self, slot: Slot) -> None:
        if slot.stopping or slot.proc is None:
            return
        slot.stopping = True
        self.c.events.kubelet(
            self.pod, "Killing", f"Stopping container {slot.name}", "Normal", slot.field_path
        )
        slot.proc.signal(signal.SIGTERM)

    def _handle_exits(self) -> bool:
        """Turn finished processes into terminated states (and restarts); True if anything changed."""
        changed = False
        now = time.monotonic()
        for slot in [*self.init_slots, *self.main_slots]:
            with self.cv:
                result = slot.exit_result
                slot.exit_result = None
            if result is None:
                continue
            changed = True
            code, oom, start_error = result
            slot.running = False
            slot.started = False
            slot.exit_code = code
            slot.proc = None
            reason = (
                "StartError"
                if start_error
                else ("OOMKilled" if oom else ("Completed" if code == 0 else "Error"))
            )
            terminated: JSON = {"exitCode": code, "reason": reason}
            if start_error:
                terminated["message"] = start_error
            terminated.update(
                {
                    "startedAt": slot.started_at or rfc3339(),
                    "finishedAt": rfc3339(),
                    "containerID": slot.container_id,
                }
            )
            slot.state = {"terminated": terminated}
            slot.ready = slot.kind == "init" and code == 0
            if self.terminating or self.done or (self.stopping_sidecars and slot.kind == "sidecar"):
                slot.final = True
                continue
            restart = False
            if slot.kind == "sidecar":
                restart = True
            elif slot.kind == "init":
                restart = code != 0 and self.restart_policy != "Never"
            else:
                restart = self.restart_policy == "Always" or (
                    self.restart_policy == "OnFailure" and code != 0
                )
            if not restart:
                slot.final = True
                continue
            slot.crash_count += 1
            backoff = min(
                self.c.timings.crash_backoff * (2 ** (slot.crash_count - 1)), self.c.timings.crash_backoff_max
            )
            slot.last_state = {"terminated": terminated}
            slot.restart_count += 1
            slot.pulled = False
            slot.next_try = now + backoff
            slot.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(backoff * 1000)}ms restarting failed container={slot.name} "
                    f"pod={self.pod_name}_{self.ns}({self.uid})",
                }
            }
            self.c.events.kubelet(
                self.pod,
                "BackOff",
                f"Back-off restarting failed container {slot.name} in pod "
                f"{self.pod_name}_{self.ns}({self.uid})",
                "Warning",
                slot.field_path,
            )
        return changed

    # ------------------------------------------------------------- starting a container
    def _waiting(self, slot: Slot, reason: str, message: str | None = None) -> None:
        waiting: JSON = {"reason": reason}
        if message:
            waiting["message"] = message
        if slot.state != {"waiting": waiting}:
            slot.state = {"waiting": waiting}
            self._post()

    def _try_start(self, slot: Slot, now: float) -> bool:
        """Pull, configure and launch; False while the container must keep waiting (or failed to start)."""
        if now < slot.next_try:
            return False
        image = slot.image
        if not _IMAGE_RE.match(image):
            message = (
                f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": '
                "invalid reference format"
            )
            if slot.waiting_reason != "InvalidImageName":
                self.c.events.kubelet(self.pod, "InspectFailed", message, "Warning", slot.field_path)
                self.c.events.kubelet(
                    self.pod, "Failed", "Error: InvalidImageName", "Warning", slot.field_path
                )
            self._waiting(slot, "InvalidImageName", message)
            slot.next_try = now + self.c.timings.config_retry
            return False
        if not slot.pulled and not self._pull(slot, now):
            return False
        env, env_error = self._environment(slot)
        if env_error:
            self.c.events.kubelet(self.pod, "Failed", f"Error: {env_error}", "Warning", slot.field_path)
            self._waiting(slot, "CreateContainerConfigError", env_error)
            slot.next_try = now + self.c.timings.config_retry
            return False
        argv, workdir = self._command(slot, env)
        if not argv:
            message = (
                f'failed to generate container "{secrets.token_hex(32)}" spec: failed to generate spec: '
                "no command specified"
            )
            self.c.events.kubelet(self.pod, "Failed", f"Error: {message}", "Warning", slot.field_path)
            self._waiting(slot, "CreateContainerError", message)
            slot.next_try = now + self.c.timings.config_retry
            return False
        mounts = self._mounts(slot, env)
        slot.container_id = "containerd://" + secrets.token_hex(32)
        slot.image_id = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
        missing = self._missing_executable(argv[0], env, mounts)
        if missing:
            message = (
                "failed to create containerd task: failed to create shim task: OCI runtime create "
                "failed: runc create "
                f"failed: unable to start container process: error during container init: {missing}: unknown"
            )
            self.c.events.kubelet(self.pod, "Created", "Container created", "Normal", slot.field_path)
            self.c.events.kubelet(self.pod, "Failed", f"Error: {message}", "Warning", slot.field_path)
            slot.ever_started = True
            slot.started_at = ""
            with self.cv:
                slot.exit_result = (128, False, message)
            return False
        return self._launch(slot, argv, env, workdir, mounts)

    def _pull(self, slot: Slot, now: float) -> bool:
        image = slot.image
        rule = self.c.faults.pull_rule(image)
        waiting_reason = "PodInitializing" if slot.kind != "main" or self.init_slots else "ContainerCreating"
        if rule is not None and rule.error is not None:
            message = rule.error
            backoff = min(
                self.c.timings.image_pull_backoff * (2**slot.pull_attempts),
                self.c.timings.image_pull_backoff_max,
            )
            if slot.pull_phase in (None, "backoff"):
                self.c.events.kubelet(
                    self.pod, "Pulling", f'Pulling image "{image}"', "Normal", slot.field_path
                )
                self.c.events.kubelet(
                    self.pod,
                    "Failed",
                    f'Failed to pull image "{image}": {message}',
                    "Warning",
                    slot.field_path,
                )
                self.c.events.kubelet(self.pod, "Failed", "Error: ErrImagePull", "Warning", slot.field_path)
                slot.pull_phase = "err"
                slot.next_try = now + (
                    self.c.timings.image_pull_failure if slot.pull_attempts == 0 else backoff
                )
                self._waiting(slot, "ErrImagePull", message)
            else:
                self.c.events.kubelet(
                    self.pod, "BackOff", f'Back-off pulling image "{image}"', "Normal", slot.field_path
                )
                self.c.events.kubelet(
                    self.pod, "Failed", "Error: ImagePullBackOff", "Warning", slot.field_path
                )
                slot.pull_phase = "backoff"
                slot.pull_attempts += 1
                slot.next_try = now + backoff
                self._waiting(
                    slot, "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {message}'
                )
            return False
        policy = slot.spec.get("imagePullPolicy") or "IfNotPresent"
        if rule is not None and rule.delay:
            if slot.pull_phase != "pulling":
                self.c.events.kubelet(
                    self.pod, "Pulling", f'Pulling image "{image}"', "Normal", slot.field_path
                )
                slot.pull_phase = "pulling"
                slot.next_try = now + rule.delay
                self._waiting(slot, waiting_reason)
                return False
            took = f"{rule.delay:.3g}s"
            self.c.events.kubelet(
                self.pod,
                "Pulled",
                f'Successfully pulled image "{image}" in {took} ({took} including '
                "waiting). Image size: 4267512 bytes.",
                "Normal",
                slot.field_path,
            )
        elif policy == "Always":
            self.c.events.kubelet(self.pod, "Pulling", f'Pulling image "{image}"', "Normal", slot.field_path)
            self.c.events.kubelet(
                self.pod,
                "Pulled",
                f'Successfully pulled image "{image}" in 112ms (112ms including '
                "waiting). Image size: 4267512 bytes.",
                "Normal",
                slot.field_path,
            )
        else:
            self.c.events.kubelet(
                self.pod,
                "Pulled",
                f'Container image "{image}" already present on machine and can be accessed by the pod',
                "Normal",
                slot.field_path,
            )
        slot.pulled = True
        slot.pull_phase = None
        return True

    def _environment(self, slot: Slot) -> tuple[list[tuple[str, str]], str | None]:
        """The container's environment in kubelet order, or (.., error) for CreateContainerConfigError."""
        env: dict[str, str] = {}
        for source in slot.spec.get("envFrom") or []:
            prefix = source.get("prefix") or ""
            for kind, resource in (("secretRef", SECRETS.key), ("configMapRef", CONFIGMAPS.key)):
                ref = source.get(kind)
                if ref is None:
                    continue
                obj = self.c.store.get(resource, self.ns, ref.get("name", ""))
                label = "secret" if kind == "secretRef" else "configmap"
                if obj is None:
                    if ref.get("optional"):
                        continue
                    return [], f'{label} "{ref.get("name")}" not found'
                for key, value in (obj.get("data") or {}).items():
                    text = (
                        base64.b64decode(value).decode(errors="replace")
                        if kind == "secretRef"
                        else str(value)
                    )
                    if _ENV_NAME_RE.match(prefix + key):
                        env[prefix + key] = text
        service_env = {
            "KUBERNETES_SERVICE_HOST": self.c.node.ip,
            "KUBERNETES_SERVICE_PORT": str(self.c.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.c.port),
            "KUBERNETES_PORT": f"tcp://{self.c.node.ip}:{self.c.port}",
            f"KUBERNETES_PORT_{self.c.port}_TCP": f"tcp://{self.c.node.ip}:{self.c.port}",
            f"KUBERNETES_PORT_{self.c.port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{self.c.port}_TCP_PORT": str(self.c.port),
            f"KUBERNETES_PORT_{self.c.port}_TCP_ADDR": self.c.node.ip,
        }
        for item in slot.spec.get("env") or []:
            name = item.get("name", "")
            if "valueFrom" not in item:
                env[name] = expand(str(item.get("value", "")), {**service_env, **env})
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[name] = self._field_value(source["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in source:
                env[name] = self._resource_value(slot, source["resourceFieldRef"])
            else:
                kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
                ref = source[kind]
                resource = SECRETS.key if kind == "secretKeyRef" else CONFIGMAPS.key
                label = "secret" if kind == "secretKeyRef" else "configmap"
                obj = self.c.store.get(resource, self.ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    return [], f'{label} "{ref.get("name")}" not found'
                data = obj.get("data") or {}
                key = ref.get("key", "")
                if key not in data:
                    if ref.get("optional"):
                        continue
                    kind_name = "Secret" if kind == "secretKeyRef" else "ConfigMap"
                    return [], f"couldn't find key {key} in {kind_name} {self.ns}/{ref.get('name')}"
                env[name] = (
                    base64.b64decode(data[key]).decode(errors="replace")
                    if kind == "secretKeyRef"
                    else str(data[key])
                )
        ordered: list[tuple[str, str]] = [
            ("PATH", env.pop("PATH", DEFAULT_PATH)),
            ("HOSTNAME", self.pod["spec"].get("hostname") or self.pod_name),
        ]
        ordered += list(env.items())
        ordered += [(k, v) for k, v in service_env.items() if k not in env]
        if not any(k == "HOME" for k, _ in ordered):
            ordered.append(("HOME", "/root"))
        return ordered, None

    def _resource_value(self, slot: Slot, ref: JSON) -> str:
        resource = ref.get("resource", "")
        section, _, name = resource.partition(".")
        value = ((slot.spec.get("resources") or {}).get(section) or {}).get(name)
        if value is None:
            value = self.c.node.cpu if name == "cpu" else self.c.node.memory
        try:
            number = parse_quantity(value)
            divisor = parse_quantity(ref.get("divisor") or "1")
            result = number / divisor
            return str(int(result) if result == int(result) else int(result) + 1)
        except ValueError:
            return str(value)

    def _command(self, slot: Slot, env: list[tuple[str, str]]) -> tuple[list[str], str]:
        env_map = dict(env)
        config = self.c.image_config(slot.image)
        command = slot.spec.get("command")
        args = slot.spec.get("args")
        if command:
            argv = list(command) + list(args or [])
        elif args:
            argv = list(config.entrypoint) + list(args)
        else:
            argv = list(config.entrypoint) + list(config.cmd)
        argv = [expand(str(a), env_map) for a in argv]
        return argv, slot.spec.get("workingDir") or config.workdir or "/"

    def _mounts(self, slot: Slot, env: list[tuple[str, str]]) -> list[Mount]:
        env_map = dict(env)
        mounts: list[Mount] = []
        for m in slot.spec.get("volumeMounts") or []:
            volume = self.volumes.get(m.get("name", ""))
            if volume is None:
                continue
            source, forced_ro = volume
            sub = m.get("subPath") or expand(m.get("subPathExpr") or "", env_map)
            if sub:
                source = os.path.join(source, sub)
                if not os.path.exists(source):
                    os.makedirs(source, exist_ok=True)
            mounts.append(Mount(source, m["mountPath"], bool(m.get("readOnly")) or forced_ro))
        return mounts

    def _missing_executable(self, argv0: str, env: list[tuple[str, str]], mounts: list[Mount]) -> str | None:
        def host_path(path: str) -> str | None:
            best: Mount | None = None
            for m in mounts:
                dest = m.dest.rstrip("/")
                if (path == dest or path.startswith(dest + "/")) and (
                    best is None or len(dest) > len(best.dest)
                ):
                    best = m
            if best is not None:
                return best.source + path[len(best.dest.rstrip("/")) :]
            if path.startswith("/tmp/") or path == "/tmp":
                # a tmpfs in the container, except what the sandbox keeps (the checkout, the venv)
                kept = any(path == k or path.startswith(k + "/") for k in kept_under_tmp())
                return path if kept else None
            return path

        def runnable(path: str) -> bool:
            host = host_path(path)
            return host is not None and os.path.isfile(host) and os.access(host, os.X_OK)

        if "/" in argv0:
            target = argv0 if argv0.startswith("/") else os.path.join("/", argv0)
            return None if runnable(target) else f'exec: "{argv0}": stat {argv0}: no such file or directory'
        path_value = dict(env).get("PATH", DEFAULT_PATH)
        for directory in path_value.split(":"):
            if directory and runnable(os.path.join(directory, argv0)):
                return None
        return f'exec: "{argv0}": executable file not found in $PATH'

    def _files(self) -> dict[str, str]:
        etc = self.pod_dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        spec = self.pod["spec"]
        hostname = spec.get("hostname") or self.pod_name
        hosts = (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
            "ip6-loopback\n"
            "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
            f"{self.c.node.ip}\t{hostname}\n"
        )
        aliases = spec.get("hostAliases") or []
        if aliases:
            hosts += "\n# Entries added by HostAliases.\n"
            for alias in aliases:
                hosts += f"{alias.get('ip')}\t" + "\t".join(alias.get("hostnames") or []) + "\n"
        (etc / "hosts").write_text(hosts)
        (etc / "resolv.conf").write_text(self._resolv_conf())
        (etc / "hostname").write_text(hostname + "\n")
        return {
            "/etc/hosts": str(etc / "hosts"),
            "/etc/resolv.conf": str(etc / "resolv.conf"),
            "/etc/hostname": str(etc / "hostname"),
        }

    def _resolv_conf(self) -> str:
        spec = self.pod["spec"]
        nameservers: list[str] = []
        searches: list[str] = []
        options: dict[str, str | None] = {}
        if spec.get("dnsPolicy") != "None":
            try:
                host = Path("/etc/resolv.conf").read_text().splitlines()
            except OSError:
                host = []
            for line in host:
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if parts[0] == "nameserver" and len(parts) > 1:
                    nameservers.append(parts[1])
                elif parts[0] in ("search", "domain"):
                    searches.extend(parts[1:])
                elif parts[0] == "options":
                    for opt in parts[1:]:
                        key, _, value = opt.partition(":")
                        options[key] = value or None
        config = spec.get("dnsConfig") or {}
        for ns in config.get("nameservers") or []:
            if ns not in nameservers:
                nameservers.append(ns)
        for search in config.get("searches") or []:
            if search not in searches:
                searches.append(search)
        for opt in config.get("options") or []:
            options[opt.get("name", "")] = opt.get("value")
        text = "".join(f"nameserver {ns}\n" for ns in nameservers[:3])
        if searches:
            text += "search " + " ".join(searches) + "\n"
        if options:
            text += "options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()) + "\n"
        return text

    def _memory_limit(self, slot: Slot) -> int | None:
        limit = ((slot.spec.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None:
            return None
        try:
            return int(parse_quantity(limit))
        except ValueError:
            return None

    def _launch(
        self, slot: Slot, argv: list[str], env: list[tuple[str, str]], workdir: str, mounts: list[Mount]
    ) -> bool:
        instance = self.pod_dir / "containers" / f"{slot.name}-{slot.restart_count}"
        instance.mkdir(parents=True, exist_ok=True)
        spec = LaunchSpec(
            argv=argv,
            env=env,
            workdir=workdir,
            mounts=mounts,
            hostname=self.pod["spec"].get("hostname") or self.pod_name,
            state_dir=instance,
            memory_limit=self._memory_limit(slot),
            extra_files=self._files(),
        )
        log = self.c.logs.new_instance(self.uid, slot.name)
        log.on_line = lambda line, name=slot.name: self.c.faults.observe_line(self, name, line)
        out_r, out_w = os.pipe()
        mark_r, mark_w = os.pipe()
        self.c.events.kubelet(self.pod, "Created", "Container created", "Normal", slot.field_path)
        try:
            assert self.c.sandbox is not None
            proc = self.c.sandbox.launch(spec, out_w, mark_w)
        finally:
            os.close(out_w)
            os.close(mark_w)
        slot.proc = proc
        slot.log = log
        reader = threading.Thread(target=_pump, args=(out_r, log), name=f"log-{slot.name}", daemon=True)
        reader.start()
        started = _await_marker(mark_r, 30)
        slot.ever_started = True
        if not started:
            proc.kill()
            code = proc.wait()
            reader.join(2)
            proc.release()
            detail = log.text().strip() or f"container runtime exited with {code}"
            log.lines.clear()
            message = f"failed to create containerd task: failed to create shim task: {detail}: unknown"
            self.c.events.kubelet(self.pod, "Failed", f"Error: {message}", "Warning", slot.field_path)
            with self.cv:
                slot.exit_result = (128, False, message)
            return False
        slot.started_at = rfc3339()
        slot.running = True
        slot.started = True
        slot.ready = slot.kind != "init"
        slot.stopping = False
        slot.state = {"running": {"startedAt": slot.started_at}}
        self.pod_ip = self.c.node.ip
        self.c.events.kubelet(self.pod, "Started", "Container started", "Normal", slot.field_path)
        watcher = threading.Thread(
            target=self._watch_exit, args=(slot, proc, reader, log), name=f"exit-{slot.name}", daemon=True
        )
        watcher.start()
        slot.threads = [reader, watcher]
        return True

    def _watch_exit(self, slot: Slot, proc: Any, reader: threading.Thread, log: ContainerLog) -> None:
        code = proc.wait()
        reader.join(2)
        log.close()
        oom = proc.oom_killed() or slot.force_oom
        proc.release()
        if oom:
            code = 137
        with self.cv:
            slot.exit_result = (code, oom, "")
            self.cv.notify_all()

    # ------------------------------------------------------------- termination
    def _begin_termination(self, grace: float, reason: str) -> None:
        self.terminating = True
        self.term_reason = reason
        self.term_deadline = time.monotonic() + self._cap(grace)
        for slot in [*self.main_slots, *[s for s in self.init_slots if s.kind == "init"]]:
            if slot.running:
                self._send_term(slot)
        self._post()
        never_started = [s for s in self.main_slots if not s.ever_started]
        if never_started and reason == "delete":
            # what the recording shows for a pod stuck pulling: back to ContainerCreating, sandbox gone
            for slot in never_started:
                slot.state = {"waiting": {"reason": "ContainerCreating"}}
                slot.next_try = float("inf")
            self._post()
            self.sandbox_down = True
            self._post()

    def _progress_termination(self, now: float) -> bool:
        regular_running = [
            s for s in [*self.main_slots, *self.init_slots] if s.running and s.kind != "sidecar"
        ]
        sidecars_running = [s for s in self.sidecars if s.running]
        if not regular_running:
            for slot in reversed(sidecars_running):
                self._send_term(slot)
        if now >= self.term_deadline:
            for slot in regular_running + sidecars_running:
                if slot.proc is not None:
                    slot.proc.kill()
        return (
            not regular_running
            and not sidecars_running
            and not any(s.exit_result is not None for s in [*self.init_slots, *self.main_slots])
        )

    def _finish_termination(self) -> None:
        for slot in [*self.init_slots, *self.main_slots]:
            if not slot.ever_started and self.term_reason == "delete" and slot.kind == "main":
                slot.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": NOT_LOCATED,
                        "startedAt": None,
                        "finishedAt": None,
                    }
                }
                slot.state["terminated"] = {
                    k: v for k, v in slot.state["terminated"].items() if v is not None
                }
            slot.final = True
            slot.ready = slot.ready and slot.kind == "init"
        self.success = all(s.exit_code == 0 for s in self.main_slots) and self.term_reason != "deadline"
        self.done = True
        self.sandbox_down = True
        self.terminal = True
        self.phase = "Succeeded" if self.success else "Failed"
        self._post()

    def _deadline_exceeded(self) -> None:
        self.reason = "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        self.phase = "Failed"
        self.c.events.kubelet(self.pod, "DeadlineExceeded", self.message, "Warning")
        self._begin_termination(self.grace, "deadline")

    def _cleanup(self) -> None:
        slots = [*self.init_slots, *self.main_slots]
        for slot in slots:
            if slot.proc is not None:
                slot.proc.kill()
        for slot in slots:
            for thread in slot.threads:
                thread.join(5)
        shutil.rmtree(self.pod_dir, ignore_errors=True)


class _MountError(Exception):
    pass


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def _pump(fd: int, log: ContainerLog) -> None:
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            log.feed(chunk)
    finally:
        os.close(fd)


def _await_marker(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return False
            chunk = os.read(fd, 64)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"started")
    finally:
        os.close(fd)


class Kubelet:
    """Watches pods bound to the node and keeps one PodWorker per pod."""

    def __init__(self, cluster: KubeDouble) -> None:
        self.c = cluster
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-double-kubelet", daemon=True)

    def start(self) -> None:
        self._cursor = self.c.store.cursor(None)
        for pod in self.c.store.list(PODS.key):
            self._observe(pod, "ADDED")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                changes = self._cursor.next(0.5)
            except Closed:
                return
            except TooOld:
                self._cursor = self.c.store.cursor(None)
                for pod in self.c.store.list(PODS.key):
                    self._observe(pod, "MODIFIED")
                continue
            for change in changes:
                if change.resource == PODS.key:
                    self._observe(change.obj, change.type)

    def _observe(self, pod: JSON, type_: str) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if type_ == "DELETED":
                if worker is not None:
                    worker.force_stop()
                return
            if pod["spec"].get("nodeName") != self.c.node.name or self._stop.is_set():
                return
            if worker is None:
                if pod["status"].get("phase") in ("Succeeded", "Failed"):
                    return
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.start()
        worker.observe(pod)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        with self._lock:
            for worker in self._workers.values():
                if worker.ns == namespace and worker.pod_name == name:
                    return worker
        return None

    def worker_by_uid(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def running_containers(self) -> list[tuple[str, str, str]]:
        with self._lock:
            workers = list(self._workers.values())
        out: list[tuple[str, str, str]] = []
        for worker in workers:
            with worker.cv:
                out += [
                    (worker.ns, worker.pod_name, s.name)
                    for s in [*worker.init_slots, *worker.main_slots]
                    if s.running
                ]
        return out

    def stop(self) -> None:
        self._stop.set()
        self.c.store.touch()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.force_stop()
        for worker in workers:
            worker.finished.wait(10)
        self._thread.join(5)

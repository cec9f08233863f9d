"""KubeDouble: a Kubernetes v1.36 API server with one node whose kubelet runs pods as local processes."""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from ._util import JSON, deepcopy, dumps, new_uid, rfc3339
from .api import ApiServer, Request, RequestRecord, Response
from .auth import Authenticator
from .config import ImageConfig, NodeConfig, Timings
from .controllers import Controllers
from .events import EventRecorder
from .faults import Faults
from .kubelet import Kubelet
from .logs import LogStore
from .rbac import RBAC_GROUP, Authorizer, builtin_objects
from .resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CONFIGMAPS,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
)
from .sandbox import Sandbox, memory_cgroup_root, probe
from .server import HttpsServer
from .store import Store

ADMIN_USER = "kubernetes-admin"


class KubeDouble:
    """Start with `with KubeDouble() as api:`; connect to `api.host` trusting `api.ca_file`.

    Identities: `api.admin_token` (system:masters), `api.admin_cert` (client certificate, CN
    kubernetes-admin, O system:masters), `add_token(...)` for static tokens and
    `add_service_account(...)` for a ServiceAccount with a Role and a real TokenRequest token.
    """

    def __init__(
        self,
        *,
        node: NodeConfig | None = None,
        timings: Timings | None = None,
        sandbox: str = "auto",
        state_dir: Path | str | None = None,
        default_image: ImageConfig | None = None,
    ) -> None:
        self.node = node or NodeConfig()
        self.timings = timings or Timings()
        self._sandbox_pref = sandbox
        self._own_state = state_dir is None
        self.state_dir = (
            Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="kube-double-"))
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._images: list[tuple[str, ImageConfig]] = []
        self._default_image = default_image or ImageConfig()
        self.store = Store()
        self.authenticator = Authenticator(self._sa_exists, self._pod_exists)
        self.authorizer = Authorizer(self.store)
        self.events = EventRecorder(self.store, self.node.name)
        self.logs = LogStore()
        self.faults = Faults(self)
        self.api = ApiServer(self)
        self.kubelet = Kubelet(self)
        self.controllers = Controllers(self)
        self._requests: list[RequestRecord] = []
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._server: HttpsServer | None = None
        self.sandbox: Sandbox | None = None
        self.port = 0
        self.admin_token = "admin-" + new_uid()
        self.ca_file = ""
        self.admin_cert: tuple[str, str] = ("", "")
        self.sandbox_mode = ""
        self.ca_pem = ""
        self._cgroup_root: Path | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KubeDouble:
        mode = probe(self._sandbox_pref, self.state_dir)
        self.sandbox_mode = mode
        self._cgroup_root = memory_cgroup_root()
        self.sandbox = Sandbox(mode, self._cgroup_root)
        ca = trustme.CA(organization_name="kube-double")
        cert = ca.issue_cert(
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
        tls_dir = self.state_dir / "tls"
        tls_dir.mkdir(exist_ok=True)
        ca.cert_pem.write_to_path(str(tls_dir / "ca.crt"))
        self.ca_file = str(tls_dir / "ca.crt")
        self.ca_pem = ca.cert_pem.bytes().decode()
        # client certificates come from their own CA: a server trusting its serving CA would send it along
        # (OpenSSL completes the chain from the trust store), and clients would see a different error
        client_ca = trustme.CA(organization_name="kube-double-clients")
        admin = client_ca.issue_cert(common_name=ADMIN_USER, organization_name="system:masters")
        admin.cert_chain_pems[0].write_to_path(str(tls_dir / "admin.crt"))
        admin.private_key_pem.write_to_path(str(tls_dir / "admin.key"))
        self.admin_cert = (str(tls_dir / "admin.crt"), str(tls_dir / "admin.key"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # serve only the leaf certificate like kube-apiserver (clients report "unable to get local issuer")
        cert.cert_chain_pems[0].write_to_path(str(tls_dir / "server.crt"))
        cert.private_key_pem.write_to_path(str(tls_dir / "server.key"))
        context.load_cert_chain(str(tls_dir / "server.crt"), str(tls_dir / "server.key"))
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["http/1.1"])
        self.authenticator.add_token(self.admin_token, ADMIN_USER, ["system:masters"])
        self._bootstrap()
        self._server = HttpsServer(context, self._handle)
        self.port = self._server.port
        self._server.start()
        self.controllers.start()
        self.kubelet.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving, kill every container process, remove all state."""
        if not self._started:
            return
        self._started = False
        if self._server is not None:
            self._server.stop()
        self.kubelet.stop()
        self.controllers.stop()
        self.store.close()
        if self._cgroup_root is not None:
            for child in self._cgroup_root.glob("*"):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                self._cgroup_root.rmdir()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> KubeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def memory_limits_enforced(self) -> bool:
        """True when container memory limits are real (cgroup v1 memory controller writable)."""
        return self._cgroup_root is not None

    @property
    def host(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _handle(self, req: Request) -> Response:
        return self.api.handle(req)

    # ------------------------------------------------------------------ bootstrap
    def _bootstrap(self) -> None:
        now = rfc3339()
        for key, obj in builtin_objects():
            obj["metadata"].update({"uid": new_uid(), "creationTimestamp": now})
            self.store.create(key, obj)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_namespace(name, {})
        self.store.create(NODES.key, self._node_object())

    def _node_object(self) -> JSON:
        now = rfc3339()
        capacity = {
            "cpu": self.node.cpu,
            "ephemeral-storage": "100Gi",
            "memory": self.node.memory,
            "pods": self.node.pods,
        }
        return {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": self.node.name,
                "uid": new_uid(),
                "creationTimestamp": now,
                "labels": self.node.all_labels(),
                "annotations": {},
            },
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                        "reason": r,
                        "message": m,
                    }
                    for t, s, r, m in [
                        (
                            "MemoryPressure",
                            "False",
                            "KubeletHasSufficientMemory",
                            "kubelet has sufficient memory available",
                        ),
                        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                        (
                            "PIDPressure",
                            "False",
                            "KubeletHasSufficientPID",
                            "kubelet has sufficient PID available",
                        ),
                        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                    ]
                ],
                "addresses": [
                    {"type": "InternalIP", "address": self.node.ip},
                    {"type": "Hostname", "address": self.node.name},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.36.2",
                    "containerRuntimeVersion": "containerd://1.6.20",
                    "kernelVersion": "",
                    "osImage": "kube-double",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kubeProxyVersion": "",
                },
            },
        }

    def _create_namespace(self, name: str, labels: dict[str, str]) -> JSON | None:
        obj = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": new_uid(),
                "creationTimestamp": rfc3339(),
                "labels": {"kubernetes.io/metadata.name": name, **labels},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        created = self.store.create(NAMESPACES.key, obj)
        if created is not None:
            self.populate_namespace(name)
        return created

    def populate_namespace(self, name: str) -> None:
        """What controllers add to a new namespace: the `default` ServiceAccount and kube-root-ca.crt."""
        now = rfc3339()
        self.store.create(
            SERVICEACCOUNTS.key,
            {
                "kind": "ServiceAccount",
                "apiVersion": "v1",
                "metadata": {
                    "name": "default",
                    "namespace": name,
                    "uid": new_uid(),
                    "creationTimestamp": now,
                },
            },
        )
        self.store.create(
            CONFIGMAPS.key,
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": name,
                    "uid": new_uid(),
                    "creationTimestamp": now,
                    "annotations": {
                        "kubernetes.io/description": "Contains a CA bundle that can be used to verify "
                        "the kube-apiserver when using internal endpoints such as the internal service "
                        "IP or kubernetes.default.svc. No other usage is guaranteed across distributions "
                        "of Kubernetes clusters."
                    },
                },
                "data": {"ca.crt": self.ca_pem},
            },
        )

    # ------------------------------------------------------------------ hooks used by the parts
    def record_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def image_config(self, image: str) -> ImageConfig:
        for pattern, config in self._images:
            if fnmatch.fnmatchcase(image, pattern):
                return config
        return self._default_image

    def _sa_exists(self, namespace: str, name: str, uid: str) -> bool:
        sa = self.store.peek(SERVICEACCOUNTS.key, namespace, name)
        return sa is not None and sa["metadata"].get("uid") == uid

    def _pod_exists(self, namespace: str, name: str, uid: str) -> bool:
        pod = self.store.peek(PODS.key, namespace, name)
        return pod is not None and pod["metadata"].get("uid") == uid

    def issue_pod_token(self, pod: JSON, expiration: int, audience: str | None) -> str:
        meta = pod["metadata"]
        sa_name = pod["spec"].get("serviceAccountName") or "default"
        sa = self.store.peek(SERVICEACCOUNTS.key, meta["namespace"], sa_name)
        sa_uid = sa["metadata"]["uid"] if sa is not None else ""
        token, _ = self.authenticator.issue_sa_token(
            meta["namespace"],
            sa_name,
            sa_uid,
            max(expiration, 600),
            [audience] if audience else [],
            (meta["name"], meta["uid"]),
        )
        return token

    def delete_pod_gracefully(self, namespace: str, name: str, grace: int | None) -> JSON | None:
        """The API server's pod deletion: immediate when unscheduled, terminal or grace 0; else graceful."""
        with self.store.lock:
            pod = self.store.get(PODS.key, namespace, name)
            if pod is None:
                return None
            meta = pod["metadata"]
            if grace is None:
                grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
            immediate = (
                not pod["spec"].get("nodeName")
                or pod["status"].get("phase") in ("Succeeded", "Failed")
                or grace == 0
            )
            if meta.get("deletionTimestamp"):
                current = meta.get("deletionGracePeriodSeconds") or 0
                if not immediate and grace >= current:
                    return pod
            now_s = time.time()
            stamp = rfc3339(int((now_s + (0 if immediate else grace)) * 1e9))
            generation = int(meta.get("generation") or 1)

            def mark(obj: JSON) -> None:
                obj["metadata"]["deletionTimestamp"] = stamp
                obj["metadata"]["deletionGracePeriodSeconds"] = 0 if immediate else grace
                obj["metadata"]["generation"] = generation + (0 if meta.get("deletionTimestamp") else 1)

            updated = self.store.mutate(PODS.key, namespace, name, mark)
            if immediate:
                return self.store.remove(PODS.key, namespace, name)
            return updated

    def finalize_pod_deletion(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's last word on a terminated pod: grace 0, then the object is gone."""
        with self.store.lock:
            pod = self.store.peek(PODS.key, namespace, name)
            if pod is None or pod["metadata"].get("uid") != uid:
                return

            def zero(obj: JSON) -> None:
                obj["metadata"]["deletionGracePeriodSeconds"] = 0

            self.store.mutate(PODS.key, namespace, name, zero)
            self.store.remove(PODS.key, namespace, name)

    def evict_pod(self, namespace: str, name: str, grace: int | None) -> None:
        """Eviction API: DisruptionTarget condition first, then a graceful delete."""
        with self.store.lock:
            pod = self.store.peek(PODS.key, namespace, name)
            if pod is None:
                from .errors import not_found

                raise not_found("pods", name)
            terminal = pod["status"].get("phase") in ("Succeeded", "Failed")
            if not terminal:
                now = rfc3339()

                def disrupt(obj: JSON) -> None:
                    conditions = [
                        c
                        for c in obj["status"].get("conditions") or []
                        if c.get("type") != "DisruptionTarget"
                    ]
                    conditions.append(
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "lastProbeTime": None,
                            "lastTransitionTime": now,
                            "reason": "EvictionByEvictionAPI",
                            "message": "Eviction API: evicting",
                        }
                    )
                    obj["status"]["conditions"] = conditions

                self.store.mutate(PODS.key, namespace, name, disrupt)
        self.delete_pod_gracefully(namespace, name, grace)

    # ------------------------------------------------------------------ test helpers: identities
    def add_token(self, token: str, username: str, groups: list[str] | tuple[str, ...] = ()) -> None:
        """A static bearer token for `username` (ServiceAccount names get the SA groups too)."""
        self.authenticator.add_token(token, username, groups)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> JSON:
        created = self._create_namespace(name, labels or {})
        if created is None:
            existing = self.store.get(NAMESPACES.key, "", name)
            assert existing is not None
            return existing
        return created

    def add_service_account(
        self,
        namespace: str,
        name: str,
        *,
        rules: list[JSON] | None = None,
        cluster_rules: list[JSON] | None = None,
        expiration: int = 7200,
    ) -> str:
        """Create the namespace (if needed), a ServiceAccount, optionally a Role/RoleBinding (and a
        ClusterRole/ClusterRoleBinding) named after it; returns a TokenRequest token for it."""
        self.create_namespace(namespace)
        now = rfc3339()
        self.store.create(
            SERVICEACCOUNTS.key,
            {
                "kind": "ServiceAccount",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": new_uid(),
                    "creationTimestamp": now,
                },
            },
        )
        subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
        if rules is not None:
            self.store.create(
                ROLES.key,
                {
                    "kind": "Role",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "uid": new_uid(),
                        "creationTimestamp": now,
                    },
                    "rules": rules,
                },
            )
            self.store.create(
                ROLEBINDINGS.key,
                {
                    "kind": "RoleBinding",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "uid": new_uid(),
                        "creationTimestamp": now,
                    },
                    "subjects": subject,
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
                },
            )
        if cluster_rules is not None:
            cluster_name = f"{namespace}:{name}"
            self.store.create(
                CLUSTERROLES.key,
                {
                    "kind": "ClusterRole",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {"name": cluster_name, "uid": new_uid(), "creationTimestamp": now},
                    "rules": cluster_rules,
                },
            )
            self.store.create(
                CLUSTERROLEBINDINGS.key,
                {
                    "kind": "ClusterRoleBinding",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {"name": cluster_name, "uid": new_uid(), "creationTimestamp": now},
                    "subjects": subject,
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_name},
                },
            )
        return self.issue_token(namespace, name, expiration)

    def issue_token(self, namespace: str, name: str, expiration: int = 3600) -> str:
        """A TokenRequest token for an existing ServiceAccount."""
        sa = self.store.peek(SERVICEACCOUNTS.key, namespace, name)
        if sa is None:
            raise KeyError(f"serviceaccount {namespace}/{name} does not exist")
        token, _ = self.authenticator.issue_sa_token(namespace, name, sa["metadata"]["uid"], expiration, [])
        return token

    def set_image(self, pattern: str, config: ImageConfig) -> None:
        """What matching images would contribute (ENTRYPOINT/CMD/WORKDIR) when the pod does not say."""
        self._images.insert(0, (pattern, config))

    def set_node_labels(self, labels: dict[str, str]) -> None:
        """Change the node's labels (pending pods are scheduled again)."""
        self.node.labels.update(labels)

        def relabel(node: JSON) -> None:
            node["metadata"]["labels"] = self.node.all_labels()

        self.store.mutate(NODES.key, "", self.node.name, relabel)

    def kubeconfig(self, path: Path | str, token: str | None = None, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (admin token unless `token` is given)."""
        target = Path(path)
        ca = base64.b64encode(Path(self.ca_file).read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kube-double",
            "clusters": [
                {"name": "kube-double", "cluster": {"server": self.host, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "kube-double", "user": {"token": token or self.admin_token}}],
            "contexts": [
                {
                    "name": "kube-double",
                    "context": {"cluster": "kube-double", "user": "kube-double", "namespace": namespace},
                }
            ],
        }
        target.write_bytes(dumps(config))
        return target

    # ------------------------------------------------------------------ test helpers: state
    def objects(self, resource: str, namespace: str | None = None) -> list[JSON]:
        """Stored objects of a resource key (`pods`, `secrets`, `roles.rbac.authorization.k8s.io`, ...)."""
        return self.store.list(resource, namespace)

    def pods(self, namespace: str | None = None) -> list[JSON]:
        return self.store.list(PODS.key, namespace)

    def pod(self, namespace: str, name: str) -> JSON | None:
        return self.store.get(PODS.key, namespace, name)

    def secrets(self, namespace: str | None = None) -> list[JSON]:
        return self.store.list(SECRETS.key, namespace)

    def events_for(self, namespace: str, name: str | None = None) -> list[JSON]:
        items = self.store.list(EVENTS.key, namespace)
        return [e for e in items if name is None or e["involvedObject"].get("name") == name]

    def container_log(self, namespace: str, pod: str, container: str, *, uid: str | None = None) -> str:
        """Output of the container's latest run (also after the pod was deleted, if `uid` is given)."""
        if uid is None:
            obj = self.pod(namespace, pod)
            if obj is None:
                raise KeyError(f"pod {namespace}/{pod} not found (pass uid= for deleted pods)")
            uid = obj["metadata"]["uid"]
        log = self.logs.current(uid, container)
        return log.text() if log is not None else ""

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Internal errors of the double (should stay empty; tests can assert it)."""
        with self._lock:
            return list(self._errors)

    def running_containers(self) -> list[tuple[str, str, str]]:
        return self.kubelet.running_containers()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Wait until `predicate()` holds, re-checked on every change of the store; TimeoutError otherwise."""
        if not self.store.wait_until(predicate, timeout):
            raise TimeoutError(f"{what} not reached within {timeout}s")

    def wait_for_pod(
        self, namespace: str, name: str, predicate: Callable[[JSON], bool], timeout: float = 10.0
    ) -> JSON:
        found: dict[str, Any] = {}

        def check() -> bool:
            pod = self.store.peek(PODS.key, namespace, name)
            if pod is not None and predicate(pod):
                found["pod"] = deepcopy(pod)
                return True
            return False

        self.wait_for(check, timeout, f"pod {namespace}/{name} condition")
        return dict(found["pod"])

    def wait_for_pod_gone(self, namespace: str, name: str, timeout: float = 10.0) -> None:
        self.wait_for(
            lambda: self.store.peek(PODS.key, namespace, name) is None,
            timeout,
            f"deletion of {namespace}/{name}",
        )

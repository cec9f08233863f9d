"""The Kubernetes calls kuberunner makes, on ``kubernetes_asyncio``, with raw-JSON dicts.

Objects go in and come out as plain dicts (the API's JSON), which keeps the
pod builder a pure function over dicts and lets tests compare against the
recorded answers. Every method is tagged with the RBAC it needs
(:mod:`kuberunner.kube.rbac`); errors are translated once, in :meth:`_call`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from kuberunner.kube.errors import KubeError, KubeTLSError, KubeUnreachable, api_error
from kuberunner.kube.rbac import requires

__all__ = ["KubeClient", "WatchEvent"]

Obj = dict[str, Any]
WatchEvent = tuple[str, Obj]  # ("ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", object)

_AUTH = ["BearerToken"]
_JSON = {"Accept": "application/json", "Content-Type": "application/json"}


class KubeClient:
    """One namespace's worth of calls. Create with :func:`kuberunner.kube.connection.connect`."""

    def __init__(self, api: ApiClient, namespace: str, *, source: str = "") -> None:
        self._api = api
        self.namespace = namespace
        self.source = source  # where the connection settings came from, for messages

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = 60.0,
    ) -> Obj:
        headers = dict(_JSON)
        headers["Content-Type"] = content_type
        response = await self._raw(
            operation, method, path, query=query, body=body, headers=headers, timeout=timeout
        )
        try:
            data = await response.read()
        finally:
            response.release()
        if not data:
            return {}
        try:
            parsed = json.loads(data)
        except ValueError:
            return {"text": data.decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    async def _raw(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = 60.0,
    ) -> aiohttp.ClientResponse:
        """Send a request; any non-2xx answer raises the matching KubeAPIError."""
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=dict(headers or _JSON),
                body=body,
                auth_settings=_AUTH,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:  # raised before sending (bad arguments)
            raise api_error(
                exc.status or 0, exc.body, operation=operation, reason_phrase=str(exc.reason)
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise _tls_error(self.host, exc.certificate_error) from None
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise _tls_error(self.host, cause) from None
            raise KubeUnreachable(f"{operation}: cannot connect to {self.host}: {cause or exc}") from None
        except aiohttp.ClientSSLError as exc:
            raise KubeTLSError(f"{operation}: TLS handshake with {self.host} failed: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeUnreachable(f"{operation}: {self.host}: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status <= 299:
            try:
                data = await response.read()
            finally:
                response.release()
            raise api_error(response.status, data, operation=operation, reason_phrase=response.reason or "")
        return response

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    # ------------------------------------------------------------------ discovery

    @requires(None, why="server version, open to every client")
    async def version(self) -> Obj:
        return await self._call("get version", "GET", "/version")

    @requires(None, why="who the API sees us as (allowed to every authenticated user)")
    async def whoami(self) -> Obj:
        """SelfSubjectReview: the username and groups the API server authenticated."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        return await self._call(
            "who am I", "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body
        )

    @requires(None, why="checking our own permissions (allowed to every authenticated user)")
    async def access_review(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        subresource: str = "",
        namespace: str | None = None,
        name: str = "",
    ) -> Obj:
        """SelfSubjectAccessReview: ``status.allowed`` and ``status.reason``."""
        attrs: Obj = {"namespace": self._ns(namespace), "verb": verb, "group": group, "resource": resource}
        if subresource:
            attrs["subresource"] = subresource
        if name:
            attrs["name"] = name
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        return await self._call(
            "check access", "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body
        )

    # ------------------------------------------------------------------ secrets

    @requires("secrets", "create", why="each job's scripts, file variables and registry credentials")
    async def create_secret(self, secret: Obj, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(
            f"create secret in namespace {ns!r}",
            "POST",
            f"/api/v1/namespaces/{ns}/secrets",
            query=[("fieldValidation", "Strict")],
            body=secret,
        )

    @requires("secrets", "delete", why="removing a job's secret when the job ends")
    async def delete_secret(self, name: str, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(
            f"delete secret {name!r}", "DELETE", f"/api/v1/namespaces/{ns}/secrets/{name}"
        )

    @requires(
        "secrets",
        "list",
        optional=True,
        why="finding the secrets of a job whose pod was never created (a runner killed in between)",
    )
    async def list_secrets(self, *, label_selector: str = "", namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        query = [("labelSelector", label_selector)] if label_selector else []
        return await self._call(
            f"list secrets in namespace {ns!r}", "GET", f"/api/v1/namespaces/{ns}/secrets", query=query
        )

    @requires("secrets", "get", why="finding a job's secret again after a runner restart")
    async def get_secret(self, name: str, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(f"get secret {name!r}", "GET", f"/api/v1/namespaces/{ns}/secrets/{name}")

    # ------------------------------------------------------------------ pods

    @requires("pods", "create", why="each job runs as a pod")
    async def create_pod(self, pod: Obj, *, namespace: str | None = None, dry_run: bool = False) -> Obj:
        ns = self._ns(namespace)
        query: list[tuple[str, Any]] = [("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        return await self._call(
            f"create pod in namespace {ns!r}", "POST", f"/api/v1/namespaces/{ns}/pods", query=query, body=pod
        )

    @requires("pods", "get", why="reading a job pod's state")
    async def get_pod(self, name: str, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(f"get pod {name!r}", "GET", f"/api/v1/namespaces/{ns}/pods/{name}")

    @requires("pods", "list", why="finding pods left by a crashed runner (orphans)")
    async def list_pods(self, *, label_selector: str = "", namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        query = [("labelSelector", label_selector)] if label_selector else []
        return await self._call(
            f"list pods in namespace {ns!r}", "GET", f"/api/v1/namespaces/{ns}/pods", query=query
        )

    @requires("pods", "delete", why="removing a job's pod when the job ends or is canceled")
    async def delete_pod(
        self, name: str, *, grace_period: int | None = None, namespace: str | None = None
    ) -> Obj:
        ns = self._ns(namespace)
        query: list[tuple[str, Any]] = []
        if grace_period is not None:
            query.append(("gracePeriodSeconds", grace_period))
        return await self._call(
            f"delete pod {name!r}", "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", query=query
        )

    @requires("pods", "watch", why="following a job pod's state without polling")
    async def watch_pod(
        self, name: str, *, resource_version: str = "", namespace: str | None = None, timeout_seconds: int = 0
    ) -> AsyncIterator[WatchEvent]:
        """Watch one pod; yields (type, object). An ERROR event is raised as its KubeAPIError."""
        ns = self._ns(namespace)
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={name}"),
            ("allowWatchBookmarks", "true"),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds:
            query.append(("timeoutSeconds", timeout_seconds))
        response = await self._raw(
            f"watch pod {name!r}", "GET", f"/api/v1/namespaces/{ns}/pods", query=query, timeout=None
        )
        async for event in _watch_events(response, f"watch pod {name!r}", self.host):
            yield event

    @requires("pods/log", "get", why="streaming each container's output into the job log")
    async def pod_log(
        self,
        name: str,
        container: str,
        *,
        follow: bool = True,
        since_time: str = "",
        namespace: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Lines (with their ``timestamps=true`` prefix and newline) of one container's log."""
        ns = self._ns(namespace)
        query: list[tuple[str, Any]] = [("container", container), ("timestamps", "true")]
        if follow:
            query.append(("follow", "true"))
        if since_time:
            query.append(("sinceTime", since_time))
        response = await self._raw(
            f"read log of container {container!r} in pod {name!r}",
            "GET",
            f"/api/v1/namespaces/{ns}/pods/{name}/log",
            query=query,
            headers={"Accept": "*/*"},
            timeout=None,
        )
        async for line in _lines(response, f"log of {name}/{container}", self.host):
            yield line

    # ------------------------------------------------------------------ events

    @requires("events", "list", optional=True, why="showing why a pod waits (scheduling, image pulls)")
    async def list_events(self, pod_name: str, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(
            "list events",
            "GET",
            f"/api/v1/namespaces/{ns}/events",
            query=[("fieldSelector", f"involvedObject.name={pod_name}")],
        )

    @requires("events", "watch", optional=True, why="streaming warning events into the job log as they come")
    async def watch_events(
        self, pod_name: str, *, resource_version: str = "", namespace: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        ns = self._ns(namespace)
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("fieldSelector", f"involvedObject.name={pod_name}"),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        response = await self._raw(
            "watch events", "GET", f"/api/v1/namespaces/{ns}/events", query=query, timeout=None
        )
        async for event in _watch_events(response, "watch events", self.host):
            yield event


async def _watch_events(response: aiohttp.ClientResponse, what: str, host: str) -> AsyncIterator[WatchEvent]:
    """(type, object) of each watch event; an ERROR event raises its KubeAPIError, a line cut
    in the middle of an event KubeUnreachable (the caller watches again, from where it was)."""
    async for line in _lines(response, what, host):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise KubeUnreachable(f"{what}: the stream broke mid-event") from None
        kind, obj = str(event.get("type", "")), event.get("object") or {}
        if kind == "ERROR":
            raise api_error(int(obj.get("code") or 500), obj, operation=what)
        yield kind, obj


async def _lines(response: aiohttp.ClientResponse, what: str, host: str) -> AsyncIterator[bytes]:
    """Lines of a streaming body; a cut connection is KubeUnreachable, a clean end just ends."""
    try:
        while True:
            try:
                line = await response.content.readline()
            except ValueError:  # a line longer than the read buffer: take it in pieces
                line = await response.content.read(2**20)
            if not line:
                return
            yield line
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.IncompleteReadError) as exc:
        raise KubeUnreachable(f"{what}: the stream from {host} was cut: {type(exc).__name__}") from None
    finally:
        response.release()


def _tls_error(host: str, error: BaseException) -> KubeError:
    code = getattr(error, "verify_code", None)
    detail = getattr(error, "verify_message", None) or str(error)
    return KubeTLSError(f"TLS: the certificate of {host} is not trusted: {detail}", verify_code=code)

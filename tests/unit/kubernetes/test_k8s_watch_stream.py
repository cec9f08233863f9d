"""Watch streams cut or damaged by the network: the client says so as KubeUnreachable, which
callers already treat as "watch again", never as a raw parsing error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from kuberunner.kube import KubeClient, KubeForbidden, KubeUnreachable

GOOD = b'{"type":"ADDED","object":{"metadata":{"name":"p"}}}\n'


async def _serve(body: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # the request's head
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _events(body: bytes, watch: str) -> AsyncIterator[tuple[str, dict[str, object]]]:
    server, port = await _serve(body)
    config = Configuration(host=f"http://127.0.0.1:{port}")
    client = KubeClient(ApiClient(config), "ci")
    try:
        stream = client.watch_pod("p") if watch == "pod" else client.watch_events("p")
        async for event in stream:
            yield event
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("watch", ["pod", "events"])
async def test_a_line_broken_mid_event_is_a_cut_stream(watch: str) -> None:
    seen = []
    with pytest.raises(KubeUnreachable, match="the stream broke mid-event"):
        async for kind, _ in _events(GOOD + b'{"type":"MODIF\n', watch):
            seen.append(kind)
    assert seen == ["ADDED"]  # what came whole still came


@pytest.mark.parametrize("watch", ["pod", "events"])
async def test_an_error_event_is_the_api_error_it_holds(watch: str) -> None:
    error = b'{"type":"ERROR","object":{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}}\n'
    with pytest.raises(KubeForbidden):
        async for _ in _events(GOOD + error, watch):
            pass

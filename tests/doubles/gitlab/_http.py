"""HTTP plumbing of the GitLab double: request framing (chunked too), JSON answers, multipart parsing.

Kept apart from the endpoints so that the framing rules (which a client can get wrong) are read in one place.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

MAX_BODY = 512 * 1024 * 1024
"""Refuse bodies above this size: a runaway client must not exhaust the test machine's memory."""


class HeaderSource(Protocol):
    """What `BaseHTTPRequestHandler.headers` offers (an `email.message.Message`)."""

    def get(self, name: str, failobj: Any = None) -> Any: ...

    def items(self) -> list[tuple[str, Any]]: ...


class Readable(Protocol):
    """The buffered socket reader `BaseHTTPRequestHandler.rfile` is."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class FramingError(Exception):
    """The request body cannot be read as HTTP/1.1 framed it; the double answers 400 and closes."""


def read_body(rfile: Readable, headers: HeaderSource) -> bytes:
    """Read a request body framed by Transfer-Encoding: chunked, by Content-Length, or empty."""
    transfer_encoding = headers.get("Transfer-Encoding")
    if transfer_encoding:
        codings = [c.strip().lower() for c in str(transfer_encoding).split(",")]
        if codings != ["chunked"]:
            raise FramingError(f"unsupported Transfer-Encoding {transfer_encoding!r}")
        return _read_chunked(rfile)
    length_text = headers.get("Content-Length")
    if length_text is None:
        return b""
    length_text = str(length_text).strip()
    if not length_text.isdigit():
        raise FramingError("Content-Length is not a number")
    length = int(length_text)
    if length > MAX_BODY:
        raise FramingError("request body too large for the double")
    data = rfile.read(length)
    if len(data) != length:
        raise FramingError(f"body truncated: Content-Length {length}, got {len(data)} bytes")
    return data


def _read_chunked(rfile: Readable) -> bytes:
    """Decode a chunked body by hand (http.server does not), trailers skipped."""
    out = bytearray()
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise FramingError("chunk size line missing or too long")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise FramingError("chunk size is not hexadecimal") from None
        if size == 0:
            break
        if len(out) + size > MAX_BODY:
            raise FramingError("request body too large for the double")
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise FramingError("chunk truncated")
        if rfile.read(2) != b"\r\n":
            raise FramingError("chunk not terminated by CRLF")
        out += chunk
    while True:
        trailer = rfile.readline(8192)
        if trailer in (b"\r\n", b"\n", b""):
            break
    return bytes(out)


@dataclass
class Request:
    """One parsed HTTP request as the endpoints see it."""

    method: str
    path: str
    query_string: str = field(repr=False)
    headers: list[tuple[str, str]] = field(repr=False)
    body: bytes = field(repr=False)
    connection_id: int = 0

    def header(self, name: str) -> str | None:
        """First value of a header, matched case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def query(self) -> dict[str, str]:
        """Query parameters, last value wins (as Rack does)."""
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased ('' when absent)."""
        value = self.header("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()


@dataclass
class Response:
    """An answer to write back; `close` ends the keep-alive connection after it."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False

    def header(self, name: str) -> str | None:
        """First value of a header, matched case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON answer with the Content-Type a runner requires before it decodes anything."""
    body = json.dumps(payload).encode()
    return Response(status, [("Content-Type", "application/json"), *headers], body)


def message(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """GitLab's `render_api_error!` shape: `{"message": "403 Forbidden - ..."}`."""
    return json_response(status, {"message": text}, headers)


def param_error(text: str) -> Response:
    """Grape's parameter validation shape: 400 `{"error": "token is missing"}`."""
    return json_response(400, {"error": text})


def reason(status: int) -> str:
    """`403 Forbidden`, as GitLab spells the start of its error messages."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


class MultipartError(ValueError):
    """The multipart body is malformed (no boundary, truncated, no closing delimiter)."""


def _header_params(header_name: str, value: str) -> email.message.Message:
    parsed = email.message.Message()
    parsed[header_name] = value
    return parsed


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart/form-data body into its parts, strictly (a truncated upload is an error)."""
    ct = _header_params("content-type", content_type)
    if ct.get_content_type() != "multipart/form-data":
        raise MultipartError("Content-Type is not multipart/form-data")
    boundary = ct.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("multipart Content-Type has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("multipart body has no delimiter")
    rest = body[start + len(delimiter) :]
    parts: list[Part] = []
    while True:
        if rest.startswith(b"--"):
            return parts
        if not rest.startswith(b"\r\n"):
            raise MultipartError("multipart delimiter not followed by CRLF")
        end = rest.find(b"\r\n" + delimiter)
        if end < 0:
            raise MultipartError("multipart body has no closing delimiter (truncated upload?)")
        parts.append(_parse_part(rest[2:end]))
        rest = rest[end + 2 + len(delimiter) :]


def _parse_part(raw: bytes) -> Part:
    head, sep, data = raw.partition(b"\r\n\r\n")
    if not sep:
        if raw.startswith(b"\r\n"):
            head, data = b"", raw[2:]
        else:
            raise MultipartError("multipart part has no header/body separator")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise MultipartError("malformed multipart part header")
        headers[key.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("multipart part without Content-Disposition")
    parsed = _header_params("content-disposition", disposition)
    name = parsed.get_param("name", header="content-disposition")
    filename = parsed.get_param("filename", header="content-disposition")
    if not isinstance(name, str):
        raise MultipartError("multipart part without a name")
    return Part(
        name=name,
        filename=filename if isinstance(filename, str) else None,
        content_type=headers.get("content-type"),
        data=data,
    )

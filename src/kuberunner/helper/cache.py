"""The job cache: a zip under the cache directory, optionally mirrored to object storage.

The runner hands the helper presigned URLs (see ``s3.presign``), so the helper
never holds storage credentials: ``PUT`` uploads the archive with a
Content-Length (S3 refuses chunked bodies), ``GET`` downloads it. The local
archive is replaced atomically (temporary file + rename), so a job killed
half-way never leaves a truncated cache behind.
"""

from __future__ import annotations

import email.utils
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from kuberunner.helper.archive import create_zip, extract_zip, zip_names
from kuberunner.helper.errors import ArchiveError, NotFoundError, TransferError
from kuberunner.helper.log import Log
from kuberunner.helper.paths import FileSet
from kuberunner.helper.transport import (
    RetryPolicy,
    clean_url,
    describe_error,
    human_size,
    is_retryable,
    server_message,
    status_text,
)

__all__ = [
    "CacheNotFoundError",
    "archive_cache",
    "download_cache",
    "extract_cache",
    "is_up_to_date",
    "upload_cache",
]

_CHUNK = 64 * 1024


class CacheNotFoundError(NotFoundError):
    """No cache archive exists yet: a warning, not a failure of the job."""

    level = "WARNING"


def is_up_to_date(archive: Path, files: FileSet) -> bool:
    """True if ``archive`` holds exactly ``files`` and none changed since it was written."""
    try:
        archived_at = archive.stat().st_mtime
    except OSError:
        return False
    if files.newest_mtime() > archived_at:
        return False
    return zip_names(archive) == files.names()


def archive_cache(archive: Path, files: FileSet, *, level: int, log: Log) -> bool:
    """Write ``files`` to ``archive`` atomically; False if the existing archive was already current."""
    if is_up_to_date(archive, files):
        log.info("Archive is up to date!")
        return False
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="archive_", dir=archive.parent)
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            create_zip(files, out, level=level, log=log)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staged, 0o644)
        os.replace(staged, archive)
    finally:
        staged.unlink(missing_ok=True)
    return True


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise httpx.TimeoutException(f"{what} took longer than {self.seconds / 60:g} minutes")


def _file_chunks(path: Path, deadline: _Deadline) -> Iterator[bytes]:
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            deadline.check("uploading the cache")
            yield chunk


def _custom_headers(raw: Sequence[str], log: Log) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            log.warning(f"ignoring --header {key.strip()!r}: expected 'Name: value'")
            continue
        headers[key.strip()] = value.strip()
    return headers


def upload_cache(
    archive: Path,
    url: str,
    *,
    client: httpx.Client,
    policy: RetryPolicy,
    log: Log,
    timeout_s: float,
    extra_headers: Sequence[str] = (),
) -> None:
    """PUT ``archive`` to a presigned ``url``, retrying per the contract; raises TransferError."""
    st = archive.stat()
    headers = {"Content-Type": "application/octet-stream"}
    headers.update(_custom_headers(extra_headers, log))
    headers["Last-Modified"] = email.utils.formatdate(st.st_mtime, usegmt=True)
    headers["Content-Length"] = str(st.st_size)
    attempt = 0
    while True:
        attempt += 1
        log.info(f"Uploading {archive.name} to {clean_url(url)}")
        deadline = _Deadline(timeout_s)
        try:
            with client.stream("PUT", url, content=_file_chunks(archive, deadline), headers=headers) as resp:
                message = server_message(resp)
        except httpx.TransportError as exc:
            reason = describe_error(exc, url)
            if attempt >= policy.attempts:
                raise TransferError(
                    f"uploading {archive.name} to {clean_url(url)} failed after {attempt} attempts: {reason}"
                ) from exc
            log.warning(f"Uploading {archive.name} failed: {reason}; retrying")
            policy.wait(attempt, log=log)
            continue
        status = resp.status_code
        if 200 <= status < 300:
            log.info(f"Uploaded {archive.name} ({human_size(st.st_size)})")
            return
        detail = f"{status_text(status)}{': ' + message if message else ''}"
        if is_retryable(status) and attempt < policy.attempts:
            log.warning(f"Uploading {archive.name} failed: {detail}; retrying")
            policy.wait(attempt, resp, log=log)
            continue
        hint = (
            " (the presigned URL may have expired, or its signature does not match)" if status == 403 else ""
        )
        raise TransferError(
            f"uploading {archive.name} to {clean_url(url)} failed: the cache server answered {detail}{hint}",
            status=status,
        )


def _last_modified(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Last-Modified")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _download_once(
    archive: Path, url: str, *, client: httpx.Client, log: Log, timeout_s: float
) -> httpx.Response:
    deadline = _Deadline(timeout_s)
    with client.stream("GET", url, follow_redirects=True) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp
        remote_mtime = _last_modified(resp)
        try:
            local_mtime: float | None = archive.stat().st_mtime
        except OSError:
            local_mtime = None
        if remote_mtime is not None and local_mtime is not None and remote_mtime <= local_mtime:
            log.info(f"{archive.name} is up to date")
            return resp
        log.info(f"Downloading {archive.name} from {clean_url(url)}")
        fd, name = tempfile.mkstemp(prefix="cache", dir=archive.parent)
        staged = Path(name)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_bytes(_CHUNK):
                    deadline.check("downloading the cache")
                    out.write(chunk)
                    size += len(chunk)
            if remote_mtime is not None:
                os.utime(staged, (time.time(), remote_mtime))
            os.chmod(staged, 0o644)
            os.replace(staged, archive)
        finally:
            staged.unlink(missing_ok=True)
        log.info(f"Downloaded {archive.name} ({human_size(size)})")
        return resp


def download_cache(
    archive: Path,
    url: str,
    *,
    client: httpx.Client,
    policy: RetryPolicy,
    log: Log,
    timeout_s: float,
) -> None:
    """GET a presigned ``url`` into ``archive`` unless the local copy is current; 404 → CacheNotFoundError."""
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    attempt = 0
    while True:
        attempt += 1
        try:
            resp = _download_once(archive, url, client=client, log=log, timeout_s=timeout_s)
        except httpx.TransportError as exc:
            reason = describe_error(exc, url)
            if attempt >= policy.attempts:
                raise TransferError(
                    f"downloading {archive.name} from {clean_url(url)} failed after {attempt} attempts: "
                    f"{reason}"
                ) from exc
            log.warning(f"Downloading {archive.name} failed: {reason}; retrying")
            policy.wait(attempt, log=log)
            continue
        status = resp.status_code
        if status == 200:
            return
        if status == 404:
            raise CacheNotFoundError(
                f"cache not found: {clean_url(url)} does not exist yet "
                "(it is created when a job using this cache key finishes)",
                status=status,
            )
        message = server_message(resp)
        detail = f"{status_text(status)}{': ' + message if message else ''}"
        if is_retryable(status) and attempt < policy.attempts:
            log.warning(f"Downloading {archive.name} failed: {detail}; retrying")
            policy.wait(attempt, resp, log=log)
            continue
        hint = (
            " (the presigned URL may have expired, or its signature does not match)" if status == 403 else ""
        )
        raise TransferError(
            f"downloading {archive.name} from {clean_url(url)} failed: "
            f"the cache server answered {detail}{hint}",
            status=status,
        )


def extract_cache(archive: Path, dest: Path) -> int:
    """Extract the local cache ``archive`` into ``dest``; a missing archive is CacheNotFoundError."""
    if not archive.is_file():
        raise CacheNotFoundError(
            f"cache not found: {archive} does not exist (no cache was saved with this key yet)"
        )
    try:
        return extract_zip(archive, dest)
    except ArchiveError as exc:
        raise ArchiveError(f"cache {archive}: {exc.message}") from exc

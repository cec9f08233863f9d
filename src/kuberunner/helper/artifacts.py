"""Job artifacts: build the archive, upload it to GitLab, download and extract a dependency's.

Upload: ``POST /api/v4/jobs/:id/artifacts`` with ``JOB-TOKEN``, one multipart
part named ``file``, streamed from a temporary file with a Content-Length.
201 is success; 307/308 repeat the upload at ``Location``; 413 (too large)
and 401/403 are final; the contract's retryable statuses are retried.

Download: ``GET /api/v4/jobs/:id/artifacts``; redirects (usually to object
storage) are followed by hand so that ``JOB-TOKEN`` only ever goes to
GitLab's own origin.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from kuberunner.helper.archive import create_gzip, create_raw, create_zip, extract_zip
from kuberunner.helper.errors import ArchiveError, NotFoundError, TransferError
from kuberunner.helper.log import Log
from kuberunner.helper.paths import FileSet
from kuberunner.helper.transport import (
    JobCredentials,
    RetryPolicy,
    clean_url,
    describe_error,
    human_size,
    is_retryable,
    origin,
    server_message,
    short_token,
    status_text,
)

__all__ = [
    "FORMATS",
    "UploadOptions",
    "artifact_filename",
    "build_archive",
    "download_artifacts",
    "upload_artifacts",
]

FORMATS = ("zip", "gzip", "raw")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class UploadOptions:
    """What GitLab is told about the archive (query parameters and the part's file name)."""

    name: str = "artifacts"
    artifact_format: str | None = None
    artifact_type: str | None = None
    expire_in: str | None = None

    @property
    def format(self) -> str:
        return self.artifact_format or "zip"

    def query(self) -> dict[str, str]:
        # Only what was given, as gitlab-runner does: GitLab applies its own defaults.
        query: dict[str, str] = {}
        if self.expire_in:
            query["expire_in"] = self.expire_in
        if self.artifact_format:
            query["artifact_format"] = self.artifact_format
        if self.artifact_type:
            query["artifact_type"] = self.artifact_type
        return query


def artifact_filename(name: str, artifact_format: str) -> str:
    """The uploaded file's name: ``<name>.zip``, ``<name>.gz`` or ``<name>`` (raw)."""
    base = os.path.basename(name.rstrip("/"))
    if base in ("", ".", ".."):
        base = "default"
    if artifact_format == "zip":
        return base + ".zip"
    if artifact_format == "gzip":
        return base + ".gz"
    return base


def build_archive(files: FileSet, artifact_format: str, out: BinaryIO, *, level: int, log: Log) -> int:
    """Write ``files`` to ``out`` in ``artifact_format``; returns the number of entries."""
    if artifact_format == "zip":
        return create_zip(files, out, level=level, log=log)
    if artifact_format == "gzip":
        return create_gzip(files, out, level=level)
    if artifact_format == "raw":
        return create_raw(files, out)
    raise ArchiveError(f"unknown artifact format {artifact_format!r}; use one of {', '.join(FORMATS)}")


def _quote_param(value: str) -> str:
    # What Go's mime/multipart does for the filename parameter.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "%0D").replace("\n", "%0A")


class _MultipartFile:
    """A one-part multipart/form-data body streamed from a file, with its exact length."""

    def __init__(self, path: Path, filename: str) -> None:
        self.path = path
        self.boundary = secrets.token_hex(16)
        self.head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{_quote_param(filename)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(self.head) + path.stat().st_size + len(self.tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as src:
            while chunk := src.read(_CHUNK):
                yield chunk
        yield self.tail


def _with_query(url: str, query: dict[str, str]) -> str:
    parts = urlsplit(url)
    if parts.query or not query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def upload_artifacts(
    creds: JobCredentials,
    archive: Path,
    options: UploadOptions,
    *,
    client: httpx.Client,
    policy: RetryPolicy,
    log: Log,
) -> None:
    """Upload ``archive`` as the job's artifacts, retrying per the contract; raises TransferError."""
    filename = artifact_filename(options.name, options.format)
    query = options.query()
    url = _with_query(creds.artifacts_url(), query)
    prefix = (
        f'Uploading artifacts as "{options.artifact_type}" to coordinator...'
        if options.artifact_type
        else "Uploading artifacts to coordinator..."
    )
    token = short_token(creds.token)
    size = human_size(archive.stat().st_size)
    attempt = 0
    redirects = 0
    while True:
        attempt += 1
        body = _MultipartFile(archive, filename)
        headers = {
            "JOB-TOKEN": creds.token,
            "Content-Type": body.content_type,
            "Content-Length": str(body.length),
        }
        try:
            with client.stream("POST", url, content=body, headers=headers) as resp:
                message = server_message(resp)
        except httpx.TransportError as exc:
            reason = describe_error(exc)
            log.warning(f"{prefix} error  id={creds.job_id} error={reason} token={token}")
            if attempt >= policy.attempts:
                raise TransferError(
                    f"uploading artifacts to {clean_url(url)} failed after {attempt} attempts: {reason}"
                ) from exc
            policy.wait(attempt, log=log)
            continue
        status = resp.status_code
        shown = message or status_text(status)
        fields = f"id={creds.job_id} responseStatus={status_text(status)}"
        if status == 201:
            log.info(f"{prefix} {shown}  {fields} token={token}")
            return
        if status in (307, 308):
            location = resp.headers.get("Location")
            if not location:
                raise TransferError(
                    f"GitLab redirected the upload ({status}) without a Location header", status=status
                )
            redirects += 1
            if redirects > _MAX_REDIRECTS:
                raise TransferError(
                    f"the artifacts upload was redirected more than {_MAX_REDIRECTS} times", status=status
                )
            target = _with_query(urljoin(url, location), query)
            if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
                raise TransferError(
                    f"refusing GitLab's redirect of the upload to {clean_url(target)}: it would send the "
                    "job token without TLS",
                    status=status,
                )
            url = target
            log.warning(f"Upload request redirected  location={clean_url(url)} {fields}")
            attempt -= 1  # a redirect is not a failed attempt
            continue
        log.warning(f"{prefix} {shown}  {fields} status={status} token={token}")
        if status == 413:
            raise TransferError(
                f"{filename} ({size}) is too large for GitLab (413 Request Entity Too Large): raise the "
                "maximum artifacts size in GitLab's settings, or select fewer files",
                status=status,
            )
        if status in (401, 403):
            raise TransferError(
                f"GitLab refused the artifacts upload for job {creds.job_id} ({status_text(status)}"
                f"{': ' + message if message else ''}): the job token is no longer valid, "
                "usually because the job already finished or was canceled",
                status=status,
            )
        if is_retryable(status) and attempt < policy.attempts:
            policy.wait(attempt, resp, log=log)
            continue
        raise TransferError(
            f"uploading artifacts for job {creds.job_id} failed: GitLab answered {status_text(status)}"
            f"{': ' + message if message else ''}"
            + (f" (after {attempt} attempts)" if is_retryable(status) else ""),
            status=status,
        )


class _Retry(Exception):
    def __init__(self, response: httpx.Response | None) -> None:
        super().__init__()
        self.response = response


def _download_once(
    creds: JobCredentials,
    target: Path,
    *,
    client: httpx.Client,
    log: Log,
    direct_download: bool,
    last_attempt: bool,
) -> int:
    url = creds.artifacts_url() + ("?direct_download=true" if direct_download else "")
    gitlab = origin(url)
    token = short_token(creds.token)
    dep = f"job {creds.job_id}"
    for _ in range(_MAX_REDIRECTS + 1):
        at_gitlab = origin(url) == gitlab
        headers = {"JOB-TOKEN": creds.token} if at_gitlab else {}
        with client.stream("GET", url, headers=headers) as resp:
            status = resp.status_code
            host = "" if at_gitlab else f"host={urlsplit(url).hostname} "
            fields = f"{host}id={creds.job_id} responseStatus={status_text(status)} token={token}"
            if status in _REDIRECTS:
                location = resp.headers.get("Location")
                if not location:
                    raise TransferError(
                        f"downloading the artifacts of {dep}: redirect {status} without a Location"
                    )
                url = str(resp.url.join(location))
                continue
            if status == 200:
                size = 0
                with target.open("wb") as out:
                    for chunk in resp.iter_bytes(_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                log.info(f"Downloading artifacts from coordinator... ok ({human_size(size)})  {fields}")
                return size
            message = server_message(resp)
            detail = f"{status_text(status)}{': ' + message if message else ''}"
            where = "GitLab" if at_gitlab else f"object storage at {clean_url(url)}"
            if status == 404 and at_gitlab:
                log.warning(f"Downloading artifacts from coordinator... not found  {fields}")
                raise NotFoundError(
                    f"{dep} has no artifacts to download (404 Not Found): they expired or were erased, "
                    "or the job did not upload any",
                    status=status,
                )
            if status in (401, 403, 404):
                log.warning(f"Downloading artifacts from coordinator... forbidden  {fields}")
                hint = (
                    "this job's token may not read them (check the dependency's project and access settings)"
                    if at_gitlab
                    else "the download link was refused (it may have expired)"
                )
                raise TransferError(
                    f"cannot download the artifacts of {dep}: {where} answered {detail}; {hint}",
                    status=status,
                )
            if is_retryable(status):
                log.warning(f"Downloading artifacts from coordinator... failed  {fields} status={status}")
                if last_attempt:
                    raise TransferError(
                        f"downloading the artifacts of {dep} failed: {where} answered {detail}", status=status
                    )
                raise _Retry(resp)
            raise TransferError(
                f"downloading the artifacts of {dep} failed: {where} answered {detail}", status=status
            )
    raise TransferError(f"downloading the artifacts of {dep}: more than {_MAX_REDIRECTS} redirects")


def download_artifacts(
    creds: JobCredentials,
    dest: Path,
    *,
    client: httpx.Client,
    policy: RetryPolicy,
    log: Log,
    staging_dir: Path | None = None,
    direct_download: bool = False,
) -> int:
    """Download job ``creds.job_id``'s artifacts and extract them into ``dest``; returns the entry count."""
    fd, name = tempfile.mkstemp(prefix="artifacts", suffix=".zip", dir=staging_dir)
    os.close(fd)
    staged = Path(name)
    try:
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= policy.attempts
            try:
                _download_once(
                    creds,
                    staged,
                    client=client,
                    log=log,
                    direct_download=direct_download and attempt == 1,
                    last_attempt=last,
                )
                break
            except _Retry as retry:
                policy.wait(attempt, retry.response, log=log)
            except httpx.TransportError as exc:
                reason = describe_error(exc)
                log.warning(
                    f"Downloading artifacts from coordinator... error  id={creds.job_id} error={reason}"
                )
                if last:
                    raise TransferError(
                        f"downloading the artifacts of job {creds.job_id} failed after {attempt} attempts: "
                        f"{reason}"
                    ) from exc
                policy.wait(attempt, log=log)
        try:
            count = extract_zip(staged, dest)
        except ArchiveError as exc:
            raise ArchiveError(f"artifacts of job {creds.job_id}: {exc.message}") from exc
        log.info(f"Extracted {count} files and directories from the artifacts of job {creds.job_id}")
        return count
    finally:
        staged.unlink(missing_ok=True)

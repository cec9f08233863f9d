"""``kuberunner-helper``: the artifacts and cache commands that stage scripts call.

Subcommands and flags match the official ``gitlab-runner-helper``
(``artifacts-uploader``, ``artifacts-downloader``, ``cache-archiver``,
``cache-extractor``; ``--url/--token/--id`` also read ``CI_SERVER_URL``,
``CI_JOB_TOKEN`` and ``CI_JOB_ID``), so one generated script works with
either helper image. Every command runs in the current directory (the
project directory). A failure prints one ``ERROR:`` (or ``WARNING:``) line
and exits 1.
"""

from __future__ import annotations

import codecs
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, ParamSpec

import click
import httpx

from kuberunner.helper.archive import compression_level as level_from_name
from kuberunner.helper.artifacts import (
    FORMATS,
    UploadOptions,
    artifact_filename,
    build_archive,
    download_artifacts,
    upload_artifacts,
)
from kuberunner.helper.cache import archive_cache, download_cache, extract_cache, upload_cache
from kuberunner.helper.errors import HelperError
from kuberunner.helper.log import Log
from kuberunner.helper.paths import collect
from kuberunner.helper.relay import relay_transport_from_env
from kuberunner.helper.transport import (
    JobCredentials,
    RetryPolicy,
    human_size,
    make_client,
    tls_context,
    user_agent,
)

__all__ = ["HelperContext", "main", "preload", "preload_steps"]

P = ParamSpec("P")


@dataclass
class HelperContext:
    """What the commands share. Pass another one as click's ``obj`` to redirect output or waits."""

    log: Log = field(default_factory=Log)
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None

    def policy(self) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep)


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _reports_errors(
    fn: Callable[Concatenate[HelperContext, P], None],
) -> Callable[Concatenate[HelperContext, P], None]:
    """Turn a HelperError or OSError into one ``LEVEL: reason`` line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(hc: HelperContext, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(hc, *args, **kwargs)
        except HelperError as exc:
            hc.log.error(exc.message, level=exc.level)
            raise click.exceptions.Exit(1) from exc
        except OSError as exc:
            hc.log.error(_os_error(exc))
            raise click.exceptions.Exit(1) from exc

    return wrapper


def _credentials_options(fn: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--url", envvar="CI_SERVER_URL", required=True, help="GitLab URL."),
        click.option("--token", envvar="CI_JOB_TOKEN", required=True, help="The job token (JOB-TOKEN)."),
        click.option(
            "--id",
            "job_id",
            envvar="CI_JOB_ID",
            type=click.IntRange(min=1),
            required=True,
            help="The job ID.",
        ),
        click.option(
            "--tls-ca-file",
            envvar="CI_SERVER_TLS_CA_FILE",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Extra CA certificates to trust for GitLab's HTTPS.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _file_options(fn: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--path", "paths", multiple=True, help="Path or glob to archive (repeatable)."),
        click.option("--exclude", multiple=True, help="Glob to leave out (repeatable, not recursive)."),
        click.option("--untracked", is_flag=True, help="Add the files git reports as untracked."),
        click.option("--verbose", is_flag=True, help="List every archived file."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _artifact_format(value: str | None) -> str | None:
    """Like gitlab-runner, an empty format means the default (zip, not sent to GitLab)."""
    if not value:
        return None
    if value not in FORMATS:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(FORMATS)}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kuberunner", prog_name="kuberunner-helper")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Artifacts and cache transfers inside a job (compatible with gitlab-runner-helper)."""
    hc = ctx.ensure_object(HelperContext)
    if hc.transport is None:  # a pod whose "GitLab" is reached through the Kubernetes API
        hc.transport = relay_transport_from_env()


@main.command("artifacts-uploader")
@_credentials_options
@_file_options
@click.option("--name", default="artifacts", show_default=True, help="Archive name (without extension).")
@click.option("--expire-in", default=None, help="When GitLab expires the artifacts, e.g. '1 week'.")
@click.option(
    "--artifact-format",
    default=None,
    callback=lambda _ctx, _param, value: _artifact_format(value),
    help=f"Archive format: {', '.join(FORMATS)} [zip].",
)
@click.option("--artifact-type", default=None, help="Artifact type: archive, junit, dotenv, ...")
@click.option("--compression-level", envvar="ARTIFACT_COMPRESSION_LEVEL", default=None)
@click.pass_obj
@_reports_errors
def artifacts_uploader(
    hc: HelperContext,
    url: str,
    token: str,
    job_id: int,
    tls_ca_file: Path | None,
    paths: tuple[str, ...],
    exclude: tuple[str, ...],
    untracked: bool,
    verbose: bool,
    name: str,
    expire_in: str | None,
    artifact_format: str | None,
    artifact_type: str | None,
    compression_level: str | None,
) -> None:
    """Archive the selected files and upload them as the job's artifacts."""
    log = hc.log
    log.info("Uploading artifacts...")
    files = collect(Path.cwd(), paths, exclude=exclude, untracked=untracked, log=log, verbose=verbose)
    if not files:
        log.warning("No files to upload")
        return
    options = UploadOptions(
        name=name, artifact_format=artifact_format, artifact_type=artifact_type, expire_in=expire_in
    )
    creds = JobCredentials(url=url, token=token, job_id=job_id, ca_file=tls_ca_file)
    level = level_from_name(compression_level, log)
    with tempfile.TemporaryDirectory(prefix="kuberunner-artifacts-") as tmp:
        archive = Path(tmp) / artifact_filename(options.name, options.format)
        with archive.open("wb") as out:
            count = build_archive(files, options.format, out, level=level, log=log)
        entries = "1 entry" if count == 1 else f"{count} entries"
        log.info(f"Created {archive.name}: {entries}, {human_size(archive.stat().st_size)}")
        with make_client(ca_file=tls_ca_file, transport=hc.transport) as client:
            upload_artifacts(creds, archive, options, client=client, policy=hc.policy(), log=log)


@main.command("artifacts-downloader")
@_credentials_options
@click.option(
    "--direct-download",
    envvar="FF_USE_DIRECT_DOWNLOAD",
    is_flag=True,
    help="Ask GitLab for a direct object storage link on the first attempt.",
)
@click.option(
    "--archiver-staging-dir",
    envvar="ARCHIVER_STAGING_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the downloaded archive before extraction.",
)
@click.pass_obj
@_reports_errors
def artifacts_downloader(
    hc: HelperContext,
    url: str,
    token: str,
    job_id: int,
    tls_ca_file: Path | None,
    direct_download: bool,
    archiver_staging_dir: Path | None,
) -> None:
    """Download a job's artifacts and extract them into the current directory."""
    creds = JobCredentials(url=url, token=token, job_id=job_id, ca_file=tls_ca_file)
    with make_client(ca_file=tls_ca_file, transport=hc.transport) as client:
        download_artifacts(
            creds,
            Path.cwd(),
            client=client,
            policy=hc.policy(),
            log=hc.log,
            staging_dir=archiver_staging_dir,
            direct_download=direct_download,
        )


_TIMEOUT_HELP = "Minutes per request (0 = the default, 10)."


def _timeout_s(minutes: int) -> float:
    return (minutes or 10) * 60.0


def _cache_key(archive: Path) -> str:
    # The runner lays caches out as <cache dir>/<project>/<key>/cache.zip.
    return archive.parent.name or archive.name


@main.command("cache-archiver")
@click.option("--file", "archive", required=True, type=click.Path(dir_okay=False, path_type=Path))
@_file_options
@click.option("--url", default=None, help="Presigned URL to PUT the archive to.")
@click.option("--timeout", type=click.IntRange(min=0), default=10, show_default=True, help=_TIMEOUT_HELP)
@click.option("--header", "headers", multiple=True, help="Extra 'Name: value' header for the PUT.")
@click.option("--compression-level", envvar="CACHE_COMPRESSION_LEVEL", default=None)
@click.option(
    "--max-uploaded-archive-size",
    envvar="CACHE_MAX_UPLOADED_ARCHIVE_SIZE",
    type=click.IntRange(min=0),
    default=0,
    help="Keep larger archives local only (bytes, 0 = no limit).",
)
@click.pass_obj
@_reports_errors
def cache_archiver(
    hc: HelperContext,
    archive: Path,
    paths: tuple[str, ...],
    exclude: tuple[str, ...],
    untracked: bool,
    verbose: bool,
    url: str | None,
    timeout: int,
    headers: tuple[str, ...],
    compression_level: str | None,
    max_uploaded_archive_size: int,
) -> None:
    """Zip the selected files into the cache archive and optionally upload it."""
    log = hc.log
    log.info(f"Creating cache {_cache_key(archive)}...")
    files = collect(Path.cwd(), paths, exclude=exclude, untracked=untracked, log=log, verbose=verbose)
    if not files:
        log.warning("No files to cache: nothing matched, so the existing cache (if any) is kept")
        return
    if not archive_cache(archive, files, level=level_from_name(compression_level, log), log=log):
        return
    size = archive.stat().st_size
    if not url:
        log.info(
            "No URL provided, cache will not be uploaded to shared cache server. "
            "Cache will be stored only locally."
        )
    elif max_uploaded_archive_size and size > max_uploaded_archive_size:
        log.info(
            f"Cache archive size ({size}) is too big (Limit is set to {max_uploaded_archive_size}). "
            "Cache will be stored only locally."
        )
    else:
        with make_client(timeout_s=_timeout_s(timeout), transport=hc.transport) as client:
            upload_cache(
                archive,
                url,
                client=client,
                policy=hc.policy(),
                log=log,
                timeout_s=_timeout_s(timeout),
                extra_headers=headers,
            )
    log.info("Created cache")


@main.command("cache-extractor")
@click.option("--file", "archive", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Presigned URL to GET the archive from.")
@click.option("--timeout", type=click.IntRange(min=0), default=10, show_default=True, help=_TIMEOUT_HELP)
@click.pass_obj
@_reports_errors
def cache_extractor(hc: HelperContext, archive: Path, url: str | None, timeout: int) -> None:
    """Download (if --url) and extract the cache archive into the current directory."""
    log = hc.log
    log.info(f"Checking cache for {_cache_key(archive)}...")
    if url:
        with make_client(timeout_s=_timeout_s(timeout), transport=hc.transport) as client:
            download_cache(
                archive, url, client=client, policy=hc.policy(), log=log, timeout_s=_timeout_s(timeout)
            )
    else:
        log.info(
            "No URL provided, cache will not be downloaded from shared cache server. "
            "Instead a local version of cache will be extracted."
        )
    count = extract_cache(archive, Path.cwd())
    log.info(f"Extracted {count} files and directories")
    log.info("Successfully extracted cache")


def preload_steps() -> list[Callable[[], object]]:
    """What commands otherwise load on first use, for a process that forks helpers.

    httpx imports its HTTP stack when a client is made, the trust store takes tens of
    milliseconds to read, and URLs and zip names need codecs: a forked helper inherits all
    of it, loaded once. One step at a time, so that such a process can serve calls in
    between; a step that fails is left for the command that needs it to report.
    """
    return [
        tls_context,
        user_agent,
        lambda: make_client().close(),
        lambda: codecs.lookup("idna"),
        lambda: codecs.lookup("cp437"),
    ]


def preload() -> None:
    """Run every :func:`preload_steps` step now."""
    for step in preload_steps():
        try:
            step()
        except Exception:  # the command that needs it reports it
            continue

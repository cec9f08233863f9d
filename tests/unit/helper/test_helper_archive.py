"""Archives as gitlab-runner writes them, and extraction that cannot escape its directory."""

from __future__ import annotations

import gzip
import io
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kuberunner.helper.archive import create_gzip, create_raw, create_zip, extract_zip
from kuberunner.helper.errors import ArchiveError
from kuberunner.helper.log import Log
from kuberunner.helper.paths import FileSet, collect


def _files(root: Path, *paths: str) -> FileSet:
    out = io.StringIO()
    return collect(root, paths, log=Log(out, out))


@pytest.fixture
def project(tmp_path: Path, write: Callable[..., Path]) -> Path:
    root = tmp_path / "project"
    write(root / "bin/run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(root / "bin/data.txt", "data " * 1000, mode=0o640)
    (root / "bin/empty").mkdir()
    (root / "bin/current").symlink_to("run.sh")
    os.utime(root / "bin/data.txt", (1_600_000_000, 1_600_000_000))
    return root


def test_zip_has_sorted_entries_directories_links_and_modes(project: Path) -> None:
    buf = io.BytesIO()
    count = create_zip(_files(project, "bin"), buf, level=6, log=Log(io.StringIO()))

    with zipfile.ZipFile(buf) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        by_name = {i.filename: i for i in infos}
        assert count == 5
        assert names == ["bin/", "bin/current", "bin/data.txt", "bin/empty/", "bin/run.sh"]
        assert stat.S_ISLNK(by_name["bin/current"].external_attr >> 16)
        assert zf.read("bin/current") == b"run.sh"
        assert stat.S_IMODE(by_name["bin/run.sh"].external_attr >> 16) == 0o755
        assert stat.S_IMODE(by_name["bin/data.txt"].external_attr >> 16) == 0o640
        assert zf.read("bin/data.txt") == b"data " * 1000
        assert by_name["bin/data.txt"].compress_type == zipfile.ZIP_DEFLATED


def test_zip_round_trip_keeps_content_modes_links_and_times(project: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with archive.open("wb") as out:
        create_zip(_files(project, "bin"), out, level=1, log=Log(io.StringIO()))
    dest = tmp_path / "dest"
    dest.mkdir()

    assert extract_zip(archive, dest) == 5

    assert (dest / "bin/run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((dest / "bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "bin/data.txt").stat().st_mode) == 0o640
    assert os.readlink(dest / "bin/current") == "run.sh"
    assert (dest / "bin/empty").is_dir()
    assert (dest / "bin/data.txt").stat().st_mtime == 1_600_000_000


def test_extracting_over_existing_files_replaces_them_without_following_links(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "file.txt").symlink_to(victim)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("file.txt", "new content")

    extract_zip(archive, dest)

    assert victim.read_text() == "untouched"
    assert not (dest / "file.txt").is_symlink()
    assert (dest / "file.txt").read_text() == "new content"


def _zip_with(tmp_path: Path, *entries: tuple[str, bytes, int | None]) -> Path:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return archive


@pytest.mark.parametrize(
    "name", ["../escaped.txt", "a/../../escaped.txt", "/tmp/escaped.txt", "..\\escaped.txt"]
)
def test_path_traversal_entries_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    archive = _zip_with(tmp_path, ("good.txt", b"ok", None), (name, b"pwned", None))
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(ArchiveError, match="refusing to extract"):
        extract_zip(archive, dest)

    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_a_symlink_in_the_archive_cannot_be_used_to_write_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = _zip_with(
        tmp_path,
        ("link", str(outside).encode(), stat.S_IFLNK | 0o777),
        ("link/pwned.txt", b"pwned", stat.S_IFREG | 0o644),
    )
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(ArchiveError, match="symbolic link that leads outside"):
        extract_zip(archive, dest)

    assert list(outside.iterdir()) == []


def test_a_corrupt_archive_is_reported_by_name(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"this is not a zip")

    with pytest.raises(ArchiveError, match=r"broken\.zip is not a valid zip archive"):
        extract_zip(archive, tmp_path)


def test_gzip_writes_one_member_per_file_named_after_it(tmp_path: Path, write: Callable[..., Path]) -> None:
    write(tmp_path / "reports/a.xml", "<a/>")
    write(tmp_path / "reports/b.xml", "<b/>")
    buf = io.BytesIO()

    assert create_gzip(_files(tmp_path, "reports/*.xml"), buf, level=6) == 2

    data = buf.getvalue()
    assert gzip.decompress(data) == b"<a/><b/>"
    # The first member's header: FNAME (base name) and FCOMMENT (project path), as gitlab-runner writes.
    assert data[:4] == b"\x1f\x8b\x08\x18"
    name, comment, _ = data[10:].split(b"\x00", 2)
    assert (name, comment) == (b"a.xml", b"reports/a.xml")


def test_gzip_refuses_directories_with_a_fix(tmp_path: Path, write: Callable[..., Path]) -> None:
    write(tmp_path / "reports/a.xml")

    with pytest.raises(
        ArchiveError, match="reports is a directory; the gzip artifact format takes regular files"
    ):
        create_gzip(_files(tmp_path, "reports"), io.BytesIO(), level=6)


def test_raw_copies_exactly_one_file_and_refuses_more(tmp_path: Path, write: Callable[..., Path]) -> None:
    write(tmp_path / "one.bin", b"\x00\x01payload")
    write(tmp_path / "two.bin")
    buf = io.BytesIO()

    assert create_raw(_files(tmp_path, "one.bin"), buf) == 1
    assert buf.getvalue() == b"\x00\x01payload"
    with pytest.raises(ArchiveError, match="exactly one file, but 2 were selected"):
        create_raw(_files(tmp_path, "*.bin"), io.BytesIO())

"""Archives in the formats GitLab accepts, and safe extraction of zip archives.

Zip archives are written like gitlab-runner's: entries in byte order,
directories as ``name/`` entries, symbolic links as link entries (the target
is the content), Unix modes in the external attributes and the modification
time also in an extended-timestamp field (UTC, so no time zone shifts it).
Extraction refuses any entry that would land outside the target directory,
whether by ``..``, an absolute name or a symbolic link on the way.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import time
import urllib.parse
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from kuberunner.helper.errors import ArchiveError
from kuberunner.helper.log import Log
from kuberunner.helper.paths import FileSet

__all__ = [
    "COMPRESSION_LEVELS",
    "compression_level",
    "create_gzip",
    "create_raw",
    "create_zip",
    "extract_zip",
    "zip_names",
]

COMPRESSION_LEVELS = {"fastest": 1, "fast": 3, "default": 6, "slow": 8, "slowest": 9}

_EXTENDED_TIMESTAMP = 0x5455
_COPY_CHUNK = 1 << 20
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)


def compression_level(name: str | None, log: Log) -> int:
    """Map gitlab-runner's level names to zlib levels; an unknown name warns and uses the default."""
    if not name:
        return COMPRESSION_LEVELS["default"]
    level = COMPRESSION_LEVELS.get(name.strip().lower())
    if level is None:
        choices = ", ".join(COMPRESSION_LEVELS)
        log.warning(f"compression level {name!r} is not one of {choices}; using default")
        return COMPRESSION_LEVELS["default"]
    return level


def _dos_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime, 0))
    if t.tm_year < 1980:
        return _DOS_EPOCH
    if t.tm_year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _timestamp_extra(mtime: float) -> bytes:
    seconds = min(max(int(mtime), 0), 0xFFFFFFFF)
    return struct.pack("<HHBI", _EXTENDED_TIMESTAMP, 5, 1, seconds)


def _entry(name: str, st: os.stat_result, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _dos_time(st.st_mtime))
    info.create_system = 3  # Unix: the high 16 bits of external_attr hold st_mode
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    info.compress_type = compress_type
    info.extra = _timestamp_extra(st.st_mtime)
    return info


def create_zip(files: FileSet, out: BinaryIO, *, level: int, log: Log) -> int:
    """Write ``files`` as a zip archive to ``out``; returns the number of entries written."""
    written = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=level) as zf:
        for rel in files.names():
            st = files.entries[rel]
            path = files.root / rel
            if stat.S_ISDIR(st.st_mode):
                info = _entry(rel + "/", st, zipfile.ZIP_STORED)
                info.external_attr |= 0x10  # MS-DOS directory flag, for non-Unix readers
                zf.writestr(info, b"")
            elif stat.S_ISLNK(st.st_mode):
                info = _entry(rel, st, zipfile.ZIP_STORED)
                zf.writestr(info, os.fsencode(os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                info = _entry(rel, st, zipfile.ZIP_DEFLATED)
                info.file_size = st.st_size
                info._compresslevel = level  # type: ignore[attr-defined]  # no public setter in 3.11
                with path.open("rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
            else:
                log.warning(f"{rel}: not a regular file, directory or symbolic link, skipped")
                continue
            written += 1
    return written


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return ("e:" + urllib.parse.quote(text)).encode("ascii")


def create_gzip(files: FileSet, out: BinaryIO, *, level: int) -> int:
    """Write each file as one gzip member (name = base name, comment = path), as gitlab-runner does."""
    count = 0
    for rel in files.names():
        st = files.entries[rel]
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ArchiveError(
                f"{rel} is {kind}; the gzip artifact format takes regular files only "
                "(list the files themselves in artifacts:paths, or use the zip format)"
            )
        header = bytearray(b"\x1f\x8b\x08\x18")  # magic, deflate, FNAME|FCOMMENT
        header += struct.pack("<I", min(max(int(st.st_mtime), 0), 0xFFFFFFFF))
        header += b"\x00\xff"  # no extra flags, unknown OS
        header += _latin1(os.path.basename(rel)) + b"\x00" + _latin1(rel) + b"\x00"
        out.write(bytes(header))
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        crc = 0
        size = 0
        with (files.root / rel).open("rb") as src:
            while chunk := src.read(_COPY_CHUNK):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                out.write(compressor.compress(chunk))
        out.write(compressor.flush())
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
        count += 1
    return count


def create_raw(files: FileSet, out: BinaryIO) -> int:
    """Copy the one selected file as is; the raw format cannot hold more than one."""
    names = files.names()
    if len(names) > 1:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ArchiveError(
            f"the raw artifact format takes exactly one file, but {len(names)} were selected ({shown})"
        )
    for rel in names:
        if not stat.S_ISREG(files.entries[rel].st_mode):
            raise ArchiveError(f"{rel} is not a regular file; the raw artifact format takes one regular file")
        with (files.root / rel).open("rb") as src:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
    return len(names)


def zip_names(path: Path) -> list[str] | None:
    """The entry names of an existing zip (without trailing ``/``), or None if it cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            return sorted(n.rstrip("/") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return None


def _safe_parts(name: str) -> list[str]:
    """The path components of an entry name; raises if the name could escape the target."""
    if "\0" in name:
        raise ArchiveError(f"refusing to extract {name!r}: the name contains a NUL byte")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"refusing to extract {name!r}: absolute paths are not allowed in an archive")
    if any(part == ".." for part in re.split(r"[\\/]", name)):
        raise ArchiveError(f"refusing to extract {name!r}: '..' would write outside the target directory")
    return [p for p in name.split("/") if p not in ("", ".")]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _entry_mtime(info: zipfile.ZipInfo) -> float:
    extra = info.extra
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + size]
        if tag == _EXTENDED_TIMESTAMP and len(body) >= 5 and body[0] & 1:
            return float(struct.unpack_from("<I", body, 1)[0])
        i += 4 + size
    return time.mktime((*info.date_time, 0, 0, -1))


class _Extractor:
    def __init__(self, zf: zipfile.ZipFile, dest: Path) -> None:
        self.zf = zf
        self.dest_real = os.path.realpath(dest)

    def parent_dir(self, name: str, parts: list[str]) -> str:
        """Create the parent directories of an entry, refusing links that lead outside the target."""
        current = self.dest_real
        for comp in parts:
            path = os.path.join(current, comp)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if not _within(real, self.dest_real):
                    raise ArchiveError(
                        f"refusing to extract {name!r}: {comp!r} is a symbolic link that leads "
                        "outside the target directory"
                    )
                path = real
            if not os.path.lexists(path):
                os.mkdir(path, 0o755)
            elif not os.path.isdir(path):
                raise ArchiveError(f"cannot extract {name!r}: {path} exists and is not a directory")
            current = path
        return current

    @staticmethod
    def clear(name: str, target: str) -> None:
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            os.unlink(target)
        elif os.path.isdir(target):
            raise ArchiveError(f"cannot extract {name!r}: a directory of that name exists at {target}")

    def run(self) -> int:
        plan = [(info, _safe_parts(info.filename)) for info in self.zf.infolist()]
        directories: list[tuple[str, int, float]] = []
        count = 0
        for info, parts in plan:
            if not parts:
                continue
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            parent = self.parent_dir(info.filename, parts[:-1])
            target = os.path.join(parent, parts[-1])
            mtime = _entry_mtime(info)
            if info.is_dir() or stat.S_ISDIR(mode):
                if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
                    os.unlink(target)
                if not os.path.isdir(target):
                    os.mkdir(target, 0o755)
                directories.append((target, (mode & 0o777) or 0o755, mtime))
            elif stat.S_ISLNK(mode):
                link = self.zf.read(info).decode("utf-8", "surrogateescape")
                self.clear(info.filename, target)
                os.symlink(link, target)
                os.utime(target, (mtime, mtime), follow_symlinks=False)
            else:
                self.clear(info.filename, target)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                fd = os.open(target, flags, 0o600)
                with os.fdopen(fd, "wb") as out, self.zf.open(info) as src:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
                os.chmod(target, (mode & 0o777) or 0o644)
                os.utime(target, (mtime, mtime))
            count += 1
        for path, perm, mtime in reversed(directories):
            os.chmod(path, perm)
            os.utime(path, (mtime, mtime))
        return count


def extract_zip(archive: Path, dest: Path) -> int:
    """Extract ``archive`` into ``dest`` keeping modes, times and links; returns the entry count.

    Every entry name is checked before anything is written, so an archive with
    a path-traversal entry leaves the target untouched.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            return _Extractor(zf, dest).run()
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{archive.name} is not a valid zip archive ({exc})") from exc

"""Downloads that survive a cut connection and never leave a bad file under the final name.

Bytes go to ``<name>.part``; a new attempt continues it with an HTTP Range request; the file is
checked (size, SHA-256, where known) before it is renamed to its final name.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import DatasetError, DerdError
from pipeline.io import file_sha256


def _check(path: Path, url: str, size: int | None, sha256: str | None, error: type[DerdError]) -> None:
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        raise error(f"{url}: got {got_size} bytes, expected {size}")
    if sha256 is not None and (got := file_sha256(path)) != sha256:
        raise error(
            f"{url}: checksum mismatch (sha256 {got[:16]}..., expected {sha256[:16]}...); "
            f"the download was refused and removed"
        )


def download(
    url: str,
    dest: Path,
    size: int | None = None,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
    error: type[DerdError] = DatasetError,
) -> Path:
    """``url`` to ``dest``, resumed after a cut and verified (size, sha256); a failure raises ``error``
    (a dataset's files by default; weights pass ``WeightsError``)."""
    dest = Path(dest)
    if dest.exists():
        _check(dest, url, size, sha256, error)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = have and response.status == 206
                with open(part, "ab" if resumed else "wb") as f:
                    shutil.copyfileobj(response, f, 1 << 20)
                    expected = response.headers.get("Content-Length")
                if expected is not None and part.stat().st_size != (have if resumed else 0) + int(expected):
                    raise ConnectionError("connection closed before the end of the file")
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to fetch: the .part file is complete
                break
            raise error(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:  # cut connection, timeout: resume from what we have
            if attempt == retries:
                raise error(
                    f"{url}: download failed after {retries + 1} attempts ({exc}); run again "
                    f"to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from exc
            time.sleep(backoff * (attempt + 1))
    try:
        _check(part, url, size, sha256, error)
    except error:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


# tarfile's ``data`` filter arrived in Python 3.11.4; Debian 12's python3 is 3.11.2
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class _Refused(Exception):
    pass


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Stricter than the ``data`` filter, for Pythons without it: only directories and regular files
    (the archives here hold images), absolute names made relative, a name outside ``dest`` refused,
    no link (so no member can write through one), no special file; modes without setuid/setgid/sticky
    bits or group/other write, and no owner, as the filter does."""
    root = os.path.realpath(dest)
    members = []
    for member in tar.getmembers():
        name = member.name.lstrip("/")
        if os.path.normpath(name) in (".", "") and not member.isdir():
            raise _Refused(f"{member.name!r} names the destination itself")
        if not _inside(root, os.path.join(root, name)):
            raise _Refused(f"{member.name!r} would be extracted outside the destination")
        if member.issym() or member.islnk():
            raise _Refused(
                f"{member.name!r} is a link to {member.linkname!r}: links could point outside the destination"
            )
        if not (member.isfile() or member.isdir()):
            raise _Refused(f"{member.name!r} is a special file")
        member.name = name
        if member.isdir():  # as the data filter: directories usable, files readable and writable by their owner
            member.mode = 0o755
        else:
            member.mode = (member.mode & 0o755 | 0o600) & (0o755 if member.mode & 0o100 else 0o644)
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        members.append(member)
    return members


def extract_tar(archive: Path, dest: Path) -> list[str]:
    """Extract with tarfile's ``data`` filter (where Python is older than 3.11.4, the stricter
    :func:`_safe_members`): no member may land outside ``dest`` (no absolute paths, ``..``, or links
    pointing out), no device files; refused archives name the member."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            if HAS_DATA_FILTER:
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest, members=_safe_members(tar, dest), numeric_owner=True)
    except (_Refused, *((tarfile.FilterError,) if HAS_DATA_FILTER else ())) as exc:
        raise DatasetError(
            f"{archive}: refused to extract ({exc}): an archive may not write outside {dest}, link out of it "
            "or hold special files"
        ) from exc
    except tarfile.TarError as exc:
        raise DatasetError(f"{archive}: not a readable tar archive ({exc}); delete it and download again") from exc
    return names

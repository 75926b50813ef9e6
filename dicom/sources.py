"""Where instances come from: one file, bytes, a folder, a ZIP/TAR archive or a DICOMDIR.

Everything is read into memory as ``(name, bytes)`` pairs under ``ReadLimits`` before any DICOM
parsing, so a hostile archive (a zip bomb, ten thousand members, ``../`` paths, absolute paths,
links) is refused before it costs more than the limits allow, and nothing is ever extracted
to disk.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dicom.errors import ArchiveError, NotDicomError

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what ``read_study`` accepts; raise them for unusual but legitimate input.

    Attributes
    ----------
    max_rows, max_columns
        Largest image matrix; chest detectors are at most about 4300 pixels a side.
    min_rows, min_columns
        Smallest image matrix; below this it is a thumbnail or an icon, not a radiograph.
    max_bits_stored
        Deepest (0028,0101) BitsStored accepted.
    max_file_bytes
        Largest single file or byte string.
    max_total_bytes
        Largest sum of uncompressed sizes over a folder or an archive.
    max_files
        Most files in a folder or members in an archive.
    max_depth
        Most nested folders below the top of a folder or archive.
    """

    max_rows: int = 8192
    max_columns: int = 8192
    min_rows: int = 64
    min_columns: int = 64
    max_bits_stored: int = 16
    max_file_bytes: int = 512 * 1024**2
    max_total_bytes: int = 2 * 1024**3
    max_files: int = 2000
    max_depth: int = 8


@dataclass(frozen=True)
class SourceFile:
    """One candidate file: where it came from (relative name) and its bytes."""

    name: str
    data: bytes


def gather(source: Path | bytes, limits: ReadLimits) -> list[SourceFile]:
    """All candidate files of ``source``, checked against ``limits``.

    Raises
    ------
    NotDicomError
        The path does not exist or the folder holds no files.
    ArchiveError
        Too many files, too large, too deep, or member paths escaping the archive.
    """
    if isinstance(source, bytes | bytearray):
        return _from_bytes(bytes(source), "<bytes>", limits)
    path = Path(source)
    if path.is_dir():
        files = list(_from_folder(path, limits))
    elif path.is_file():
        _check_size(path.stat().st_size, limits.max_file_bytes, "the file")
        files = _from_bytes(path.read_bytes(), path.name, limits)
    else:
        raise NotDicomError(f"{path} does not exist or is not a file or folder; check the path")
    if not files:
        raise NotDicomError("the folder holds no files; point at a folder with DICOM files")
    return files


def _from_bytes(data: bytes, name: str, limits: ReadLimits) -> list[SourceFile]:
    """A byte string is a ZIP, a TAR or a single file, told apart by its magic bytes."""
    _check_size(len(data), limits.max_file_bytes, "the upload")
    if data.startswith(_ZIP_MAGIC):
        return _from_zip(data, limits)
    if _is_tar(data):
        return _from_tar(data, limits)
    return [SourceFile(name, data)]


def _is_tar(data: bytes) -> bool:
    """True for a (possibly compressed) TAR archive; DICOM files never have the ustar magic."""
    if data[257:262] != b"ustar" and not data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return False
    try:
        with tarfile.open(fileobj=io.BytesIO(data)):
            return True
    except (tarfile.TarError, EOFError, OSError):
        return False


def _from_zip(data: bytes, limits: ReadLimits) -> list[SourceFile]:
    """Members of a ZIP, refusing bombs and escaping names before anything is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_members([(m.filename, m.file_size) for m in members], limits)
            return [_read_zip_member(archive, m, limits) for m in members]
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"the ZIP archive is corrupt ({error}); create it again") from error


def _read_zip_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: ReadLimits
) -> SourceFile:
    """Inflates one member, stopping at the size it declared (a lying header cannot bomb us)."""
    with archive.open(member) as stream:
        payload = stream.read(min(member.file_size, limits.max_file_bytes) + 1)
    _check_size(len(payload), min(member.file_size, limits.max_file_bytes), "a ZIP member")
    return SourceFile(member.filename, payload)


def _from_tar(data: bytes, limits: ReadLimits) -> list[SourceFile]:
    """Regular-file members of a TAR; links and devices are refused, never followed."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = archive.getmembers()
            links = [m for m in members if not (m.isfile() or m.isdir())]
            if links:
                raise ArchiveError(
                    "the TAR archive holds links or special files; archive plain files only"
                )
            files = [m for m in members if m.isfile()]
            _check_members([(m.name, m.size) for m in files], limits)
            return [SourceFile(m.name, _tar_payload(archive, m)) for m in files]
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveError(f"the TAR archive is corrupt ({error}); create it again") from error


def _tar_payload(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of one regular TAR member."""
    stream = archive.extractfile(member)
    if stream is None:
        raise ArchiveError("a TAR member could not be read; create the archive again")
    return stream.read()


def _check_members(members: list[tuple[str, int]], limits: ReadLimits) -> None:
    """Refuses an archive by its directory alone: count, total size, depth and escaping names."""
    if len(members) > limits.max_files:
        raise ArchiveError(
            f"the archive holds {len(members)} files, more than the limit of {limits.max_files}; "
            "send one study per archive"
        )
    total = sum(size for _, size in members)
    _check_size(total, limits.max_total_bytes, "the archive's uncompressed content")
    for name, _ in members:
        _check_member_name(name, limits)


def _check_member_name(name: str, limits: ReadLimits) -> None:
    """Refuses absolute paths, ``..`` components (zip-slip) and nesting beyond the limit."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(
            "the archive holds a member path that escapes its folder (absolute or with '..'); "
            "create the archive with relative paths"
        )
    if len(path.parts) - 1 > limits.max_depth:
        raise ArchiveError(
            f"the archive nests folders {len(path.parts) - 1} deep, more than the limit of "
            f"{limits.max_depth}; flatten it"
        )


def _from_folder(folder: Path, limits: ReadLimits) -> Iterator[SourceFile]:
    """Files under ``folder`` (symbolic links not followed), within count, size and depth."""
    count, total = 0, 0
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        depth = len(path.relative_to(folder).parts) - 1
        if depth > limits.max_depth:
            raise ArchiveError(
                f"the folder nests {depth} deep, more than the limit of {limits.max_depth}; "
                "point at the study's own folder"
            )
        count, total = count + 1, total + path.stat().st_size
        if count > limits.max_files:
            raise ArchiveError(
                f"the folder holds more than {limits.max_files} files; point at one study"
            )
        _check_size(total, limits.max_total_bytes, "the folder's content")
        yield SourceFile(str(path.relative_to(folder)), path.read_bytes())


def _check_size(size: int, limit: int, what: str) -> None:
    """Refuses anything over its byte limit, saying which limit to raise."""
    if size > limit:
        raise ArchiveError(
            f"{what} is {size} bytes, more than the limit of {limit}; split it or raise ReadLimits"
        )

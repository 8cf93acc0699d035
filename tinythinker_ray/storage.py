"""Files: atomic writes of files and folders, append-only JSONL, copies between local and remote storage.

Every artifact is written to a temporary name and renamed, so a reader never sees half a file or folder;
appended JSONL is fsynced per block so a killed run loses at most the block in flight. Remote paths (s3://,
gs://, file://) go through pyarrow filesystems. The layout of a run directory is rundir.py's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import DataError, TinyThinkerError


def is_remote(path: str) -> bool:
    return "://" in str(path)


def cache_root() -> Path:
    """Where built-in models and remote run directories' local mirrors live ($TINYTHINKER_CACHE)."""
    return Path(os.environ.get("TINYTHINKER_CACHE", Path.home() / ".cache" / "tinythinker"))


@contextmanager
def atomic_open(path: str | os.PathLike, binary: bool = False) -> Iterator[IO]:
    """A file to stream into (UTF-8 text, or bytes); it appears at `path` (fsynced, renamed) only if the block
    ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Exclusive like mkstemp, but created 0666 so the umask decides (0644 under 022), as for any file a program
    # writes: mkstemp's 0600 would leave run artifacts unreadable to the group and to a web server.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(dest: str | os.PathLike, *, keep_existing: bool = False) -> Iterator[Path]:
    """A temporary folder beside `dest` to fill; when the block ends without error it takes `dest`'s place by
    renames, so readers never see half a folder (a model, an export). `keep_existing`: a non-empty `dest` that
    appeared meanwhile (another process built the same thing) is kept and ours dropped."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (dest.with_name(f".{dest.name}.{what}-{os.getpid()}") for what in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        as_umask_allows(tmp)  # safetensors writes weights 0600: the folder gets the modes new files get
        if keep_existing:
            try:  # rename(2) replaces only an empty folder: whoever got there first wins, nothing is moved aside
                os.rename(tmp, dest)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            return
        if dest.exists():
            os.replace(dest, old)  # a folder cannot be renamed over a full one: the old one steps aside first
        try:
            os.replace(tmp, dest)
        except OSError:
            if old.exists():
                os.replace(old, dest)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def set_aside(folder: Path) -> Path:
    """Move a folder out of the way under a free `<name>.incomplete-<n>` name (kept, never deleted)."""
    n = 1
    while (aside := folder.with_name(f"{folder.name}.incomplete-{n}")).exists():
        n += 1
    if folder.exists():
        folder.rename(aside)
    return aside


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:[0-9a-f]{12}\.tmp|(?P<kind>tmp|old)-\d+)")


def sweep_leftovers(root: str | os.PathLike) -> list[str]:
    """Clear what a killed writer left of atomic_open / atomic_dir under `root`: half-written `.<name>.<hex>.tmp`
    files and `.<name>.tmp-<pid>` folders go; an `.<name>.old-<pid>` folder (a finished folder stepped aside for
    its replacement) is put back when the swap never completed, else it goes. Only for a folder no other process
    is writing to (a held run directory); returns what was done, one line each."""
    done = []
    for p in sorted(Path(root).rglob(".*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
        m = _LEFTOVER.fullmatch(p.name)
        if not m or not p.exists():
            continue
        dest = p.with_name(m["name"])
        if m["kind"] == "old" and p.is_dir() and not dest.exists():
            os.replace(p, dest)
            done.append(f"restored {dest} (a replacement of it was interrupted)")
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        done.append(f"removed {p} (half-written by a killed process)")
    return done


def umask() -> int:
    """The process umask, read without changing it: Linux reports it in /proc/self/status (os.umask only sets it,
    which for a moment would give files other threads create mode 0666)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(folder: str | os.PathLike) -> None:
    """Give every file under `folder` the mode the umask gives a new file (0644 under 022): safetensors writes
    model weights 0600, which would leave a shared run's or an export's model unreadable to the group."""
    mode = 0o666 & ~umask()
    for p in Path(folder).rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, mode)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def append_jsonl(path, rows: Iterable[dict]) -> None:
    """Append rows and fsync: the unit of durability for teacher replies and generations."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path, *, tolerate_torn_tail: bool = True) -> Iterator[dict]:
    """Rows of a JSONL file. A torn last line (a killed writer) is skipped; any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is named, not a crash of the whole read
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line.decode("utf-8-sig" if i == 1 else "utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if tolerate_torn_tail and i == len(lines) and not line.endswith(b"\n"):
                return
            what = f"bad JSON: {e.msg}" if isinstance(e, json.JSONDecodeError) else f"not UTF-8 text ({e.reason})"
            raise DataError(what, file=str(path), line=i) from None


class StorageError(TinyThinkerError):
    """Remote storage (s3://, gs://) that cannot be reached, refuses our credentials or has no such bucket."""


def _reason(e: Exception) -> str:
    """pyarrow's error in one line, without the request id S3 appends."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"\s*\(Request ID: [^)]*\)", "", first)


def _filesystem(where: str):
    from pyarrow import fs

    if not is_remote(where):
        return fs.LocalFileSystem(), str(Path(where))
    if re.match(r"[A-Za-z0-9+.-]+://[^/@]*@", where):  # pyarrow takes s3://KEY:SECRET@bucket; we never echo it
        raise StorageError("a storage URI with credentials in it is refused (it would reach logs and the manifest): "
                           "give them in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    try:
        return fs.FileSystem.from_uri(where)
    except (OSError, ValueError) as e:  # an unknown scheme, a malformed URI
        raise StorageError(f"{where}: {_reason(e)}") from None


def check_remote(uri: str) -> None:
    """One line, before any work, when a remote run directory cannot be used: the endpoint does not answer, the
    credentials are refused, or the bucket does not exist (nothing would be created in its place)."""
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    if isinstance(filesystem, fs.LocalFileSystem):
        return
    bucket = path.split("/", 1)[0]
    try:
        try:
            found = filesystem.get_file_info(bucket).type
        except OSError:  # credentials scoped to a prefix may not see the bucket itself: ask for the run's own path
            filesystem.get_file_info(path)
            return
    except OSError as e:
        raise StorageError(f"{uri}: storage unreachable or access refused: {_reason(e)} (credentials come from "
                           "the environment: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for a "
                           "non-AWS endpoint)") from None
    if found == fs.FileType.NotFound:
        raise StorageError(f"{uri}: bucket '{bucket}' does not exist; create it, or choose another --run_dir")


def copy_tree(src: str, dst: str, skip: Iterable[str] = ()) -> None:
    """Copy a folder's files between local paths and remote URIs, overwriting; folders named in `skip` (at any
    depth) are left out. A remote that fails midway is a StorageError naming it: what was copied stays."""
    from pyarrow import fs

    (src_fs, src_path), (dst_fs, dst_path) = _filesystem(src), _filesystem(dst)
    remote = dst if is_remote(dst) else src
    try:
        if src_fs.get_file_info(src_path).type != fs.FileType.Directory:
            return
        skip, made = set(skip), set()
        for info in src_fs.get_file_info(fs.FileSelector(src_path, recursive=True)):
            rel = info.path[len(src_path):].strip("/")
            if info.type != fs.FileType.File or skip.intersection(rel.split("/")[:-1]):
                continue  # folders come with their files (object stores have no empty ones)
            target = f"{dst_path}/{rel}"
            parent = target.rsplit("/", 1)[0]
            if parent not in made and isinstance(dst_fs, fs.LocalFileSystem):
                dst_fs.create_dir(parent, recursive=True)
                made.add(parent)
            fs.copy_files(info.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)
    except OSError as e:
        if not is_remote(remote):
            raise
        raise StorageError(f"copying {src} -> {dst} failed at {remote}: {_reason(e)}") from None


def remote_stamp(uri: str) -> tuple:
    """Tells a remote folder's current content from an earlier one: its files' names (relative), sizes and times."""
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise StorageError(f"{uri}: {_reason(e)}") from None
    return tuple(sorted((i.path[len(path):].strip("/"), i.size, i.mtime_ns) for i in infos
                        if i.type == fs.FileType.File))


def read_from(where: str | Path, offset: int) -> bytes:
    """A file's bytes from `offset` on, local or remote (an object store is asked for that range only).
    FileNotFoundError / OSError when it is not there (yet) or the store does not answer."""
    filesystem, path = _filesystem(str(where))
    with filesystem.open_input_file(path) as f:
        size = f.size()
        return f.read_at(size - offset, offset) if size > offset else b""


def fetch_folder(uri: str, skip: tuple[str, ...] = (), listing: tuple | None = None) -> Path:
    """A remote folder (a model, or a run to read: `skip` its checkpoints) as a folder on this node: fetched once
    into the cache, again when it changed. Each node fetches its own copy, so Ray workers on any node load what
    the driver names by URI; a run's own mirror is never touched (its driver may be writing to it).
    `listing`: the folder's `remote_stamp`, when the caller already listed it (one listing, not two)."""
    stamp = hashlib.sha1(repr(listing if listing is not None else remote_stamp(uri)).encode()).hexdigest()[:12]
    home = cache_root() / "remote" / hashlib.sha1(repr((uri, skip)).encode()).hexdigest()[:16]
    local = home / stamp
    if not local.exists():
        with atomic_dir(local, keep_existing=True) as tmp:  # several workers of a node may fetch at once
            copy_tree(uri, str(tmp), skip=skip)
        for old in home.iterdir():  # earlier versions (a new best replaced them), once no loader can still be on them
            if old.name != stamp and not old.name.startswith(".") and time.time() - old.stat().st_mtime > 600:
                shutil.rmtree(old, ignore_errors=True)
    return local

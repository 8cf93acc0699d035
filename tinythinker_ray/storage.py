"""Run-directory I/O: atomic writes, append-only JSONL, and the manifest of finished steps.

Paths may be local or s3:// / gs:// (through pyarrow filesystems). Every artifact is written to a temporary
name and renamed, so a reader never sees half a file; appended JSONL is flushed per block so a killed run
loses at most the block in flight.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import DataError


def is_remote(path: str) -> bool:
    return "://" in str(path)


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


class Manifest:
    """`manifest.json` at a run directory's root: which steps finished, with their outputs."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / "manifest.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"steps": {}}

    def done(self, step: str) -> bool:
        return step in self.data["steps"]

    def get(self, step: str) -> dict | None:
        return self.data["steps"].get(step)

    def mark(self, step: str, **outputs) -> None:
        # Re-read first: several drivers in one run (pipeline, sft, reflect) each hold a Manifest.
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
        self.data["steps"][step] = outputs
        atomic_write_json(self.path, self.data)


class RunLock:
    """An exclusive lock on a run directory: a second run on the same directory refuses instead of interleaving.

    flock is released by the kernel when the holder dies, so a SIGKILLed run never leaves a stale lock.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self._f = None

    def __enter__(self) -> RunLock:
        import fcntl

        from .errors import TinyThinkerError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a+")
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.seek(0)
            holder = self._f.read().strip() or "another process"
            self._f.close()
            raise TinyThinkerError(f"run directory {self.path.parent} is in use by {holder}; "
                                   "wait for it to finish or choose another --run_dir") from None
        self._f.seek(0)
        self._f.truncate()
        self._f.write(f"pid {os.getpid()}")
        self._f.flush()
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._f:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()


class RunMirror:
    """A remote run directory (s3://, gs://, file://) worked on through a local mirror.

    `pull()` brings down what a previous (possibly killed) run left, so a rerun resumes; `push()` uploads the
    mirror after every finished step. Local paths pass through untouched. Ray Train workers, which may sit on
    other nodes, do not write to the driver's mirror: they checkpoint straight to the remote and upload their
    outputs there (train/loop.py, via `mirror_of`, `copy_tree`).
    """

    def __init__(self, run_dir: str):
        self.uri = str(run_dir)
        self.remote = is_remote(self.uri)
        if self.remote:
            import hashlib

            from .models import cache_root

            self.local = cache_root() / "runs" / hashlib.sha1(self.uri.encode()).hexdigest()[:16]
        else:
            self.local = Path(self.uri)

    def _fs(self):
        from pyarrow import fs

        return fs.FileSystem.from_uri(self.uri)

    def pull(self) -> Path:
        if self.remote:
            from pyarrow import fs

            filesystem, path = self._fs()
            self.local.mkdir(parents=True, exist_ok=True)
            # beside the mirror, not in it: training finds the remote its out_dir stands for (mirror_of)
            self.local.with_name(self.local.name + ".uri").write_text(self.uri)
            if filesystem.get_file_info(path).type == fs.FileType.Directory:
                fs.copy_files(path, str(self.local), source_filesystem=filesystem,
                              destination_filesystem=fs.LocalFileSystem())
        return self.local

    def push(self) -> None:
        if self.remote:
            from pyarrow import fs

            filesystem, path = self._fs()
            filesystem.create_dir(path, recursive=True)
            fs.copy_files(str(self.local), path, source_filesystem=fs.LocalFileSystem(),
                          destination_filesystem=filesystem)


def mirror_of(path: str | os.PathLike) -> str | None:
    """The remote URI a folder inside a RunMirror's local mirror stands for, or None for a plain local folder."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if folder.name and (marker := folder.with_name(folder.name + ".uri")).is_file():
            rest = path.relative_to(folder).as_posix()
            return marker.read_text().rstrip("/") + ("" if rest == "." else "/" + rest)
    return None


def copy_tree(src: str, dst: str, skip: Iterable[str] = ()) -> None:
    """Copy a folder's entries (but those named in `skip`) between local paths and remote URIs, overwriting."""
    from pyarrow import fs

    def resolve(where: str):
        return fs.FileSystem.from_uri(where) if is_remote(where) else (fs.LocalFileSystem(), str(Path(where)))

    (src_fs, src_path), (dst_fs, dst_path) = resolve(src), resolve(dst)
    if src_fs.get_file_info(src_path).type != fs.FileType.Directory:
        return
    dst_fs.create_dir(dst_path, recursive=True)
    skip = set(skip)
    for info in src_fs.get_file_info(fs.FileSelector(src_path)):
        if info.base_name in skip:
            continue
        target = f"{dst_path}/{info.base_name}"
        if info.type == fs.FileType.Directory:  # copy_files makes the folders below the target, not the target
            dst_fs.create_dir(target, recursive=True)
        fs.copy_files(info.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)


@contextmanager
def workspace(cfg):
    """A driver's hold on cfg.run_dir: a remote run directory is pulled into a local mirror and pushed back when
    the driver ends, finished or not; the lock keeps a second driver on this machine out. Yields (cfg with
    run_dir = the local folder, the mirror)."""
    from .config import with_overrides

    mirror = RunMirror(cfg.run_dir)
    local = mirror.pull()
    if mirror.remote:
        cfg = with_overrides(cfg, {"run_dir": str(local)})
    with RunLock(local):
        try:
            yield cfg, mirror
        finally:
            mirror.push()  # what was done reaches a remote run_dir even when a step failed

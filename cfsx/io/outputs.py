"""Safe outputs: one guard and one lock for every command that writes, and atomic replacement.

Every output is written under a temporary name beside it and renamed when complete, so a reader
never sees a half-written file. Before any work, ``claim_outputs`` refuses outputs that would harm
something (a device node, a directory that is not a cfsx output, a file that is also an input) and
takes an exclusive lock ``OUTPUT.lock`` holding host and pid, so two runs never write one output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from cfsx.errors import DataError, OutputError

# Errors of the file system rather than of the data: they name the output and exit as output problems.
# Free space kept when writing HDF5: room for libhdf5's chunk and metadata caches to be flushed.
HDF5_SPACE_MARGIN = 16 * 2**20
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


def lock_path(output: str | Path) -> Path:
    """The lock file of an output: ``OUTPUT.lock`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _same_file(first: Path, second: Path) -> bool:
    if _absolute(first) == _absolute(second) or first.resolve() == second.resolve():
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(first, second)
    return False


def _inside(path: Path, directory: Path) -> bool:
    return directory.resolve() in path.resolve().parents


def check_output(output: str | Path, *, inputs: Iterable[str | Path] = (), directory: bool = False) -> Path:
    """Refuse an output that cannot or must not be written; return it as a Path.

    Refused: ``-`` (no command writes to standard output), an existing path that is not a regular
    file (or not a directory, for ``directory`` outputs), a missing or unwritable parent folder, and
    an output that is also an input (same resolved path or inode) or, for a directory, holds one.
    """
    if str(output) == "-":
        raise OutputError("cfsx writes files, not standard output: give -o a file name")
    output = Path(output)
    if output.name in ("", ".", "..") or not _absolute(output).name:
        raise OutputError(f"output {str(output)!r} has no name of its own: give -o a file or directory name")
    if output.exists() or output.is_symlink():
        mode = output.stat().st_mode if output.exists() else 0
        if directory and not stat.S_ISDIR(mode):
            raise OutputError(f"output {output} exists and is not a directory")
        if not directory and stat.S_ISDIR(mode):
            raise OutputError(f"output {output} is a directory; give a file name")
        if not directory and not stat.S_ISREG(mode):
            raise OutputError(f"output {output} exists and is not a regular file (a device, pipe or broken link)")
    parent = _absolute(output).parent
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {parent} is not writable")
    for source in inputs:
        source = Path(source)
        if _same_file(output, source):
            raise OutputError(f"output {output} is also an input; write to another file")
        if directory and output.is_dir() and _inside(source, output):
            raise OutputError(f"output directory {output} holds the input {source}; write to another directory")
    return output


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ('' when unknown): tells a reused pid apart."""
    with contextlib.suppress(OSError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    return ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not started or _process_start(pid) in ("", started)


class OutputLock:
    """An exclusive lock on an output, held as the file ``OUTPUT.lock`` with this run's host and pid.

    The lock file is created by a hard link, which is atomic also on network file systems. A lock
    left by a dead process of this host is taken over; one held on another host is only reported.
    """

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self.path = lock_path(output)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            if self._try_create():
                self.held = True
                return
            holder = self._holder()
            if holder is None:  # vanished meanwhile, or unreadable: try again
                time.sleep(0.05)
                continue
            stale = holder.get("host") == self.owner["host"] and not _alive(
                int(holder.get("pid", -1)), str(holder.get("started", ""))
            )
            if not stale:
                where = "this host" if holder.get("host") == self.owner["host"] else f"host {holder.get('host')}"
                hint = "" if holder.get("host") == self.owner["host"] else f"; if that run is gone, delete {self.path}"
                raise OutputError(
                    f"output {self.output} is in use by another cfsx run (pid {holder.get('pid')} on {where}){hint}"
                )
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise OutputError(f"cannot take the lock {self.path}; another run keeps taking it")

    def _try_create(self) -> bool:
        temporary = self.path.with_name(f".{self.path.name}.{self.owner['host']}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(self.owner))
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as error:
            raise OutputError(f"cannot create the lock {self.path}: {error.strerror}") from None
        finally:
            temporary.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"host": "unknown", "pid": "unknown"}  # not ours to judge: report it, never steal it
        return holder if isinstance(holder, dict) else {"host": "unknown", "pid": "unknown"}

    def release(self) -> None:
        if self.held and self._holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextlib.contextmanager
def claim_outputs(
    files: Iterable[str | Path | None] = (),
    directories: Iterable[str | Path | None] = (),
    inputs: Iterable[str | Path | None] = (),
) -> Iterator[None]:
    """Check every output against the inputs, then hold a lock on each until the block ends."""
    sources = [Path(path) for path in inputs if path is not None]
    files = [check_output(path, inputs=sources) for path in files if path is not None]
    directories = [check_output(path, inputs=sources, directory=True) for path in directories if path is not None]
    with contextlib.ExitStack() as stack:
        for output in [*files, *directories]:
            stack.enter_context(OutputLock(output))
        yield


def output_failure(error: OSError, path: str | Path) -> OutputError | None:
    """The OutputError for a failed write to ``path``, or None when the error is not the file system's."""
    if error.errno not in _OUTPUT_ERRNOS:
        return None
    return OutputError(f"cannot write {path}: {os.strerror(error.errno)}")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a file-system error of the block (disk full, quota, read-only) into one OutputError naming ``path``."""
    try:
        yield
    except OSError as error:
        failure = output_failure(error, path)
        if failure is None:
            raise
        raise failure from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    A failed write (disk full, quota, read-only) becomes one OutputError naming ``path``.
    """
    path = check_output(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path):
            yield temporary
            check_output(path)  # still a regular file (or nothing) at the moment of the rename
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def check_free_space(path: str | Path, needed: int, name: str | Path | None = None) -> None:
    """Refuse to write ``needed`` more bytes to ``path`` unless they fit with HDF5_SPACE_MARGIN to spare.

    libhdf5 cannot recover from a full disk: after one failed write its caches cannot be flushed or
    closed, and the process crashes when it exits. Writers therefore stop before the disk is full.
    """
    free = shutil.disk_usage(_absolute(path).parent).free
    if free < needed + HDF5_SPACE_MARGIN:
        raise OutputError(
            f"cannot write {name or path}: No space left on device "
            f"({free / 2**20:.1f} MB free, {(needed + HDF5_SPACE_MARGIN) / 2**20:.1f} MB needed)"
        )


@contextlib.contextmanager
def hdf5_writer(path: str | Path, mode: str = "w", *, name: str | Path | None = None, size: int = 0) -> Iterator:
    """An h5py.File open for writing ``size`` bytes (more with check_free_space) that fails cleanly.

    On an error the file is emptied before it is closed, so the cached writes land and the error
    is reported as one line; ``name`` is the output's final name, for messages.
    """
    import h5py

    check_free_space(path, size, name)
    file = h5py.File(path, mode)
    try:
        yield file
        file.flush()
        file.close()
    except BaseException:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
        with contextlib.suppress(Exception):
            file.close()
        raise


@contextlib.contextmanager
def atomic_hdf5(path: str | Path, mode: str = "w", copy_from: str | Path | None = None, size: int = 0) -> Iterator:
    """An h5py.File on a temporary file beside ``path``, renamed to ``path`` when the block succeeds.

    With ``copy_from``, the temporary file starts as a copy of that file (to extend it).
    """
    with atomic_path(path) as temporary:
        if copy_from is not None:
            check_free_space(temporary, Path(copy_from).stat().st_size + size, path)
            shutil.copyfile(copy_from, temporary)
        with hdf5_writer(temporary, mode, name=path, size=size) as file:
            yield file


@contextlib.contextmanager
def atomic_directory(path: str | Path, marker: str) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; it replaces ``path`` only on success.

    An existing ``path`` is replaced only if it holds ``marker`` (it is an earlier output of the
    same kind), so a mistyped output never wipes someone's directory.
    """
    path = check_output_directory(path, marker)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        with writing(path):
            temporary.mkdir()
            yield temporary
            if path.exists():
                shutil.rmtree(path)
            temporary.rename(path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def check_output_directory(path: str | Path, marker: str) -> Path:
    """Refuse an output directory that ``atomic_directory`` would refuse, before any work is done: a non-empty
    directory that is not an earlier output of the same kind (no ``marker`` in it)."""
    path = check_output(path, directory=True)
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise OutputError(f"output {path} is a non-empty directory that is not a cfsx output (no {marker})")
    return path


def existing_input(path: str | Path, what: str = "file") -> Path:
    """Refuse a missing input, or a directory where a file is expected, with one clear line."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a {what}")
    if not path.exists():
        raise DataError(f"no such {what}: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file")
    return path

"""Atomic outputs: a directory or file appears whole, or the previous one stays as it was.

A run writes everything into a hidden staging directory next to the destination, then swaps it
in with renames on the same filesystem. A crash, a full disk, Ctrl-C or SIGTERM before the swap
leaves the previous outputs untouched, and the staging directory is removed on the way out.
The swap itself (two renames) holds SIGINT and SIGTERM until it is done, so an interruption
never falls between the renames and leaves neither folder under the name.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EACCES: "no permission to write there: choose another folder",
    errno.EPERM: "no permission to write there: choose another folder",
    errno.EROFS: "the filesystem is read-only: choose another folder",
    errno.ENOTDIR: "a file stands where a folder is needed: remove it or choose another path",
    errno.EEXIST: "a file stands where a folder is needed: remove it or choose another path",
}


class OutputError(Exception):
    """An output file or directory that cannot be written; earlier outputs are intact."""


def describe_os_error(exc: OSError) -> str:
    """The system's reason (``No space left on device``) and what to do about it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno) if exc.errno is not None else None
    return f"{reason} ({hint})" if hint else reason


@contextmanager
def staged_directory(target: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``target`` when the block succeeds.

    With ``keep_existing``, files already in ``target`` that the block does not write are
    carried over (``ppcfin report DIR`` re-renders into the folder it reads); otherwise the new
    directory holds only this run's files, never a mix of old and new.

    Raises
    ------
    OutputError
        The folder cannot be written (permissions, full disk...): the message names ``target``
        and the reason; ``target`` is as it was and no staging directory is left behind. Any
        other exception in the block (Ctrl-C included) also leaves ``target`` as it was.
    """
    target = Path(target)
    stage: Path | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            stage.chmod(0o755)  # mkdtemp's 0700 would make the published folder private
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
        try:
            yield stage
            if keep_existing and target.is_dir():
                for old in target.iterdir():
                    if not (stage / old.name).exists() and old.is_file():
                        shutil.copy2(old, stage / old.name)
            with _signals_held():
                _swap_in(stage, target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, target: Path) -> None:
    """Replace ``target`` by ``stage`` with two renames (POSIX: each one atomic)."""
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        retired.rmdir()
        os.replace(target, retired)
        try:
            os.replace(stage, target)
        except OSError:
            os.replace(retired, target)  # put the previous outputs back
            raise
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(stage, target)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a few system calls, then deliver the first one that came.

    Python runs signal handlers in the main thread only, and only from there can they be
    changed; elsewhere the block runs unprotected (no handler could interrupt it anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # now the usual handler (KeyboardInterrupt...) runs


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file via a temporary sibling and a rename.

    Raises
    ------
    OutputError
        The file cannot be written; the previous file (if any) is intact and the temporary
        sibling is removed, also when the write is interrupted.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: Path) -> None:
    with suppress(OSError):  # a parent that is a file, or gone: nothing to remove
        path.unlink(missing_ok=True)

"""Atomic outputs: a directory or file appears whole, or the previous one stays as it was.

A run writes everything into a hidden staging directory next to the destination, then swaps it
in with renames on the same filesystem. A crash, a full disk, Ctrl-C or SIGTERM before the swap
leaves the previous outputs untouched, and the staging directory is removed on the way out.
What ``--out`` may replace at all is the rule of :mod:`optimizer.door.outputs`.
The swap itself (two renames) holds SIGINT, SIGTERM and SIGHUP until it is done, so an interruption
never falls between the renames and leaves neither folder under the name.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from models.atomic_file import write_atomically
from optimizer.door.outputs import (
    MANIFEST_NAME,
    STAGE_MARKER,
    OutputError,
    OutputRefused,
    check_output_folder,
    clean_stale,
    describe_os_error,
    read_manifest,
    retired_name,
    stage_prefix,
    write_manifest,
)

__all__ = [
    "OutputError",
    "OutputRefused",
    "describe_os_error",
    "staged_directory",
    "staged_files",
    "write_text_atomic",
]

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Held while a finished folder is swapped in; delivered once the swap is done."""


@contextmanager
def _stage_for(target: Path) -> Iterator[Path]:
    """A fresh hidden staging folder beside ``target``, removed on the way out."""
    stage: Path | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(target)
            stage = Path(tempfile.mkdtemp(prefix=stage_prefix(target), dir=target.parent))
            stage.chmod(0o755)  # mkdtemp's 0700 would make the published folder private
            (stage / STAGE_MARKER).write_text(str(os.getpid()), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
        yield stage
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _written(stage: Path) -> list[str]:
    return sorted(n for n in os.listdir(stage) if n not in (STAGE_MARKER, MANIFEST_NAME))


@contextmanager
def staged_directory(
    target: str | Path,
    *,
    command: str,
    force: bool = False,
    protect: Iterable[Path] = (),
) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``target`` when the block succeeds.

    The new directory holds only this run's files and a manifest naming them
    (:mod:`optimizer.door.outputs`), never a mix of old and new. ``target`` is checked against the
    ``--out`` rule before the block runs and again right before the swap.

    Raises
    ------
    OutputRefused
        ``target`` is something ppcfin may not replace (a folder of the user's files, a file,
        a device, a link...): nothing was written.
    OutputError
        The folder cannot be written (permissions, full disk...): the message names ``target``
        and the reason; ``target`` is as it was and no staging directory is left behind. Any
        other exception in the block (Ctrl-C included) also leaves ``target`` as it was.
    """
    target = Path(target)
    protect = tuple(protect)
    check_output_folder(target, command=command, force=force, protect=protect)
    with _stage_for(target) as stage:
        try:
            yield stage
            write_manifest(stage, command, _written(stage))
            (stage / STAGE_MARKER).unlink()
            check_output_folder(target, command=command, force=force, protect=protect)
            with _signals_held():
                _swap_in(stage, target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None


@contextmanager
def staged_files(folder: str | Path, *, command: str, force: bool = False) -> Iterator[Path]:
    """Yield a staging directory whose files replace their namesakes in ``folder``, in place.

    ``ppcfin report DIR`` re-renders into the folder it reads: everything else in ``DIR``
    (sub-folders, links, the user's notes) stays exactly as it was. A file it would overwrite
    must be one ppcfin wrote (listed in the manifest), or ``force`` given. The files are
    renamed in one after another with signals held, then the manifest is updated.
    """
    folder = Path(folder)
    with _stage_for(folder) as stage:
        try:
            yield stage
            names = _written(stage)
            check_output_folder(folder, command=command, force=force, replacing=names)
            manifest = read_manifest(folder)
            owned = set(manifest["files"]) if manifest else set()
            with _signals_held():
                for name in names:
                    os.replace(stage / name, folder / name)
                write_manifest(stage, command, owned | set(names))
                os.replace(stage / MANIFEST_NAME, folder / MANIFEST_NAME)
        except OSError as exc:
            raise OutputError(f"cannot write {folder}: {describe_os_error(exc)}") from None


def _swap_in(stage: Path, target: Path) -> None:
    """Replace ``target`` by ``stage`` with two renames (POSIX: each one atomic)."""
    if os.path.lexists(target):
        retired = Path(tempfile.mkdtemp(prefix=retired_name(target), dir=target.parent))
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
    """Hold SIGINT, SIGTERM and SIGHUP for a few system calls, then deliver the first that came.

    Python runs signal handlers in the main thread only, and only from there can they be
    changed; elsewhere the block runs unprotected (no handler could interrupt it anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
        for sig in HELD_SIGNALS
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
    try:
        return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from None

"""Atomic outputs: a directory or file appears whole, or the previous one stays as it was.

A run writes everything into a hidden staging directory next to the destination, then swaps it
in with renames on the same filesystem. A crash, a full disk or Ctrl-C before the swap leaves
the previous outputs untouched; the staging directory is removed on the way out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(Exception):
    """An output file or directory that cannot be written; earlier outputs are intact."""


@contextmanager
def staged_directory(target: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``target`` when the block succeeds.

    With ``keep_existing``, files already in ``target`` that the block does not write are
    carried over (``ppcfin report DIR`` re-renders into the folder it reads); otherwise the new
    directory holds only this run's files, never a mix of old and new.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        stage.chmod(0o755)  # mkdtemp's 0700 would make the published folder private
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        yield stage
        if keep_existing and target.is_dir():
            for old in target.iterdir():
                if not (stage / old.name).exists() and old.is_file():
                    shutil.copy2(old, stage / old.name)
        _swap_in(stage, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file via a temporary sibling and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

"""Write a file whole or not at all: into a temporary file beside it, then rename over it.

The one atomic writer of the project: scenario sets (:meth:`models.scenarios.ScenarioSet.save`),
the door's JSON and CSV files (:func:`optimizer.door.atomic.write_text_atomic`) and the report
files (:mod:`reports.pdf`, :mod:`reports.excel`) all go through :func:`write_atomically`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_process_umask()
"""Mode of a written file: what ``open`` would give it under the user's umask (read once, at
import), where ``mkstemp`` would leave it private to the user."""


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in the target folder, then rename it to ``path``.

    The rename is atomic on one filesystem, so readers see the old file or the new one, never a
    half-written one. On any error, Ctrl-C included, the temporary file is removed, the old file
    is untouched and the error propagates (an ``OSError`` as it is: callers at the door turn it
    into one message).

    Parameters
    ----------
    path : path-like
        The file to write; its folder is created when missing.
    write : callable
        Writes the whole content to the temporary path it is given (a hidden sibling of
        ``path``, ``.<name>.<random>.tmp``).

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):  # a parent that is gone: nothing to remove
            tmp.unlink(missing_ok=True)
        raise
    return target

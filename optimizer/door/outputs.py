"""What ``--out`` may replace: only what ppcfin itself wrote, and never the user's own files.

A folder written by ppcfin carries a small manifest, ``ppcfin-manifest.json``, naming the
command that wrote it and every file it holds. ``--out DIR`` then may replace ``DIR`` only when

- nothing stands there, or an empty folder does; or
- ``DIR`` is a folder whose manifest lists every entry it holds (a file the user added since,
  such as notes, makes it the user's folder again);
- or, with ``--force``, any other folder — but never the case's own folder (it holds the case
  file), the home folder, the filesystem root or the folder the command runs in (or one above
  it), and never something that is not a folder: a file, a device, a FIFO, a socket or a
  symbolic link (to anything) is refused whatever the flags.

Everything is checked before any work starts, and again just before the finished folder is
swapped in, so a long run never ends by deleting something that appeared meanwhile.

A killed run (SIGKILL, power loss) can leave its hidden staging folder (``.DIR.stage-…``) or the
previous outputs moved aside (``.DIR.old-PID-…``) next to ``DIR``. The next write to ``DIR``
removes staging folders whose process is gone, and puts moved-aside outputs back under ``DIR``
when the swap never completed (or removes them when it did). Only folders that carry
ppcfin's own marker are touched.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from models.errors import OutputError

__all__ = [
    "MANIFEST_NAME",
    "STAGE_MARKER",
    "OutputError",
    "OutputRefused",
    "check_output_file",
    "check_output_folder",
    "clean_stale",
    "describe_os_error",
    "read_manifest",
    "retired_name",
    "stage_prefix",
    "write_manifest",
]

MANIFEST_NAME = "ppcfin-manifest.json"
"""The file that marks a folder as written by ppcfin, with the command and the files."""
STAGE_MARKER = ".ppcfin-stage"
"""Inside a staging folder: the process id that is writing it."""
MANIFEST_FORMAT = 1
_SHOWN = 5
"""Foreign entries named in a refusal before "and N more"."""

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EACCES: "no permission to write there: choose another folder",
    errno.EPERM: "no permission to write there: choose another folder",
    errno.EROFS: "the filesystem is read-only: choose another folder",
    errno.ENOTDIR: "a file stands where a folder is needed: remove it or choose another path",
    errno.EEXIST: "a file stands where a folder is needed: remove it or choose another path",
}


class OutputRefused(OutputError):
    """Something ppcfin may not replace stands where an output would go (a usage error).

    In the output branch of :mod:`models.errors` (whose :class:`OutputError` is re-exported
    here), with a usage error's exit code: nothing was done.
    """

    exit_code = 2


def describe_os_error(exc: OSError) -> str:
    """The system's reason (``No space left on device``) and what to do about it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno) if exc.errno is not None else None
    return f"{reason} ({hint})" if hint else reason


def stage_prefix(target: Path) -> str:
    """Name prefix of the staging folders of ``target`` (hidden siblings)."""
    return f".{target.name}.stage-"


def retired_name(target: Path) -> str:
    """Prefix of the name the previous outputs take while the new folder is swapped in."""
    return f".{target.name}.old-{os.getpid()}-"


def write_manifest(folder: Path, command: str, files: Iterable[str]) -> None:
    """Mark ``folder`` as ppcfin's: the command that wrote it and the files it holds."""
    from optimizer import __version__

    manifest = {
        "written_by": "ppcfin",
        "format_version": MANIFEST_FORMAT,
        "ppcfin_version": __version__,
        "command": command,
        "files": sorted(set(files) - {MANIFEST_NAME}),
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``, or None when it has none (or an unreadable or forged one)."""
    path = folder / MANIFEST_NAME
    try:
        if not stat.S_ISREG(path.lstat().st_mode) or path.lstat().st_size > 1_000_000:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("written_by") == "ppcfin"):
        return None
    files = data.get("files")
    if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        return None
    return data


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something that is not a folder"


def _check_parents(target: Path) -> None:
    """The nearest existing ancestor must be a folder (else nothing can be written)."""
    for parent in target.absolute().parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
        if not stat.S_ISDIR(mode):
            raise OutputError(
                f"cannot write {target}: {parent} is {_kind(mode)} (a file stands where a "
                "folder is needed: remove it or choose another path)"
            )
        return


def _protected_reason(target: Path, protect: Iterable[Path]) -> str | None:
    """Why ``target`` may never be replaced, even with --force (None: it may)."""
    real = target.resolve()
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no HOME and no password entry
        home = None
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor):
        return "it is the filesystem root"
    if home is not None and real == home:
        return "it is your home folder"
    if real == cwd or real in cwd.parents:
        return "it is the folder this command runs in (or holds it)"
    for path in protect:
        with suppress(OSError, ValueError):
            resolved = Path(path).resolve()
            if real == resolved or real in resolved.parents:
                return f"it holds {path}, an input of this run"
    return None


def _standing(target: Path, what_to_do: str) -> os.stat_result | None:
    """What stands at ``target`` (None: nothing, and a folder can be made there); a symbolic
    link, to anything, is refused: ppcfin writes only through real paths."""
    try:
        info = target.lstat()
    except (FileNotFoundError, NotADirectoryError):
        _check_parents(target)
        return None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
    if stat.S_ISLNK(info.st_mode):
        raise OutputRefused(
            f"{target} is a symbolic link (to {os.readlink(target)}); ppcfin writes its outputs "
            f"only through real paths: {what_to_do}"
        )
    return info


def check_output_folder(
    target: str | Path,
    *,
    command: str,
    force: bool = False,
    protect: Iterable[Path] = (),
    replacing: Iterable[str] | None = None,
) -> None:
    """Refuse an output folder that ppcfin may not replace; see the module notes for the rule.

    Parameters
    ----------
    target : path
        The ``--out`` folder.
    command : str
        The command asking (for messages).
    force : bool
        Replace a folder ppcfin did not write (never a non-folder, never a protected folder).
    protect : iterable of Path
        Input files of the run (the case and its tables): a folder holding one is never replaced.
    replacing : iterable of str, optional
        Only these names in ``target`` will be replaced and everything else is kept
        (``ppcfin report``); the check then concerns those names only.

    Raises
    ------
    OutputRefused
        Something ppcfin may not replace stands at ``target`` (exit 2): the message says what
        and what to do.
    OutputError
        Nothing can be written there (a file stands where a parent folder is needed).
    """
    target = Path(target)
    flag = f"{command} --out {target}"
    info = _standing(target, f"give a new folder for `{flag}`")
    if info is None:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise OutputRefused(
            f"{target} is {_kind(info.st_mode)}, not a folder ppcfin wrote; it is left as it "
            f"is (--force never replaces a non-folder): choose another path for --out"
        )
    reason = _protected_reason(target, protect)
    if reason is not None and replacing is None:
        raise OutputRefused(
            f"{target} cannot be an output folder: {reason}; choose a new folder for --out"
        )
    manifest = read_manifest(target)
    owned = set(manifest["files"]) | {MANIFEST_NAME} if manifest else set()
    try:
        entries = sorted(os.listdir(target))
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
    names = set(entries) if replacing is None else set(entries) & set(replacing)
    if replacing is not None:
        # in place: only the files about to be overwritten must be ppcfin's and plain files
        for name in sorted(names):
            mode = (target / name).lstat().st_mode
            if not stat.S_ISREG(mode):
                raise OutputRefused(
                    f"{target / name} is {_kind(mode) if not stat.S_ISDIR(mode) else 'a folder'}"
                    f"; `{command}` would write a file there: move it away first"
                )
    foreign = sorted(n for n in names if n not in owned)
    if not foreign or force:
        return
    shown = ", ".join(foreign[:_SHOWN]) + (
        f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
    )
    whose = (
        "files that ppcfin did not write"
        if manifest
        else "files, and no ppcfin manifest (it is not a folder ppcfin wrote)"
    )
    raise OutputRefused(
        f"{target} holds {whose}: {shown}. ppcfin replaces only an empty folder or one it "
        f"wrote itself: choose a new folder for --out, move those files away, or add --force "
        f"to replace {target} with everything in it"
    )


def check_output_file(target: str | Path, is_ours) -> None:
    """Refuse an output file path where something ppcfin did not write stands.

    ``is_ours(path) -> bool`` says whether an existing regular file is one ppcfin wrote (a
    scenario set it can read back); such a file is replaced atomically, anything else is
    refused.
    """
    target = Path(target)
    info = _standing(target, "give a new file for --out")
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        raise OutputRefused(f"{target} is a folder; give a file name for --out")
    if not stat.S_ISREG(info.st_mode):
        raise OutputRefused(
            f"{target} is {_kind(info.st_mode)}; it is left as it is: give a new file for --out"
        )
    if not is_ours(target):
        raise OutputRefused(
            f"{target} is a file ppcfin did not write (not a scenario set it can read); it is "
            "left as it is: give a new file name for --out, or remove it yourself"
        )


_PID = re.compile(r"-(\d+)-")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(target: Path) -> None:
    """Remove what a killed earlier write to ``target`` left beside it (see module notes)."""
    parent = target.parent
    try:
        siblings = list(parent.iterdir())
    except OSError:
        return
    stage, old = stage_prefix(target), f".{target.name}.old-"
    for entry in siblings:
        with suppress(OSError):
            if entry.is_symlink() or not entry.is_dir():
                continue
            if entry.name.startswith(stage):
                marker = entry / STAGE_MARKER
                pid_text = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
                if pid_text.isdigit() and not _alive(int(pid_text)):
                    shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(old) and read_manifest(entry) is not None:
                match = _PID.match(entry.name[len(old) - 1 :])
                if match is None or _alive(int(match.group(1))):
                    continue
                if os.path.lexists(target):
                    shutil.rmtree(entry, ignore_errors=True)  # the swap had completed
                else:
                    os.replace(entry, target)  # killed between the renames: put it back

"""Reading one file safely: a regular file, named as what it must be, bounded, strict UTF-8.

A case may name other files (tables, a base case), so a file's name must say what it is before a
byte of it is read: ``.yaml``/``.yml`` for cases, ``.csv`` for tables. Directories, devices and
pipes are refused, and so are files too large to be a case and bytes that are not UTF-8. Every
problem is a :class:`ReadProblem`; :mod:`models.yaml_io` and :mod:`models.csv_io` parse the text.
"""

from __future__ import annotations

import stat
from collections.abc import Collection
from pathlib import Path

from models.errors import InputError

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file read at all (CSV tables; csv parses in C, quickly)."""
CASE_SUFFIXES = (".yaml", ".yml")
"""How the name of a case, an overlay or a base case ends (in any letter case)."""
TABLE_SUFFIXES = (".csv",)
"""How the name of a CSV table ends (in any letter case)."""
SHOWN_CHARS = 40
"""Most characters of a file's text that a message quotes (a token, a key)."""


class ReadProblem(InputError):
    """A file that cannot be read as a case; ``field`` locates it when known.

    ``plain`` says the same without quoting any of the file's text (for a file the case only
    names, which may be anything); it is ``message`` when that quotes nothing.
    """

    def __init__(
        self, message: str, field: str = "(file)", value: str = "-", plain: str | None = None
    ):
        super().__init__(message)
        self.message, self.field, self.value = message, field, value
        self.plain = message if plain is None else plain


def short(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), for a message to quote."""
    return text if len(text) <= limit else text[:limit] + "…"


def read_text(
    path: Path, max_bytes: int = MAX_FILE_BYTES, suffixes: Collection[str] | None = None
) -> str:
    """Read a file as strict UTF-8, with a size limit; problems become :class:`ReadProblem`.

    Only regular files are read: a device or a pipe (``/dev/zero``, ``/dev/stdin``) would never
    end. At most ``max_bytes + 1`` bytes are read even if the size on disk says less. With
    ``suffixes`` (e.g. :data:`TABLE_SUFFIXES`), a file whose name ends otherwise is refused
    before it is opened.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ReadProblem("is a directory, not a case file")
        if not stat.S_ISREG(info.st_mode):
            raise ReadProblem("is not a regular file (a device or a pipe?); give a case file")
        if suffixes is not None and path.suffix.lower() not in suffixes:
            raise ReadProblem(_wrong_suffix(suffixes))
        hint = (
            "; move big tables to CSV files ({csv: file.csv})" if max_bytes < MAX_FILE_BYTES else ""
        )
        if info.st_size > max_bytes:
            raise ReadProblem(
                f"file is {info.st_size:,} bytes; a case file must be under {max_bytes:,}{hint}"
            )
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # /proc-like files report a size of 0
        if len(data) > max_bytes:
            raise ReadProblem(f"file is over {max_bytes:,} bytes; a case file must be under that")
    except (FileNotFoundError, NotADirectoryError):
        raise ReadProblem("file not found") from None
    except PermissionError:
        raise ReadProblem("permission denied") from None
    except OSError as exc:
        raise ReadProblem(f"cannot be read: {exc.strerror or exc}") from None
    except ValueError:  # os.stat refuses a path with a NUL character
        raise ReadProblem("not a usable file name (it holds a NUL character)") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadProblem(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _wrong_suffix(suffixes: Collection[str]) -> str:
    ends = " or ".join(suffixes)
    if tuple(suffixes) == TABLE_SUFFIXES:
        what = "a table (csv: …) must be a CSV file"
    elif tuple(suffixes) == CASE_SUFFIXES:
        what = "a case, an overlay and a base_case must be YAML files"
    else:
        what = "the file must be one"
    return f"the file name does not end in {ends}; {what} whose name ends so (it was not read)"

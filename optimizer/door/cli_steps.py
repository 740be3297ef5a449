"""The steps commands share around their own work: load the case (its warnings on stderr),
refuse bad options before any work, build the simulation recipe of the options, stage the output
folder, say what was written."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from models import Case, Recipe, load_case
from models.errors import OptionError
from optimizer.door.cli_app import console, err_console
from optimizer.door.cli_widgets import shown

FORMATS = ("html", "pdf", "xlsx")


def load(path: Path | None) -> Case:
    """Load the case and print its warnings (money that can never be placed) on stderr."""
    from models import case_warnings

    loaded = load_case(path)
    for warning in case_warnings(loaded):
        err_console.print(f"[yellow]Warning:[/] {shown(warning)}", highlight=False)
    return loaded


def start(path: Path | None, out: Path, command: str, force: bool, sampling: str) -> Case:
    """The case loaded, its ``--out`` folder and ``--sampling`` checked, before any work."""
    loaded = load(path)
    check_out(out, command, force, loaded)
    check_sampling(sampling)
    return loaded


def check_sampling(sampling: str) -> None:
    """Refuse an unknown ``--sampling`` before any work, naming the valid ones."""
    from models.options import check_choice
    from models.simulate import Method

    check_choice(sampling, Method, "--sampling")


def out_rule(command: str, force: bool, case: Case) -> dict:
    """The ``--out`` rule's arguments: a folder holding the case file is never replaced."""
    protect = (Path(case.source_file),) if case.source_file else ()
    return {"command": command, "force": force, "protect": protect}


def check_out(out: Path, command: str, force: bool, case: Case) -> None:
    """Refuse an output folder ppcfin may not replace before any work starts."""
    from optimizer.door.outputs import check_output_folder

    check_output_folder(out, **out_rule(command, force, case))


def staged(out: Path, command: str, force: bool, case: Case) -> AbstractContextManager[Path]:
    """The ``--out`` folder staged: written whole on success, as it was on any failure."""
    from optimizer.door.atomic import staged_directory

    return staged_directory(out, **out_rule(command, force, case))


def report_formats(text: str) -> list[str]:
    """``--format``'s comma-separated report formats, each one of :data:`FORMATS`."""
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise OptionError(f"--format {text!r}: choose from {', '.join(FORMATS)}")
    return chosen


def dtype_of(float32: bool) -> str:
    """The loss matrix's dtype that ``--float32`` asks for."""
    return "float32" if float32 else "float64"


def recipe_of(
    scenarios: int, seed: int, sampling: str, jobs: int, scheduler: str | None, float32: bool
) -> Recipe:
    """The one simulation recipe of a command's options (``-n``, ``--seed``, ``--sampling``,
    ``--jobs``, ``--scheduler``, ``--float32``), refused whole before any work."""
    return Recipe(scenarios, seed, sampling, dtype_of(float32), jobs, scheduler)


def with_targets(case: Case, min_gap_closed: float | None, min_households: float | None) -> Case:
    """The case with the programme targets given on the command line (tagged as such)."""
    from models.case_edit import with_changes

    changes = {
        path: value
        for path, value in (
            ("policy.min_gap_closed_usd", min_gap_closed),
            ("policy.min_households", min_households),
        )
        if value is not None
    }
    if not changes:
        return case
    why = "[A] set on the command line (was {before!r})"
    return with_changes(case, changes, why, OptionError, "the command line's targets are invalid")


def print_written(out: Path, files: list[str]) -> None:
    """``Written to OUT/: a, b, c``: the files a command wrote."""
    console.print(f"Written to {shown(out)}/: {', '.join(files)}", highlight=False)

"""The ``ppcfin`` typer app and what its commands share: the consoles, the case argument and
the options several commands take, each declared once (one name, default and help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="ppcfin",
    help="Blend public, private and climate finance to close the PPC smallholder credit gap "
    "within every funder's risk limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji off: a name such as ":fire:" stays text; markup in user text is escaped where printed
console = Console(emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)  # whole lines (grep-able)


def _print_version(value: bool) -> None:
    if value:
        from optimizer import __version__

        console.print(f"ppcfin {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Blend public, private and climate finance to close the PPC smallholder credit gap."""


CaseArg = Annotated[
    Path | None,
    typer.Argument(help="Case YAML or stress overlay; omitted = the shipped Peruvian Amazon case."),
]
ScenariosOpt = Annotated[int, typer.Option("--scenarios", "-n", help="Number of scenarios.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (same seed, same numbers).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers; -1 = all cores.")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="dask.distributed scheduler address, tcp://HOST:PORT.")
]
OutOpt = Annotated[
    Path,
    typer.Option(
        help="Output folder: created, or replaced whole (atomically) if empty or written by "
        "ppcfin; anything else there is refused."
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an --out folder ppcfin did not write, with everything in it (never a "
        "file, a link, the case's folder or the current folder).",
    ),
]
SamplingOpt = Annotated[
    str,
    typer.Option(
        help="How scenarios are drawn: importance (tilted toward the book's tail, weighted; "
        "the default: the optimum moves far less with the seed), mc, antithetic or sobol."
    ),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        "--cvar-method",
        help="How CVaR enters the problem: auto, lp or cutting_plane (auto: the cutting plane "
        "on every scenario set; lp is the reference and its fallback).",
    ),
]
Float32Opt = Annotated[
    bool, typer.Option(help="Keep losses as float32: half the memory, ~1e-7 relative error.")
]
NoMarginalOpt = Annotated[
    bool,
    typer.Option(
        "--no-marginal",
        help="Skip the marginal values (each binding limit re-solved relaxed and tightened "
        "by US$1m); the binding lines then quote the LP duals.",
    ),
]
ConfidenceOpt = Annotated[
    float | None,
    typer.Option(
        help="Each risk limit holds out of sample at this confidence (margins of z standard "
        "errors, re-solved): 0 = off; omitted = the case's policy.confidence (0.95 by default)."
    ),
]
MinGapClosedOpt = Annotated[
    float | None,
    typer.Option(
        "--min-gap-closed",
        help="Programme target: close at least this much of the credit gap, US$ (sets "
        "policy.min_gap_closed_usd; an unreachable one exits 2 with what must give).",
    ),
]
MinHouseholdsOpt = Annotated[
    float | None,
    typer.Option(
        "--min-households",
        help="Programme target: reach at least this many households (sets policy.min_households).",
    ),
]
ReplicationsOpt = Annotated[
    int,
    typer.Option(
        help="Re-draw and re-optimise R independent scenario sets: gap closed ± its Monte "
        "Carlo error and the scenario count for 1 % precision; 0 = off."
    ),
]
FormatOpt = Annotated[str, typer.Option(help="Report formats, comma-separated.")]

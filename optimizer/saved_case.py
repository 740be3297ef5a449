"""A saved result against the case it claims to come from: the same case hash, only its ids.

A results folder loads on its own (:mod:`optimizer.saved`); these checks refuse one that was
made from another case, or edited to lend into cells the case does not have, with a
:class:`~optimizer.persist.SavedRunError` naming the file and what to re-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optimizer.persist import SavedRunError
from optimizer.saved_columns import ALLOCATION_COLUMNS, COVER_PREFIX, EULER_FUND_PARTS

if TYPE_CHECKING:
    from models.schema import Case
    from optimizer.result import Allocation


def made_from(case_name: str, case_sha256: str | None, case: Case, source: str, fix: str) -> None:
    """Refuse a saved result whose case hash is not ``case``'s (both shown, 12 characters)."""
    if case_sha256 is not None and case_sha256 == case.content_sha256:
        return
    then = case_sha256[:12] if case_sha256 else "none (a case built in Python)"
    now = case.content_sha256[:12] if case.content_sha256 else "none (built in Python)"
    raise SavedRunError(
        f"{source}: made from case {case_name!r} with hash {then}, not from "
        f"{case.source_file or 'this case'} ({case.name!r}, hash {now}); {fix}"
    )


def check_ids(allocation: Allocation, case: Case, source: str) -> None:
    """Every id in the allocation's tables is one of ``case``'s; lending only into its cells."""
    from models.cells import build_cells

    known = {
        "source": {s.id for s in case.sources},
        "fund": {f.id for f in case.funds},
        "product": {p.id for p in case.products},
        "segment": {s.id for s in case.segments},
        "region": {r.id for r in case.regions},
        "value_chain": {c.id for c in case.value_chains},
    }
    euler = allocation.euler
    parts = euler["segment"].astype(str).isin(EULER_FUND_PARTS)
    for name in ALLOCATION_COLUMNS:
        frame = euler[~parts] if name == "euler" else getattr(allocation, name)
        for col in set(known) & set(frame.columns):
            unknown = sorted(set(frame[col].astype(str)) - known[col])
            if unknown:
                raise SavedRunError(
                    f"{source}: {name}.{col}: {unknown[:5]} not in case {case.name!r} "
                    f"(it has {sorted(known[col])[:30]})"
                )
    cover = [c for c in allocation.allocation.columns if c.startswith(COVER_PREFIX)]
    unknown = sorted(c for c in cover if c.removeprefix(COVER_PREFIX) not in known["fund"])
    cells = set(build_cells(case)["cell"])
    for frame in (allocation.allocation, euler[~parts]):
        labels = set(frame["product"].astype(str) + "|" + frame["segment"].astype(str))
        unknown += sorted(labels - cells)
    unknown += sorted(set(euler.loc[parts, "product"].astype(str)) - known["fund"])
    if unknown:
        raise SavedRunError(
            f"{source}: lends into or covers {unknown[:5]}, which case {case.name!r} does not "
            "have (an edited file?); re-run `ppcfin optimize` or `ppcfin run`"
        )

"""Print the HTML report to PDF with WeasyPrint, offline and atomically."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from models.atomic_file import write_atomically
from reports.html import TEMPLATES

__all__ = ["ALLOWED_PROTOCOLS", "write_pdf"]

ALLOWED_PROTOCOLS = frozenset({"data"})
"""URL schemes WeasyPrint may fetch. The report is self-contained (inline CSS and SVG), so any
other reference (http, https, file …) is refused rather than fetched: rendering never touches the
network or reads files the report did not embed."""

# WeasyPrint reads the style attributes of inline SVG elements as HTML CSS too and warns about
# every SVG presentation property (``fill``, ``stroke`` …) it does not know there, thousands
# of lines per report. Its SVG renderer does honour them, so those warnings are noise.
_SVG_STYLE_NOISE = re.compile(
    r"^Ignored `(fill|stroke|text-anchor|clip-path|clip-rule|paint-order|font)[a-z-]*:"
    r".* unknown property"
)


class _DropInlineSvgStyleWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SVG_STYLE_NOISE.match(record.getMessage())


def write_pdf(
    html: str, path: str | os.PathLike[str], *, base_url: str | os.PathLike[str] = TEMPLATES
) -> Path:
    """Render ``html`` to an A4 PDF at ``path``; return the path.

    Parameters
    ----------
    html : str
        A document from :func:`reports.render_html` (or any self-contained HTML).
    path : path-like
        The PDF to write. It is written to a temporary file in the same folder and renamed into
        place, so an existing PDF is replaced whole or left untouched.
    base_url : path-like
        Base for relative references; defaults to the templates folder. Fetching is limited to
        :data:`ALLOWED_PROTOCOLS` whatever it is.
    """
    # Imported here: WeasyPrint needs Pango at import time, and HTML-only users need neither.
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols=ALLOWED_PROTOCOLS, timeout=1)
    noise = _DropInlineSvgStyleWarnings()
    logger = logging.getLogger("weasyprint")
    logger.addFilter(noise)
    try:
        document = HTML(string=html, base_url=str(base_url), url_fetcher=fetcher)
        return write_atomically(path, lambda tmp: document.write_pdf(tmp))
    finally:
        logger.removeFilter(noise)

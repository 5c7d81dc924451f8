"""Rendering: tables and figures as HTML for the notebooks, the print page, the PDF."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.errors import ReportError
from likeness.report.layout import FIGURES_DIR

PRINT_CSS = """
@page {
  size: A4;
  margin: 18mm 16mm 20mm 16mm;
  @top-left { content: "__RUNNING_HEADER__"; font: 7.5pt "DejaVu Sans", sans-serif;
              color: #666; }
  @bottom-right { content: "page " counter(page) " of " counter(pages);
                  font: 7.5pt "DejaVu Sans", sans-serif; color: #666; }
}
html { font-family: "DejaVu Serif", "Liberation Serif", Georgia, serif; font-size: 9.5pt;
       line-height: 1.38; color: #111; }
body { margin: 0 auto; max-width: 178mm; }
h1 { font-size: 17pt; margin: 0 0 6pt 0; line-height: 1.2; }
h2 { font-size: 13pt; margin: 16pt 0 5pt 0; border-bottom: 0.6pt solid #888;
     break-after: avoid; }
h3 { font-size: 10.5pt; margin: 11pt 0 4pt 0; break-after: avoid; }
h1, h2, h3, h4 { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; }
p, li { orphans: 3; widows: 3; }
.anchor-link { display: none; }
table { border-collapse: collapse; margin: 0; font-size: 7.6pt;
        font-family: "DejaVu Sans Condensed", "DejaVu Sans", "Liberation Sans Narrow", sans-serif;
        max-width: 100%; break-inside: avoid; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { border-bottom: 0.4pt solid #bbb; padding: 1.6pt 4pt; vertical-align: top;
         text-align: left; }
th { border-bottom: 0.8pt solid #444; font-weight: bold; }
td.num, th.num { text-align: right; white-space: nowrap; }
.table-block { break-inside: avoid; margin: 6pt 0 9pt 0; }
table.wide { width: 100%; }
.table-caption { font-weight: bold; font-size: 8.5pt; margin: 0 0 2pt 0;
                 font-family: "DejaVu Sans", sans-serif; break-after: avoid; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 6.8pt; }
td.mono { word-break: break-all; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 7.5pt; }
img, svg { max-width: 100%; height: auto; }
.output_png, .output_svg { text-align: center; margin: 4pt 0 2pt 0; break-inside: avoid; }
.output_stderr, .output_error { display: none; }
.figure-caption { font-size: 8pt; color: #333; margin: 0 0 10pt 0; break-before: avoid; }
.grid-cell { display: inline-block; vertical-align: top; margin-bottom: 4pt;
             break-inside: avoid; text-align: center; }
h2[id^="Appendix"] { break-before: page; }
blockquote { margin: 4pt 0 4pt 10pt; padding-left: 8pt; border-left: 2pt solid #999; }
ul.contents { list-style: none; padding-left: 0; margin: 0 0 6pt 0; }
ul.contents li { margin: 1pt 0; }
ul.contents a { color: #111; text-decoration: none; }
ul.contents a::after { content: leader('.') " " target-counter(attr(href), page); }
table.signature { width: 100%; margin-top: 24pt; border: none; font-size: 9pt; }
table.signature td { border: none; padding: 16pt 4pt 4pt 0; }
@media screen {
  body { padding: 2em; }
}
"""


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""


def export_html(
    notebook_path: Path, html_path: Path, *, title: str, running_header: str = ""
) -> Path:
    """Write the executed notebook as a print-friendly HTML page: code, prompts and stderr
    hidden (nbconvert's 'basic' template, ``exclude_input``), outputs and Markdown kept."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            # Progress bars and library warnings are not part of the report.
            cell.outputs = [
                o for o in cell.outputs
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    exporter = HTMLExporter(
        template_name="basic",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    if CONTENTS_PLACEHOLDER in body:
        body = body.replace(CONTENTS_PLACEHOLDER, contents_html(body), 1)
    # The running header goes into a CSS string: keep it to characters that need no escaping.
    header = re.sub(r'["\\\n<>]', " ", running_header)
    page = _PAGE.format(
        title=html.escape(title),
        css=PRINT_CSS.replace("__RUNNING_HEADER__", header),
        body=body,
    )
    html_path.write_text(page, encoding="utf-8")
    return html_path


_INLINE_AFTER_SPACE = re.compile(r"(\s)<(strong|em|b|i|code|a)\b")


def render_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render the HTML page to PDF with WeasyPrint (atomic write)."""
    import logging

    import weasyprint

    # WeasyPrint logs every CSS property it ignores; those are not errors of the report.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    tmp = pdf_path.with_name(pdf_path.name + ".tmp")
    # WeasyPrint 70 sometimes breaks a line at the wrong place when a space is followed by an
    # inline element (<strong>, <em>...) at the end of a line, leaving one word alone on a
    # line; a zero-width space after such spaces gives it the right break opportunity.
    page = _INLINE_AFTER_SPACE.sub("\\1\u200b<\\2", html_path.read_text("utf-8"))
    try:
        weasyprint.HTML(string=page, base_url=str(html_path.parent)).write_pdf(str(tmp))
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{html_path}: WeasyPrint could not render the PDF: {exc}") from exc
    os.replace(tmp, pdf_path)
    return pdf_path


def pdf_page_count(pdf_path: Path) -> int:
    """Number of pages of a PDF (pypdfium2)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(pdf_path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def render_pdf_pages(pdf_path: Path, out_dir: Path, *, scale: float = 1.5) -> list[Path]:
    """Render every page of a PDF to ``out_dir/page-NN.png`` (to look at it as a reader would)."""
    import pypdfium2

    out_dir.mkdir(parents=True, exist_ok=True)
    pdf = pypdfium2.PdfDocument(str(pdf_path))
    paths = []
    try:
        for i in range(len(pdf)):
            path = out_dir / f"page-{i + 1:02d}.png"
            pdf[i].render(scale=scale).to_pil().save(path)
            paths.append(path)
    finally:
        pdf.close()
    return paths


def format_value(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def table_html(
    df: pd.DataFrame,
    caption: str | None = None,
    *,
    digits: int | Mapping[str, int] = 2,
    mono: Iterable[str] = (),
) -> str:
    """A table as HTML for the report: numbers right-aligned with a fixed number of decimals
    (``digits``: one for all, or per column), text left-aligned, ``mono`` columns (hashes) in a
    monospace font. The index is not shown."""
    mono = set(mono) | {c for c in df.columns if "sha256" in str(c).lower()}
    per_col = digits if isinstance(digits, Mapping) else {}
    default = digits if isinstance(digits, int) else 2
    numeric = {
        c for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    }
    # The caption is a paragraph in a block kept with its table (a <caption> can be left
    # alone at the foot of a page by WeasyPrint).
    parts = ['<div class="table-block">']
    if caption:
        parts.append(f'<p class="table-caption">{html.escape(caption)}</p>')
    wide = " wide" if len(df.columns) >= 6 else ""
    parts.append(f'<table class="likeness-table{wide}">')
    head = "".join(
        f'<th class="{"num" if c in numeric else "text"}">{html.escape(str(c))}</th>'
        for c in df.columns
    )
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            cls = "num" if col in numeric else "text"
            if col in mono:
                cls += " mono"
            text = format_value(value, int(per_col.get(col, default)))
            if value is None or (isinstance(value, float) and value != value):
                text = "–"
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def show_table(
    df: pd.DataFrame,
    caption: str | None = None,
    *,
    digits: int | Mapping[str, int] = 2,
    mono: Iterable[str] = (),
):
    """Display a table (IPython HTML object) formatted by :func:`table_html`."""
    from IPython.display import HTML

    return HTML(table_html(df, caption, digits=digits, mono=mono))


def show_markdown(text: str):
    """Display computed Markdown text (IPython Markdown object)."""
    from IPython.display import Markdown

    return Markdown(text)


def figure_path(run_dir: str | os.PathLike[str], name: str) -> Path:
    """``<run_dir>/figures/<name>.png``; ReportError when the analysis did not draw it."""
    path = Path(run_dir) / FIGURES_DIR / f"{name}.png"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(run_dir) / FIGURES_DIR).glob("*.png"))
        raise ReportError(
            f"figure {path} does not exist; figures of this run: {', '.join(available) or 'none'}"
        )
    return path


def show_figure(path: str | os.PathLike[str], caption: str | None = None, *, width: int = 520):
    """Display a PNG figure (embedded in the notebook) with an optional caption below it."""
    from IPython.display import HTML, Image, display

    path = Path(path)
    if not path.is_file():
        raise ReportError(f"figure {path} does not exist")
    display(Image(filename=str(path), width=width))
    if caption:
        return HTML(f'<p class="figure-caption">{html.escape(caption)}</p>')
    return None


def figure_grid_html(
    paths: Iterable[Path], labels: Iterable[str], caption: str = "", *, columns: int = 1,
    width_percent: int = 85,
) -> str:
    """PNG figures in a grid of ``columns`` a row (embedded as data URIs) with one caption;
    each image takes ``width_percent`` of its cell (wide figures stay legible in print)."""
    import base64

    cells = []
    cell_width = 100 // columns - (1 if columns > 1 else 0)
    for path, label in zip(paths, labels, strict=True):
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        cells.append(
            f'<div class="grid-cell" style="width: {cell_width}%">'
            f'<img style="width: {width_percent}%" src="data:image/png;base64,{data}" '
            f'alt="{html.escape(label)}"></div>'
        )
    caption_html = f'<p class="figure-caption">{html.escape(caption)}</p>' if caption else ""
    return f'<div class="figure-grid">{"".join(cells)}</div>{caption_html}'




CONTENTS_PLACEHOLDER = '<div class="contents-placeholder"></div>'
_H2 = re.compile(r'<h2 id="([^"]+)"[^>]*>(.*?)</h2>', re.S)


def show_contents():
    """A placeholder the HTML export replaces with the table of contents (every section
    heading, each with its page number in the PDF)."""
    from IPython.display import HTML

    return HTML(CONTENTS_PLACEHOLDER)


def contents_html(body: str) -> str:
    """The table of contents of an exported body: one link per ``<h2>`` except "Contents";
    the PDF style sheet adds each target's page number."""
    items = []
    for anchor, inner in _H2.findall(body):
        text = re.sub(r"<[^>]+>", "", inner).replace("¶", "").strip()
        if text.lower() == "contents":
            continue
        items.append(f'<li><a href="#{anchor}">{html.escape(text, quote=False)}</a></li>')
    return f'<ul class="contents">{"".join(items)}</ul>'


def pdf_text(pdf_path: Path) -> str:
    """The text of every page of a PDF (pypdfium2), pages separated by form feeds: what a
    reader's search finds, used to check the report's numbers against its tables."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(pdf_path))
    try:
        return "\f".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()

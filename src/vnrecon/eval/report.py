"""A self-contained HTML report: one file that opens offline and can be mailed or archived.

Nothing is loaded from elsewhere: the style sheet is inline, there is no
script, and every image is embedded as a base64 ``data:`` URI when it is added
(so the PNG may be deleted or rewritten afterwards). All text is HTML-escaped.

    report = HtmlReport("vnrecon evaluation")
    report.markdown_table(table)
    report.image("figures/pdw.png", caption="PDw, central slice")
    report.write("out/report.html")
"""

import base64
import html
import re
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
figure { margin: 1.5em 0; }
img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""

# A pipe that is not escaped with a backslash separates Markdown table cells.
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_ALIGNMENT_CELL = re.compile(r"^:?-+:?$")


def _split_row(line: str) -> list[str]:
    """Cells of one Markdown table row; the outer pipes are optional, ``\\|`` is a literal pipe."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SEPARATOR.split(line)]


def _alignment(cell: str) -> str | None:
    """CSS text-align of a delimiter cell (``:--``, ``:-:``, ``--:``), None for the default."""
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    if cell.endswith(":"):
        return "right"
    return "left" if cell.startswith(":") else None


_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EMPHASIS = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_CODE = re.compile(r"`([^`]+)`")


def inline_markdown(text: str) -> str:
    """Markdown inline marks of a table cell as HTML: **strong**, *emphasis*, `code`; the rest escaped."""
    escaped = html.escape(text)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    escaped = _STRONG.sub(r"<strong>\1</strong>", escaped)
    return _EMPHASIS.sub(r"<em>\1</em>", escaped)


def _html_row(cells: list[str], tag: str, alignments: list[str | None]) -> str:
    parts = []
    for cell, align in zip(cells, alignments):
        style = f' style="text-align: {align}"' if align else ""
        parts.append(f"<{tag}{style}>{inline_markdown(cell)}</{tag}>")
    return "<tr>" + "".join(parts) + "</tr>"


def _html_table(header: list[str], body: list[list[str]], alignments: list[str | None] | None = None) -> str:
    alignments = alignments or [None] * len(header)
    lines = ["<table>", "<thead>", _html_row(header, "th", alignments), "</thead>", "<tbody>"]
    lines += [_html_row(row, "td", alignments) for row in body]
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _format_cell(value, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return float_format.format(value)
    return str(value)


class HtmlReport:
    """Collects headings, text, tables and PNGs in order; ``write`` produces one standalone HTML file."""

    def __init__(self, title: str):
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        if level not in range(1, 7):
            raise InputError(f"heading level must be 1 to 6, got {level}")
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def markdown_table(self, table: str) -> None:
        """A GitHub pipe table (header row, delimiter row, body rows) as an HTML table."""
        lines = [line for line in table.strip().splitlines() if line.strip()]
        if len(lines) < 2:
            raise InputError("a Markdown table needs a header row and a delimiter row")
        header, delimiter = _split_row(lines[0]), _split_row(lines[1])
        if len(delimiter) != len(header) or not all(_ALIGNMENT_CELL.match(cell) for cell in delimiter):
            raise InputError(f"not a Markdown table delimiter row: {lines[1]!r}")
        body = []
        for line in lines[2:]:
            cells = _split_row(line)
            # GitHub pads short rows and drops surplus cells; do the same.
            body.append((cells + [""] * len(header))[: len(header)])
        self._parts.append(_html_table(header, body, [_alignment(cell) for cell in delimiter]))

    def table(self, rows: list[dict], columns: list[str] | None = None, float_format: str = "{:.3f}") -> None:
        """One row per dict; columns default to every key in first-seen order, missing values stay empty."""
        if columns is None:
            columns = list(dict.fromkeys(key for row in rows for key in row))
        body = [[_format_cell(row.get(column), float_format) for column in columns] for row in rows]
        self._parts.append(_html_table(list(columns), body))

    def image(self, path: str | Path, caption: str = "") -> None:
        """Embed the PNG at ``path`` as it is now."""
        path = Path(path)
        data = path.read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            raise InputError(f"{path}: not a PNG image")
        source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts = [f'<figure><img src="{source}" alt="{html.escape(caption or path.name)}">']
        if caption:
            parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
        parts.append("</figure>")
        self._parts.append("".join(parts))

    def html(self) -> str:
        title = html.escape(self.title)
        head = f'<meta charset="utf-8">\n<title>{title}</title>\n<style>{_STYLE}</style>'
        body = "\n".join([f"<h1>{title}</h1>", *self._parts])
        return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'

    def write(self, path: str | Path) -> Path:
        with atomic_write(path) as temporary:
            temporary.write_text(self.html(), encoding="utf-8")
        return Path(path)

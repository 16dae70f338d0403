"""HtmlReport: one standalone, well-formed HTML file with escaped text, tables and embedded PNGs."""

import base64
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from vnrecon.errors import InputError
from vnrecon.eval.figures import save_figure
from vnrecon.eval.report import HtmlReport, inline_markdown


class _Collector(HTMLParser):
    """Start tags with their attributes, text per element, and table rows as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.texts: dict[str, list[str]] = {}
        self.tables: list[list[list[str]]] = []
        self._open: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("img", "meta"):  # void elements have no end tag
            return
        self._open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        assert self._open and self._open[-1] == tag, f"</{tag}> closes <{self._open[-1] if self._open else None}>"
        self._open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._open:
            self.texts.setdefault(self._open[-1], []).append(data)
        if self._cell is not None:
            self._cell.append(data)


def _png(path):
    figure, axis = plt.subplots(figsize=(1, 1))
    axis.plot([0, 1], [1, 0])
    return save_figure(figure, path, dpi=30).read_bytes()


def _parse(path):
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    assert not collector._open, f"unclosed elements {collector._open}"
    return collector


def test_report_is_standalone_and_holds_what_was_added(tmp_path):
    first, second = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    report = HtmlReport("results <&> \"quoted\"")
    report.heading("Table & figures", level=3)
    report.paragraph("a < b & <script>alert(1)</script> see https://example.org")
    report.markdown_table(
        "| set | method | SSIM |\n|:---|:---:|---:|\n| PDw | a \\| b | 0.912 ± 0.010 |\n| PDw-FS | <b>x</b> |\n"
    )
    report.table([{"method": "TV", "weight": 2e-4, "note": None}, {"method": "CG-SENSE", "weight": 1.0, "extra": 3}],
                 float_format="{:.2g}")
    report.image(tmp_path / "a.png", caption="first <figure>")
    report.image(tmp_path / "b.png")
    (tmp_path / "a.png").unlink()  # embedded when added, not when written
    report.preformatted("x  <y>\n  z")
    path = report.write(tmp_path / "sub" / "report.html")

    parsed = _parse(path)
    raw = path.read_text(encoding="utf-8")
    for tag, attributes in parsed.tags:
        for name in ("src", "href"):
            assert not attributes.get(name, "").lower().startswith(("http://", "https://", "//")), (tag, attributes)
    assert "<script>" not in raw and not any(tag in ("script", "link") for tag, _ in parsed.tags)

    images = [attributes["src"] for tag, attributes in parsed.tags if tag == "img"]
    prefix = "data:image/png;base64,"
    assert all(source.startswith(prefix) for source in images)
    assert [base64.b64decode(source[len(prefix):]) for source in images] == [first, second]

    assert parsed.texts["title"] == ["results <&> \"quoted\""] and parsed.texts["h1"] == parsed.texts["title"]
    assert parsed.texts["h3"] == ["Table & figures"]
    assert parsed.texts["p"] == ["a < b & <script>alert(1)</script> see https://example.org"]
    assert parsed.texts["figcaption"] == ["first <figure>"]
    assert parsed.texts["pre"] == ["x  <y>\n  z"]
    markdown, plain = parsed.tables
    assert markdown == [["set", "method", "SSIM"], ["PDw", "a | b", "0.912 ± 0.010"], ["PDw-FS", "<b>x</b>", ""]]
    assert plain == [["method", "weight", "note", "extra"], ["TV", "0.0002", "", ""], ["CG-SENSE", "1", "", "3"]]
    aligned = [attributes.get("style") for tag, attributes in parsed.tags if tag == "th"][:3]
    assert aligned == ["text-align: left", "text-align: center", "text-align: right"]


def test_report_rejects_what_it_cannot_embed(tmp_path):
    report = HtmlReport("r")
    text = tmp_path / "not.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not.png: not a PNG"):
        report.image(text)
    with pytest.raises(InputError, match="delimiter"):
        report.markdown_table("| a | b |\n| c | d |")
    with pytest.raises(InputError, match="level"):
        report.heading("x", level=7)


@pytest.mark.parametrize("cell", ["**0.993 ± 0.001**", "*TV*", "`vn_pdw`", "a < b & c", "**best** of *four*", "0.5 * 2"])
def test_table_cells_render_their_markdown_as_python_markdown_does(cell):
    """The demo's table marks the best value **bold**: the HTML report shows it bold, as a Markdown
    renderer (Python-Markdown, the reference here) would, not with literal asterisks."""
    markdown = pytest.importorskip("markdown", reason="Python-Markdown (comes with tensorboard) is the reference")
    expected = markdown.markdown(cell)
    assert expected.startswith("<p>") and expected.endswith("</p>")
    assert inline_markdown(cell) == expected[3:-4]

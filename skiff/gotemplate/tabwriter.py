"""Go's ``text/tabwriter``: align tab-separated cells into columns.

podman pipes every table through ``tabwriter.NewWriter(out, 12, 2, 2, ' ', 0)``
(containers/common's report package): a column is as wide as its widest cell
plus 2, at least 12; a cell is text ending in a tab, so the last cell of a
line is not aligned; a *column block* is a run of consecutive lines that have
a cell in that column — a line with fewer cells ends the blocks to its right,
and each block is sized on its own.

Widths count characters (Go counts runes). Not supported: the escape
character 0xff (a Python string has no invalid-UTF-8 byte to reserve) and
the HTML filter.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN_RIGHT = 1 << 2
DISCARD_EMPTY_COLUMNS = 1 << 3
TAB_INDENT = 1 << 4
DEBUG = 1 << 5


@dataclass(slots=True)
class _Cell:
    text: str
    htab: bool  # terminated by a horizontal tab (not \v, not end of line)


class TabWriter:
    """Collect text with ``write``; ``flush`` returns it aligned."""

    def __init__(
        self,
        minwidth: int = 12,
        tabwidth: int = 2,
        padding: int = 2,
        padchar: str = " ",
        flags: int = 0,
    ) -> None:
        self.minwidth = minwidth
        self.tabwidth = tabwidth
        self.padding = padding
        self.padchar = padchar
        self.flags = flags
        if padchar == "\t":
            self.flags &= ~ALIGN_RIGHT  # tab padding forces left alignment
        self._buf: list[str] = []

    def write(self, text: str) -> None:
        self._buf.append(text)

    def flush(self) -> str:
        text = "".join(self._buf)
        self._buf = []
        # A form feed ends a section: columns never span it.
        sections = text.split("\f")
        return "\f".join(self._format_section(s) for s in sections)

    # --- one section: lines of cells ---------------------------------------------

    @staticmethod
    def _split(text: str) -> list[list[_Cell]]:
        lines: list[list[_Cell]] = []
        for raw in text.split("\n"):
            cells: list[_Cell] = []
            start = 0
            for i, c in enumerate(raw):
                if c in {"\t", "\v"}:
                    cells.append(_Cell(raw[start:i], c == "\t"))
                    start = i + 1
            cells.append(_Cell(raw[start:], False))
            lines.append(cells)
        return lines

    def _format_section(self, text: str) -> str:
        lines = self._split(text)
        out: list[str] = []
        self._format(out, lines, 0, len(lines), [])
        return "".join(out)

    def _format(
        self,
        out: list[str],
        lines: list[list[_Cell]],
        line0: int,
        line1: int,
        widths: list[int],
    ) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            # a cell in this column: print the lines before the block, size the block
            self._write_lines(out, lines, line0, this, widths)
            line0 = this
            width = self.minwidth
            discardable = True
            while this < line1 and column < len(lines[this]) - 1:
                cell = lines[this][column]
                width = max(width, len(cell.text) + self.padding)
                if cell.text or cell.htab:
                    discardable = False
                this += 1
            if discardable and self.flags & DISCARD_EMPTY_COLUMNS:
                width = 0
            self._format(out, lines, line0, this, [*widths, width])
            line0 = this
        self._write_lines(out, lines, line0, line1, widths)

    def _padding(self, textw: int, cellw: int, use_tabs: bool) -> str:
        if self.padchar == "\t" or use_tabs:
            if self.tabwidth == 0:
                return ""
            cellw = (cellw + self.tabwidth - 1) // self.tabwidth * self.tabwidth
            n = cellw - textw
            return "\t" * ((n + self.tabwidth - 1) // self.tabwidth)
        return self.padchar * (cellw - textw)

    def _write_lines(
        self,
        out: list[str],
        lines: list[list[_Cell]],
        line0: int,
        line1: int,
        widths: list[int],
    ) -> None:
        for i in range(line0, line1):
            line = lines[i]
            use_tabs = bool(self.flags & TAB_INDENT)
            for j, cell in enumerate(line):
                if j > 0 and self.flags & DEBUG:
                    out.append("|")
                if not cell.text:
                    if j < len(widths):
                        out.append(self._padding(0, widths[j], use_tabs))
                    continue
                use_tabs = False
                if self.flags & ALIGN_RIGHT:
                    if j < len(widths):
                        out.append(self._padding(len(cell.text), widths[j], False))
                    out.append(cell.text)
                else:
                    out.append(cell.text)
                    if j < len(widths):
                        out.append(self._padding(len(cell.text), widths[j], False))
            if i + 1 < len(lines):
                out.append("\n")


def align(text: str, minwidth: int = 12, tabwidth: int = 2, padding: int = 2) -> str:
    """``text`` aligned as podman's tables are (tabwriter 12, 2, 2, ' ', 0)."""
    writer = TabWriter(minwidth, tabwidth, padding)
    writer.write(text)
    return writer.flush()

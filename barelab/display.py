"""Small renderers shared by barelab's result objects: bytes, headers, transcripts.

Every object here renders twice: ``_repr_html_`` for JupyterLab and ``__repr__`` for a
terminal (and for nbval, which compares the text). Both are deterministic: no memory
addresses, no timestamps. The point of the bytes renderer is that a learner *sees* the wire
format, so CR and LF are drawn as ``\\r`` and ``\\n`` before the real line break, and any
other byte outside printable ASCII is drawn as ``\\xNN``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

#: How many bytes ``show_bytes`` draws before it says how many it left out.
DEFAULT_BYTES_LIMIT = 4096

_MARK_STYLE = "color:#8a8a8a"  # the visible \r \n \xNN markers, quieter than the text


def _byte_tokens(data: bytes):
    """Yield ``(text, is_marker)`` pieces for ``data``; ``"\\n"`` is yielded as a line break."""
    for byte in data:
        if byte == 0x0D:
            yield "\\r", True
        elif byte == 0x0A:
            yield "\\n", True
            yield "\n", False
        elif byte == 0x09:
            yield "\\t", True
        elif 0x20 <= byte < 0x7F:
            yield chr(byte), False
        else:
            yield f"\\x{byte:02x}", True


class ShownBytes:
    """Bytes drawn with CR, LF and non-printable bytes visible (see ``show_bytes``)."""

    def __init__(self, data: bytes, limit: int | None = DEFAULT_BYTES_LIMIT):
        self.data = bytes(data)
        self.limit = limit

    def _parts(self):
        shown = self.data if self.limit is None else self.data[: self.limit]
        return list(_byte_tokens(shown)), len(self.data) - len(shown)

    def _footer(self, left_out: int) -> str:
        return f"… ({left_out} more bytes)" if left_out else ""

    def text(self) -> str:
        """The plain-text drawing (what ``repr`` shows)."""
        if not self.data:
            return "(no bytes)"
        tokens, left_out = self._parts()
        out = "".join(t for t, _ in tokens)
        out = out[:-1] if out.endswith("\n") else out  # the break after a final LF marker
        footer = self._footer(left_out)
        return f"{out}\n{footer}" if footer else out

    def html(self) -> str:
        """The HTML drawing: the markers in a quieter colour."""
        if not self.data:
            return "<pre><em>(no bytes)</em></pre>"
        tokens, left_out = self._parts()
        runs: list[list] = []  # adjacent tokens of one kind, so one <span> per marker run
        for t, marker in tokens:
            if runs and runs[-1][1] == marker:
                runs[-1][0] += t
            else:
                runs.append([t, marker])
        if runs and runs[-1] == ["\n", False]:
            runs.pop()
        pieces = [f'<span style="{_MARK_STYLE}">{html.escape(t)}</span>' if marker
                  else html.escape(t) for t, marker in runs]
        footer = self._footer(left_out)
        if footer:
            pieces.append(f"\n<em>{html.escape(footer)}</em>")
        return '<pre style="margin:0">' + "".join(pieces) + "</pre>"

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other) -> bool:
        return isinstance(other, ShownBytes) and other.data == self.data

    def __repr__(self) -> str:
        return self.text()

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return self.html()


def show_bytes(data: bytes, limit: int | None = DEFAULT_BYTES_LIMIT) -> ShownBytes:
    """Show ``data`` the way it travels: ``b"GET / HTTP/1.1\\r\\n"`` draws as ``GET / HTTP/1.1\\r\\n``
    followed by a real line break, so request and response heads read like the RFC.

    Bytes that are not printable ASCII appear as ``\\xNN`` (a UTF-8 "é" is ``\\xc3\\xa9``).
    Past ``limit`` bytes (``None``: no limit) the drawing stops and says how many it left out.
    """
    if isinstance(data, str):
        raise TypeError("show_bytes() wants bytes; encode the str first (for example "
                        "s.encode('latin-1')), because the wire carries bytes, not text")
    return ShownBytes(data, limit)


def _as_str(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


class HeadersTable:
    """A list of ``(name, value)`` header pairs, in order, repeats kept."""

    def __init__(self, headers):
        if isinstance(headers, Mapping):
            headers = headers.items()
        self.headers = [(_as_str(n), _as_str(v)) for n, v in headers]

    def __len__(self) -> int:
        return len(self.headers)

    def __iter__(self):
        return iter(self.headers)

    def __eq__(self, other) -> bool:
        return isinstance(other, HeadersTable) and other.headers == self.headers

    def __repr__(self) -> str:
        if not self.headers:
            return "(no headers)"
        width = max(len(n) for n, _ in self.headers) + 1
        return "\n".join(f"{n + ':':<{width}} {v}" for n, v in self.headers)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        if not self.headers:
            return "<p><em>(no headers)</em></p>"
        rows = "".join(f'<tr><td style="text-align:left"><code>{html.escape(n)}</code></td>'
                       f'<td style="text-align:left"><code>{html.escape(v)}</code></td></tr>'
                       for n, v in self.headers)
        return ('<table><thead><tr><th style="text-align:left">name</th>'
                '<th style="text-align:left">value</th></tr></thead>'
                f"<tbody>{rows}</tbody></table>")


def show_headers(headers) -> HeadersTable:
    """Show header pairs (``str`` or ``bytes``, a list of pairs or a dict) as an aligned table."""
    return HeadersTable(headers)


def _cell_text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return ShownBytes(bytes(value)).text()
    return str(value)


def _cell_html(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return ShownBytes(bytes(value)).html()
    if hasattr(value, "_repr_html_"):
        return value._repr_html_()
    text = str(value)
    if "\n" in text:
        return f'<pre style="margin:0">{html.escape(text)}</pre>'
    return f"<code>{html.escape(text)}</code>" if text else ""


class Transcript:
    """Rows of a conversation, oldest first: each row is a tuple of cells.

    Cells are ``str`` (shown as is), ``bytes`` (drawn with ``show_bytes``) or any object
    with a ``_repr_html_``/``repr`` of its own. The last cell may span several lines; in
    text the continuation lines are indented under it.
    """

    def __init__(self, rows: Iterable, columns: Iterable[str] = ()):
        self.rows = [tuple(row) for row in rows]
        self.columns = tuple(columns)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return "(empty transcript)"
        cells = [[_cell_text(c) for c in row] for row in self.rows]
        ncols = max(len(r) for r in cells)
        # Every column but the last is padded to its widest first line.
        widths = [max((len(r[i].split("\n", 1)[0]) for r in cells if i < len(r)), default=0)
                  for i in range(ncols - 1)]
        lines = []
        for row in cells:
            lead = "  ".join(f"{c.split(chr(10), 1)[0]:<{w}}" for c, w in zip(row[:-1], widths))
            indent = " " * (sum(widths) + 2 * len(widths))
            last = row[-1].split("\n") if len(row) == ncols else [""]
            first = (lead + "  " if widths else "") + last[0]
            lines.append(first.rstrip())
            lines.extend((indent + more).rstrip() for more in last[1:])
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<p><em>(empty transcript)</em></p>"
        head = ""
        if self.columns:
            head = ("<thead><tr>" + "".join(f'<th style="text-align:left">{html.escape(c)}</th>'
                                            for c in self.columns) + "</tr></thead>")
        body = "".join("<tr>" + "".join(
            f'<td style="text-align:left;vertical-align:top">{_cell_html(c)}</td>' for c in row)
            + "</tr>" for row in self.rows)
        return f"<table>{head}<tbody>{body}</tbody></table>"


def show_transcript(rows: Iterable, columns: Iterable[str] = ()) -> Transcript:
    """Show a conversation as a table: one row per step, e.g. ``("→ sent", b"GET / ...")``."""
    return Transcript(rows, columns)

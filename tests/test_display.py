"""barelab.display: bytes, headers and transcripts render as text and as HTML."""

import pytest

from barelab.display import HeadersTable, ShownBytes, Transcript, show_bytes, show_headers, \
    show_transcript

REQUEST = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


def test_show_bytes_makes_crlf_visible_and_breaks_lines():
    assert repr(show_bytes(REQUEST)) == "GET / HTTP/1.1\\r\\n\nHost: example\\r\\n\n\\r\\n"


def test_show_bytes_escapes_non_printable_bytes():
    shown = show_bytes("é\t\x00".encode())
    assert str(shown) == "\\xc3\\xa9\\t\\x00"


def test_show_bytes_lone_lf_and_cr():
    assert repr(show_bytes(b"a\nb\rc")) == "a\\n\nb\\rc"


def test_show_bytes_html_escapes_and_marks():
    html = show_bytes(b"<b>&\r\n")._repr_html_()
    assert "&lt;b&gt;&amp;" in html
    assert '<span style="color:#8a8a8a">\\r\\n</span>' in html
    assert "<b>" not in html


def test_show_bytes_truncates_and_says_how_much():
    shown = show_bytes(b"x" * 10, limit=4)
    assert repr(shown) == "xxxx\n… (6 more bytes)"
    assert "6 more bytes" in shown._repr_html_()
    assert len(shown) == 10
    assert repr(show_bytes(b"x" * 10, limit=None)) == "x" * 10


def test_show_bytes_empty_and_str_rejected():
    assert repr(show_bytes(b"")) == "(no bytes)"
    assert "(no bytes)" in show_bytes(b"")._repr_html_()
    with pytest.raises(TypeError, match="encode"):
        show_bytes("text")


def test_shown_bytes_equality():
    assert show_bytes(b"a") == ShownBytes(b"a")
    assert show_bytes(b"a") != show_bytes(b"b")


def test_headers_table_text_is_aligned_and_keeps_repeats():
    table = show_headers([("Content-Type", "text/plain"), (b"Set-Cookie", b"a=1"),
                          ("Set-Cookie", "b=2")])
    assert repr(table) == ("Content-Type: text/plain\n"
                           "Set-Cookie:   a=1\n"
                           "Set-Cookie:   b=2")
    assert len(table) == 3
    assert list(table)[1] == ("Set-Cookie", "a=1")


def test_headers_table_from_dict_html_escaped():
    table = show_headers({"X-Evil": "<script>"})
    html = table._repr_html_()
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert table == HeadersTable([("X-Evil", "<script>")])


def test_headers_table_empty():
    assert repr(show_headers([])) == "(no headers)"
    assert "no headers" in show_headers([])._repr_html_()


def test_transcript_text_aligns_and_indents_continuations():
    t = show_transcript([("→ sent", b"GET / HTTP/1.1\r\n\r\n"), ("← received", "HTTP/1.1 200 OK")])
    assert repr(t) == ("→ sent      GET / HTTP/1.1\\r\\n\n"
                       "            \\r\\n\n"
                       "← received  HTTP/1.1 200 OK")
    assert len(t) == 2


def test_transcript_html_has_columns_and_nested_reprs():
    t = Transcript([("a", show_bytes(b"x\r\n")), ("b", "two\nlines"), ("<c>", "")],
                   columns=("who", "what"))
    html = t._repr_html_()
    assert "<th" in html and "who" in html
    assert "\\r\\n</span>" in html       # the nested ShownBytes drew its own HTML
    assert "<pre" in html                 # multi-line text keeps its lines
    assert "&lt;c&gt;" in html


def test_transcript_empty():
    assert repr(show_transcript([])) == "(empty transcript)"
    assert "empty transcript" in show_transcript([])._repr_html_()


def test_transcript_three_columns():
    t = show_transcript([("→", "text", "'hi'"), ("←", "close", "1000")])
    assert repr(t) == "→  text   'hi'\n←  close  1000"

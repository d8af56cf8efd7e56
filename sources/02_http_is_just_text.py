# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 02. HTTP is just text
#
# Under every framework, a request arrives as a few lines of ASCII and a response leaves the
# same way. In this chapter you read those bytes, then write the code that reads them for you.
#
# ## Learning goals
#
# - Read a raw HTTP/1.1 request and response byte by byte, `\r\n` included.
# - Build `parse_request`, a strict request parser, and `format_response`, a response
#   formatter, on plain `bytes`; they are saved to `barelab.built.http_wire` for later chapters.
# - Know the traps that naive parsers fall into (repeated headers, obs-fold, a space before
#   the colon, bad `Content-Length`, `Transfer-Encoding` smuggling, size limits) and the
#   RFC 9112 rule that settles each one.
# - Check your parser against h11, a parser written by people who read the RFC for a living.

# %% [markdown]
# ## The bytes on the wire
#
# Start with a tiny WSGI app (chapter 04 covers what the two arguments are; for now it
# answers every request with one line of text) and serve it in the background.

# %%
import barelab
from barelab.display import show_transcript

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, bytes!\n"]

server = barelab.serve(hello)
server

# %% [markdown]
# Now talk to it the way a browser does, minus the browser: open a TCP connection, write
# the bytes of a request, read what comes back. `raw_exchange` does exactly that and
# nothing more. It does not parse or fix anything, so you see the bytes themselves.

# %%
exchange = barelab.raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
exchange

# %% [markdown]
# That is a whole HTTP conversation: three lines went out, eight came back. Look at the
# `\r\n` markers. Every line ends in two bytes, carriage return (CR, `0x0D`) and line feed
# (LF, `0x0A`), and an empty line, a bare `\r\n`, ends the *head* of the message.
#
# Read the response top to bottom: a *status line* (`HTTP/1.1 200 OK`), one *header field*
# per line (`name: value`), the empty line, then the *body*. The `Date` header comes from
# the server's clock, which is why the notebook masks it when it checks outputs.
#
# The last line says the connection was still open. HTTP/1.1 keeps a connection for the
# next request unless someone says `Connection: close`, so `raw_exchange` only stopped
# after a second of silence.
#
# How does the client know where the body ends, if the connection stays open? The
# `Content-Length` field says so. Cut the response at the empty line and count:

# %%
body = exchange.received.partition(b"\r\n\r\n")[2]
body, len(body)

# %% [markdown]
# Fourteen bytes, newline included, exactly as `Content-Length: 14` promised. A client reads
# those fourteen and stops; whatever comes next would be the next response. A request has
# the same shape, with a *request line* on top:
#
# ```mermaid
# flowchart TB
#     A["request line<br/><code>POST /submit HTTP/1.1\r\n</code>"] --> B
#     B["header fields, one per line<br/><code>Host: example.org\r\n</code><br/><code>Content-Length: 5\r\n</code>"] --> C
#     C["empty line: the head ends here<br/><code>\r\n</code>"] --> D
#     D["body: exactly Content-Length bytes<br/><code>hello</code>"]
# ```
#
# RFC 9112 §2.1 writes the same picture as a grammar, where `start-line` is a request line
# or a status line and `*( ... )` means "zero or more":
#
# ```
# HTTP-message = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
# ```

# %% [markdown]
# You just typed a request by hand, and the server answered it like any other: it cannot
# tell a browser from a byte string. Now send the POST from the diagram. The app ignores
# the body, but the server still has to read exactly five bytes of it, to know where this
# request ends and the next one would begin.

# %%
post = b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
barelab.raw_exchange(server, post)

# %% [markdown]
# The body `hello` follows the empty line, with no line ending of its own: its end is
# found by counting, not by looking for a marker. The answer is the same `200 OK`, and the
# connection again stays open for a next request that never comes.

# %% [markdown]
# ## A naive parser, and how it breaks
#
# The shape looks easy to parse: split on CRLF, split each header on `": "`, put them in a
# dict. Here is the parser found in many tutorials. It works on the happy path:

# %%
def naive_parse(data):
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, target, version = request_line.split(b" ")
    headers = dict(line.split(b": ", 1) for line in header_lines)
    body = body[: int(headers.get(b"Content-Length", 0))]
    return method, target, headers, body

naive_parse(post)

# %% [markdown]
# To try many inputs in one table, you need a helper that never lets an exception stop
# the cell. `attempt(function, *args)` calls the function and returns either the result or
# the exception's name and message, both as text. You will use it all chapter long.

# %%
def attempt(function, *args):
    """Call function(*args); show the result, or the exception it raised."""
    try:
        return repr(function(*args))
    except Exception as error:
        return f"{type(error).__name__}: {error}"

attempt(int, "42"), attempt(int, "forty-two")

# %% [markdown]
# Now feed the naive parser requests that a real client, or an attacker, may send. Each of
# them is either legal HTTP that it gets wrong, or broken HTTP that it should refuse with
# `400 Bad Request`, the status code that means "your request is malformed":

# %%
base = b"POST / HTTP/1.1\r\nHost: x\r\n"
traps = {
    "lower-case name":   base + b"content-length: 5\r\n\r\nhello",
    "repeated header":   base + b"Accept: a\r\nAccept: b\r\n\r\n",
    "bad length":        base + b"Content-Length: five\r\n\r\nhello",
    "negative length":   base + b"Content-Length: -3\r\n\r\nhello",
    "space before colon": base + b"Content-Length : 5\r\n\r\nhello",
    "folded line":       base + b"X-Note: a\r\n  b\r\n\r\n",
}
show_transcript([(name, attempt(naive_parse, data)) for name, data in traps.items()])

# %% [markdown]
# Six requests, six failures:
#
# - `content-length` in lower case is the same header (field names are case-insensitive,
#   RFC 9110 §5.1), yet the body came back empty.
# - Two `Accept` lines are legal (RFC 9110 §5.3) and mean `Accept: a, b`; the dict kept one.
# - `five` raised a `ValueError`: in a server that is a crash, or a 500, for a client error.
# - `-3` became a slice that quietly drops the last three bytes.
# - `Content-Length : 5` produced a header named `Content-Length ` (with a space) and, again,
#   an empty body. RFC 9112 §5.1 says a server MUST reject this with 400.
# - The folded line (a line starting with spaces, meant to continue the one above) raised
#   `ValueError`. RFC 9112 §5.2 calls it *obs-fold*, obsolete line folding, and a server
#   must either refuse it with 400 or unfold it.
#
# Why is the RFC so strict about a stray space? In production your server usually sits
# behind a *proxy* (nginx, a load balancer, a CDN) that reads each request before passing
# it on. If the proxy and your server disagree about where a request's body ends, the bytes
# one of them thinks are body, the other reads as the start of a *second* request, one the
# proxy never checked. That attack is called *request smuggling* (RFC 9112 §11.2), and
# every ambiguity above is a way to start one. The rest of the chapter builds a parser
# that gets every one of these right.

# %% [markdown]
# ## Errors that carry a status code
#
# Everything you will build goes into one module. This cell names it; every cell marked
# `#| export` below is copied into `barelab/built/http_wire.py` when the notebook is built.

# %%
#| default_exp http_wire

# %% [markdown]
# The module opens with its imports and its limits. A server that reads "until the request
# ends" without a limit lets any client fill its memory, so every part of a request gets a
# maximum size in bytes, and each one has its own status code for "too much" (you will meet
# them below). The numbers are the same order of magnitude as common servers' defaults.

# %%
#| export
# A strict HTTP/1.1 request parser and response formatter on plain bytes. It parses nothing
# it does not need; whatever it refuses, it refuses with an HTTPError that names the status
# to answer with and the rule that was broken, never with an IndexError or a ValueError.
import re
from dataclasses import dataclass
from http import HTTPStatus

MAX_LINE = 8190                 # bytes in the request line; 414 above it
MAX_HEADERS_BYTES = 16384       # bytes in the header section; 431 above it
MAX_BODY = 8 * 1024 * 1024      # bytes of body; 413 above it

# %% [markdown]
# A parser that refuses a request must also say *how* to refuse it: a malformed request is a
# 400, an oversized body a 413, an unknown transfer coding a 501. So every refusal is an
# `HTTPError` that carries its `status`. A server (chapter 06) catches `HTTPError` alone and
# answers with that status; any other exception is a bug in the parser.

# %%
#| export
class HTTPError(Exception):
    """A request the parser refuses; ``status`` is the response code to answer with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"

# %%
HTTPError("no reason given")

# %% [markdown]
# The `__repr__` puts the status first, so a refusal shown in a cell reads like the
# response it will become. Each kind of refusal is a subclass that changes nothing but
# `status`; the comment beside it names the RFC section that defines that status code.

# %%
#| export
class BadRequest(HTTPError): status = 400                    # RFC 9110 §15.5.1
class ContentTooLarge(HTTPError): status = 413               # RFC 9110 §15.5.14
class URITooLong(HTTPError): status = 414                    # RFC 9110 §15.5.15
class HeaderFieldsTooLarge(HTTPError): status = 431          # RFC 6585 §5
class TransferCodingNotImplemented(HTTPError): status = 501  # RFC 9110 §15.6.2
class HTTPVersionNotSupported(HTTPError): status = 505       # RFC 9110 §15.6.6

# %%
refusals = (BadRequest, ContentTooLarge, URITooLong, HeaderFieldsTooLarge,
            TransferCodingNotImplemented, HTTPVersionNotSupported)
show_transcript([(cls.__name__, str(cls.status)) for cls in refusals])

# %% [markdown]
# A server that treats all refusals alike catches `HTTPError`; a test that checks one
# specific rule can expect `URITooLong` and nothing else.
#
# One small helper quotes a piece of the request inside an error message. It is cut short
# because the bytes came from a stranger, and an error message should never echo 16 KiB.

# %%
#| export
def _quote(data: bytes, limit: int = 40) -> str:
    return repr(bytes(data[:limit])) + ("…" if len(data) > limit else "")

# %% [markdown]
# Here is what a refusal looks like: the class says which status, the message says why,
# and a long piece of the request is cut after 40 bytes, marked by the `…`.

# %%
BadRequest(f"request line is not 'method SP target SP version': "
           f"{_quote(b'GET  /' + b'x' * 60 + b' HTTP/1.1')}")

# %% [markdown]
# ## The grammar, as four regular expressions
#
# RFC 9110 and RFC 9112 define every piece of a request in ABNF, a notation for grammars
# (you saw one line of it above). For this parser you need only four pieces:
#
# - a **token** (RFC 9110 §5.6.2): methods and header names. Letters, digits and
#   ``!#$%&'*+-.^_`|~``. No spaces, no colon, nothing invisible.
# - a **field value** (RFC 9110 §5.5): visible ASCII, bytes 0x80–0xFF ("obs-text"), and
#   spaces or tabs *inside*. No CR, no LF, no NUL, no other control byte.
# - a **request target** (RFC 9112 §3.2): visible ASCII, at least one byte.
# - an **HTTP version** (RFC 9112 §2.3): `HTTP/` then digit, dot, digit.

# %%
#| export
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")   # after stripping the outer spaces
TARGET = re.compile(rb"[\x21-\x7e]+")
VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")

# %% [markdown]
# The `rb"..."` prefix makes each pattern a raw *bytes* pattern: it matches `bytes`, not
# `str`, and backslashes reach the regex engine untouched. The parser always calls them with
# `fullmatch`, which succeeds only if the pattern covers every byte, so one stray byte
# anywhere is enough to fail. Try each pattern on a good and a bad input:

# %%
show_transcript([(pattern, repr(text), str(bool(regex.fullmatch(text)))) for pattern, regex, text in [
    ("TOKEN", TOKEN, b"Content-Type"), ("TOKEN", TOKEN, b"Content-Type "),
    ("FIELD_VALUE", FIELD_VALUE, b"caf\xe9 au lait"), ("FIELD_VALUE", FIELD_VALUE, b"a\r\nb"),
    ("TARGET", TARGET, b"/search?q=1"), ("TARGET", TARGET, b""),
    ("VERSION", VERSION, b"HTTP/1.1"), ("VERSION", VERSION, b"HTTP/1.10"),
]], columns=("pattern", "input", "matches"))

# %% [markdown]
# A trailing space is not part of a token, a CRLF cannot hide inside a value, a target
# cannot be empty, and `HTTP/1.10` is not a version (one digit on each side of the dot).
# Note that `FIELD_VALUE` ends in `*`, so it matches an empty value: `X-Empty:` with nothing
# after the colon is a legal field.

# %% [markdown]
# ## Where does the head end?
#
# Bytes arrive in pieces. Before parsing anything you need to know whether the whole head
# (request line, headers, empty line) has arrived, and you need to stop waiting when it is
# absurdly long. Two decisions shape this step:
#
# - **Lines end in CRLF, and only CRLF.** RFC 9112 §2.2 says a recipient *MAY* also accept a
#   bare LF. This parser refuses it with a 400: no browser or HTTP library sends one, and
#   accepting a line ending that the proxy in front of you does not accept is a classic way
#   for the two of you to disagree about where a request ends. A bare CR inside a line is
#   refused too (§2.2 allows refusing it or replacing it with a space).
# - **Empty lines before the request line are skipped.** §2.2 says a server SHOULD ignore at
#   least one: old clients sent an extra CRLF after a POST body.

# %% [markdown]
# A *bare* LF is an LF with no CR before it; a bare CR is a CR with something other than
# an LF after it. The pattern below says exactly that: `(?<!\r)\n` is "an LF not preceded
# by CR", and `\r(?=[^\n])` is "a CR followed by a byte that is not LF". A CR at the very
# end of the data is not flagged: its LF may simply not have arrived yet.

# %%
#| export
BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")

def _check_line_ends(data, start: int, end: int) -> None:
    bare = BARE_LINE_END.search(data, start, end)
    if bare:
        kind = "LF" if bare[0] == b"\n" else "CR"
        raise BadRequest(f"bare {kind} at byte {bare.start()}: lines must end in CRLF "
                         "(RFC 9112 §2.2)")

# %%
show_transcript([(repr(data), attempt(_check_line_ends, data, 0, len(data)))
                 for data in (b"Host: x\r\n", b"Host: x\n", b"Host: x\ry\r\n", b"Host: x\r")])

# %% [markdown]
# `None` means "no complaint". The error names the byte where the bad ending sits, which
# saves a lot of squinting at a hex dump. Skipping empty lines at the start is a loop:

# %%
#| export
def _skip_empty_lines(data) -> int:
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    return start

# %%
_skip_empty_lines(b"\r\n\r\nGET / HTTP/1.1\r\n")

# %% [markdown]
# It returns the offset where the request line really starts: byte 4, after two CRLFs.
#
# Now the search itself. The head has two parts whose ends you look for: the request line
# ends at the first CRLF, the header section at the first CRLF CRLF (the empty line). Both
# searches do the same three things, in this order:
#
# 1. look for the end marker;
# 2. check the line endings of whatever has arrived so far, so that a bare LF fails at
#    once instead of leaving you waiting for a CRLF that will never come;
# 3. measure the part so far: up to its end if the end is here, up to the end of the data
#    if not. A part that is too long is too long *before* its end arrives: a client that
#    sends a gigabyte of header must not get a gigabyte of your memory first.
#
# `_find_end` does those three steps and returns where the marker starts (`-1` if it has
# not arrived) and how many bytes the part has so far.

# %%
#| export
def _find_end(data, start: int, marker: bytes) -> tuple[int, int]:
    """``(end, size)``: where ``marker`` starts at or after ``start`` (-1 while it has not
    arrived) and how long the part is so far. Line endings are checked on the way."""
    end = data.find(marker, start)
    stop = len(data) if end < 0 else end
    _check_line_ends(data, start, stop + len(marker))
    return end, stop - start

# %%
[_find_end(b"GET / HTTP/1.1\r\nHost: x", 0, b"\r\n"), _find_end(b"GET /aaaa", 0, b"\r\n")]

# %% [markdown]
# In the first input the request line ends at byte 14 and is 14 bytes long. In the second
# no CRLF has arrived yet (`-1`), but the 9 bytes that did already count against the limit.
#
# `split_head` runs `_find_end` twice, once per part, and compares each size with its
# limit. A request line over the limit is a 414 (URI Too Long, RFC 9110 §15.5.15); a header
# section over it is a 431 (Request Header Fields Too Large, RFC 6585 §5). Only once both
# ends are here does it cut the head into pieces; until then it returns `None`, meaning
# "come back with more bytes".

# %%
#| export
def split_head(data, max_line: int = MAX_LINE, max_headers_bytes: int = MAX_HEADERS_BYTES):
    """Return ``(request_line, field_lines, body_start)``, or None while the head is incomplete."""
    start = _skip_empty_lines(data)
    line_end, size = _find_end(data, start, b"\r\n")
    if size > max_line:
        raise URITooLong(f"request line longer than {max_line} bytes (RFC 9112 §3)")
    if line_end < 0:
        return None
    head_end, size = _find_end(data, line_end, b"\r\n\r\n")
    if size > max_headers_bytes:
        raise HeaderFieldsTooLarge(f"header section longer than {max_headers_bytes} bytes "
                                   "(RFC 6585 §5)")
    if head_end < 0:
        return None
    fields = bytes(data[line_end + 2:head_end]).split(b"\r\n") if head_end > line_end else []
    return bytes(data[start:line_end]), fields, head_end + 4

# %% [markdown]
# The second search starts at `line_end`, the CRLF that ends the request line, not after
# it: a request with no header fields at all (`GET / HTTP/1.0\r\n\r\n`) has its CRLF CRLF
# right there. Try it on the POST from the first section:

# %%
split_head(post)

# %% [markdown]
# The request line, a list of header lines, and the offset where the body starts: byte 53,
# where `hello` begins. Now watch it wait, then refuse:

# %%
show_transcript([
    ("half a head", attempt(split_head, b"GET / HTTP/1.1\r\nHost: x\r\n")),
    ("bare LF",     attempt(split_head, b"GET / HTTP/1.1\nHost: x\n\n")),
    ("long line",   attempt(split_head, b"GET /" + b"a" * 9000)),
    ("huge head",   attempt(split_head, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000)),
])

# %% [markdown]
# Half a head is not an error, only `None`: the rest may be on its way. The long line was
# refused although no CRLF had arrived yet, and the huge head although its empty line never
# came. Each refusal is its own class with its own status: 400, 414, 431.

# %% [markdown]
# ## The request line
#
# RFC 9112 §3: `request-line = method SP request-target SP HTTP-version`, where `SP` is one
# space byte. Start with the version, the last of the three parts. It has two ways to be
# wrong: it may not be a version at all (400), or it may be a well-formed version this
# parser does not speak (505 HTTP Version Not Supported).

# %%
#| export
def _parse_version(version: bytes) -> bytes:
    match = VERSION.fullmatch(version)
    if not match:
        raise BadRequest(f"not an HTTP version (RFC 9112 §2.3): {_quote(version)}")
    if match[1] != b"1":
        raise HTTPVersionNotSupported(f"HTTP/{match[1].decode()} is not HTTP/1.x "
                                      "(RFC 9110 §15.6.6)")
    return version[5:]

# %%
show_transcript([(v, attempt(_parse_version, v)) for v in (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1", b"HTTP/2.0")])

# %% [markdown]
# The version comes back as `b"1.1"`, without `HTTP/`, the way h11 (a library you will meet
# below) stores it. `HTTP/2.0` is a 505, not a 400: the text is well formed, but HTTP/2 does
# not even use this text format, so this parser cannot speak it.
#
# The whole line has exactly three parts with exactly one space between each two.
# Splitting on `b" "` and demanding three pieces enforces both at once: a double space
# produces an empty piece, a trailing space a fourth one.

# %%
#| export
def parse_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """Split ``method SP request-target SP HTTP-version`` (RFC 9112 §3)."""
    parts = line.split(b" ")
    if len(parts) != 3:
        raise BadRequest(f"request line is not 'method SP target SP version' "
                         f"(RFC 9112 §3): {_quote(line)}")
    method, target, version = parts
    if not TOKEN.fullmatch(method):
        raise BadRequest(f"method is not a token (RFC 9112 §3.1): {_quote(method)}")
    if not TARGET.fullmatch(target):
        raise BadRequest(f"request-target is empty or not visible ASCII (RFC 9112 §3.2): "
                         f"{_quote(target)}")
    return method, target, _parse_version(version)

# %%
parse_request_line(b"GET /search?q=bytes HTTP/1.1")

# %% [markdown]
# Three pieces of bytes: the method, the *request target* (the path with its query string),
# and the version. Now the lines that must fail:

# %%
bad_lines = [b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b"GET /a b HTTP/1.1",
             b"G(E)T / HTTP/1.1", b"GET /\x7f HTTP/1.1", b"GET / HTTP/2.0"]
show_transcript([(line, attempt(parse_request_line, line)) for line in bad_lines])

# %% [markdown]
# The first three all fail the same check, each for its own reason: an empty piece, a
# fourth piece, and a space inside the target, which clients must percent-encode as `%20`.
# `(` is not a token character, so `G(E)T` cannot be a method; `\x7f` (DEL) is invisible,
# so it cannot be in a target; and the version is checked by `_parse_version`, as above.

# %% [markdown]
# ## Header fields
#
# Each field line is `field-name ":" OWS field-value OWS` (RFC 9112 §5), where OWS is
# optional spaces or tabs. Three rules from the RFC decide the traps you saw:
#
# - a name is a token, compared case-insensitively (RFC 9110 §5.1): store it lower-cased;
# - whitespace between the name and the colon is a 400 (RFC 9112 §5.1);
# - a line that starts with a space or tab continues the previous one ("obs-fold"); a server
#   must reject it with 400 or replace it with a space (RFC 9112 §5.2). This parser rejects.
#
# The fields stay a list of `(name, value)` pairs, in order, repeats included. A dict would
# lose the second `Accept`; joining them is a decision for later (the `header()` helper).
#
# First, cut one line into name and value. This is where the shapes a proxy could misread
# are refused, and the order of the checks matters. Obs-fold comes first: a folded line
# such as `  b` has no colon, and the error should say "obs-fold", not "no colon".

# %%
#| export
def _split_field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise BadRequest(f"line folding (obs-fold) is not allowed (RFC 9112 §5.2): "
                         f"{_quote(line)}")
    name, colon, value = line.partition(b":")
    if not colon:
        raise BadRequest(f"field line without a colon (RFC 9112 §5): {_quote(line)}")
    if name[-1:] in (b" ", b"\t"):
        raise BadRequest(f"whitespace between field name and colon (RFC 9112 §5.1): "
                         f"{_quote(line)}")
    return name, value

# %%
_split_field(b"Host: example.org:8080")

# %% [markdown]
# `partition(b":")` splits at the *first* colon, so a value may hold colons of its own, like
# the port here. The value still starts with the space after the colon: that space is OWS,
# and the next step strips it.
#
# `parse_fields` then checks each piece against the grammar. The name must be a token, and
# is stored lower-cased; the value, without its outer spaces and tabs, must be a legal
# field value. The space-before-colon check above ran first on purpose: `Host ` is not a
# token either, but "whitespace between field name and colon" tells the client exactly
# what it did wrong.

# %%
#| export
def parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Parse field lines into ``(lower-cased name, value)`` pairs, in order (RFC 9112 §5)."""
    fields = []
    for line in lines:
        name, value = _split_field(line)
        if not TOKEN.fullmatch(name):
            raise BadRequest(f"field name is not a token (RFC 9110 §5.1): {_quote(name)}")
        value = value.strip(b" \t")
        if not FIELD_VALUE.fullmatch(value):
            raise BadRequest(f"control character in field value (RFC 9110 §5.5): {_quote(line)}")
        fields.append((name.lower(), value))
    return fields

# %%
parse_fields([b"Host: x", b"ACCEPT:a", b"accept: \t b  "])

# %% [markdown]
# Names come out lower-case, and the spaces and the tab around `b` are gone. Both `accept`
# lines survived, in order. Now the traps, one list of lines each:

# %%
bad_fields = [[b"Host : x"], [b"X-Note: a", b"  b"], [b"Host x"],
              [b"X-Note: a\x00b"], [b"X@Y: 1"]]
show_transcript([(repr(lines), attempt(parse_fields, lines)) for lines in bad_fields])

# %% [markdown]
# ## How long is the body?
#
# The head is parsed; now the hardest question in HTTP/1.1: where does the body end? Get it
# wrong and the leftover bytes are read as the *next* request, one the client never sent.
# That is request smuggling. RFC 9112 §6.3 answers, for requests:
#
# 1. `Transfer-Encoding` present: the body is sent in *chunks*, each announcing its own
#    size, and ends with a chunk of size zero (the next section shows what that looks
#    like). If `Content-Length` is there too, the message "ought to be handled as an
#    error"; this parser answers 400 (§6.1 allows it and asks you to close the connection
#    either way). `chunked` must be the last coding, or the length is unknowable: 400 (§6.3
#    rule 4). Any other coding before it (`gzip, chunked`) is one this parser does not
#    implement: 501 Not Implemented (§6.1).
# 2. Otherwise `Content-Length`: it must be digits only (RFC 9110 §8.6); anything else, or
#    several values that disagree, is a 400 (§6.3 rule 5). Identical repeats (`5, 5`) may
#    collapse to one (RFC 9110 §8.6).
# 3. Neither: the request has no body at all (§6.3 rule 7).
#
# Rule 2 first. A field may appear on several lines, and each line may hold a
# comma-separated list, so `_content_length` gets a list of raw values and has to reduce
# them to one number.

# %%
#| export
def _content_length(lengths: list[bytes], max_body: int) -> int:
    values = {v.strip(b" \t") for line in lengths for v in line.split(b",")}
    if len(values) != 1:
        raise BadRequest(f"conflicting Content-Length values {sorted(values)} (RFC 9112 §6.3)")
    value = values.pop()
    if not value.isdigit():
        raise BadRequest(f"Content-Length is not a number (RFC 9110 §8.6): {_quote(value)}")
    digits = value.lstrip(b"0") or b"0"
    if len(digits) > 18 or int(digits) > max_body:
        raise ContentTooLarge(f"body of {_quote(digits)} bytes, over the limit of {max_body}")
    return int(digits)

# %%
show_transcript([(repr(lengths), attempt(_content_length, lengths, MAX_BODY))
                 for lengths in ([b"5, 5", b"5"], [b"5", b"6"], [b"+3"], [b"1_0"])])

# %% [markdown]
# Follow the first row. The lines `5, 5` and `5`, cut at commas and put in a set, leave
# `{b"5"}`: one value, so the request is fine. `5` and `6` leave two: a 400, because two
# parties reading this request could each pick a different one.
#
# The last two rows are why the code asks `bytes.isdigit()` before it calls `int()`: Python's
# `int()` happily reads `b"+3"` as three and `b"1_0"` as ten, and a proxy in front of you
# may not. `isdigit()` accepts ASCII digits only, so `-3`, `3.0` and `0x3` fail too. The
# length check also comes before `int()`, because Python refuses to convert digit strings
# longer than a few thousand digits.
#
# Rule 1 lives in its own function. It lower-cases the codings (their names are
# case-insensitive) and refuses every shape whose framing is unclear.

# %%
#| export
def _check_transfer_coding(encodings, lengths, http_version: bytes) -> None:
    if lengths:
        raise BadRequest("both Transfer-Encoding and Content-Length: a request smuggling "
                         "risk (RFC 9112 §6.1, §6.3)")
    if http_version == b"1.0":
        raise BadRequest("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
    # RFC 9110 §5.6.1 asks a recipient to skip empty list elements; on a framing field this
    # parser refuses them (", chunked"), because a proxy in front may count them differently.
    codings = [c.strip(b" \t").lower() for line in encodings for c in line.split(b",")]
    if b"" in codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise BadRequest("chunked must be the final transfer coding, applied once "
                         "(RFC 9112 §6.1, §6.3)")
    if len(codings) > 1:
        raise TransferCodingNotImplemented(
            f"transfer coding {_quote(b', '.join(codings[:-1]))} is not supported (RFC 9112 §6.1)")

# %%
show_transcript([(repr(lines), attempt(_check_transfer_coding, lines, [], b"1.1"))
                 for lines in ([b"Chunked"], [b"chunked", b"chunked"], [b", chunked"])])

# %% [markdown]
# `None` means "fine": `Chunked` in any case is chunked. The same coding on two lines is a
# list of two, and chunking a body twice is not allowed. The empty element before the
# comma is refused too, as the comment explains. `body_length` puts the three rules
# together, in the RFC's order:

# %%
#| export
def body_length(fields, http_version: bytes = b"1.1", max_body: int = MAX_BODY) -> int | None:
    """The body's length in bytes, or None for a chunked body (RFC 9112 §6.3)."""
    encodings = [v for n, v in fields if n == b"transfer-encoding"]
    lengths = [v for n, v in fields if n == b"content-length"]
    if encodings:
        _check_transfer_coding(encodings, lengths, http_version)
        return None
    if not lengths:
        return 0
    return _content_length(lengths, max_body)

# %% [markdown]
# Run every framing trap through it, starting from field lines as they arrive. A number
# is the body's length; `None` means "chunked", to be read with the decoder of the next
# section.

# %%
def framing(*lines):
    return attempt(body_length, parse_fields(list(lines)))

show_transcript([(repr(lines), framing(*lines)) for lines in [
    [b"Content-Length: 5"], [b"content-length: 5", b"Content-Length: 5"], [],
    [b"Content-Length: five"], [b"Content-Length: -3"], [b"Content-Length: 5, 6"],
    [b"Content-Length: 99999999999999999999999"], [b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked", b"Content-Length: 5"], [b"Transfer-Encoding: gzip"],
    [b"Transfer-Encoding: gzip, chunked"],
]])

# %% [markdown]
# Two spellings of `Content-Length` with the same value are one field with one value, so
# the second row is fine. A length of twenty-three digits is refused as too large (413
# Content Too Large) without ever being converted. And `gzip` alone is a 400, not a 501:
# without `chunked` at the end, nobody can tell where the body stops.

# %% [markdown]
# ## Chunked bodies
#
# A client that does not know the body's length up front (a file upload read from a pipe,
# say) sends it in chunks (RFC 9112 §7.1). Each chunk is its size in hexadecimal, CRLF, the
# data, CRLF. A chunk of size 0 ends the body; it may be followed by trailer fields, and an
# empty line closes everything:

# %%
chunked = b"5\r\nhello\r\n7;note=ext\r\n, world\r\n0\r\nX-Checksum: 42\r\n\r\n"
barelab.show_bytes(chunked)

# %% [markdown]
# The size line may carry *extensions* after a `;` (here `note=ext`), which a recipient
# must ignore if it does not know them (RFC 9112 §7.1.1). The trailer `X-Checksum: 42` is
# a header field sent after the body, for things known only at the end. First, read one
# size line:

# %%
#| export
HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
MAX_CHUNK_LINE = 4096

def _chunk_size(line: bytes) -> int:
    size, _, extensions = line.partition(b";")
    size = size.rstrip(b" \t")            # BWS before ';' (RFC 9112 §7.1.1)
    if not HEX_SIZE.fullmatch(size) or not FIELD_VALUE.fullmatch(extensions):
        raise BadRequest(f"bad chunk size line (RFC 9112 §7.1): {_quote(line)}")
    return int(size, 16)

# %%
[_chunk_size(line) for line in (b"5", b"7;note=ext", b"1A", b"0")]

# %% [markdown]
# `partition(b";")` cuts the extensions off; `rstrip` allows the spaces RFC 9112 permits
# before the `;`; the size must be 1 to 16 hex digits (16 hex digits is already far more
# than any body you will ever accept, and it keeps `int()` cheap). `1A` is 26.
#
# Then the decoder itself. Since bytes arrive in pieces, it must be able to stop in the
# middle of a chunk and resume when more come. So it is a small class that remembers where
# it stopped (`pos`, an offset into the buffer) and what it has decoded so far (`parts`,
# and their total `size`, to enforce the body limit).

# %%
#| export
class ChunkedDecoder:
    """Decode a chunked body (RFC 9112 §7.1) from a buffer that may still be growing."""

    def __init__(self, pos: int = 0, max_body: int = MAX_BODY,
                 max_trailer_bytes: int = MAX_HEADERS_BYTES):
        self.pos, self.max_body, self.max_trailer_bytes = pos, max_body, max_trailer_bytes
        self.parts: list[bytes] = []
        self.size = 0

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

# %% [markdown]
# `advance(data)` decodes as many whole chunks as `data` holds, starting at `pos`. It
# returns the offset just past the final empty line, or `None` if it needs more bytes. To
# keep each cell short, the method is written as a plain function and then attached to the
# class; that is the same as writing it inside the class body.

# %%
#| export
def _advance(self, data) -> int | None:
    while True:
        line_end = data.find(b"\r\n", self.pos)
        if line_end < 0:
            if len(data) - self.pos > MAX_CHUNK_LINE:
                raise BadRequest("chunk size line too long (RFC 9112 §7.1)")
            return None
        size = _chunk_size(bytes(data[self.pos:line_end]))
        if size == 0:
            return self._trailers(data, line_end + 2)
        self._take_chunk(data, line_end + 2, size)
        if self.pos != line_end + 2 + size + 2:   # chunk not all here yet
            return None

ChunkedDecoder.advance = _advance

# %% [markdown]
# The loop reads a size line, then either finishes (size 0: on to the trailers) or takes
# one chunk and goes round again. It returns `None` in two places: when the size line has
# not fully arrived, and when the chunk's data has not. In both cases `pos` still points at
# the start of an unfinished size line, so the next call re-reads that one line and
# carries on; everything before `pos` is never looked at again.
#
# Taking one chunk checks the limit as soon as the chunk *announces* its size, waits if
# the data is not all here, and insists on the CRLF after the data: a chunk that is longer
# than it says is not quietly accepted.

# %%
#| export
def _take_chunk(self, data, start: int, size: int) -> None:
    if self.size + size > self.max_body:
        raise ContentTooLarge(f"chunked body over the limit of {self.max_body} bytes")
    end = start + size
    if len(data) < end + 2:
        return                                  # wait: pos stays on this chunk's size line
    if data[end:end + 2] != b"\r\n":
        raise BadRequest("chunk data is not followed by CRLF (RFC 9112 §7.1)")
    self.parts.append(bytes(data[start:end]))
    self.size += size
    self.pos = end + 2

ChunkedDecoder._take_chunk = _take_chunk

# %% [markdown]
# Stop the bytes in the middle of the second chunk and look inside the decoder:

# %%
decoder = ChunkedDecoder()
decoder.advance(b"5\r\nhello\r\n7;note=ext\r\n, wo"), decoder.parts, decoder.pos

# %% [markdown]
# `None`: not finished. The first chunk is decoded, and `pos` is 10, the start of the size
# line `7;note=ext`. When more bytes come, the decoder starts again from there.
#
# After the zero-size chunk come optional trailer fields, then the empty line. They are
# validated like header fields and limited like them, with the same `_find_end`, then
# dropped: this parser's `Request` has no place for them, and RFC 9112 §7.1.2 lets a
# recipient discard them.

# %%
#| export
def _trailers(self, data, start: int) -> int | None:
    if data[start:start + 2] == b"\r\n":       # no trailer fields, just the empty line
        self.pos = start + 2
        return self.pos
    end, size = _find_end(data, start, b"\r\n\r\n")
    if size > self.max_trailer_bytes:
        raise HeaderFieldsTooLarge("trailer section too large (RFC 9112 §7.1.2)")
    if end < 0:
        return None
    parse_fields(bytes(data[start:end]).split(b"\r\n"))   # validate, then discard
    self.pos = end + 4
    return self.pos

ChunkedDecoder._trailers = _trailers

# %% [markdown]
# Watch it resume: feed the chunked body above one byte more at a time and record each time
# `advance` returns something other than `None`.

# %%
decoder = ChunkedDecoder()
for n in range(1, len(chunked) + 1):
    end = decoder.advance(chunked[:n])
    if end is not None:
        print(f"complete after {n} of {len(chunked)} bytes: {decoder.body!r}")

# %% [markdown]
# It said "complete" once, at the very last byte, and the two chunks were joined. For a
# whole body already in memory, a one-line wrapper is handier:

# %%
#| export
def decode_chunked(data: bytes, *, max_body: int = MAX_BODY) -> bytes:
    """Decode a complete chunked body (RFC 9112 §7.1); refuse anything else with 400."""
    decoder = ChunkedDecoder(max_body=max_body)
    end = decoder.advance(data)
    if end is None:
        raise BadRequest("chunked body ends before its last chunk (RFC 9112 §7.1)")
    if end != len(data):
        raise BadRequest(f"bytes after the end of the chunked body: {_quote(data[end:])}")
    return decoder.body

# %% [markdown]
# The full example, an empty body, a body with no last chunk, a chunk longer than it says,
# a negative size, and a next request glued to the end:

# %%
show_transcript([(repr(data), attempt(decode_chunked, data)) for data in [
    chunked, b"0\r\n\r\n", b"5\r\nhello\r\n", b"3\r\nhello\r\n0\r\n\r\n", b"-1\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
]])

# %% [markdown]
# ## Putting it together: `Request` and `RequestReader`
#
# A parsed request is a small *frozen* dataclass: five fields, all bytes, that nobody can
# change by accident once the parser has checked them. It has one helper. `header(name)`
# looks a field up case-insensitively and joins repeats with `", "`, which RFC 9110 §5.3
# says means the same as one line holding the list. (One field breaks that rule: several
# `Cookie` lines are joined with `"; "` instead. Chapter 06 deals with it.)

# %%
#| export
@dataclass(frozen=True)
class Request:
    """One parsed HTTP/1.1 request. Names are lower-cased bytes; order and repeats are kept."""

    method: bytes
    target: bytes
    http_version: bytes                       # b"1.1" or b"1.0"
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""

    def header(self, name: str | bytes) -> bytes | None:
        """All values of field ``name`` (any case) joined with ", ", or None if absent."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        values = [value for field, value in self.headers if field == key]
        return b", ".join(values) if values else None

# %%
Request(b"GET", b"/", b"1.1", ((b"accept", b"a"), (b"accept", b"b"))).header("ACCEPT")

# %% [markdown]
# Two `accept` lines, one answer. One last rule needs the whole head: an HTTP/1.1 request
# must carry exactly one `Host` field (RFC 9112 §3.2), naming the site it is meant for, and
# a server MUST answer 400 otherwise. HTTP/1.0 did not require `Host`, but two of them are
# refused whatever the version.
#
# The same sentence of §3.2 asks for more: a 400 for "a Host header field with an invalid
# field value" too. The value's grammar is `Host = uri-host [ ":" port ]`, borrowed from
# URIs (RFC 3986 §3.2.2–3.2.3): an IP literal in brackets (`[::1]`), or a *reg-name* made of
# letters, digits, `-._~`, the sub-delims `!$&'()*+,;=` and `%XX` escapes (an IPv4 address
# is one of those), then an optional port of digits. `HOST` says exactly that. An empty
# value is accepted, as h11 and chapter 06 accept it, because RFC 9110 §7.2 has a client
# send an empty `Host` when its target URI has no authority.

# %%
#| export
HOST = re.compile(rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
                  rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")

def check_host(fields, http_version: bytes) -> None:
    """Refuse with BadRequest a head without Host (HTTP/1.1), with two, or with a bad value."""
    hosts = [value for name, value in fields if name == b"host"]
    if len(hosts) > 1:
        raise BadRequest("more than one Host field (RFC 9112 §3.2)")
    if not hosts and http_version != b"1.0":
        raise BadRequest("an HTTP/1.1 request must carry a Host field (RFC 9112 §3.2)")
    if hosts and not HOST.fullmatch(hosts[0]):
        raise BadRequest(f"Host is not host[:port] (RFC 9112 §3.2): {hosts[0][:40]!r}")

# %%
show_transcript([(f"HTTP/{version.decode()}, {len(fields)} Host", attempt(check_host, fields, version))
                 for version, fields in [(b"1.1", []), (b"1.0", []), (b"1.0", [(b"host", b"a")] * 2)]])

# %% [markdown]
# Now the value. "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
# request message that lacks a Host header field and to any request message that contains
# more than one Host header field line or a Host header field with an invalid field value"
# (RFC 9112 §3.2). `a b` is not a host: no host name contains a space. The first four
# values below pass (`None`: nothing raised), the last four are refused with a 400.

# %%
show_transcript([(repr(value), attempt(check_host, [(b"host", value)], b"1.1"))
                 for value in [b"example.org:8080", b"127.0.0.1", b"[::1]:80", b"",
                               b"a b", b"a/b", b"a:b", b"caf%zz"]])

# %% [markdown]
# `RequestReader` is what a server holds per connection. You `feed()` it whatever the
# socket gave you, then ask `next_request()`: it returns a `Request`, or `None` meaning
# "need more bytes". Bytes beyond the request stay buffered for the next one: a client may
# send several requests back to back without waiting for answers (*pipelining*). After an
# `HTTPError` the connection cannot be trusted any more: answer with the error's status
# and close it.

# %%
#| export
class RequestReader:
    """Bytes in, Requests out, however the bytes are split (the server side of RFC 9112)."""

    def __init__(self, *, max_line: int = MAX_LINE, max_headers_bytes: int = MAX_HEADERS_BYTES,
                 max_body: int = MAX_BODY):
        self.max_line, self.max_headers_bytes, self.max_body = max_line, max_headers_bytes, max_body
        self.buffer = bytearray()
        self._head = None       # (method, target, version, fields, body_start, length or decoder)

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next_request(self) -> Request | None:
        """The next complete Request, or None while more bytes are needed. Raises HTTPError."""
        if self._head is None:
            self._head = self._read_head()
            if self._head is None:
                return None
        return self._read_body()

# %% [markdown]
# The whole state of a connection is two attributes: `buffer`, the bytes received and not
# yet used, and `_head`, the parsed head of the request in progress (or `None` between
# requests). `next_request` reads the head once, then the body as often as it takes.
#
# Reading the head is the pipeline of this chapter, in order: split, request line, fields,
# Host, body length. A chunked body gets a `ChunkedDecoder` that starts where the body does.

# %%
#| export
def _read_head(self):
    head = split_head(self.buffer, self.max_line, self.max_headers_bytes)
    if head is None:
        return None
    request_line, field_lines, body_start = head
    method, target, version = parse_request_line(request_line)
    fields = parse_fields(field_lines)
    check_host(fields, version)
    length = body_length(fields, version, self.max_body)
    if length is None:
        length = ChunkedDecoder(body_start, self.max_body, self.max_headers_bytes)
    return method, target, version, tuple(fields), body_start, length

RequestReader._read_head = _read_head

# %%
reader = RequestReader()
reader.feed(post)
reader._read_head()

# %% [markdown]
# The six things the reader remembers about the POST: method, target, version, fields, the
# offset where the body starts (53) and its length (5). `next_request` stores this tuple in
# `self._head`, so when the body trickles in over many `feed()` calls the head is parsed
# once, not once per call.
#
# Reading the body waits until all of it is here, then cuts the request out of the buffer.
# `end` is the offset just past this request; `del self.buffer[:end]` drops exactly those
# bytes, so whatever follows (the start of the next request) is at offset 0 for next time.

# %%
#| export
def _read_body(self) -> Request | None:
    method, target, version, fields, body_start, length = self._head
    if isinstance(length, ChunkedDecoder):
        end = length.advance(self.buffer)
        if end is None:
            return None
        body = length.body
    else:
        end = body_start + length
        if len(self.buffer) < end:
            return None
        body = bytes(self.buffer[body_start:end])
    del self.buffer[:end]
    self._head = None
    return Request(method, target, version, fields, body)

RequestReader._read_body = _read_body

# %% [markdown]
# Test it the hard way: two pipelined requests, the first one chunked, fed one byte at a
# time, the way a very slow network would deliver them. After each byte, ask for requests
# until the answer is `None`.

# %%
stream = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
          + b"GET /next HTTP/1.1\r\nHost: x\r\nAccept: a\r\nACCEPT: b\r\n\r\n")
reader = RequestReader()
for n in range(1, len(stream) + 1):
    reader.feed(stream[n - 1:n])
    while (request := reader.next_request()) is not None:
        print(f"after {n} of {len(stream)} bytes:", request.method, request.target,
              request.body, request.header("accept"))

# %% [markdown]
# Each request came out at the very byte that completed it: the POST's 62-byte head plus
# its 52-byte chunked body end at byte 114. The chunks were joined into one body, and the
# two `Accept` lines (in two spellings) came back as one value.
#
# Finally, `parse_request` is the one-shot version for bytes you already hold. Bytes that
# end too early are a 400: RFC 9112 §8 calls such a message incomplete, and a server may
# answer it with an error before it closes the connection.

# %%
#| export
def parse_request(data: bytes, *, max_line: int = MAX_LINE,
                  max_headers_bytes: int = MAX_HEADERS_BYTES, max_body: int = MAX_BODY) -> Request:
    """Parse one complete request from ``data``. Bytes after it are left unread."""
    reader = RequestReader(max_line=max_line, max_headers_bytes=max_headers_bytes,
                           max_body=max_body)
    reader.feed(data)
    request = reader.next_request()
    if request is None:
        raise BadRequest("the request is incomplete: the bytes end before it does (RFC 9112 §8)")
    return request

# %%
parse_request(post)

# %% [markdown]
# Now the six requests that broke the naive parser, side by side with the new one:

# %%
show_transcript(
    [(name, attempt(naive_parse, data), attempt(parse_request, data)) for name, data in traps.items()],
    columns=("request", "naive", "parse_request"))

# %% [markdown]
# Every legal request is now read correctly, every broken one is refused with a 400 that
# names the rule, and nothing crashed with a `ValueError`.

# %% [markdown]
# ## A second opinion: h11
#
# You wrote a parser from the RFC; so did the authors of h11, the library behind httpx,
# uvicorn and barelab's own servers. It is *sans-IO*: you hand it bytes, it hands you
# events (`Request`, `Data`, `EndOfMessage`), and it never touches a socket.
#
# `h11_events` hands a connection all the bytes, then an empty `bytes`, which is h11's way
# of saying "the client closed the connection": without it, a request whose body is too
# short would simply wait for more instead of failing. Then it collects events until the
# request is over. (`PAUSED` is what h11 says when a second request is waiting but the
# first has not been answered yet.)

# %%
import h11

def h11_events(data):
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    connection.receive_data(b"")          # "the client closed": no more bytes will come
    events = []
    while True:
        event = connection.next_event()   # raises h11.RemoteProtocolError on bad input
        events.append(event)
        if type(event) in (h11.EndOfMessage, h11.ConnectionClosed) or event is h11.PAUSED:
            return events

h11_events(post)

# %% [markdown]
# Three events for one POST: the head as a `Request`, the body as `Data` (it could come in
# several pieces), and `EndOfMessage`. Turn them into your own `Request`, so that the two
# parsers' answers can be compared with `==`. h11 lower-cases header names too, so its
# headers fit as they are:

# %%
def h11_parse(data):
    request, *rest = h11_events(data)
    body = b"".join(bytes(event.data) for event in rest if isinstance(event, h11.Data))
    return Request(request.method, request.target, request.http_version,
                   tuple(request.headers), body)

h11_parse(post)

# %% [markdown]
# Now run both parsers on a few valid requests: one repeats a header, one is HTTP/1.0
# without `Host`, one has a chunked body, one has an empty value and a non-ASCII byte. The
# table says `same` for each field where the two agree, and shows both values where not.

# %%
samples = [post, b"GET /a?b=1 HTTP/1.1\r\nHOST: x\r\nAccept: a\r\naccept: b\r\n\r\n",
           b"GET / HTTP/1.0\r\n\r\n",
           b"PUT /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
           b"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n"]

def compare(data):
    ours, theirs = parse_request(data), h11_parse(data)
    return tuple("same" if getattr(ours, f) == getattr(theirs, f)
                 else f"{getattr(ours, f)!r} vs {getattr(theirs, f)!r}"
                 for f in ("method", "target", "http_version", "headers", "body"))

show_transcript([(data.split(b"\r\n")[0],) + compare(data) for data in samples],
                        columns=("request line", "method", "target", "version", "headers", "body"))

# %% [markdown]
# Five requests, twenty-five fields, all the same. One table is a spot check, not a proof;
# `tests/test_http_wire.py` runs the same comparison on hundreds of requests that
# hypothesis, a property-based testing library, generates from the RFC's grammar.

# %% [markdown]
# ## Refusing what h11 refuses
#
# Agreement on good requests is half the job. The other half: when h11 refuses a request,
# yours must refuse it too. `verdict` runs one parser on one request and reports
# `accepted`, or the status it would answer with and the start of its message. (h11's
# errors carry their status as `error_status_hint`.) Here is a request without `Host`:

# %%
def verdict(parse, data):
    try:
        parse(data)
        return "accepted"
    except HTTPError as error:
        status, message = error.status, error.message
    except h11.RemoteProtocolError as error:
        status, message = error.error_status_hint, str(error)
    return f"{status} {message[:36]}" + ("…" if len(message) > 36 else "")

verdict(parse_request, b"GET / HTTP/1.1\r\n\r\n"), verdict(h11_parse, b"GET / HTTP/1.1\r\n\r\n")

# %% [markdown]
# Both say 400, in different words. Now a whole table of malformed requests:

# %%
head = b"POST / HTTP/1.1\r\nHost: x\r\n"
malformed = {
    "double space":       b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no Host":            b"GET / HTTP/1.1\r\n\r\n",
    "two Host":           b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "space before colon": head + b"Content-Length : 2\r\n\r\nhi",
    "NUL in value":       head + b"X: a\x00b\r\n\r\n",
    "negative length":    head + b"Content-Length: -2\r\n\r\nhi",
    "conflicting length": head + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
    "gzip coding":        head + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "body too short":     head + b"Content-Length: 9\r\n\r\nhi",
}
show_transcript([(name, verdict(parse_request, data), verdict(h11_parse, data))
                         for name, data in malformed.items()],
                        columns=("request", "parse_request", "h11"))

# %% [markdown]
# Same verdicts, same statuses. Now the places where the two *differ*, each on purpose:

# %%
disagreements = {
    "bare LF":            b"GET / HTTP/1.1\nHost: x\n\n",
    "obs-fold":           head + b"X-Note: a\r\n b\r\n\r\n",
    "CL and TE":          head + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "HTTP/2.0":           b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "control byte 0x01":  head + b"X: a\x01b\r\n\r\n",
    "bad Host value":     b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "empty line first":   b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "space before ;":     (head + b"Transfer-Encoding: chunked\r\n\r\n"
                           + b"2 ;note\r\nhi\r\n0\r\n\r\n"),
}
show_transcript([(name, verdict(parse_request, data), verdict(h11_parse, data))
                         for name, data in disagreements.items()],
                        columns=("request", "parse_request", "h11"))

# %% [markdown]
# Each difference is a choice (all but one left open by the RFC), and you can defend yours:
#
# - **bare LF**: §2.2 says MAY accept; you refuse, for the smuggling reason above. h11 accepts.
# - **obs-fold**: §5.2 allows refusing it (400) or replacing it with a space; h11 replaces.
# - **CL and TE**: §6.1 allows rejecting or letting `Transfer-Encoding` win; h11 lets it win.
#   Both are legal; refusing is the safer one when a proxy might pick the other header.
# - **HTTP/2.0**: h11 accepts any `HTTP/d.d` and leaves the version check to you; you do it.
# - **0x01**: the grammar of RFC 9110 §5.5 has no control bytes in a field value, but the
#   same section lets a recipient keep those other than NUL, CR and LF; h11 keeps them.
# - **bad Host value**: §3.2 is a MUST, and you follow it; h11 only checks that `Host` is
#   there once, and a space is a legal byte in a field value. The check is yours to add.
# - **empty line first**: here you are the lenient one. §2.2 says a server SHOULD ignore at
#   least one empty line before the request line; h11 refuses.
# - **space before ;** in a chunk size line: lenient again, and this time the RFC insists.
#   The grammar allows "bad whitespace" (BWS) there, and RFC 9110 §5.6.3 says a recipient
#   MUST parse it and remove it; h11 refuses.
#
# So the rule the test file checks is: whenever h11 refuses, you refuse, except for these
# last two, where refusing would break the RFC.

# %% [markdown]
# ## Writing a response
#
# The other direction is easier, because you are the one writing the bytes. Three rules
# still matter:
#
# - the status line is `HTTP-version SP status-code SP [ reason-phrase ]` (RFC 9112 §4):
#   the reason phrase is optional, but the space before it is not;
# - `Content-Length` tells the client where the body ends. A response with status 1xx, 204
#   or 304 has no body at all (RFC 9112 §6.3 rule 1; so has any response to a `HEAD`
#   request, which chapter 06 handles), and 1xx and 204 MUST NOT carry `Content-Length`
#   (RFC 9110 §8.6);
# - a header value must not contain CR or LF. If a value comes from user input, say a
#   redirect to `?next=...`, a CRLF inside it would let the user write headers of their own,
#   or a whole second response: *response splitting* (RFC 9112 §11.1).
#
# Mistakes here are bugs in *your* code, not the client's, so they raise `ValueError`, not
# `HTTPError`. First, reason phrases: the words after the status code, for humans only (a
# client must act on the number). The `http.HTTPStatus` of Python 3.11, which this course
# runs on, still uses the older names from RFC 7231 for a few codes that RFC 9110 renamed:

# %%
#| export
RFC9110_REASONS = {413: "Content Too Large", 414: "URI Too Long",
                   416: "Range Not Satisfiable", 422: "Unprocessable Content"}

def reason_phrase(status: int) -> str:
    """The reason phrase RFC 9110 §15 gives ``status``, or "" for an unknown code."""
    if status in RFC9110_REASONS:
        return RFC9110_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""

# %%
[reason_phrase(code) for code in (200, 204, 413, 431, 599)]

# %% [markdown]
# Header names and values may be given as `str` or as `bytes`. A `str` is encoded as
# latin-1, the WSGI convention of chapter 04: latin-1 turns each character from U+0000 to
# U+00FF into the byte with the same number, so nothing is lost in either direction. Each
# name and value is checked against the same grammar the parser uses, so what you write
# is something you would accept.

# %%
#| export
def _field_bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)

def format_field(name: str | bytes, value: str | bytes) -> bytes:
    """One ``name: value\\r\\n`` line; ValueError if either would break the framing."""
    name, value = _field_bytes(name), _field_bytes(value)
    if not TOKEN.fullmatch(name):
        raise ValueError(f"header name is not a token (RFC 9110 §5.1): {_quote(name)}")
    if value != value.strip(b" \t") or not FIELD_VALUE.fullmatch(value):
        raise ValueError(f"header value holds CR, LF or another control byte, or outer "
                         f"whitespace (RFC 9110 §5.5; RFC 9112 §11.1): {_quote(value)}")
    return name + b": " + value + b"\r\n"

# %%
format_field("Content-Type", "text/plain")

# %% [markdown]
# `format_response_head` writes the status line and the fields and stops at the empty line.
# Chapter 06 needs it alone, to stream a body whose length it does not know yet.

# %%
#| export
def format_response_head(status: int, headers, *, reason: str | None = None) -> bytes:
    """Status line, header lines and the empty line that ends the head (RFC 9112 §4)."""
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise ValueError(f"status must be a three-digit int, not {status!r} (RFC 9110 §15)")
    phrase = _field_bytes(reason_phrase(status) if reason is None else reason)
    if not FIELD_VALUE.fullmatch(phrase):
        raise ValueError(f"reason phrase holds a control byte: {_quote(phrase)}")
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    lines += [format_field(name, value) for name, value in headers]
    return b"".join(lines) + b"\r\n"

# %%
barelab.show_bytes(format_response_head(404, [("Content-Type", "text/plain")]))

# %% [markdown]
# The reason phrase came from `reason_phrase(404)`; pass `reason=` to choose your own.
#
# `format_response` frames a body you already have. Its one hard question is which status
# codes allow a body at all. For 1xx, 204 and 304 there is none, so a body is a bug, and so
# is a `Content-Length`, except for 304, where RFC 9110 §8.6 lets it state the length the
# full 200 response would have had. That check gets a function of its own:

# %%
#| export
def _check_bodyless(status: int, body: bytes, given: list[bytes]) -> None:
    if body:
        raise ValueError(f"a {status} response has no body (RFC 9112 §6.3)")
    if given and status != 304:
        raise ValueError(f"a {status} response must not carry Content-Length (RFC 9110 §8.6)")

# %%
attempt(_check_bodyless, 204, b"done", []), attempt(_check_bodyless, 304, b"", [b"120"])

# %% [markdown]
# For every other status, `format_response` computes `Content-Length` from the body; if
# you passed one yourself, it has to agree. A `Transfer-Encoding` is refused, because this
# function frames with a length. Header names and values are turned into bytes first, so
# `"content-length"` and `b"Content-Length"` are caught alike.

# %%
#| export
def format_response(status: int, headers, body: bytes = b"", *,
                    reason: str | None = None) -> bytes:
    """A complete HTTP/1.1 response with ``Content-Length`` framing (RFC 9112 §6.3)."""
    headers = [(_field_bytes(n), _field_bytes(v)) for n, v in headers]
    if any(n.lower() == b"transfer-encoding" for n, _ in headers):
        raise ValueError("format_response frames with Content-Length; use "
                         "format_response_head to send Transfer-Encoding yourself")
    given = [v for n, v in headers if n.lower() == b"content-length"]
    if status < 200 or status in (204, 304):
        _check_bodyless(status, body, given)
    elif not given:
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif given != [b"%d" % len(body)]:
        raise ValueError(f"Content-Length {given} does not match the {len(body)}-byte body")
    return format_response_head(status, headers, reason=reason) + bytes(body)

# %% [markdown]
# The same response as the server's at the start of the chapter, written by you:

# %%
barelab.show_bytes(format_response(200, [("Content-Type", "text/plain")], b"Hello, bytes!\n"))

# %% [markdown]
# Compare it with what barelab's server sent at the start of the chapter: same status line,
# same framing. The server also added `Date`, which RFC 9110 §6.6.1 requires of a server
# with a clock in every 2xx, 3xx and 4xx response, and `Server`, which is optional (RFC
# 9110 §10.2.4). Those depend on the server, not on the bytes, so they are the server's job
# (chapter 06), not the formatter's. A 204 has neither body nor length:

# %%
barelab.show_bytes(format_response(204, [("X-Done", "yes")], b""))

# %% [markdown]
# Now try the response-splitting attack. Pretend the value below came from a query string
# such as `?next=/home%0d%0aSet-Cookie:%20admin=1`, percent-decoded by your app:

# %%
next_url = "/home\r\nSet-Cookie: admin=1"
attempt(format_response, 302, [("Location", next_url)], b"")

# %% [markdown]
# Refused before a single byte went out (`attempt`, from the naive-parser section, turned
# the `ValueError` into text). Without the check, the client would have received a
# `Set-Cookie` header that your code never meant to send, and been logged in as admin.

# %% [markdown]
# ### Errors render as responses
#
# The last piece joins the two halves: a refused request becomes a response. The body
# is the error's message, so whoever sent the request learns which rule it broke, and the
# `Connection: close` tells them the server will hang up (RFC 9112 §9.6): after a framing
# error, nothing else on this connection can be trusted.

# %%
#| export
def error_response(error: HTTPError) -> bytes:
    """The response to send for a refused request; the server closes the connection after it."""
    body = (error.message + "\n").encode("utf-8")
    return format_response(error.status, [("Content-Type", "text/plain; charset=utf-8"),
                                          ("Connection", "close")], body)

# %% [markdown]
# Refuse a request with a negative length and look at the whole response that goes back:

# %%
try:
    parse_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n")
except HTTPError as error:
    response = error_response(error)
barelab.show_bytes(response)

# %% [markdown]
# The `\xc2\xa7` in the body is `§` in UTF-8, as the `charset=utf-8` announces:
# `show_bytes` draws every byte outside ASCII in hex. Is this a response a real client
# accepts? Ask h11 again, this time playing the client: send a request, then hand it your
# bytes and see what events come out.

# %%
client = h11.Connection(h11.CLIENT)
client.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
client.receive_data(response)
[client.next_event(), client.next_event(), client.next_event()]

# %% [markdown]
# A `Response` with status 400, a `Data` event holding the 55-byte message (no more, no
# less), and `EndOfMessage`: h11 found the body's end exactly where your `Content-Length`
# said it was.

# %% [markdown]
# ## Summary
#
# - HTTP/1.1 is a head of CRLF-terminated ASCII lines (request or status line, header
#   fields, an empty line) followed by a body whose length the head announces.
# - You built `barelab.built.http_wire`: `parse_request`, the incremental `RequestReader`,
#   `decode_chunked`, `format_response`, `format_response_head`, `error_response`, and
#   the `HTTPError` family whose `status` says how to refuse. Later chapters start with
#   `from barelab.built.http_wire import parse_request, format_response`.
# - Field names are case-insensitive and may repeat: keep a list of pairs, lower-case the
#   names, join repeats with `", "` only when asked.
# - Obs-fold and whitespace before the colon are 400s (RFC 9112 §5.1, §5.2); so are a bad,
#   negative or conflicting `Content-Length` and a `Transfer-Encoding` beside a
#   `Content-Length` (§6.1, §6.3), which is how request smuggling begins.
# - Limits are part of the parser: 414 for the request line, 431 for the header section,
#   413 for the body, enforced before the bytes are all in.
# - A chunked body is a run of chunks, each with its size in hex, ended by a zero-size
#   chunk and optional trailers. `ChunkedDecoder` reads it as the bytes arrive; a transfer
#   coding other than `chunked` is a 501.
# - h11 agrees with your parser on valid requests and refuses nothing you accept, except an
#   empty line before the request line and BWS in a chunk line, where the RFC asks for
#   leniency; where h11 is the lenient one, you know which RFC clause lets you be strict.
# - A response is framed by `Content-Length` (none for 1xx, 204, 304), and a header value
#   with CR or LF is refused before it can split a response.

# %% [markdown]
# ## Exercises
#
# Each exercise has a solution cell (replace its body with your own) and a check cell that
# tells you whether your answer works.
#
# ### Exercise 1 — Write a request by hand
#
# Write `format_request(method, target, headers, body)` returning the bytes of an HTTP/1.1
# request: request line, a `Host: example.org` field if `headers` has no `Host`, the given
# headers, a `Content-Length` when the body is not empty, the empty line, the body. The check
# parses your bytes with `parse_request` *and* with h11.

# %% tags=["solution"]
### BEGIN SOLUTION
def format_request(method: str, target: str, headers=(), body: bytes = b"") -> bytes:
    headers = list(headers)
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", "example.org"))
    if body:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return (head + "\r\n").encode("latin-1") + body
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    data = format_request("POST", "/notes", [("Content-Type", "text/plain")], b"buy milk")
    request = parse_request(data)
    assert request.method == b"POST" and request.target == b"/notes", "request line is wrong"
    assert request.header("host") == b"example.org", "add a Host field when none is given"
    assert request.body == b"buy milk", "the body did not come back: is Content-Length right?"
    assert h11_parse(data).body == b"buy milk", "h11 reads a different body"
    plain = parse_request(format_request("GET", "/", [("Host", "a.test")]))
    assert plain.header("host") == b"a.test", "keep the caller's Host, do not add a second"
    assert plain.header("content-length") is None, "no Content-Length for an empty body"

# %% [markdown]
# ### Exercise 2 — Path and query
#
# WSGI (chapter 04) splits the request target into `PATH_INFO` and `QUERY_STRING`. Write
# `split_target(target: bytes) -> tuple[bytes, bytes]`: everything before the first `?` is
# the path, everything after it the query (empty if there is no `?`). An absolute-form
# target (`http://host/path?q`, RFC 9112 §3.2.2, sent to proxies) yields its path part only,
# `/` if it has none.

# %% tags=["solution"]
### BEGIN SOLUTION
def split_target(target: bytes) -> tuple[bytes, bytes]:
    path, _, query = target.partition(b"?")
    if b"://" in path:
        after_scheme = path.split(b"://", 1)[1]
        slash = after_scheme.find(b"/")
        path = after_scheme[slash:] if slash >= 0 else b"/"
    return path, query
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert split_target(b"/search?q=bytes&page=2") == (b"/search", b"q=bytes&page=2")
    assert split_target(b"/plain") == (b"/plain", b""), "no '?' means an empty query"
    assert split_target(b"/a?b?c") == (b"/a", b"b?c"), "split at the first '?' only"
    assert split_target(b"/empty?") == (b"/empty", b"")
    assert split_target(b"http://example.org/x?y=1") == (b"/x", b"y=1"), "absolute form"
    assert split_target(b"http://example.org") == (b"/", b""), "absolute form without a path"

# %% [markdown]
# ### Exercise 3 — Keep the connection open?
#
# After answering, a server either reads the next request on the same connection or closes
# it. RFC 9112 §9.3: if the `Connection` field lists `close`, close; otherwise HTTP/1.1
# stays open, and HTTP/1.0 stays open only if `Connection` lists `keep-alive`. Tokens are
# case-insensitive and the field is a comma-separated list, maybe spread over several lines.
# Write `keep_alive(request: Request) -> bool`.

# %% tags=["solution"]
### BEGIN SOLUTION
def keep_alive(request: Request) -> bool:
    listed = request.header("connection") or b""
    tokens = {token.strip(b" \t").lower() for token in listed.split(b",")}
    if b"close" in tokens:
        return False
    return request.http_version != b"1.0" or b"keep-alive" in tokens
### END SOLUTION

# %% tags=["check"]
def _req(version, *fields):
    lines = b"".join(b"%s\r\n" % f for f in (b"Host: x",) + fields)
    return parse_request(b"GET / HTTP/%s\r\n%s\r\n" % (version, lines))

with check("Exercise 3"):
    assert keep_alive(_req(b"1.1")) is True, "HTTP/1.1 stays open by default"
    assert keep_alive(_req(b"1.0")) is False, "HTTP/1.0 closes by default"
    assert keep_alive(_req(b"1.1", b"Connection: Close")) is False, "tokens ignore case"
    assert keep_alive(_req(b"1.0", b"Connection: Keep-Alive")) is True
    assert keep_alive(_req(b"1.1", b"Connection: upgrade, close")) is False, "it is a list"
    assert keep_alive(_req(b"1.1", b"Connection: te", b"Connection: close")) is False, \
        "look at every Connection line"

# %% [markdown]
# ### Exercise 4 — Send a body in chunks
#
# Write `encode_chunked(body: bytes, size: int) -> bytes`, the inverse of `decode_chunked`:
# cut `body` into chunks of at most `size` bytes, write each as hex size, CRLF, data, CRLF,
# and end with the last chunk `0\r\n\r\n`. Chapter 06 uses this to stream responses.

# %% tags=["solution"]
### BEGIN SOLUTION
def encode_chunked(body: bytes, size: int) -> bytes:
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    assert encode_chunked(b"", 4) == b"0\r\n\r\n", "an empty body is just the last chunk"
    assert encode_chunked(b"hello", 8) == b"5\r\nhello\r\n0\r\n\r\n"
    assert encode_chunked(b"x" * 20, 16).startswith(b"10\r\n"), "sizes are hexadecimal"
    for body in (b"a", b"hello, world", bytes(range(256)) * 3):
        assert decode_chunked(encode_chunked(body, 7)) == body, "decode_chunked disagrees"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were running).

# %%
barelab.stop_all()

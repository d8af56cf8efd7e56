# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 05. A first WSGI app
#
# Time to build something of your own with nothing but PEP 3333: a small notes service
# that greets people, takes notes from forms and JSON, answers every mistake with the
# right status code, and streams. No framework, no decorators: a function, a dict and a
# few helpers you write yourself. At the end you run it on two different servers and read
# the bytes each one sends.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - route requests by method and path by hand, with 404 for an unknown path and 405 with an
#   `Allow` header for a known path and a wrong method;
# - parse a query string (repeated keys, percent-escapes, `+` as a space) and a urlencoded
#   form, reading exactly `CONTENT_LENGTH` bytes from `wsgi.input`;
# - take JSON in and give JSON out, with a clear 400 for invalid JSON, 411, 413 and 415
#   where they belong, and 201 with `Location` for something created;
# - stream a response from a generator and watch the pieces arrive over time;
# - serve one app on barelab's server and on `wsgiref.simple_server`, stop both properly,
#   and explain the differences in their raw responses.

# %% [markdown]
# ## The plan
#
# The app keeps notes in memory. Here are its routes:
#
# | method | path | what it does |
# | --- | --- | --- |
# | GET | `/` | a short text that lists the routes |
# | GET | `/hello?name=...` | greets every `name` in the query |
# | GET, POST | `/notes` | lists the notes; adds one from a form or from JSON |
# | GET, DELETE | `/notes/<id>` | one note; deletes it |
# | GET | `/count?to=5` | counts slowly, streaming one line at a time |
#
# Each request goes through the same steps. Each step either passes the request on or
# answers with an error status:
#
# ```mermaid
# flowchart LR
#     R["environ"] --> P{"path known?"}
#     P -- no --> E404["404 Not Found"]
#     P -- yes --> M{"method allowed<br/>for this path?"}
#     M -- no --> E405["405 Method Not Allowed<br/>+ Allow header"]
#     M -- yes --> H["handler: parse query, form or JSON"]
#     H -- "bad input" --> E4xx["400 / 411 / 413 / 415"]
#     H --> OK["200, 201, 204 or a stream"]
# ```
#
# You will build it piece by piece. But first, a warm-up.

# %% [markdown]
# ## Warm-up: hello, by hand
#
# Here is the smallest app that does something with the request. It takes the name from
# the query string in the quickest way you can think of: strip `name=` off the front.
# Everything else is the WSGI you met in chapter 04: a status, headers, a list of bytes.

# %%
import barelab

def hello_app(environ, start_response):
    name = environ.get("QUERY_STRING", "").removeprefix("name=") or "world"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"Hello, {name}!\n".encode()]

# %% [markdown]
# Serve it. The link below is live: open it in your browser, add `?name=` and your own
# name to the address, and reload.

# %%
hello_server = barelab.serve(hello_app, name="hello")
hello_server

# %% [markdown]
# `barelab.serve` started a server in a background thread, on a free port, and gave it
# your function. For every request that comes in, the server builds an `environ` and
# calls `hello_app(environ, start_response)`, exactly as in chapter 04.
#
# Now the same from a cell, with `curl`. A plain name works:

# %%
# !curl -s "{hello_server.url}?name=Ada"

# %% [markdown]
# Now send what a browser sends for the name *Renée Smith*. A URL cannot hold a space or
# an `é` as they are, so the browser writes the space as `+` and the `é` as its two UTF-8
# bytes, `%C3%A9`:

# %%
# !curl -s "{hello_server.url}?name=Ren%C3%A9e+Smith"

# %% [markdown]
# The app greets the encoding, not the person. The server passed `QUERY_STRING` on
# exactly as it came, `name=Ren%C3%A9e+Smith`, and nothing in the app decoded it.
#
# And two names at once go wrong too:

# %%
# !curl -s "{hello_server.url}?name=Ada&name=Grace"

# %% [markdown]
# The `&` separates fields, so the query is two fields, `name=Ada` and `name=Grace`,
# and the app took everything after the first `name=` as the name.
#
# Two bugs in one line of code, and there are more to find. A query string is a small
# format with rules of its own, and so is every kind of request body. In this chapter you
# write one careful helper for each format, so that no handler has to get them right
# again.
#
# The helpers go into a module, `barelab/built/wsgi_basics.py`. Later chapters import it
# instead of copying the code. The next cell names the module. Each cell marked
# `#| export` after it becomes part of the module.

# %%
#| default_exp wsgi_basics

# %% [markdown]
# ## Errors that know their status
#
# A helper that meets bad input cannot answer the client itself: it has no
# `start_response`. So it raises an exception, and the app turns the exception into a
# response. Chapter 02 built `HTTPError` for this: an exception that carries the status
# code to answer with. Chapter 02 also has `BadRequest` (400) and `ContentTooLarge` (413),
# and chapter 04 added `NotFound` (404) and `MethodNotAllowed` (405).
#
# Reading bodies needs two more: **411 Length Required** and **415 Unsupported Media
# Type**. The cell also sets `MAX_BODY`, the most bytes of body a helper reads unless you
# give it another limit.

# %%
#| export
# Helpers for WSGI apps written by hand: read the query, the body, a form or JSON from an
# environ, and answer with text or JSON. Each helper refuses bad input by raising an
# HTTPError that names the status to answer with, so an app catches one exception type.
import json
import re
from urllib.parse import parse_qs

from barelab.built.http_wire import BadRequest, ContentTooLarge, HTTPError, reason_phrase
from barelab.built.static_files import MethodNotAllowed, NotFound

MAX_BODY = 1024 * 1024   # bytes; a bigger body is a 413

class LengthRequired(HTTPError): status = 411          # RFC 9110 §15.5.12
class UnsupportedMediaType(HTTPError): status = 415    # RFC 9110 §15.5.16

# %% [markdown]
# `class LengthRequired(HTTPError): status = 411` is a whole class on one line: it
# inherits everything from `HTTPError` and changes only the status. Each one is an
# ordinary exception with a `status` and a `message`. Its `repr` shows both,
# which will make the tables below easy to read:

# %%
LengthRequired("send a Content-Length"), UnsupportedMediaType("send JSON").status

# %% [markdown]
# ## Query strings
#
# `QUERY_STRING` arrives exactly as the client sent it, still percent-encoded (chapter
# 04). Decoding it has four traps:
#
# - a key may **repeat** (`?tag=a&tag=b`), so each key maps to a *list* of values;
# - `%XX` escapes are UTF-8 bytes (`%C3%A9` is `é`), and a `+` means a space in a query
#   (the HTML form rule), while `%2B` is a real `+`;
# - `?flag` and `?flag=` are a key with an empty value, not nothing;
# - a query with invalid UTF-8 (`%FF`) or a million fields is the client's error: a 400.
#
# The standard library's `urllib.parse.parse_qs` handles the first three, once you ask
# for them: `keep_blank_values=True` keeps `?flag`, `errors="strict"` raises on bad UTF-8
# instead of inserting `�`, and `max_num_fields` stops at a limit. `_parse_pairs` wraps
# it and turns its two exceptions into 400s. Forms will use it too, which is why it
# takes text and not an environ.
#
# `raise ... from None` hides the original exception from the traceback. The client
# does not need to see a `UnicodeDecodeError` from deep inside `urllib`; the message of
# the `BadRequest` says what is wrong in words it can act on.

# %%
#| export
def _parse_pairs(text: str, max_fields: int) -> dict[str, list[str]]:
    try:
        return parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                        max_num_fields=max_fields)
    except UnicodeError:
        raise BadRequest("a %-escape in the query or form is not UTF-8") from None
    except ValueError:
        raise BadRequest(f"more than {max_fields} fields in the query or form") from None

# %% [markdown]
# Try it on the query that broke the warm-up app:

# %%
_parse_pairs("name=Ada&name=Ren%C3%A9e+Smith", max_fields=10)

# %% [markdown]
# Two names in a list, `+` a space, `%C3%A9` an `é`. That is both bugs fixed. The values
# are always lists, even when a name appears once: a handler that wants one value takes
# the first or the last, and says which.
#
# One detail remains. A client may also send raw bytes above 127 in the query, without
# `%` escapes. PEP 3333 hands every environ string over as "bytes in a str": each byte
# becomes one Latin-1 character (chapter 04). So `parse_query` first turns the string back
# into bytes with `encode("latin-1")`, then decodes those bytes as the UTF-8 they really
# are. Bytes that are not UTF-8 are a 400 here too.

# %%
#| export
def parse_query(query_string: str, max_fields: int = 1000) -> dict[str, list[str]]:
    """QUERY_STRING as {name: [values]}: escapes decoded as UTF-8, '+' as space, repeats kept."""
    try:
        text = query_string.encode("latin-1").decode("utf-8")  # bytes in a str (PEP 3333)
    except UnicodeError:
        raise BadRequest("the query string is not UTF-8") from None
    return _parse_pairs(text, max_fields)

# %% [markdown]
# To see a failure next to a success, you need a call that does not stop the cell.
# `attempt` calls a function and gives back the `repr` of its result, or of the error it
# raised. You will use it for every helper in this chapter.

# %%
def attempt(function, *args, **kwargs):
    try:
        return repr(function(*args, **kwargs))
    except Exception as error:
        return repr(error)

# %% [markdown]
# Now one query per trap. The last one has 1,001 fields; the table shows its first 40
# characters.

# %%
queries = ["name=Ada&name=Grace", "q=caf%C3%A9+au+lait", "sum=1%2B1", "flag&empty=",
           "q=%FF", "&".join(f"k{i}=v" for i in range(1001))]
barelab.show_transcript([(q[:40], attempt(parse_query, q)) for q in queries])

# %% [markdown]
# Read it row by row: both names kept, `é` and the spaces decoded, the `%2B` kept as a
# real plus, a bare `flag` with an empty value. The last two rows are errors, each with
# its status, 400, ready to send back.
#
# ### The warm-up, fixed
#
# Give `hello_app` the new parser. Serving under the same name replaces the old server on
# the same port, so the link above now reaches the new app:

# %%
def hello_app(environ, start_response):
    names = parse_query(environ.get("QUERY_STRING", "")).get("name") or ["world"]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"Hello, {' and '.join(names)}!\n".encode()]

hello_server = barelab.serve(hello_app, name="hello")

# %%
# !curl -s "{hello_server.url}?name=Ada&name=Ren%C3%A9e+Smith"

# %% [markdown]
# Both people greeted, spelled right. Now break it on purpose: `%FF` is not UTF-8.

# %%
broken = barelab.http_request(hello_server, path="/?name=%FF")
broken.status_line, hello_server.log.errors[-1].message

# %% [markdown]
# A **500**: the server caught an exception from the app and said "my fault". But the
# fault was the client's, and `parse_query` even said so with a `BadRequest`. The second
# item is the server log's last error: the exception, with its message. Nobody turned it
# into a response.
#
# That is a real bug, and a common one: a 500 tells the client to retry later, when
# retrying will never help. The notes app will catch every `HTTPError` and answer with
# its status, through a helper called `error_response` that you write further down.
# Until then, on to bodies.

# %% [markdown]
# ## Reading the body
#
# A POST carries its data in the body, and the body waits in `environ["wsgi.input"]`, a
# file-like stream. Three rules from PEP 3333 ("Input and Error Streams") and RFC 9112
# decide how to read it:
#
# - Read **exactly `CONTENT_LENGTH` bytes**, always with a size. PEP 3333 says an app
#   "should not attempt to read more data than is specified by the CONTENT_LENGTH
#   variable", and a server only *should* stop you if you try. A server that hands you
#   its socket lets `read()` wait for bytes the client will never send.
# - No `CONTENT_LENGTH` and no `Transfer-Encoding` means **no body** (RFC 9112 §6.3,
#   rule 7). A chunked body without a length can be read to its end only if the server
#   promises to mark the end (`wsgi.input_terminated`, an extension that barelab and
#   gunicorn set). Otherwise the honest answer is **411 Length Required**.
# - A `CONTENT_LENGTH` that is not a number is a **400**; one above your limit is a
#   **413**, refused before a single byte is read; a body that ends early is a **400**.
#
# The first helper reads a given number of bytes. It loops because `read(n)` on a socket
# may return fewer than `n` bytes even when more are coming. An empty read means the body
# ended, so it stops there and lets the caller decide what a short body means.

# %%
#| export
def _read_exactly(stream, size: int) -> bytes:
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break  # the body ended early; the caller sees the shortfall
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)

# %% [markdown]
# Try it on an in-memory stream, once with enough bytes and once with too few:

# %%
import io

_read_exactly(io.BytesIO(b"hello, world"), 5), _read_exactly(io.BytesIO(b"hi"), 5)

# %% [markdown]
# Five bytes and no more from the first, though seven more were there. Two from the
# second, and no exception: it is up to the caller to notice.
#
# `io.BytesIO` hands out everything at once, so the loop runs only once here. A socket
# may hand out 1,400 bytes, then the next 1,400, as the network delivers them; the loop
# is what makes `_read_exactly` correct there too.
#
# The second helper covers a request without `CONTENT_LENGTH`. It applies the second rule.
# When the server marks the end, it reads `max_bytes + 1` bytes: getting that extra byte
# is how it tells "exactly at the limit" from "over it" without reading the whole of an
# oversized body.

# %%
#| export
def _read_unsized(environ: dict, max_bytes: int) -> bytes:
    if environ.get("wsgi.input_terminated"):          # the server marks the end for us
        body = _read_exactly(environ["wsgi.input"], max_bytes + 1)
        if len(body) > max_bytes:
            raise ContentTooLarge(f"the body is over {max_bytes} bytes")
        return body
    if environ.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequired("send a Content-Length: this server cannot find the end "
                             "of a chunked body")
    return b""                                        # RFC 9112 §6.3: no length, no body

# %% [markdown]
# Here are the rules of this section as a picture. `read_body`, a few cells down, walks it
# from left to right:
#
# ```mermaid
# flowchart LR
#     L{"CONTENT_LENGTH?"} -- "a number" --> N{"over the limit?"}
#     N -- yes --> E413["413"]
#     N -- no --> R["read exactly that many bytes"]
#     R -- "fewer arrived" --> E400b["400"]
#     L -- "not a number" --> E400["400"]
#     L -- "missing" --> T{"wsgi.input_terminated?"}
#     T -- yes --> U["read to the end, up to the limit (else 413)"]
#     T -- no --> C{"Transfer-Encoding?"}
#     C -- yes --> E411["411"]
#     C -- no --> Z["no body: b''"]
# ```
#
# `barelab.build_environ` makes an environ in-process, the way a server would. Here it
# builds a chunked POST with no length. On its own, that request gets a 411; with
# `wsgi.input_terminated` and ten bytes of body, it gets the body or a 413, depending on
# the limit:

# %%
from barelab import build_environ

chunked_post = build_environ("POST", "/", headers=[("Transfer-Encoding", "chunked")])
terminated = {**chunked_post, "wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"x" * 10)}
attempt(_read_unsized, chunked_post, 100), attempt(_read_unsized, terminated, 5)

# %% [markdown]
# The first request is a 411: it says "chunked" and nobody promised to find the end. The
# second is a 413: `_read_unsized` read six bytes, one more than the limit of five, and
# stopped there. The other four bytes were never read.

# %% [markdown]
# Before the last helper, one more trap. A `Content-Length` is a string, and the obvious
# way to turn it into a number is `int()`. See what `int()` accepts:

# %%
int("-5"), int(" 5 "), int("5_000"), int("٥")

# %% [markdown]
# A negative length, spaces, an underscore, and `٥`, the Arabic-Indic digit five: all
# numbers to Python, none a valid `Content-Length` (RFC 9110 §8.6 allows only the digits
# 0 to 9). Two programs that read the same length differently are how request smuggling
# starts, so the helper below checks the string with the pattern `[0-9]+` before it calls
# `int()`.
#
# The public helper, `read_body`, applies the three rules in order:

# %%
#| export
def read_body(environ: dict, max_bytes: int = MAX_BODY) -> bytes:
    """The request body, CONTENT_LENGTH bytes of it: 400, 411 or 413 when that is impossible."""
    length = environ.get("CONTENT_LENGTH", "")
    if length == "":
        return _read_unsized(environ, max_bytes)
    if not re.fullmatch(r"[0-9]+", length):
        raise BadRequest(f"Content-Length must be a number of bytes, not {length!r}")
    if int(length) > max_bytes:
        raise ContentTooLarge(f"the body is {int(length)} bytes; the limit is {max_bytes}")
    body = _read_exactly(environ["wsgi.input"], int(length))
    if len(body) < int(length):
        raise BadRequest(f"the body ended after {len(body)} of {length} bytes")
    return body

# %% [markdown]
# First the honest requests: a POST with five bytes, and a POST with no body at all.

# %%
attempt(read_body, build_environ("POST", "/", body=b"hello")), \
    attempt(read_body, build_environ("POST", "/"))

# %% [markdown]
# Now the lies. `with_length` builds a POST whose body is the same five bytes, `hello`,
# then overwrites its `CONTENT_LENGTH`. A careful server would never pass these on, but
# an app should survive them anyway:

# %%
def with_length(length):
    return {**build_environ("POST", "/", body=b"hello"), "CONTENT_LENGTH": length}

barelab.show_transcript([(f"Content-Length: {length}", attempt(read_body, with_length(length)))
                         for length in ["2000000", "five", "-5", "9"]])

# %% [markdown]
# One rule, one status each. The 2 MB claim is refused without reading a byte. `-5` is
# "not a number", thanks to the pattern. And the claim of 9 bytes is caught when only 5
# arrive.
#
# On a real socket the last case would not be this quick: the read would wait for four
# bytes that never come, until a timeout or until the client hangs up. Either way the
# body is not what its length promised, and the answer is a 400.

# %% [markdown]
# ## Forms
#
# Here is a form that could add a note. Each `<input>` becomes one field, named by its
# `name`; the two checkboxes share the name `tag`:
#
# ```html
# <form method="post" action="/notes">
#   <input name="text" value="buy milk">
#   <label><input type="checkbox" name="tag" value="home" checked> home</label>
#   <label><input type="checkbox" name="tag" value="shop" checked> shop</label>
#   <button>Add</button>
# </form>
# ```
#
# When you press the button, the browser sends `text=buy+milk&tag=home&tag=shop` in the
# body, encoded like a query string, with `Content-Type:
# application/x-www-form-urlencoded`. So before parsing, look
# at the type. `media_type` reads it without its parameters (`; charset=...`) and in
# lower case, because media types are case-insensitive (RFC 9110 §8.3.1).

# %%
#| export
def media_type(environ: dict) -> str:
    """CONTENT_TYPE without its parameters, lower-cased: 'Text/HTML; charset=x' -> 'text/html'."""
    return environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()

# %%
media_type({"CONTENT_TYPE": "Application/JSON; charset=utf-8"}), media_type({})

# %% [markdown]
# A type with odd capitals and a parameter comes out plain, and no type at all is `""`.
# Splitting at the first `;` is enough here: the parameters come after it, and a handler
# only needs to know the type itself.
#
# `parse_form` checks the type, reads the body with `read_body` and parses it with
# `_parse_pairs`, the same rules as the query. A different type is a **415**: the request
# may be fine, but this handler does not read that format.

# %%
#| export
def parse_form(environ: dict, max_bytes: int = MAX_BODY,
               max_fields: int = 1000) -> dict[str, list[str]]:
    """A urlencoded form body as {name: [values]}; 415 for another Content-Type."""
    if media_type(environ) != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("send the form as application/x-www-form-urlencoded")
    body = read_body(environ, max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeError:
        raise BadRequest("the form body is not UTF-8") from None
    return _parse_pairs(text, max_fields)

# %% [markdown]
# The same body twice: once labelled as a form, once as plain text.

# %%
form_type = [("Content-Type", "application/x-www-form-urlencoded")]
form_body = b"text=buy+milk&tag=home&tag=shop"
[attempt(parse_form, build_environ("POST", "/", headers=form_type, body=form_body)),
 attempt(parse_form, build_environ("POST", "/", headers=[("Content-Type", "text/plain")],
                                   body=form_body))]

# %% [markdown]
# As a form, it is two fields, one of them with two values. As text, it is a 415,
# although the bytes are the same. The label decides how to read them.

# %% [markdown]
# ## JSON in
#
# JSON bodies have their own traps:
#
# - The media type is `application/json`, or any `+json` type such as
#   `application/problem+json`.
# - JSON exchanged between systems **must** be UTF-8 (RFC 8259 §8.1). Python's
#   `json.loads` would also accept UTF-16 bytes, so decode first, strictly.
# - Python's `json` accepts `NaN` and `Infinity`, which are not JSON (RFC 8259 §6) and
#   which other languages' parsers refuse.
# - An empty body is not a JSON document. Deep nesting (`[[[[...]]]]`) makes the parser
#   recurse until Python gives up with `RecursionError`.
#
# Every one of these is a **400 Bad Request** whose message says what is wrong and where.
#
# First, see the `NaN` trap for yourself. Python parses it, and writes it back out just
# as happily:

# %%
value = json.loads("[NaN, -Infinity]")
value, json.dumps(value)

# %% [markdown]
# Python reads `NaN` as a float, `nan`, and `json.dumps` writes it back as `NaN`, as if
# that were JSON. A JavaScript client would choke on that output: `JSON.parse("[NaN]")` is a
# `SyntaxError`. `json.loads` takes a `parse_constant` function, which it calls for
# exactly these three names (`NaN`, `Infinity`, `-Infinity`). One that raises refuses
# them:

# %%
#| export
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (RFC 8259 §6)")

# %% [markdown]
# `_decode_json` turns bytes into a Python value, and each way that can fail into a 400
# with a reason. The order of the `except` clauses matters: `UnicodeError` and
# `JSONDecodeError` are both kinds of `ValueError`, so the plain `ValueError` (the one
# from `_refuse_constant`) comes after them.

# %%
#| export
def _decode_json(body: bytes):
    if not body.strip():
        raise BadRequest("the body is empty; send a JSON document")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeError:
        raise BadRequest("JSON must be encoded in UTF-8 (RFC 8259 §8.1)") from None
    except json.JSONDecodeError as error:
        raise BadRequest(f"invalid JSON: {error.msg} (line {error.lineno}, "
                         f"column {error.colno})") from None
    except ValueError as error:                       # from _refuse_constant
        raise BadRequest(f"invalid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None

# %% [markdown]
# Feed it one good document and five bad ones. The table shows the first 24 bytes of
# each:

# %%
bodies = [b'{"text": "buy milk"}', b'{"text": "buy milk",}', b"", b'{"n": NaN}',
          '{"t": "é"}'.encode("utf-16"), b"[" * 100_000]
barelab.show_transcript([(repr(body[:24]), attempt(_decode_json, body)) for body in bodies])

# %% [markdown]
# The first row is the only success, and it comes back as a Python dict. The rest are
# all 400s, each with its own reason.
#
# The trailing comma gets its line and column, so the sender can find it. The fifth row
# is UTF-16: two bytes per character, so every ASCII letter comes with a `\x00`. It and
# the 100,000 open brackets would have crashed a naive
# `json.loads(environ["wsgi.input"].read())`; here they are plain 400s.
#
# `read_json` puts the pieces together: check the type, read the body, decode it.

# %%
#| export
def read_json(environ: dict, max_bytes: int = MAX_BODY):
    """The body parsed as JSON; 415 for a non-JSON type, 400 with the reason for bad JSON."""
    kind = media_type(environ)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("send JSON with Content-Type: application/json")
    return _decode_json(read_body(environ, max_bytes))

# %% [markdown]
# `read_json` does not look at the body before it trusts the label: the type is checked
# first, so a handler that only reads JSON never even reads a body it cannot parse.
#
# `json_environ` builds a POST with a JSON body. The same `{}` is fine as
# `application/problem+json` and a 415 as `text/plain`:

# %%
def json_environ(body, content_type="application/json"):
    return build_environ("POST", "/", headers=[("Content-Type", content_type)], body=body)

[attempt(read_json, json_environ(b"{}", kind)) for kind in ("application/problem+json",
                                                            "text/plain")]

# %% [markdown]
# The `+json` rule let `application/problem+json` through, and `{}` came back as an
# empty dict, shown as its `repr`, `'{}'`. The `text/plain` request never had its body
# read.

# %% [markdown]
# ## Text and JSON out
#
# Going out is simpler. Every response needs the same three things: a status line, a
# `Content-Type` that says how to read the body, and a `Content-Length` that says where
# it ends. `text_response` does all three for text, and returns the body for the app to
# return. `_status_line` turns a code into a line (`404` becomes `"404 Not Found"`) with
# chapter 02's `reason_phrase`.

# %%
#| export
def _status_line(status: int) -> str:
    return f"{status} {reason_phrase(status)}"

def text_response(start_response, text: str, status: int = 200, headers=()) -> list[bytes]:
    """Answer with UTF-8 text; returns the body to return from the app."""
    body = text.encode("utf-8")
    start_response(_status_line(status), [("Content-Type", "text/plain; charset=utf-8"),
                                          ("Content-Length", str(len(body))), *headers])
    return [body]

# %% [markdown]
# Call a one-line app that uses it, through `call_wsgi` and inside the validator (both
# from chapter 04). Watch the `Content-Length`:

# %%
from wsgiref.validate import validator

def hi_app(environ, start_response):
    return text_response(start_response, "Hi, Renée!\n")

call = barelab.call_wsgi(validator(hi_app))
call.status, call.headers, call.body

# %% [markdown]
# `Hi, Renée!` and a newline are 11 characters, but `Content-Length` says 12: the `é` is
# two bytes in UTF-8 (`\xc3\xa9`), and the length counts bytes, not characters. That is
# why `text_response` measures the body *after* encoding it.
#
# The `headers` argument adds headers after the two that `text_response` always sends.
# That is how a handler adds a `Location` or an `Allow` without building the list itself.
#
# `json_response` does the same for JSON. It keeps non-ASCII characters as they are
# (`ensure_ascii=False`; the default would send `café` as `caf\u00e9`, six ASCII
# characters for one letter) and sends `application/json` with no `charset`, because
# JSON is always UTF-8.

# %%
#| export
def json_response(start_response, data, status: int = 200, headers=()) -> list[bytes]:
    """Answer with ``data`` as JSON (UTF-8); returns the body to return from the app."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n"
    start_response(_status_line(status), [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body))), *headers])
    return [body]

# %% [markdown]
# This time, look at the whole call. A created thing gets **201 Created** and a
# `Location` header that says where it now lives (RFC 9110 §15.3.2):

# %%
barelab.call_wsgi(validator(lambda environ, start_response: json_response(
    start_response, {"note": "café"}, 201, [("Location", "/notes/1")])))

# %% [markdown]
# That is a lot of output, so read it from the top. First the `environ` that
# `call_wsgi` built: a plain GET for `/`. Then the steps table, the conversation between
# server and app: one `start_response` with the status and the three headers, one
# `yield` with the body's bytes (the `é` again as `\xc3\xa9`), then `close()`. Last, the
# response as a client would see it: `201 Created`, the `Location`, and the JSON.
#
# The last helper closes the loop with the errors: `error_response` answers with the
# status an `HTTPError` carries, and its message as text.

# %%
#| export
def error_response(start_response, error: HTTPError, headers=()) -> list[bytes]:
    """Answer with the status an HTTPError carries and its message as text."""
    return text_response(start_response, error.message + "\n", error.status, headers)

# %%
call = barelab.call_wsgi(validator(lambda environ, start_response: error_response(
    start_response, NotFound("there is no note 7"))))
call.status, call.body

# %% [markdown]
# The status from the exception, and its message as the body. One line of code, and it is
# the piece the warm-up app was missing.
#
# That is the whole toolbox. Each helper either gives you clean data or raises an error
# that already knows its status:
#
# | helper | gives you | refuses with |
# | --- | --- | --- |
# | `parse_query(qs)` | `{name: [values]}` | 400 |
# | `read_body(environ)` | the body's bytes | 400, 411, 413 |
# | `parse_form(environ)` | `{name: [values]}` | 400, 411, 413, 415 |
# | `read_json(environ)` | a Python value | 400, 411, 413, 415 |
# | `text_response`, `json_response`, `error_response` | the body to return | |
#
# Time to build the app.

# %% [markdown]
# ## The app
#
# The app is a few small **handlers**, one per route and method, and a dispatcher that
# picks one. Each handler takes `environ` and `start_response` (plus what the router
# found in the path) and returns a body, exactly like a WSGI app.
#
# The notes live in a dict, keyed by id, empty for now. A counter hands out the ids, so
# the first note will be 1:

# %%
import itertools

notes = {}
note_ids = itertools.count(1)
notes

# %% [markdown]
# The first two handlers answer with text. `home` lists the routes, so that someone who
# opens `/` in a browser knows where to go next. `hello` is the warm-up app again, now
# with `text_response`:

# %%
def home(environ, start_response):
    return text_response(start_response, "Routes: /hello?name=..., /notes, "
                                         "/notes/<id>, /count?to=N\n")

def hello(environ, start_response):
    names = parse_query(environ.get("QUERY_STRING", "")).get("name") or ["world"]
    return text_response(start_response, f"Hello, {' and '.join(names)}!\n")

# %% [markdown]
# `hello` reads `.get("name") or ["world"]`: the list of names, or a list with a default
# when the query has none.
#
# A handler has the shape of a WSGI app, so you can call one on its own, with no router
# and no server. That makes each handler easy to try out by itself:

# %%
barelab.call_wsgi(validator(hello), path="/hello?name=Ada&name=Grace").body

# %% [markdown]
# ### Adding a note
#
# A note can arrive as a form or as JSON. `note_fields` picks the parser by
# `Content-Type` and gives back a dict either way. A form field can repeat, so the tags
# come from repeated `tag=` fields. Notes are small, so the body limit is 1 KiB.

# %%
def note_fields(environ):
    """The posted note as a dict, read from a urlencoded form or from JSON."""
    if media_type(environ) == "application/x-www-form-urlencoded":
        form = parse_form(environ, max_bytes=1024)
        return {"text": (form.get("text") or [""])[0], "tags": form.get("tag", [])}
    return read_json(environ, max_bytes=1024)

# %% [markdown]
# The same note, sent both ways, comes out the same:

# %%
as_form = note_fields(build_environ("POST", "/notes", headers=form_type, body=form_body))
as_json = note_fields(json_environ(b'{"text": "buy milk", "tags": ["home", "shop"]}'))
as_form, as_form == as_json

# %% [markdown]
# Valid JSON is not yet a valid note. The client could send a list, a number, or an
# object without `text`. `check_note` insists on a non-empty string `text` and a list of
# string `tags`, and keeps only those two fields:

# %%
def check_note(fields):
    """{"text": ..., "tags": [...]} from what the client sent; 400 if it is not a note."""
    if not isinstance(fields, dict) or not isinstance(fields.get("text"), str) \
            or not fields["text"].strip():
        raise BadRequest('expected a non-empty "text"')
    tags = fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise BadRequest('"tags" must be a list of strings')
    return {"text": fields["text"], "tags": tags}

# %%
[attempt(check_note, fields) for fields in
 ({"text": "hi", "admin": True}, {"text": "  "}, ["a list"], {"text": "hi", "tags": "home"})]

# %% [markdown]
# The extra `admin` field is dropped, and a missing `tags` becomes an empty list. Blank
# text, a list and a string of tags are 400s.
#
# Dropping unknown fields matters more than it looks. If `add_note` stored whatever the
# client sent, anyone could slip `"admin": true` or `"id": 1` into a note. Keeping only
# the fields you know is the first line of defence of every JSON API.
#
# `add_note` chains the two, stores the note and answers **201 Created** with its
# `Location`. The `Location` starts with `SCRIPT_NAME`, so it stays right if the app is
# mounted under a prefix such as `/api`. The id is taken only after the checks pass, so a
# refused note does not use up a number.

# %%
def add_note(environ, start_response):
    fields = check_note(note_fields(environ))
    note = {"id": next(note_ids), **fields}
    notes[note["id"]] = note
    location = f"{environ.get('SCRIPT_NAME', '')}/notes/{note['id']}"
    return json_response(start_response, note, 201, [("Location", location)])

# %% [markdown]
# Nothing to see yet: `add_note` needs a request with a body, and you will send it one
# over the wire in a moment.
#
# ### Reading and deleting notes
#
# Listing sorts by id. Reading one note that does not exist raises `NotFound`; the
# dispatcher will turn that into a 404, so the handler stays short.

# %%
def list_notes(environ, start_response):
    return json_response(start_response, sorted(notes.values(), key=lambda n: n["id"]))

def get_note(environ, start_response, note_id):
    if note_id not in notes:
        raise NotFound(f"there is no note {note_id}")
    return json_response(start_response, notes[note_id])

# %% [markdown]
# A successful DELETE answers **204 No Content**. No content means no body, so no
# `Content-Type` either, and RFC 9110 §8.6 forbids a `Content-Length` on a 204. The
# validator enforces the first: it refuses a 204 with a `Content-Type`.

# %%
def delete_note(environ, start_response, note_id):
    if notes.pop(note_id, None) is None:
        raise NotFound(f"there is no note {note_id}")
    start_response("204 No Content", [])
    return []

# %% [markdown]
# ### Streaming
#
# `/count?to=5` counts to 5, one line every 0.2 seconds. The slow part is a generator. A
# WSGI app may return any iterable of bytes, and the server sends each piece as the
# generator yields it. Called by hand, a generator yields its three lines:

# %%
import time

def count_lines(to):
    for n in range(1, to + 1):
        yield f"count {n}\n".encode()
        time.sleep(0.2)

list(count_lines(3))

# %% [markdown]
# The cell took 0.6 seconds, because `list` ran the sleeps too, and you saw nothing until
# it had all three lines. Served over HTTP, each line will go out the moment it is
# yielded.

# %% [markdown]
# The handler takes the first `to` in the query, or `"5"` when there is none, and checks
# it *before* `start_response`, so a bad `to` can still get a 400. Once the first line is out, the status is fixed (chapter 04). The limit of 20 keeps
# one request from holding a server thread for long.

# %%
def count(environ, start_response):
    to = (parse_query(environ.get("QUERY_STRING", "")).get("to") or ["5"])[0]
    if not re.fullmatch(r"[0-9]{1,2}", to) or not 1 <= int(to) <= 20:
        raise BadRequest("to must be a whole number from 1 to 20")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return count_lines(int(to))

# %% [markdown]
# Call it through `call_wsgi`. The handler returns the generator without running any of
# it; `call_wsgi`, like a server, then pulls the lines from it one by one. So
# `start_response` comes first, then one `yield` row per line:

# %%
barelab.call_wsgi(validator(count), path="/count?to=2").transcript

# %% [markdown]
# `close()` comes last. Like every server, `call_wsgi` calls it once the body is done
# (chapter 04). For a generator, `close()` runs any `finally:` blocks still waiting in it.

# %% [markdown]
# ### Routing by hand
#
# `routes_for` maps a path to the handlers it has, by method, plus any parameters found in
# the path. The path for one note is matched with `[0-9]+`, so `/notes/abc` and
# `/notes/1/extra` are unknown paths (404), not a crash in `int()`.

# %%
def routes_for(path):
    """({method: handler}, path parameters) for a path; ({}, {}) for an unknown path."""
    fixed = {"/": {"GET": home}, "/hello": {"GET": hello}, "/count": {"GET": count},
             "/notes": {"GET": list_notes, "POST": add_note}}
    if path in fixed:
        return fixed[path], {}
    match = re.fullmatch(r"/notes/([0-9]+)", path)
    if match:
        return {"GET": get_note, "DELETE": delete_note}, {"note_id": int(match[1])}
    return {}, {}

# %% [markdown]
# Ask it about four paths. Each line shows the methods the path has and the parameters
# taken from it:

# %%
for path in ["/notes", "/notes/7", "/notes/abc", "/notes/1/extra"]:
    handlers, params = routes_for(path)
    print(f"{path:15} {sorted(handlers)} {params}")

# %% [markdown]
# `/notes/7` has two handlers and a `note_id` that is already an `int`. The last two
# paths have no handlers at all, which the dispatcher will turn into a 404.
#
# ### The dispatcher
#
# `HEAD` asks for the headers of a GET without its body (RFC 9110 §9.3.2). The app serves
# it with the `GET` handler and throws the body away. barelab's server would drop the body
# anyway, but not every server does, as you will see. Throwing a body away still means
# calling its `close()` (chapter 04), so that a generator can clean up:

# %%
import inspect

def without_body(body):
    if hasattr(body, "close"):
        body.close()
    return []

stream = count_lines(3)
without_body(stream), inspect.getgeneratorstate(stream)

# %% [markdown]
# An empty body, and a generator that is closed without having run a single line.
#
# The app itself is the dispatcher. An unknown path is a 404. A known path with no
# handler for the method is a **405** with an `Allow` header that lists the methods that
# would work (RFC 9110 §15.5.6 says a 405 MUST carry it). Any `HTTPError` a handler
# raises becomes its response, through `error_response`. That is the fix for the warm-up's
# 500.

# %%
def notes_app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    handlers, params = routes_for(environ.get("PATH_INFO", ""))
    if "GET" in handlers:
        handlers = {**handlers, "HEAD": handlers["GET"]}
    try:
        if not handlers:
            raise NotFound(f"nothing at {environ.get('PATH_INFO', '')!r}")
        if method not in handlers:
            allow = ", ".join(sorted(handlers))
            return error_response(start_response, MethodNotAllowed(
                f"{method} is not allowed here; try {allow}"), [("Allow", allow)])
        body = handlers[method](environ, start_response, **params)
    except HTTPError as error:
        return error_response(start_response, error)
    return without_body(body) if method == "HEAD" else body

# %% [markdown]
# Read it in order:
#
# 1. Look up the path. A path that has a GET handler also gets `HEAD`, served by the same
#    handler. `{**handlers, "HEAD": ...}` builds a new dict instead of changing the one
#    the router returned.
# 2. No handlers at all: the path is unknown, a 404.
# 3. Handlers, but none for this method: a 405, and `Allow` lists the ones that exist.
# 4. Call the handler, with the path parameters as keyword arguments (`note_id=7`).
# 5. Any `HTTPError` on the way, from the router or from deep inside `read_json`,
#    becomes a response with its own status.
# 6. For `HEAD`, close the body and send none.
#
# Sixteen lines, and it already knows more HTTP than many tutorial apps.

# %% [markdown]
# ## Serve it
#
# Wrap it in the validator, so any slip against PEP 3333 becomes an error in the log, and
# serve it. From here on, every request goes over a real socket. The link works in your
# browser too: try `/hello?name=you` and `/notes`.

# %%
notes_server = barelab.serve(validator(notes_app), name="notes")
notes_server

# %% [markdown]
# The warm-up's request first, now one route among five. Quote the URL in the shell, or
# `&` would end the command.

# %%
# !curl -s "{notes_server.url}hello?name=Ada&name=Ren%C3%A9e+Smith"

# %% [markdown]
# Same greeting as the warm-up, but now from a handler, behind a router, inside the
# validator.
#
# Now add a note the way an HTML form does. `curl -d` sends the data as a urlencoded
# POST, with `Content-Type: application/x-www-form-urlencoded`. The answer is the new
# note, with its id and both tags:

# %%
# !curl -s -d "text=buy+milk&tag=home&tag=shop" {notes_server.url}notes

# %% [markdown]
# It is note 1: the counter started at 1. `curl` printed only the body; the status,
# 201, was there too, as the next request shows.
#
# Add one as JSON, with `http_request(..., json=...)`, which sets `Content-Type:
# application/json` for you. This time, look at the status, **201 Created**, and the
# `Location` of the new note:

# %%
created = barelab.http_request(notes_server, "POST", "/notes",
                               json={"text": "call Grace", "tags": ["work"]})
print(created.status, created.header("Location"), created.json())

# %% [markdown]
# `created` is an `HTTPResult`: `.status` is the code as an `int`, `.header(name)` finds
# a header whatever its case, and `.json()` parses the body. You will use all three in
# the exercises.
#
# Follow the `Location`, as a client would, then list all notes:

# %%
print(barelab.http_request(notes_server, path=created.header("Location")).json())
barelab.http_request(notes_server, path="/notes").json()

# %% [markdown]
# Both notes are there, in order: the one from the form and the one from JSON. The same
# handler read both, because `note_fields` looked at `Content-Type` first.
#
# ### Every error, with its status
#
# Now the fun part: try to break it. `status_and_text` sends one request over the wire and
# returns a row for a table: the request, the status line (with `Allow` when there is
# one) and the text of the answer.

# %%
def status_and_text(method, path, label=None, **kwargs):
    reply = barelab.http_request(notes_server, method, path, **kwargs)
    allow = f" (Allow: {reply.header('Allow')})" if reply.header("Allow") else ""
    return label or f"{method} {path}", reply.status_line + allow, reply.text.strip()

# %% [markdown]
# First, wrong places and wrong methods:

# %%
barelab.show_transcript([status_and_text(method, path) for method, path in [
    ("GET", "/nope"), ("GET", "/notes/99"), ("GET", "/notes/abc"), ("PUT", "/notes"),
    ("DELETE", "/hello"), ("GET", "/count?to=1000")]])

# %% [markdown]
# 404 for what does not exist, whether the path is unknown or the note is. 405 with the
# methods that would work, `HEAD` included. And the 400 for `to=1000` came from inside a
# handler, turned into a response by the dispatcher.
#
# Then bad notes, each posted to `/notes`:

# %%
json_type = [("Content-Type", "application/json")]
barelab.show_transcript([status_and_text("POST", "/notes", label, **kwargs) for label, kwargs in [
    ("a trailing comma", {"body": '{"text": "oops",}', "headers": json_type}),
    ("empty text", {"json": {"text": ""}}), ("a list", {"json": ["a list"]}),
    ("plain text", {"body": "hi", "headers": [("Content-Type", "text/plain")]}),
    ("2,000 characters", {"json": {"text": "x" * 2000}})]])

# %% [markdown]
# 400 with the reason for bad input, 415 for a format the handler does not read, 413 for
# a body over 1 KiB. Eleven bad requests, and the app never crashed. The server log has
# no errors:

# %%
notes_server.log.errors

# %% [markdown]
# Deleting a note answers 204, with no body and no `Content-Type`. A second delete finds
# nothing:

# %%
gone = barelab.http_request(notes_server, "DELETE", created.header("Location"))
print(gone.status_line, gone.headers, gone.body)
print(barelab.http_request(notes_server, "DELETE", created.header("Location")).status_line)

# %% [markdown]
# The only headers left are the ones barelab's server adds itself: `Date`, `Server` and
# `Connection`. Nothing from the app, because a 204 has nothing to describe.
#
# ### A body without a length
#
# A POST may also send its body chunked, with `Transfer-Encoding: chunked` and no
# `Content-Length`. barelab's server decodes the chunks and sets `wsgi.input_terminated`,
# so `read_body` reads to the end the server marks. Send one by hand, in three chunks of
# 16 (`0x10`), 1 and 1 bytes. After the headers, the body reads:
#
# - `10\r\n{"text": "chunks\r\n`: a chunk of 0x10 = 16 bytes, `{"text": "chunks`;
# - `1\r\n"\r\n` and `1\r\n}\r\n`: two chunks of one byte each, the closing `"` and `}`;
# - `0\r\n\r\n`: the last chunk, empty, which ends the body.

# %%
chunked = (b"POST /notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b'10\r\n{"text": "chunks\r\n1\r\n"\r\n1\r\n}\r\n0\r\n\r\n')
barelab.raw_exchange(notes_server, chunked).received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# The body of the answer is the new note, glued together from three chunks. On a server
# without `wsgi.input_terminated`, the same request would get the 411 you saw earlier.

# %% [markdown]
# ## Watching a stream
#
# Fetch `/count?to=3` with `raw_exchange`, which shows every byte. Look for what is
# missing: there is no `Content-Length`, because the server cannot know in advance how
# much a generator will yield. It uses `Transfer-Encoding: chunked` instead, and each
# `yield` becomes one chunk (RFC 9112 §7.1). A chunk is its size in hex, CRLF, the bytes,
# CRLF. `0\r\n\r\n` ends the body.

# %%
GET_COUNT = b"GET /count?to=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
barelab.raw_exchange(notes_server, GET_COUNT)

# %% [markdown]
# Each `count N\n` is 8 bytes, so each chunk starts with `8`. The server wrote
# `Transfer-Encoding: chunked` itself: the app only returned a generator and never set
# a length.
#
# That shows *what* arrived, but not *when*. `arrivals` sends the same bytes over a plain
# socket, reads whatever comes, and notes the time at which each `count N` line first
# shows up. It searches everything received so far after each `recv`, not just the new
# piece, because TCP may split one line across two reads. The timings are real (the
# notebook masks them when it checks outputs):

# %%
import socket

def arrivals(host, port, request, pattern=rb"count (\d+)\n", timeout=5.0):
    seen, received, start = [], b"", time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        while chunk := sock.recv(4096):
            received += chunk
            for match in re.finditer(pattern, received):
                if match[0] not in [line for _, line in seen]:
                    seen.append((f"{time.monotonic() - start:.2f} s", match[0]))
    return barelab.show_transcript(seen, columns=("after", "line"))

arrivals(notes_server.host, notes_server.port, GET_COUNT)

# %% [markdown]
# Here is who does what, drawn for `to=2` to keep it short:
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant G as generator (count_lines)
#     S->>G: next()
#     G-->>S: count 1
#     S->>C: chunk with count 1
#     Note over G: time.sleep(0.2)
#     S->>G: next()
#     G-->>S: count 2
#     S->>C: chunk with count 2
#     Note over G: time.sleep(0.2)
#     S->>G: next()
#     G-->>S: StopIteration
#     S->>C: the last chunk, 0
# ```
#
# One line every 0.2 seconds, each sent as soon as it was yielded. A server that
# collected the whole body first would deliver all three together after 0.6 s. PEP 3333
# forbids that delay ("Buffering and Streaming"): a server must not hold a block back,
# but send it on, or keep sending it while the app produces the next one.

# %% [markdown]
# ## The same app on wsgiref
#
# The standard library ships a WSGI server too: `wsgiref.simple_server`. It is the
# reference implementation of PEP 3333, small enough to read in one sitting. Because
# `notes_app` speaks only WSGI, it runs on it unchanged.
#
# One detail first. wsgiref's request handler prints a line per request to stderr, which
# in a notebook would land in whatever cell is running. `QuietHandler` keeps those lines
# in a list instead, and throws away the tracebacks it would print too:

# %%
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

wsgiref_lines = []

class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        wsgiref_lines.append(format % args)

    def get_stderr(self):  # where wsgiref prints app tracebacks
        return io.StringIO()

# %% [markdown]
# `make_server` binds a socket (port 0 lets the system pick a free one). `serve_forever`
# runs in a thread of its own, so this kernel stays free for your cells. A short
# `poll_interval` will make stopping quick.

# %%
wsgiref_server = make_server("127.0.0.1", 0, validator(notes_app), handler_class=QuietHandler)
wsgiref_thread = threading.Thread(target=wsgiref_server.serve_forever,
                                  kwargs={"poll_interval": 0.05}, daemon=True)
wsgiref_thread.start()
wsgiref_url = f"http://127.0.0.1:{wsgiref_server.server_port}/"
wsgiref_url

# %% [markdown]
# `wsgiref_url` is a plain string. barelab's client functions take either a `Server` or
# a URL, so the same calls work against both servers.
#
# Send the same five requests to both servers and compare the statuses:

# %%
requests = [("GET", "/hello?name=Ada", {}), ("POST", "/notes", {"json": {"text": "on wsgiref"}}),
            ("GET", "/notes/99", {}), ("PUT", "/notes", {}), ("GET", "/count?to=0", {})]
barelab.show_transcript(
    [(f"{m} {p}", barelab.http_request(notes_server, m, p, **kw).status,
      barelab.http_request(wsgiref_url, m, p, **kw).status) for m, p, kw in requests],
    columns=("request", "barelab", "wsgiref"))

# %% [markdown]
# Identical: every decision is made by the app, and it is the same app. That is the
# promise of WSGI from chapter 01: write the app once, and choose the server later.
# (The two POSTs
# each created a note. Both servers run the same `notes_app`, so they share one `notes`
# dict.)
#
# The bytes differ, though. Here is the stream on wsgiref:

# %%
barelab.raw_exchange(wsgiref_url, GET_COUNT)

# %% [markdown]
# Compare it with barelab's answer above:
#
# - The status line says **`HTTP/1.0`**, though the request was HTTP/1.1. wsgiref
#   implements only HTTP/1.0, and a server must not claim a version it does not conform
#   to (RFC 9112 §2.3).
# - So there is **no chunked encoding**: HTTP/1.0 does not have it. With no
#   `Content-Length` either, the only way to mark the end of the body is to **close the
#   connection** (RFC 9112 §6.3, rule 8). A client cannot tell a finished response from
#   a server that crashed halfway.
# - No connection is ever reused: every request costs a new TCP connection.
# - And it answers one request at a time: `WSGIServer` has no threads, so one slow
#   `/count` holds up every other client until it ends.
#
# The lines still arrive one by one. wsgiref writes each yielded block and flushes it, so
# the streaming works; only the framing is from 1996:

# %%
arrivals("127.0.0.1", wsgiref_server.server_port, GET_COUNT)

# %% [markdown]
# The same rhythm as on barelab. Same app, same timing; only the bytes around the lines
# differ.

# %% [markdown]
# ### HEAD, on both servers
#
# `notes_app` throws away the body for `HEAD` itself. Here is why that matters.
# `careless_app` answers every request with the `hello` handler, whatever the method, so
# a `HEAD` gets a body back from the app. Serve it on both servers; `set_app` swaps the
# app of the running wsgiref server:

# %%
def careless_app(environ, start_response):
    return hello(environ, start_response)

careless = barelab.serve(validator(careless_app), name="careless")
wsgiref_server.set_app(validator(careless_app))
HEAD = b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

# %% [markdown]
# barelab's server knows the method, and drops the body on its own. The response ends
# with the empty line after the headers. It keeps `Content-Length: 14`, which tells the
# client how long the body of a GET would be; RFC 9110 §8.6 allows that for HEAD.

# %%
barelab.raw_exchange(careless, HEAD)

# %% [markdown]
# wsgiref sends what the app gave it. Look at the last line:

# %%
barelab.raw_exchange(wsgiref_url, HEAD)

# %% [markdown]
# `Hello, world!` after the headers, although RFC 9110 §9.3.2 says a server MUST NOT send
# content in response to HEAD. A client reading that connection expects no body, and
# would take those bytes for the start of the next response. An app that handles `HEAD`
# itself is safe on every server. Frameworks do this for you: in Flask, Werkzeug's
# `Response` hands the server an empty body when the method is HEAD. Written by hand, it
# is your job. Put the good app back, and the body is gone:

# %%
wsgiref_server.set_app(validator(notes_app))
barelab.http_request(wsgiref_url, "HEAD", "/hello").body

# %% [markdown]
# An empty body, on the server that never drops one. The fix was in the app, which is
# where you could make it.

# %% [markdown]
# ### Stopping wsgiref properly
#
# Before you stop it, look at what it logged. `QuietHandler` kept one line per request:
# the request line, the status and the size of the body in bytes. The third line is the
# 404 for note 99: its body, `there is no note 99` and a newline, is 20 bytes.

# %%
wsgiref_lines[:3]

# %% [markdown]
# barelab keeps its servers in a registry and stops them for you. A wsgiref server is
# yours to stop, in three steps:
#
# - `shutdown()` asks `serve_forever` to return and waits until it has. That takes at
#   most one `poll_interval`;
# - `server_close()` closes the listening socket. `shutdown()` alone leaves it open, and
#   the port stays taken until the kernel exits;
# - `join()` waits for the thread to end.

# %%
started = time.monotonic()
wsgiref_server.shutdown()
wsgiref_server.server_close()
wsgiref_thread.join(timeout=2)
print(f"stopped in {time.monotonic() - started:.2f} s; thread alive: {wsgiref_thread.is_alive()}")

# %% [markdown]
# Well under a second, and the thread is gone. Without `poll_interval=0.05` above,
# `shutdown()` would have taken up to half a second, the default.
#
# The port is free again, and nothing answers there any more:

# %%
try:
    barelab.http_request(wsgiref_url, timeout=1)
except ConnectionRefusedError as error:
    print("ConnectionRefusedError:", str(error).replace(str(wsgiref_server.server_port), "PORT"))

# %% [markdown]
# "Connection refused" is what any client sees at a port where nothing listens: the
# operating system answered in place of the server, which is gone.

# %% [markdown]
# ## Summary
#
# - Decoding by hand goes wrong fast: the warm-up app greeted `Ren%C3%A9e+Smith`. And an
#   exception that nobody catches is a 500, even when the client was at fault: catch
#   `HTTPError` and answer with its status.
# - A WSGI app can route by hand: look up the path, then the method; 404 for an unknown
#   path, 405 with `Allow` for a wrong method, `HEAD` served by `GET` without a body.
# - Handlers have the shape of WSGI apps, so each one can be called and tried alone.
# - You built `barelab.built.wsgi_basics`: `parse_query`, `read_body`, `media_type`,
#   `parse_form`, `read_json`, `text_response`, `json_response`, `error_response`, and
#   the errors `LengthRequired` (411) and `UnsupportedMediaType` (415) beside chapter
#   02's `BadRequest` and `ContentTooLarge` and chapter 04's `NotFound` and
#   `MethodNotAllowed`.
# - Query strings and forms: repeated keys kept as lists, escapes decoded as UTF-8, `+`
#   as space; bad UTF-8 or too many fields is a 400.
# - Bodies: read exactly `CONTENT_LENGTH` bytes, always with a size; no length and no
#   `Transfer-Encoding` is an empty body; a bad length is a 400, a chunked body the
#   server does not terminate a 411, a big one a 413.
# - JSON: UTF-8 only, no `NaN`, an empty body is an error; each a 400 that says why,
#   with line and column for a syntax error. Created things get a 201 with `Location`; a 204 has no body and no
#   `Content-Type`.
# - A generator streams: barelab frames it with chunked encoding, wsgiref with HTTP/1.0
#   and a closed connection. wsgiref also sends a body for `HEAD` if the app returns one.
#   Stop a wsgiref server with `shutdown()`, `server_close()` and `join()`.
#
# Next, in chapter 06, you switch sides and write the server: the code that turned your
# generator into chunks, dropped the body of a HEAD, and set `wsgi.input_terminated`.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it that prints ✅ when
# your answer works. The checks run your apps inside `validator`.
#
# ### Exercise 1 — search with a page number
#
# Write `search_app`, answering `GET /search?q=...&page=N` with the JSON
# `{"q": <the last q>, "page": N}`. `page` is optional (default 1) and must be a whole
# number from 1 to 100; anything else is a 400. A missing `q` is a 400 too. Use
# `parse_query`, `json_response` and `error_response`.

# %% tags=["solution"]
def search_app(environ, start_response):
    ### BEGIN SOLUTION
    try:
        query = parse_query(environ.get("QUERY_STRING", ""))
        if not query.get("q"):
            raise BadRequest("q is required")
        page = (query.get("page") or ["1"])[-1]
        if not re.fullmatch(r"[0-9]{1,3}", page) or not 1 <= int(page) <= 100:
            raise BadRequest("page must be a whole number from 1 to 100")
        return json_response(start_response, {"q": query["q"][-1], "page": int(page)})
    except HTTPError as error:
        return error_response(start_response, error)
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    app = validator(search_app)
    call = barelab.call_wsgi(app, path="/search?q=caf%C3%A9+au+lait&page=2")
    assert call.status_code == 200, f"expected 200, got {call.status}"
    assert call.json() == {"q": "café au lait", "page": 2}, f"got {call.json()}"
    assert barelab.call_wsgi(app, path="/search?q=x").json()["page"] == 1, "page defaults to 1"
    for query in ("q=x&page=0", "q=x&page=101", "q=x&page=two", "q=x&page=-1", "page=2"):
        status = barelab.call_wsgi(app, path="/search?" + query).status_code
        assert status == 400, f"?{query} should be a 400, not {status}"

# %% [markdown]
# ### Exercise 2 — a JSON echo
#
# Write `echo_app`: a POST with a JSON body gets that same JSON back, with status 200.
# Invalid JSON, a wrong `Content-Type` or a body over 100 bytes must get the status that
# `read_json` raises (400, 415, 413). Any method but POST gets a 405 with
# `Allow: POST`.

# %% tags=["solution"]
def echo_app(environ, start_response):
    ### BEGIN SOLUTION
    if environ["REQUEST_METHOD"] != "POST":
        return error_response(start_response, MethodNotAllowed("POST only"), [("Allow", "POST")])
    try:
        return json_response(start_response, read_json(environ, max_bytes=100))
    except HTTPError as error:
        return error_response(start_response, error)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    app = validator(echo_app)
    def post(body, content_type="application/json"):
        return barelab.call_wsgi(app, "POST", "/", body=body,
                                 headers=[("Content-Type", content_type)])
    assert post(b'{"a": [1, 2]}').json() == {"a": [1, 2]}, "the JSON should come back"
    assert post(b'{"a": ').status_code == 400, "invalid JSON is a 400"
    assert post(b"{}", "text/plain").status_code == 415, "a wrong Content-Type is a 415"
    assert post(b'"' + b"x" * 200 + b'"').status_code == 413, "over 100 bytes is a 413"
    got = barelab.call_wsgi(app, "GET", "/")
    assert got.status_code == 405 and got.header("Allow") == "POST", "GET: 405 with Allow: POST"
    with barelab.serve(app, name="echo") as echo_server:
        assert barelab.http_request(echo_server, "POST", "/", json=[1, "é"]).json() == [1, "é"]

# %% [markdown]
# ### Exercise 3 — stream a table
#
# Write `squares_app`, answering `GET /?n=N` with a CSV table streamed one line per
# `yield`: first the line `n,square`, then `1,1`, `2,4`, ... up to `N` (1 to 1000, default
# 10; anything else is a 400 *before* streaming starts). Use `Content-Type: text/csv;
# charset=utf-8`, and no `Content-Length`.

# %% tags=["solution"]
def squares_app(environ, start_response):
    ### BEGIN SOLUTION
    n = (parse_query(environ.get("QUERY_STRING", "")).get("n") or ["10"])[0]
    if not re.fullmatch(r"[0-9]{1,4}", n) or not 1 <= int(n) <= 1000:
        return error_response(start_response, BadRequest("n must be from 1 to 1000"))
    start_response("200 OK", [("Content-Type", "text/csv; charset=utf-8")])

    def rows():
        yield b"n,square\n"
        for i in range(1, int(n) + 1):
            yield f"{i},{i * i}\n".encode()
    return rows()
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    app = validator(squares_app)
    call = barelab.call_wsgi(app, path="/?n=3")
    assert call.body == b"n,square\n1,1\n2,4\n3,9\n", f"the body is {call.body!r}"
    yields = [step for step, _ in call.steps if step == "yield"]
    assert len(yields) == 4, f"expected 4 yields (one per line), got {len(yields)}"
    assert call.header("Content-Length") is None, "a stream has no Content-Length"
    assert barelab.call_wsgi(app, path="/?n=0").status_code == 400, "n=0 is a 400"
    assert barelab.call_wsgi(app, path="/?n=x").status_code == 400, "n=x is a 400"
    with barelab.serve(app, name="squares") as squares_server:
        raw = barelab.raw_exchange(squares_server, b"GET /?n=2 HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n").received
    assert b"Transfer-Encoding: chunked" in raw, "served, the stream should be chunked"

# %% [markdown]
# ## Clean up
#
# The wsgiref server is already stopped. Stop barelab's servers too (the number is how
# many were running).

# %%
barelab.stop_all()

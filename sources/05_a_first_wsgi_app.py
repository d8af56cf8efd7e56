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
# Time to write a real app with nothing but PEP 3333: a small notes service that routes
# by hand, reads query strings, forms and JSON, answers with the right status codes, and
# streams. Every helper it needs, you write first, and each one knows the status to answer
# with when the input is bad. Then you run the same app on two different servers and
# compare the bytes they send.
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
# Before the app, the tools. They go into `barelab/built/wsgi_basics.py`, so later
# chapters can import them:

# %%
#| default_exp wsgi_basics

# %% [markdown]
# Every refusal is an `HTTPError` from chapter 02: an exception that carries the status
# to answer with. Chapter 04 added `NotFound` (404) and `MethodNotAllowed` (405). Reading
# bodies needs two more: **411 Length Required** and **415 Unsupported Media Type**.
# `MAX_BODY` caps how much of a body the helpers will read.

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
# `urllib.parse.parse_qs` handles the first three. `parse_query` wraps it to add the
# fourth: it refuses instead of guessing, and caps the number of fields.

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

def parse_query(query_string: str, max_fields: int = 1000) -> dict[str, list[str]]:
    """QUERY_STRING as {name: [values]}: escapes decoded as UTF-8, '+' as space, repeats kept."""
    try:
        text = query_string.encode("latin-1").decode("utf-8")  # bytes in a str (PEP 3333)
    except UnicodeError:
        raise BadRequest("the query string is not UTF-8") from None
    return _parse_pairs(text, max_fields)

# %% [markdown]
# Try it on each trap. `attempt` returns the result, or the error with its status:

# %%
import barelab

def attempt(function, *args, **kwargs):
    try:
        return repr(function(*args, **kwargs))
    except Exception as error:
        return repr(error)

queries = ["name=Ada&name=Grace", "q=caf%C3%A9+au+lait", "sum=1%2B1", "flag&empty=",
           "q=%FF", "&".join(f"k{i}=v" for i in range(1001))]
barelab.show_transcript([(q[:40], attempt(parse_query, q)) for q in queries])

# %% [markdown]
# Both names kept, `é` and the spaces decoded, the `+` inside `1%2B1` kept as a plus, a
# bare `flag` with an empty value, and two 400s.

# %% [markdown]
# ## Reading the body
#
# The request body waits in `environ["wsgi.input"]`. Three rules from PEP 3333 ("Input
# and Error Streams") and RFC 9110 decide how to read it:
#
# - Read **exactly `CONTENT_LENGTH` bytes**, always with a size. A server may give you
#   the raw socket, and reading past the body would block, waiting for bytes the client
#   never sends.
# - No `CONTENT_LENGTH` and no `Transfer-Encoding` means **no body** (RFC 9112 §6.3). A
#   chunked body without a length can be read to its end only if the server promises to
#   mark the end (`wsgi.input_terminated`, an extension that barelab and gunicorn set).
#   Otherwise the honest answer is **411 Length Required**.
# - A `CONTENT_LENGTH` that is not a number is a **400**; one above your limit is a
#   **413**, refused before a single byte is read; a body that ends early is a **400**.

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
# `_read_exactly` loops because `read(n)` on some streams may return fewer than `n`
# bytes before the end. When there is no `CONTENT_LENGTH`, `_read_unsized` applies the
# second rule. Reading `max_bytes + 1` bytes is how it tells "exactly at the limit" from
# "over it" without reading the whole oversized body.

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
# `read_body` applies the rules in order:

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
# `barelab.build_environ` makes an environ in-process, so each case is one line. The
# last two cases overwrite `CONTENT_LENGTH` with a lie, something a careful server would
# never pass on but an app should survive anyway.

# %%
from barelab import build_environ

def with_length(length, body=b"hello"):
    return {**build_environ("POST", "/", body=body), "CONTENT_LENGTH": length}

barelab.show_transcript([
    ("5 bytes", attempt(read_body, build_environ("POST", "/", body=b"hello"))),
    ("no length at all", attempt(read_body, build_environ("POST", "/"))),
    ("chunked, no length", attempt(read_body, build_environ(
        "POST", "/", headers=[("Transfer-Encoding", "chunked")]))),
    ("a 2 MB length", attempt(read_body, with_length("2000000"))),
    ("length 'five'", attempt(read_body, with_length("five"))),
    ("length -5", attempt(read_body, with_length("-5"))),
    ("length 9, body 5", attempt(read_body, with_length("9"))),
])

# %% [markdown]
# One rule, one status each. Note that `-5` is refused as "not a number": the pattern
# `[0-9]+` has no room for a sign, and `int("-5")` would have happily said -5.

# %% [markdown]
# ## Forms
#
# An HTML `<form method="post">` sends its fields in the body, encoded like a query
# string, with `Content-Type: application/x-www-form-urlencoded`. `media_type` reads the
# type without its parameters (`; charset=...`) and in lower case, because media types are
# case-insensitive (RFC 9110 §8.3.1). `parse_form` checks it, reads the body and parses it
# with the same rules as the query. A different type is a **415**: the request may be
# fine, but this handler does not read that format.

# %%
#| export
def media_type(environ: dict) -> str:
    """CONTENT_TYPE without its parameters, lower-cased: 'Text/HTML; charset=x' -> 'text/html'."""
    return environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()

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

# %%
form_type = [("Content-Type", "application/x-www-form-urlencoded")]
[attempt(parse_form, build_environ("POST", "/", headers=form_type,
                                   body=b"text=buy+milk&tag=home&tag=shop")),
 attempt(parse_form, build_environ("POST", "/", headers=[("Content-Type", "text/plain")],
                                   body=b"text=buy+milk"))]

# %% [markdown]
# ## JSON in and out
#
# JSON bodies have their own traps:
#
# - The media type is `application/json`, or any `+json` type such as
#   `application/problem+json`.
# - JSON exchanged between systems **must** be UTF-8 (RFC 8259 §8.1). Python's
#   `json.loads` would also accept UTF-16 bytes, so decode first, strictly.
# - Python's `json` accepts `NaN` and `Infinity`, which are not JSON (RFC 8259 §6) and
#   which other languages' parsers refuse. `parse_constant` turns them into an error.
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
# A JavaScript client would choke on that output: `JSON.parse("[NaN]")` is a
# `SyntaxError`. `json.loads` calls `parse_constant` for exactly these three names, so a
# function that raises there refuses them:

# %%
#| export
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (RFC 8259 §6)")

# %% [markdown]
# `read_json` checks the type, reads the body and turns each way of failing into a 400:

# %%
#| export
def read_json(environ: dict, max_bytes: int = MAX_BODY):
    """The body parsed as JSON; 415 for a non-JSON type, 400 with the reason for bad JSON."""
    kind = media_type(environ)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("send JSON with Content-Type: application/json")
    body = read_body(environ, max_bytes)
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
# Feed it good JSON and six kinds of bad input:

# %%
def json_environ(body, content_type="application/json"):
    return build_environ("POST", "/", headers=[("Content-Type", content_type)], body=body)

bodies = [b'{"text": "buy milk"}', b'{"text": "buy milk",}', b"", b'{"n": NaN}',
          '{"t": "é"}'.encode("utf-16"), b"[" * 100_000]
rows = [(repr(body[:24]), attempt(read_json, json_environ(body))) for body in bodies]
rows.append(("text/plain", attempt(read_json, json_environ(b"{}", "text/plain"))))
barelab.show_transcript(rows)

# %% [markdown]
# The trailing comma gets its line and column, so the sender can find it. The UTF-16
# body and the 100,000 open brackets, which would have crashed a naive
# `json.loads(environ["wsgi.input"].read())`, are plain 400s.
#
# ### Writing responses
#
# Going out is simpler. `text_response` and `json_response` encode the body, set
# `Content-Type` and `Content-Length`, and call `start_response` with the status code
# turned into a status line (`404` becomes `"404 Not Found"`, with the reason phrases of
# RFC 9110 from chapter 02's `reason_phrase`). JSON goes out as UTF-8 with
# non-ASCII characters kept as they are; `application/json` takes no `charset` parameter
# because JSON is always UTF-8. `error_response` turns an `HTTPError` into a text response.

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

def json_response(start_response, data, status: int = 200, headers=()) -> list[bytes]:
    """Answer with ``data`` as JSON (UTF-8); returns the body to return from the app."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n"
    start_response(_status_line(status), [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body))), *headers])
    return [body]

def error_response(start_response, error: HTTPError, headers=()) -> list[bytes]:
    """Answer with the status an HTTPError carries and its message as text."""
    return text_response(start_response, error.message + "\n", error.status, headers)

# %% [markdown]
# A quick look through `call_wsgi`, inside the validator as always:

# %%
from wsgiref.validate import validator

barelab.call_wsgi(validator(lambda environ, start_response: json_response(
    start_response, {"note": "café"}, 201, [("Location", "/notes/1")])))

# %% [markdown]
# `{"note": "café"}` is 16 characters but 17 bytes, because `é` is two bytes in UTF-8
# (the `\xc3\xa9` in the `yield` row). With the newline that makes `Content-Length: 18`:
# it counts bytes, not characters.

# %% [markdown]
# ## The app
#
# Now the handlers. Each takes `environ` and `start_response` (plus what the router found
# in the path) and returns a body, exactly like a WSGI app. The notes live in a dict. A
# counter hands out ids.

# %%
import itertools

notes = {}
note_ids = itertools.count(1)

def home(environ, start_response):
    return text_response(start_response, "Routes: /hello?name=..., /notes, "
                                         "/notes/<id>, /count?to=N\n")

def hello(environ, start_response):
    names = parse_query(environ.get("QUERY_STRING", "")).get("name") or ["world"]
    return text_response(start_response, f"Hello, {' and '.join(names)}!\n")

# %% [markdown]
# Adding a note accepts either a form or JSON, chosen by `Content-Type`, and checks the
# fields: `text` must be a non-empty string and `tags` a list of strings. A created note
# gets **201 Created** with a `Location` header pointing at it (RFC 9110 §15.3.2). The
# `Location` starts with `SCRIPT_NAME`, so it stays right if the app is mounted under a
# prefix. Notes are small, so the body limit is 1 KiB.

# %%
def add_note(environ, start_response):
    if media_type(environ) == "application/x-www-form-urlencoded":
        form = parse_form(environ, max_bytes=1024)
        fields = {"text": (form.get("text") or [""])[0], "tags": form.get("tag", [])}
    else:
        fields = read_json(environ, max_bytes=1024)
    if not isinstance(fields, dict) or not isinstance(fields.get("text"), str) \
            or not fields["text"].strip():
        raise BadRequest('expected a non-empty "text"')
    tags = fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise BadRequest('"tags" must be a list of strings')
    note = {"id": next(note_ids), "text": fields["text"], "tags": tags}
    notes[note["id"]] = note
    location = f"{environ.get('SCRIPT_NAME', '')}/notes/{note['id']}"
    return json_response(start_response, note, 201, [("Location", location)])

# %% [markdown]
# Reading, listing and deleting. A missing note raises `NotFound`; the router turns it
# into a response. A successful DELETE answers **204 No Content**: no body, and so no
# `Content-Type` and no `Content-Length` either (RFC 9110 §15.3.5, §8.6). The validator
# checks the first of those.

# %%
def list_notes(environ, start_response):
    return json_response(start_response, sorted(notes.values(), key=lambda n: n["id"]))

def get_note(environ, start_response, note_id):
    if note_id not in notes:
        raise NotFound(f"there is no note {note_id}")
    return json_response(start_response, notes[note_id])

def delete_note(environ, start_response, note_id):
    if notes.pop(note_id, None) is None:
        raise NotFound(f"there is no note {note_id}")
    start_response("204 No Content", [])
    return []

# %% [markdown]
# ### Streaming
#
# `/count?to=5` counts to 5, one line every 0.2 seconds. The handler is split in two on
# purpose. The checks run *before* `start_response`, so bad input can still get a 400.
# The generator, which runs only once the server starts sending, holds the slow part.
# Once the first line is out, the status is fixed (chapter 04). The limits keep one
# request from holding a server thread for long.

# %%
import time

def count(environ, start_response):
    query = parse_query(environ.get("QUERY_STRING", ""))
    to = (query.get("to") or ["5"])[0]
    if not re.fullmatch(r"[0-9]{1,2}", to) or not 1 <= int(to) <= 20:
        raise BadRequest("to must be a whole number from 1 to 20")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])

    def lines():
        for n in range(1, int(to) + 1):
            yield f"count {n}\n".encode()
            time.sleep(0.2)
    return lines()

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
# The app itself is the dispatcher. An unknown path is a 404. A known path with no
# handler for the method is a **405** with an `Allow` header that lists the methods that
# would work (RFC 9110 §15.5.6 says a 405 MUST carry it).
#
# `HEAD` is served by the `GET` handler with the body thrown away (RFC 9110 §9.3.2: the
# same headers as GET, no content). barelab's server would drop the body anyway, but not
# every server does, as you will see. Throwing a body away still means calling its
# `close()` (chapter 04):

# %%
def without_body(body):
    if hasattr(body, "close"):
        body.close()
    return []

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
# Sixteen lines, and it already knows more HTTP than many tutorial apps.

# %% [markdown]
# ## Serve it
#
# Wrapped in the validator, served by barelab. Each of the calls below sends a real HTTP
# request over a socket.

# %%
notes_server = barelab.serve(validator(notes_app), name="notes")
notes_server

# %% [markdown]
# A query with two names, one of them with a space written as `+` and an `é` as `%C3%A9`.
# Quote the URL in the shell, or `&` would end the command.

# %%
# !curl -s "{notes_server.url}hello?name=Ada&name=Ren%C3%A9e+Smith"

# %% [markdown]
# Now add a note the way an HTML form does. `curl -d` sends the data as a urlencoded
# POST, with `Content-Type: application/x-www-form-urlencoded`. The answer is the new
# note, with its id and both tags:

# %%
# !curl -s -d "text=buy+milk&tag=home&tag=shop" {notes_server.url}notes

# %% [markdown]
# And one as JSON, with `http_request(..., json=...)`, which sets `Content-Type:
# application/json` for you. This time, look at the status, **201 Created**, and the
# `Location` of the new note:

# %%
created = barelab.http_request(notes_server, "POST", "/notes",
                               json={"text": "call Grace", "tags": ["work"]})
print(created.status, created.header("Location"), created.json())

# %% [markdown]
# Fetch it at its `Location`, then list all notes:

# %%
print(barelab.http_request(notes_server, path=created.header("Location")).json())
barelab.http_request(notes_server, path="/notes").json()

# %% [markdown]
# ### Every error, with its status
#
# Now the other side. Each row is one bad request, sent over the wire, and the answer:

# %%
def status_and_text(method, path, **kwargs):
    reply = barelab.http_request(notes_server, method, path, **kwargs)
    allow = f" (Allow: {reply.header('Allow')})" if reply.header("Allow") else ""
    return reply.status_line + allow, reply.text.strip()

bad = [("GET", "/nope", {}), ("GET", "/notes/99", {}), ("GET", "/notes/abc", {}),
       ("PUT", "/notes", {}), ("DELETE", "/hello", {}),
       ("POST", "/notes", {"body": '{"text": "oops",}', "headers": [("Content-Type", "application/json")]}),
       ("POST", "/notes", {"json": {"text": ""}}), ("POST", "/notes", {"json": ["a list"]}),
       ("POST", "/notes", {"body": "hi", "headers": [("Content-Type", "text/plain")]}),
       ("POST", "/notes", {"json": {"text": "x" * 2000}}), ("GET", "/count?to=1000", {})]
barelab.show_transcript([(f"{m} {p}", *status_and_text(m, p, **kw)) for m, p, kw in bad])

# %% [markdown]
# 404 for what does not exist, 405 with the methods that would work, 400 with the reason
# for bad input, 415 for a format the handler does not read, 413 for a body over 1 KiB.
# The app never crashed: the server log has no errors.

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
# What about a body that is not there? A POST with `Transfer-Encoding: chunked` is
# fine on barelab's server, which sets `wsgi.input_terminated`: `read_body` reads to the
# end it marks. Send one by hand, in three chunks of 16 (`0x10`), 1 and 1 bytes:

# %%
chunked = (b"POST /notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b'10\r\n{"text": "chunks\r\n1\r\n"\r\n1\r\n}\r\n0\r\n\r\n')
barelab.raw_exchange(notes_server, chunked).received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# A 201 and the note, read from three chunks (the server's response is chunked too: its
# body starts with a chunk size).

# %% [markdown]
# ## Watching a stream
#
# Fetch `/count?to=3` with `raw_exchange`. The response has no `Content-Length`: the
# server cannot know how long a generator's output will be. It uses `Transfer-Encoding:
# chunked` instead, and each `yield` becomes one chunk (RFC 9112 §7.1). A chunk is its
# size in hex, CRLF, the bytes, CRLF. `0\r\n\r\n` ends the body.

# %%
GET_COUNT = b"GET /count?to=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
barelab.raw_exchange(notes_server, GET_COUNT)

# %% [markdown]
# That shows *what* arrived, but not *when*. `arrivals` sends the same bytes over a plain
# socket and notes the time at which each `count N` line first appears in what has come
# in. The timings are real (the notebook masks them when it checks outputs):

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
# One line every 0.2 seconds, each sent as soon as it was yielded. A server that
# collected the whole body first would deliver all three together after 0.6 s. PEP 3333
# forbids that: "Buffering and Streaming" says a server must send each block before it
# asks the iterable for the next one.

# %% [markdown]
# ## The same app on wsgiref
#
# The standard library ships a WSGI server too: `wsgiref.simple_server`. It is the
# reference implementation of PEP 3333, small enough to read in one sitting. Because
# `notes_app` speaks only WSGI, it runs on it unchanged.
#
# `make_server` binds the socket; `serve_forever` runs in a thread of its own, so this
# kernel stays free. Two details make it notebook-friendly. The request handler normally
# prints a line per request to stderr, which would land in a random cell, so
# `QuietHandler` keeps those lines in a list. And a short `poll_interval` makes stopping
# quick.

# %%
import io
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

wsgiref_lines = []

class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        wsgiref_lines.append(format % args)

    def get_stderr(self):  # where wsgiref prints app tracebacks
        return io.StringIO()

wsgiref_server = make_server("127.0.0.1", 0, validator(notes_app), handler_class=QuietHandler)
wsgiref_thread = threading.Thread(target=wsgiref_server.serve_forever,
                                  kwargs={"poll_interval": 0.05}, daemon=True)
wsgiref_thread.start()
wsgiref_url = f"http://127.0.0.1:{wsgiref_server.server_port}/"
wsgiref_url

# %% [markdown]
# The same requests get the same statuses. Both servers run the same code, which makes
# every decision:

# %%
requests = [("GET", "/hello?name=Ada", {}), ("POST", "/notes", {"json": {"text": "on wsgiref"}}),
            ("GET", "/notes/99", {}), ("PUT", "/notes", {}), ("GET", "/count?to=0", {})]
barelab.show_transcript(
    [(f"{m} {p}", barelab.http_request(notes_server, m, p, **kw).status,
      barelab.http_request(wsgiref_url, m, p, **kw).status) for m, p, kw in requests],
    columns=("request", "barelab", "wsgiref"))

# %% [markdown]
# (The two POSTs each created a note: both servers run the same `notes_app`, so they
# share one `notes` dict.)
#
# The bytes differ, though. Here is the stream on wsgiref:

# %%
barelab.raw_exchange(wsgiref_url, GET_COUNT)

# %% [markdown]
# Compare it with barelab's answer above:
#
# - The status line says **`HTTP/1.0`**. wsgiref answers every request as HTTP/1.0, even
#   though this one was HTTP/1.1 (RFC 9110 §6.2 allows a server to answer with a lower
#   version).
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
# ### HEAD, on both servers
#
# `notes_app` throws away the body for `HEAD` itself. Here is why that matters: a second
# app, the same one *without* that line, on both servers.

# %%
def careless_app(environ, start_response):
    handlers, params = routes_for(environ.get("PATH_INFO", ""))
    handler = handlers.get("GET") if environ["REQUEST_METHOD"] in ("GET", "HEAD") else None
    if handler is None:
        return error_response(start_response, NotFound("GET and HEAD only"))
    return handler(environ, start_response, **params)

careless = barelab.serve(validator(careless_app), name="careless")
wsgiref_server.set_app(validator(careless_app))
HEAD = b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
[barelab.raw_exchange(server, HEAD).received.endswith(b"\r\n\r\n")
 for server in (careless, wsgiref_url)]

# %% [markdown]
# On barelab the response ends with the empty line after the headers: no body. On
# wsgiref it does not. wsgiref sent the body after the headers, although RFC 9110 §9.3.2
# says a server MUST NOT send content in response to HEAD:

# %%
barelab.raw_exchange(wsgiref_url, HEAD).received.rsplit(b"\r\n\r\n", 1)[1]

# %% [markdown]
# A browser or proxy reading that connection would take those bytes for the start of the
# next response. An app that handles `HEAD` itself is safe on every server. Put the good
# app back:

# %%
wsgiref_server.set_app(validator(notes_app))
barelab.http_request(wsgiref_url, "HEAD", "/hello").body

# %% [markdown]
# ### Stopping wsgiref properly
#
# barelab keeps its servers in a registry and stops them for you. A wsgiref server is
# yours to stop, in three steps:
#
# - `shutdown()` asks `serve_forever` to return and waits until it has;
# - `server_close()` closes the listening socket. `shutdown()` alone leaves it open, and
#   the port stays taken until the kernel exits;
# - `join()` waits for the thread to end.
#
# Here is the log it kept, then the stop. `shutdown()` takes at most one
# `poll_interval`:

# %%
print("\n".join(wsgiref_lines[:3]), "...", sep="\n")
started = time.monotonic()
wsgiref_server.shutdown()
wsgiref_server.server_close()
wsgiref_thread.join(timeout=2)
print(f"stopped in {time.monotonic() - started:.2f} s; thread alive: {wsgiref_thread.is_alive()}")

# %% [markdown]
# The port is free again, and nothing answers there any more:

# %%
try:
    barelab.http_request(wsgiref_url, timeout=1)
except ConnectionRefusedError as error:
    print("ConnectionRefusedError:", str(error).replace(str(wsgiref_server.server_port), "PORT"))

# %% [markdown]
# ## Summary
#
# - A WSGI app can route by hand: look up the path, then the method; 404 for an unknown
#   path, 405 with `Allow` for a wrong method, `HEAD` served by `GET` without a body.
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
# - JSON: UTF-8 only, no `NaN`, an empty body is an error; each a 400 with line and
#   column. Created things get a 201 with `Location`; a 204 has no body and no
#   `Content-Type`.
# - A generator streams: barelab frames it with chunked encoding, wsgiref with HTTP/1.0
#   and a closed connection. wsgiref also sends a body for `HEAD` if the app returns one.
#   Stop a wsgiref server with `shutdown()`, `server_close()` and `join()`.

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

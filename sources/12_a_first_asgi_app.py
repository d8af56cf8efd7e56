# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 12. A first ASGI app
#
# Chapter 05 wrote a WSGI app with nothing but PEP 3333. This chapter does the same for
# ASGI: no Starlette, no FastAPI, only `scope`, `receive` and `send`. You will read a body
# that arrives in pieces, answer JSON with the right status codes, stream server-sent
# events that arrive one by one, and stop streaming the moment the client hangs up. Then
# you run the very same file on uvicorn and compare the bytes.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - read a request body the ASGI way, looping on `receive()` until `more_body` is false,
#   with a size limit that answers **413** as soon as the body passes it;
# - take JSON in and give JSON out, with **400** and a clear reason for invalid JSON,
#   **415** for another format, **404** and **405** with `Allow` from a hand-written router;
# - stream a response as several `http.response.body` messages and watch server-sent
#   events arrive over time;
# - notice `http.disconnect` while streaming and stop producing when the client leaves;
# - serve one app on barelab and on uvicorn, and explain every difference in their bytes.

# %% [markdown]
# ## The plan
#
# The app is small on purpose. Each route shows one thing:
#
# | method | path | what it shows |
# | --- | --- | --- |
# | GET | `/` | a plain text answer |
# | POST | `/sum` | JSON in, JSON out: `{"numbers": [1, 2]}` gives `{"sum": 3}` |
# | POST | `/upload` | a body read in chunks, with a limit |
# | GET | `/events?count=3` | server-sent events, one every 0.2 s |
# | GET | `/ticker` | a stream that never ends, until the client leaves |
#
# In chapter 11 you saw the events one request is made of. Here is the app's side of a
# request with a body in two pieces, for `/sum`:
#
# ```mermaid
# sequenceDiagram
#     participant S as Server
#     participant A as App
#     S->>A: await app(scope, receive, send)
#     A->>S: await receive()
#     S-->>A: http.request, body=b'{"numb', more_body=True
#     A->>S: await receive()
#     S-->>A: http.request, body=b'ers": [1, 2]}', more_body=False
#     Note over A: the body is complete: parse it
#     A->>S: await send(http.response.start, status=200)
#     A->>S: await send(http.response.body, body=b'{"sum": 3}')
# ```
#
# The tools come first. They go into `barelab/built/asgi_basics.py`, so later chapters
# can import them:

# %%
#| default_exp asgi_basics

# %% [markdown]
# Refusals work as in chapter 05: a helper raises an `HTTPError` that carries the status
# to answer with, and the app catches that one type. Chapter 02 made `BadRequest` (400)
# and `ContentTooLarge` (413), chapter 04 `NotFound` (404) and `MethodNotAllowed` (405),
# chapter 05 `UnsupportedMediaType` (415). HTTP does not care whether the app speaks WSGI
# or ASGI, so the same classes serve here.
#
# One case is new: the client may hang up while you are still reading its body. ASGI tells
# you with an `http.disconnect` message, and `RequestAborted` is the exception for it.
# There is nobody left to answer, so it has no status.

# %%
#| export
# Helpers for ASGI apps written by hand: read a body that arrives in chunks (with a
# limit), read JSON, answer with text or JSON, and stream until the client leaves. Bad
# input raises an HTTPError that names the status to answer with, as in wsgi_basics.
import asyncio
import json
import re

from barelab.built.http_wire import BadRequest, ContentTooLarge, HTTPError
from barelab.built.static_files import MethodNotAllowed, NotFound
from barelab.built.wsgi_basics import UnsupportedMediaType

MAX_BODY = 1024 * 1024   # bytes; a bigger body is a 413

class RequestAborted(Exception):
    """The client went away (http.disconnect) before the request body was complete."""

# %% [markdown]
# ## Reading the body
#
# In WSGI the body is a file: `environ["wsgi.input"].read(n)`. In ASGI it is a series of
# `http.request` messages, each with some `body` bytes and a `more_body` flag (ASGI HTTP
# spec, "Request - receive event"). The server hands them over as they come off the
# network, so a large upload never has to sit in memory all at once.
#
# Here is the mistake everyone makes once: call `receive()` a single time and take its
# body as the whole body. `call_asgi` can send the body in pieces: give it a list.

# %%
import barelab

async def naive_echo(scope, receive, send):
    message = await receive()                     # only the first piece!
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": message["body"]})

barelab.call_asgi(naive_echo, "POST", "/", body=[b"Hello, ", b"chunked ", b"world"])

# %% [markdown]
# Three `http.request` messages were ready, the app took one, and the answer is
# `Hello, `. The other two pieces were never read. With a small body on a real server you
# may get lucky and see it all in one message; with a big one you never will. The rule is
# a loop: keep calling `receive()` until a message says `more_body: False`.
#
# The loop needs a limit too. A server hands over whatever the client sends, and a client
# can send gigabytes. `read_body` counts as it goes and raises `ContentTooLarge` the
# moment the total passes `limit`, without waiting for the rest.

# %%
#| export
async def read_body(receive, limit: int = MAX_BODY) -> bytes:
    """Every ``http.request`` chunk joined; 413 as soon as the total passes ``limit``."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted("the client left before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

# %% [markdown]
# Both keys have defaults in the spec (`body` is `b""`, `more_body` is `False`), so the
# loop reads them with `.get`. Try it on the same three pieces. Inside an app you would
# write `await read_body(receive)`; here a `receive` made from a list plays the server.

# %%
def fake_receive(*chunks):
    """A receive() that hands out these chunks as http.request messages, in order."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}
    return receive

await read_body(fake_receive(b"Hello, ", b"chunked ", b"world"))

# %% [markdown]
# All three pieces. Now the two ways a body can go wrong. `attempt` shows the exception
# instead of stopping the cell:

# %%
import inspect

async def attempt(function, *args):
    """Call function(*args), await it if needed; the result or the exception, as text."""
    try:
        result = function(*args)
        return repr(await result if inspect.isawaitable(result) else result)
    except Exception as error:
        return repr(error)

barelab.show_transcript([
    ("11 bytes, limit 10", await attempt(read_body, fake_receive(b"Hello, ", b"ASGI"), 10)),
    ("client hangs up", await attempt(read_body, fake_receive())),
])

# %% [markdown]
# The first is a 413 raised after the second chunk: `read_body` never asked for a third.
# The second is the client leaving: `fake_receive()` with no chunks answers
# `http.disconnect` at once, the way a server does when the connection closes.
#
# Why not trust the `Content-Length` header instead of counting? Because it may be absent
# (a chunked upload has none) and because the count is what actually arrived. A server
# checks that the two agree; an app that counts is safe either way.

# %% [markdown]
# ## JSON in
#
# An ASGI scope keeps the request headers as a list of `(name, value)` byte pairs, names
# in lowercase (ASGI HTTP spec, "HTTP Connection Scope"). A header can repeat, so
# `header` joins the repeats with a comma, the way RFC 9110 §5.3 says they combine.
# `media_type` is the `content-type` without its parameters, as in chapter 05.

# %%
#| export
def header(scope: dict, name: str) -> str | None:
    """A request header (any case), repeats joined with ", "; None if absent."""
    wanted = name.lower().encode("latin-1")
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == wanted]
    return ", ".join(values) if values else None

def media_type(scope: dict) -> str:
    """'application/json; charset=utf-8' -> 'application/json'; '' if there is none."""
    return (header(scope, "content-type") or "").split(";", 1)[0].strip().lower()

# %% [markdown]
# `barelab.build_scope` makes the scope a server would; the header names you give it come
# out in lowercase.

# %%
scope = barelab.build_scope("http", "POST", "/sum",
                            headers=[("Content-Type", "application/JSON; charset=utf-8")])
scope["headers"], header(scope, "CONTENT-TYPE"), media_type(scope)

# %% [markdown]
# Turning bytes into JSON has the traps chapter 05 listed: the body must be UTF-8 (RFC
# 8259 §8.1), `NaN` and `Infinity` are not JSON although Python's `json` accepts them,
# an empty body is not a document, and each failure is the client's fault, a 400 with a
# reason. `parse_json` handles them. `read_json` adds the two steps before: the
# content type, then the body.

# %%
#| export
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (RFC 8259 §6)")

def parse_json(body: bytes):
    """``body`` as JSON; BadRequest (400) with the reason when it is not valid UTF-8 JSON."""
    if not body.strip():
        raise BadRequest("the body is empty; send a JSON document")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeError:
        raise BadRequest("JSON must be encoded in UTF-8 (RFC 8259 §8.1)") from None
    except json.JSONDecodeError as error:
        raise BadRequest(f"invalid JSON: {error.msg} (line {error.lineno}, "
                         f"column {error.colno})") from None
    except ValueError as error:
        raise BadRequest(f"invalid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None

# %% [markdown]
# `read_json` puts the three steps in the order that costs least: first the header,
# which is already in the scope; then the body, read with the limit; then the parse.
# A `+json` type such as `application/problem+json` (RFC 9457) is JSON too.

# %%
#| export
async def read_json(scope: dict, receive, limit: int = MAX_BODY):
    """The body as JSON: 415 unless the content type is JSON, then read_body, parse_json."""
    kind = media_type(scope)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("send JSON with content-type: application/json")
    return parse_json(await read_body(receive, limit))

# %% [markdown]
# Checking the content type *before* reading means a 50 MB upload of the wrong type is
# refused without reading a byte of it. Try `parse_json` on good and bad bodies:

# %%
bodies = [b'{"numbers": [1, 2.5]}', b'{"numbers": [1, 2,]}', b"[NaN]", b"",
          '{"name": "Zoë"}'.encode("latin-1"), b"[" * 100_000]
barelab.show_transcript([(body[:22], await attempt(parse_json, body)) for body in bodies])

# %% [markdown]
# ## JSON out
#
# A response is two kinds of message: one `http.response.start` with the status and the
# headers, then `http.response.body` messages. Header names and values are bytes, and
# names must be lowercase (ASGI HTTP spec, "Response Start - send event").
#
# `send_response` does that for a body you already have, and sets `content-length`, so
# the server need not fall back to chunked framing. The helpers take headers as `str`
# pairs, which are easier to write, and `encode_headers` turns them into bytes.

# %%
#| export
def encode_headers(headers) -> list[tuple[bytes, bytes]]:
    """(str, str) pairs as ASGI wants them: lowercase latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers]

async def send_response(send, status: int, body: bytes, headers=()) -> None:
    """One whole response: start (with content-length), then the body in one message."""
    await send({"type": "http.response.start", "status": status,
                "headers": encode_headers([*headers, ("content-length", str(len(body)))])})
    await send({"type": "http.response.body", "body": body})

# %% [markdown]
# On top of it, one helper per kind of answer. Each sets the `content-type` and encodes
# as UTF-8; extra headers (a `location`, an `allow`) come through `headers`. An error
# answer is plain text with the message the `HTTPError` carries.

# %%
#| export
async def send_text(send, text: str, status: int = 200, headers=()) -> None:
    """Answer with UTF-8 text."""
    await send_response(send, status, text.encode("utf-8"),
                        [("content-type", "text/plain; charset=utf-8"), *headers])

async def send_json(send, data, status: int = 200, headers=()) -> None:
    """Answer with ``data`` as JSON (UTF-8)."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    await send_response(send, status, body, [("content-type", "application/json"), *headers])

async def send_error(send, error: HTTPError, headers=()) -> None:
    """Answer with the status an HTTPError carries and its message as text."""
    await send_text(send, error.message + "\n", error.status, headers)

# %% [markdown]
# An app that answers JSON is now two lines. `call_asgi` shows the two messages it sent,
# with the `content-length` that `send_response` added:

# %%
async def hello_json(scope, receive, send):
    await send_json(send, {"hello": "ASGI", "path": scope["path"]})

barelab.call_asgi(hello_json, "GET", "/hi")

# %% [markdown]
# ## Routing by hand
#
# The router is a dict from path to `{method: handler}`, filled by a decorator, and each
# handler is an ASGI app of its own: `handler(scope, receive, send)`. (Chapter 08 built a
# router with path parameters; exact paths are enough here.)

# %%
ROUTES = {}   # path -> {method: handler}

def route(path, *methods):
    """Register the decorated handler for ``path`` and each of ``methods``."""
    def register(handler):
        for method in methods:
            ROUTES.setdefault(path, {})[method] = handler
        return handler
    return register

# %% [markdown]
# The app itself looks at the scope's `type` first. A server calls the same callable for
# HTTP requests, WebSockets and lifespan events (chapter 14), and the ASGI spec asks an
# app to *raise* on a type it does not handle, rather than answer the wrong question.
#
# Then the path, then the method: an unknown path is a **404**; a known path with the
# wrong method is a **405**, and RFC 9110 §15.5.6 says a 405 MUST carry an `Allow` header
# listing the methods that would work. `HEAD` is served by the `GET` handler, and the
# server drops the body of the answer: barelab and uvicorn both do (you will check
# both below). The ASGI spec does not say who must, so an app that wants to be sure can
# send an empty body for `HEAD` itself.

# %%
async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"this app speaks HTTP only, not {scope['type']!r}")
    handlers = ROUTES.get(scope["path"], {})
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    try:
        if not handlers:
            raise NotFound(f"nothing at {scope['path']}")
        if method not in handlers:
            allow = ", ".join(sorted({*handlers, "HEAD"} if "GET" in handlers else handlers))
            await send_error(send, MethodNotAllowed(f"{scope['method']} is not allowed here"),
                             headers=[("allow", allow)])
            return
        await handlers[method](scope, receive, send)
    except HTTPError as error:
        await send_error(send, error)

# %% [markdown]
# One `except HTTPError` turns every refusal a helper raises into its response. Handlers
# only raise before they start answering, so `send_error` never comes after a response
# has begun.
#
# Now the first routes. `/` answers text; `/sum` reads JSON and answers JSON. The upload
# limit is 64 bytes, to make a 413 easy to see.

# %%
UPLOAD_LIMIT = 64   # bytes

@route("/", "GET")
async def index(scope, receive, send):
    await send_text(send, "Hello from a bare ASGI app. Try /sum, /upload, /events, /ticker.\n")

@route("/sum", "POST")
async def sum_numbers(scope, receive, send):
    data = await read_json(scope, receive)
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise BadRequest('send {"numbers": [...]} with a list of numbers')
    await send_json(send, {"sum": sum(numbers)})

sorted(ROUTES)

# %% [markdown]
# `sum_numbers` checks the *shape* of the JSON too: valid JSON that is not what the route
# expects is still a 400. (`True` is an `int` in Python, hence the `bool` test.)
#
# `/upload` passes `read_body` a `receive` of its own: a wrapper that calls the real one
# and notes the size of each message on the way. Wrapping `receive` (and `send`) like
# this is how ASGI middleware works; chapter 16 builds on it.

# %%
@route("/upload", "POST")
async def upload(scope, receive, send):
    sizes = []
    async def receive_and_measure():
        message = await receive()
        sizes.append(len(message.get("body", b"")))
        return message
    body = await read_body(receive_and_measure, UPLOAD_LIMIT)
    await send_json(send, {"bytes": len(body), "chunk_sizes": sizes})

sorted(ROUTES)

# %% [markdown]
# Call the app in-process first, with the body in two pieces as in the diagram at the
# top:

# %%
barelab.call_asgi(app, "POST", "/sum", headers=[("content-type", "application/json")],
                  body=[b'{"numb', b'ers": [1, 2]}'])

# %% [markdown]
# Exactly the diagram: two `http.request` messages in, `http.response.start` and
# `http.response.body` out. The rows in the other direction come later; first the
# failures. Each row below is one in-process call, with the status and the first line of
# the answer:

# %%
JSON = [("content-type", "application/json")]
failures = [("GET", "/nope", {}), ("GET", "/sum", {}), ("DELETE", "/", {}),
            ("POST", "/sum", {"headers": JSON, "body": b'{"numbers": [1, 2,]}'}),
            ("POST", "/sum", {"headers": JSON, "body": b'{"numbers": "12"}'}),
            ("POST", "/sum", {"headers": [("content-type", "text/plain")], "body": b"1 2"}),
            ("POST", "/upload", {"body": [b"x" * 40, b"y" * 40, b"z" * 40]})]

def outcome(method, path, **kwargs):
    call = barelab.call_asgi(app, method, path, **kwargs)
    allow = f" (allow: {call.header('allow')})" if call.header("allow") else ""
    return f"{call.status}{allow}", call.text.strip()

barelab.show_transcript([(f"{m} {p}", *outcome(m, p, **kw)) for m, p, kw in failures])

# %% [markdown]
# 404, 405 with the methods that would work, 400 with the exact place the JSON broke or
# what was wrong with its shape, 415 for text, and 413 for 120 bytes against a limit of
# 64. The upload's transcript shows that the app stopped reading after the second chunk:

# %%
barelab.call_asgi(app, "POST", "/upload", body=[b"x" * 40, b"y" * 40, b"z" * 40]).transcript

# %% [markdown]
# Two `http.request` messages in (80 bytes, over the limit), then the 413 out. The third
# chunk was never asked for.

# %% [markdown]
# ## Streaming
#
# A WSGI app streams by returning a generator. An ASGI app streams by sending several
# `http.response.body` messages, each with `more_body: True` except the last (ASGI HTTP
# spec, "Response Body - send event"). The server writes each one to the socket as it
# comes, and since the app did not set a `content-length`, it frames the body with
# `Transfer-Encoding: chunked` (RFC 9112 §7.1).
#
# A format made for this is **server-sent events** (SSE), which browsers read with
# `new EventSource(url)`. The response has the type `text/event-stream`, and each event
# is a few `field: value` lines followed by an empty line (HTML Living Standard,
# "Server-sent events", §9.2.5 and §9.2.6):
#
# ```
# event: tick
# id: 1
# data: {"n": 1}
#
# ```
#
# The trap is a line break inside the data. The browser splits the stream on `\n`, `\r`
# or `\r\n`, so a data value with a newline in it must become several `data:` lines (the
# browser joins them back with `\n`). A newline in `event` or `id` would inject a field of
# the client's choosing, so `sse_event` refuses it.

# %%
#| export
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

def sse_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One server-sent event: optional event and id lines, a data line per line of data."""
    for name, value in (("event", event), ("id", id)):
        if value is not None and _LINE_BREAK.search(value):
            raise ValueError(f"an SSE {name} field cannot contain a line break: {value!r}")
    lines = [] if event is None else [f"event: {event}"]
    lines += [] if id is None else [f"id: {id}"]
    lines += [f"data: {line}" for line in _LINE_BREAK.split(data)]
    return ("\n".join(lines) + "\n\n").encode("utf-8")

# %% [markdown]
# Three events, the last with a line break in its data:

# %%
barelab.show_bytes(sse_event('{"n": 1}', event="tick", id="1") + sse_event("bye")
                   + sse_event("two\nlines"))

# %% [markdown]
# ### Stopping when the client leaves
#
# A stream can run for minutes. If the user closes the browser tab after two seconds,
# the app should stop producing at once: a stream that goes on computing events for
# nobody wastes the server, and a thousand forgotten streams take it down.
#
# How does the app find out? The ASGI HTTP spec, "Disconnect - receive event": once the
# body has been read, the next `receive()` waits, and returns `http.disconnect` when the
# connection closes. Spec 2.4 adds that `send()` on a closed connection should raise an
# `OSError`, but older servers silently drop the data, and a producer that is sleeping
# between events is not calling `send()` at all. So the reliable way is to listen:
# `wait_for_disconnect` keeps calling `receive()` until the disconnect comes.

# %%
#| export
async def wait_for_disconnect(receive) -> None:
    """Return once receive() says http.disconnect (body messages still unread are dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass

# %% [markdown]
# A stream then runs two tasks side by side: one sends the chunks, one listens. Whichever
# finishes first cancels the other.
#
# ```mermaid
# sequenceDiagram
#     participant C as Client
#     participant S as Server
#     participant P as App: producer task
#     participant L as App: listener task
#     L->>S: await receive()
#     P->>S: send(http.response.start)
#     P->>S: send(body=event 1, more_body=True)
#     S->>C: chunk: event 1
#     P->>S: send(body=event 2, more_body=True)
#     S->>C: chunk: event 2
#     C--xS: closes the connection
#     S-->>L: http.disconnect
#     L->>P: cancel()
#     Note over P: the generator's finally runs; nothing more is produced
# ```
#
# First the producer. It sends the head, then one body message per chunk, then an empty
# last message. Its `finally` closes the chunk generator, so the generator's own clean-up
# runs at once even when the producer is cancelled in the middle of a `send`.

# %%
#| export
async def _send_chunks(send, chunks, status: int, headers: list) -> None:
    try:
        await send({"type": "http.response.start", "status": status,
                    "headers": encode_headers(headers)})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if hasattr(chunks, "aclose"):
            await chunks.aclose()

# %% [markdown]
# Then `stream`, which races the producer against the listener. It returns `True` when
# the whole stream went out and `False` when the client left first, whether the listener
# noticed or `send()` raised the spec 2.4 `OSError`. Any other error in the producer is
# the app's bug, and is raised.

# %%
#| export
async def stream(send, receive, chunks, *, status: int = 200, headers=(),
                 content_type: str = "text/plain; charset=utf-8") -> bool:
    """Send each bytes chunk of the async iterable ``chunks`` as it comes, until the end
    or until the client leaves; True if the whole stream went out."""
    head = [("content-type", content_type), *headers]
    producer = asyncio.ensure_future(_send_chunks(send, chunks, status, head))
    listener = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({producer, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (producer, listener):
            task.cancel()
        await asyncio.wait({producer, listener})
    if producer.cancelled() or isinstance(producer.exception(), OSError):
        return False
    if producer.exception() is not None:
        raise producer.exception()
    return True

# %% [markdown]
# Two streaming routes. `/events` sends `count` events (3 unless the query says
# otherwise), one every 0.2 s. It reads the query with chapter 05's `parse_query`, which
# decodes the same bytes WSGI puts in `QUERY_STRING`. `cache-control: no-cache` keeps
# proxies from holding the stream back.

# %%
from barelab.built.wsgi_basics import parse_query

def query_count(scope, default=3, most=20):
    """The ?count= query parameter as an int from 1 to ``most``; 400 otherwise."""
    text = parse_query(scope["query_string"].decode("latin-1")).get("count", [str(default)])[0]
    if not text.isdecimal() or not 1 <= int(text) <= most:
        raise BadRequest(f"count must be a whole number from 1 to {most}, not {text!r}")
    return int(text)

@route("/events", "GET")
async def events(scope, receive, send):
    count = query_count(scope)
    async def ticks():
        for n in range(1, count + 1):
            await asyncio.sleep(0.2)
            yield sse_event(json.dumps({"n": n}), event="tick", id=str(n))
    await stream(send, receive, ticks(), content_type="text/event-stream",
                 headers=[("cache-control", "no-cache")])

# %% [markdown]
# In-process, `call_asgi` records every message. The response is one `http.response.start`
# and one body message per event, plus the empty last one:

# %%
barelab.call_asgi(app, "GET", "/events?count=2").transcript

# %% [markdown]
# The producer ran first and sent the head. The second row is the listener: it asked for
# the body of this GET, got an empty `http.request`, and went back to waiting. The last row is the disconnect that
# `call_asgi` sends once the response is complete, which ended the listener.
#
# `/ticker` never ends on its own: one event every 0.1 s, until the client leaves. It
# writes what happens into `ticker_log`, so you can see the app's side of a disconnect.
# The generator's `finally` is where a real app would release what the stream used (a
# database cursor, a subscription).

# %%
ticker_log = []

@route("/ticker", "GET")
async def ticker(scope, receive, send):
    async def forever():
        n = 0
        try:
            while True:
                n += 1
                yield sse_event(str(n), event="tick")
                await asyncio.sleep(0.1)
        finally:
            ticker_log.append("producer closed")
    finished = await stream(send, receive, forever(), content_type="text/event-stream")
    ticker_log.append("stream complete" if finished else "client left: stream stopped")

sorted(ROUTES)

# %% [markdown]
# ## Serve it
#
# Every route is registered. Serve the app with barelab and talk to it over real sockets.

# %%
server = barelab.serve(app, name="bare_asgi")
server

# %% [markdown]
# JSON in and out with `curl`. `-d` sends the body as a POST, `-H` sets the content type,
# and `-i` shows the response head. The body sits in a Python variable first: in a `!`
# line, IPython would take the braces of a JSON object for a `{...}` to fill in.

# %%
numbers = '{"numbers": [1, 2, 3.5]}'
# !curl -s -i -H "Content-Type: application/json" -d '{numbers}' {server.url}sum

# %% [markdown]
# The `content-type` and `content-length` came from `send_json`; `date` and `server`
# from the server. Now a 405 over the wire, with its `Allow` header:

# %%
barelab.http_request(server, "PUT", "/sum")

# %% [markdown]
# ### A chunked upload
#
# `call_asgi` made up the chunks. A real client sends a body in chunks with
# `Transfer-Encoding: chunked` (RFC 9112 §7.1): each chunk is its size in hex, CRLF, the
# bytes, CRLF, and a chunk of size 0 ends the body. Send one by hand, in three chunks of
# 5, 6 and 1 bytes:

# %%
CHUNKED_UPLOAD = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n")
uploaded = barelab.raw_exchange(server, CHUNKED_UPLOAD)
uploaded.received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# The server decoded the chunked framing and handed the app one `http.request` per
# chunk: 5, 6 and 1 bytes, 12 in all. The app never saw the hex sizes. There is no
# `Content-Length` here, so only counting, as `read_body` does, can enforce a limit. Send
# 100 bytes in chunks of 10:

# %%
big = b"".join(b"a\r\n" + b"0123456789\r\n" for _ in range(10))
too_big = barelab.raw_exchange(server, CHUNKED_UPLOAD.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
                               + big + b"0\r\n\r\n")
too_big.received.split(b"\r\n")[0], too_big.received.split(b"\r\n\r\n", 1)[1]

# %% [markdown]
# 413, answered after the seventh chunk (70 bytes), with the rest of the body still on
# its way. The server log has a line per request, and no errors:

# %%
server.log

# %% [markdown]
# ### Events, arriving over time
#
# `raw_exchange` shows what arrived, not when. `sse_client` opens a socket, sends a GET,
# and notes the time at which each event shows up in the bytes received so far. With
# `max_events` it hangs up after that many, like a user closing the tab. The times are
# real (the notebook masks them when it checks outputs).

# %%
import re
import socket
import time

SSE_EVENT = re.compile(rb"(?:event|id|data):[^\n]*\n(?:[^\n]+\n)*\n")

def sse_client(host, port, path, max_events=None, timeout=5.0):
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    rows, received, start = [], b"", time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        while max_events is None or len(rows) < max_events:
            if not (chunk := sock.recv(4096)):
                break                                   # the server closed: stream over
            received += chunk
            for event in SSE_EVENT.findall(received)[len(rows):]:
                rows.append((f"{time.monotonic() - start:.2f} s", event))
    return barelab.show_transcript(rows[:max_events], columns=("after", "event"))

sse_client(server.host, server.port, "/events?count=3")

# %% [markdown]
# One event every 0.2 s, each sent the moment it was produced. Nothing waited for the
# end of the stream.

# %% [markdown]
# ### The client leaves
#
# First the broken version. `naive_ticker` is what most first attempts look like: a
# loop of `send()` and `sleep()`, one event per second, that never looks at `receive()`.
# It notes in `naive` how many events it sent, and what ended it.

# %%
naive = {"sent": 0, "ended by": None, "client left at": None, "ended at": None}

@route("/naive-ticker", "GET")
async def naive_ticker(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    try:
        while True:
            await send({"type": "http.response.body", "more_body": True,
                        "body": sse_event(str(naive["sent"] + 1))})
            naive["sent"] += 1
            await asyncio.sleep(1.0)
    except Exception as error:
        naive["ended by"], naive["ended at"] = type(error), time.monotonic()
        raise

sse_client(server.host, server.port, "/naive-ticker", max_events=1)

# %% [markdown]
# The client took one event and hung up. A moment later, is the app still at it?

# %%
naive["client left at"] = time.monotonic()
time.sleep(0.3)
naive["sent"], naive["ended by"]

# %% [markdown]
# One event sent, and nothing has ended it: the handler is asleep, about to send event 2
# to a client that is gone. It only finds out by sending. Wait for that:

# %%
while naive["ended by"] is None and time.monotonic() < naive["client left at"] + 5:
    time.sleep(0.05)
print("ended by:", naive["ended by"].__name__, "- an OSError:",
      issubclass(naive["ended by"], OSError))
print("events sent after the client left:", naive["sent"] - 1 > 0)
print(f"noticed {naive['ended at'] - naive['client left at']:.1f} s after the client left")

# %% [markdown]
# barelab follows spec 2.4, so a `send()` raised an `OSError` subclass in the end. But
# not the first one after the client left, which went nowhere: the operating system
# accepted those bytes, and only learned the client was gone when the client's machine
# answered them with a reset. So the handler kept producing for a second or two, and on
# a server older than spec 2.4, where `send()` never raises, it would never stop.
#
# Now the ticker that listens:

# %%
sse_client(server.host, server.port, "/ticker", max_events=3)

# %% [markdown]
# Three events, then the client hung up. The app's side:

# %%
time.sleep(0.2)
ticker_log

# %% [markdown]
# The listener got `http.disconnect`, `stream` cancelled the producer in the middle of
# its `sleep`, the generator's `finally` ran, and `stream` returned `False`. Nothing was
# produced after the client left. The server's log agrees: the app returned without
# finishing the response, which is right when nobody is there to receive the end.

# %%
for entry in server.log.entries[-2:]:
    print(entry.text())

# %% [markdown]
# ## The same app on uvicorn
#
# `app` speaks only ASGI, so any ASGI server can run it. uvicorn, a server many FastAPI
# apps run on in production, is a program you start from a shell:
# `uvicorn module:app`. It imports the module and serves the `app` in it. So the app
# needs to live in a file.
#
# The cells above *are* that file. `inspect.getsource` returns the source of a function
# defined in a cell, decorator included, so the file is the chapter's own code plus a
# header with the imports and the globals the handlers use. It goes into a temporary
# folder.

# %%
import inspect
import sys
import tempfile
from pathlib import Path

HEADER = '''"""The app of chapter 12, written out of the notebook so that uvicorn can import it."""
import asyncio
import json

from barelab.built.asgi_basics import (BadRequest, HTTPError, MethodNotAllowed, NotFound,
    read_body, read_json, send_error, send_json, send_text, sse_event, stream)
from barelab.built.wsgi_basics import parse_query

ROUTES = {}
UPLOAD_LIMIT = 64
ticker_log = []
'''
parts = [route, app, index, sum_numbers, upload, query_count, events, ticker]
app_dir = tempfile.TemporaryDirectory(prefix="chapter12-")
app_file = Path(app_dir.name) / "bare_asgi_app.py"
app_file.write_text(HEADER + "".join("\n\n" + inspect.getsource(part) for part in parts))
print(app_file.name, "-", len(app_file.read_text().splitlines()), "lines")

# %% [markdown]
# Now start uvicorn in a separate process, with the same Python as this kernel
# (`sys.executable`). Two details:
#
# - **The port.** Picking a free port and handing its number to another program is a
#   race: something else may take it in between. Instead, this cell binds the socket
#   itself and passes it to uvicorn already open: `--fd` takes a file descriptor, and
#   `pass_fds` lets the child process inherit it.
# - **The output.** uvicorn logs to the terminal. Here it goes to a file, shown at the
#   end of the section.
#
# A server needs a moment to start, so the cell asks it for `/` until it answers.

# %%
import subprocess

listener = socket.create_server(("127.0.0.1", 0))
uvicorn_url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
uvicorn_output = open(Path(app_dir.name) / "uvicorn.log", "w")
uvicorn = subprocess.Popen(
    [sys.executable, "-m", "uvicorn", "bare_asgi_app:app", "--app-dir", app_dir.name,
     "--fd", str(listener.fileno())],
    pass_fds=[listener.fileno()], stdout=uvicorn_output, stderr=subprocess.STDOUT)
listener.close()   # the child has its own copy now

def wait_until_up(url, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return barelab.http_request(url, timeout=1.0)
        except OSError:
            if time.monotonic() > deadline or uvicorn.poll() is not None:
                raise
            time.sleep(0.05)

wait_until_up(uvicorn_url).text

# %% [markdown]
# The same answer. Now the same requests to both servers, side by side: the status and
# whether the bodies are equal, byte for byte.

# %%
same_requests = [("GET", "/", {}), ("POST", "/sum", {"json": {"numbers": [1, 2, 3.5]}}),
                 ("POST", "/sum", {"body": b"{oops", "headers": JSON}),
                 ("PUT", "/sum", {}), ("GET", "/nope", {}), ("GET", "/events?count=0", {}),
                 ("POST", "/upload", {"body": b"x" * 100}), ("GET", "/events?count=2", {})]

def side_by_side(method, path, **kwargs):
    ours = barelab.http_request(server, method, path, **kwargs)
    theirs = barelab.http_request(uvicorn_url, method, path, **kwargs)
    return f"{method} {path}", ours.status, theirs.status, ours.body == theirs.body

barelab.show_transcript([side_by_side(m, p, **kw) for m, p, kw in same_requests],
                        columns=("request", "barelab", "uvicorn", "same body"))

# %% [markdown]
# Every status and every body agrees, the event stream included: the app makes every
# decision, and both servers carry them out. The heads differ, though. Here are the
# headers of `GET /` from each:

# %%
ours, theirs = barelab.http_request(server), barelab.http_request(uvicorn_url)
print("barelab:", [name for name, _ in ours.headers])
print("uvicorn:", [name for name, _ in theirs.headers])
barelab.show_transcript([(name, ours.header(name), theirs.header(name))
                         for name, _ in ours.headers], columns=("header", "barelab", "uvicorn"))

# %% [markdown]
# - Both servers add `date` (RFC 9110 §6.6.1 says an origin server with a clock MUST)
#   and `server`, each with its own name. The `date` differs by the clock only.
# - uvicorn puts its own headers first, barelab after the app's. Order between
#   different header names carries no meaning (RFC 9110 §5.3).
# - Both echo `Connection: close`, because `http_request` asked for it.
#
# ### Where the servers differ
#
# The chunked upload again. The bytes sent are identical; the answers are not:

# %%
[barelab.raw_exchange(target, CHUNKED_UPLOAD).received.split(b"\r\n\r\n", 1)[1]
 for target in (server, uvicorn_url)]

# %% [markdown]
# barelab hands each chunk to the app as it was decoded; uvicorn collects what has
# arrived and hands it over in one `http.request`. Both are allowed: the spec lets a
# server split a body however it likes, and chunk boundaries carry no meaning in HTTP
# (RFC 9112 §7.1 calls chunking a transfer coding, not part of the content). Only an app
# that loops, like `read_body`, works the same on both.
#
# And `HEAD`: the app sends the same body as for `GET`, and both servers drop it.
# Each response below ends right after the blank line that closes the head:

# %%
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
[barelab.raw_exchange(target, HEAD).received.endswith(b"\r\n\r\n")
 for target in (server, uvicorn_url)]

# %% [markdown]
# ### Stopping uvicorn
#
# A process you started is yours to stop. `terminate()` sends it `SIGTERM`, which uvicorn
# treats as "finish the open requests, then exit"; `wait` gives it a few seconds to do
# so. Then the log file, with the process id masked since it changes on every run:

# %%
uvicorn.terminate()
print("exit status:", uvicorn.wait(timeout=5))
uvicorn_output.close()
print(re.sub(r"\[\d+\]", "[PID]", (Path(app_dir.name) / "uvicorn.log").read_text()))

# %% [markdown]
# The exit status is `-15`: after shutting down cleanly, uvicorn re-raises the `SIGTERM`
# it caught, so the parent sees a process ended by signal 15. Its log reads like
# barelab's:
#
# - "ASGI 'lifespan' protocol appears unsupported": `app` raised on the `lifespan` scope,
#   as an app without lifespan should, and uvicorn went on without it. barelab wrote the
#   same into its log when it started. Chapter 14 is about lifespan.
# - One access line per request. The `GET /events?count=2` line is logged when the
#   response *starts*, not when it ends.
#
# Nothing answers at that address any more. Remove the temporary folder too:

# %%
app_dir.cleanup()
try:
    barelab.http_request(uvicorn_url, timeout=1)
except ConnectionRefusedError:
    print("connection refused: uvicorn is gone")

# %% [markdown]
# ## Summary
#
# - An ASGI app reads its body from `http.request` messages: loop on `receive()` until
#   `more_body` is false, count as you go, and refuse with **413** the moment the total
#   passes a limit. A single `receive()` gets only the first piece.
# - You built `barelab.built.asgi_basics`: `read_body`, `header`, `media_type`,
#   `parse_json`, `read_json`, `encode_headers`, `send_response`, `send_text`,
#   `send_json`, `send_error`, `sse_event`, `wait_for_disconnect`, `stream`, and
#   `RequestAborted` for a client that leaves mid-body. Refusals reuse the `HTTPError`
#   classes of chapters 02, 04 and 05.
# - Routing by hand: 404 for an unknown path, 405 with `Allow` for a wrong method, HEAD
#   served by GET (ASGI servers drop the body). An app raises on a scope type it does not
#   handle.
# - A response is `http.response.start` plus `http.response.body` messages; several body
#   messages with `more_body: True` make a stream, which the server sends chunked.
#   Server-sent events are `text/event-stream` with one `data:` line per line of data.
# - A client that leaves shows up as `http.disconnect` from `receive()`. Listen for it
#   while streaming and cancel the producer; spec 2.4 servers also raise `OSError` from
#   `send()`, but only when you send.
# - The same file ran on barelab and on uvicorn with the same statuses and bodies; the
#   servers differ in their own headers and in how they split a chunked body.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. The checks call your
# code in-process with `barelab.call_asgi`.
#
# ### Exercise 1 — shout
#
# Write an ASGI app `shout_app` that reads the whole body (at most 20 bytes) and answers
# `200` with the body in capitals as UTF-8 text. A body over 20 bytes gets a 413, and a
# body that is not UTF-8 a 400. Use the helpers from `asgi_basics`.

# %% tags=["solution"]
async def shout_app(scope, receive, send):
    ### BEGIN SOLUTION
    try:
        body = await read_body(receive, limit=20)
        try:
            text = body.decode("utf-8")
        except UnicodeError:
            raise BadRequest("send UTF-8 text") from None
        await send_text(send, text.upper())
    except HTTPError as error:
        await send_error(send, error)
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    call = barelab.call_asgi(shout_app, "POST", "/", body=[b"hello, ", b"asgi"])
    assert call.status == 200, f"status {call.status} for a 11-byte body, expected 200"
    assert call.body == b"HELLO, ASGI", f"the body is {call.body!r}: read every chunk"
    call = barelab.call_asgi(shout_app, "POST", "/", body=[b"x" * 15, b"y" * 15])
    assert call.status == 413, f"status {call.status} for 30 bytes, expected 413"
    call = barelab.call_asgi(shout_app, "POST", "/", body=b"caf\xe9")
    assert call.status == 400, f"status {call.status} for a latin-1 body, expected 400"

# %% [markdown]
# ### Exercise 2 — a mean route
#
# Register a handler for `POST /mean` on the chapter's `app` with `@route`. It reads
# `{"numbers": [...]}` like `/sum` and answers `{"mean": ...}`. An empty list has no
# mean: answer 400 with a message that says so.

# %% tags=["solution"]
### BEGIN SOLUTION
@route("/mean", "POST")
async def mean(scope, receive, send):
    data = await read_json(scope, receive)
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise BadRequest('send {"numbers": [...]} with a list of numbers')
    if not numbers:
        raise BadRequest("the mean of no numbers is undefined: send at least one")
    await send_json(send, {"mean": sum(numbers) / len(numbers)})
### END SOLUTION
sorted(ROUTES)

# %% tags=["check"]
with check("Exercise 2"):
    call = barelab.call_asgi(app, "POST", "/mean", headers=JSON, body=b'{"numbers": [1, 2, 6]}')
    assert call.status == 200, f"status {call.status}: {call.text}"
    assert call.json() == {"mean": 3.0}, f"the answer is {call.json()}, expected {{'mean': 3.0}}"
    call = barelab.call_asgi(app, "POST", "/mean", headers=JSON, body=b'{"numbers": []}')
    assert call.status == 400, f"status {call.status} for an empty list, expected 400"
    call = barelab.call_asgi(app, "GET", "/mean")
    assert call.status == 405 and "POST" in call.header("allow"), "GET /mean should be a 405"

# %% [markdown]
# ### Exercise 3 — a countdown stream
#
# Write an async generator `countdown(n)` that yields one server-sent event per number
# from `n` down to 1 (the number as the data), then a last event with data `liftoff` and
# event type `done`. No need to sleep between them. `countdown_app` below streams it.

# %% tags=["solution"]
async def countdown(n):
    ### BEGIN SOLUTION
    for i in range(n, 0, -1):
        yield sse_event(str(i))
    yield sse_event("liftoff", event="done")
    ### END SOLUTION

async def countdown_app(scope, receive, send):
    await stream(send, receive, countdown(3), content_type="text/event-stream")

barelab.call_asgi(countdown_app).body

# %% tags=["check"]
with check("Exercise 3"):
    call = barelab.call_asgi(countdown_app)
    bodies = [m["body"] for m in call.sent if m["type"] == "http.response.body" and m["body"]]
    assert len(bodies) == 4, f"{len(bodies)} events were sent, expected 4 (3, 2, 1, liftoff)"
    assert bodies[0] == b"data: 3\n\n", f"the first event is {bodies[0]!r}"
    assert bodies[-1] == b"event: done\ndata: liftoff\n\n", f"the last event is {bodies[-1]!r}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 16. ASGI middleware deep dive
#
# Chapter 07 wrapped WSGI apps in logging, request IDs and authentication. ASGI apps need
# the same layers, and the async interface gives each layer two new handles: `receive`,
# which it can wrap to watch the request body arrive, and `send`, which it can wrap to
# change the response on its way out. This chapter builds seven such layers, ending with
# gzip compression that streams, and breaks each of the classic ones on purpose first.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - write an ASGI middleware as a class around an ASGI app that wraps `receive` and `send`,
#   copies the scope before changing it, and passes every other scope type (lifespan too)
#   through untouched;
# - limit a request body to answer **413** before the app reads too much, add response
#   headers, time a response to its headers (`Server-Timing`) and to its last byte (a log
#   line), and give every request an ID;
# - authenticate HTTP requests **and** WebSocket handshakes, refusing the latter with a
#   denial response or a close before accept;
# - compress responses with gzip chunk by chunk, honour `q=0` in `Accept-Encoding`, send
#   `Vary: Accept-Encoding`, and never leave a stale `Content-Length`;
# - stack the layers in an order you can justify, and run the stack on barelab, on your own
#   server from chapter 13, and around a Starlette app.

# %% [markdown]
# ## A middleware is an app that holds an app
#
# An ASGI server calls `await app(scope, receive, send)`. A middleware is an object that
# can be called the same way and holds another app. When called, it calls that app, and it
# may hand it a changed `scope`, its own `receive` (to see or change what the app reads),
# or its own `send` (to see or change what the app sends):
#
# ```mermaid
# flowchart LR
#     S["server"] -- "scope,<br/>receive, send" --> M["middleware"]
#     M -- "scope′,<br/>receive′, send′" --> A["app"]
#     S -. "http.request" .-> M -. "http.request′" .-> A
#     A -. "http.response.*" .-> M -. "http.response.*′" .-> S
# ```
#
# The dotted arrows are the messages. `receive` carries them inwards, `send` carries them
# outwards, and the middleware stands in the middle of both streams.
#
# You need an app to wrap. `hello` is the smallest useful one: a start message with the
# status and headers, then one body message. `barelab.call_asgi` plays the server for one
# request, with no socket, and records every message that went in or came out:

# %%
import barelab

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"Hello!\n"})

barelab.call_asgi(hello)

# %% [markdown]
# Read the transcript line by line. `scope:` is what the "server" passed in. Each
# `app →` line is one message the app handed to `send`, in order; a `→ app` line (none
# here, since `hello` never reads the body) would be one that `receive` returned. Under
# `response:` is the HTTP response a real server would have written from those messages.
#
# Now the middleware. `powered_by(app)` returns a new ASGI app. That app calls the old
# one, but hands it `send_with_header` in place of the real `send`. Every message the
# app sends lands there first; the start message is replaced by a copy with one more
# header, and everything goes on to the real `send`:

# %%
def powered_by(app, name=b"x-powered-by"):
    async def middleware(scope, receive, send):
        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (name, b"asgi")]}
            await send(message)
        await app(scope, receive, send_with_header)
    return middleware

barelab.call_asgi(powered_by(hello))

# %% [markdown]
# Same two messages, and the start now carries `x-powered-by: asgi`. From the outside,
# `powered_by(hello)` looks like any other app: the "server" cannot tell there are two
# functions in there. (The `name` parameter is there so you can break it in a moment.)
#
# The pattern in `send_with_header` is the whole idea of this chapter: look at each
# message going out, and pass on a **new** message where you want a change. Its WSGI twin
# in chapter 07 wrapped `start_response`; in ASGI there is no such callable, just a
# message of type `http.response.start` travelling through `send`.
#
# Two rules from chapter 07 carry over, and two are new:
#
# 1. Do not change what you did not make: build a new message (`{**message, ...}`) and a
#    new header list rather than editing the app's.
# 2. Leave the body alone unless you must, and if you must, stream it.
# 3. **New:** an app is called for several kinds of scope (`http`, `websocket`, `lifespan`).
#    A layer that handles one kind passes the others through untouched.
# 4. **New:** if you change the scope, change a copy. The asgiref docs put it this way for
#    middleware: copy the scope before mutating it, or the change leaks to the layers
#    outside you.
#
# A closure is fine for a demo, but a layer with settings (a limit, a list of tokens) reads
# better as a class, as in chapter 07: `__init__(app, ...)` stores the app and the
# settings, and `async __call__(scope, receive, send)` handles one connection. Because
# `__call__` has the app signature, an *instance* of the class is an ASGI app. The classes
# go into a module, `barelab.built.asgi_middleware`, which the next chapters import:

# %%
#| default_exp asgi_middleware

# %% [markdown]
# The module opens with a comment that states its design rules, the four above in
# module-sized words, and with its imports from the standard library. Nothing here runs
# anything yet; it is the top of a file.

# %%
#| export
# ASGI middleware: each component is a class whose __init__ takes the app it wraps and
# whose async __call__(scope, receive, send) is itself an ASGI app. A component wraps receive
# to watch the request body and send to change the response; it copies the scope (and its
# "state") before changing it, never edits a message it did not make, and passes every
# scope type it does not handle, lifespan included, through untouched. Header names are
# lowercase bytes, as the ASGI HTTP spec requires of apps.
import hashlib
import hmac
import re
import time
import uuid
import zlib
from urllib.parse import parse_qsl

# %% [markdown]
# Three names come from earlier chapters, so this module does not rebuild them:
# `send_text` from chapter 12 sends a whole text response in two messages; the response
# checker from chapter 11 validates messages; and `compose` from chapter 07 stacks layers
# around an app. `compose` never looks inside a layer, so it does not care whether the
# layers speak WSGI or ASGI. `RequestRecord` is chapter 07's access-log line, reused so
# that WSGI and ASGI logs look alike.

# %%
#| export
from barelab.built.asgi_basics import send_text
from barelab.built.asgi_types import HTTPResponseChecker, checked_send
from barelab.built.wsgi_middleware import RequestRecord, compose

# %% [markdown]
# ### Two header helpers
#
# ASGI headers are a list of `(name, value)` byte pairs, not a dict, because a field can
# appear more than once. The scope's request headers have lowercase names (ASGI HTTP
# spec, "HTTP Connection Scope"), and so must an app's response headers, but a middleware
# should not trust every app on that, so the helpers compare names in lowercase.
#
# `header_value` answers "what did this header say?". When a field repeats, the repeats
# mean the same as one field with the values joined by commas (RFC 9110 §5.3), so that is
# what it returns:

# %%
#| export
def header_value(headers, name: bytes) -> bytes | None:
    """Every value of header ``name`` (any case) joined with ", " (RFC 9110 §5.3), or None."""
    values = [value for field, value in headers if field.lower() == name]
    return b", ".join(values) if values else None

# %% [markdown]
# A header list with `Vary` twice, once in an unusual case. Ask for `vary`, and for a
# header that is not there:

# %%
sample = [(b"content-type", b"text/plain"), (b"vary", b"Origin"), (b"Vary", b"Cookie")]
header_value(sample, b"vary"), header_value(sample, b"etag")

# %% [markdown]
# Both `Vary` fields were found and joined, whatever the case of their names; a missing
# header is `None`, not an empty string, so a layer can tell "absent" from "empty".
#
# `without` is the other half: a **new** list with some fields left out. Layers use it to
# replace a header (drop it, then append the new value) without touching the app's list.

# %%
#| export
def without(headers, *names: bytes) -> list:
    """A new list of ``headers`` without the fields called one of ``names``."""
    drop = {name.lower() for name in names}
    return [(field, value) for field, value in headers if field.lower() not in drop]

# %%
without(sample, b"vary"), len(sample)

# %% [markdown]
# Both `Vary` fields are gone from the result, and `sample` still has its three fields.
#
# ### A spec checker at every boundary
#
# Chapter 07 checked every layer with `wsgiref.validate.validator`, on both sides. ASGI has
# no validator in the standard library, but chapter 11 built one for HTTP responses:
# `checked_send` refuses a message that breaks the spec (a header name in uppercase, a body
# before the start, a second start) with an `ASGIMessageError` that quotes the rule.
# `checker.finish()` then complains if the response never ended.
#
# `SpecCheck` is that checker as a layer. It wraps `send` like `powered_by` does, except
# that its wrapper checks instead of changing. Look at its first two lines: any scope that
# is not `http` goes straight to the app. You will see that line in every layer of this
# chapter, and a section further down shows what happens without it.

# %%
#| export
class SpecCheck:
    """Check every message an app sends in an ``http`` scope (chapter 11's checker)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        checker = HTTPResponseChecker()
        await self.app(scope, receive, checked_send(send, checker))
        checker.finish()

# %% [markdown]
# `compose(app, layer, between=SpecCheck)` builds `SpecCheck(layer(SpecCheck(app)))`: one
# checker on the app's side of the layer and one on the server's side, exactly like
# `between=validator` in chapter 07. If the inner one complains, the app broke a rule; if
# only the outer one does, the layer did.
#
# `powered_by` adds a lowercase name, so it passes. Give it `X-Powered-By`, in the title
# case you see in browser tools, and it does not. `partial` fills in the `name` argument,
# so `compose` gets a layer that takes only the app:

# %%
from functools import partial

for name in (b"x-powered-by", b"X-Powered-By"):
    layer = partial(powered_by, name=name)
    call = barelab.call_asgi(compose(hello, layer, between=SpecCheck), raise_errors=False)
    print(f"{name.decode():13}", call.status, repr(call.exception))

# %% [markdown]
# The first run got its 200 and no exception. The second never reached the "server": the
# status is `None`, and the exception is the outer checker quoting the rule it enforced.
# Real servers are more forgiving than the spec and would send `X-Powered-By` as it
# stands; the checker's job is to point at the layer that broke the rule, not to judge the
# server.
#
# ### Seeing what a layer changes
#
# `call_asgi` records what reaches the server, that is, what leaves the **outermost** layer.
# To see what a layer changes, you also need what goes **into** it. `Spy` is a
# pass-through middleware: it wraps both `receive` and `send`, changes nothing, and notes
# every message in a `barelab.ASGICall`, the same record `call_asgi` returns, so it prints
# as the same kind of transcript. It is also the smallest layer that wraps both
# directions, so it is worth reading on its own:

# %%
class Spy:
    """Pass everything through, and record it as a barelab ASGICall."""

    def __init__(self, app):
        self.app, self.call = app, None

    async def __call__(self, scope, receive, send):
        self.call = call = barelab.ASGICall(scope)
        async def spy_receive():
            message = await receive()
            call.events.append(("receive", message))
            return message
        async def spy_send(message):
            call.events.append(("send", message))
            await send(message)
        await self.app(scope, spy_receive, spy_send)

# %% [markdown]
# Put a `Spy` between a layer and the app, call the whole thing with `call_asgi`, and you
# have both sides of the layer: the spy saw what the app sent, `call_asgi` saw what the
# server got. `before_after` does that and prints the two transcripts one above the other:

# %%
def before_after(app, layer, **request):
    """Call ``layer(app)`` once; show what the app saw and sent, then what the server saw."""
    spy = Spy(app)
    outside = barelab.call_asgi(layer(spy), raise_errors=False, **request)
    rows = [("app", spy.call.transcript if spy.call else "(the app was never called)"),
            ("server", outside.transcript)]
    return barelab.show_transcript(rows, columns=("side", "messages"))

before_after(hello, powered_by)

# %% [markdown]
# Read it top to bottom. The `app` row is what `hello` sent: a start without
# `x-powered-by`. The `server` row is what came out of `powered_by`: the same start with
# the header added. (Both rows label outgoing messages `app →`, because each transcript
# is written from the point of view of whoever received them: to the server, the whole
# stack is "the app".) Every layer in this chapter gets a picture like this one.

# %% [markdown]
# ## Wrapping `send`: headers on the way out
#
# A common first layer adds a few fixed headers to every response: security headers such
# as `x-content-type-options: nosniff`, which stops browsers from guessing a content type.
# It is a good place to meet the first ASGI trap.
#
# ### Trap 1: editing the app's message
#
# Apps often build a response once and send the same objects each time: it saves building
# a dict per request, and nothing in the spec forbids it. Here the start message is a
# module-level constant, so every request sends the very same dict, with the very same
# header list inside:

# %%
HELLO_START = {"type": "http.response.start", "status": 200,
               "headers": [(b"content-type", b"text/plain; charset=utf-8")]}

async def constant_hello(scope, receive, send):
    await send(HELLO_START)
    await send({"type": "http.response.body", "body": b"Hello!\n"})

barelab.call_asgi(constant_hello).status

# %% [markdown]
# A perfectly good app. Now a middleware that adds the header the shortest way:
# `message["headers"].append(...)`. It changes the list it was handed, in place. That
# looks harmless, because the message is on its way out anyway:

# %%
def nosniff_in_place(app):
    async def middleware(scope, receive, send):
        async def add(message):
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-content-type-options", b"nosniff"))
            await send(message)
        await app(scope, receive, add)
    return middleware

# %% [markdown]
# Call the stack three times, as three requests to a running server would, and look at
# the header each response carries:

# %%
stack = nosniff_in_place(constant_hello)
for request in range(1, 4):
    call = barelab.call_asgi(stack)
    print(f"request {request}:", call.header("x-content-type-options"))

# %% [markdown]
# One more copy of the header per request, forever. The middleware did not change a copy:
# it changed `HELLO_START["headers"]`, the app's own list, and the app sends that list
# again on the next request. In a long-running server the list grows until someone
# notices the response headers are megabytes long, and nothing in the code that did it
# looks wrong. The damage is still there, in the app's constant:

# %%
len(HELLO_START["headers"])

# %% [markdown]
# Four fields where the app wrote one. The fix is rule 1: build a new message with a new
# list, and leave the app's objects as you found them.
#
# `AddHeaders` is the real layer. Its settings come as a dict or a list of pairs, in `str`
# or `bytes`, whatever is handiest for the caller; `_encode` turns them into the form ASGI
# wants, lowercase byte names and byte values:

# %%
#| export
def _encode(pairs) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs from a dict or a list, str or bytes, as lowercase byte pairs."""
    items = pairs.items() if hasattr(pairs, "items") else pairs
    as_bytes = lambda text: text if isinstance(text, bytes) else text.encode("latin-1")
    return [(as_bytes(name).lower(), as_bytes(value)) for name, value in items]

# %%
_encode({"X-Frame-Options": "DENY"}), _encode([(b"Referrer-Policy", "no-referrer")])

# %% [markdown]
# Title case in, lowercase out, as the spec asks. Values are encoded as Latin-1, the
# encoding HTTP field values have always used for bytes above ASCII.
#
# The class wraps `send` like `powered_by`, with two differences: the start message it
# passes on is a new dict with a new list (`{**message, "headers": [...]}`), and it adds a
# header only when the app did not set it already, so an app can still override the
# default for one response:

# %%
#| export
class AddHeaders:
    """Add these headers to every HTTP response that does not set them itself."""

    def __init__(self, app, headers):
        self.app, self.headers = app, _encode(headers)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

# %% [markdown]
# The first line of the next cell puts back the list trap 1 had stuffed, so the app starts
# clean. Then three requests again, through `AddHeaders`:

# %%
HELLO_START["headers"] = [(b"content-type", b"text/plain; charset=utf-8")]  # undo trap 1
stack = AddHeaders(constant_hello, {"X-Content-Type-Options": "nosniff"})
[barelab.call_asgi(stack).header("x-content-type-options") for request in range(3)]

# %% [markdown]
# Once per response, however many requests. And the app's constant is still exactly what
# the app wrote, one field:

# %%
HELLO_START["headers"]

# %% [markdown]
# ## Wrapping `receive`: a body limit
#
# In chapter 12, `read_body` refused a body over its limit with a 413. That protects one
# app that remembers to use it. A middleware can protect every app behind it, including
# one that reads the body its own way, by wrapping `receive`: it counts the bytes of each
# `http.request` message as it passes, and stops the request once the count goes over.
#
# Two moments can refuse a body:
#
# - **Before reading anything**: when the request says `Content-Length: 5000000` and the
#   limit is 1 MiB, there is no need to read a byte of it.
# - **While reading**: a chunked upload has no `Content-Length`, and a client can lie, so
#   the count is what really matters. The message that takes the count over the limit is
#   never handed to the app.
#
# In the second case the app is in the middle of `await receive()`. The wrapped `receive`
# cannot answer the client itself; what it can do is raise. So it raises `BodyTooLarge`,
# the exception travels up through the app (which has no reason to catch it), and the
# middleware, waiting around the app, catches it and answers 413, provided the app had
# not started a response yet.
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant B as BodyLimit
#     participant A as app
#     A->>B: await receive()
#     B->>S: await receive()
#     S-->>B: http.request (400 bytes, more_body)
#     B-->>A: the same message (count: 400)
#     A->>B: await receive()
#     Note over B: … count passes the limit
#     B--xA: raise BodyTooLarge
#     Note over A: the exception leaves the app
#     B->>S: http.response.start 413, body
# ```
#
# First the exception, and a one-line way to send a short text refusal that the next
# layers reuse:

# %%
#| export
class BodyTooLarge(Exception):
    """The request body went over the limit of a BodyLimit middleware."""


async def _refuse(send, status: int, text: str, headers=()) -> None:
    await send_text(send, text + "\n", status, headers)

# %% [markdown]
# Then the first moment, the declared size. `_declared_length` reads `Content-Length` from
# the scope and returns `None` when it is missing or malformed:

# %%
#| export
def _declared_length(scope) -> int | None:
    value = header_value(scope["headers"], b"content-length")
    return int(value) if value is not None and value.isdigit() else None

# %%
[_declared_length(barelab.build_scope("http", "POST", "/", headers=sent))
 for sent in ({"content-length": "5000"}, {}, {"content-length": "-1"})]

# %% [markdown]
# A number, and `None` twice. Checking the header's syntax is the server's job (chapter 13
# answers 400 to a malformed one), and this layer only acts on a value that makes sense.
#
# The class. `__call__` tries the cheap refusal first; otherwise it calls the app with a
# counting `receive` and a watching `send` that share one small `state` dict, and turns a
# `BodyTooLarge` from inside into a 413. If the response had already started, a 413 can
# no longer be sent, so the exception goes on up to the server, which closes the
# connection:

# %%
#| export
class BodyLimit:
    """Answer 413 when the request body is over ``max_bytes``: at once if Content-Length
    says so, else as soon as the bytes counted in ``receive`` pass the limit."""

    def __init__(self, app, max_bytes: int = 1024 * 1024):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self.too_large(send)
        state = {"bytes": 0, "started": False}
        try:
            await self.app(scope, self._counting(receive, state), self._watching(send, state))
        except BodyTooLarge:
            if state["started"]:
                raise
            await self.too_large(send)

# %% [markdown]
# The refusal itself asks for `connection: close`: the client may still be sending the
# rest of its body, and the server should not try to read the next request out of it.

# %%
#| export
async def _too_large(self, send):
    await _refuse(send, 413, f"413 Content Too Large: the limit is {self.max_bytes} bytes",
                  [("connection", "close")])


BodyLimit.too_large = _too_large

# %% [markdown]
# Last, the two wrappers. `_counting` is the `receive` the app gets: it adds up the body
# bytes and raises once they pass the limit. `_watching` is the `send`, and only notes that
# a response has started. (Defining methods in their own cell and attaching them to the
# class keeps each cell short; the class behaves exactly as if they had been written
# inside it.)

# %%
#| export
def _counting(self, receive, state):
    async def counting_receive():
        if state["bytes"] > self.max_bytes:   # the app caught BodyTooLarge and asked again
            raise BodyTooLarge(f"the body is over {self.max_bytes} bytes")
        message = await receive()
        if message["type"] == "http.request":
            state["bytes"] += len(message.get("body", b""))
            if state["bytes"] > self.max_bytes:
                raise BodyTooLarge(f"the body is over {self.max_bytes} bytes")
        return message
    return counting_receive


def _watching(self, send, state):
    async def watching_send(message):
        state["started"] = state["started"] or message["type"] == "http.response.start"
        await send(message)
    return watching_send


BodyLimit._counting, BodyLimit._watching = _counting, _watching

# %% [markdown]
# The first line of `counting_receive` is for an app that catches `BodyTooLarge` and
# calls `receive()` again: it gets the exception again, never the next chunk.
#
# An app to protect: it reads the whole body its own way, with no limit of its own, and
# says how much it got.

# %%
async def upload(scope, receive, send):
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    await send_text(send, f"stored {size} bytes\n")

# %% [markdown]
# Send it a body in three chunks of 400 bytes, with a limit of 1000 and no
# `Content-Length`, the way a chunked upload arrives. `receive_events` hands `call_asgi`
# the exact messages to deliver, with no `content-length` in the scope. `partial` fills in
# the limit, so that `before_after` gets a layer that takes only the app:

# %%
chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": more}
          for more in (True, True, False)]
before_after(upload, partial(BodyLimit, max_bytes=1000), method="POST", receive_events=chunks)

# %% [markdown]
# The app's side shows two `http.request` messages, 800 bytes: the third would have taken
# the count to 1200, so the app never got it. Its `receive()` raised instead, the app
# ended, and the server's side shows the 413 that `BodyLimit` sent in its place. The
# server's side also lists all three `http.request` messages, because the middleware did
# read the third one from the server before refusing it.
#
# When the request announces its size, nothing needs to be read at all:

# %%
before_after(upload, partial(BodyLimit, max_bytes=1000), method="POST",
             headers={"content-length": "5000"}, body=b"x" * 5000)

# %% [markdown]
# The app was never called, and the server's side has no `→ app` line at all: `BodyLimit`
# answered from the scope alone, without calling `receive` once. The 5,000 bytes are still
# on their way, which is why the 413 says `connection: close`.
#
# Now over a real socket, with a small limit so the bytes fit on the screen: a chunked
# upload of three 8-byte chunks, to a server that takes at most 16 bytes:

# %%
limited = barelab.serve(BodyLimit(upload, max_bytes=16), name="limited")
CHUNKED_UPLOAD = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"8\r\nchunk-01\r\n8\r\nchunk-02\r\n8\r\nchunk-03\r\n0\r\n\r\n")
barelab.raw_exchange(limited, CHUNKED_UPLOAD)

# %% [markdown]
# A 413 with the reason, and the server closed the connection, as asked. The status line
# says "Content Too Large", RFC 9110 §15.5.14's name for it; older servers still write
# "Request Entity Too Large", and clients read the number, not the words. One more check:
# a body right at the limit still gets through to the app.

# %%
barelab.http_request(limited, "POST", "/upload", body=b"x" * 16).text

# %% [markdown]
# ## Timing: to the headers, and to the last byte
#
# Chapter 07 found that a timing **header** can only measure the time until the headers
# were sent, because it travels in them. ASGI makes the difference easy to see, since the
# start of the response and the end of its body are separate messages:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant T as timing layers
#     participant A as app (streaming)
#     S->>T: app(scope, receive, send)
#     T->>A: app(scope, receive, timed_send)
#     A->>T: http.response.start
#     Note over T: clock read: Server-Timing header added
#     T->>S: http.response.start + server-timing
#     A->>S: http.response.body, more_body=True (…0.5 s of chunks…)
#     A->>T: http.response.body, more_body=False
#     T->>S: the last body message
#     Note over T: clock read: the access-log line
# ```
#
# `ServerTiming` writes the W3C `Server-Timing` header, `app;dur=12.3` (a metric name and
# milliseconds), which browsers show in their network panel. The metric name is an HTTP
# *token*: letters, digits and a few symbols, no spaces, no `;` or `,`. A name that breaks
# that would break the header, so the layer checks it once, when it is built. The token
# pattern comes straight from the RFC's grammar, and `GZip` reuses it later:

# %%
#| export
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")   # RFC 9110 §5.6.2

# %%
{name: bool(_TOKEN.fullmatch(name)) for name in (b"app", b"db-query", b"my app", b"app;x")}

# %% [markdown]
# The class reads the clock when it is called, and again when the start message passes
# through its `send`. `Server-Timing` is a list, so the layer **adds** a field and keeps
# any metric the app reported itself:

# %%
#| export
class ServerTiming:
    """Add ``Server-Timing: <metric>;dur=<ms>``: the time until the app started its response."""

    def __init__(self, app, metric: str = "app"):
        if not _TOKEN.fullmatch(metric.encode("latin-1")):
            raise ValueError(f"a Server-Timing metric name is a token, not {metric!r}")
        self.app, self.metric = app, metric

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                timing = (b"server-timing", f"{self.metric};dur={ms:.1f}".encode())
                message = {**message, "headers": [*message.get("headers", []), timing]}
            await send(message)

        await self.app(scope, receive, timed_send)

# %% [markdown]
# Break the name rule on purpose, with a metric name that reads well to a person and not
# to a parser:

# %%
try:
    ServerTiming(hello, metric="time to first byte")
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# The mistake shows up when the stack is built, not as a garbled header in some browser's
# network panel weeks later. You will see the real header on a streaming app in a moment.
#
# `AccessLog` writes a log line when the response is over: after the message with
# `more_body: False` has gone to the server, or when the app ends without one (it crashed,
# or the client left). Its records are chapter 07's `RequestRecord`, so WSGI and ASGI logs
# look the same. It counts the body bytes that left it, and it reads the request ID from
# the response header, for a reason the next section explains.

# %%
#| export
class AccessLog:
    """One RequestRecord per HTTP request, written when the response is complete."""

    def __init__(self, app, records=None, id_header: bytes = b"x-request-id"):
        self.app, self.id_header = app, id_header
        self.records = records if records is not None else []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        entry = {"status": None, "bytes": 0, "id": None, "done": False,
                 "started": time.perf_counter()}
        try:
            await self.app(scope, receive, self._logging(send, scope, entry))
        except BaseException as exc:
            self._write(scope, entry, error=type(exc).__name__)
            raise
        self._write(scope, entry)

# %% [markdown]
# The `try` around the app is there for the crash case: the line is still written, with the
# exception's name in it, and the exception goes on to the server. `except BaseException`
# also catches `asyncio.CancelledError`, which is what the app's task gets when the server
# cancels it (at shutdown, say), so that case is logged too.
#
# `_logging` is the wrapped `send`: it notes the status and the ID from the start message,
# adds up the body bytes, and writes the line right after the last body message went out,
# *after* `await send(message)` returned, so the time includes handing over the last byte:

# %%
#| export
def _logging(self, send, scope, entry):
    async def logging_send(message):
        if message["type"] == "http.response.start":
            entry["status"] = message["status"]
            found = header_value(message.get("headers", []), self.id_header)
            entry["id"] = found.decode("latin-1") if found else None
        await send(message)
        if message["type"] == "http.response.body":
            entry["bytes"] += len(message.get("body", b""))
            if not message.get("more_body", False):
                self._write(scope, entry)
    return logging_send


AccessLog._logging = _logging

# %% [markdown]
# `_write` turns the notes into a `RequestRecord`. It writes at most one line per request:
# the `done` flag makes the second call, the one in `__call__` after the app returned,
# do nothing when `_logging` already wrote the line.

# %%
#| export
def _write(self, scope, entry, error=None):
    if not entry["done"]:
        entry["done"] = True
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"] + ("?" + query if query else "")
        self.records.append(RequestRecord(scope["method"], path, entry["status"],
                                          entry["bytes"], time.perf_counter() - entry["started"],
                                          entry["id"], error))


AccessLog._write = _write

# %% [markdown]
# A streaming app to time: three ticks, a quarter of a second apart. The `sleep` stands in
# for whatever a real stream waits on (a database cursor, a message queue), and
# `more_body: True` on the first two body messages tells the server more is coming. It
# comes back in the gzip section, where streaming is the whole point.

# %%
import asyncio

async def ticker(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    for n in (1, 2, 3):
        if n > 1:
            await asyncio.sleep(0.25)
        await send({"type": "http.response.body", "body": f"tick {n}\n".encode(),
                    "more_body": n < 3})

# %% [markdown]
# Both layers around it, then both clocks side by side:

# %%
records = []
call = barelab.call_asgi(AccessLog(ServerTiming(ticker), records))
metric, duration = call.header("server-timing").split(";dur=")
print(f"Server-Timing: {metric} {float(duration):.1f} ms  (time to headers)")
print(f"access log:    {records[-1]}  (time to the last byte)")

# %% [markdown]
# A fraction of a millisecond against about 500 ms. (Durations are masked in the stored
# notebook; run the cell to see yours.) The log line reads method, path, status, body
# bytes (three ticks of 7 bytes), time, and the request ID, which is `None` here because
# nothing set one yet. Both durations are right, and they answer different
# questions: `Server-Timing` says how long the client waited for the response to **begin**,
# the log line how long the whole exchange took. For a streaming response the gap is the
# whole stream; for an app that builds its answer and sends it in one message the two are
# nearly the same. Only the log line can know the total, because it is written after the
# last byte, when no header can carry anything any more.

# %% [markdown]
# ## Request IDs, in `scope["state"]`
#
# `RequestID` works like chapter 07's: it keeps a sane incoming `x-request-id` (letters,
# digits, `.`, `_`, `-`, at most 128) or makes one with `uuid4().hex`, hands it to the app,
# and sends it back in a response header. Where to hand it to the app is the new question.
#
# The ASGI lifespan spec gives every request a `scope["state"]`: a shallow copy of the
# state the app set up at startup (chapter 14). Starlette's `request.state` reads and
# writes that same dict, so a value put there is where framework code looks for
# per-request values. Following rule 4, `RequestID` does not write into the scope it was
# given: it passes the app a **new** scope with a **new** state dict, holding everything
# the old one held plus `request_id`. The layers outside never see the change, which is
# why `AccessLog` above reads the ID from the response header instead: what the client got
# is what gets logged.
#
# `with_state` makes that copy. Two copies, in fact: `{**scope, ...}` copies the scope,
# and `{**scope.get("state", {}), ...}` copies the state inside it. Copying only the outer
# dict would still share the inner one, and a write to it would leak outwards just the
# same:

# %%
#| export
def with_state(scope, **values) -> dict:
    """A copy of ``scope`` whose "state" is a copy of the old one, plus ``values``."""
    return {**scope, "state": {**scope.get("state", {}), **values}}

# %%
before = {"type": "http", "state": {"db": "pool"}}
after = with_state(before, request_id="abc")
before, after

# %% [markdown]
# `after` has both values, `before` has only the one it started with. `RequestID` uses
# it with an ID that is either the client's, if it matches `_REQUEST_ID`, or fresh. The
# pattern is strict for a reason: the ID goes back out in a response header and into log
# lines, so a client must not be able to put a line break or a quote in it.

# %%
#| export
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


class RequestID:
    """Give every HTTP request and WebSocket an ID: a sane incoming one or uuid4().hex;
    in scope["state"]["request_id"] and in a response header."""

    def __init__(self, app, header: bytes = b"x-request-id", trust_incoming: bool = True):
        self.app, self.header, self.trust_incoming = app, header.lower(), trust_incoming

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        incoming = header_value(scope["headers"], self.header) or b""
        valid = self.trust_incoming and _REQUEST_ID.fullmatch(incoming)
        request_id = incoming.decode() if valid else uuid.uuid4().hex
        await self.app(with_state(scope, request_id=request_id), receive,
                       self._send_id(send, request_id.encode()))

# %% [markdown]
# The ID goes out on every message that carries response headers: an HTTP response start,
# a WebSocket `accept` (which may carry headers for the 101 response), and the start of a
# WebSocket denial response, which you meet in the auth section. Any ID the app set is
# replaced, so the response never carries two.

# %%
#| export
_HEADED = ("http.response.start", "websocket.accept", "websocket.http.response.start")


def _send_id(self, send, request_id: bytes):
    async def send_with_id(message):
        if message["type"] in _HEADED:
            headers = [*without(message.get("headers", []), self.header),
                       (self.header, request_id)]
            message = {**message, "headers": headers}
        await send(message)
    return send_with_id


RequestID._send_id = _send_id

# %% [markdown]
# An app that shows what it got, and three requests: no ID, a good one, and one trying to
# smuggle a second header into the response through the ID:

# %%
async def show_id(scope, receive, send):
    await send_text(send, f"app sees {scope['state']['request_id']}")

for sent in ({}, {"x-request-id": "checkout-7f3a"}, {"x-request-id": "x\r\nset-cookie: a=1"}):
    call = barelab.call_asgi(RequestID(show_id), headers=sent)
    print(f"{call.header('x-request-id'):32} | {call.text}")

# %% [markdown]
# The first and third got fresh IDs (32 hex digits, masked as `REQUEST-ID` in the stored
# notebook), the second kept its own, and the app and the response agree each time. The
# third one's `\r\n` failed the pattern, so the would-be `set-cookie` never got near a
# header: the client simply got a fresh ID.
#
# Rule 4 says the scope `RequestID` was called with must be unchanged afterwards. To check
# that, the next cell calls the middleware directly with top-level `await` (notebooks
# allow it), a `receive` that is never used, and a `send` that throws the messages away,
# then looks at the scope it passed in:

# %%
outer_scope = barelab.build_scope("http", "GET", "/")
outer_scope["state"] = {"db": "the pool from startup"}
await RequestID(show_id)(outer_scope, lambda: None, lambda message: asyncio.sleep(0))
outer_scope["state"]

# %% [markdown]
# The state from startup is still there, and no `request_id` leaked into it: the app got
# its ID in a copy.
#
# With `AccessLog` outside `RequestID`, the log line carries the ID the client got. That is
# the reason `AccessLog` reads the response header rather than the state: from outside,
# the header is the only place the ID can be seen.

# %%
records = []
barelab.call_asgi(AccessLog(RequestID(show_id), records), headers={"x-request-id": "abc-123"})
print(records[-1])

# %% [markdown]
# ## Lifespan passes through
#
# Every layer so far starts with `if scope["type"] != "http": return await self.app(...)`.
# That line matters more than it looks. At startup the server calls the app with a
# `lifespan` scope, which has no `headers`, no `path`, no `method`. Here is a layer that
# blocks a misbehaving bot. It reads the headers first and checks the type later, which
# works for every HTTP request you will ever test it with:

# %%
def reads_headers_first(app):
    async def middleware(scope, receive, send):
        agent = header_value(scope["headers"], b"user-agent")   # KeyError on lifespan
        if scope["type"] == "http" and agent == b"bad-bot":
            return await _refuse(send, 403, "403 Forbidden")
        await app(scope, receive, send)
    return middleware

# %% [markdown]
# Put it around an app that opens a "database" at startup and uses it in every request.
# As in chapter 14, the app answers the two lifespan events and puts the connection in
# `scope["state"]`, which the server then copies into every request's scope:

# %%
async def needs_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()                                    # lifespan.startup
        scope["state"]["db"] = "connected"
        await send({"type": "lifespan.startup.complete"})
        await receive()                                    # lifespan.shutdown
        return await send({"type": "lifespan.shutdown.complete"})
    await send_text(send, f"db: {scope['state'].get('db', 'MISSING')}\n")

# %% [markdown]
# Serve the two together and make one ordinary request:

# %%
broken = barelab.serve(reads_headers_first(needs_startup), name="lifespan-demo")
barelab.http_request(broken, "GET", "/").text

# %% [markdown]
# `db: MISSING`. The request got a 200, no traceback appeared anywhere, and the app's
# startup never ran. The server's log tells what happened:

# %%
broken.log

# %% [markdown]
# The ASGI lifespan spec lets an app that does not support lifespan raise an exception on
# that scope, and servers take any exception as "no lifespan here" and go on without it.
# So the middleware's `KeyError` switched off the app's startup, silently: one info line
# in a log, and a bug report weeks later about a database that "is not connected".
#
# The layers in this chapter pass `lifespan` through. `call_lifespan` plays the server's
# side of startup and shutdown; here it drives the same app behind five of them, with a
# `SpecCheck` between each two:

# %%
layered = compose(needs_startup, AccessLog, RequestID, ServerTiming,
                  partial(AddHeaders, headers={"x-frame-options": "DENY"}), BodyLimit,
                  between=SpecCheck)
barelab.call_lifespan(layered)

# %% [markdown]
# Both events reached the app and both were answered: the five layers, and the six
# checkers between them, stepped aside. That one `if` line at the top of each `__call__`
# is what keeps startup working.

# %% [markdown]
# ## Auth that covers WebSockets
#
# Chapter 07's `BasicAuth` guarded every request, because in WSGI every request is HTTP. An
# ASGI app also gets `websocket` scopes, and a WebSocket connection starts as an HTTP
# request (the handshake) that ends in `101 Switching Protocols`. An auth layer that only
# thinks of HTTP has a hole exactly the size of your WebSocket API.
#
# The tokens here are bearer tokens: `Authorization: Bearer <token>` (RFC 6750 §2.1). A
# browser's `WebSocket` API cannot set request headers, so browser code has two other
# places to put a token: the query string (`/ws?token=...`) or a cookie. The layer looks in
# all three, in that order.
#
# Comparing a token with `==` stops at the first byte that differs, so a guess that gets
# more bytes right takes a little longer to reject, and an attacker who can time many
# guesses learns the token byte by byte. The layer hashes both sides with SHA-256 and
# compares the digests with `hmac.compare_digest`, which takes the same time whatever
# the bytes are:

# %%
#| export
def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

# %%
[hmac.compare_digest(_digest("s3cret"), _digest(guess)) for guess in ("s3cret", "s3crex")]

# %% [markdown]
# Hashing first also means the two sides always have the same length (32 bytes), so the
# comparison does not even reveal how long the real token is.
#
# Cookies come in one `Cookie` header as `name=value` pairs separated by `; `
# (RFC 6265 §5.4). `_cookies` splits them, skipping anything without an `=`:

# %%
#| export
def _cookies(scope):
    """(name, value) for every cookie in the request's Cookie fields (RFC 6265 §5.4)."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, sep, val = pair.strip().partition("=")
                if sep:
                    yield key.strip(), val.strip()

# %%
list(_cookies(barelab.build_scope("http", headers={"cookie": "theme=dark; token=abc; junk"})))

# %% [markdown]
# `tokens_in(scope)` lists every candidate token a request carries, from the header, the
# query string and the cookies, in that order. The scheme word `Bearer` may come in any
# case (RFC 9110 §11.1), so `bearer` and `BEARER` count too:

# %%
#| export
def tokens_in(scope, query_param: str = "token", cookie: str = "token") -> list[str]:
    """Bearer tokens a request carries: Authorization header, then query, then cookie."""
    found = []
    authorization = header_value(scope["headers"], b"authorization") or b""
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip(" "):   # RFC 9110 §11.1: any case
        found.append(credentials.strip(" "))
    query = scope.get("query_string", b"").decode("latin-1")
    found += [value for key, value in parse_qsl(query) if key == query_param and value]
    found += [value for key, value in _cookies(scope) if key == cookie and value]
    return found

# %%
tokens_in(barelab.build_scope("websocket", path="/ws?token=s3cret",
                              headers={"cookie": "theme=dark; token=from-cookie"}))

# %% [markdown]
# A WebSocket handshake with a token in the query and another in a cookie: both are
# candidates, the query's first, and the `theme` cookie is ignored. The layer lets the
# request in if *any* candidate is a known token, so a stale cookie does not lock out a
# client that also sends a fresh header.
#
# Query strings end up in access logs and browser history, so a token there should be
# short-lived; a cookie is sent by the browser on its own, so a cookie-authenticated
# WebSocket also needs an `Origin` check (exercise 2), or any page the user visits can
# open one in their name.
#
# ### Trap 2: auth that only knows HTTP
#
# Here is the layer as it is usually first written. It refuses HTTP requests without a good
# token and passes everything else on, reasoning that "everything else" is lifespan. It
# even follows the pass-through rule from the lifespan section:

# %%
def http_only_auth(app, token="s3cret"):
    async def middleware(scope, receive, send):
        if scope["type"] == "http" and token not in tokens_in(scope):
            return await _refuse(send, 401, "401 Unauthorized")
        await app(scope, receive, send)
    return middleware

# %% [markdown]
# The app behind it has a private page and a private WebSocket. The WebSocket half answers
# `websocket.connect` with `websocket.accept`, sends one greeting (with the user's name,
# if a layer put one in the state) and closes:

# %%
async def private(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()                                  # websocket.connect
        await send({"type": "websocket.accept"})
        user = scope.get("state", {}).get("user", "whoever you are")
        await send({"type": "websocket.send", "text": f"private channel open for {user}"})
        await send({"type": "websocket.close", "code": 1000})
    elif scope["type"] == "http":
        await send_text(send, "private page\n")

# %% [markdown]
# Served, the page is locked, as intended:

# %%
leaky = barelab.serve(http_only_auth(private), name="leaky")
barelab.http_request(leaky, "GET", "/").status

# %% [markdown]
# And the WebSocket, with no token at all:

# %%
with barelab.websocket_connect(leaky, "/ws") as ws:
    print(ws.receive())

# %% [markdown]
# Wide open. Nothing about this looks wrong in a test suite that only sends HTTP requests.
#
# ### Refusing a WebSocket handshake
#
# Refusing an HTTP request is a 401. Refusing a WebSocket handshake is a little different,
# because the response to the handshake is sent by the server when the app answers
# `websocket.connect`. The ASGI WebSocket spec gives the app two ways to say no:
#
# - send `websocket.close` **before** `websocket.accept`: the server then answers the
#   handshake with `403 Forbidden` and never opens the WebSocket (ASGI WebSocket spec,
#   "Close - send event");
# - if the server lists `websocket.http.response` in `scope["extensions"]`, send any HTTP
#   response instead, with `websocket.http.response.start` and
#   `websocket.http.response.body` (the "WebSocket Denial Response" extension). That can be
#   a 401 with a `WWW-Authenticate` challenge, like the HTTP refusal.
#
# `deny_websocket` uses the extension when the server offers it and the close otherwise.
# Both are answers to `websocket.connect`, so it receives that message first:

# %%
#| export
async def deny_websocket(scope, receive, send, status: int, text: str, headers=()) -> None:
    """Refuse a WebSocket handshake: an HTTP response if the server offers the denial
    extension, else websocket.close before accept (which the server turns into a 403)."""
    if (await receive())["type"] != "websocket.connect":
        return                                       # the client already left
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = (text + "\n").encode("utf-8")
        fields = _encode([("content-type", "text/plain; charset=utf-8"),
                          ("content-length", str(len(body))), *headers])
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": fields})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})   # RFC 6455 §7.4.1: policy

# %% [markdown]
# The close code 1008 ("policy violation") never reaches a client, since no WebSocket was
# opened; it is there for the server's log.
#
# ### `TokenAuth`
#
# Now the layer. Its settings are a dict from token to user name. It keeps only the
# digests of the tokens, and `user(scope)` looks for the user a request's tokens belong
# to. Notice that the inner loop does not stop at the first match: every check compares
# against every known token, so the time taken is the same for a right and a wrong guess.

# %%
#| export
class TokenAuth:
    """Let through HTTP requests and WebSocket handshakes carrying a known bearer token (in
    the Authorization header, the query or a cookie); refuse the rest with 401."""

    def __init__(self, app, tokens: dict, *, realm: str = "api", query_param: str = "token",
                 cookie: str = "token"):
        self.app, self.query_param, self.cookie = app, query_param, cookie
        self.known = [(_digest(token), user) for token, user in tokens.items()]
        self.challenge = ("www-authenticate", f'Bearer realm="{realm}"')   # RFC 6750 §3

    def user(self, scope) -> str | None:
        """The user whose token this request carries, or None."""
        found = None
        for token in tokens_in(scope, self.query_param, self.cookie):
            given = _digest(token)
            for digest, user in self.known:                  # look at all: same time for all
                if hmac.compare_digest(given, digest) and found is None:
                    found = user
        return found

# %%
TokenAuth(hello, {"s3cret": "ada"}).user(barelab.build_scope("http", path="/?token=s3cret"))

# %% [markdown]
# `__call__` is the decision, and this is where trap 2 is closed: the check covers `http`
# **and** `websocket` scopes, and only what is left (lifespan) passes unchecked. A known
# user goes on to the app in a copy of the scope with `user` in its state, as `RequestID`
# does with the ID; anyone else gets a 401 over HTTP, or a refused handshake. The method
# is attached after the class, as with `BodyLimit`; Python finds `__call__` on the class,
# so that works for special methods too.

# %%
#| export
async def _token_auth_call(self, scope, receive, send):
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    user = self.user(scope)
    if user is not None:
        return await self.app(with_state(scope, user=user), receive, send)
    reason = "401 Unauthorized: send a bearer token"
    if scope["type"] == "http":
        await _refuse(send, 401, reason, [self.challenge])
    else:
        await deny_websocket(scope, receive, send, 401, reason, [self.challenge])


TokenAuth.__call__ = _token_auth_call

# %% [markdown]
# In-process first. `call_asgi` builds a WebSocket scope without extensions, like a server
# that does not offer the denial response, so the refusal is a close before accept:

# %%
guarded = TokenAuth(private, {"s3cret": "ada"})
barelab.call_asgi(guarded, "GET", "/ws", scope={"type": "websocket"})

# %% [markdown]
# `private` never ran. The `→ app` line is `TokenAuth` reading `websocket.connect`, and
# the `app →` line is its `websocket.close` (to `call_asgi`, the whole stack is the app).
# A server turns that into a 403 for the client. With the extension in the scope, the
# answer is a real 401 instead, with the `www-authenticate` challenge in its headers:

# %%
barelab.call_asgi(guarded, "GET", "/ws", scope={"type": "websocket",
                                                 "extensions": {"websocket.http.response": {}}})

# %% [markdown]
# Over the socket, on barelab's server, which offers the extension. Without a token the
# handshake gets a 401 and its challenge:

# %%
locked = barelab.serve(guarded, name="locked")
try:
    barelab.websocket_connect(locked, "/ws")
except barelab.WebSocketRejected as refusal:
    print(refusal.status, dict(refusal.headers)["www-authenticate"], refusal.body)

# %% [markdown]
# With the token in the query string, as browser code would send it, the WebSocket opens
# and the app knows who is on the other end:

# %%
with barelab.websocket_connect(locked, "/ws?token=s3cret") as ws:
    print(ws.receive())

# %% [markdown]
# And plain HTTP, through the same layer, with the token in the header and without:

# %%
[barelab.http_request(locked, "GET", "/", headers=h).status_line
 for h in ({"Authorization": "Bearer s3cret"}, {})]

# %% [markdown]
# ## gzip that streams
#
# Text compresses well: HTML, JSON and CSS often shrink to a fifth of their size. A gzip
# middleware compresses the response for clients that asked for it. It is the layer with
# the most ways to go wrong, because it changes the body, the headers that describe the
# body, and what a cache may do with the response. This section shows four of those ways
# failing, one at a time, then builds `GZip`.
#
# ### gzip, one piece at a time
#
# `gzip.compress(data)` needs all the data at once. A streaming response does not have it.
# `zlib.compressobj` compresses piece by piece: `wbits=31` asks for the gzip format (a
# header, deflate data, a CRC trailer, RFC 1952), `compress(chunk)` takes a piece, and
# `flush()` ends the stream. The catch: `compress()` keeps data back to compress it better
# later, and may return nothing at all:

# %%
import zlib

compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
[compressor.compress(b"tick 1\n"), compressor.compress(b"tick 2\n")]

# %% [markdown]
# Ten bytes of gzip header, then nothing: both ticks are still inside the compressor. A
# middleware that sent what `compress()` returned would send nothing until the end.
# `flush(zlib.Z_SYNC_FLUSH)` pushes out everything given so far, ending on a byte
# boundary, without ending the stream. After each flush, all the bytes produced so far
# decompress to all the text given so far. Watch a decompressor on the client side take
# the pieces one by one:

# %%
compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
client = zlib.decompressobj(wbits=31)
for n in (1, 2, 3):
    piece = compressor.compress(f"tick {n}\n".encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    print(f"{len(piece):2} bytes on the wire -> client reads {client.decompress(piece)!r}")
tail = compressor.flush()
print(f"{len(tail):2} bytes to end the stream -> {client.decompress(tail)!r}, "
      f"complete: {client.eof}")

# %% [markdown]
# Each tick was readable the moment its piece arrived. The first piece is bigger because
# it carries the 10-byte gzip header too. The final `flush()` sent 10 more bytes: an empty
# last deflate block (2 bytes) that says "no more data", and the 8-byte trailer, a CRC-32
# checksum and the length of the text (RFC 1952 §2.3.1). Only then does the client know
# the stream is complete (`eof` is `True`). Each sync flush also costs a few bytes, so
# many tiny chunks compress worse than one big one; that is the price of streaming.
#
# ### Trap 3: a gzip layer that buffers
#
# The simplest gzip middleware collects the body, compresses it with `gzip.compress`, and
# sends it. To see what that does to a stream, you need to watch the socket, with a clock.
# Three small helpers do that; they are test tools, not part of the module.
#
# `read_timed` sends a GET over a fresh connection and notes when each piece of the
# response arrived, as `(seconds, bytes)` pairs, until the server closes:

# %%
import socket

def read_timed(server, path="/", headers={}):
    """GET ``path``; return (seconds after sending, bytes) for each read from the socket."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n"
    reads = []
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.perf_counter()
        sock.sendall(request.encode())
        while data := sock.recv(65536):
            reads.append((time.perf_counter() - start, data))
    return reads

# %% [markdown]
# Raw bytes are not what a user sees. `readable_text` decodes the bytes received so far
# the way a client does: first the chunked framing, with chapter 02's `ChunkedDecoder`,
# then gzip, if the response is compressed, with a fresh decompressor that returns as much
# text as the bytes allow. It answers "if the client stopped reading now, what text would
# it have?":

# %%
from barelab.built.http_wire import ChunkedDecoder

def readable_text(received):
    """The body text a client can read from the response bytes received so far."""
    head, found, body = received.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        decoder = ChunkedDecoder()
        decoder.advance(body)                   # takes every complete chunk there is
        body = decoder.body
    if b"content-encoding: gzip" in head.lower():
        body = zlib.decompressobj(wbits=31).decompress(body)   # as much as there is
    return body if found else b""

# %% [markdown]
# `when_readable` runs it after every read and notes when each `tick N` first showed up.
# That is the moment a user would have seen it:

# %%
def when_readable(reads):
    """Seconds after the request at which each 'tick N' became readable."""
    received, times = b"", {}
    for seconds, data in reads:
        received += data
        for tick in re.findall(rb"tick \d", readable_text(received)):
            times.setdefault(tick.decode(), seconds)
    return times

# %% [markdown]
# A small printer turns the times into a verdict, as in chapter 07: if the first and last
# tick arrived more than 0.3 s apart, the stream streamed.

# %%
def show_arrivals(times):
    for tick, seconds in times.items():
        print(f"{tick} readable after {seconds:.2f} s")
    spread = max(times.values()) - min(times.values())
    print("verdict:", "one by one, as sent" if spread > 0.3 else "all at once, at the end")

# %% [markdown]
# First the baseline: the ticker with no middleware at all, over a real socket. The
# client says it accepts gzip, but nothing here compresses, so that changes nothing yet:

# %%
ticks = barelab.serve(ticker, name="ticks")
show_arrivals(when_readable(read_timed(ticks, headers={"Accept-Encoding": "gzip"})))

# %% [markdown]
# One tick every quarter of a second, as the app sent them. Now the buffering gzip layer.
# Its `collect` is a `send` that keeps every message in `held` and sends nothing, until
# the last body message arrives; then it joins all the bodies, compresses them in one go,
# and sends a new start and one body:

# %%
import gzip

def buffering_gzip(app):
    async def middleware(scope, receive, send):
        held = []
        async def collect(message):
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                body = gzip.compress(b"".join(m.get("body", b"") for m in held[1:]), mtime=0)
                headers = [*without(held[0]["headers"], b"content-length"),
                           (b"content-encoding", b"gzip")]
                await send({**held[0], "headers": headers})
                await send({"type": "http.response.body", "body": body})
        await app(scope, receive, collect)
    return middleware

# %% [markdown]
# Serving it under the same name replaces the baseline server on the same port. The same
# client, the same request:

# %%
ticks = barelab.serve(buffering_gzip(ticker), name="ticks")
show_arrivals(when_readable(read_timed(ticks, headers={"Accept-Encoding": "gzip"})))

# %% [markdown]
# Everything at the end. For a live feed or server-sent events, that means nothing arrives
# until the stream ends, which may be never; and the whole body sits in the server's memory
# meanwhile. (It also compresses for every client, asked or not, and leaves out `Vary`;
# the next traps are about exactly those.)
#
# ### Trap 4: "gzip" in the header is not "gzip is acceptable"
#
# Starlette's `GZipMiddleware`, among many others, decides with
# `"gzip" in accept_encoding`. RFC 9110 §12.5.3 defines the header as a list of codings,
# each with an optional weight `q` between 0 and 1, and a weight of 0 means "not
# acceptable" (§12.4.2). A client that sends `gzip;q=0` is saying "anything but gzip".
# The other rules that matter:
#
# - codings are case-insensitive (§8.4.1), and so is the `q` (§12.4.2); spaces and tabs may
#   surround the `;` and the `,` (§5.6);
# - `*` matches every coding not listed by name, so `*;q=0` refuses everything not listed;
# - `identity` means "no coding"; `x-gzip` is an old name for `gzip` (§8.4.1.3);
# - an empty value means "no coding, please"; a missing header means no preference. Servers
#   in practice (nginx, Apache) compress only when asked, and so does this chapter.
#
# Here are fifteen values a client might send, some common and some odd, and the ones the
# naive test takes as "gzip is fine":

# %%
ACCEPT_ENCODINGS = ["gzip", "GZIP", "gzip, deflate, br", "gzip;q=0", "gzip; q=0.000",
                    "br;q=1, gzip;Q=0", "*", "*;q=0", "identity", "br, *;q=0.5",
                    "x-gzip", "gzip;q=0.5", "", "gzip;q=2", "deflate, gzip;q=0, *"]
naive = {value: "gzip" in value for value in ACCEPT_ENCODINGS}
[value for value in ACCEPT_ENCODINGS if naive[value]]

# %% [markdown]
# `gzip;q=0`, `gzip; q=0.000`, `br;q=1, gzip;Q=0` and `deflate, gzip;q=0, *` all say "no",
# and the naive test hears "yes". It also misses `GZIP`, `*` and `br, *;q=0.5`, which do
# say "yes", and it gets `x-gzip` right only by luck, because the string `gzip` happens to be
# inside it. (And `gzip;q=2` is malformed: a weight is at most 1, with at most three
# decimals.)
#
# Doing it right takes a parser. Two pieces of the grammar first. A weight (a "qvalue")
# is `0` or `1` with up to three decimals, and never above 1; `_QVALUE` is that rule as a
# regular expression. `_ALIASES` maps the old `x-` names to the codings they stand for:

# %%
#| export
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")    # RFC 9110 §12.4.2
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}   # RFC 9110 §8.4.1

# %%
{q: bool(_QVALUE.fullmatch(q)) for q in ("0", "0.5", "1.000", "2", "0.0001", "1.5")}

# %% [markdown]
# The parser follows the grammar: split the list on commas, each member on semicolons,
# lowercase the coding, read the `q` parameter. A member whose weight is malformed is
# skipped, the way a malformed list member is ignored elsewhere in HTTP; if a coding is
# listed twice, the lower weight wins, so a `q=0` anywhere is never outvoted. It never
# raises, whatever the client sends: a header is input from strangers.

# %%
#| export
def parse_accept_encoding(value: str) -> dict[str, float]:
    """Coding -> weight for an Accept-Encoding value (RFC 9110 §12.5.3). Codings are
    lowercased; members with a malformed weight are skipped; a repeat keeps the lowest."""
    weights = {}
    for member in value.split(","):
        coding, *params = (part.strip(" \t") for part in member.split(";"))
        if not _TOKEN.fullmatch(coding.encode("latin-1", "replace")):
            continue                                    # empty list element or junk
        weight = 1.0
        for param in params:
            name, _, given = param.partition("=")
            if name.strip(" \t").lower() == "q":
                given = given.strip(" \t")
                weight = float(given) if _QVALUE.fullmatch(given) else None
        if weight is not None:
            coding = _ALIASES.get(coding.lower(), coding.lower())
            weights[coding] = min(weight, weights.get(coding, weight))
    return weights

# %%
parse_accept_encoding("br;q=1, GZIP ;Q=0.5,, *;q=0, x-gzip;q=0.8")

# %% [markdown]
# `GZIP ;Q=0.5` and `x-gzip;q=0.8` are the same coding, and the lower weight, 0.5, won;
# the empty member between the two commas was skipped, and `*;q=0` is kept as a weight
# like any other.
#
# Now the question the middleware asks: may this response be gzip-coded? Look for `gzip`
# by name first; if it is not listed, `*` speaks for it; if neither is there, the answer
# is no. A missing header (`None`) is different from an empty one, but both end in "no"
# here, for the reason given in the list above:

# %%
#| export
def accepts_gzip(value: str | None) -> bool:
    """Whether a client that sent this Accept-Encoding (None: no such header) takes gzip."""
    if value is None:
        return False                 # no preference stated: send identity, as servers do
    weights = parse_accept_encoding(value)
    weight = weights["gzip"] if "gzip" in weights else weights.get("*", 0.0)
    return weight > 0

# %%
barelab.show_transcript([(repr(value), naive[value], accepts_gzip(value))
                         for value in ACCEPT_ENCODINGS],
                        columns=("Accept-Encoding", "naive", "accepts_gzip"))

# %% [markdown]
# Every row where the two columns differ is a client the naive test gets wrong: six of
# fifteen. The rows where naive says `True` and `accepts_gzip` says `False` are the worst,
# the `q=0` rows above all: a client that cannot or will not decode gzip receives gzip.
# This is not a made-up mistake. Here is the Starlette installed next to this course, its
# `GZipMiddleware` around the ticker, asked by a client that refuses gzip:

# %%
from starlette.middleware.gzip import GZipMiddleware

call = barelab.call_asgi(GZipMiddleware(ticker), headers={"accept-encoding": "gzip;q=0"})
call.header("content-encoding"), call.body[:10]

# %% [markdown]
# gzip, magic number and all. When you read a framework's middleware, check this line
# first; `GZip` below gets it right.
#
# ### Trap 5: forgetting `Vary: Accept-Encoding`
#
# A response that depends on a request header must say so in `Vary` (RFC 9110 §12.5.5),
# or a cache between server and client, a CDN or a company proxy, will store it under the
# URL alone and hand it to everyone. To see the harm you need a cache, so here is a toy
# shared cache as a middleware: it stores complete GET responses by path, plus the values
# of the request headers the stored response's `Vary` names (RFC 9111 §4.1).
#
# `key(scope)` is the cache key: the path, plus the request's values of the headers the
# path is known to vary on. Until a response with `Vary` has been stored for the path, that
# list is empty and the key is the path alone, which is exactly how a real cache goes
# wrong when `Vary` is missing. A hit replays the stored messages; a miss calls the app:

# %%
class SharedCache:
    """A toy shared cache: GET responses stored by path and the request headers in Vary."""

    def __init__(self, app):
        self.app, self.vary, self.stored = app, {}, {}

    def key(self, scope):
        names = self.vary.get(scope["path"], ())
        return scope["path"], tuple(header_value(scope["headers"], name) for name in names)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        if (hit := self.stored.get(self.key(scope))) is not None:
            for message in hit:
                await send(message)
            return
        await self.app(scope, receive, self.keeping(scope, send))

# %% [markdown]
# `keeping` is the wrapped `send`: it passes every message on and keeps a copy, and when
# the response is complete it notes which headers the path varies on, then stores the
# response under the key for this request:

# %%
def keeping(self, scope, send):
    messages = []
    async def keep(message):
        messages.append(message)
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            vary = header_value(messages[0].get("headers", []), b"vary") or b""
            self.vary[scope["path"]] = [name.strip().lower() for name in vary.split(b",")
                                        if name.strip()]
            self.stored[self.key(scope)] = messages
    return keep

SharedCache.keeping = keeping

# %% [markdown]
# The app the cache will sit in front of: an HTML page big enough to be worth compressing,
# sent in one body message with no `content-length`:

# %%
PAGE = b"<p>" + b"All work and no play makes Jack a dull boy. " * 40 + b"</p>\n"

async def page(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": PAGE})

len(PAGE)

# %% [markdown]
# 1,768 bytes of very repetitive HTML; gzip will make short work of it.
#
# The next two traps compress bodies the right way, as you saw above: one compressor per
# response, a sync flush after every message but the last, a full `flush()` after the
# last. `body_compressor` packs that into a function that takes one `http.response.body`
# message and returns the compressed one, so the traps can focus on the headers:

# %%
def body_compressor():
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    def compress(message):
        more = message.get("more_body", False)
        body = compressor.compress(message.get("body", b""))
        body += compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
        return {**message, "body": body}
    return compress

gzip.decompress(body_compressor()({"type": "http.response.body", "body": b"round trip"})["body"])

# %% [markdown]
# One message with no `more_body` is a whole body: compressed and finished in one go, it is
# a complete gzip file, and `gzip.decompress` gets the text back.
#
# Here is a gzip layer that forgets `Vary`. It does everything else right: it streams, it
# drops `content-length`, and it honours `q=0` by passing such requests straight to the
# app. Look at the start message it builds: `content-encoding` is added, and nothing else.

# %%
def gzip_without_vary(app):
    async def middleware(scope, receive, send):
        value = header_value(scope["headers"], b"accept-encoding")
        if not accepts_gzip(value.decode("latin-1") if value is not None else None):
            return await app(scope, receive, send)
        compress = body_compressor()
        async def compressing_send(message):
            if message["type"] == "http.response.start":
                headers = [*without(message["headers"], b"content-length"),
                           (b"content-encoding", b"gzip")]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                message = compress(message)
            await send(message)
        await app(scope, receive, compressing_send)
    return middleware

# %% [markdown]
# The cache sits outside, where a CDN would be. A browser that takes gzip asks first; then
# a small script that sends no `Accept-Encoding` (Python's `urllib` does not) asks for the
# same page:

# %%
cached = SharedCache(gzip_without_vary(page))
browser = barelab.call_asgi(cached, headers={"accept-encoding": "gzip, br"})
script = barelab.call_asgi(cached)
for who, call in (("browser", browser), ("script", script)):
    print(f"{who:8} content-encoding={call.header('content-encoding')}  body={call.body[:12]}")

# %% [markdown]
# The browser's request was a miss: the layer compressed the page and the cache stored it
# under the key `/`, since the response named no header in `Vary`. The script's request
# had the same key, so it was a hit. The script never asked for gzip and got it anyway: binary bytes starting with
# gzip's magic number `1f 8b`, which it will print as garbage or fail to parse. The
# opposite order is just as bad: the cache fills with the plain page, and every browser
# after that gets it uncompressed. With `Vary: Accept-Encoding` on the response, the cache
# keeps one copy per `Accept-Encoding` value, and both clients get what they asked for.
#
# Note *which* responses need it: every response whose form **could** have depended on
# `Accept-Encoding`, also the ones sent uncompressed because the client did not ask. The
# plain page given to the script must say `Vary` too, or the cache stores it for everyone.
#
# ### Trap 6: a stale `Content-Length`
#
# Many apps know their body's length and say so: a file response reads the file size and
# sends the file in chunks. A gzip layer that compresses the chunks but forgets the
# `Content-Length` field promises the client the *uncompressed* size. `gzip_keeps_length`
# makes that mistake. (To stay short it also skips the `Accept-Encoding` check and `Vary`;
# only the length matters here.)
#
# First the app: `sized_file` plays a file response, a "file" of two copies of the page,
# sent in two chunks, with its length announced up front:

# %%
async def sized_file(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(PAGE) * 2).encode())]})
    for more in (True, False):                          # the "file", in two chunks
        await send({"type": "http.response.body", "body": PAGE, "more_body": more})

barelab.call_asgi(sized_file).header("content-length")

# %% [markdown]
# 3,536 bytes, true for the app's body. Now the layer: it adds `content-encoding: gzip` to
# the start message and compresses each body message, and never looks at
# `content-length`:

# %%
def gzip_keeps_length(app):
    async def middleware(scope, receive, send):
        compress = body_compressor()
        async def compressing_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"],
                                                  (b"content-encoding", b"gzip")]}
            elif message["type"] == "http.response.body":
                message = compress(message)
            await send(message)
        await app(scope, receive, compressing_send)
    return middleware

# %% [markdown]
# Over a socket, with `raw_exchange` waiting at most one second for more. The cell prints
# the response head, then how many body bytes came after it:

# %%
stale = barelab.serve(gzip_keeps_length(sized_file), name="stale")
exchange = barelab.raw_exchange(stale, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1.0)
head, _, body = exchange.received.partition(b"\r\n\r\n")
print(head.decode())
print(f"\nbody: {len(body)} bytes; {exchange.ending}")

# %% [markdown]
# The head still promises 3,536 bytes, and 81 arrived: the compressed two copies of the
# page. A client that trusts `Content-Length` (they all do: it is the only way to find the end
# of this body, RFC 9112 §6.3) waits for 3,536 bytes. barelab's server noticed the app had
# sent too little and closed the connection, so the client saw a truncated response and
# no hang. A server or proxy that does not check keeps the connection open, and the
# client waits until its own timeout, then reports an error for a response the server
# thought it had sent. curl's view:

# %%
# !curl -s -S -o /dev/null --compressed -m 5 {stale.url}

# %% [markdown]
# Error 18, "transfer closed with ... bytes remaining to read". The log has the server's
# side of the story:

# %%
print(stale.log.errors[-1].message)
print(stale.log.errors[-1].details.strip().splitlines()[-1])

# %% [markdown]
# The fix is in the next section: when the layer compresses a body that comes in several
# messages, it drops `Content-Length` (the server then frames the body with chunked
# transfer coding, chapter 13); when the whole body is in one message, it compresses it
# at once and sends the true length.
#
# ### The `GZip` middleware
#
# Putting the rules together. On the way **in**, `GZip` reads `Accept-Encoding`. On the
# way **out**, it holds back the `http.response.start` message, because it cannot decide
# yet: whether compressing is worth it depends on the body, and the body comes in the
# next message. Then it decides from the start message and the first body message:
#
# ```mermaid
# flowchart TD
#     START["http.response.start<br/>(held back)"] --> E{"204, 206, 304, 1xx?<br/>HEAD? content-encoding set?<br/>no-transform? not a text type?"}
#     E -- yes --> PASS["send as is"]
#     E -- no --> FIRST["first body message"]
#     FIRST --> SMALL{"whole body in it<br/>and under minimum_size?"}
#     SMALL -- yes --> PASS
#     SMALL -- no --> V["add Vary: Accept-Encoding"]
#     V --> ACC{"client accepts gzip?"}
#     ACC -- no --> IDENT["send uncompressed"]
#     ACC -- yes --> GZ["content-encoding: gzip<br/>drop content-length, accept-ranges<br/>weaken a strong ETag"]
#     GZ --> ONE{"more_body?"}
#     ONE -- no --> LEN["compress all, set the true content-length"]
#     ONE -- yes --> STREAM["compress + Z_SYNC_FLUSH per message"]
# ```
#
# Two details in the compressed branch: `accept-ranges` goes, since byte ranges of the
# uncompressed body mean nothing in the compressed one; and a strong `ETag` becomes weak
# (`W/"..."`), since RFC 9110 §8.8.1 ties a strong tag to the exact bytes, and these bytes
# differ.
#
# The first helper says which media types are worth compressing: text, JSON, XML,
# JavaScript, SVG. Never images, audio, video or archives: they are compressed already,
# and gzip would spend CPU to make them a little bigger. Parameters such as `charset` are
# cut off before the media type is looked at:

# %%
#| export
COMPRESSIBLE = {"application/json", "application/javascript", "application/xml",
                "application/x-ndjson", "image/svg+xml"}


def is_compressible(content_type: bytes | None) -> bool:
    """Whether a body of this Content-Type is worth gzip: text, JSON, XML, JS, SVG."""
    if not content_type:
        return False
    media = content_type.split(b";")[0].strip().lower().decode("latin-1")
    return media.startswith("text/") or media in COMPRESSIBLE or media.endswith(("+json", "+xml"))

# %%
[(t, is_compressible(t)) for t in (b"text/html; charset=utf-8", b"application/problem+json",
                                    b"image/png", b"image/svg+xml", None)]

# %% [markdown]
# `application/problem+json` counts through its `+json` suffix, so error bodies in the
# RFC 9457 format get compressed too; `None` (no `Content-Type` at all) does not, since
# nobody knows what the body is.
#
# The second helper adds a name to `Vary`. `Vary` is a list, and the app may have set it
# already (to `Origin`, say, for CORS), so `add_vary` merges the name into one field
# rather than adding a second `Vary`, and leaves `Vary: *` alone, since `*` already says
# "varies on everything":

# %%
#| export
def add_vary(headers, name: bytes) -> list:
    """``headers`` with ``name`` listed in one Vary field (unless it, or ``*``, already is)."""
    listed = [t.strip() for t in (header_value(headers, b"vary") or b"").split(b",") if t.strip()]
    if b"*" in listed or name.lower() in [t.lower() for t in listed]:
        return list(headers)
    return [*without(headers, b"vary"), (b"vary", b", ".join([*listed, name]))]

# %%
add_vary([(b"vary", b"Origin"), (b"content-type", b"text/html")], b"accept-encoding")

# %% [markdown]
# One `vary` field, now listing both names. Next, the check on the held start message:
# could this response be compressed at all, for *any* client? It looks at the response
# only. The request's `Accept-Encoding` comes in later, on purpose: `Vary` belongs on
# every response that *could* be compressed, so that decision must not depend on what
# this particular client asked for.

# %%
#| export
def _tokens(value: bytes | None) -> list[bytes]:
    return [t.strip().lower() for t in (value or b"").split(b",") if t.strip()]


def could_compress(start: dict, method: str, compressible=is_compressible) -> bool:
    """Whether this response may be gzip-coded at all, whoever asks (RFC 9110 §8.4,
    RFC 9111 §5.2.2.6): a body is coming, not yet coded, not no-transform, a text type."""
    headers = start.get("headers", [])
    return (method != "HEAD" and start["status"] >= 200
            and start["status"] not in (204, 206, 304)
            and header_value(headers, b"content-encoding") is None
            and b"no-transform" not in _tokens(header_value(headers, b"cache-control"))
            and compressible(header_value(headers, b"content-type")))

# %%
html_start = {"status": 200, "headers": [(b"content-type", b"text/html")]}
[could_compress(html_start, "GET"), could_compress(html_start, "HEAD"),
 could_compress({**html_start, "status": 304}, "GET")]

# %% [markdown]
# The same HTML response qualifies for a GET, not for a HEAD, and not as a 304. 206
# Partial Content is skipped because its body is a byte range of the uncompressed
# representation; HEAD, 204 and 304 because they have no body to compress. Now the class.
# `__call__` reads the request's `Accept-Encoding` once, then hands each response to a
# `_GzipResponse`, the object that holds the per-response state:

# %%
#| export
class GZip:
    """Compress responses with gzip for clients that accept it, chunk by chunk."""

    def __init__(self, app, minimum_size: int = 500, level: int = 6,
                 compressible=is_compressible):
        self.app, self.minimum_size, self.level = app, minimum_size, level
        self.compressible = compressible

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        value = header_value(scope["headers"], b"accept-encoding")
        accepted = accepts_gzip(value.decode("latin-1") if value is not None else None)
        response = _GzipResponse(self, send, scope["method"], accepted)
        await self.app(scope, receive, response.send)
        await response.release()

# %% [markdown]
# Why a separate object per response? The state (the held start, the decision, the
# compressor) belongs to one response, and one `GZip` instance serves many requests at
# once. Keeping that state on `self` of `GZip` would mix them up.
#
# `release` runs when the app returns. It matters for one case: an app that sent its start
# message and returned without a body would leave the start held back for ever, so
# `release` lets it go, and the server can report the app's mistake. If the app raises
# instead, `release` never runs and a held start is dropped: the server can still answer
# 500, since as far as it knows no response started.
#
# A `_GzipResponse` starts out undecided: no start held, no `mode`, no compressor.

# %%
#| export
class _GzipResponse:
    """One response passing through GZip: holds the start, then decides and compresses."""

    def __init__(self, settings: GZip, send, method: str, accepted: bool):
        self.settings, self.send_out, self.method, self.accepted = settings, send, method, accepted
        self.start, self.mode, self.compressor = None, None, None   # mode: identity/gzip

# %% [markdown]
# Its `send` is the wrapped `send` the app gets. Three cases, in order: a start message
# is held back if the response could be compressed, else it goes out and the mode is
# settled as `identity`; the first message after a held start triggers the decision; and
# once the mode is `gzip`, every later body message is compressed on its way out.

# %%
#| export
async def _gzip_send(self, message):
        if message["type"] == "http.response.start":
            if could_compress(message, self.method, self.settings.compressible):
                self.start = message                       # held until the first body
                return
            self.mode = "identity"
        elif self.mode is None and self.start is not None:
            if message["type"] != "http.response.body":    # e.g. trailers: no decision
                await self._send_start(self.start["headers"], "identity")
            else:
                message = await self._first_body(message)
        elif self.mode == "gzip" and message["type"] == "http.response.body":
            message = {**message, "body": self._compress(message)}
        await self.send_out(message)


_GzipResponse.send = _gzip_send

# %% [markdown]
# The decision on the first body message, as in the diagram. A response under
# `minimum_size` that is complete in one message goes out as it is, without `Vary`: its
# form did not depend on the request. Every other response that reaches this point gets
# `Vary`, whether the client accepted gzip or not:

# %%
#| export
async def _first_body(self, message) -> dict:
    body, more = message.get("body", b""), message.get("more_body", False)
    headers = self.start.get("headers", [])
    if not more and len(body) < self.settings.minimum_size:
        await self._send_start(headers, "identity")
        return message
    headers = add_vary(headers, b"accept-encoding")
    if not self.accepted:
        await self._send_start(headers, "identity")
        return message
    self.compressor = zlib.compressobj(self.settings.level, zlib.DEFLATED, 31)
    body = self._compress(message)
    headers = [*_weak_etag(without(headers, b"content-length", b"accept-ranges")),
               (b"content-encoding", b"gzip")]
    if not more:                                   # the whole body: its true length
        headers.append((b"content-length", str(len(body)).encode()))
    await self._send_start(headers, "gzip")
    return {**message, "body": body}


_GzipResponse._first_body = _first_body

# %% [markdown]
# The remaining helpers are short. `_compress` compresses one message's body, with a sync
# flush in the middle of a stream and a full finish at the end. An empty chunk in the
# middle of a stream stays empty rather than costing a flush marker:

# %%
#| export
def _compress(self, message) -> bytes:
    body, more = message.get("body", b""), message.get("more_body", False)
    if more and not body:
        return b""
    data = self.compressor.compress(body)
    return data + self.compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)


_GzipResponse._compress = _compress

# %% [markdown]
# `_send_start` sends the held start with its final headers and records the decision;
# `release` is the end-of-app safety net described above:

# %%
#| export
async def _send_start(self, headers, mode: str) -> None:
    self.mode, start, self.start = mode, self.start, None
    await self.send_out({**start, "headers": headers})


async def _release(self) -> None:
    if self.start is not None and self.mode is None:
        await self._send_start(self.start.get("headers", []), "identity")


_GzipResponse._send_start, _GzipResponse.release = _send_start, _release

# %% [markdown]
# And `_weak_etag`, which `_first_body` calls: a strong tag `"v1"` becomes `W/"v1"`, and a
# tag that is weak already stays as it is.

# %%
#| export
def _weak_etag(headers) -> list:
    """A strong ETag made weak (RFC 9110 §8.8.3): these bytes are not the app's bytes."""
    return [(n, b"W/" + v if n.lower() == b"etag" and v.startswith(b'"') else v)
            for n, v in headers]

# %%
_weak_etag([(b"etag", b'"v1"')]), _weak_etag([(b"ETag", b'W/"v1"')])

# %% [markdown]
# Time to look at what it does. The page, to a client that accepts gzip, with the app's
# side next to the server's:

# %%
before_after(page, GZip, headers={"accept-encoding": "gzip"})

# %% [markdown]
# The app sent 1,768 bytes in one message with no `content-length`; the server got a start
# with `vary`, `content-encoding: gzip` and the true `content-length` of the compressed
# body: 85 bytes, since the text repeats a lot. The client gets back exactly the page:

# %%
call = barelab.call_asgi(GZip(page), headers={"accept-encoding": "gzip"})
gzip.decompress(call.body) == PAGE, int(call.header("content-length")) == len(call.body)

# %% [markdown]
# A streaming response keeps its chunks: each `more_body` message becomes one compressed
# message, and the start goes out with no `content-length`. Look at the end of the first
# two compressed bodies in the server's row: `\x00\x00\xff\xff` is the marker a sync
# flush leaves:

# %%
before_after(ticker, GZip, headers={"accept-encoding": "gzip"})

# %% [markdown]
# The ticks are only 21 bytes, far under the default `minimum_size` of 500, and were
# compressed anyway: `minimum_size` only applies to a body complete in its first message,
# since a stream's size is unknown when the decision is made. The same two requests from a client
# that says `gzip;q=0`: nothing compressed, and `Vary` on the page:

# %%
for app in (page, ticker):
    call = barelab.call_asgi(GZip(app), headers={"accept-encoding": "gzip;q=0, br"})
    print(f"{app.__name__:7} encoding={call.header('content-encoding')} "
          f"vary={call.header('vary')} body={call.body[:24]!r}")

# %% [markdown]
# Back to the toy cache from trap 5, now in front of `GZip`. The browser asks first, then
# the script, then the browser again:

# %%
cached = SharedCache(GZip(page))
for who, sent in (("browser", {"accept-encoding": "gzip, br"}), ("script", {}),
                  ("browser", {"accept-encoding": "gzip, br"})):
    call = barelab.call_asgi(cached, headers=sent)
    print(f"{who:8} content-encoding={call.header('content-encoding')}  body={call.body[:12]}")
print("copies in the cache:", len(cached.stored))

# %% [markdown]
# Each client got the form it asked for, and the cache holds two copies of the page, one
# per `Accept-Encoding` value, because the response named that header in `Vary`.
#
# Now the skip rules from the diagram, each checked by one request. `respond_with` makes
# a one-message app from a status, headers and a body:

# %%
def respond_with(status, headers, body=PAGE):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return app

# %% [markdown]
# Each entry of `cases` is one kind of response that `GZip` must treat differently: the
# page it should compress, and eight it should leave alone.

# %%
HTML = (b"content-type", b"text/html")
cases = {
    "HTML page": (200, [HTML], PAGE), "small HTML": (200, [HTML], b"<p>hi</p>"),
    "PNG image": (200, [(b"content-type", b"image/png")], PAGE),
    "already gzip": (200, [HTML, (b"content-encoding", b"gzip")], gzip.compress(PAGE, mtime=0)),
    "no-transform": (200, [HTML, (b"cache-control", b"public, no-transform")], PAGE),
    "304": (304, [HTML], b""), "204": (204, [], b""),
    "206 range": (206, [HTML, (b"content-range", b"bytes 0-99/1768")], PAGE[:100]),
}

# %% [markdown]
# Every case goes to a client that accepts gzip, plus a HEAD request for the page; the
# table shows the status, the coding and `Vary` that came out:

# %%
rows = []
for name, (status, headers, body) in cases.items():
    call = barelab.call_asgi(GZip(respond_with(status, headers, body)),
                             headers={"accept-encoding": "gzip"})
    rows.append((name, call.status, call.header("content-encoding") or "-",
                 call.header("vary") or "-"))
head = barelab.call_asgi(GZip(page), "HEAD", headers={"accept-encoding": "gzip"})
rows.append(("HEAD of the page", head.status, head.header("content-encoding") or "-",
             head.header("vary") or "-"))
barelab.show_transcript(rows, columns=("response", "status", "content-encoding", "vary"))

# %% [markdown]
# Only the HTML page was compressed. The "already gzip" row kept its own coding: a second
# layer of gzip would be legal but useless, and a client would have to undo both. Only the
# compressed page carries `Vary`: the others went out as they were, whatever the client
# said, so their form did not depend on `Accept-Encoding`.
#
# Last, the ETag and `accept-ranges` rewrites, on a response that has both:

# %%
tagged = respond_with(200, [HTML, (b"etag", b'"v1"'), (b"accept-ranges", b"bytes")])
barelab.call_asgi(GZip(tagged), headers={"accept-encoding": "gzip"}).headers

# %% [markdown]
# The tag is now weak, `accept-ranges` is gone, and `content-length` is the compressed
# size, added last because it was only known after compressing.
#
# ### On the wire
#
# The tests that matter most are over a socket. First the stream, through `GZip`:

# %%
ticks = barelab.serve(GZip(ticker), name="ticks")
show_arrivals(when_readable(read_timed(ticks, headers={"Accept-Encoding": "gzip"})))

# %% [markdown]
# One by one again, as in the baseline, and each tick was *decompressed* by the client as
# it arrived: the sync flush made every piece usable on its own. Compare trap 3, where the
# same three ticks all turned up at 0.5 s.
#
# Then trap 6's file, the one whose stale length made curl fail, through `GZip` this time.
# Serving it under the name `stale` replaces the broken server:

# %%
fixed = barelab.serve(GZip(sized_file), name="stale")
exchange = barelab.raw_exchange(fixed, b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip"
                                b"\r\nConnection: close\r\n\r\n", timeout=1.0)
print(exchange.received.partition(b"\r\n\r\n")[0].decode())
print(exchange.ending)

# %% [markdown]
# No `content-length`: the server framed the body with `transfer-encoding: chunked`, so
# the client knows where it ends whatever its size. curl agrees. `--compressed` makes curl
# send `Accept-Encoding` and decompress the answer; `-i` shows the head curl received,
# before decompression. The body is the page again:

# %%
# !curl -s -i --compressed -m 5 {fixed.url} | head -c 420

# %% [markdown]
# ## The stack
#
# Time to put the layers together, outermost first, as a request meets them:
#
# 1. `AccessLog`: outermost, so it logs every response, the 401s and 413s the layers inside
#    make up included, and counts the bytes as they really left (compressed);
# 2. `RequestID`: every response carries an ID, refusals too;
# 3. `ServerTiming`: times everything inside it;
# 4. `GZip`: compresses whatever comes from inside, refusals too;
# 5. `AddHeaders`: `x-content-type-options: nosniff` on every response;
# 6. `TokenAuth`: outside the body limit, so a client without a token is refused before a
#    byte of its body is read;
# 7. `BodyLimit`, right around the app.
#
# ```mermaid
# flowchart LR
#     S["server"] --> L["AccessLog"] --> I["RequestID"] --> T["ServerTiming"] --> G["GZip"]
#     G --> H["AddHeaders"] --> AU["TokenAuth"] --> B["BodyLimit"] --> APP["app"]
#     AU -. "no token: 401,<br/>WebSocket refused" .-> H
#     B -. "over the limit: 413" .-> AU
# ```
#
# The app behind it routes by path to the apps of this chapter: the page, the ticker, the
# upload, and the private WebSocket. It hands the lifespan scope to `needs_startup`, so
# you can see whether startup makes it through all seven layers. Any other path gets a
# 404:

# %%
async def site(scope, receive, send):
    if scope["type"] == "lifespan":
        return await needs_startup(scope, receive, send)
    routes = {"/page": page, "/ticks": ticker, "/upload": upload, "/ws": private}
    app = routes.get(scope["path"])
    if app is None:
        return await _refuse(send, 404, "404 Not Found")
    await app(scope, receive, send)

# %% [markdown]
# Several layers take settings, which `partial` fills in. `build_stack` makes the whole
# stack around `site`, with the access log writing into the list you give it:

# %%
def build_stack(records):
    return compose(site, partial(AccessLog, records=records), RequestID, ServerTiming, GZip,
                   partial(AddHeaders, headers={"x-content-type-options": "nosniff"}),
                   partial(TokenAuth, tokens={"s3cret": "ada"}),
                   partial(BodyLimit, max_bytes=1000), between=SpecCheck)

# %% [markdown]
# Serve it twice, each with an access log of its own: on barelab's reference server, and
# on the server you wrote in chapter 13, plugged in with `server=ASGIServer`.

# %%
from barelab.built.asgi_server import ASGIServer

access_log, course_access_log = [], []
on_barelab = barelab.serve(build_stack(access_log), name="stack")
on_course = barelab.serve(build_stack(course_access_log), name="stack-course",
                          server=ASGIServer)
on_barelab, on_course

# %% [markdown]
# Two servers, on two ports, each running its own copy of the stack. Now a battery of
# requests, the same for both. Each entry names a case and gives the method, path, headers
# and body to send; together they touch every layer: gzip asked for and refused, a stream,
# a missing token, a body under and over the limit, and a path that does not exist.

# %%
AUTH = {"Authorization": "Bearer s3cret"}
GZIP = {"Accept-Encoding": "gzip"}
battery = {
    "page, gzip": ("GET", "/page", {**AUTH, **GZIP}, b""),
    "page, gzip;q=0": ("GET", "/page", {**AUTH, "Accept-Encoding": "gzip;q=0"}, b""),
    "ticks, gzip": ("GET", "/ticks", {**AUTH, **GZIP}, b""),
    "no token": ("GET", "/page", GZIP, b""),
    "upload 900 B": ("POST", "/upload", AUTH, b"x" * 900),
    "upload 1200 B": ("POST", "/upload", AUTH, b"x" * 1200),
    "unknown path": ("GET", "/nope", AUTH, b""),
}

# %% [markdown]
# `outcome` boils one response down to what the client should see: the status, the
# coding, `Vary`, whether the ID and the timing header came back, and the start of the
# body after decompressing it. IDs and timings differ on every run, so only their presence
# is compared:

# %%
def outcome(reply):
    body = reply.body
    if reply.header("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return (reply.status, reply.header("content-encoding") or "-", reply.header("vary") or "-",
            bool(reply.header("x-request-id")), bool(reply.header("server-timing")),
            body.decode()[:22].strip())

# %% [markdown]
# `http_request` hands back the body exactly as it came off the wire, still compressed,
# which is why `outcome` decompresses it with `gzip.decompress`. Run the battery against
# both servers; the last column compares each row with the course server's:

# %%
results = {server.name: [outcome(barelab.http_request(server, method, path, headers=headers,
                                                      body=body))
                          for method, path, headers, body in battery.values()]
           for server in (on_barelab, on_course)}
rows = [(name, *here, "same" if here == there else f"DIFFERENT: {there}")
        for name, here, there in zip(battery, results["stack"], results["stack-course"])]
barelab.show_transcript(rows, columns=("request", "status", "coding", "vary", "id", "timing",
                                       "body", "course server"))

# %% [markdown]
# Every row the same on both servers. The middleware never knew which server it ran on:
# all it saw was `scope`, `receive` and `send`. Look down the columns: every response has
# an ID and a timing header, the 401 and the 413 included; only the page and the ticks
# for a gzip client are compressed; `Vary` is on the page both times.
#
# The WebSocket, through the whole stack, on barelab's server: refused without a token,
# open with one.

# %%
try:
    barelab.websocket_connect(on_barelab, "/ws")
except barelab.WebSocketRejected as refusal:
    print("no token:", refusal.status, refusal.body)
with barelab.websocket_connect(on_barelab, "/ws?token=s3cret") as ws:
    print("token:   ", ws.receive())

# %% [markdown]
# (The course server from chapter 13 speaks HTTP only; chapter 15 adds WebSockets.) The
# access log saw everything, from the outside: the compressed byte counts, the refusals,
# and each request's ID. Here is barelab's side of the battery:

# %%
for record in access_log[:len(battery)]:
    print(record)

# %% [markdown]
# `AccessLog` wrote those records from inside the stack, at its outer edge.
# The course server keeps its own log, from the other side of `send`. It has a line for
# each of the same requests, with the same byte counts, and, at the top, the lifespan
# startup that went through all seven layers to reach `needs_startup`:

# %%
on_course.log

# %% [markdown]
# ## Starlette behind your middleware
#
# A framework app is an ASGI app, so your layers wrap it like any other. Here is a small
# Starlette app: a JSON endpoint that reads the user and the request ID through Starlette's
# own `request.state`, a streaming endpoint, and a WebSocket.

# %%
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

async def whoami(request):
    return JSONResponse({"user": request.state.user, "request_id": request.state.request_id,
                         "padding": "." * 600})

async def slow_lines(request):
    async def lines():
        for n in (1, 2, 3):
            yield f"tick {n}\n"
            await asyncio.sleep(0.25)
    return StreamingResponse(lines(), media_type="text/plain")

# %%
async def greet(websocket):
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.state.user}")
    await websocket.close()

starlette_app = Starlette(routes=[Route("/whoami", whoami), Route("/ticks", slow_lines),
                                  WebSocketRoute("/ws", greet)])
wrapped = compose(starlette_app, RequestID, GZip, partial(TokenAuth, tokens={"s3cret": "ada"}))
framework = barelab.serve(wrapped, name="starlette")

# %% [markdown]
# `request.state.user` and `request.state.request_id` are the values `TokenAuth` and
# `RequestID` put in `scope["state"]`; Starlette found them where the lifespan spec keeps
# per-request state. The JSON, compressed, from curl:

# %%
# !curl -s --compressed -m 5 -H "Authorization: Bearer s3cret" -H "X-Request-ID: from-curl" {framework.url}whoami | head -c 60

# %% [markdown]
# The stream, still one tick at a time through Starlette and `GZip`, and the WebSocket,
# guarded:

# %%
show_arrivals(when_readable(read_timed(framework, "/ticks", {**AUTH, **GZIP})))
try:
    barelab.websocket_connect(framework, "/ws")
except barelab.WebSocketRejected as refusal:
    print("no token:", refusal.status)
with barelab.websocket_connect(framework, "/ws", headers=AUTH) as ws:
    print("token:   ", ws.receive())

# %% [markdown]
# Starlette's own lifespan handling went through the layers too: the server's log shows the
# startup it completed.

# %%
[entry.message for entry in framework.log.entries if "lifespan" in entry.message]

# %% [markdown]
# ## Summary
#
# - An ASGI middleware is an ASGI app that holds an app. It may hand the app a copy of the
#   scope (never change the original: it leaks outwards), its own `receive` (to watch or
#   limit the request body) and its own `send` (to change the response), and it passes
#   every scope type it does not handle, lifespan included, through untouched. A layer that
#   crashes on the lifespan scope silently switches off the app's startup.
# - Messages going out are built new (`{**message, ...}`): editing the app's message or
#   header list in place corrupts every later response that reuses them.
# - `barelab.built.asgi_middleware` holds `SpecCheck` (chapter 11's checker as a layer, for
#   `compose(..., between=SpecCheck)`), `AddHeaders`, `BodyLimit` (413 by `Content-Length`
#   or by counting in `receive`), `ServerTiming` (time to headers) and `AccessLog` (time to
#   the last byte, chapter 07's `RequestRecord`), `RequestID` (in `scope["state"]` and a
#   header), `TokenAuth` (header, query or cookie; HTTP **and** WebSocket), `GZip`, plus
#   `parse_accept_encoding`, `accepts_gzip`, `is_compressible`, `could_compress`,
#   `add_vary`, `deny_websocket`, `tokens_in`, `with_state`, `header_value`, `without`.
# - Auth must cover `websocket` scopes. A handshake is refused with `websocket.close`
#   before `websocket.accept` (the server answers 403) or, when the server offers the
#   `websocket.http.response` extension, with a real 401 and its challenge.
# - gzip streams with `zlib.compressobj(wbits=31)` and a `Z_SYNC_FLUSH` per body message;
#   it reads `Accept-Encoding` by RFC 9110 §12.5.3 (`q=0` means no, `*`, case, spaces);
#   it sends `Vary: Accept-Encoding` on every response that could have been compressed,
#   compressed or not; it leaves alone HEAD, 204, 206, 304, coded and `no-transform`
#   responses and non-text types; and it drops `Content-Length` for a stream or sets the
#   true one for a body in one message.
# - The same stack ran on barelab's server and on yours from chapter 13 with identical
#   results, and around a Starlette app, whose `request.state` found what the layers put in
#   `scope["state"]`.
#
# Part IV starts with chapter 17: a test client that calls apps like these in-process, and
# the same tests run over a socket.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a deadline for the response to start
#
# Write `Deadline(app, seconds)`: if the app has not sent `http.response.start` within
# `seconds`, cancel it and answer `504 Gateway Timeout` (a `text/plain` body of your
# choice). Once the response has started, the app may take as long as it likes: the
# deadline is for the *start*. Pass every other scope type through. (Hint: run the app as
# a task, and wait on an `asyncio.Event` that your wrapped `send` sets.)

# %% tags=["solution"]
class Deadline:
    ### BEGIN SOLUTION
    def __init__(self, app, seconds):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = asyncio.Event()

        async def watching_send(message):
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, watching_send))
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiter}, timeout=self.seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not started.is_set() and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await send_text(send, "504 Gateway Timeout\n", 504)
        await task
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

async def sleepy(scope, receive, send):
    await asyncio.sleep(1.0)
    await send_text(send, "finally\n")

with check("Exercise 1"):
    slow = barelab.call_asgi(Deadline(sleepy, 0.2), timeout=3)
    assert slow.status == 504, f"an app that starts after 1 s got {slow.status}, expected 504"
    fast = barelab.call_asgi(Deadline(hello, 0.2))
    assert fast.status == 200 and fast.body == b"Hello!\n", "a fast app must pass untouched"
    stream = barelab.call_asgi(Deadline(ticker, 0.2))
    assert stream.body == b"tick 1\ntick 2\ntick 3\n", \
        "a stream that started in time may take longer than the deadline to finish"
    life = barelab.call_lifespan(Deadline(needs_startup, 0.2))
    assert [m["type"] for m in life.sent] == ["lifespan.startup.complete",
                                              "lifespan.shutdown.complete"], \
        "pass the lifespan scope through"

# %% [markdown]
# ### Exercise 2 — an Origin check for WebSockets
#
# A cookie rides along on every request the browser makes to your site, including a
# WebSocket handshake started by *another* site's page. Write
# `WebSocketOrigin(app, allowed)`: a WebSocket handshake whose `Origin` header is not in
# the set `allowed` is refused before accept (use `deny_websocket` with a 403); allowed
# origins, and every other scope type, pass through untouched.

# %% tags=["solution"]
class WebSocketOrigin:
    ### BEGIN SOLUTION
    def __init__(self, app, allowed):
        self.app, self.allowed = app, set(allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            origin = header_value(scope["headers"], b"origin")
            if origin is None or origin.decode("latin-1") not in self.allowed:
                return await deny_websocket(scope, receive, send, 403,
                                            "403 Forbidden: origin not allowed")
        await self.app(scope, receive, send)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    guard = WebSocketOrigin(private, {"https://app.example"})
    def handshake(origin):
        headers = {"origin": origin} if origin else {}
        return [m["type"] for m in barelab.call_asgi(guard, "GET", "/ws", headers=headers,
                                                     scope={"type": "websocket"}).sent]
    assert handshake("https://app.example")[0] == "websocket.accept", "allow the listed origin"
    assert handshake("https://evil.example") == ["websocket.close"], \
        "refuse another origin with a close before accept"
    assert handshake(None) == ["websocket.close"], "refuse a handshake without Origin"
    page_call = barelab.call_asgi(guard, headers={"origin": "https://evil.example"})
    assert page_call.text == "private page\n", "HTTP requests are not this layer's business"

# %% [markdown]
# ### Exercise 3 — choosing among codings
#
# A server that can send `br` and `gzip` has to pick one. Write
# `preferred_coding(accept_encoding, available)`: the coding from `available` (listed in
# the server's order of preference) with the highest weight above 0 for this client, a
# coding listed by name taking its own weight and any other the weight of `*`; ties go to
# the earlier one in `available`. Return `None` when no coding in `available` is
# acceptable, or when there is no header (`None`). Use `parse_accept_encoding`.

# %% tags=["solution"]
def preferred_coding(accept_encoding, available=("br", "gzip")):
    ### BEGIN SOLUTION
    if accept_encoding is None:
        return None
    weights = parse_accept_encoding(accept_encoding)
    best, best_weight = None, 0.0
    for coding in available:
        weight = weights[coding] if coding in weights else weights.get("*", 0.0)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    table = {"gzip, br": "br", "gzip;q=1, br;q=0.5": "gzip", "br;q=0, *": "gzip",
             "*;q=0.1, gzip;q=0.2": "gzip", "*;q=0": None, "identity": None, "": None,
             "GZIP": "gzip", "br;q=0, gzip;q=0": None, None: None}
    for value, expected in table.items():
        got = preferred_coding(value)
        assert got == expected, f"Accept-Encoding {value!r}: expected {expected!r}, got {got!r}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started; the number is how many were still running.

# %%
barelab.stop_all()

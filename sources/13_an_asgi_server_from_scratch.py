# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 13. An ASGI server from scratch
#
# uvicorn, hypercorn and daphne are programs that turn bytes on a socket into calls of
# `app(scope, receive, send)`. In this chapter you write one, on nothing but `asyncio`, and
# run Starlette and FastAPI on it.
#
# ## Learning goals
#
# - Write an HTTP/1.1 ASGI server on `asyncio.start_server`: read request heads with chapter
#   02's parser, build the `http` scope, and give the app a `receive` and a `send`.
# - Frame a response correctly whatever the app does: `Content-Length` when the size is
#   known, chunked when it is not, nothing at all for `HEAD`, 204 and 304, and no double
#   framing when the app sets its own headers.
# - Handle what real clients and real apps do: keep-alive and pipelining, chunked uploads,
#   `Expect: 100-continue`, a client that goes away, an app that crashes, malformed bytes.
# - Drive the lifespan protocol: an app without it starts at once, `startup.failed` stops
#   the server, `shutdown` is sent on stop, and `scope["state"]` is copied per request.
# - Plug the server into `barelab.serve(app, server=ASGIServer)`: its own event loop in its
#   own thread, stopped promptly, logging every request.

# %% [markdown]
# ## What the server is for
#
# Chapter 11 called apps by hand with `call_asgi`: you built the scope and fed the events.
# A server does the same, with a network in the middle. For each request it reads bytes
# until a head is complete, turns the head into a scope, and calls the app. Then it answers
# the app's `receive()` with body bytes from the socket and turns each `send()` into bytes
# for the client:
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server (this chapter)
#     participant A as ASGI app
#     C->>S: GET /hello HTTP/1.1 ... \r\n\r\n
#     S->>A: app(scope, receive, send)
#     A->>S: await receive()
#     S-->>A: {"type": "http.request", "body": b"", "more_body": False}
#     A->>S: await send({"type": "http.response.start", ...})
#     A->>S: await send({"type": "http.response.body", ...})
#     S->>C: HTTP/1.1 200 OK ... body
#     Note over C,S: same connection, next request (keep-alive)
# ```
#
# Everything below is about the arrows that touch `S`. Start with the tools: `barelab` for
# serving and probing, `show_bytes` and `show_transcript` for looking at bytes and tables,
# and `Engine`, the base class every barelab server engine shares.

# %%
import asyncio
import threading
import time

import barelab
from barelab.built.http_wire import parse_request
from barelab.display import show_bytes, show_transcript
from barelab.engines.base import Engine

# %% [markdown]
# The parser you wrote in chapter 02 is back too. Give it the bytes of a whole request and
# it hands back a `Request`: method, target and version as bytes, and the headers as
# (lower-cased name, value) pairs. That is most of what an ASGI scope needs.

# %%
parse_request(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n")

# %% [markdown]
# Everything in it is still bytes, and two things a scope needs are not there at all. The
# target `/hello?x=1` is one piece, while a scope wants `path` and `query_string` apart.
# And nothing says which TCP connection the request came on: the scope's `client` and
# `server` can only come from the socket. The server's first job is to fill those gaps.

# %% [markdown]
# ## The simplest server that could work
#
# Here is the server most people write first, in two pieces. The first turns a parsed
# request into a scope: split the target at `?` into path and query, decode what the spec
# wants as text, and copy the rest. `client` and `server` are the two ends of the TCP
# connection, as (host, port) pairs.

# %%
def naive_scope(request, client, server):
    path, _, query = request.target.partition(b"?")
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method.decode(), "scheme": "http", "path": path.decode(),
            "raw_path": path, "query_string": query, "root_path": "",
            "headers": list(request.headers), "client": client, "server": server}

naive_scope(parse_request(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n"),
            ("127.0.0.1", 50000), ("127.0.0.1", 8000))

# %% [markdown]
# That is the dictionary chapter 11 built by hand, now built from bytes. The second piece
# serves one connection. It reads until the empty line that ends a head
# (`reader.readuntil`), parses it and builds the scope. Look at the two functions it gives
# the app: `receive()` always says "empty body", and `send()` writes the status line and
# headers, then body bytes as they come. When the app returns, it closes the connection.

# %%
async def naive_connection(app, reader, writer):
    request = parse_request(await reader.readuntil(b"\r\n\r\n"))
    scope = naive_scope(request, writer.get_extra_info("peername"),
                        writer.get_extra_info("sockname"))
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        if message["type"] == "http.response.start":
            head = b"HTTP/1.1 %d \r\n" % message["status"]
            writer.write(head + b"".join(n + b": " + v + b"\r\n" for n, v in message["headers"]))
            writer.write(b"\r\n")
        else:
            writer.write(message.get("body", b""))
    await app(scope, receive, send)
    writer.close()

# %% [markdown]
# Count what `naive_connection` leaves out before you run it. It reads one head and never
# a body. It writes whatever the app sends, with no framing. Nothing catches an exception
# from the app. And it closes the connection after one request. Each of those is a trap
# you will walk into in a minute.
#
# The server runs in a notebook, so it must not use the kernel's own event loop: a cell that
# waits for a response (`!curl`, `http_request`) blocks that loop, and an app scheduled on it
# could never answer. So the server gets a thread of its own, with a loop of its own.
#
# `barelab.serve(app, server=...)` takes any class with barelab's *engine* shape:
# `__init__(app, sock, log, **options)`, where `sock` is a socket barelab has already bound,
# then `start()` and `stop(timeout)`. `Engine` supplies the `__init__`; you write the other
# two.
#
# `start` makes a new event loop and runs `main` on it in a new thread. `main` hands the
# socket to `asyncio.start_server`, which calls `naive_connection` for every client that
# connects, and then waits until it is told to stop. Two details: the exception handler
# sends any uncaught error to the server's log (a thread's `print` would land in whatever
# cell happens to be running), and `ready` makes `start` wait until the server is
# listening.

# %%
class NaiveServer(Engine):
    kind = "asgi"

    def start(self):
        self.loop, ready = asyncio.new_event_loop(), threading.Event()
        self.loop.set_exception_handler(lambda loop, context: self.log.error(
            context["message"], context.get("exception")))
        async def main():
            self.stopping = asyncio.Event()
            handler = lambda reader, writer: naive_connection(self.app, reader, writer)
            listener = await asyncio.start_server(handler, sock=self.sock)
            ready.set()
            await self.stopping.wait()
            listener.close()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),))
        self.thread.start()
        ready.wait(5)

# %% [markdown]
# `stop` runs in the notebook's thread, not the server's, so it cannot just set the event:
# asyncio objects belong to their loop's thread. `call_soon_threadsafe` asks the server's
# loop to set it, and wakes that loop up. Then `stop` waits for the thread and closes the
# loop and the socket.

# %%
def naive_stop(self, timeout=2.0):
    self.loop.call_soon_threadsafe(self.stopping.set)
    self.thread.join(timeout)
    self.loop.close()
    self.sock.close()

NaiveServer.stop = naive_stop

# %% [markdown]
# `NaiveServer.stop = naive_stop` attaches the function to the class after the fact, which
# is the same as writing it inside the class body. The chapter uses that trick to build
# big classes in short cells.
#
# A tiny app to serve: it answers every request with `hello` and a `Content-Length`.
# Serve it with the naive engine and ask for a page:

# %%
async def hello(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})

naive = barelab.serve(hello, name="naive", server=NaiveServer)
barelab.http_request(naive)

# %% [markdown]
# It works. It works for curl too, and for your browser (click the link the `naive` server
# shows when you display it). Most tutorials stop here. The rest of this section sends it
# requests that real clients send every day, and watches it fail.

# %% [markdown]
# ## Breaking it, one trap at a time
#
# `probe` sends exact bytes with `raw_exchange` and sums up what came back: the status codes
# seen, and how the conversation ended. You will use it on both servers.

# %%
def probe(server, data, timeout=0.5):
    exchange = barelab.raw_exchange(server, data, timeout=timeout)
    return f"statuses {exchange.responses}; {exchange.ending}"

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
probe(naive, GET)

# %% [markdown]
# One request, one 200, and the server closed the connection. Now the first trap, **keep-
# alive**: HTTP/1.1 keeps a connection open for the next request unless someone says
# `Connection: close` (RFC 9112 §9.3), and a client may even send the next request before
# the first answer arrived (*pipelining*, §9.3.2). Two requests in one write:

# %%
probe(naive, GET + GET)

# %% [markdown]
# One answer for two questions. A browser would open a new connection for every image,
# paying a TCP handshake each time; a pipelining client just loses its second response.
#
# Second trap, **framing**. An app that streams sends its body in several messages with
# `more_body: True` and no `Content-Length`, because it does not know the size in advance:

# %%
async def countdown(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for n in (b"3\n", b"2\n", b"1\n"):
        await send({"type": "http.response.body", "body": n, "more_body": True})
    await send({"type": "http.response.body", "body": b"liftoff\n"})

naive = barelab.serve(countdown, name="naive", server=NaiveServer)
barelab.raw_exchange(naive, GET)

# %% [markdown]
# The bytes went out raw, with no `Content-Length` and no chunking. The client only knew the
# body had ended because the server closed the connection; on a kept-alive connection
# the body would never end. The reason phrase after `200` is empty too, and there is no
# `Date` header, which RFC 9110 §6.6.1 requires from a server with a clock.
#
# Third trap, **HEAD**: the client asks for the head only (RFC 9110 §9.3.2), so the server
# must not send a body, whatever the app sends:

# %%
naive = barelab.serve(hello, name="naive", server=NaiveServer)
barelab.raw_exchange(naive, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# `hello` leaked out after the head. On a kept-alive connection the client would read those
# five bytes as the start of the next response.
#
# The next three traps all end the same way. A request with a body (the naive server's
# `parse_request` gets the head only, so it finds the body missing and raises), a malformed
# request, and an app that crashes:

# %%
async def crash(scope, receive, send):
    raise ValueError("the database is on fire")

with_body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
malformed = b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
rows = [("body", probe(naive, with_body)), ("malformed", probe(naive, malformed))]
naive = barelab.serve(crash, name="naive", server=NaiveServer)
show_transcript(rows + [("app crash", probe(naive, GET))])

# %% [markdown]
# No response at all, three times. The exception killed the connection's task before
# anything was written, and the socket was closed with it. A browser shows "empty
# response"; a proxy in front would answer 502 Bad Gateway. Nobody learns what went
# wrong, though the errors did not vanish: the loop's exception handler put them in the log.

# %%
print(naive.log.errors[-1].message)
print(naive.log.errors[-1].details.strip().splitlines()[-1])

# %% [markdown]
# The last trap you can see without a network: **lifespan**. An app that sets up a
# database pool at startup (chapter 14 is about this) expects the server to send it a
# `lifespan.startup` event first, and reads the pool from `scope["state"]` later. The naive
# server never calls the app with a `lifespan` scope, and its scopes carry no `state`:

# %%
async def with_pool(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["pool"] = "a database pool"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        return await send({"type": "lifespan.shutdown.complete"})
    await receive()
    body = scope["state"]["pool"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

naive = barelab.serve(with_pool, name="naive", server=NaiveServer)
probe(naive, GET), naive.log.errors[-1].details.strip().splitlines()[-1]

# %% [markdown]
# No response again, and the log's last line says why: `KeyError: 'state'`. The app got an
# `http` request before anyone ran its startup, so the pool it counts on does not exist.
#
# That is the list of what a real server must do beyond the happy path. The rest of the
# chapter builds one that does it, section by section:
#
# | trap | section |
# | --- | --- |
# | malformed requests get no answer, not a 4xx | reading a request head |
# | request bodies are ignored | `receive()` |
# | responses are not framed; `HEAD` gets a body | `send()` |
# | a crash gets no answer, not a 500 | when the app fails |
# | one request per connection | the connection loop |
# | no lifespan, no `state` | lifespan |
#
# Stop the naive server; you will not need it again.

# %%
naive.stop()
naive

# %% [markdown]
# ## The plan
#
# The real server has four classes, each with one job, and the rest of the chapter writes
# them from the inside out: first what one request needs, then the connection around it,
# then the server around the connections.
#
# ```mermaid
# classDiagram
#     class ASGIServer {
#         connection_class
#         start()
#         stop()
#         _accept(reader, writer)
#     }
#     class Connection {
#         buffer
#         run()
#         _next_head()
#         _exchange(head)
#     }
#     class Exchange {
#         receive()
#         send(message)
#         run()
#     }
#     class Lifespan {
#         startup()
#         shutdown(timeout)
#     }
#     ASGIServer --> Connection : one per TCP client
#     Connection --> Exchange : one per request, in turn
#     ASGIServer --> Lifespan : one for the server's life
# ```
#
# An `Exchange` is one request and its response: it owns the `receive` and `send` the app
# is called with. A `Connection` reads request heads and runs one `Exchange` after
# another. The `ASGIServer` accepts connections, runs the `Lifespan`, and lives in its own
# thread.

# %% [markdown]
# ## Reading a request head
#
# Everything from here on goes into one module. This cell names it: every cell below that
# starts with `#| export` is saved into `barelab/built/asgi_server.py`, which chapter 15
# extends with WebSockets.

# %%
#| default_exp asgi_server

# %% [markdown]
# The module opens with a comment on its design, the same plan as the table above in a few
# lines, and its imports. Most of them come from chapter 02's `http_wire`: the parser's
# pieces (`split_head`, `parse_request_line`, `parse_fields`, `body_length`,
# `ChunkedDecoder`), the response formatters, and the `HTTPError` family, whose members
# carry the status code to answer with. Each is explained where it is first used.

# %%
#| export
# An HTTP/1.1 ASGI server on asyncio streams. One task per connection reads request heads with
# chapter 02's parser, calls the app once per request with its own receive and send, and frames
# the response itself: Content-Length when it can, chunked when it must, no body for HEAD, 204
# and 304. It runs its own event loop in its own thread, so a notebook cell can drive it with
# barelab.serve(app, server=ASGIServer) and never block the kernel's loop.
import asyncio
import threading
import time
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

from barelab.built.http_wire import (BadRequest, ChunkedDecoder, HTTPError, body_length,
                                     check_host, format_response, format_response_head,
                                     parse_fields, parse_request_line, split_head)
from barelab.engines.base import Engine
from barelab.errors import LifespanStartupFailed

# %% [markdown]
# Three numbers come next. A client that starts a request head and never finishes it would
# tie up a connection forever (an attack called *slowloris*), so a head gets
# `HEAD_TIMEOUT` seconds once its first byte arrived. A body gets `BODY_TIMEOUT` seconds
# without progress. `READ_SIZE` is how much one read asks for: as much as asyncio reads from
# the socket at once, so a 64 KiB upload usually arrives whole, with its head, in a single
# read.

# %%
#| export
HEAD_TIMEOUT = 10.0     # seconds for a request head once its first byte arrived (then 408)
BODY_TIMEOUT = 30.0     # seconds without body bytes while the app waits for them
READ_SIZE = 262144      # bytes one read asks for: asyncio's own read size on a socket

# %% [markdown]
# Two small helpers come first. The ASGI HTTP spec (version 2.4) says that `send()` on a
# connection the client has closed "should raise a server-specific subclass of `OSError`",
# so apps can catch a disconnect the same way on every server. Ours is `ClientDisconnected`.
#
# Every response needs a `Date` header (RFC 9110 §6.6.1) with one-second resolution.
# Formatting a date costs microseconds, which add up at thousands of requests per second,
# so `http_date` keeps the value until the second changes.

# %%
#| export
class ClientDisconnected(OSError):
    """ASGI HTTP spec 2.4: send() on a closed connection raises a subclass of OSError."""


_date = [0, b""]

def http_date() -> bytes:
    """IMF-fixdate for the Date header (RFC 9110 §6.6.1), formatted once per second."""
    now = int(time.time())
    if _date[0] != now:
        _date[:] = [now, formatdate(now, usegmt=True).encode("ascii")]
    return _date[1]

# %% [markdown]
# Check both: the date is in the format HTTP wants, in GMT, and an app that catches
# `OSError` will also catch `ClientDisconnected`.

# %%
http_date(), issubclass(ClientDisconnected, OSError)

# %% [markdown]
# The date is bytes, ready to go into a header, and ends in `GMT` as HTTP requires. Call
# `http_date()` twice within a second and you get the same object back, not a new string.
#
# When the server refuses a request on its own (a malformed head, a body over the limit, an
# app that crashed) it answers with a short plain-text response and closes the connection
# (RFC 9112 §9.6: after an error it cannot recover from, a server closes, and says so with
# `Connection: close`). Chapter 02's `format_response` does the framing. For a `HEAD`
# request the body is cut off and only the head goes out.

# %%
#| export
def error_response(status: int, message: str, head_only: bool = False) -> bytes:
    """A complete plain-text response the server sends on its own; the connection closes."""
    body = (message + "\n").encode("utf-8")
    response = format_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                        ("Connection", "close"), ("Date", http_date())], body)
    return response[:len(response) - len(body)] if head_only else response

# %% [markdown]
# The `head_only` slice keeps the `Content-Length` that `format_response` computed for the
# body it then cuts off, which is what a `HEAD` response should announce.
#
# Here is the answer to the malformed request from earlier. Look for the three headers the
# server adds by itself and the `Content-Length` that `format_response` computed (the `§`
# sign takes two bytes in UTF-8, so the body is 57 bytes, not 56):

# %%
show_bytes(error_response(400, "whitespace between field name and colon (RFC 9112 §5.1)"))

# %% [markdown]
# `format_response` filled in the reason phrase `Bad Request`, so the server only has to
# pick the number. `Connection: close` warns the client that nothing more will come on
# this connection, and the message ends with a newline so that it prints cleanly in a
# terminal.
#
# Every request raises two questions before the app is even called. The first: **does the
# connection stay open after this response?** RFC 9112 §9.3 answers it. `Connection: close`
# means close; otherwise an HTTP/1.1 connection stays open, and an HTTP/1.0 one stays open
# only if the client asked for `Connection: keep-alive`. The field is a comma-separated
# list of tokens, and may come on several lines, so join them all before splitting.

# %%
#| export
def _keeps_alive(version: bytes, headers) -> bool:
    """RFC 9112 §9.3: does the connection persist after this request's response?"""
    connection = b",".join(v for n, v in headers if n == b"connection").lower()
    tokens = {t.strip() for t in connection.split(b",")}
    return b"close" not in tokens and (version == b"1.1" or b"keep-alive" in tokens)

# %% [markdown]
# Four requests, four answers. Note the last one: an HTTP/1.0 client must ask to stay,
# and a list that holds `close` anywhere wins over everything else.

# %%
[_keeps_alive(b"1.1", []), _keeps_alive(b"1.0", []),
 _keeps_alive(b"1.0", [(b"connection", b"Keep-Alive")]),
 _keeps_alive(b"1.1", [(b"connection", b"upgrade, close")])]

# %% [markdown]
# `[True, False, True, False]`: HTTP/1.1 stays by default, HTTP/1.0 only when asked, and a
# `close` token ends the connection even when it comes after `upgrade`. The server asks
# this once per request and keeps the answer with the head.
#
# The second question: **does the client wait for permission to send its body?** A client
# about to upload something large may send `Expect: 100-continue` (RFC 9110 §10.1.1) and
# hold the body back until the server answers `100 Continue`, so that a server that would
# refuse the upload anyway can say so before the bytes travel. That is the only expectation
# HTTP defines; a server may answer any other with `417 Expectation Failed`, and this one
# does. `ExpectationFailed` is one more member of chapter 02's `HTTPError` family.

# %%
#| export
class ExpectationFailed(HTTPError):
    status = 417


def _expects_continue(version: bytes, headers) -> bool:
    """RFC 9110 §10.1.1: True for 'Expect: 100-continue'; 417 for any other expectation."""
    expect = [v.lower() for n, v in headers if n == b"expect"]
    if expect and not (version == b"1.1" and expect == [b"100-continue"]):
        raise ExpectationFailed(f"Expect {expect!r} is not 100-continue (RFC 9110 §10.1.1)")
    return bool(expect)

# %% [markdown]
# Three requests: one with no expectation, one that asks to continue, one that expects
# something HTTP never defined. The last one does not return at all; it raises, and the
# server will answer with the status the exception carries.

# %%
try:
    _expects_continue(b"1.1", [(b"expect", b"tea")])
except ExpectationFailed as failure:
    refused = f"{failure.status}: {failure.message}"
_expects_continue(b"1.1", []), _expects_continue(b"1.1", [(b"expect", b"100-continue")]), refused

# %% [markdown]
# `False` means "no body to wait for", `True` means "send `100 Continue` before reading",
# and the 417 message names the rule. Like every `HTTPError`, it carries its own status.
#
# A `Head` holds the parsed request line and fields, the body's framing (`length`, which
# comes next), and the two answers. `__slots__` makes the object small and quick to
# create, which matters a little on a path that runs for every request.

# %%
#| export
class Head:
    """A parsed request head, and what the server must know about it to answer."""

    __slots__ = ("method", "target", "version", "headers", "length", "keep_alive",
                 "expect_continue")

    def __init__(self, method, target, version, headers, length):
        self.method, self.target, self.version = method, target, version
        self.headers, self.length = headers, length
        self.keep_alive = _keeps_alive(version, headers)
        self.expect_continue = _expects_continue(version, headers)

# %% [markdown]
# `read_head` is chapter 02's `RequestReader`, minus the body. It splits the head off the
# buffer, parses the request line and the fields, checks `Host` with chapter 02's
# `check_host` (exactly one in HTTP/1.1, with a valid `host[:port]` value, RFC 9112 §3.2),
# and asks `body_length` how the body is framed. That function
# already refuses `Content-Length` together with `Transfer-Encoding`, bad lengths and unknown
# codings. It returns `None` for a chunked body: then `length` becomes a `ChunkedDecoder`.
#
# What it does *not* do is wait for the body. The app may want to read a large upload piece
# by piece, or not at all, so the body stays on the socket until `receive()` asks for it.
#
# One more detail. `body_length` accepts `Content-Length: 2, 2` (a list of one value
# repeated, as a proxy that merges fields may send) because RFC 9110 §8.6 lets a recipient
# treat it as `2`. The app must then see that `2` too: a framework that reads the header
# itself would otherwise find `2, 2`, answer 400, and leave the connection open on a
# request the server already framed. So `one_length` replaces the list with the number.

# %%
#| export
def one_length(headers: list, length: int) -> list:
    """``headers`` with every Content-Length field replaced by one, ``length`` (§8.6)."""
    out, seen = [], False
    for name, value in headers:
        if name == b"content-length":
            if seen:
                continue
            seen, value = True, b"%d" % length
        out.append((name, value))
    return out


def read_head(buffer, max_line: int, max_header_bytes: int, max_body: int):
    """``(Head, body_start)`` from the start of ``buffer``, or None while it is incomplete."""
    parts = split_head(buffer, max_line, max_header_bytes)
    if parts is None:
        return None
    request_line, field_lines, body_start = parts
    method, target, version = parse_request_line(request_line)
    headers = parse_fields(field_lines)
    check_host(headers, version)
    length = body_length(headers, version, max_body)
    if length is None:
        length = ChunkedDecoder(0, max_body, max_header_bytes)
    else:
        headers = one_length(headers, length)
    return Head(method.decode("ascii"), target, version, headers, length), body_start

# %% [markdown]
# What an app sees of a doubled length:

# %%
one_length([(b"host", b"x"), (b"content-length", b"2, 2"), (b"content-length", b"2")], 2)

# %% [markdown]
# One field, one plain number, where the client sent two fields with three copies of it.

# %% [markdown]
# Try it on a head that is still arriving, then on a complete one. In the output, `None`
# is the incomplete head: not an error, just "read more". Then come the method, the body's
# length (5), the keep-alive answer and `body_start`: the body (here `hello`) begins at
# byte 52 of the buffer, and nothing has read it yet.

# %%
partial = b"POST /notes HTTP/1.1\r\nHost: x\r\n"
head, body_start = read_head(partial + b"Content-Length: 5\r\n\r\nhello", 8190, 16384, 10**6)
read_head(partial, 8190, 16384, 10**6), head.method, head.length, head.keep_alive, body_start

# %% [markdown]
# Now the malformed ones: the traps from chapter 02, plus four new ones (no `Host`, a `Host`
# that is not a host, a body over the limit, an unknown expectation). `attempt` shows the exception instead of
# stopping the cell. Read the first column of each answer: every error carries the status
# code the server will answer with.

# %%
def attempt(data):
    try:
        head, _ = read_head(data, 8190, 16384, 10**6)
        return f"fine: {head.method} {head.target!r}"
    except Exception as error:
        return f"{error.status} {error.message}"

bad = {"space before colon": malformed, "no Host": b"GET / HTTP/1.1\r\n\r\n",
       "bad Host value": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
       "CL and TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n",
       "HTTP/2.0": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
       "big body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n",
       "Expect: tea": b"GET / HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n"}
show_transcript([(name, attempt(data)) for name, data in bad.items()])

# %% [markdown]
# Every refusal is a status code and a sentence that names the rule. The server will send
# exactly that sentence back to the client, so whoever wrote the bad request learns why.

# %% [markdown]
# ## The scope
#
# The ASGI HTTP spec lists the keys of an `http` scope. Two need care:
#
# - `path` is the target's path "with percent-encoded sequences and UTF-8 byte sequences
#   decoded into characters", and `raw_path` is the original bytes, so a router can still
#   tell `/a%2Fb` from `/a/b`.
# - The target comes in four forms (RFC 9112 §3.2), and a server that is not a proxy
#   sees three: origin-form `/path?query`, the one browsers send; absolute-form
#   `http://host/path`, which every server MUST accept (§3.2.2); and `*` for a server-wide
#   `OPTIONS` (§3.2.4). The fourth, authority-form `host:port`, is only for `CONNECT` to a
#   proxy. Anything but the three is a 400 here.
#
# `split_target` handles the three forms and returns the raw path and the query, both still
# bytes. For the absolute form it drops scheme and host: the `Host` header already names
# the host, and the app routes on the path. `ASGI_VERSION` goes into every scope: ASGI 3
# (one callable with three arguments), version 2.4 of the HTTP spec.

# %%
#| export
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}

def split_target(method: str, target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of an origin-, absolute- or asterisk-form target
    (RFC 9112 §3.2)."""
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query
    scheme, sep, rest = target.partition(b"://")
    if sep and scheme.lower() in (b"http", b"https"):
        slash = rest.find(b"/")
        path, _, query = (rest[slash:] if slash >= 0 else b"/").partition(b"?")
        return path, query
    if target == b"*" and method == "OPTIONS":
        return b"*", b""
    raise BadRequest("request-target is not origin-form '/path', absolute-form or '*' "
                     "(RFC 9112 §3.2)")

# %% [markdown]
# One target of each form. The absolute form without a path gets `/`, because every HTTP
# URL has at least that one:

# %%
[split_target("GET", b"/notes?page=2"), split_target("GET", b"http://example.org"),
 split_target("GET", b"https://example.org/a?b"), split_target("OPTIONS", b"*")]

# %% [markdown]
# Each pair is (raw path, query), both still bytes; decoding the path is the scope's
# business, next. An authority-form target such as `example.org:443` would raise
# `BadRequest`, which the server turns into a 400.

# %% [markdown]
# The scope itself is one dictionary. `headers` is the parser's list of (lower-cased name,
# value) pairs, in order with repeats, as the spec asks. `state` is a *shallow copy* of the
# lifespan state (the lifespan spec: the server copies it into each request's scope), so an
# app can add keys to its copy without leaking them into the next request, while objects in
# it, like a connection pool, are shared.

# %%
#| export
def build_scope(head: Head, client, server, state: dict) -> dict:
    """The ``http`` connection scope of the ASGI HTTP spec, for one request."""
    raw_path, query = split_target(head.method, head.target)
    return {"type": "http", "asgi": ASGI_VERSION, "http_version": head.version.decode(),
            "method": head.method, "scheme": "http",
            "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": head.headers, "client": client, "server": server,
            "state": dict(state)}    # lifespan spec: a shallow copy per request

# %% [markdown]
# Build one from an absolute-form target with a percent-encoded `é` in it. Compare `path`,
# decoded to text, with `raw_path`, the bytes as they came; and look at `state`, a copy of
# the dictionary passed in:

# %%
head, _ = read_head(b"GET http://example.org/caf%C3%A9?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                    8190, 16384, 10**6)
build_scope(head, ("127.0.0.1", 50000), ("127.0.0.1", 8000), {"pool": "shared"})

# %% [markdown]
# `path` is `/café`, ready for a router; `raw_path` still has `%C3%A9`, and the scheme and
# host of the absolute-form target are gone from both. Compared with the naive scope at
# the top of the chapter, three things are new: `spec_version` in `asgi`, the decoded
# `path`, and `state`.

# %% [markdown]
# ## `receive()`: the body, as the app asks for it
#
# One request and its response are an *exchange*. An `Exchange` holds the request's
# `Head`, its scope, and the state of both directions; its `receive` and `send` methods are
# what the app is called with. Its connection (built further down) owns the socket's
# `reader` and `writer` and a `buffer` of bytes read but not yet used.
#
# Read `__init__` as a list of the questions the server keeps asking. On the request side:
# how much body is left, and has the app had all of it (`body_done`)? On the response
# side: what status did the app choose, has the head gone out (`head_sent`), is the
# response over (`complete`), is it chunked, how many bytes does a `Content-Length` still
# promise (`left`), and must the connection close afterwards? Each one is set by a method
# below.

# %%
#| export
class Exchange:
    """One request and its response: the ``receive`` and ``send`` an app is called with."""

    def __init__(self, connection, head: Head, scope: dict):
        self.connection, self.head, self.scope = connection, head, scope
        # the request: bytes still to read (or a ChunkedDecoder), and how far it got
        self.body, self.body_done, self.continue_sent = head.length, False, False
        self.client_gone = False           # the client closed its side
        # the response: what the app sent, and how it is framed on the wire
        self.status = self.response_headers = self.left = None
        self.head_sent = self.complete = self.chunked = False
        self.close = not head.keep_alive   # close the connection after this response
        self.body_bytes, self.started = 0, time.perf_counter()
        self._wakeup = None

# %% [markdown]
# The spec gives `receive()` two kinds of answer. While there is body to deliver, it returns
# `http.request` events, the last one with `more_body: False` (a request with no body gets
# one event with an empty body). After that, it returns `http.disconnect`: at once if the
# response is already complete, the client is gone or the server is stopping, otherwise as
# soon as one of those happens. Until then it blocks, which is how a long-polling app learns
# that nobody is listening any more.

# %%
#| export
DISCONNECT = {"type": "http.disconnect"}

async def receive(self) -> dict:
    if self.complete or self.client_gone or self.connection.stopping:
        return DISCONNECT
    if not self.body_done:
        return await self._read_body()
    await self._wait_for_disconnect()
    return DISCONNECT

Exchange.receive = receive

# %% [markdown]
# (`Exchange.receive = receive` is the attaching trick from `NaiveServer.stop`: one method
# per cell, so that each gets its own explanation.)
#
# `_take_body` hands over body bytes that are already in the buffer. With `Content-Length`
# it counts down; with chunked framing it lets chapter 02's `ChunkedDecoder` find the
# chunks, takes the decoded data, and cuts the consumed bytes off the buffer. A malformed
# chunk raises `HTTPError`, as in chapter 02.
#
# Recall the decoder's three parts: `advance(buffer)` parses as many whole chunks as the
# buffer holds and returns `None` until it has seen the last one; `parts` collects the
# decoded data; `pos` is how far into the buffer it has parsed. Since the consumed bytes
# are cut off here, `pos` goes back to 0 for the next call. In the counted branch, the
# `if` in the slicing line saves one copy in the common case where the buffer holds
# nothing but body.

# %%
#| export
def _take_body(self) -> tuple[bytes, bool]:
    """Body bytes already in the buffer, and whether the body is complete."""
    buffer = self.connection.buffer
    if isinstance(self.body, int):
        size = min(len(buffer), self.body)
        data = bytes(buffer[:size]) if size < len(buffer) else bytes(buffer)
        del buffer[:size]
        self.body -= size
        return data, self.body == 0
    end = self.body.advance(buffer)          # may raise HTTPError: a malformed chunk
    data = b"".join(self.body.parts)
    self.body.parts.clear()
    del buffer[:self.body.pos]
    self.body.pos = 0
    return data, end is not None

Exchange._take_body = _take_body

# %% [markdown]
# You can try it without a socket: a stand-in connection with just a buffer is enough. A
# chunked body arrives in two pieces; each call takes what is there and says whether the
# body is complete. The first piece ends in the middle of the second chunk, so only `abc`
# comes out of it:

# %%
from types import SimpleNamespace

head, start = read_head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                        8190, 16384, 10**6)
stand_in = SimpleNamespace(buffer=bytearray(b"3\r\nabc\r\n4\r\nde"))
exchange = Exchange(stand_in, head, {})
first = exchange._take_body()
stand_in.buffer += b"fg\r\n0\r\n\r\n"
first, exchange._take_body(), stand_in.buffer

# %% [markdown]
# Read the output pair by pair. The first call found one whole chunk (`abc`) and half of
# the next, took the whole one, and said "not done". The second call, with the rest of
# the bytes in, took `defg`, saw the last-chunk marker `0\r\n\r\n`, and said "done". The
# buffer is empty: every byte of the body was consumed, so a pipelined request behind it
# would start at byte 0.

# %% [markdown]
# `_read_body` turns that into `http.request` events. If the buffer holds nothing yet, it
# reads more from the socket, but only now, because the app asked: a server that read the
# whole upload first would hold it all in memory, and an app that refuses it (401, 413)
# would have paid for it anyway. This is the reading half of *flow control*: the client
# can only send as fast as the app consumes, since the operating system's buffers fill up
# and TCP tells the client to wait.
#
# One more duty comes first: the `100 Continue` goes out on the first read, because only
# now does the server know the app wants the body. An app that never reads it never makes
# the client send it.

# %%
#| export
def _send_continue(self) -> None:
    """RFC 9110 §10.1.1: the app wants the body, so the client may now send it."""
    if self.head.expect_continue and not self.continue_sent:
        self.continue_sent = True
        self.connection.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

Exchange._send_continue = _send_continue

# %% [markdown]
# `100 Continue` is an *interim* response: a status line and an empty line, no headers, no
# body. The real response comes later on the same connection, so it does not change
# anything the framing code decides.
#
# The loop itself starts by calling it, then takes what the buffer holds. If that is some
# data, or the end, it goes out as one event; otherwise the loop reads more and tries
# again.

# %%
#| export
async def _read_body(self) -> dict:
    self._send_continue()
    while True:
        try:
            data, done = self._take_body()
        except HTTPError as error:
            await self._refuse(error.status, error.message)
            return DISCONNECT
        if data or done:
            self.body_done = done
            return {"type": "http.request", "body": data, "more_body": not done}
        more = await self._read_more(BODY_TIMEOUT)
        if not more:
            return await self._body_stopped(more)
        self.connection.buffer += more

Exchange._read_body = _read_body

# %% [markdown]
# A malformed chunk is refused with its status code (`_refuse` comes later), and the app
# hears `http.disconnect`: the body it was reading will never be complete.
#
# When a read brings nothing, there are two cases. `b""` means the client closed its side:
# it is gone, and the app should stop. `None` means nobody sent a byte for `BODY_TIMEOUT`
# seconds (or the server is stopping and woke the read): a stalled upload gets
# `408 Request Timeout` (RFC 9110 §15.5.9). Either way the app gets `http.disconnect`.

# %%
#| export
async def _body_stopped(self, more: bytes | None) -> dict:
    if more is None and not self.connection.stopping:
        await self._refuse(408, f"no request body bytes for {BODY_TIMEOUT:g}s "
                                "(RFC 9110 §15.5.9)")
    self.client_gone = more == b""
    return DISCONNECT

Exchange._body_stopped = _body_stopped

# %% [markdown]
# `_read_more` reads from the socket but must also give up when something else happens: a
# timeout, the response completing, the server stopping. So it waits for whichever comes
# first, the read or a *wake-up* future.
#
# A *future* is a box for a result that is not there yet; `await`ing it pauses until
# someone puts a result in. `_wake` makes the exchange's box, only when someone waits,
# since most requests never need it. `wake_up` fills it, and every wait on it ends.

# %%
#| export
def _wake(self) -> asyncio.Future:
    if self._wakeup is None:
        self._wakeup = asyncio.get_running_loop().create_future()
    return self._wakeup

def wake_up(self) -> None:
    if self._wakeup is not None and not self._wakeup.done():
        self._wakeup.set_result(None)

Exchange._wake, Exchange.wake_up = _wake, wake_up

# %% [markdown]
# `_read_more` races a socket read against that future with `asyncio.wait(...,
# return_when=FIRST_COMPLETED)`. It returns bytes, `b""` when the client closed the
# connection, or `None` when it timed out or was woken. Cancelling the losing read is safe:
# the stream keeps any bytes that arrive for the next `read()`.

# %%
#| export
async def _read_more(self, timeout: float | None) -> bytes | None:
    """Bytes from the socket; b"" if the client closed; None on timeout or a wake-up."""
    read = asyncio.ensure_future(self.connection.reader.read(READ_SIZE))
    done, _ = await asyncio.wait((read, self._wake()), timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if read not in done:
        read.cancel()                          # safe: read() keeps unread bytes buffered
        return None
    try:
        return read.result()
    except OSError:
        return b""

Exchange._read_more = _read_more

# %% [markdown]
# Why not `asyncio.wait_for(reader.read(...), timeout)`? It handles the timeout but not
# the wake-up: when the response completes, a `receive()` blocked in a read must return
# at once, not `BODY_TIMEOUT` seconds later. Waiting for whichever of two things happens
# first is what `asyncio.wait` is for.
#
# Once the body is done, `receive()` waits for the disconnect. The only way to notice that a
# client went away is to read from its socket and get `b""` (end of file). Bytes that do
# arrive meanwhile are the next pipelined request: they go into the buffer for later, up to
# a limit, after which the server stops reading and just waits to be woken.
#
# Why a limit? A client could pipeline request after request while the app is still busy
# with the first one, and every byte read would sit in memory. Past `max_header_bytes`
# the server stops reading, the operating system's buffers fill, and TCP makes the client
# wait, the same flow control as for a body nobody reads.

# %%
#| export
async def _wait_for_disconnect(self) -> None:
    """Block until the client goes away, the response is complete or the server stops."""
    buffer = self.connection.buffer
    while not (self.complete or self.connection.stopping):
        if len(buffer) > self.connection.server.max_header_bytes:
            await self._wake()                 # buffered enough: stop reading
            return
        more = await self._read_more(None)
        if more is None:
            return
        if not more:
            self.client_gone = True
            return
        buffer += more

Exchange._wait_for_disconnect = _wait_for_disconnect

# %% [markdown]
# That completes `receive()`. Here is every path through it, with the method that takes
# each one:
#
# ```mermaid
# flowchart TD
#     R["receive()"] --> Q{"response complete, client gone,<br/>or server stopping?"}
#     Q -- yes --> D["http.disconnect"]
#     Q -- no --> B{"body all delivered?"}
#     B -- no --> RB["_read_body: take from the buffer,<br/>or _read_more (BODY_TIMEOUT)"]
#     RB --> E["http.request"]
#     RB -- "client left, timeout, bad chunk" --> D
#     B -- yes --> W["_wait_for_disconnect: read until<br/>end of file or a wake-up"] --> D
# ```
#
# Only the left branch reads request bytes for the app. The right one reads too, but only
# to notice a client that leaves, and it keeps whatever arrives for the next request.

# %% [markdown]
# ## `send()`: framing the response
#
# The app's `http.response.start` carries a status and headers; the server keeps them and
# writes nothing yet. Holding the head until the first body message lets the server pick
# the best framing: when that first message is also the last, the size is known and the
# response gets a `Content-Length`, in one write.
#
# First, the checks. The spec says what the message must look like, and a server that
# accepts anything teaches apps bad habits that break on the next server. Each error names
# the rule.

# %%
#| export
def _start(self, message: dict) -> None:
    if self.status is not None:
        raise RuntimeError("ASGI HTTP spec: 'http.response.start' is sent once, "
                           "and it was already sent")
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"ASGI HTTP spec: 'status' is an int final status code "
                         f"(200-599), got {status!r}")
    headers = message.get("headers", [])
    for pair in headers:
        if len(pair) != 2 or type(pair[0]) is not bytes or type(pair[1]) is not bytes:
            raise TypeError("ASGI HTTP spec: 'headers' is an iterable of [name, value] "
                            f"byte strings, got {pair!r}")
    self.status, self.response_headers = status, headers

Exchange._start = _start

# %% [markdown]
# A common slip: the status as a string, the way it looks in the status line. A stand-in
# connection is enough to try it, since `_start` touches no socket:

# %%
exchange = Exchange(SimpleNamespace(buffer=bytearray()), head, {})
try:
    exchange._start({"type": "http.response.start", "status": "200"})
except ValueError as error:
    print(error)

# %% [markdown]
# The message names the spec, the key, what it must be, and what it got: everything you
# need to fix the app, without reading the server's code.
#
# The other rule is the order of messages: one start, then body messages, the last with
# `more_body: False`, then nothing. `_check_order` enforces it for every message `send`
# gets.

# %%
#| export
def _check_order(self, kind: str) -> None:
    if kind == "http.response.start":
        return                                 # _start refuses a second one
    if kind != "http.response.body":
        raise RuntimeError(f"ASGI HTTP spec: an http app sends 'http.response.start' "
                           f"and 'http.response.body', not {kind!r}")
    if self.status is None:
        raise RuntimeError("ASGI HTTP spec: 'http.response.body' before 'http.response.start'")
    if self.complete:
        raise RuntimeError("ASGI HTTP spec: 'http.response.body' after the response ended "
                           "(more_body was False)")

Exchange._check_order = _check_order

# %% [markdown]
# The exchange above never got a valid start (its status is still `None`), so a body
# message is out of order, and so is a message type that HTTP does not have:

# %%
for kind in ("http.response.body", "websocket.send"):
    try:
        exchange._check_order(kind)
    except RuntimeError as error:
        print(error)

# %% [markdown]
# Both are bugs in the app, and both are raised inside the app's own `await send(...)`,
# so its traceback points at the line that sent the message.

# %% [markdown]
# Now `send` itself, in three steps. It checks the message; then it refuses to go on for a
# client that is gone, raising `ClientDisconnected`, the `OSError` the spec asks for (a
# mistake in the order is reported first: it is a bug whether or not anyone is listening);
# then, for a body message, it frames the bytes with `_frame` and writes them with
# `_write`, both coming next.

# %%
#| export
async def send(self, message: dict) -> None:
    kind = message["type"]
    self._check_order(kind)
    if kind == "http.response.start":
        self._start(message)
    if self.client_gone or self.connection.writer.transport.is_closing():
        raise ClientDisconnected("the client closed the connection")
    if kind == "http.response.body":
        more = message.get("more_body", False)
        await self._write(self._frame(message.get("body", b""), more), more)

Exchange.send = send

# %% [markdown]
# `_write` is the part that touches the socket, and its key line is `await
# writer.drain()`, the writing half of flow control. `writer.write` never blocks: it puts
# bytes in a buffer in front of the socket. If the client reads slowly, that buffer grows;
# `drain()` pauses the app until it is back under a limit. Without it, an app streaming a
# large file to a slow client would hold the whole file in memory.
#
# A `ConnectionError` from `drain()` means the client vanished mid-response; the app hears
# about it as `ClientDisconnected`. When the response is complete, `_write` wakes a
# `receive()` that may be waiting, so that it returns `http.disconnect` and the app can
# finish. And the log line is written just *before* the last bytes: the moment the client
# has its response, `server.log` already shows it.

# %%
#| export
async def _write(self, data: bytes, more: bool) -> None:
    writer = self.connection.writer
    if not more:
        self._log(self.status)                 # just before the last bytes leave
    if data:
        writer.write(data)
        try:
            await writer.drain()               # backpressure: wait while the client is slow
        except ConnectionError as exc:
            self.client_gone = True
            raise ClientDisconnected("the client closed the connection") from exc
    if not more:
        self.wake_up()

Exchange._write = _write

# %% [markdown]
# Now the framing: how will the client know where the body ends? RFC 9112 §6.3 lists the
# ways, and the server picks one when the first body message arrives:
#
# ```mermaid
# flowchart TD
#     A{"HEAD, 204 or 304?"} -- yes --> N["no body at all<br/>(keep the app's Content-Length, except on 204)"]
#     A -- no --> B{"app set Content-Length?"}
#     B -- yes --> L["use it, and count the bytes against it"]
#     B -- no --> C{"first body message is the last?"}
#     C -- yes --> M["Content-Length: len(body)"]
#     C -- no --> D{"HTTP/1.1 client?"}
#     D -- yes --> K["Transfer-Encoding: chunked"]
#     D -- no --> E["no length: close the connection to end the body"]
# ```
#
# An app may set `Transfer-Encoding: chunked` itself (some do, copying a proxied response).
# The server takes that as "please chunk" and chunks once: the app's body is data, never
# already-chunked bytes. Any other transfer coding is refused, and so is sending
# `Content-Length` and `Transfer-Encoding` together, which RFC 9112 §6.2 forbids.

# `_app_fields` reads the app's headers once and pulls out what matters for framing: its
# `Content-Length`, its `Transfer-Encoding` (dropped from the list: the server adds its
# own), and a `Connection: close`, which the server must honour.

# %%
#| export
def _app_fields(self) -> tuple[list, bytes | None, bytes | None]:
    """The app's headers without Transfer-Encoding; its Content-Length and its codings."""
    headers, length, codings = [], None, None
    for name, value in self.response_headers:
        lower = name.lower()
        if lower == b"content-length":
            length = value
        elif lower == b"transfer-encoding":
            codings = value
            continue                           # the server does the chunking, once
        elif lower == b"connection" and b"close" in value.lower():
            self.close = True
        headers.append((name, value))
    return headers, length, codings

Exchange._app_fields = _app_fields

# %% [markdown]
# `_framing` applies the two rules about the app's own framing headers, then hands over to
# `_frame_rules`, the flowchart.

# %%
#| export
def _framing(self, first_body: bytes, more: bool) -> list:
    """Decide how the body is delimited (RFC 9112 §6.3) and return the head's fields."""
    headers, length, codings = self._app_fields()
    if codings is not None and codings.strip().lower() != b"chunked":
        raise RuntimeError(f"the server frames the body; an app may only ask for chunked, "
                           f"not Transfer-Encoding {codings!r} (RFC 9112 §6.1)")
    if codings is not None and length is not None:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        length = None                          # RFC 9112 §6.2: never both
    return self._frame_rules(headers, length, first_body, more)

Exchange._framing = _framing

# %% [markdown]
# `_frame_rules` is the flowchart as code. `self.left` remembers how many bytes a
# `Content-Length` still promises, so the server can catch an app that sends more or less
# than it announced: either would corrupt every later response on the connection. A
# `HEAD` response keeps the length the app announced, or gets the length of the body the
# app would have sent, so the client learns the size without the bytes.

# %%
#| export
def _frame_rules(self, headers, length, first_body: bytes, more: bool) -> list:
    bodyless = self.head.method == "HEAD" or self.status in (204, 304)
    if self.status == 204 and length is not None:       # RFC 9110 §8.6
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    elif length is not None:
        if not length.isdigit():
            raise ValueError(f"Content-Length {length!r} is not a number (RFC 9110 §8.6)")
        self.left = None if bodyless else int(length)
    elif not more and (not bodyless or (self.head.method == "HEAD" and first_body)):
        headers.append((b"content-length", b"%d" % len(first_body)))
        self.left = None if bodyless else len(first_body)
    elif not bodyless and self.head.version == b"1.1":
        headers.append((b"transfer-encoding", b"chunked"))
        self.chunked = True
    elif not bodyless:
        self.close = True                      # HTTP/1.0: the body ends when we close
    return headers

Exchange._frame_rules = _frame_rules

# %% [markdown]
# Read the branches in order; they are the flowchart's boxes from top to bottom. A 204
# drops any length. A length from the app is checked and becomes the count to hold it to.
# A first message that is also the last gets a computed length. A streamed body to an
# HTTP/1.1 client is chunked. What is left, a stream to an HTTP/1.0 client, can only end
# with a close.
#
# Last, the fields about the connection itself. The response says `Connection: close` when
# this is the connection's last response (RFC 9112 §9.6), and `Connection: keep-alive` to an
# HTTP/1.0 client that asked to stay. It must also close after a request whose body the app
# did not read and that is not already in the buffer: the server cannot tell where the next
# request starts without reading the body, and reading a body nobody wants (maybe
# gigabytes, maybe never sent after an unanswered `Expect: 100-continue`) is worse than a
# new connection.

# %%
#| export
def _connection_fields(self, headers: list) -> list:
    unread = not self.body_done and not (isinstance(self.body, int)
                                         and self.body <= len(self.connection.buffer))
    if unread or self.connection.stopping:
        self.close = True
    if self.close and not any(n.lower() == b"connection" for n, _ in headers):
        headers.append((b"connection", b"close"))
    elif not self.close and self.head.version == b"1.0":
        headers.append((b"connection", b"keep-alive"))
    if not any(n.lower() == b"date" for n, _ in headers):
        headers.append((b"date", http_date()))
    return headers

Exchange._connection_fields = _connection_fields

# %% [markdown]
# Each field is added only if the app did not set it: an app that sends its own `Date` or
# `Connection: close` keeps it. The server only fills the gaps that HTTP requires.
#
# A `Content-Length` is a promise, and `_count` holds the app to it. One byte too many and
# the client reads it as the start of the next response; one too few and the client waits
# for a byte that never comes. Either is a bug in the app, raised where it happens.

# %%
#| export
def _count(self, body: bytes, more: bool) -> None:
    self.left -= len(body)
    if self.left < 0:
        raise RuntimeError(f"the app sent {-self.left} bytes more than its "
                           "Content-Length (RFC 9112 §6.3)")
    if not more and self.left > 0:
        raise RuntimeError(f"the response ended {self.left} bytes short of its "
                           "Content-Length (RFC 9112 §6.3)")

Exchange._count = _count

# %% [markdown]
# `_frame` puts it together: the head on the first body message (chapter 02's
# `format_response_head` refuses header values with CR or LF, so an app cannot inject a
# header), then the body, dropped for bodyless responses, counted against a
# `Content-Length`, or wrapped as a chunk: size in hex, CRLF, data, CRLF, and `0\r\n\r\n`
# after the last one (RFC 9112 §7.1). An empty body message writes no chunk, because an
# empty chunk would mean "the end".

# %%
#| export
def _frame(self, body: bytes, more: bool) -> bytes:
    """The bytes one http.response.body message puts on the wire."""
    out = b""
    if not self.head_sent:
        headers = self._connection_fields(self._framing(body, more))
        out = format_response_head(self.status, headers)
    if self.head.method == "HEAD" or self.status in (204, 304):
        body = b""
    elif self.left is not None:
        self._count(body, more)
    self.body_bytes += len(body)
    if self.chunked:
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + \
               (b"" if more else b"0\r\n\r\n")
    self.head_sent, self.complete = True, not more
    return out + body

Exchange._frame = _frame

# %% [markdown]
# Again, no socket needed to see it work. `framed` feeds messages to `_start` and `_frame`
# on a stand-in connection and returns the bytes they produce. One message with the whole
# body gets a `Content-Length`:

# %%
def framed(method, status, headers, *bodies, version=b"1.1"):
    data = b"%s / HTTP/%s\r\nHost: x\r\n\r\n" % (method, version)
    head, _ = read_head(data, 8190, 16384, 10**6)
    exchange = Exchange(SimpleNamespace(buffer=bytearray(), stopping=False), head, {})
    exchange.body_done = True                  # as if the app had read the (empty) body
    exchange._start({"status": status, "headers": headers})
    return show_bytes(b"".join(exchange._frame(body, i < len(bodies) - 1)
                               for i, body in enumerate(bodies)))

framed(b"GET", 200, [(b"content-type", b"text/plain")], b"hello")

# %% [markdown]
# The app's `content-type` first, then the two fields the server added: `content-length:
# 5`, computed from the only body message, and `date`. Head and body leave in one write.
#
# Now an app that sets `Transfer-Encoding: chunked` itself and sends two pieces and an empty
# last message. Each piece becomes one chunk (size `2`, two bytes, CRLF), the empty last
# message becomes the marker `0\r\n\r\n`, and the header appears once. Chunked twice, the
# first chunk would read `5\r\n2\r\n3\n\r\n...`:

# %%
framed(b"GET", 200, [(b"transfer-encoding", b"chunked")], b"3\n", b"2\n", b"")

# %% [markdown]
# For `HEAD` the body goes, the length stays; a 204 loses both; an HTTP/1.0 client gets a
# streamed body with no framing and `Connection: close`, since it may not know chunking:

# %%
show_transcript([
    ("HEAD", framed(b"HEAD", 200, [], b"hello")),
    ("204", framed(b"GET", 204, [(b"content-length", b"5")], b"hello")),
    ("HTTP/1.0 stream", framed(b"GET", 200, [], b"a", b"b", b"", version=b"1.0")),
])

# %% [markdown]
# Row by row: the `HEAD` response says `content-length: 5` and sends nothing after the
# empty line. The 204 lost the app's `content-length: 5` as well as the body, because
# RFC 9110 §8.6 forbids the field on a 204. The HTTP/1.0 stream is just `ab` after the
# head: no length, no chunks, and `connection: close`, so the close marks the end.

# %% [markdown]
# ## When the app fails
#
# `run` calls the app and makes sure the client gets *something* whatever happens. ASGI
# leaves the details to the server, and servers agree on them: if the app raises before
# the response started, answer 500; after that, all the server can do is close the
# connection, so that the client sees the response is cut short (a chunked body without its last chunk, or fewer bytes than
# `Content-Length`). This server holds the head until the first body message, so "started"
# means "a byte went out": an app that fails between `http.response.start` and its first
# body still gets a clean 500.
#
# An exception caused by a client that went away is not the app's fault, so the log
# records it as information, not as an error. The spec says as much about
# `ClientDisconnected`: a server that raised it "should not log it as an error".

# %%
#| export
async def run(self) -> None:
    """Call the app; whatever it does, the client gets a response or a closed connection."""
    server = self.connection.server
    try:
        await server.app(self.scope, self.receive, self.send)
    except Exception as exc:
        if self.client_gone or isinstance(exc, ClientDisconnected):
            server.log.info(f"the client went away ({type(exc).__name__})")
        else:
            server.log.error(f"Exception in ASGI application ({self._request_line()})", exc)
        await self._refuse(500, "Internal Server Error")
    else:
        if not self.complete:
            await self._unfinished()

Exchange.run = run

# %% [markdown]
# An app that returns without finishing its response is an error too, also answered with a
# 500. The exception: a long poll that returns without an answer once its client left did
# the right thing, and gets an information line.

# %%
#| export
async def _unfinished(self) -> None:
    where = "starting" if self.status is None else "finishing"
    message = f"ASGI callable returned without {where} the response"
    if self.client_gone:                       # a long poll whose client gave up: fine
        self.connection.server.log.info(
            f"{message}; the client had gone ({self._request_line()})")
    else:
        self.connection.server.log.error(f"{message} ({self._request_line()})")
    await self._refuse(500, "Internal Server Error")

Exchange._unfinished = _unfinished

# %% [markdown]
# `_refuse` is the one place where the server answers instead of the app: for a 500, a
# malformed chunk, a body timeout. If no byte went out yet, it writes the error response;
# otherwise it only logs the response that was cut short. Either way the connection closes.
# The message sent to the client is generic: a traceback would tell an attacker about your
# code. The traceback goes to the server log instead.

# %%
#| export
async def _refuse(self, status: int, message: str) -> None:
    """Answer ``status`` ourselves if no byte of a response went out yet; close either way."""
    self.close = True
    if self.complete:
        return
    self.complete = True
    writer = self.connection.writer
    if self.head_sent or self.client_gone or writer.transport.is_closing():
        self._log(self.status or status)       # a response cut short: the close says so
        return
    self.head_sent = True
    data = error_response(status, message, head_only=self.head.method == "HEAD")
    self.body_bytes = len(message) + 1
    self._log(status)
    writer.write(data)

Exchange._refuse = _refuse

# %% [markdown]
# Two small helpers for the log: the request line as text, and one `REQUEST` entry with
# client, method, target, version, status, body size and duration, the line you have seen
# in every `server.log` of the course.

# %%
#| export
def _request_line(self) -> str:
    return f"{self.head.method} {self.head.target.decode('latin-1')}"

def _log(self, status: int) -> None:
    self.connection.server.log.request(
        self.scope["client"], self.head.method, self.head.target.decode("latin-1"),
        self.scope["http_version"], status, self.body_bytes, time.perf_counter() - self.started)

Exchange._request_line, Exchange._log = _request_line, _log

# %% [markdown]
# Here is what those four methods add up to, case by case:
#
# | what happened | the client gets | the log says |
# | --- | --- | --- |
# | the app raised before any byte went out | `500 Internal Server Error`, then a close | an error, with the traceback |
# | the app raised after the head went out | the response cut short by a close | an error, with the traceback |
# | the app returned without finishing | a 500 if nothing went out, else a cut | an error naming what was missing |
# | `send()` found the client gone | nothing: nobody is listening | an information line |
# | a long poll returned after its client left | nothing | an information line |
#
# You will see the first, second and fourth rows happen on a real socket later.

# %% [markdown]
# ## The connection loop
#
# A `Connection` serves one TCP connection: read a head, run an exchange, and again while
# both sides want to keep the connection. It owns the stream `reader` and `writer` that
# `asyncio.start_server` hands over, and the `buffer` of bytes read but not used yet (the
# rest of a body, or pipelined requests).
#
# `client` and `sockname` are the two ends of the TCP connection as (host, port), the
# `client` and `server` of every scope. `exchange` is the request being served, or `None`
# between requests.

# %%
#| export
class Connection:
    """One TCP connection: request after request until either side closes it."""

    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer
        self.buffer = bytearray()
        self.client = writer.get_extra_info("peername")[:2]
        self.sockname = writer.get_extra_info("sockname")[:2]
        self.exchange = None
        self.stopping = False

# %% [markdown]
# `shutdown()` is called when the server stops, and `exchange` tells it what to do. An idle
# connection (between two requests) closes at once. A busy one finishes its response
# first: its exchange is woken, so an app waiting in `receive()` gets `http.disconnect`,
# and the response will say `Connection: close`.

# %%
#| export
def shutdown_connection(self) -> None:
    """The server is stopping: an idle connection closes now, a busy one after its response."""
    self.stopping = True
    if self.exchange is None:
        self.writer.close()
    else:
        self.exchange.wake_up()

Connection.shutdown = shutdown_connection

# %% [markdown]
# The loop itself is `Connection.run` (written as `serve_connection`, then attached): get
# the next head, serve it, and go round again while `_exchange` says the connection can
# carry another request. Whatever goes wrong inside, the `finally` closes the socket, so a
# bug in the server costs one connection, never a hung client.

# %%
#| export
async def serve_connection(self) -> None:
    try:
        while not self.stopping:
            head = await self._next_head()
            if head is None or not await self._exchange(head):
                break
    except Exception as exc:                  # a bug here must end this connection, visibly
        self.server.log.error("connection handler failed", exc)
    finally:
        self.writer.close()

Connection.run = serve_connection

# %% [markdown]
# `_next_head` parses what is in the buffer and reads more until a head is complete. A
# malformed head is refused with its status code. The wait has two limits: an idle
# connection (nothing in the buffer but the empty lines RFC 9112 §2.2 allows between
# requests) waits `keep_alive_timeout` seconds, a head that has started `HEAD_TIMEOUT`.
# `self.buffer.strip(b"\r\n")` is the test: if anything is left after stripping the
# empty lines, a head has started.

# %%
#| export
async def _next_head(self) -> Head | None:
    """The next request head from the buffer and the socket; None to close the connection."""
    while True:
        try:
            head = self._parse_head()
        except HTTPError as error:
            await self._reject(error.status, error.message)
            return None
        if head is not None:
            return head
        started = bool(self.buffer.strip(b"\r\n"))
        data = await self._read(HEAD_TIMEOUT if started else self.server.keep_alive_timeout)
        if not data:
            return None
        self.buffer += data

Connection._next_head = _next_head

# %% [markdown]
# `_parse_head` is `read_head` with the server's limits, plus one step: a complete head is
# cut off the front of the buffer, so the buffer now starts with the body, or the next
# request.

# %%
#| export
def _parse_head(self) -> Head | None:
    server = self.server
    parsed = read_head(self.buffer, server.max_line, server.max_header_bytes,
                       server.max_body_bytes)
    if parsed is None:
        return None
    head, body_start = parsed
    del self.buffer[:body_start]
    return head

Connection._parse_head = _parse_head

# %% [markdown]
# This read is the server's hottest wait: every request on a kept-alive connection starts
# with it. A timeout made with `asyncio.wait_for` would create a task per read; a *timer*
# (`loop.call_later`) is cheaper. When it fires, it answers 408 if a head had started, and
# closes the connection, which makes the pending `read()` return `b""`.

# %%
#| export
async def _read(self, timeout: float) -> bytes:
    """Read with a timer, not a task: when it fires, answer 408 (if a head had started)."""
    timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
    try:
        return await self.reader.read(READ_SIZE)
    except OSError:
        return b""
    finally:
        timer.cancel()

def _timed_out(self) -> None:
    if self.buffer.strip(b"\r\n"):
        self.writer.write(error_response(408, "the request head did not arrive in time "
                                              f"({HEAD_TIMEOUT:g}s, RFC 9110 §15.5.9)"))
    self.writer.close()

Connection._read, Connection._timed_out = _read, _timed_out

# %% [markdown]
# The timer's callback cannot `await`, since it is a plain function the loop calls. That
# is fine: `writer.write` only queues the 408 in asyncio's buffer, and `writer.close()`
# sends it before the socket closes.
#
# `_reject` answers a request the server could not even parse, logs it (there is no method
# or target to log), and closes. Closing has a trap of its own. If the client is still
# sending (the rest of a too-large body, say) and the server closes with unread bytes in its
# receive buffer, the operating system sends a *reset*, and the client may lose the error
# response before reading it. So `_linger` closes the writing side first (`write_eof`),
# drops what still arrives for a moment, and only then lets the socket close.

# %%
#| export
async def _reject(self, status: int, message: str) -> None:
    """Refuse a request we could not parse: a 4xx/5xx, then close (RFC 9112 §9.6)."""
    self.server.log.request(self.client, "-", "-", "1.1", status, len(message) + 1, 0.0)
    self.writer.write(error_response(status, message))
    await self._linger()

async def _linger(self) -> None:
    """Close our side, then drop what the client still sends for a moment, so our answer
    is read before the close (an unread byte would turn the close into a reset)."""
    try:
        self.writer.write_eof()
        await asyncio.wait_for(self.reader.read(1 << 20), 0.2)
    except (OSError, asyncio.TimeoutError):
        pass

Connection._reject, Connection._linger = _reject, _linger

# %% [markdown]
# `_exchange` serves one request inside `log.in_flight()`, barelab's way of saying "a
# response is on its way": a cell that asks for `server.log` right after a response arrived
# waits for its log line instead of showing a log one line short. Then it decides whether
# the connection goes on. A small body the app left unread is already in the buffer: it is
# skipped, so the next request starts at the right byte. `build_scope` can still refuse
# the request: that is where `split_target`'s 400 for an authority-form target comes out.

# %%
#| export
async def _exchange(self, head: Head) -> bool:
    """Serve one request; True if the connection can carry another."""
    server = self.server
    with server.log.in_flight():
        try:
            scope = build_scope(head, self.client, self.sockname, server.state)
        except HTTPError as error:
            await self._reject(error.status, error.message)
            return False
        exchange = self.exchange = Exchange(self, head, scope)
        await exchange.run()
        self.exchange = None
    return await self._carry_on(exchange)

Connection._exchange = _exchange

# %% [markdown]
# After the response, the connection goes on only if nobody asked to close it and the
# client is still there. When the server closes, it lingers first, as for a rejected
# request. A body the app did not read can only be skipped if it is already in the buffer
# (`_connection_fields` made sure of that, or said `Connection: close`).

# %%
#| export
async def _carry_on(self, exchange: Exchange) -> bool:
    if exchange.close or exchange.client_gone:
        if not exchange.client_gone:
            await self._linger()
        return False
    if not exchange.body_done:                 # unread, but all in the buffer: skip it
        del self.buffer[:exchange.body]
    return True

Connection._carry_on = _carry_on

# %% [markdown]
# For a counted body, `exchange.body` is the number of body bytes still unread, so
# deleting that many from the front of the buffer leaves the next request there.
#
# The whole life of a connection, with the method for each step:
#
# ```mermaid
# flowchart TD
#     N["_next_head()"] -- "None: timeout, end of file,<br/>or a 4xx already sent" --> X["close the socket"]
#     N -- "a Head" --> E["_exchange(head): build the scope,<br/>run an Exchange"]
#     E --> C{"_carry_on: close asked,<br/>or client gone?"}
#     C -- yes --> L["_linger, then close"]
#     C -- no --> S["skip an unread body<br/>already in the buffer"] --> N
# ```
#
# Every way out ends in the `finally` of `serve_connection`, which closes the writer. The
# only way round is a response that both sides agreed to follow with another request.

# %% [markdown]
# ## Lifespan
#
# The ASGI lifespan protocol runs beside the connections. At startup the server calls the
# app once with a `lifespan` scope and keeps that call running for its whole life. It sends
# `lifespan.startup` and waits for `lifespan.startup.complete` before it serves anyone; at
# stop it sends `lifespan.shutdown` and waits for `.complete`. Chapter 14 is about the app's
# side; here is the server's:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant A as app (lifespan scope)
#     S->>A: app({"type": "lifespan", "state": {}}, receive, send)
#     S->>A: lifespan.startup
#     A-->>S: lifespan.startup.complete (or .failed + message: stop)
#     Note over S: serve requests; each scope gets a copy of state
#     S->>A: lifespan.shutdown
#     A-->>S: lifespan.shutdown.complete
# ```
#
# The messages travel through two queues: `inbox` for the server's events, which is what
# the app's `receive()` reads, and `outbox` for the app's answers. The app's `send()` checks
# that an answer fits the phase, and raises if it does not.

# %%
#| export
class Lifespan:
    """The server side of the ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app, log, mode: str = "auto", timeout: float = 10.0):
        self.app, self.log, self.mode, self.timeout = app, log, mode, timeout
        self.state, self.phase = {}, "startup"
        self.supported = False
        self.task = self.error = None

# %% [markdown]
# `phase` says which answers the app may give next, `startup` until the startup completed
# and `shutdown` after. `supported` becomes `True` only once the app answered
# `lifespan.startup.complete`, and only then will the server send it `lifespan.shutdown`.
# `state` is the dictionary the app fills at startup, and every request gets a copy.
#
# `_run` is the app's lifespan call, run as a task of its own for the server's whole life.
# Its `receive` is `inbox.get`: the bound method of a queue is already a coroutine
# function without arguments, exactly the shape a `receive` must have. Its `send` is
# `_send`. An exception is kept rather than
# raised: the end of this task is itself the signal that the app does not speak lifespan.
# `_send` accepts only the two answers that fit the current phase, so an app that answers
# `lifespan.startup` with something else ends with an error quoting the spec.

# %%
#| export
async def _run(self, scope: dict) -> None:
    try:
        await self.app(scope, self.inbox.get, self._send)
    except Exception as exc:                   # kept: the task's end is the signal
        self.error = exc
        if self.supported:
            self.log.error("Exception in ASGI lifespan", exc)

async def _send(self, message: dict) -> None:
    expected = (f"lifespan.{self.phase}.complete", f"lifespan.{self.phase}.failed")
    if message.get("type") not in expected:
        raise RuntimeError(f"ASGI lifespan spec: expected {' or '.join(expected)}, "
                           f"got {message.get('type')!r}")
    await self.outbox.put(message)

Lifespan._run, Lifespan._send = _run, _send

# %% [markdown]
# Lifespan is optional for apps. The spec: "If an exception is raised when calling the
# application callable with a `lifespan.startup` message or a `scope` with type `lifespan`,
# the server must continue but not send any lifespan events." So the server waits for
# either an answer or the end of the app's task, whichever comes first. An app without
# lifespan support raises at once (many check `scope["type"]`; `hello` answers the startup
# event with `http.response.start`, which `_send` refuses), and the server starts at once.

# %%
#| export
async def _answer(self, timeout: float):
    """The app's next lifespan message; None if the app ended without one."""
    get = asyncio.ensure_future(self.outbox.get())
    done, _ = await asyncio.wait((get, self.task), timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if get in done:
        return get.result()
    get.cancel()
    if self.task.done():
        return None
    raise TimeoutError(f"the app did not answer the lifespan event within {timeout:g}s")

Lifespan._answer = _answer

# %% [markdown]
# So `_answer` has three results: a message, `None` for an app whose lifespan call has
# ended, and a `TimeoutError` for an app that speaks lifespan but hangs. The third is the
# app's bug, and the server will not start on it.
#
# `startup` follows the spec's three outcomes: no answer (the app does not speak
# lifespan: go on, unless `lifespan="on"` demanded it), `lifespan.startup.failed` (the
# server must not start: raise barelab's `LifespanStartupFailed` with the app's message,
# which `serve()` re-raises in your cell), and `.complete` (from now on, the state the app
# filled is copied into every request).

# %%
#| export
def _launch(self) -> None:
    """Start the app's lifespan call as a task, with the two queues it talks through."""
    self.inbox, self.outbox = asyncio.Queue(), asyncio.Queue()
    scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
    self.task = asyncio.get_running_loop().create_task(self._run(scope))

Lifespan._launch = _launch

# %% [markdown]
# With the task launched by `_launch`, `startup` sends the first event and reads the
# answer:

# %%
#| export
async def startup(self) -> None:
    """Send lifespan.startup; raise LifespanStartupFailed if the app says it failed."""
    if self.mode == "off":
        return
    self._launch()
    await self.inbox.put({"type": "lifespan.startup"})
    answer = await self._answer(self.timeout)
    if answer is None:
        if self.mode == "on":
            raise LifespanStartupFailed(f"the app does not support lifespan: {self.error!r}")
        self.log.info(f"lifespan not supported by the app ({self.error!r}); going on without")
        return
    if answer["type"] == "lifespan.startup.failed":
        raise LifespanStartupFailed(answer.get("message", ""))
    self.supported, self.phase = True, "shutdown"
    self.log.info("lifespan startup complete")

Lifespan.startup = startup

# %% [markdown]
# Each outcome leaves one line in the log, or one exception in your cell, so you can
# always tell afterwards which of the three happened. You will see all three at the end
# of the chapter.
#
# `shutdown` sends `lifespan.shutdown` only to an app whose startup completed, waits for the
# answer at most `timeout` seconds, logs it, and makes sure the app's lifespan task is over.

# %%
#| export
async def shutdown(self, timeout: float) -> None:
    """Send lifespan.shutdown (if startup completed) and wait for the answer."""
    if self.supported and not self.task.done():
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            answer = await self._answer(timeout)
        except TimeoutError as exc:
            answer = {"type": "lifespan.shutdown.failed", "message": str(exc)}
        kind = answer["type"] if answer else "no answer, the app returned"
        self.log.info(f"lifespan shutdown: {kind} {(answer or {}).get('message', '')}".rstrip())
    if self.task is not None and not self.task.done():
        self.task.cancel()
        await asyncio.wait((self.task,), timeout=1.0)

Lifespan.shutdown = shutdown

# %% [markdown]
# ## Its own loop, in its own thread
#
# The last piece is the engine that `barelab.serve` drives, like `NaiveServer` but careful.
# The options are the ones barelab's own ASGI engine takes: the lifespan mode and three
# limits. `max_line` (the request line, 414 above it) follows chapter 02's 8190 bytes.

# %%
#| export
class ASGIServer(Engine):
    """The course's ASGI server, as an engine barelab.serve(app, server=ASGIServer) drives."""

    kind = "asgi"
    connection_class = Connection   # made for each client; a subclass may plug in its own

    def __init__(self, app, sock, log, *, lifespan: str = "auto",
                 max_header_bytes: int = 16384, max_body_bytes: int = 8 * 1024 * 1024,
                 keep_alive_timeout: float = 5.0):
        super().__init__(app, sock, log, lifespan=lifespan, max_header_bytes=max_header_bytes,
                         max_body_bytes=max_body_bytes, keep_alive_timeout=keep_alive_timeout)
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan is 'auto', 'on' or 'off', not {lifespan!r}")
        self.max_line = min(8190, max_header_bytes)
        self.max_header_bytes, self.max_body_bytes = max_header_bytes, max_body_bytes
        self.keep_alive_timeout = keep_alive_timeout
        self.lifespan = Lifespan(app, log, lifespan)
        self.state = self.lifespan.state
        self.connections, self.tasks = set(), set()
        self.loop = self.thread = self.error = self._stop = None
        self.ready, self.stop_timeout = threading.Event(), 2.0

# %% [markdown]
# Every option also goes to `Engine.__init__`, which keeps them in `self.options`, one
# place to look up how this server was configured. `connections` and
# `tasks` start empty; `loop` and `thread` only exist once `start()` has run. And
# `connection_class` is `Connection`, the class from the previous section: a subclass
# that sets it to another class changes what serves each client, and nothing else.
#
# `start` and `stop` run in *your* thread, the kernel's. `start` launches the server's
# thread and waits until it is either serving or dead; an error raised over there (a
# failed lifespan startup) is re-raised here, in the cell that called `serve()`.

# %%
#| export
def start(self) -> None:
    """Serve in a thread of our own, on a loop of our own; return once ready, or raise."""
    self.thread = threading.Thread(target=self._thread_main, daemon=True,
                                   name=f"course-asgi-{self.sock.getsockname()[1]}")
    self.thread.start()
    self.ready.wait()                          # set when serving, or when the thread ends
    if self.error is not None:
        self.thread.join(5.0)
        self.sock.close()
        raise self.error

ASGIServer.start = start

# %% [markdown]
# `stop` must not poll. `loop.call_soon_threadsafe` is the one safe way to poke an event
# loop from another thread, as in `NaiveServer`: it schedules `self._stop.set()` on the
# server's loop and wakes it up at once. Then `stop` waits for the thread to end and closes
# the socket. It remembers the timeout, so that the graceful shutdown below can share it
# out.

# %%
#| export
def stop(self, timeout: float = 2.0) -> None:
    """Wake the loop (no polling), let it shut down, join the thread, close the socket."""
    self.stop_timeout = timeout
    if self.thread is not None and self.thread.is_alive():
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout + 2.0)
    self.sock.close()

ASGIServer.stop = stop

# %% [markdown]
# The thread's whole life: make a loop, run `_main` on it until it returns, cancel whatever
# is left, close the loop. An exception before the server was ready is kept for `start()`
# to raise; after that it goes to the log. `ready` is set in the `finally` as well, so
# `start()` can never wait forever.

# %%
#| export
def _thread_main(self) -> None:
    self.loop = loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(self._main())
    except Exception as exc:
        if self.ready.is_set():
            self.log.error("the server's loop failed", exc)
        else:
            self.error = exc                   # start() raises it in the caller's thread
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        self.ready.set()

ASGIServer._thread_main = _thread_main

# %% [markdown]
# The last `run_until_complete(asyncio.sleep(0))` gives the cancelled tasks one turn of
# the loop to run their `finally` blocks, which close their sockets, before the loop
# itself is closed.
#
# `_main` is the server's life on its loop: lifespan startup (clients that connect meanwhile
# wait in the listening socket's backlog), then `asyncio.start_server` on the socket barelab
# bound, then wait for `stop()`. Each accepted connection becomes a task the server keeps
# in a set, so it can find and finish it on stop.

# %%
#| export
async def _main(self) -> None:
    self._stop = asyncio.Event()
    await self.lifespan.startup()
    listener = await asyncio.start_server(self._accept, sock=self.sock)
    self.ready.set()
    await self._stop.wait()                    # set by stop(), from the caller's thread
    await self._shutdown(listener)

ASGIServer._main = _main

# %% [markdown]
# `_accept` is what `asyncio.start_server` calls for each new client: it wraps the
# connection in an instance of `self.connection_class` and runs it as a task. That class
# attribute is `Connection` here; it is the one hook a subclass needs to serve connections
# its own way, and chapter 15 uses it to add WebSockets without copying this code.
# `_track` keeps the connection in `self.connections` while it runs, so that `_shutdown`
# can tell each one to finish.

# %%
#| export
def _accept(self, reader, writer) -> None:
    connection = self.connection_class(self, reader, writer)
    task = asyncio.get_running_loop().create_task(self._track(connection))
    self.tasks.add(task)
    task.add_done_callback(self.tasks.discard)

async def _track(self, connection) -> None:
    self.connections.add(connection)
    try:
        await connection.run()
    finally:
        self.connections.discard(connection)

ASGIServer._accept, ASGIServer._track = _accept, _track

# %% [markdown]
# A graceful stop, with a deadline: stop accepting, shut every connection down (idle ones
# close at once), give busy ones half the time to finish, cancel what is left, then
# `lifespan.shutdown`, so the app closes its database pool after the last request.

# %%
#| export
async def _shutdown(self, listener) -> None:
    """Stop accepting; idle connections close now, busy ones get half the time to finish."""
    listener.close()
    for connection in list(self.connections):
        connection.shutdown()
    if self.tasks:
        await asyncio.wait(set(self.tasks), timeout=self.stop_timeout / 2)
    for task in self.tasks:
        task.cancel()
    if self.tasks:
        await asyncio.wait(set(self.tasks), timeout=self.stop_timeout / 4)
    await self.lifespan.shutdown(self.stop_timeout / 4)
    self.log.info("server stopped")

ASGIServer._shutdown = _shutdown

# %% [markdown]
# With the default `stop(timeout=2.0)` that is one second for busy connections to finish,
# half a second for cancelled ones to unwind, and half a second for the app's
# `lifespan.shutdown`. However badly the app behaves, `stop()` returns in a bounded time.
#
# Here is the server's whole life across the two threads, your kernel's and its own:
#
# ```mermaid
# sequenceDiagram
#     participant K as kernel thread (your cell)
#     participant T as server thread (its own loop)
#     K->>T: start(): a new Thread runs _thread_main
#     Note over T: _main: lifespan startup, then start_server
#     T-->>K: ready.set(), and start() returns
#     Note over T: _accept: one Connection task per client
#     K->>T: stop(): call_soon_threadsafe(_stop.set)
#     Note over T: _shutdown: connections, then lifespan shutdown
#     T-->>K: the thread ends, and join() returns
# ```
#
# Apart from `server.log`, the two threads meet only at those arrows: `ready` (with
# `error`, if the startup failed) on the way in, `call_soon_threadsafe` and `join` on the
# way out.
#
# That is the whole server. Serve `hello` on it:

# %%
from barelab.errors import LifespanStartupFailed

server = barelab.serve(hello, name="course", server=ASGIServer)
server

# %% [markdown]
# (The link works in your browser, through Jupyter's proxy on Binder.) Fetch it with curl:
# `-m 5` makes curl give up after five seconds instead of hanging a cell if something is
# wrong.

# %%
# !curl -s -i -m 5 {server.url}

# %% [markdown]
# Note the lower-case header names: they are the app's bytes, as the app sent them (HTTP
# field names are case-insensitive). `date` was added by the server. Now the log:

# %%
server.log

# %% [markdown]
# `hello` does not speak lifespan: it called `receive()`, got `lifespan.startup`, and
# answered with `http.response.start`. The lifespan `send()` refused that with an error
# quoting the spec, the app's call ended with it, and the server took this as "no lifespan
# here", logged it, and started at once. Then it served curl's request.

# %% [markdown]
# ## The traps, again
#
# Same probes as before, on the new server. Keep-alive and pipelining: both requests are
# answered, in order, and the connection stays open for more.

# %%
probe(server, GET + GET)

# %% [markdown]
# Two statuses where the naive server gave one, and "still open": after the second
# response the server went back to `_next_head` and waited for a third request, until
# `probe` gave up listening.

# %% [markdown]
# The countdown, streamed as chunks: each `more_body` message became one chunk, and the
# chunks arrived as the app sent them, not all at the end.

# %%
server = barelab.serve(countdown, name="course", server=ASGIServer)
barelab.raw_exchange(server, GET, read_until_close=False)

# %% [markdown]
# Four chunks, each its size in hex, CRLF, the data, CRLF: `2` for `3\n`, `8` for
# `liftoff\n`. Then `0` and an empty line, the last-chunk marker. The client knew the body
# was over without a close, and the last line says the connection stayed open.

# %% [markdown]
# `HEAD`, then a `POST` with a body, on one connection, to an app that echoes the body it
# reads. The `HEAD` gets the head only, with the `Content-Length` its body would have had;
# the next response starts exactly where it should:

# %%
async def echo(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message["body"], message["more_body"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"you sent: " + body})

server = barelab.serve(echo, name="course", server=ASGIServer)
barelab.raw_exchange(server, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + with_body,
                     read_until_close=False)

# %% [markdown]
# Look at the `HEAD` response's `content-length: 10`. The app sent `you sent: ` (ten
# bytes: the `HEAD` request had no body), the server counted it, dropped it, and kept the
# count, exactly as a `GET` would have been framed. The `POST` behind it was read from the
# same buffer, and its answer starts right after the empty line of the first.

# %% [markdown]
# A chunked upload, in two writes with a pause between them. An app that reads as it goes
# sees the chunks as separate `http.request` events, the last one with `more_body: False`:

# %%
async def count_events(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    events, more = [], True
    while more:
        message = await receive()
        events.append((message["body"], message["more_body"]))
        more = message["more_body"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(events).encode()})

# %% [markdown]
# A raw socket lets you pause between the two halves of the body (`raw_exchange` sends
# everything at once). `until_response` reads until a whole response has arrived:

# %%
import socket

def until_response(sock):
    data = b""
    while not data.endswith(b"]"):
        data += sock.recv(65536)
    return data.partition(b"\r\n\r\n")[2]

server = barelab.serve(count_events, name="course", server=ASGIServer)
with socket.create_connection((server.host, server.port), timeout=5) as sock:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n")
    time.sleep(0.2)
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    print(until_response(sock).decode())

# %% [markdown]
# Two events: `hello` with `more_body: True`, sent while the rest was still on its way,
# then ` world` with `more_body: False`. The app saw the first half 0.2 seconds before the
# second existed; a server that buffered whole bodies would have kept it waiting.

# %% [markdown]
# Malformed requests and crashing apps now get an answer. Each refusal closes the
# connection, and the server goes on serving the next client:

# %%
rows = [(name, probe(server, data)) for name, data in bad.items()]
rows.append(("then a good request", probe(server, with_body)))
server = barelab.serve(crash, name="course", server=ASGIServer)
show_transcript(rows + [("app crash", probe(server, GET))])

# %% [markdown]
# Each status is the one `attempt` showed for the same bytes, now sent over the wire. The
# good request after six bad ones got its 200 on the same server: a refusal costs one
# connection, never the server.
#
# The crash's 500 says only "Internal Server Error"; the traceback is in the log, for you:

# %%
print(server.log.errors[-1].message)
print(server.log.errors[-1].details.strip().splitlines()[-1])

# %% [markdown]
# Mistakes in the order of messages get an error that quotes the spec. This app forgets
# `http.response.start`:

# %%
async def forgetful(scope, receive, send):
    await send({"type": "http.response.body", "body": b"where is my head?"})

server = barelab.serve(forgetful, name="course", server=ASGIServer, lifespan="off")
probe(server, GET), server.log.errors[-1].details.strip().splitlines()[-1]

# %% [markdown]
# The client got a clean 500, because nothing had gone out yet, and the log's last line is
# the `RuntimeError` from `_check_order`, raised inside the app's `send()`.

# %% [markdown]
# ### A 500 only before the response started
#
# An app that fails in the middle of a stream cannot take back the `200` it already sent.
# The server closes the connection without the chunked body's last chunk `0\r\n\r\n`, which
# is how an HTTP/1.1 client knows the body is incomplete:

# %%
async def fails_midway(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first half", "more_body": True})
    raise RuntimeError("lost the second half")

server = barelab.serve(fails_midway, name="course", server=ASGIServer, lifespan="off")
barelab.raw_exchange(server, GET)

# %% [markdown]
# The response ends after `a\r\nfirst half\r\n`, a 10-byte chunk (`a` is 10 in hex), and
# the server closed the connection. No `0\r\n\r\n` arrived, so a client such as curl
# reports a transfer closed with outstanding data instead of showing half a page as if it
# were whole.

# %% [markdown]
# ### `http.disconnect` when the client goes away
#
# A long-polling app waits for news, and should stop waiting when the client leaves. This
# one reads the request, then calls `receive()` again, which blocks until there is
# something to report. `raw_exchange` gives up after 0.3 seconds and closes its socket:

# %%
events = []

async def long_poll(scope, receive, send):
    events.append(await receive())
    events.append(await receive())   # blocks: nothing will happen but the client leaving

server = barelab.serve(long_poll, name="course", server=ASGIServer, lifespan="off")
barelab.raw_exchange(server, GET, timeout=0.3).ending

# %% [markdown]
# The server read end-of-file from the socket and answered the waiting `receive()`:

# %%
deadline = time.monotonic() + 2
while len(events) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
events

# %% [markdown]
# And a `send()` after that raises `ClientDisconnected`, the `OSError` the spec asks for.
# The server logs it as information, not as an app error: nobody did anything wrong.

# %%
async def too_late(scope, receive, send):
    await receive()
    await receive()                  # http.disconnect
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"anyone there?"})
    except OSError as exc:
        events.append(repr(exc))

server = barelab.serve(too_late, name="course", server=ASGIServer, lifespan="off")
barelab.raw_exchange(server, GET, timeout=0.3)
deadline = time.monotonic() + 2
while len(events) < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
events[-1]

# %% [markdown]
# The app caught it as a plain `OSError`, the way it would on any server that follows the
# spec, and stopped. Nothing was written to a socket that nobody reads.

# %% [markdown]
# ### Backpressure
#
# `await writer.drain()` is what stops an app from running ahead of a slow client. This app
# tries to stream 100 MiB in 1 MiB pieces and counts how many `send()` calls returned. The
# client sends its request and then reads nothing for half a second:

# %%
sends = []

async def firehose(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(100):
        await send({"type": "http.response.body", "body": b"x" * 2**20, "more_body": True})
        sends.append(1)
    await send({"type": "http.response.body", "body": b""})

server = barelab.serve(firehose, name="course", server=ASGIServer, lifespan="off")
with socket.create_connection((server.host, server.port)) as sock:
    sock.sendall(GET)
    time.sleep(0.5)
    print(f"after 0.5 s without reading: fewer than 20 of 100 sends done: {len(sends) < 20}")

# %% [markdown]
# The app was paused after a few megabytes, as many as the operating system's socket buffers
# and asyncio's write buffer hold. Without `drain()`, all 100 MiB would be sitting in the
# server's memory, for one slow client. (When the client closed its socket, the next
# `send()` raised `ClientDisconnected` and the app ended.)

# %% [markdown]
# ### Lifespan, three ways
#
# `with_pool` from the start of the chapter now gets its startup event, and each request's
# scope carries a copy of the state it filled:

# %%
server = barelab.serve(with_pool, name="course", server=ASGIServer)
barelab.http_request(server).text, [e.message for e in server.log.entries][:2]

# %% [markdown]
# The request found `a database pool` in its scope's state. The log's order is the point:
# `lifespan startup complete` comes before `serving`, so no request could arrive before
# the pool existed.
#
# An app that answers `lifespan.startup.failed` must not be served. The server raises
# barelab's `LifespanStartupFailed` with the app's message, right here in the cell, and no
# port stays open:

# %%
async def no_database(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "cannot reach the database"})

try:
    barelab.serve(no_database, name="no_database", server=ASGIServer)
except LifespanStartupFailed as failure:
    print(f"{type(failure).__name__}: {failure}")

# %% [markdown]
# The exception was raised in the server's thread, kept by `_thread_main`, and raised
# again by `start()` in this cell, with the app's own message. `serve()` returned no
# server, so there is nothing to stop and no port left open.
#
# And on stop, `lifespan.shutdown` goes to the app that completed its startup, after the
# last request was served. The log says how it answered:

# %%
server = barelab.serve(with_pool, name="course", server=ASGIServer)
server.stop()
[e.message for e in server.log.entries][-3:]

# %% [markdown]
# `lifespan.shutdown.complete` first, then `server stopped`: the app had its chance to
# close the pool after the last connection was done, and before `stop()` returned.

# %% [markdown]
# ### WebSocket? Not yet
#
# A browser opening a WebSocket sends a `GET` with `Upgrade: websocket`. This server does not
# speak WebSocket yet (chapter 15 adds it), and RFC 9110 §7.8 lets a server ignore an
# `Upgrade` it does not support: the request is served as plain HTTP, and the client, which
# wanted `101 Switching Protocols`, gives up cleanly.

# %%
server = barelab.serve(hello, name="course", server=ASGIServer)
probe(server, b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")

# %% [markdown]
# A plain 200 from `hello`, and the connection still open: the server ignored `Upgrade`
# and served an ordinary request. A browser expecting `101` sees the 200 and reports that
# the WebSocket could not connect. Chapter 15 changes that answer with a subclass.

# %% [markdown]
# ## Starlette and FastAPI on your server
#
# Your server speaks ASGI, so it runs any ASGI framework. Here is a Starlette app with the
# features that stress a server: a lifespan that puts a value into the state, a JSON
# endpoint that reads a body, and a streamed response.

# %%
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

@asynccontextmanager
async def lifespan(app):
    yield {"greeting": "Hello from the lifespan state"}   # Starlette puts it in scope["state"]

# %% [markdown]
# Each endpoint takes a Starlette `Request` and returns a response object; Starlette turns
# that into the `send()` calls your server frames. `count` is the one to watch: a
# `StreamingResponse` from an async generator, with no length known in advance.

# %%
async def home(request):
    return PlainTextResponse(request.state.greeting + "\n")

async def double(request):
    numbers = await request.json()
    return JSONResponse({"doubled": [2 * n for n in numbers]})

async def count(request):
    async def numbers():
        for n in range(1, 4):
            yield f"{n}\n"
    return StreamingResponse(numbers(), media_type="text/plain")

# %% [markdown]
# Three routes and the lifespan make an app. Serve it on `ASGIServer`, exactly as you served
# `hello`:

# %%
starlette_app = Starlette(routes=[Route("/", home), Route("/double", double, methods=["POST"]),
                                  Route("/count", count)], lifespan=lifespan)
star = barelab.serve(starlette_app, name="starlette", server=ASGIServer)
star

# %% [markdown]
# First the home page. Its text comes from the lifespan, so this one request shows that
# startup ran and that the state reached the request:

# %%
# !curl -s -i -m 5 {star.url}

# %% [markdown]
# The greeting came from the lifespan state, through `scope["state"]`. The JSON endpoint
# reads a body; the streamed one has no length, so your server chunked it (`curl` decodes
# the chunks; the `transfer-encoding` header shows it happened):

# %%
# !curl -s -m 5 -X POST -d '[1, 2, 3]' {star.url}double; echo; curl -s -i -m 5 {star.url}count

# %% [markdown]
# A route that does not exist, and a method the route does not allow, are Starlette's
# business; your server just frames whatever it answers:

# %%
[barelab.http_request(star, path=p).status_line for p in ("/nowhere", "/double")]

# %% [markdown]
# A 404 for the missing route and a 405 for `GET /double`, which only takes `POST`. Both
# are ordinary responses as far as your server is concerned: a start and a body, framed
# with a `Content-Length`.
#
# FastAPI is built on Starlette and adds typed parameters and validation with pydantic. Path
# parameters are converted to the declared type, and a body that does not fit its model is
# answered with `422 Unprocessable Content` and a list of what was wrong:

# %%
from fastapi import FastAPI
from pydantic import BaseModel

api = FastAPI()

class Item(BaseModel):
    name: str
    price: float

@api.get("/items/{item_id}")
async def read_item(item_id: int):
    return {"item_id": item_id, "type": type(item_id).__name__}

@api.post("/items")
async def create_item(item: Item):
    return {"created": item.name, "price with tax": round(item.price * 1.2, 2)}

fast = barelab.serve(api, name="fastapi", server=ASGIServer)
barelab.http_request(fast, path="/items/42").json()

# %% [markdown]
# The `42` from the path arrived as an `int`: FastAPI converted it because `read_item`
# declared `item_id: int`. Now two bodies, one that fits `Item` and one whose price is not
# a number:

# %%
good = barelab.http_request(fast, "POST", "/items", json={"name": "lamp", "price": 10})
bad_item = barelab.http_request(fast, "POST", "/items", json={"name": "lamp", "price": "ten"})
good.json(), bad_item.status_line, bad_item.json()["detail"][0]["msg"]

# %% [markdown]
# The good item came back with its tax. The bad one never reached `create_item`: pydantic
# refused `"ten"` and FastAPI answered 422 with the reason. For your server, both were
# just JSON bodies to read and responses to frame.
#
# Both frameworks ran unchanged. Their requests all went through the code you wrote:

# %%
print(fast.log)

# %% [markdown]
# One `REQUEST` line per request, written by `Exchange._log` just before the last bytes
# left: client, request line, status, body size and time. The 422 is there like any other
# response, with its explanation as the body.

# %% [markdown]
# ## How fast is it?
#
# `benchmarks/asgi_servers.py` measures requests per second for this server, barelab's own
# engine (h11), uvicorn (with h11, and httptools if installed) and hypercorn, each in its own
# process, with 8 keep-alive connections from an asyncio client, for a 5-byte `GET` and for
# a 64 KiB `POST` whose body the app reads. Run it from a terminal:
#
# ```
# python benchmarks/asgi_servers.py
# ```
#
# Its numbers depend on the machine; the ratios within one run are what to read. On the
# course's 2-core machine (shared, so noisy) this server handled 1.2 to 1.4 times as many
# hello requests as uvicorn with h11 in each run, and 1.1 to 2.3 times as many 64 KiB
# uploads. It is not magic. The hot path does little:
#
# - one `read()` per request, head and small body together (`READ_SIZE` is 256 KiB; with
#   64 KiB reads, every upload needed a second read, and the server was slower than
#   uvicorn on uploads), parsed by chapter 02's regular expressions, compiled once when
#   the module loaded;
# - one `write()` per small response, because the head waits for the first body message;
# - no task per request: the app runs in the connection's task, and the keep-alive timeout
#   is a timer, not `asyncio.wait_for`;
# - a `Date` header formatted once per second;
# - `TCP_NODELAY`, which asyncio sets on every TCP connection, so a small response leaves
#   at once instead of waiting for the kernel to batch it.
#
# uvicorn's h11 mode pays for a general-purpose state machine on every event. Its
# httptools mode (a C parser) is faster than both; the course server's aim is to be correct
# first and not slow.

# %% [markdown]
# ## Summary
#
# - An ASGI server is a loop: read a head, build a scope, call the app with `receive` and
#   `send`, frame what it sends, and again on the same connection while both sides agree.
# - The naive version fails on the first real client: one request per connection, unframed
#   bodies, bodies for `HEAD`, no answer on errors, request bodies ignored, no lifespan.
# - `receive()` reads the body only when the app asks, as `http.request` events with
#   `more_body`; after that it blocks until the response is complete or the client goes
#   away, then says `http.disconnect`.
# - `send()` checks the order of messages, then frames: `Content-Length` when the size is
#   known, chunked when not (once, even if the app asked for it), nothing for `HEAD`, 204,
#   304, and `await writer.drain()` for backpressure.
# - A crash before any byte went out is a 500; after, the connection closes. A send to a
#   client that left raises `ClientDisconnected`, an `OSError`.
# - Malformed requests get their 4xx from chapter 02's parser, then the connection closes
#   gracefully; the server keeps serving.
# - Lifespan is optional: an app without it starts at once; `startup.failed` stops the
#   server with the app's message; `shutdown` is sent on stop; each request gets a copy of
#   the state.
# - The server runs its own loop in its own thread, so `barelab.serve(app,
#   server=ASGIServer)` works from a cell, and Starlette and FastAPI run on it unchanged.
#
# Everything marked `#| export` is in `barelab.built.asgi_server`; chapter 15 teaches it
# WebSocket.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — A countdown that streams
#
# Write an ASGI app `launch` that answers every `http` request with status 200, a
# `content-type: text/plain` header and no `content-length`, and sends the body in four
# messages: `b"3\n"`, `b"2\n"`, `b"1\n"` with `more_body: True`, then `b"go\n"` as the last
# one. It should raise for a `lifespan` scope (it has none). The check serves it on
# `ASGIServer` and reads the raw bytes: four chunks, the last-chunk marker, and the
# connection still open.

# %% tags=["solution"]
### BEGIN SOLUTION
async def launch(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("launch has no lifespan")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for part in (b"3\n", b"2\n", b"1\n"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"go\n"})
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    launched = barelab.serve(launch, name="exercise", server=ASGIServer)
    reply = barelab.raw_exchange(launched, GET, read_until_close=False)
    head, _, body = reply.received.partition(b"\r\n\r\n")
    assert reply.status == 200, f"expected a 200, got {reply.status}"
    assert b"transfer-encoding: chunked" in head.lower(), "no length given: it must be chunked"
    assert body == b"2\r\n3\n\r\n2\r\n2\n\r\n2\r\n1\n\r\n3\r\ngo\n\r\n0\r\n\r\n", \
        f"expected four chunks and the last-chunk marker, got {body!r}"
    assert not reply.closed_by_server, "a chunked response lets the connection stay open"
    assert not launched.log.errors, "the server logged an error: look at launched.log"

# %% [markdown]
# ### Exercise 2 — Notice when the client leaves
#
# Write `make_watcher(seen)`, which returns an ASGI app. The app reads the request body to
# the end, then calls `receive()` once more and appends that message's `type` to the list
# `seen`, then returns without answering (it is a long poll whose client gave up). The
# check connects, sends a request, closes the socket after 0.2 s, and expects `seen` to
# become `["http.disconnect"]`.

# %% tags=["solution"]
### BEGIN SOLUTION
def make_watcher(seen):
    async def watcher(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        seen.append((await receive())["type"])
    return watcher
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    seen = []
    watched = barelab.serve(make_watcher(seen), name="exercise", server=ASGIServer)
    barelab.raw_exchange(watched, with_body, timeout=0.2)
    deadline = time.monotonic() + 2
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["http.disconnect"], f"expected ['http.disconnect'], got {seen}"

# %% [markdown]
# ### Exercise 3 — A size limit in the app
#
# An app does not have to read a body it does not want. Write `upload`: if the request's
# `content-length` header is over 10 bytes, answer `413` with the body `b"too large\n"`
# without calling `receive()` at all; otherwise read the body and answer 200 with the number
# of bytes as text (`b"5"` for `hello`). The check sends both on one connection and looks at
# what your server did with the unread body.

# %% tags=["solution"]
### BEGIN SOLUTION
async def upload(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    length = int(dict(scope["headers"]).get(b"content-length", b"0"))
    if length > 10:
        status, body = 413, b"too large\n"
    else:
        message, size = {"more_body": True}, 0
        while message["more_body"]:
            message = await receive()
            size += len(message["body"])
        status, body = 200, b"%d" % size
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    limited = barelab.serve(upload, name="exercise", server=ASGIServer)
    small = barelab.http_request(limited, "POST", body=b"hello")
    assert (small.status, small.body) == (200, b"5"), f"got {small.status} {small.body!r}"
    big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    reply = barelab.raw_exchange(limited, big)
    assert reply.status == 413, f"expected 413, got {reply.status}"
    assert b"connection: close" in reply.received.lower(), \
        "the body was not read, so the server must close the connection (and say so)"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were still running).

# %%
barelab.stop_all()

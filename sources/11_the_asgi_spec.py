# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 11. The ASGI spec
#
# Chapter 10 showed why an ASGI app awaits instead of blocking. This chapter reads the
# contract itself: the `scope` a server builds, every event that goes through `receive()`
# and `send()`, and what a server does when an app breaks the rules. You will see every
# event of a request, first recorded by barelab and then through a `receive` and `send`
# you write yourself.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - read every key of a live HTTP `scope`, and map it to the WSGI `environ` key it replaces;
# - follow a request body through `http.request` events with `more_body`, including a
#   chunked upload that arrives as several events;
# - send a response as `http.response.start` plus one or more `http.response.body` events,
#   and stream it;
# - recognise the order mistakes (body before start, `str` instead of `bytes`, start twice,
#   no response at all), read what a server logs for each, and catch them yourself with
#   `barelab.built.asgi_types`;
# - notice a client that went away, through `http.disconnect` and through `send()` raising,
#   and say what the spec versions 2.0 to 2.5 added.
#
# The spec lives in the asgiref documentation: the main
# [ASGI specification](https://asgi.readthedocs.io/en/latest/specs/main.html) and its
# sub-specification
# ["HTTP & WebSocket ASGI Message Format"](https://asgi.readthedocs.io/en/latest/specs/www.html),
# version 2.5. The spec has no numbered sections, so this chapter quotes them by title.

# %% [markdown]
# ## The callable
#
# The main spec ("Applications") defines an app in one line:
#
# > `coroutine application(scope, receive, send)`
#
# - `scope` is a dict describing the connection. It always has a `type` key: `"http"`,
#   `"websocket"` or `"lifespan"`.
# - `receive` is an async function with no arguments. Each `await receive()` returns the
#   next *event*, a dict with a `type` key, when one is available.
# - `send` is an async function that takes one event dict and returns "once the send has
#   been completed or the connection has been closed".
#
# You already know a contract with the same job. Here is how each part of WSGI's
# `app(environ, start_response)` reappears in ASGI:
#
# | WSGI (PEP 3333) | ASGI | what changed |
# | --- | --- | --- |
# | `environ`, a dict of CGI-style `str` values | `scope`, a dict | it holds the request head only, with `bytes` where bytes came in |
# | `environ["wsgi.input"].read()` | `await receive()` | the body comes as events, and reading it never blocks a thread |
# | `start_response("200 OK", headers)` | `await send({"type": "http.response.start", ...})` | the status is an `int`, the headers are `bytes` |
# | the returned iterable of `bytes` | `await send({"type": "http.response.body", ...})`, repeated | the app pushes each piece instead of the server pulling it |
# | the iterable's `close()` | the app's coroutine returns | nothing to call: when the app returns, it is done |
#
# Drawn as a conversation, the difference is who waits for whom. In WSGI the server calls
# the app once and then pulls the body out of what it returned. In ASGI the app stays
# running and the two sides trade events until the app returns:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant W as WSGI app
#     participant A as ASGI app
#     S->>W: app(environ, start_response)
#     W->>S: start_response("200 OK", headers)
#     W-->>S: return [b"hello"]
#     S->>W: iterate, then close()
#     S->>A: await app(scope, receive, send)
#     A->>S: await receive()
#     S-->>A: {"type": "http.request", "body": b"..."}
#     A->>S: await send({"type": "http.response.start", "status": 200, ...})
#     A->>S: await send({"type": "http.response.body", "body": b"hello"})
#     A-->>S: return None
# ```
#
# The rest of the chapter goes through every row. One more difference: WSGI calls the app
# once per request, and ASGI calls it once per *connection scope*. For HTTP that is the
# same thing, once per request, even when one keep-alive connection carries many
# requests. (A WebSocket scope, in chapter 15, lasts as long as its connection.)
#
# The spec also asks an app to refuse what it does not understand: "Applications should
# actively reject any protocol that they do not understand with an Exception (of any
# type)" ("Protocol Specifications"). A server that also speaks lifespan (chapter 14)
# learns from that exception that the app does not. So every app in this chapter starts
# with the same check on `scope["type"]`.
#
# The three arguments are worth type names of their own. This chapter saves them, and the
# checker you build later, to `barelab.built.asgi_types`. The first cell names the module:

# %%
#| default_exp asgi_types

# %%
#| export
# The ASGI 3 calling convention as type aliases, and a checker for the messages an app sends
# in an "http" scope (asgiref, "HTTP & WebSocket ASGI Message Format", version 2.5). Every
# refusal is an ASGIMessageError whose text names the rule and the spec section that states
# it, so a server can put it in its log as it stands.
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]  # the spec calls these "events" and "messages" alike
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# %% [markdown]
# `#| export` marks a cell whose code goes into that module. `MutableMapping` means "a
# dict, or anything that behaves like one". Read the aliases out loud. `Receive` is a
# function with no arguments that returns something to await, which produces a message.
# `Send` takes a message and returns something to await, which produces nothing.
# `ASGIApp` is a callable that takes a scope, a receive function and a send function, and
# returns something to await that produces `None`. Compare WSGI, where the app returns the
# body itself: an ASGI app returns nothing, because everything it has to say goes through
# `send`.
#
# Here is the smallest app that fits. It checks the scope type, then calls `answer`, a
# helper that makes the two `send` calls of a short text response (you will meet those two
# events in detail below). `barelab.call_asgi` plays the server, in-process.

# %%
import barelab

async def answer(send, text, status=200):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})

async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"hello only speaks http, not {scope['type']!r}")
    await answer(send, "hello\n")

barelab.call_asgi(hello).text

# %% [markdown]
# `answer` is not part of any spec, just a shortcut for this chapter. The WSGI version of
# `hello` would have called `start_response("200 OK", [("Content-Type", ...)])` and
# returned `[b"hello\n"]`; here the same two pieces go out as two events. The annotations
# on `hello` are only documentation: Python does not check them, but they say at a glance
# that `hello` is an ASGI app.
#
# ## The scope, key by key
#
# To see the scope a real server builds, catch one. This app keeps a copy of every scope it
# is called with:

# %%
caught = []

async def catch(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"catch only speaks http, not {scope['type']!r}")
    caught.append(dict(scope))
    await answer(send, "caught\n")

server = barelab.serve(catch)
server

# %% [markdown]
# `barelab.serve` started a real HTTP server in a background thread, on a free port; the
# cell shows its address. `dict(scope)` stores a copy, not the scope itself: an app may
# add keys to the scope it is given (chapter 01 caught Starlette doing it), and a copy
# shows what the server built.
#
# Send it a request with a few things worth looking at: a path with a UTF-8 `é` written as
# `%C3%A9` and a `%2F` (an encoded `/`), a query string, the same header twice, and a body.
# Then print each key of the scope the server built, with the type of its value next to
# it: in ASGI the type matters, because some keys are `str` and some are `bytes`.

# %%
reply = barelab.http_request(server, "POST", "/caf%C3%A9/a%2Fb?q=ASGI&lang=en",
                             headers=[("X-Tag", "one"), ("X-Tag", "two")], body=b"hello")
scope = caught[-1]
for key, value in scope.items():
    if key != "headers":
        print(f"{key:<13} {type(value).__name__:<6} {value!r}")

# %% [markdown]
# (The headers are left out here and shown below.) Twelve keys besides the headers, and
# most have a WSGI twin you met in chapter 04. Here is what the HTTP spec ("HTTP
# Connection Scope") says about each, with the `environ` key it replaces:
#
# - `type` is `"http"`. WSGI has no such key, because WSGI only ever speaks HTTP.
# - `asgi` holds two versions, as `wsgi.version` held `(1, 0)`: `version` is the ASGI
#   interface itself (`"3.0"`, the single-callable style) and `spec_version` is the
#   version of the HTTP sub-spec this server follows. More on both at the end of the
#   chapter.
# - `http_version` replaces `SERVER_PROTOCOL`: `"1.1"` instead of `"HTTP/1.1"`. It is one
#   of `"1.0"`, `"1.1"` or `"2"`, a string, not a number.
# - `method` replaces `REQUEST_METHOD`, uppercase as before. `scheme` (`"http"` or
#   `"https"`) replaces `wsgi.url_scheme`.
# - `path` replaces `PATH_INFO`. It is the path "with percent-encoded sequences and UTF-8
#   byte sequences decoded into characters": `%C3%A9` became `é`, and `%2F` became `/`.
# - `raw_path` has no WSGI twin. It keeps the path's bytes exactly as they arrived
#   (without the query string). Look at why it exists: in `path` you can no longer tell
#   the encoded `/` from a real one (`/café/a/b` could have been three segments or two),
#   while `raw_path` still can. It is optional, so an app must cope with `None`.
# - `query_string` replaces `QUERY_STRING`, but as *bytes*, still percent-encoded.
#   Parsing it is still the app's job.
# - `root_path` is the prefix the app is mounted under, "same as `SCRIPT_NAME` in WSGI".
#   Empty here.
# - `client` replaces `REMOTE_ADDR` and `REMOTE_PORT`; `server` replaces `SERVER_NAME` and
#   `SERVER_PORT`. Each is a `(host, port)` pair, and the port is an `int`, not a string.
# - `state` has no WSGI twin: it is a copy of the namespace the app filled in during
#   lifespan startup (chapter 14). It is empty here, because this app has no lifespan.

# %% [markdown]
# The headers are a list of `(name, value)` pairs of bytes, in the order they arrived:

# %%
scope["headers"]

# %% [markdown]
# Three things to notice.
#
# - The names are lowercase, although the client sent `Host` and `X-Tag`. The spec
#   (version 2.5) says request header names "should be lowercased, but it is not
#   required". barelab, through h11, always lowercases them, so here `b"x-tag"` matches.
#   An app that must run on any server lowercases names itself before it compares.
# - `x-tag` appears twice. "Duplicates are possible and must be preserved in the message
#   as received." Nothing is joined with commas; that is up to the app.
# - Everything is `bytes`. Headers travel as bytes on the wire and HTTP does not promise
#   an encoding for them, so ASGI hands over the bytes and lets the app decode.
#
# `content-length` is in the list too. In WSGI it would have been `CONTENT_LENGTH`, out of
# the `HTTP_` family; in ASGI it is just one more header.
#
# ### environ vs scope, side by side
#
# The HTTP spec has a section, "WSGI Compatibility", on how the two map onto each other.
# To see the differences on one request, build both. `build_environ` and `build_scope`
# are the functions `call_wsgi` and `call_asgi` use, so no server is needed. The request
# has a UTF-8 path, a Content-Type and a repeated header:

# %%
request = dict(method="POST", path="/caf%C3%A9?q=ASGI",
               headers=[("Content-Type", "text/plain"), ("X-Tag", "one"), ("X-Tag", "two")])
env = barelab.build_environ(**request)
asgi_scope = barelab.build_scope("http", **request)
twins = [("REQUEST_METHOD", "method"), ("PATH_INFO", "path"), ("SCRIPT_NAME", "root_path"),
         ("QUERY_STRING", "query_string"), ("SERVER_PROTOCOL", "http_version")]
barelab.show_transcript([(f"{w}={env[w]!r}", f"{a}={asgi_scope[a]!r}") for w, a in twins],
                        columns=("WSGI environ", "ASGI scope"))

# %% [markdown]
# Look at the path. WSGI's `PATH_INFO` is "bytes in a str": each byte of the decoded path
# became one latin-1 character, so `é` shows up as the two characters `Ã©` until the app
# re-encodes it (chapter 04). ASGI decodes UTF-8 for you and keeps the raw bytes
# alongside. The query string went the other way: WSGI made it a `str`, ASGI leaves it as
# the bytes that came in.
#
# Now the headers. Ask each side what it made of them (both added a `Host` header, as
# every HTTP/1.1 client must send one):

# %%
env_headers = {key: value for key, value in env.items()
               if key.startswith("HTTP_") or key.startswith("CONTENT_")}
print("WSGI:", env_headers)
print("ASGI:", asgi_scope["headers"])

# %% [markdown]
# WSGI renamed every header to an `HTTP_` key, joined the two `X-Tag` values into one
# string, and moved `Content-Type` out of the `HTTP_` family into `CONTENT_TYPE`. ASGI
# keeps one list of byte pairs, as received: repeats stay repeats, and Content-Type is a
# header like any other.
#
# The rule behind both differences: ASGI says per key whether it is `str` or `bytes`. Text
# the server decoded (`path`, `method`) is `str`; data the server passes through as it
# came (`query_string`, `headers`, `raw_path`) is `bytes`. And the body is not in the
# scope at all: where WSGI put a file in `wsgi.input`, ASGI hands it over through
# `receive()`.

# %% [markdown]
# ## `receive()`: the request body, as events
#
# Everything about the request except its body is in the scope. The body arrives through
# `receive()`, as `http.request` events ("Request - receive event"):
#
# - `body`: bytes. "If `more_body` is set, treat as start of body and concatenate on
#   further chunks."
# - `more_body`: `True` if more body follows. "If `True`, the consuming application should
#   wait until it gets a chunk with this set to `False`."
#
# In WSGI you read the body with `environ["wsgi.input"].read(int(CONTENT_LENGTH))`, one
# blocking call that returns all of it. In ASGI, reading a body is a loop: await an event,
# keep its `body`, stop when `more_body` is `False`. This app echoes the body back. It
# also stops if, instead of more body, it receives `http.disconnect`: the client left,
# and nobody is there to answer.

# %%
async def echo(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"echo only speaks http, not {scope['type']!r}")
    body = b""
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return  # the client went away
        body += event.get("body", b"")
        if not event.get("more_body", False):
            break
    await answer(send, body.decode())

barelab.call_asgi(echo, "POST", "/echo", body=[b"hel", b"lo"])

# %% [markdown]
# `body=[b"hel", b"lo"]` tells barelab to deliver the body in two events. Read the
# transcript: `→ app` is what `receive()` returned, `app →` is what the app passed to
# `send()`. Two `http.request` events in, with `more_body` `True` and then `False`, then
# the response out.
#
# Notice that `echo` reads both keys with `.get`. The spec makes both optional: a missing
# `body` means `b""` and a missing `more_body` means `False`. A server may send a GET
# request as a bare `{"type": "http.request"}`, and `event["body"]` would then crash.
#
# ### No magic: a receive and a send of your own
#
# `call_asgi` plays the server, but the server's part is small enough to write by hand.
# `hand_made_channel` takes a list of events to deliver and returns a `receive`, a `send`
# and a `transcript`. `receive` hands out the prepared events one by one and, once they
# run out, says the client has gone; `send` writes each event down. Both are `async def`,
# because the app will `await` them, even though neither has anything to wait for.

# %%
def hand_made_channel(events):
    pending, transcript = list(events), []

    async def receive():
        event = pending.pop(0) if pending else {"type": "http.disconnect"}
        transcript.append(("→ app", event))
        return event

    async def send(event):
        transcript.append(("app →", event))

    return receive, send, transcript

receive, send, transcript = hand_made_channel([])  # no events prepared at all
await receive()

# %% [markdown]
# With nothing prepared, the first `receive()` already says the client has gone. A real
# server hands out `http.disconnect` only when the response is done or the client has
# really left ("Disconnect - receive event"); this one hands it out as soon as the
# prepared events run out, which is enough for the app above. Now prepare the two pieces
# of the body and call `echo` yourself, in the cell, with `await`:

# %%
receive, send, transcript = hand_made_channel([
    {"type": "http.request", "body": b"hel", "more_body": True},
    {"type": "http.request", "body": b"lo", "more_body": False},
])
scope = barelab.build_scope("http", "POST", "/echo")
await echo(scope, receive, send)
for direction, event in transcript:
    print(direction, event)

# %% [markdown]
# The same four events as barelab recorded, because it is the same conversation. An ASGI
# server is, at bottom, this: build a scope, call the app, and turn the events into bytes
# on a socket.
#
# ### A chunked upload, on the wire
#
# Where do several `http.request` events come from in real life? From a body that arrives
# in pieces. A client that does not know the size of its upload in advance sends it with
# `Transfer-Encoding: chunked` (chapter 02). Your WSGI server in chapter 06 had to decode
# such a body before the app could read `wsgi.input`. The ASGI spec gives the server the
# same job: "The `http.request` messages should contain just the decoded contents of each
# chunk."
#
# To see what the app receives, this variant of `echo` writes every event down in
# `uploads` before it answers. Its loop reads "keep receiving while there is nothing yet,
# or while the last event said more body follows", and it stops at once on a disconnect.

# %%
uploads = []

async def recording_echo(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"recording_echo only speaks http, not {scope['type']!r}")
    received = []
    while not received or received[-1].get("more_body", False):
        received.append(await receive())
        if received[-1]["type"] == "http.disconnect":
            break
    uploads.append(received)
    await answer(send, b"".join(e.get("body", b"") for e in received).decode())

upload_server = barelab.serve(recording_echo)
upload_server

# %% [markdown]
# Now send it a chunked upload over a raw socket. Each chunk is its size in hex, a CRLF,
# the bytes and another CRLF; a `0` chunk ends the body. There are three chunks here, of
# `3`, `4` and `2` bytes:

# %%
chunked = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n2\r\nhi\r\n0\r\n\r\n")
barelab.raw_exchange(upload_server, chunked)

# %% [markdown]
# The response is the nine bytes put back together, with a `content-length: 9` that the
# server worked out because the app sent its whole body in one event. Here is what the
# app saw on the way in:

# %%
for event in uploads[-1]:
    print(event)

# %% [markdown]
# One `http.request` per chunk, sizes and CRLFs gone, and `more_body` `False` only on the
# last. Nothing in the spec promises that events match chunks one to one: a server may
# split or merge them as the bytes happen to arrive. An app must only rely on the
# concatenation and on `more_body`.
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant A as app
#     C->>S: POST head (Transfer-Encoding: chunked)
#     S->>A: await app(scope, receive, send)
#     C->>S: 3\r\nabc\r\n
#     A->>S: await receive()
#     S-->>A: http.request body=b'abc' more_body=True
#     C->>S: 4\r\ndefg\r\n … 0\r\n\r\n
#     A->>S: await receive()
#     S-->>A: http.request body=b'defg' more_body=True
#     A->>S: await receive()
#     S-->>A: http.request body=b'hi' more_body=False
#     A->>S: await send(http.response.start)
#     A->>S: await send(http.response.body)
#     S->>C: HTTP/1.1 200 OK … abcdefghi
# ```

# %% [markdown]
# ## `send()`: the response, as events
#
# A response is always one `http.response.start` followed by one or more
# `http.response.body` events. The first does the job of WSGI's `start_response`; the
# others carry what a WSGI app returned or yielded.
#
# `http.response.start` ("Response Start - send event") carries:
#
# - `status`: an `int`, such as `200`, with no reason phrase. WSGI wanted the string
#   `"200 OK"`; here the server writes the `OK` itself.
# - `headers`: a list of `(name, value)` pairs of bytes, where WSGI wanted `str`. Here the
#   spec is strict: "Header names must be lowercased."
# - `trailers`: `True` if header fields will follow the body. It only works with the
#   `http.response.trailers` extension (more on extensions below). The default is `False`.
#
# `http.response.body` ("Response Body - send event") carries:
#
# - `body`: bytes, "concatenated onto any previous `body` values";
# - `more_body`: `True` if more body follows. When it is `False`, "response will be taken
#   as complete and closed". It defaults to `False`, so an event without it ends the
#   response.
#
# Two more rules are worth knowing. The server "need not flush" the start event "until the
# first Response Body event is processed": it may hold the head back, which gives it a last
# chance to replace the response with a `500` if the app fails. And it "must flush any data
# passed to them into the send buffer before returning from a send call", so a streamed
# piece really leaves when `send()` returns.
#
# Streaming is several body events with `more_body=True`. In WSGI you streamed by
# returning a generator and the server pulled each piece from it; here the app pushes
# each piece with `send`, whenever it is ready:

# %%
async def countdown(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"countdown only speaks http, not {scope['type']!r}")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    for word in (b"three ", b"two ", b"one "):
        await send({"type": "http.response.body", "body": word, "more_body": True})
    await send({"type": "http.response.body", "body": b"liftoff\n"})  # more_body=False

barelab.call_asgi(countdown)

# %% [markdown]
# Five events out: one start and four bodies. The first three say `more_body=True`; the
# last leaves the key out, which means `False`, and ends the response.
#
# On the wire, the server has to frame a body whose length it did not know when the head
# went out. There is no `content-length` in the app's headers, so barelab chooses chunked
# encoding, one chunk per body event. That is exactly what the spec allows: "a response
# that is given to the server with no `Content-Length` may be chunked as the server sees
# fit."

# %%
countdown_server = barelab.serve(countdown)
barelab.raw_exchange(countdown_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                     read_until_close=False)

# %% [markdown]
# Four chunks (`6`, `4`, `4` and `8` bytes), then the `0` chunk that ends the response.
# The app never wrote a byte of that framing: it sent events, the server wrote HTTP/1.1.
# Compare the upload echo above, which sent its whole body in one event: there the server
# knew the length before it wrote the head, and sent `content-length: 9` instead.

# %% [markdown]
# ## Breaking the rules on purpose
#
# Those few rules are easy to break. WSGI had the same kind of trap (a body before
# `start_response`, `str` where bytes belong), and in chapter 04 `wsgiref.validate`
# caught them. Here are five broken responses, each a few lines long. They take only
# `send`, so that one small app can route to them by path. First three that get the
# order or the types wrong:

# %%
START = {"type": "http.response.start", "status": 200, "headers": []}

async def body_before_start(send):
    await send({"type": "http.response.body", "body": b"hello"})

async def str_body(send):
    await send(START)
    await send({"type": "http.response.body", "body": "hello"})  # a str, not bytes

async def start_twice(send):
    await send(START)
    await send({**START, "status": 404})

# %% [markdown]
# Hand one of them the `send` of your hand-made channel from above and see what it
# lets through:

# %%
receive, send, transcript = hand_made_channel([])
await start_twice(send)
for direction, event in transcript:
    print(direction, event)

# %% [markdown]
# Both starts went through without a word: your `send` checks nothing, so it would have
# written two heads to the client. A real server has to refuse. Two more mistakes, one
# that sends nothing at all and one that asks for a feature:

# %%
async def no_response(send):
    pass  # returns without sending anything

async def trailers_unasked(send):
    await send({**START, "trailers": True})
    await send({"type": "http.response.body", "body": b"hello"})

MISTAKES = {f"/{f.__name__}": f for f in (body_before_start, str_body, start_twice,
                                          no_response, trailers_unasked)}
list(MISTAKES)

# %% [markdown]
# Each path in `MISTAKES` is a function's `__name__` with a slash in front, so a path
# names the mistake it runs. Serve them and ask for each one. The app below is a tiny
# router: it looks the request's path up in `MISTAKES` and hands `send` to the mistake
# found there. (Any other path raises a `KeyError`, which the server would turn into a
# `500` too: good enough for a demo.)

# %%
async def mistakes(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"mistakes only speaks http, not {scope['type']!r}")
    await MISTAKES[scope["path"]](send)

mistakes_server = barelab.serve(mistakes)
[(path, barelab.http_request(mistakes_server, path=path).status) for path in MISTAKES]

# %% [markdown]
# Five clean `500 Internal Server Error` responses. None of the mistakes reached the
# client as broken bytes, because in each case the server noticed before it had sent the
# response head. (After the head is out, a server can no longer change the status. All
# it can do then is close the connection, so the client at least sees the response is
# cut short. Chapter 13 builds a server that gets this right.)
#
# The server log says what went wrong. `mistakes_server.log` shows everything, tracebacks
# included; this cell prints only its errors, each with the last line of its traceback:
# the exception the server raised inside the app's `await send(...)`.

# %%
for error in mistakes_server.log.errors:
    print(error.message)
    if error.details:
        print("   ", error.details.strip().splitlines()[-1])

# %% [markdown]
# Read the `error` lines next to the five mistakes:
#
# - **Body before start:** `send()` raised; a body needs a head to belong to.
# - **A `str` body:** `send()` raised a `TypeError`. The body must be bytes, and the server
#   will not guess an encoding for you.
# - **Start twice:** the second start was refused. Only because the server held the first
#   head back could it still answer with a `500`.
# - **No response:** the app returned normally, without sending anything. The server
#   answered `500` for it and logged why: a response ends with an `http.response.body`
#   whose `more_body` is `False`.
# - **Trailers unasked:** the app asked for a feature the server never offered.
#
# Each error message names the ASGI rule that was broken. That is the style this course
# aims for in every error: the reader should not need to guess.

# %% [markdown]
# ### Write the rules down
#
# A server has to check these rules, and so will the one you write in chapter 13. For WSGI
# the standard library had `wsgiref.validate`; for ASGI you write the checker yourself,
# once, and save it to `barelab.built.asgi_types`.
#
# What should a checker do with a bad message? The main spec's "Error Handling" section
# says a server "should raise an exception out of the `send` awaitable" for a message
# with an unknown type, missing keys or the wrong Python types. So every rule below
# raises. First the exception, and `_refuse`, which words every refusal the same way:

# %%
#| export
class ASGIMessageError(Exception):
    """A message an app sent that breaks the ASGI spec; the text names the rule."""


def _refuse(section: str, rule: str):
    raise ASGIMessageError(f"ASGI HTTP spec, {section}: {rule}")

# %% [markdown]
# `_refuse` always raises, so nothing after a call to it runs. To look at an error without
# the cell stopping, `attempt` calls a function and shows what it returned, or the error
# it raised:

# %%
def attempt(function, *args):
    """Call function(*args); show what it returned, or the ASGIMessageError it raised."""
    try:
        return function(*args)
    except ASGIMessageError as error:
        return f"ASGIMessageError: {error}"

attempt(_refuse, "'Response Body'", "an example of a rule")

# %% [markdown]
# Every refusal starts with the spec's name and the section to read, then says the rule.
#
# The first rules are about headers. "Response Start" wants pairs of byte strings, names
# in lowercase, and no HTTP/2 *pseudo headers* such as `:status`: "Pseudo headers
# (present in HTTP/2 and HTTP/3) must not be present."

# %%
#| export
def _check_headers(headers, section: str) -> None:
    try:
        pairs = [tuple(pair) for pair in headers]
    except TypeError:
        _refuse(section, f"'headers' is an iterable of [name, value] pairs, got {headers!r:.60}")
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(item, bytes) for item in pair):
            _refuse(section, f"each header is a [name, value] pair of byte strings, "
                             f"got {pair!r:.60}")
        if pair[0] != pair[0].lower():
            _refuse(section, f"header names must be lowercased, got {pair[0]!r}")
        if pair[0].startswith(b":"):
            _refuse(section, f"pseudo headers must not be present, got {pair[0]!r}")

# %% [markdown]
# Try it on a good header list and on three broken ones:

# %%
for headers in ([(b"content-type", b"text/plain")], [("content-type", "text/plain")],
                [(b"Content-Type", b"text/plain")], [(b":status", b"200")]):
    print(attempt(_check_headers, headers, "'Response Start'"))

# %% [markdown]
# `None` means no complaint. The `str` pair is what a WSGI habit produces. The capitalised
# name is a mistake barelab's server lets pass (it lowercases names on the way out), but
# the spec does not allow it.
#
# Why does `_check_headers` turn each pair into a tuple first? The spec asks only for "an
# iterable of `[name, value]` two-item iterables", so lists and tuples both count, and
# `tuple(pair)` makes them one shape to check. A `headers` value that cannot be iterated
# at all is refused right there.
#
# Next, the keys of the start message. The spec allows keys it does not define ("the
# presence of additional keys in the event dictionary should not raise an exception"), so
# only the keys it defines are checked. One rule here comes from HTTP, not from the ASGI
# text: ASGI only says `status` is an "HTTP status code", but a `1xx` code is an interim
# response (RFC 9110 §15.2), never the final answer, and no valid code is above 599
# (RFC 9110 §15). So the checker wants 200 to 599.

# %%
#| export
def _check_start(message) -> None:
    status = message.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        _refuse("'Response Start'", f"'status' is an int, got {status!r}")
    if not 200 <= status <= 599:  # RFC 9110 §15: 1xx are interim, not the response
        _refuse("'Response Start'", f"'status' must be a final status code "
                                    f"(200-599, RFC 9110 §15), got {status}")
    _check_headers(message.get("headers", []), "'Response Start'")
    if not isinstance(message.get("trailers", False), bool):
        _refuse("'Response Start'", f"'trailers' is a bool, got {message['trailers']!r}")
    if message.get("trailers"):
        _refuse("'Response Start'", "'trailers': True needs the http.response.trailers "
                                    "extension, which this checker does not follow")

# %% [markdown]
# Four statuses: the right one, the WSGI-style string, `True`, and `103 Early Hints`:

# %%
for status in (200, "200 OK", True, 103):
    print(f"{status!r:<9}", attempt(_check_start, {"type": "http.response.start",
                                                   "status": status}))

# %% [markdown]
# `True` is refused although in Python `True` is an `int` (it equals 1). That is why
# `_check_start` tests `isinstance(status, bool)` first: a status of `True` is certainly a
# bug. (A server that wants to send `103` offers an extension for it; more on extensions
# at the end of the chapter.)
#
# The body message has only two keys to check, `body` and `more_body`:

# %%
#| export
def _check_body(message) -> None:
    body = message.get("body", b"")
    if not isinstance(body, bytes):
        _refuse("'Response Body'", f"'body' is a byte string, got {type(body).__name__}")
    if not isinstance(message.get("more_body", False), bool):
        _refuse("'Response Body'", f"'more_body' is a bool, got {message['more_body']!r}")

# %% [markdown]
# A `str` body, and a `more_body` of `1`:

# %%
print(attempt(_check_body, {"type": "http.response.body", "body": "hello"}))
print(attempt(_check_body, {"type": "http.response.body", "body": b"", "more_body": 1}))

# %% [markdown]
# `more_body=1` would work in an `if`, but the spec says *bool*, and a checker that lets
# `1` through would let `"no"` through too.
#
# Now one function that takes any message: it must be a dict with a `str` type, and the
# type must be one of the two an HTTP app may send.

# %%
#| export
def validate_http_send(message) -> None:
    """Check the shape of one message an app sends in an ``http`` scope.

    Raises ASGIMessageError for a message that is not a dict with a str ``type``, a type
    other than ``http.response.start`` / ``http.response.body``, or a key of the wrong type.
    """
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ASGIMessageError(f"ASGI spec, 'Events': an event is a dict with a 'type' key "
                               f"holding a str, got {message!r:.60}")
    if message["type"] == "http.response.start":
        _check_start(message)
    elif message["type"] == "http.response.body":
        _check_body(message)
    else:
        _refuse("'HTTP'", f"an http app sends 'http.response.start' and "
                          f"'http.response.body', not {message['type']!r}")

# %% [markdown]
# A good body, a message that is not a dict, and a WebSocket message sent in an HTTP
# scope:

# %%
print(attempt(validate_http_send, {"type": "http.response.body", "body": b"hello"}))
print(attempt(validate_http_send, [("type", "http.response.body")]))
print(attempt(validate_http_send, {"type": "websocket.send", "text": "hi"}))

# %% [markdown]
# The rule about dicts comes from the main spec ("Events": "Each event is a `dict` with a
# top-level `type` key"), so that refusal names the main spec rather than the HTTP one.
#
# ### The order of the messages
#
# The shape of each message is half of the rules. The other half is their *order*, and
# that needs memory: a small state machine with three states.
#
# ```mermaid
# stateDiagram-v2
#     [*] --> waiting
#     waiting --> started: http.response.start
#     started --> started: http.response.body, more_body=True
#     started --> complete: http.response.body, more_body=False
#     complete --> [*]
# ```
#
# Anything not on an arrow is a mistake: a body while `waiting`, a second start, anything
# at all once `complete`. (The spec says messages after the end "will be ignored"; the
# checker still refuses them, because an app that sends them has a bug and its bytes are
# lost.) `_next_state` is the diagram as a function: it takes a state and a message and
# returns the new state, or refuses.

# %%
#| export
def _next_state(state: str, message) -> str:
    """The state after ``message`` (waiting, started, complete), or a refusal if out of order."""
    start = message["type"] == "http.response.start"
    if start and state != "waiting":
        _refuse("'Response Start'", "http.response.start is sent once per response, "
                                    "and it was already sent")
    if state == "waiting" and not start:
        _refuse("'Response Start'", "http.response.body sent before http.response.start")
    if state == "complete":
        _refuse("'Response Body'", "the response is complete (more_body was False); "
                                   "further messages are ignored, so this one is lost")
    return "started" if start or message.get("more_body", False) else "complete"

# %% [markdown]
# Walk a streamed response through it, one arrow at a time:

# %%
state = "waiting"
for message in (START, {"type": "http.response.body", "body": b"a", "more_body": True},
                {"type": "http.response.body", "body": b"b"}):
    state = _next_state(state, message)
    print(f"{message['type']:<20} more_body={message.get('more_body', False)!s:<5} → {state}")

# %% [markdown]
# The three arrows of the diagram, in order. One more body now finds no arrow to follow:

# %%
attempt(_next_state, "complete", {"type": "http.response.body", "body": b"late"})

# %% [markdown]
# `HTTPResponseChecker` puts the two halves together for one response. `check` runs
# before each message goes out: the shape first, then the order. `finish` runs when the
# app returns, and refuses unless the state is `complete`.

# %%
#| export
class HTTPResponseChecker:
    """Follow one ``http`` response: ``check(message)`` before each message goes out,
    ``finish()`` when the app returns; ``state`` is "waiting", "started" or "complete"."""

    def __init__(self):
        self.state = "waiting"

    def check(self, message) -> None:
        validate_http_send(message)
        self.state = _next_state(self.state, message)  # unchanged if the message is refused

    def finish(self) -> None:
        if self.state != "complete":
            done = "without starting" if self.state == "waiting" else "before completing"
            _refuse("'Response Body'", f"the app returned {done} the response; a response "
                    "ends with an http.response.body whose more_body is False")

# %% [markdown]
# An app that sends the head and then returns gets past `check`, and is caught by
# `finish`:

# %%
checker = HTTPResponseChecker()
checker.check(START)
print("state:", checker.state)
attempt(checker.finish)

# %% [markdown]
# The last piece wraps a `send` function so that every message is checked before it goes
# on. Because it only needs a `send` to wrap, it works with any server, and with the
# hand-made channel from above.

# %%
#| export
def checked_send(send: Send, checker: "HTTPResponseChecker | None" = None) -> Send:
    """Return a ``send`` that checks each message with ``checker`` before passing it on."""
    checker = checker if checker is not None else HTTPResponseChecker()

    async def send_checked(message: Message) -> None:
        checker.check(message)
        await send(message)

    return send_checked

# %% [markdown]
# `send_checked` is defined inside `checked_send`, so it remembers the `send` and the
# `checker` it was made with: each call to `checked_send` builds a new function with its
# own pair. Give `start_twice` the hand-made channel again, this time with its `send`
# wrapped:

# %%
receive, send, transcript = hand_made_channel([])
try:
    await start_twice(checked_send(send))
except ASGIMessageError as error:
    print("refused:", error)
print("events that reached send:", [event["type"] for direction, event in transcript])

# %% [markdown]
# This time the second start never reached `send`: `checked_send` raised out of the
# app's `await send(...)`, exactly where the spec wants the error.
#
# Now run all five mistakes through the checker, with no server at all. `run_checked`
# gives a mistake a fresh checker and a checked `send` that goes nowhere (`nowhere`
# accepts a message and drops it), calls `finish()` when the mistake returns, and reports
# the first refusal, if there is one:

# %%
async def nowhere(message):
    pass

async def run_checked(mistake):
    checker = HTTPResponseChecker()
    try:
        await mistake(checked_send(nowhere, checker))
        checker.finish()
    except ASGIMessageError as error:
        return str(error)
    return "no mistake found"

await run_checked(no_response)

# %% [markdown]
# That verdict comes from `finish()`: `no_response` sent nothing, so `check` never ran,
# and only the end of the app showed that no response was started. And the whole list,
# as a table. The `await` inside the list comprehension works
# because a notebook cell may use `await` at the top level.

# %%
verdicts = [(path, await run_checked(mistake)) for path, mistake in MISTAKES.items()]
barelab.show_transcript(verdicts, columns=("mistake", "HTTPResponseChecker says"))

# %% [markdown]
# Five for five, and each message says which part of the spec to read. The server and the
# checker phrase things differently, but they agree on every case. And a correct
# response, here a one-line "mistake" that just calls `answer`, passes without a word:

# %%
await run_checked(lambda send: answer(send, "fine\n"))

# %% [markdown]
# ## When the client goes away
#
# A long poll holds a request open until there is news. If the user closes the tab first,
# the app should find out, stop waiting and clean up. A WSGI app cannot be told while it
# waits: the server notices only when a write fails, and then it stops pulling from the
# app's iterable and calls `close()`. ASGI tells the app, in two ways.
#
# **Through `receive()`.** After the body is complete, the next `await receive()` waits.
# It returns `http.disconnect` when the client has gone, or when the response is finished
# ("Disconnect - receive event": "Sent to the application if receive is called after a
# response has been sent or after the HTTP connection has been closed").
#
# This app plays a long poll with no news ever coming: it records every event it receives
# until the disconnect, then cleans up. A `threading.Event` tells the cell when it is done,
# because the app runs on the server's thread, not the notebook's.

# %%
import threading

long_poll_events, long_poll_done = [], threading.Event()

async def long_poll(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"long_poll only speaks http, not {scope['type']!r}")
    long_poll_events.clear()
    while True:
        event = await receive()
        long_poll_events.append(event)
        if event["type"] == "http.disconnect":
            break  # the client gave up: nobody is waiting for the news any more
    long_poll_done.set()

long_poll_server = barelab.serve(long_poll)
long_poll_server

# %% [markdown]
# Now be the impatient client with a raw socket: send the request, wait a moment, and hang
# up without reading anything. `socket.create_connection` opens a TCP connection, and the
# `with` block closes it at its end, just as a browser does when you close the tab.

# %%
import socket
import time

long_poll_done.clear()
with socket.create_connection((long_poll_server.host, long_poll_server.port)) as client:
    client.sendall(b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # the app is now waiting in receive()
# leaving the with-block closed the socket
print("the app noticed:", long_poll_done.wait(timeout=5))
for event in long_poll_events:
    print(event)

# %% [markdown]
# First the (empty) body of the GET, then, the moment the socket closed, `http.disconnect`.
# The app woke up from `await receive()` and could clean up, without a thread having sat
# there for it. The spec adds a warning for what comes next: "Once you have received this
# event, you should expect future calls to `send()` to raise an exception."
#
# **Through `send()`.** An app that is streaming is busy sending, not receiving. Since
# spec version 2.4, a `send()` on a closed connection should raise "a server-specific
# subclass of `OSError`" ("Disconnected Client - send exception").
#
# This app is a server-sent event stream like the ones in chapter 10: the content type
# `text/event-stream`, and one `data: ...` line plus a blank line per event. In WSGI it
# was a generator the server pulled from; here the app sends a tick every 50 ms, forever,
# and records the class of the error that ended its stream:

# %%
import asyncio

stream_endings, stream_done = [], threading.Event()

async def endless_ticks(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"endless_ticks only speaks http, not {scope['type']!r}")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n",
                        "more_body": True})
            await asyncio.sleep(0.05)
    except OSError as error:
        stream_endings.append(type(error))
        stream_done.set()
        raise  # let the server see it; the spec says it should not log it as an error

ticks_server = barelab.serve(endless_ticks)
ticks_server

# %% [markdown]
# A listener connects with a raw socket, reads whatever has arrived (the head, and
# probably the first tick), prints the status line, and hangs up:

# %%
stream_done.clear()
with socket.create_connection((ticks_server.host, ticks_server.port)) as client:
    client.sendall(b"GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n")
    print(client.recv(1000).split(b"\r\n")[0])  # the status line arrived
print("the stream ended:", stream_done.wait(timeout=5))
[cls.__name__ for cls in stream_endings[-1].__mro__]  # the class and its ancestors

# %% [markdown]
# The stream ended with `ClientDisconnected`, barelab's own subclass of `OSError`, as the
# list of its ancestors shows. uvicorn and other servers have their own class, which is
# why an app should catch `OSError` and not a server's class. And since `send()` raising
# is new in 2.4, an app that must also work on older servers should watch for
# `http.disconnect` as well.
#
# What should the app do with the error? The spec lets it choose: "Applications may catch
# this exception and do cleanup work before re-raising it or returning with no
# exception." And it adds a rule for the server: it "must be prepared to catch this
# exception if [it] raised it and should not log it as an error". So the app re-raised
# it, and the server's log records a client that left, not a crash:

# %%
print("errors in the log:", len(ticks_server.log.errors))

# %% [markdown]
# ## Versions and extensions
#
# The scope you caught said `asgi = {'version': '3.0', 'spec_version': '2.4'}`. Those are
# two different versions.
#
# `version` is the ASGI interface, the counterpart of WSGI's `environ["wsgi.version"]`.
# 3.0 (2019) is the single callable `app(scope, receive, send)` this course uses. ASGI 2.0
# apps are now "legacy" ("Legacy Applications"): a plain, synchronous callable
# `application(scope)` that returned a second, async callable, which the server then
# awaited as `application_instance(receive, send)`. Often that was a class:
#
# ```python
# class LegacyApp:                             # ASGI 2.0 style
#     def __init__(self, scope):               # called with the scope alone...
#         self.scope = scope
#     async def __call__(self, receive, send): # ...then awaited with the channel
#         ...
# ```
#
# The main spec says a missing `version` means `"2.0"`, and asks servers to keep
# supporting the old style (asgiref has a helper that wraps it into the new one).
#
# `spec_version` has no WSGI counterpart: `wsgi.version` has said `(1, 0)` for two
# decades, and PEP 3333 only clarified PEP 333 without a new version. It is the version of
# the HTTP and WebSocket sub-spec the server follows. The sub-spec lists what each version
# added ("Spec Versions"):
#
# | spec_version | what it added |
# | --- | --- |
# | 2.0 | the first version of the spec, released with ASGI 2.0 |
# | 2.1 | `headers` in the WebSocket accept message |
# | 2.2 | `None` allowed as the second item of `server` (a server on a Unix socket has no port) |
# | 2.3 | `reason` in the WebSocket close event |
# | 2.4 | `send()` on a closed connection should raise an error (an `OSError` subclass) |
# | 2.5 | `reason` in the WebSocket disconnect event |
#
# Most of them are about WebSockets (chapter 15). For HTTP, 2.4 is the one that changes
# how you write an app, as you just saw. "If missing assume `2.0`": an app that needs a
# newer feature can check. Compare the versions as tuples of numbers, not as strings: as
# strings, `"2.10" < "2.4"`, because the comparison goes character by character. Here is a
# helper that does it, asked about the scope you caught at the start:

# %%
def spec_version(scope):
    return tuple(int(part) for part in scope["asgi"].get("spec_version", "2.0").split("."))

print("server follows spec", caught[-1]["asgi"]["spec_version"])
print("send() raises on a closed connection:", spec_version(caught[-1]) >= (2, 4))
print("websocket.disconnect carries a reason:", spec_version(caught[-1]) >= (2, 5))

# %% [markdown]
# `spec_version` reads the key with `.get` and the spec's own default, `"2.0"`, so it
# also works on a server that leaves the key out. barelab follows 2.4, so a WebSocket app
# on it should not count on a disconnect `reason`.
#
# ### Extensions
#
# Beyond the core spec, a server can offer *extensions*: optional features, each named in a
# `scope["extensions"]` dict ("Extensions" in the main spec). An app may use one only if
# the server put its name there. You met the WSGI version of the idea in chapter 04:
# `wsgi.file_wrapper`, an optional key that a server may put in `environ` and an app may
# use only if it is there. The asgiref docs describe a handful of extensions, among them:
#
# - `http.response.trailers`: header fields after the body (this is what `trailers: True`
#   asks for);
# - `http.response.early_hint`: a `103 Early Hints` response before the real one;
# - `http.response.zerocopysend`: send a file with `os.sendfile`, the job
#   `wsgi.file_wrapper` did;
# - `http.response.push`: HTTP/2 server push;
# - `websocket.http.response`: answer a WebSocket handshake with an ordinary HTTP
#   response instead of a bare `403`;
# - `tls`: details of the TLS connection, for HTTPS servers.
#
# barelab offers none of them for HTTP, which is why the `trailers_unasked` mistake failed.
# The scope you caught has no `extensions` key at all:

# %%
"extensions" in caught[-1]

# %% [markdown]
# The `extensions` key is itself optional, so an app that wants a feature asks with a
# default, for example `"http.response.trailers" in scope.get("extensions", {})`, and
# falls back to plain responses when the answer is `False`, as it is here.

# %% [markdown]
# ## Summary
#
# - An ASGI app is `async def app(scope, receive, send)`, called once per connection scope
#   (for HTTP, once per request). It should raise on a scope `type` it does not handle.
# - The HTTP scope holds the request head: `method`, `path` (decoded) and `raw_path`
#   (as sent), `query_string` (bytes), `root_path`, `headers` (a list of byte pairs,
#   names lowercased, repeats kept), `client`, `server`, `state`, and the versions in
#   `asgi`. It replaces WSGI's `environ` without the "bytes in a str" and `HTTP_` tricks.
# - The body arrives through `receive()` as `http.request` events; concatenate `body` until
#   `more_body` is `False`. A chunked upload arrives as several events, already decoded.
# - The response goes out through `send()`: one `http.response.start` (`status`,
#   lowercased byte `headers`), then `http.response.body` events until one has
#   `more_body` `False`. The server frames it (Content-Length or chunked).
# - Body before start, a `str` body, start twice, no response, or an extension the server
#   never offered: barelab answered `500` and logged the rule. `HTTPResponseChecker` in
#   `barelab.built.asgi_types` catches the same mistakes in-process.
# - A client that leaves shows up as `http.disconnect` from `receive()`, and since spec
#   2.4 as an `OSError` from `send()`.
# - `scope["asgi"]["version"]` is the interface (3.0); `spec_version` is the HTTP sub-spec
#   (2.0 to 2.5); `scope["extensions"]` lists optional features.
# - Every WSGI piece has its ASGI twin: `environ` became the scope, `wsgi.input` became
#   `receive()`, `start_response` became `http.response.start`, the returned iterable
#   became `http.response.body` events, and optional server features such as
#   `wsgi.file_wrapper` became named extensions in `scope["extensions"]`.
#
# Chapter 12 writes real apps on this contract: JSON, whole bodies, streaming, and the
# same app served by barelab and by uvicorn.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — fix a broken greeting
#
# `greeting` below makes four of the mistakes from this chapter, most of them WSGI habits.
# Run it through `run_checked` to see the first refusal. (The checker looks at a message's
# shape before its place in the order, so it complains about the `str` body before it
# notices that the body came first.) Then write `greeting_fixed`, which answers `200` with
# `content-type: text/plain; charset=utf-8` and the body `Grüß dich!` encoded as UTF-8,
# and passes the checker.

# %%
async def greeting(send):
    await send({"type": "http.response.body", "body": "Grüß dich!"})
    await send({"type": "http.response.start", "status": "200 OK",
                "headers": [("Content-Type", "text/plain; charset=utf-8")]})

await run_checked(greeting)

# %% tags=["solution"]
async def greeting_fixed(send):
    ### BEGIN SOLUTION
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": "Grüß dich!".encode("utf-8")})
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    verdict = await run_checked(greeting_fixed)
    assert verdict == "no mistake found", verdict
    call = barelab.call_asgi(lambda scope, receive, send: greeting_fixed(send))
    assert call.status == 200, f"the status is {call.status!r}, expected 200"
    assert call.header("content-type") == "text/plain; charset=utf-8", \
        f"content-type is {call.header('content-type')!r}"
    assert call.body == "Grüß dich!".encode(), f"the body is {call.body!r}"

# %% [markdown]
# ### Exercise 2 — count the pieces of an upload
#
# Write an ASGI app `upload_counter` that reads the whole request body and answers `200`
# with a plain-text body like `3 events, 9 bytes`: how many `http.request` events it took,
# and how many body bytes they carried in total. If `http.disconnect` arrives before the
# body is complete, return without answering. The check calls it in-process and over a
# real socket with the chunked request from above.

# %% tags=["solution"]
async def upload_counter(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"upload_counter only speaks http, not {scope['type']!r}")
    ### BEGIN SOLUTION
    events, size = 0, 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return
        events += 1
        size += len(event.get("body", b""))
        if not event.get("more_body", False):
            break
    await answer(send, f"{events} events, {size} bytes")
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    call = barelab.call_asgi(upload_counter, "POST", body=[b"ab", b"", b"cde", b"f"])
    assert call.text == "4 events, 6 bytes", f"4 chunks of 6 bytes in all gave {call.text!r}"
    call = barelab.call_asgi(upload_counter, "GET")
    assert call.text == "1 events, 0 bytes", f"a GET without a body gave {call.text!r}"
    gone = barelab.call_asgi(upload_counter, "POST", receive_events=[
        {"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}])
    assert gone.status is None, "after http.disconnect there is nobody to answer: just return"
    counter_server = barelab.serve(upload_counter)
    wire = barelab.raw_exchange(counter_server, chunked)
    counter_server.stop()
    assert wire.received.endswith(b"3 events, 9 bytes"), f"over the wire: {wire.received[-40:]!r}"

# %% [markdown]
# ### Exercise 3 — from scope to environ
#
# The HTTP spec's "WSGI Compatibility" section says how to run a WSGI app under an ASGI
# server: build an `environ` from the scope. Write `environ_from_scope(scope, body)` that
# returns a PEP 3333 `environ` for an `http` scope. You need `REQUEST_METHOD`,
# `SCRIPT_NAME`, `PATH_INFO`, `QUERY_STRING`, `SERVER_NAME`, `SERVER_PORT`,
# `SERVER_PROTOCOL`, `CONTENT_TYPE` / `CONTENT_LENGTH` when those headers are present,
# one `HTTP_...` key per other header (repeats joined with `, `), and the `wsgi.*` keys
# (`wsgi.input` is `io.BytesIO(body)`).
#
# Two traps: `PATH_INFO` is "bytes in a str", so `/café` must become `'/cafÃ©'`
# (`.encode("utf-8").decode("latin-1")`), and every value in `environ` must be a `str`.
# (The spec says `PATH_INFO` "can be derived from `path` and `root_path`". The check
# uses an empty `root_path`, so here `PATH_INFO` comes from `path` alone.)
# The check looks at those values and runs your environ through
# `wsgiref.validate.validator`, which raises `AssertionError` at anything PEP 3333 forbids.

# %% tags=["solution"]
import io

def environ_from_scope(scope, body=b""):
    ### BEGIN SOLUTION
    server_host, server_port = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server_host, "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = value.decode("latin-1")
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    ### END SOLUTION
    return environ

# %% tags=["check"]
from wsgiref.validate import validator

with check("Exercise 3"):
    print(sorted(key for key in environ_from_scope(barelab.build_scope("http")) if key.isupper()))
    test_scope = barelab.build_scope("http", "POST", "/caf%C3%A9", query=b"x=1", headers=[
        ("Content-Type", "text/plain"), ("Content-Length", "5"), ("X-Tag", "a"), ("X-Tag", "b")])
    env = environ_from_scope(test_scope, b"hello")
    assert env.get("PATH_INFO") == "/cafÃ©", f"PATH_INFO is {env.get('PATH_INFO')!r}"
    assert env.get("QUERY_STRING") == "x=1", f"QUERY_STRING is {env.get('QUERY_STRING')!r}"
    assert env.get("CONTENT_TYPE") == "text/plain" and "HTTP_CONTENT_TYPE" not in env, \
        "Content-Type goes to CONTENT_TYPE, without the HTTP_ prefix"
    assert env.get("HTTP_X_TAG") in ("a, b", "a,b"), f"HTTP_X_TAG is {env.get('HTTP_X_TAG')!r}"
    def plain_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    result = validator(plain_app)(dict(env), lambda status, headers, exc_info=None: None)
    list(result), result.close()
    assert env["wsgi.input"].read() == b"hello", "wsgi.input should hold the body"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

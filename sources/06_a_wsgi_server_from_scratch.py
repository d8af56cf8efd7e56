# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 06. A WSGI server from scratch
#
# Gunicorn, Waitress and uWSGI all do one job: turn bytes from a socket into a call of
# `app(environ, start_response)`, and turn what the app gives back into bytes again. In
# this chapter you write that program yourself, on nothing but the `socket` module.
#
# ## Learning goals
#
# - Write the simplest server that works, then watch it fail on a dozen real requests:
#   each failure is a trap that tutorial servers fall into.
# - Build the course's own threaded HTTP/1.1 WSGI server, `barelab.built.wsgi_server`,
#   fixing each trap with the rule from PEP 3333 or RFC 9110/9112 that settles it.
# - Know how a server frames a response it cannot measure in advance (chunked), when it
#   may keep a connection open, and what it does when the app fails halfway through.
# - Run a real Flask app and a real Django app on your server and fetch them with `curl`.
#
# The chapter is long, and it has three parts. The first two sections break a naive
# server twelve ways; that is the motivation, and it goes fast. The middle sections, from
# "The plan" to "Many clients, and a prompt stop", build the real server one piece at a
# time, and each piece is tried on its own before the next one starts. The last sections
# send the twelve traps again, then limits, a validator and two real frameworks. If you
# get lost in the middle, the table in "The plan" says where you are.

# %% [markdown]
# ## The simplest server that works
#
# A WSGI server sits between two parties that never meet: a client that speaks HTTP over
# a socket, and an app that speaks Python. For each request, it does four things:
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant A as app
#     C->>S: request bytes
#     S->>A: app(environ, start_response)
#     A->>S: start_response("200 OK", headers)
#     A->>S: an iterable of bytes
#     S->>C: response bytes
# ```
#
# Chapter 02 gave you a parser for the request bytes, so a first server is short. Start
# with the half that turns a parsed request into an `environ`: the method; the path and
# the query string, split at the `?`; the body wrapped in a `BytesIO`, because apps *read*
# the body as if from a file; and one `HTTP_` key per header, the way CGI named them.

# %%
import io
from barelab.built.http_wire import parse_request, format_response

def naive_environ(request):
    path, _, query = request.target.decode().partition("?")
    environ = {"REQUEST_METHOD": request.method.decode(), "PATH_INFO": path,
               "QUERY_STRING": query, "wsgi.input": io.BytesIO(request.body)}
    for name, value in request.headers:
        environ["HTTP_" + name.decode().upper().replace("-", "_")] = value.decode()
    return environ

# %% [markdown]
# Feed it a small request and look at what an app would be told (`wsgi.input` is left
# out of the display: it is just a file object):

# %%
sample = naive_environ(parse_request(b"GET /hello?lang=fr HTTP/1.1\r\nHost: x\r\n"
                                     b"User-Agent: curl\r\n\r\n"))
{key: value for key, value in sample.items() if key != "wsgi.input"}

# %% [markdown]
# Every value is a `str`, and each header has become a key such as `HTTP_USER_AGENT`:
# upper case, dashes turned into underscores, `HTTP_` in front. That naming comes from
# CGI, where a web server handed each header to a script as an environment variable, and
# an environment variable's name cannot contain a dash. WSGI kept the names, so that CGI
# scripts could be ported without renaming anything.
#
# It looks right, and most tutorials write exactly this. Keep it in mind: the next section
# finds four things wrong with it.
#
# The other half talks to the socket. It reads once, calls the app with a
# `start_response` that only remembers the status and headers it is given, joins the body
# the app returns into one `bytes`, and sends the whole response in one go with chapter
# 02's `format_response`, which adds a `Content-Length`. As you read it, count the
# shortcuts: one `recv()` for the whole request, a `b"".join` that waits for the whole
# body, and nothing at all for an app that raises. Each one comes back as a trap.

# %%
def naive_handle(conn, app):
    request = parse_request(conn.recv(65536))      # one read: the whole request, we hope
    response = []
    def start_response(status, headers, exc_info=None):
        response[:] = [status, headers]            # kept for after the app returns
    body = b"".join(app(naive_environ(request), start_response))
    status, headers = response
    conn.sendall(format_response(int(status[:3]), headers, body, reason=status[4:]))

# %% [markdown]
# Around that sits the part that accepts connections. You do not open the listening
# socket yourself: barelab does, so that re-running a cell replaces the old server on the
# same port instead of failing with "address already in use". Any class with three
# methods plugs in (the base class is `barelab.engines.base.Engine`):
#
# - `__init__(app, sock, log, **options)` receives the app and a socket that is already
#   listening; the base class keeps them as `self.app`, `self.sock` and `self.log`;
# - `start()` begins serving in the background and returns at once;
# - `stop()` ends it.
#
# This first version serves one client at a time, on one background thread. To notice
# `stop()`, it gives `accept()` a timeout of 0.1 s, so the thread wakes up ten times a
# second to look at a `running` flag.

# %%
import threading
from barelab.engines.base import Engine

class NaiveServer(Engine):
    def start(self):
        self.sock.settimeout(0.1)            # accept() gives up every 0.1 s
        self.running = True
        self.thread = threading.Thread(target=self.accept_forever, daemon=True)
        self.thread.start()

    def stop(self, timeout=2.0):
        self.running = False                 # the loop notices within 0.1 s
        self.thread.join(timeout)
        self.sock.close()

# %% [markdown]
# `start()` gives the thread `self.accept_forever` to run, and the class has no such
# method yet. Writing every method inside the `class` block makes one long cell, so this
# chapter often writes a method as a plain function in a cell of its own and attaches it
# to the class afterwards (chapter 02's parser was built the same way). Python does not
# mind: a function stored on a class *is* a method, and `self` arrives as usual.
#
# The loop accepts a client, handles its one request, closes the connection (the `with`
# block does that), and goes back to `accept()`. An exception from the parser or the app
# goes into the server's log rather than onto your screen, because the thread runs in
# the background and has no cell to print into.
#
# Look at `conn.settimeout(2.0)`: it matters more than it seems. Without it, a client that
# connects and says nothing would hold the server's only thread for ever. Trap 12 comes
# back to it.

# %%
def accept_forever(self):
    while self.running:
        try:
            conn, client = self.sock.accept()
        except TimeoutError:
            continue                         # nobody came: look at self.running again
        with conn:
            conn.settimeout(2.0)             # a silent client holds us 2 s at most
            try:
                naive_handle(conn, self.app)
            except Exception as error:
                self.log.error(f"{type(error).__name__}: {error}")

NaiveServer.accept_forever = accept_forever

# %% [markdown]
# Serve a small app with it. `server=NaiveServer` tells barelab which class to use, and
# `name=` lets you start a second server next to it later.

# %%
import barelab

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, WSGI!\n"]

naive = barelab.serve(hello, server=NaiveServer, name="naive")
naive

# %% [markdown]
# Ask it with `curl`, the command-line client (`-s` silent, `-i` show the response head):

# %%
# !curl -s -i {naive.url}

# %% [markdown]
# It answers, with a status line, a `Content-Length` from `format_response`, and the body.
# That is a working WSGI server in about forty lines, and many tutorials stop here. The
# next section sends it requests that real clients send every day, one trap at a time.

# %% [markdown]
# ## Twelve ways to break it
#
# To see what the server hands the app, use an app that answers with the parts of the
# `environ` that matter here: the path, and every key that came from a header. Serving it
# under the same name, `"naive"`, replaces the hello app on the same port.

# %%
def show_environ(environ, start_response):
    keys = ["PATH_INFO"] + sorted(k for k in environ if k.startswith(("HTTP_", "CONTENT_")))
    lines = [f"{key} = {environ[key]!r}" for key in keys if key in environ]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return ["\n".join(lines).encode("utf-8")]

naive = barelab.serve(show_environ, server=NaiveServer, name="naive")
naive

# %% [markdown]
# Now one request with four traps in it. The path has an `é`, which a browser sends
# percent-encoded as its two UTF-8 bytes (`%C3%A9`). `Accept` and `Cookie` come twice, which
# HTTP allows. `X-User_Id` is spelled with an underscore. And it is a form POST, so it has
# a `Content-Type` and a `Content-Length`.
#
# `barelab.raw_exchange` sends bytes exactly as written, on a fresh connection, and
# records what comes back; the cell prints only the response body, which is the app's
# report.

# %%
four_traps = (b"POST /caf%C3%A9 HTTP/1.1\r\nHost: x\r\n"
              b"Accept: text/html\r\nAccept: application/json\r\n"
              b"Cookie: theme=dark\r\nCookie: lang=fr\r\n"
              b"X-User-Id: 7\r\nX-User_Id: admin\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n"
              b"\r\nname=ok")
print(barelab.raw_exchange(naive, four_traps).received.partition(b"\r\n\r\n")[2].decode())

# %% [markdown]
# Four wrong answers:
#
# 1. **`PATH_INFO` is still percent-encoded.** PEP 3333 takes `PATH_INFO` from CGI, where it
#    is *decoded*: the app should see `/café`'s bytes. An app that matches routes on
#    `/café` never matches `/caf%C3%A9`.
# 2. **Repeated headers: the last one won.** The client accepts HTML *and* JSON, and sent
#    two cookies; the app sees one of each. RFC 9110 §5.3 says repeated field lines form
#    one comma-separated list, and RFC 6265 §5.4 joins cookies with `"; "`.
# 3. **`X-User_Id` overwrote `X-User-Id`.** Both names become `HTTP_X_USER_ID`. Picture a
#    proxy in front of your app that removes any `X-User-Id` the client sends and adds the
#    real one after login. It does not know `X-User_Id`, lets it through, and the client
#    is now user `admin`. nginx and Apache drop header names with `_` for this reason; a
#    server must not let two names collide.
# 4. **`HTTP_CONTENT_TYPE` and `HTTP_CONTENT_LENGTH`.** PEP 3333 (from CGI) names these two
#    `CONTENT_TYPE` and `CONTENT_LENGTH`, without `HTTP_`. Flask, Django and every other
#    framework look there, so for them this form POST has no body at all.

# %% [markdown]
# The next traps need their own apps. A helper keeps each demonstration to one line: it
# serves an app on the naive server, sends raw bytes, and shows the exchange, sent bytes
# marked `→` and received bytes `←`. The first one sends a `HEAD` request to `hello`.
# Look at the `←` side, after the blank line that ends the response head:

# %%
def try_naive(app, request):
    global naive                             # the cells below look at naive.log
    naive = barelab.serve(app, server=NaiveServer, name="naive")
    return barelab.raw_exchange(naive, request)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
try_naive(hello, HEAD)

# %% [markdown]
# **5. HEAD got a body.** `HEAD` asks for the headers a `GET` would get, and no body
# (RFC 9110 §9.3.2). The client reads the head, stops, and takes the 13 bytes that follow
# for the beginning of the *next* response on this connection: the stream is now garbage.
#
# Next, two `GET`s sent back to back on one connection, as a browser that reuses its
# connection may do. Count the responses that come back:

# %%
try_naive(hello, GET + GET)

# %% [markdown]
# **6. Two requests, one answer.** HTTP/1.1 keeps a connection open for more requests
# (RFC 9112 §9.3), and a client may *pipeline* them: send the second before the first is
# answered. The naive server read both, answered the first, and closed, without even
# saying `Connection: close`, so the client believes the connection is still usable.
#
# Next, a POST whose 200 kB body is far more than the single `recv(65536)` can hold. Look
# at what the client receives, and at the server's log next to it:

# %%
big_post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200000
try_naive(hello, big_post).received, naive.log

# %% [markdown]
# **7. A body bigger than one `recv()`.** The socket delivers bytes as they arrive, in
# pieces of any size. One `recv(65536)` gets part of this 200 kB body, the parser rightly
# says the request is incomplete, and the client gets nothing at all. A request body can
# also arrive as *chunks* (`Transfer-Encoding: chunked`, chapter 02), again in any number
# of `recv()`s.

# %% [markdown]
# **8. Streaming, buffered.** A WSGI app may return a generator, and PEP 3333 says a server
# must send each block as it comes: "the server or gateway must transmit the yielded
# bytestrings to the client in an unbuffered fashion". This app yields three words, with
# a pause before each, as if it were waiting for a slow query:

# %%
import time

def streaming(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for word in (b"one ", b"two ", b"three\n"):
        time.sleep(0.3)                      # a slow query, say, between the parts
        yield word

# %% [markdown]
# To see *when* each piece arrives, you need a client with a clock. `arrival_times` sends
# a request and notes the time of every burst of bytes it receives; bytes less than 50 ms
# apart count as one burst. It stops at the end of this app's body, whichever way the
# body is framed, so it works on a server that keeps the connection open, too.

# %%
import socket

def arrival_times(server, request):
    """Send request; return [seconds since sending, bytes] for each burst received
    (bytes less than 50 ms apart count as one burst)."""
    bursts, last = [], None
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        while data := sock.recv(65536):
            now = time.perf_counter()
            if last is not None and now - last < 0.05:
                bursts[-1][1] += data
            else:
                bursts.append([f"{now - started:.1f} s", data])
            last = now
            if bursts[-1][1].endswith((b"three\n", b"0\r\n\r\n")):
                break
    return bursts

# %% [markdown]
# Each burst is shown as `[seconds after sending, the bytes]`. If the server streams, you
# should see three bursts, 0.3 s apart:

# %%
naive = barelab.serve(streaming, server=NaiveServer, name="naive")
arrival_times(naive, GET)

# %% [markdown]
# One piece, after 0.9 s: `b"".join()` waited for the whole generator. A page that
# streams a long report, or a server-sent-events feed, never reaches the client until it
# is over.
#
# Next, an app in the oldest WSGI style. `start_response` returns a function, `write`,
# and this app sends the first part of its body through it before returning the rest:

# %%
def writer(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written, ")                      # the old, deprecated way to send a body
    return [b"then returned\n"]

try_naive(writer, GET), naive.log

# %% [markdown]
# **9. No `write()`.** The naive `start_response` returns `None`, so the app's
# `write(...)` call fails, and the client gets nothing. Before iterables, CGI apps, WSGI's
# ancestors, *wrote* their output, and PEP 3333 keeps that: `start_response` must return a
# `write(data)` callable. It is deprecated, but old apps (and some framework adapters)
# still use it.
#
# Next, cleanup. The iterable an app returns may have a `close()` method, and the server
# is meant to call it. `Tracked` is a body that remembers whether anyone did, and can fail
# halfway through if asked to:

# %%
class Tracked:
    """A response body that remembers whether close() was called."""
    def __init__(self, *chunks, fail=False):
        self.chunks, self.fail, self.closed = chunks, fail, False
    def __iter__(self):
        yield from self.chunks
        if self.fail:
            raise RuntimeError("the database went away")
    def close(self):
        self.closed = True

# %% [markdown]
# The app returns whatever the global name `body` refers to when the request arrives, so
# a cell can put a fresh `Tracked` there before each request and look at it afterwards:

# %%
def tracked_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return body                              # whichever Tracked `body` is at the time

body = Tracked(b"fine\n")
try_naive(tracked_app, GET)
body.closed

# %% [markdown]
# **10. `close()` never called.** If the iterable has a `close()` method, PEP 3333 says the
# server must call it when the response is done, "whether the request was completed
# normally, or terminated early due to an application error". That is where apps give
# back database connections and delete temporary files.
#
# Now an app with a bug in it:

# %%
def broken(environ, start_response):
    raise KeyError("user_id")

try_naive(broken, GET), naive.log

# %% [markdown]
# **11. An app error, and the client gets nothing.** A server should answer
# `500 Internal Server Error` while it still can, keep the traceback in its log, and go on
# serving. And if the error happens *after* the status line went out, it can no longer
# change the status: then the only honest thing left is to break the connection, so the
# client sees an incomplete response rather than a short one that looks complete.
#
# The last trap needs two clients at once. The first connects and then says nothing; the
# second is you, timing how long your ordinary request takes. A healthy server answers in
# about a millisecond:

# %%
naive = barelab.serve(hello, server=NaiveServer, name="naive")
slow_client = socket.create_connection((naive.host, naive.port))   # connects, sends nothing
started = time.perf_counter()
answer = barelab.http_request(naive, timeout=5)
slow_client.close()
answer.status, f"{time.perf_counter() - started:.1f} s"

# %% [markdown]
# **12. One slow client stops everyone.** The first client connected and has not sent its
# request yet (a phone on a bad network, say). The naive server waited for it for two
# seconds, its socket timeout, while your request, with nothing wrong with it, queued
# behind. It did get a 200 in the end, because
# the stalled connection's timeout unblocked the server; without that timeout it would
# have waited forever. The fix is a thread per connection, with a bound on how many.
#
# That makes twelve, plus two quieter ones: the server never sends `Date` (RFC 9110 §6.6.1
# says an origin server with a clock must) and `stop()` polls, taking up to 0.1 s to notice.
# Time to build the real thing.
#
# None of the twelve is exotic. Browsers send `HEAD` and percent-encoded paths, HTTP
# libraries reuse connections, phones stall on bad networks, and every app has bugs. A
# server that gets them wrong works in a demo and fails in production, usually in a way
# that looks like the app's fault.

# %% [markdown]
# ## The plan
#
# The course server has four layers, each a class with one job. You build them from the
# inside out:
#
# ```mermaid
# flowchart LR
#     S["WSGIServer<br/>accepts, starts a thread<br/>per connection, stops"] --> C
#     C["Connection<br/>reads request heads,<br/>keeps the connection alive"] --> E
#     E["Exchange<br/>runs the app,<br/>frames the response"] --> B
#     C --> H["RequestHead + environ<br/>what the app is told"]
#     E --> B["RequestBody<br/>wsgi.input, read<br/>only when asked"]
# ```
#
# Read the arrows as "uses". The server hands each accepted socket to a `Connection`; the
# connection reads one request head after another and, for each, runs one `Exchange`;
# the exchange gives the app an `environ` whose `wsgi.input` is a `RequestBody`.
#
# Each trap is fixed in one place. Keep this table at hand: when a section starts, it
# tells you which traps that section is about.
#
# | Trap | What went wrong | Fixed in |
# | --- | --- | --- |
# | 1 | `PATH_INFO` still percent-encoded | `build_environ` |
# | 2 | a repeated header: the last one won | `add_headers` |
# | 3 | `X-User_Id` posed as `X-User-Id` | `environ_key` |
# | 4 | `HTTP_CONTENT_TYPE` instead of `CONTENT_TYPE` | `environ_key`, `build_environ` |
# | 5 | `HEAD` got a body | `Exchange.send` |
# | 6 | a pipelined request was dropped | `Connection.serve` |
# | 7 | a body bigger than one `recv()` | `RequestBody` |
# | 8 | a generator's body was buffered | `Exchange.send_stream` |
# | 9 | no `write()` | `Exchange.start_response`, `Exchange.write` |
# | 10 | `close()` never called | `Exchange.run` |
# | 11 | an app error, and no answer | `Exchange.fail` |
# | 12 | one slow client stops everyone | `WSGIServer`: a thread per connection |
#
# Everything goes into one module, `barelab.built.wsgi_server`; this cell names it.

# %%
#| default_exp wsgi_server

# %% [markdown]
# The module imports chapter 02's parser pieces rather than its all-in-one `RequestReader`:
# `RequestReader` waits for the whole body before it returns a request, and a server must
# call the app as soon as the *head* is in (the app may stream the body, or refuse it
# unread). The module opens with a comment that sums up its design, then its imports,
# all from the standard library:

# %%
#| export
# A threaded HTTP/1.1 server for WSGI apps (PEP 3333), on nothing but the socket module.
# Chapter 02's parser reads each request head; the body is read only when the app asks for
# it; the response is framed here: Content-Length when its length is known, chunked when it
# is not. One thread per connection, a bounded number of them, and a stop that wakes every
# waiting thread at once instead of polling.
import re
import selectors
import socket
import threading
import time
from email.utils import formatdate
from functools import lru_cache
from urllib.parse import unquote_to_bytes
from wsgiref.util import FileWrapper

# %% [markdown]
# From chapter 02 come the parsing pieces. You will meet each of them again below:
#
# - `split_head(buffer, max_line, max_headers)` finds the end of a request head and cuts
#   it into the request line, the field lines and the offset where the body starts; it
#   returns `None` while the head is incomplete, and refuses one over the limits;
# - `parse_request_line` and `parse_fields` check those lines, and `body_length` reads
#   `Content-Length` and `Transfer-Encoding` to say how long the body is (`None`: chunked);
# - `ChunkedDecoder` decodes a chunked body from a buffer that is still growing;
# - `format_response_head` and `reason_phrase` write a status line and headers;
# - `TOKEN` and `FIELD_VALUE` are the patterns a header name and a header value must match;
# - `HTTPError` and its subclasses (`BadRequest`, `HeaderFieldsTooLarge`, ...) carry the
#   status code to refuse a request with.

# %%
#| export
from barelab.built.http_wire import (FIELD_VALUE, TOKEN, BadRequest, ChunkedDecoder,
                                     HeaderFieldsTooLarge, HTTPError, body_length,
                                     format_response_head, parse_fields, parse_request_line,
                                     reason_phrase, split_head)
from barelab.engines.base import Engine

# %% [markdown]
# Then the limits: every part of a request has a maximum size, and so does the number of
# connections. Each comment names the status a client gets for crossing the limit; the
# section on limits, near the end, sends a request over each one. `DRAIN_LIMIT` is not an
# option: it is how much of a request body the app left unread the server will skip to
# keep the connection open.

# %%
#| export
OPTIONS = {
    "max_line_bytes": 8190,              # the request line; 414 above it
    "max_header_bytes": 16384,           # the header section; 431 above it
    "max_body_bytes": 8 * 1024 * 1024,   # the request body; 413 above it
    "keep_alive_timeout": 5.0,           # seconds an idle connection stays open
    "io_timeout": 30.0,                  # seconds a request or response may stall mid-way
    "max_connections": 64,               # one thread each; one more gets 503
}
SERVER = b"barelab-course/06"
DRAIN_LIMIT = 64 * 1024                  # unread request body we skip to keep a connection

# %% [markdown]
# Options arrive as keyword arguments of `barelab.serve(...)`. A misspelt one must not be
# silently ignored (you would believe you set a limit you did not), so it is a `TypeError`,
# the error Python raises for a misspelt keyword argument. A value that is not a positive
# number is a `ValueError`.

# %%
#| export
def server_options(given: dict) -> dict:
    """The defaults, overridden by ``given``; an unknown name is a TypeError, like a bad kwarg."""
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    options = {**OPTIONS, **given}
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"option {name} must be a positive number, not {value!r}")
    return options

# %% [markdown]
# Ask for eight connections and read the value back; every other option keeps its
# default:

# %%
server_options({"max_connections": 8})["max_connections"]

# %% [markdown]
# And a typo, on purpose:

# %%
try:
    server_options({"max_conections": 8})            # one "n" short
except TypeError as error:
    print(error)

# %% [markdown]
# The message lists every option the server knows, so the fix is one glance away.
#
# Chapter 02's `HTTPError` family already names the statuses for a bad request (400), a
# body too large (413), a target too long (414) and a head too large (431). A server needs
# two more: 408 for a client that stops sending in the middle of a request, and 501 for a
# method it does not serve. One more exception is not an HTTP error at all: it is what the
# app sees when the client is gone.

# %%
#| export
class RequestTimeout(HTTPError): status = 408            # RFC 9110 §15.5.9
class MethodNotImplemented(HTTPError): status = 501      # RFC 9110 §15.6.2

class ClientDisconnected(ConnectionError):
    """The client went away mid-exchange; wsgi.input and write() raise it into the app."""

# %% [markdown]
# Make one and look at its repr:

# %%
RequestTimeout("the client went quiet")

# %% [markdown]
# The `408` in that repr comes from the class: every `HTTPError` knows the status code to
# answer with, so the code that refuses a request never has to look it up.

# %% [markdown]
# Every response carries a `Date` (RFC 9110 §6.6.1). Formatting a date costs more than
# the rest of a small response, and its value changes only once a second, so `http_date`
# keeps the last one it formatted, with the second it belongs to, and formats a new one
# only when the clock has moved on.

# %%
#| export
_date = (0, b"")

def http_date() -> bytes:
    """The Date header's value (RFC 9110 §6.6.1), formatted once a second, not per request."""
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]

# %% [markdown]
# The value is the one date format HTTP generates, always in GMT (RFC 9110 §5.6.7). A
# second call within the same second costs one comparison:

# %%
http_date()

# %% [markdown]
# A refusal is a complete little response: status line, a plain-text body that says what
# was wrong, `nosniff` so no browser guesses it is HTML, and usually `Connection: close`.

# %%
#| export
def error_response(status: int, text: str, *, keep_alive: bool = False,
                   head_only: bool = False) -> bytes:
    """A short text/plain answer for a request we refuse or an app that failed."""
    body = f"{status} {reason_phrase(status)}\n{text}\n".encode("utf-8")
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
               (b"Content-Length", b"%d" % len(body)), (b"X-Content-Type-Options", b"nosniff"),
               (b"Date", http_date()), (b"Server", SERVER)]
    if not keep_alive:
        headers.append((b"Connection", b"close"))
    return format_response_head(status, headers) + (b"" if head_only else body)

# %% [markdown]
# Here is the 408 a stalled client will get. `show_bytes` prints bytes one line at a time
# and spells out the `\r\n` at the end of each, so you can count them:

# %%
barelab.show_bytes(error_response(408, "the client went quiet"))

# %% [markdown]
# That is what a client whose request stalled will receive, byte for byte: the status
# line, five headers, the blank line, and a body a human can read in `curl`.

# %% [markdown]
# ## The request head
#
# `parse_request_line`, `parse_fields` and `body_length` from chapter 02 refuse malformed
# lines, obs-fold, a space before the colon, bad or conflicting `Content-Length`, and
# `Transfer-Encoding` beside `Content-Length`. What a *server* adds is the `Host` field,
# which HTTP/1.1 requires exactly once (RFC 9112 §3.2), and the shapes a request-target
# may take: `/path?query` almost always, `*` for `OPTIONS`, and `http://host/path` (the
# *absolute form*, which a client sends to a proxy, and whose host then replaces `Host`).
#
# `check_host` comes first. The `HOST` pattern accepts a name or an IPv4 address, or an
# IPv6 address in brackets, each with an optional `:port`. Field names arrive lower-cased
# from `parse_fields`, so the code looks for `b"host"`.
#
# The `HOST` pattern is loose about names: it takes what RFC 3986 §3.2.2 calls a
# `reg-name`, percent-encoding and sub-delimiters included. It is strict about what
# matters: no space, no `/`, no `@`. `ABSOLUTE` spells the scheme in both cases letter by
# letter, because URI schemes are case-insensitive (RFC 3986 §3.1).

# %%
#| export
HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")
ABSOLUTE = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://([^/?]*)(.*)")

def check_host(fields, version: bytes) -> None:
    hosts = [value for name, value in fields if name == b"host"]
    if len(hosts) > 1:
        raise BadRequest("more than one Host field (RFC 9112 §3.2)")
    if not hosts and version != b"1.0":
        raise BadRequest("an HTTP/1.1 request must carry a Host field (RFC 9112 §3.2)")
    if hosts and not HOST.fullmatch(hosts[0]):
        raise BadRequest(f"Host is not host[:port] (RFC 9112 §3.2): {hosts[0][:40]!r}")

# %% [markdown]
# Three bad heads: two `Host` fields, none at all, and one with a space in it. Each is a
# `BadRequest`, which means a 400:

# %%
for fields in ([(b"host", b"a.test"), (b"host", b"b.test")], [], [(b"host", b"a b")]):
    try:
        check_host(fields, b"1.1")
    except BadRequest as error:
        print(error.status, error.message)

# %% [markdown]
# Each message names the rule it enforces, and it becomes the body of the 400. Whoever
# wrote the broken client can look the section up instead of guessing.
#
# `split_target` sorts the request-target into its shapes. The usual `/path?query` is a
# `partition`; `CONNECT` (which asks for a tunnel) is refused with 501; `*` is accepted
# only for `OPTIONS`; anything else must be the absolute form, matched by the `ABSOLUTE`
# pattern, with no `user@` part and a valid host.

# %%
#| export
def split_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """``(path, query, authority)``; authority is None unless the target is absolute."""
    if b"#" in target:
        raise BadRequest("a request-target never carries a #fragment (RFC 9112 §3.2)")
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        return path, query, None
    if method == b"CONNECT":
        raise MethodNotImplemented("CONNECT (tunnels) is not served here (RFC 9110 §9.3.6)")
    if target == b"*" and method == b"OPTIONS":
        return b"*", b"", None
    match = ABSOLUTE.fullmatch(target)
    if match is None or b"@" in match[1] or not HOST.fullmatch(match[1]):
        raise BadRequest("request-target must be /path, http://host/path or * "
                         f"(RFC 9112 §3.2): {target[:40]!r}")
    path, _, query = match[2].partition(b"?")
    return path or b"/", query, match[1]

# %% [markdown]
# Two targets: the usual form, and the absolute form a proxy receives:

# %%
split_target(b"GET", b"/search?q=caf%C3%A9"), split_target(b"GET", b"http://example.org/a?b")

# %% [markdown]
# The query stays percent-encoded: decoding it is the app's job. The third element is
# `None` for the usual form, and the host (`example.org`) for the absolute form;
# `build_environ` below uses it to replace `HTTP_HOST`.

# %% [markdown]
# Two more facts are decided from the head. Does the client want the connection kept
# open after this exchange? In HTTP/1.1 yes, unless `Connection` lists `close`; in
# HTTP/1.0 no, unless it lists `keep-alive` (RFC 9112 §9.3). And does it wait for a
# `100 Continue` before it sends the body (`Expect: 100-continue`, more on that below)?
# Both fields are comma-separated lists, maybe spread over several lines, and their
# tokens are case-insensitive: `list_tokens` collects them all, lower-cased, into a set.
#
# `RequestHead` holds the answers. `__slots__` fixes its attributes: a typo such as
# `head.lenght = 5` raises instead of quietly creating a new attribute.

# %%
#| export
def list_tokens(fields, name: bytes) -> set[bytes]:
    """The lower-cased members of a list-valued field, over all its lines (RFC 9110 §5.6.1)."""
    return {token.strip(b" \t").lower() for field, value in fields if field == name
            for token in value.split(b",")}

class RequestHead:
    """What the server knows about a request before the app runs: all but the body."""
    __slots__ = ("method", "target", "version", "fields", "path", "query", "authority",
                 "length", "keep_alive", "expect_continue")

# %% [markdown]
# A `Connection` field sent on two lines, in mixed case, with spaces after the comma.
# `list_tokens` should give one flat set:

# %%
sorted(list_tokens([(b"connection", b"Keep-Alive, Upgrade"), (b"connection", b"close")],
                   b"connection"))

# %% [markdown]
# Three tokens, lower-cased and stripped. `close` is among them, so this client wants the
# connection closed after the response, whatever else it said.
#
# `parse_head` runs every check in order and fills in a `RequestHead`. Any of the checks
# may raise an `HTTPError`; the connection code further down turns that into a refusal.
# The order matters a little: the request line first (nothing else makes sense without a
# method and a version), then the fields, then what the fields say.

# %%
#| export
def parse_head(request_line: bytes, field_lines: list, max_body: int) -> RequestHead:
    """Parse and check one request head; an HTTPError says which status to refuse it with."""
    head = RequestHead()
    head.method, head.target, head.version = parse_request_line(request_line)
    head.fields = fields = parse_fields(field_lines)
    check_host(fields, head.version)
    head.length = body_length(fields, head.version, max_body)       # None: chunked
    head.path, head.query, head.authority = split_target(head.method, head.target)
    tokens = list_tokens(fields, b"connection")                      # RFC 9112 §9.3
    head.keep_alive = b"close" not in tokens and (head.version != b"1.0"
                                                  or b"keep-alive" in tokens)
    head.expect_continue = (head.version != b"1.0"
                            and b"100-continue" in list_tokens(fields, b"expect"))
    return head

# %% [markdown]
# Try it on the head of the four-trap request from before. `split_head`, imported from
# chapter 02 with the module above, cuts it into the request line, the field lines, and
# the offset where the body starts:

# %%
request_line, field_lines, body_start = split_head(four_traps)
trap_head = parse_head(request_line, field_lines, max_body=1_000_000)
trap_head.path, trap_head.length, trap_head.keep_alive, trap_head.expect_continue

# %% [markdown]
# The path is still encoded (decoding is the environ's job, next), the body is 7 bytes
# long, the connection may stay open (HTTP/1.1, and nobody said `close`), and the client
# is not waiting for a `100 Continue`.

# %% [markdown]
# ## The environ, right this time
#
# Traps 1 to 4 are all about names and values in the `environ`. One function maps a header
# name to its key, and says `None` for the ones to drop: names with `_` (trap 3), and
# `Proxy`, which would become `HTTP_PROXY`, a variable that many HTTP libraries read as
# *their* proxy setting (the "httpoxy" attack). `Content-Type` loses its `HTTP_` prefix
# (trap 4); `Content-Length` is set from the parsed length instead, so `5, 5` becomes `5`.
# Header names are few and repeat on every request, so the answers are cached.

# %%
#| export
@lru_cache(maxsize=512)
def environ_key(name: bytes) -> str | None:
    """The environ key for a (lower-case) request header name; None drops the header."""
    if b"_" in name or name in (b"proxy", b"content-length"):
        return None
    if name == b"content-type":
        return "CONTENT_TYPE"
    return "HTTP_" + name.decode("ascii").upper().replace("-", "_")

# %% [markdown]
# Four names, one for each rule: an ordinary header, an underscore, `Content-Type`, and
# `Proxy`:

# %%
[environ_key(name) for name in (b"accept", b"x-user_id", b"content-type", b"proxy")]

# %% [markdown]
# The two `None`s are headers the app will never see: the underscore name that could
# pose as `X-User-Id`, and `Proxy`.

# %% [markdown]
# A repeated header is joined into one value (trap 2), with `", "`, the list separator of
# RFC 9110 §5.3, except for `Cookie`, whose separator is `"; "` (RFC 6265 §5.4). Values are
# decoded as latin-1, which maps each byte to one character and never fails: PEP 3333's
# "bytes in str", which an app can always turn back into the exact bytes.

# %%
#| export
def add_headers(environ: dict, fields) -> None:
    for name, value in fields:
        key = environ_key(name)
        if key is None:
            continue
        value = value.decode("latin-1")
        if key in environ:     # RFC 9110 §5.3; cookies are joined with "; " (RFC 6265 §5.4)
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        environ[key] = value

# %% [markdown]
# Two headers, each sent twice, their lines interleaved as a client may send them:

# %%
joined = {}
add_headers(joined, [(b"accept", b"text/html"), (b"cookie", b"theme=dark"),
                     (b"accept", b"application/json"), (b"cookie", b"lang=fr")])
joined

# %% [markdown]
# Each header's lines keep their order, even with another header between them. That
# matters: RFC 9110 §5.3 says the order of field lines with the same name is significant,
# because together they are one list.

# %% [markdown]
# Most of the `environ` is the same for every request on a connection: who the client is,
# what the server is, the `wsgi.*` flags. That part is built once per connection and
# copied per request, which is cheaper than building it again.
#
# `wsgi.input_terminated` is an extension Gunicorn and others agreed on: it promises that
# `wsgi.input` returns `b""` at the end of the body, so an app may read a chunked body,
# which has no `CONTENT_LENGTH`, until the end.
#
# Two more values deserve a word. `wsgi.url_scheme` is `"http"` because this server
# speaks no TLS; behind a proxy that does, the proxy says so in a header
# (`X-Forwarded-Proto`), and middleware trusted to read it fixes the
# scheme (chapter 20). `wsgi.multithread` is `True` because two requests may run
# at the same time on different threads: an app that keeps state in globals must lock it.
#
# `wsgi.file_wrapper` is the optional hook PEP 3333 offers for sending files fast. The
# standard library's `FileWrapper` simply reads the file in blocks, which is all a server
# without `sendfile()` can do anyway.

# %%
#| export
def base_environ(server_address, client, errors) -> dict:
    """The environ keys that stay the same for every request on one connection."""
    return {"SCRIPT_NAME": "", "SERVER_NAME": str(server_address[0]),
            "SERVER_PORT": str(server_address[1]), "SERVER_SOFTWARE": SERVER.decode(),
            "REMOTE_ADDR": str(client[0]), "REMOTE_PORT": str(client[1]),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": errors,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper}

# %% [markdown]
# The per-request part fixes trap 1. `PATH_INFO` is percent-decoded to *bytes*
# (`unquote_to_bytes`), then those bytes become a latin-1 string. Decoding `%C3%A9` as UTF-8
# instead would give `é`, which looks friendlier and breaks the contract: an app could not
# tell `%C3%A9` from a latin-1 `%E9`. `QUERY_STRING` stays encoded, as PEP 3333 says; the
# app's query parser decodes it. A path without `%` skips the decoding: most paths.
#
# `REQUEST_URI` is not in PEP 3333. It is an extension from the CGI era that many servers
# still set: the target exactly as the client sent it, which is handy in logs.

# %%
#| export
def build_environ(head: RequestHead, base: dict, body) -> dict:
    """The PEP 3333 environ of one request. Strings are "bytes in str": latin-1."""
    environ = base.copy()
    path = head.path
    environ["REQUEST_METHOD"] = head.method.decode("ascii")
    environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    environ["QUERY_STRING"] = head.query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + head.version.decode("ascii")
    environ["REQUEST_URI"] = head.target.decode("latin-1")
    environ["wsgi.input"] = body
    if head.length:
        environ["CONTENT_LENGTH"] = str(head.length)
    add_headers(environ, head.fields)
    if head.authority is not None:
        environ["HTTP_HOST"] = head.authority.decode("latin-1")
    return environ

# %% [markdown]
# Build the environ of the four-trap request and look at the keys the naive server got
# wrong. No server is running yet: `base_environ` gets a made-up address, and the body is
# `None` because nothing here reads it.

# %%
trap_environ = build_environ(trap_head, base_environ(("127.0.0.1", 8000), ("127.0.0.1", 5000),
                                                     None), body=None)
{key: trap_environ[key] for key in ("PATH_INFO", "HTTP_ACCEPT", "HTTP_COOKIE",
                                    "HTTP_X_USER_ID", "CONTENT_TYPE", "CONTENT_LENGTH")}

# %% [markdown]
# All four right. The odd-looking `/cafÃ©` is correct: it is the two bytes of `é` as
# latin-1 characters, and `.encode("latin-1").decode("utf-8")` gives the app `/café`
# (Flask and Django do that for you).
#
# The last piece of the environ is `wsgi.errors`, a text stream for the app's error
# messages, like `sys.stderr`. Here it writes them into the server's log. An app may write
# half a line and the rest later, so `write` keeps the unfinished end in `pending` and
# logs only complete lines.

# %%
#| export
class ErrorLog:
    """wsgi.errors: what the app writes there lands in server.log, one line at a time."""

    def __init__(self, log):
        self.log, self.pending = log, ""

    def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors is a text stream (PEP 3333), not for "
                            f"{type(text).__name__}")
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.log.error(f"wsgi.errors: {line}")

# %% [markdown]
# PEP 3333 asks for two more methods: `writelines`, and `flush`, which here logs whatever
# unfinished line is left.

# %%
#| export
def _writelines(self, lines) -> None:
    for line in lines:
        self.write(line)

def _flush(self) -> None:
    if self.pending.strip():
        self.log.error(f"wsgi.errors: {self.pending}")
    self.pending = ""

ErrorLog.writelines, ErrorLog.flush = _writelines, _flush

# %% [markdown]
# Try it on a log of its own. The first `write` finishes one line and starts another; only
# `flush` gets the second one out:

# %%
from barelab.logs import ServerLog

errors = ErrorLog(ServerLog())
errors.write("disk almost full\nretrying")
before_flush = [entry.message for entry in errors.log.entries]
errors.flush()
before_flush, [entry.message for entry in errors.log.entries]

# %% [markdown]
# Before the flush, only the finished line; after it, both. An app that writes a message
# in pieces still produces whole lines in the log.

# %% [markdown]
# ## `wsgi.input`: the body, read only when asked
#
# Trap 7 came from reading the body up front. The course server does not read it at all
# until the app calls `environ["wsgi.input"].read()`. That has three benefits: the app may
# read a huge upload piece by piece; an app that refuses a request (401, 404) never waits
# for a body it does not want; and the server can honour `Expect: 100-continue`.
#
# That last one is a polite client's question: "here is my head, with a 1 GB body; shall I
# send it?" The client waits for the interim response `100 Continue` before sending
# (RFC 9110 §10.1.1). The server answers it at the app's first read, so an app that
# answers 401 without reading makes the client skip the upload altogether:
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant A as app
#     C->>S: PUT head, with Expect: 100-continue
#     S->>A: app(environ, start_response)
#     A->>S: environ["wsgi.input"].read()
#     S->>C: HTTP/1.1 100 Continue
#     C->>S: the body
#     S->>A: the body's bytes
#     A->>S: start_response("200 OK", ...), [b"stored"]
#     S->>C: HTTP/1.1 200 OK ...
# ```
#
# If the app never calls `read()`, the four arrows in the middle never happen: the client
# gets its 401 (or 404) before it has sent the body, and can skip sending it.
#
# `RequestBody` reads from the connection's buffer: bytes that came with the head are
# already there, the rest comes from `receive_body()` (you write it with the connection).
# A chunked body goes through chapter 02's `ChunkedDecoder`.

# %%
#| export
class RequestBody:
    """wsgi.input: the request body, read from the socket only when the app asks for it.

    Content-Length and chunked bodies look the same to the app, and reads stop at the end of
    the body, never in the next request (PEP 3333: "simulate an end-of-file condition").
    """

    def __init__(self, connection, head: RequestHead):
        self.connection = connection
        self.left = head.length                 # bytes still to come; None for chunked
        self.decoder = None if head.length is not None else ChunkedDecoder(
            0, connection.options["max_body_bytes"], connection.options["max_header_bytes"])
        self.done = head.length == 0
        self.must_continue = head.expect_continue and not self.done
        self.pending = bytearray()               # received, not yet read by the app
        self.error = None                        # what reading the body failed with

# %% [markdown]
# The constructor only sets up bookkeeping: how many bytes are `left` (or a decoder, for a
# chunked body), whether the body is `done`, whether a `100 Continue` is still owed, and
# `pending`, bytes already received that the app has not read yet. As with `NaiveServer`,
# the methods follow one cell at a time, each attached to the class right after it is
# written (`RequestBody._more = _more`).
#
# `_more()` is the one place where body bytes come from; every reading method further down
# calls it and nothing else. It sends the `100 Continue` once, and remembers an error (a
# malformed chunk, a body over the limit, a client gone), so the server later knows the
# app failed because of the request, not because of a bug.

# %%
#| export
def _more(self) -> bytes:
    """The next piece of the body, b"" at its end; sends 100 Continue on the first call."""
    if self.done:
        return b""
    if self.error is not None:
        raise self.error
    if self.must_continue:                       # RFC 9110 §10.1.1: the client waits for it
        self.must_continue = False
        self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        return self._next_chunk() if self.decoder else self._next_sized()
    except (HTTPError, ClientDisconnected) as error:
        self.error = error
        raise

RequestBody._more = _more

# %% [markdown]
# A `Content-Length` body takes at most `left` bytes from the buffer, so it never eats
# into a pipelined next request. A chunked body lets the decoder work on the buffer, takes
# the decoded data, and drops the bytes the decoder has finished with.
#
# If the buffer is empty, `_next_sized` asks the connection for more first; whatever
# arrives, it never takes more than `left`.

# %%
#| export
def _next_sized(self) -> bytes:
    buffer = self.connection.buffer
    if not buffer:
        self.connection.receive_body()
    piece = bytes(buffer[:self.left])
    del buffer[:len(piece)]
    self.left -= len(piece)
    self.done = not self.left
    return piece

RequestBody._next_sized = _next_sized

# %% [markdown]
# The chunked case hands the buffer to chapter 02's `ChunkedDecoder`. Three parts of its
# interface matter here: `advance(buffer)` decodes every chunk that is complete and
# returns where the body ends, or `None` while the last chunk and the trailers are not
# all in; `parts` is the list of decoded pieces; `pos` is how far into the buffer it has
# got. The loop takes the pieces, cuts the bytes the decoder has finished with from the
# buffer, and resets `pos` to match. With nothing decoded yet, it asks the connection for
# more and tries again.

# %%
#| export
def _next_chunk(self) -> bytes:
    buffer, decoder = self.connection.buffer, self.decoder
    while True:
        end = decoder.advance(buffer)             # chapter 02's decoder, on our buffer
        piece = b"".join(decoder.parts)
        decoder.parts.clear()
        del buffer[:decoder.pos if end is None else end]
        decoder.pos = 0
        if end is not None:
            self.done = True
            return piece
        if piece:
            return piece
        self.connection.receive_body()

RequestBody._next_chunk = _next_chunk

# %% [markdown]
# On top of `_more()` sit the methods PEP 3333 requires of `wsgi.input`: `read(size)`,
# `readline(size)`, `readlines(hint)` and iteration, which yields lines. `read` collects
# pieces in `pending` until it has `size` bytes (or, without a size, until the body ends)
# and hands back exactly that many, keeping the rest for the next call.
#
# Follow it with `read(3)` on the body `hello`: `_more()` returns `hello`, which goes into
# `pending`; the loop stops because `pending` holds at least 3 bytes; `hel` goes back to
# the app, and `lo` waits in `pending` for the next call. `pending` is a `bytearray`,
# which can grow at the end and shrink at the front without being copied each time, as a
# `bytes` would be.

# %%
#| export
def _read(self, size: int | None = -1) -> bytes:
    pending = self.pending
    while size is None or size < 0 or len(pending) < size:
        piece = self._more()
        if not piece:
            break
        if not pending and len(piece) == size:
            return piece                         # the common case: no copying
        pending += piece
    if size is None or size < 0:
        size = len(pending)
    data = bytes(pending[:size])
    del pending[:size]
    return data

RequestBody.read = _read

# %% [markdown]
# Time to see it work, without a socket or a server. A `RequestBody` needs very little of
# its connection: a `buffer` of received bytes, the `options`, `receive_body()` to get
# more, and `sendall()` for the `100 Continue`. `FakeConnection` offers just that, and
# records what would have been sent; its client never sends anything more.

# %%
import types

class FakeConnection:
    """Just enough of a connection to try RequestBody and Exchange without a socket."""
    def __init__(self, received=b""):
        self.buffer = bytearray(received)    # what the client sent after the head
        self.options, self.sent = server_options({}), []
        self.server = types.SimpleNamespace(stopping=False)
        self.log, self.peer = ServerLog(), "fake client"
    def receive_body(self):
        raise ClientDisconnected("the fake client has nothing more to send")
    def sendall(self, data):
        self.sent.append(bytes(data))

# %% [markdown]
# `fake_request` parses a head with the functions from above and puts the bytes after it
# into a `FakeConnection`, as if they had arrived with the head:

# %%
def fake_request(request: bytes):
    request_line, field_lines, body_start = split_head(request)
    head = parse_head(request_line, field_lines, max_body=1_000_000)
    return head, FakeConnection(request[body_start:])

# %% [markdown]
# A 5-byte body, followed on the same connection by the next request. Read 3 bytes, then
# the rest, then once more, and look at what is left in the buffer:

# %%
POST_HELLO = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
head, conn = fake_request(POST_HELLO + GET)
wsgi_input = RequestBody(conn, head)
wsgi_input.read(3), wsgi_input.read(), wsgi_input.read(), bytes(conn.buffer)

# %% [markdown]
# `hel`, then `lo`, then `b""`: the end of the body looks like the end of a file, as PEP
# 3333 asks ("simulate an end-of-file condition if the application attempts to read past
# that point"). And the next request is untouched in the buffer, ready to be parsed. The
# same with a chunked body, whose two chunks the app receives as one decoded stream:

# %%
head, conn = fake_request(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"6\r\nHello,\r\n7\r\n world!\r\n0\r\n\r\n" + GET)
RequestBody(conn, head).read(), bytes(conn.buffer)

# %% [markdown]
# The sizes (`6`, `7`, `0`) and the CR LFs around each chunk are gone: the app gets
# `Hello, world!` and could not tell how it was framed. The next request waits in the
# buffer again.

# %% [markdown]
# A client that promises 10 bytes, sends 3 and goes away. The app sees an exception it
# can let fly, and the body remembers it in `error`, so the server can tell later that
# the failure was the client's doing:

# %%
head, conn = fake_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
wsgi_input = RequestBody(conn, head)
try:
    wsgi_input.read()
except ClientDisconnected as error:
    print("the app sees:", repr(error))
wsgi_input.error

# %% [markdown]
# Both lines show the same exception object: the one the app saw, and the one the body
# kept. You will meet this again in `blame`, which uses it to tell a client's fault from
# a bug in the app.
#
# `readline(size)` is `read` that stops after the first `\n`, or after `size` bytes if
# that comes first. It looks for `\n` only in the bytes it has not searched yet, so a long
# line arriving in many pieces is not scanned again and again.

# %%
#| export
def _readline(self, size: int | None = -1) -> bytes:
    limit = size if size is not None and size >= 0 else None
    pending, searched = self.pending, 0
    while True:
        newline = pending.find(b"\n", searched)
        if newline >= 0:
            end = newline + 1
            break
        searched = end = len(pending)
        if (limit is not None and end >= limit) or not (piece := self._more()):
            break
        pending += piece
    end = end if limit is None else min(end, limit)
    data = bytes(pending[:end])
    del pending[:end]
    return data

RequestBody.readline = _readline

# %% [markdown]
# `readlines` and iteration are built on `readline`. `hint` works as it does for files:
# stop once the lines read add up to at least that many bytes.

# %%
#| export
def _readlines(self, hint: int | None = -1) -> list[bytes]:
    lines, total = [], 0
    for line in self:
        lines.append(line)
        total += len(line)
        if hint is not None and 0 < hint <= total:
            break
    return lines

RequestBody.readlines = _readlines
RequestBody.__iter__ = lambda self: iter(self.readline, b"")

# %% [markdown]
# `iter(self.readline, b"")` calls `readline` until it returns `b""`, the end of the body.
# So an app can loop over `wsgi.input` line by line, like over a file:

# %%
head, conn = fake_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n"
                          b"one\ntwo\nthree\n")
list(RequestBody(conn, head))

# %% [markdown]
# And `Expect: 100-continue`: nothing is sent until the app's first read, which sends the
# interim response first and then returns the body. Compare what was sent before the read
# with what was sent after it:

# %%
head, conn = fake_request(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                          b"Expect: 100-continue\r\n\r\nhi")
wsgi_input = RequestBody(conn, head)
sent_before_reading = list(conn.sent)
sent_before_reading, wsgi_input.read(), conn.sent

# %% [markdown]
# An empty list before, and one interim response after, which the fake connection kept
# instead of sending. A real client would have sent `hi` only once it saw that line.
#
# Three questions about the body come up when the response goes out, and each gets a
# method of its own. The first: was the request valid at all? A chunked body that arrived
# with the head, but that the app never read, may be malformed. `check_buffered` decodes
# what is already here (without waiting for more), so such a request gets its 400
# instead of a 200.

# %%
#| export
def _check_buffered(self) -> None:
    buffer, decoder = self.connection.buffer, self.decoder
    if self.done or decoder is None or not buffer or self.error is not None:
        return
    try:
        end = decoder.advance(buffer)
    except HTTPError as error:
        self.error = error
        raise
    self.pending += b"".join(decoder.parts)
    decoder.parts.clear()
    del buffer[:decoder.pos if end is None else end]
    decoder.pos = 0
    self.done = end is not None

RequestBody.check_buffered = _check_buffered

# %% [markdown]
# The second: can the connection carry another request? Only if the server can find
# where this body ends. That means the body has been read, or what is left is small
# enough to skip, and no client is still waiting for a `100 Continue` it will never get.

# %%
#| export
def _reusable(self) -> bool:
    """Can the next request be found after this body without reading much of it?"""
    return self.error is None and not self.must_continue and (
        self.done or self.left is None or self.left <= DRAIN_LIMIT)

RequestBody.reusable = _reusable

# %% [markdown]
# The third: what to do with the unread rest. `finish` runs after the response went out.
# It reads a small rest (up to `DRAIN_LIMIT`, 64 KiB) and throws it away, so the next
# request on this connection parses. A larger one is not worth the time: closing the
# connection and letting the client open a new one is cheaper.

# %%
#| export
def _finish(self) -> bool:
    """Skip what the app left unread (a little), so the next request parses; False: close."""
    if not self.reusable():
        return False
    skipped = 0
    try:
        while skipped <= DRAIN_LIMIT:
            if not (piece := self._more()):
                return True
            skipped += len(piece)
    except (HTTPError, ClientDisconnected):
        pass
    return False

RequestBody.finish = _finish

# %% [markdown]
# Two apps that ignored their request body. The first ignored a small one: `finish`
# should skip it and leave the next request at the front of the buffer. The second
# ignored a body of 900 kB, most of which has not even arrived:

# %%
head, conn = fake_request(POST_HELLO + GET)
small_finished = RequestBody(conn, head).finish()
big_head, big_conn = fake_request(b"POST / HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 900000\r\n\r\n")
small_finished, bytes(conn.buffer), RequestBody(big_conn, big_head).finish()

# %% [markdown]
# `True` and a clean buffer for the small one. For the big one, `False`: that connection
# is not worth keeping, and the response will say `Connection: close`.

# %% [markdown]
# ## `start_response`, `write()` and framing the response
#
# The app's side of PEP 3333 is `start_response(status, headers, exc_info=None)`. The
# server checks what it is given right there, so a bad header raises inside the app, at
# the line that caused it, and never reaches the wire: a header value with CR LF in it
# would let whoever controls that value write headers of their own (response splitting).
#
# The status comes first. PEP 3333 wants a `str` such as `"200 OK"`: three digits, one
# space, a reason phrase. This server also wants a code from 200 to 599, because 1xx
# responses are the server's own business (the `100 Continue` above) and a code outside
# 100-599 is not HTTP. `HOP_BY_HOP` lists the header names that describe one connection
# rather than the response; `check_headers` below deals with them.

# %%
#| export
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
              b"transfer-encoding", b"upgrade"}

def check_status(status) -> tuple[int, bytes]:
    """``"200 OK"`` -> ``(200, b"200 OK")``, or a TypeError/ValueError quoting PEP 3333."""
    if type(status) is not str:
        raise TypeError(f'PEP 3333: the status is a str such as "200 OK", not {status!r}')
    code, space, _ = status.partition(" ")
    encoded = status.encode("latin-1")
    if not (space and len(code) == 3 and code.isascii() and code.isdigit()
            and 200 <= int(code) <= 599 and FIELD_VALUE.fullmatch(encoded)):
        raise ValueError(f'PEP 3333: the status is "a Status-Code and a Reason-Phrase, in '
                         f'that order and separated by a single space", code 200-599, '
                         f'got {status!r}')
    return int(code), encoded

# %% [markdown]
# Then one header: a `(str, str)` tuple, as PEP 3333 requires, whose name is a token and
# whose value holds no CR, LF or other control byte. Spaces around the value are
# stripped, as a recipient would strip them anyway (RFC 9110 §5.5).

# %%
#| export
def check_header(item) -> tuple[bytes, bytes]:
    if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str \
            or type(item[1]) is not str:
        raise TypeError(f"PEP 3333: each header is a (str, str) tuple, not {item!r}")
    name, value = item[0].encode("latin-1"), item[1].encode("latin-1").strip(b" \t")
    if not TOKEN.fullmatch(name) or not FIELD_VALUE.fullmatch(value):
        raise ValueError(f"header {item!r}: the name must be a token and the value hold "
                         f"no CR, LF or control byte (RFC 9110 §5.1, §5.5; PEP 3333)")
    return name, value

# %% [markdown]
# Then the whole list. *Hop-by-hop* headers (`Connection`, `Transfer-Encoding` and
# friends) describe one connection, not the response, and only the server knows the
# connection. PEP 3333 puts it bluntly: "Applications and middleware are forbidden from
# using HTTP/1.1 "hop-by-hop" features or headers". This server is lenient: it drops them
# instead of failing the request, and it honours an app's `Connection: close`. The app's
# `Content-Length` is kept, so the server can hold the app to it; a 204 never carries one
# (RFC 9110 §8.6).

# %%
#| export
def check_headers(headers, code: int):
    """Check ``response_headers``; return ``(pairs, content_length, close, names)``."""
    if type(headers) is not list:
        raise TypeError(f"PEP 3333: response_headers is a list, not {type(headers).__name__}")
    pairs, length, close, names = [], None, False, set()
    for name, value in map(check_header, headers):
        key = name.lower()
        names.add(key)
        if key in HOP_BY_HOP:      # PEP 3333: hop-by-hop headers are the server's business
            close = close or (key == b"connection" and b"close" in value.lower())
            continue
        if key == b"content-length":
            if not value.isdigit() or length not in (None, int(value)):
                raise ValueError(f"Content-Length must be one number (RFC 9110 §8.6): {value!r}")
            if length is not None or code == 204:
                continue
            length = int(value)
        pairs.append((name, value))
    return pairs, length, close, names

# %% [markdown]
# A header list as an app might send it, with one header that is not the app's to send:

# %%
check_headers([("Content-Type", "text/plain"), ("Connection", "close")], 200)

# %% [markdown]
# Four things come back: the headers to send, now as bytes; the app's `Content-Length`
# (`None`: it gave none); whether the app asked to close (`True`: its `Connection: close`
# is gone from the list but remembered); and the set of names it set, so the server knows
# not to add a second `Date` or `Server`.

# %% [markdown]
# An `Exchange` is one request and its response, seen from the app's side. Here is what
# happens between the app and the exchange for an app that returns a generator of two
# pieces. Notice that `start_response` sends nothing, and that the head goes out only
# with the first piece of the body:
#
# ```mermaid
# sequenceDiagram
#     participant A as app
#     participant E as Exchange
#     participant C as client
#     E->>A: app(environ, start_response)
#     A->>E: start_response("200 OK", headers)
#     Note over E: checked and remembered, nothing sent
#     A-->>E: returns a generator
#     E->>A: next()
#     A-->>E: b"one "
#     E->>C: head + first chunk
#     E->>A: next()
#     A-->>E: b"two"
#     E->>C: second chunk
#     E->>A: next(): StopIteration
#     E->>C: last chunk, 0 CR LF CR LF
#     E->>A: close()
# ```
#
# Its most important flag is `head_sent`: before the status line is on the wire, the
# server may still change its mind (an error becomes a 500); after it, it cannot.

# %%
#| export
class Exchange:
    """One request and its response, seen from the app's side of PEP 3333."""

    def __init__(self, connection, head: RequestHead, body: RequestBody):
        self.connection, self.head, self.body = connection, head, body
        self.status = None                 # b"200 OK", from the latest start_response
        self.code = 0
        self.headers, self.names, self.length, self.app_close = [], set(), None, False
        self.head_sent = False             # the status line is on the wire: too late to change
        self.chunked = False
        self.bodyless = head.method == b"HEAD"
        self.keep_alive = head.keep_alive
        self.left = None                   # body bytes the app's Content-Length still allows
        self.sent = 0                      # body bytes sent
        self.aborted = False               # the response is broken off: close, no linger

# %% [markdown]
# Read the attributes in three groups: what the app said (`status`, `code`, `headers`,
# `names`, `length`, `app_close`), what has gone out (`head_sent`, `sent`, `left`), and
# how the response will end (`chunked`, `bodyless`, `keep_alive`, `aborted`). The methods
# below fill them in, in roughly that order.
#
# `start_response` may be called a second time only with `exc_info`, the
# `sys.exc_info()` of an error the app caught: "I started a 200, but something failed;
# send this 500 instead". If the head is still unsent, the new status replaces the old.
# If it is already out, PEP 3333 says the server must re-raise the error *into the app*,
# because nothing else can be done. It returns `write` (trap 9).
#
# The `finally: exc_info = None` looks odd. A traceback refers to the frames it passed
# through, this frame included, and this frame would refer back to the traceback through
# `exc_info`: a reference cycle that keeps every local variable of every frame alive until
# the garbage collector runs. PEP 3333's own example server clears the name for the same
# reason.

# %%
#| export
def _start_response(self, status, headers, exc_info=None):
    if exc_info is not None:
        try:
            if self.head_sent:             # PEP 3333: too late to change; re-raise into the app
                raise exc_info[1].with_traceback(exc_info[2])
        finally:
            exc_info = None                # PEP 3333: avoid a frame <-> traceback cycle
    elif self.status is not None:
        raise AssertionError("PEP 3333: start_response() was already called; a second call "
                             "must pass exc_info")
    self.code, self.status = check_status(status)
    self.headers, self.length, self.app_close, self.names = check_headers(headers, self.code)
    return self.write

Exchange.start_response = _start_response

# %% [markdown]
# `write(data)` is trap 9's fix: it checks its argument and sends at once. PEP 3333 allows
# a little less ("before write() returns, it must guarantee that the passed-in bytestring
# was either completely sent to the client, or that it is buffered for transmission while
# the application proceeds onward"), but sending right away is the simplest way to keep
# that promise.

# %%
#| export
def _write(self, data: bytes) -> None:
    """PEP 3333's write() callable: deprecated, still served, and sent at once."""
    if self.status is None:
        raise AssertionError("PEP 3333: write() was called before start_response()")
    if type(data) is not bytes:
        raise TypeError(f"PEP 3333: write() takes bytes, not {type(data).__name__}")
    self.send(data)

Exchange.write = _write

# %% [markdown]
# An `Exchange` needs a connection, a head and a body, and `FakeConnection` provides all
# three. `fake_exchange` builds one for a request, so you can call its methods directly:

# %%
def fake_exchange(request=GET):
    head, conn = fake_request(request)
    return Exchange(conn, head, RequestBody(conn, head)), conn

exchange, conn = fake_exchange()
exchange.start_response("200 OK", [("Content-Type", "text/plain")])
exchange.code, exchange.status, exchange.headers

# %% [markdown]
# The status is split into its code and the bytes to send, and the headers are bytes now.
# Nothing was sent yet (`conn.sent` is still empty): `start_response` only records. Now
# break it on purpose: a status without its reason phrase, and a header value that tries
# to smuggle in a `Set-Cookie` of its own. Both raise inside the app, where the bug is:

# %%
for status, headers in [("200", []), ("200 OK", [("X-Note", "hi\r\nSet-Cookie: admin=1")])]:
    try:
        fake_exchange()[0].start_response(status, headers)
    except ValueError as error:
        print(error)

# %% [markdown]
# Had the second one reached the wire, the client would have read `Set-Cookie: admin=1` as
# a header of its own, set by the server. Refused inside `start_response`, it becomes an
# ordinary exception in the app, which the server turns into a 500 (you will see how).

# %% [markdown]
# Now the question the naive server never asked: how will the client know where the body
# ends? There are three answers (RFC 9112 §6.3):
#
# - **`Content-Length`**, when the length is known before the first byte goes out: the
#   app said so, or the app returned a list, so the server holds the whole body.
# - **`Transfer-Encoding: chunked`**, when it is not (a generator): each piece goes out as
#   a chunk, its size in hex first, and a zero-size chunk ends the body. This is what makes
#   streaming possible on a connection that stays open (trap 8).
# - **Closing the connection**, for an HTTP/1.0 client, which does not know chunked.
#
# HEAD, 204 and 304 responses have no body at all, so no framing either (trap 5).
#
# The code takes the cases in a slightly different order. The app's own `Content-Length`
# comes first, and wins: the server then only counts the bytes (`left`) to hold the app
# to its word. Then the bodiless responses. A `HEAD` whose length is known still gets
# its `Content-Length`, the same a `GET` would get; without a known length, a `HEAD` gets
# no framing line at all, since no body follows.

# %%
#| export
def _framing(self, length: int | None) -> list[bytes]:
    """The lines that say where the body ends: Content-Length, chunked, or closing."""
    if self.length is not None:            # the app's own Content-Length: hold it to it
        self.left = self.length
        return []
    if self.code in (204, 304) or self.head.method == b"HEAD" and length is None:
        return []
    if length is not None:
        return [b"Content-Length: %d\r\n" % length]
    if self.head.version == b"1.0":        # no chunked in HTTP/1.0: the body ends at close
        self.keep_alive = False
        return []
    self.chunked = True
    return [b"Transfer-Encoding: chunked\r\n"]

Exchange._framing = _framing

# %% [markdown]
# Then the decision about the connection. It stays open only if the client wants it, the
# app did not say `close`, the request body is out of the way (`reusable()`, from above),
# and the server is not stopping. If it closes, the response says so; an HTTP/1.0 client
# that asked for keep-alive is told it got it, because for HTTP/1.0 closing is the default.

# %%
#| export
def _connection_lines(self) -> list[bytes]:
    """Decide whether the connection stays open after this exchange, and tell the client."""
    self.keep_alive = (self.keep_alive and not self.app_close and self.body.reusable()
                       and not self.connection.server.stopping)
    if not self.keep_alive:
        return [b"Connection: close\r\n"]
    if self.head.version == b"1.0":
        return [b"Connection: keep-alive\r\n"]
    return []

Exchange.connection_lines = _connection_lines

# %% [markdown]
# The head itself puts it all together: the status line, the app's headers, the framing,
# `Date` and `Server` unless the app set them, and the `Connection` line. Setting
# `head_sent` here, as the head is built, is what makes "too late to change" true from
# this moment on.
#
# It starts with `check_buffered()` from the body section: a malformed chunked body
# already in the buffer must become a 400 now, while the status can still change.

# %%
#| export
def _response_head(self, length: int | None) -> bytes:
    """Status line and headers; ``length`` is the body's size when all of it is known."""
    if self.status is None:
        raise AssertionError("PEP 3333: the app must call start_response() before the body")
    self.body.check_buffered()
    self.bodyless = self.bodyless or self.code in (204, 304)
    lines = [b"HTTP/1.1 " + self.status + b"\r\n"]
    lines += [name + b": " + value + b"\r\n" for name, value in self.headers]
    lines += self._framing(length)
    if b"date" not in self.names:
        lines.append(b"Date: " + http_date() + b"\r\n")
    if b"server" not in self.names:
        lines.append(b"Server: " + SERVER + b"\r\n")
    lines += self.connection_lines()
    self.head_sent = True
    return b"".join(lines) + b"\r\n"

Exchange.response_head = _response_head

# %% [markdown]
# The head for the exchange from before, if the body is known to be 13 bytes long:

# %%
barelab.show_bytes(exchange.response_head(13))

# %% [markdown]
# `Content-Length: 13` comes from the length passed in. `Date` and `Server` were added
# because the app set neither. There is no `Connection` line: HTTP/1.1 keeps the
# connection open unless someone says otherwise, so there is nothing to say.

# %% [markdown]
# `send` is the only way body bytes leave. The head goes out with the first piece, in one
# `sendall` (one system call, usually one TCP packet). Each piece is sent *now*, never
# collected: that is streaming. A chunked piece gets its hex size line; an empty piece is
# skipped, because a zero-size chunk would end the body. And the app cannot send more than
# its own `Content-Length`, or the extra bytes would be read as the next response.
#
# `whole=True` says that `data` is the entire body, so its length can go into the head:
# that is how a list gets its `Content-Length` in the same `sendall` as its body.

# %%
#| export
def _send(self, data: bytes, whole: bool = False) -> None:
    """Send body bytes, after the head if it has not gone out; ``whole``: all of the body."""
    out = [] if self.head_sent else [self.response_head(len(data) if whole else None)]
    if data and not self.bodyless:
        if self.left is not None:
            if len(data) > self.left:
                self.connection.log.error(f"the app sent more than its Content-Length "
                                          f"({self.length}); the rest was dropped")
                data = data[:self.left]
            self.left -= len(data)
        if data:
            out += [b"%x\r\n" % len(data), data, b"\r\n"] if self.chunked else [data]
            self.sent += len(data)
    if out:
        self.connection.sendall(b"".join(out))

Exchange.send = _send

# %% [markdown]
# What the app returned: a list (or tuple) is the whole body already, so it goes out in one
# piece with a `Content-Length`. Anything else goes to `send_stream`, below. A `bytes`
# object is refused, although Python would happily iterate it: it would yield one
# *integer* per byte, and the app almost certainly meant `[body]`.
#
# The shortcut checks the exact type, `list` or `tuple`, rather than `isinstance`.
# Anything else, a subclass of `list` included, might do something when it is iterated,
# so it goes the slow, general way.

# %%
#| export
def _send_result(self, result) -> None:
    """Send what the app returned: a list in one go, anything else chunk by chunk."""
    if result is None or isinstance(result, (bytes, str)):
        raise TypeError(f"PEP 3333: the app must return an iterable of bytes, such as "
                        f"[b'hi'], not {type(result).__name__}")
    if type(result) in (list, tuple):      # the whole body is here: one send, Content-Length
        if not all(type(chunk) is bytes for chunk in result):
            raise TypeError("PEP 3333: the app's iterable must yield bytes")
        self.send(b"".join(result), whole=True)
    else:
        self.send_stream(result)
    self.finish()

Exchange.send_result = _send_result

# %% [markdown]
# `send_stream` sends each non-empty piece as it comes, which is all streaming is. For
# HEAD, 204 and 304 it stops once the head is out: no body will be sent, so there is no
# reason to make the app compute one.

# %%
#| export
def _send_stream(self, result) -> None:
    for chunk in result:
        if type(chunk) is not bytes:
            raise TypeError(f"PEP 3333: the app's iterable must yield bytes, "
                            f"not {type(chunk).__name__}")
        if chunk:                          # an empty chunk would end a chunked body
            self.send(chunk)
            if self.bodyless:
                break                      # HEAD, 204, 304: the head is out, that is all

Exchange.send_stream = _send_stream

# %% [markdown]
# At the end, `finish` sends the head if nothing was sent yet (an empty body), or the
# last chunk of a chunked body. Or it notices an app that sent less than its
# `Content-Length` promised: the client would wait forever for the rest, so the
# connection is marked `aborted` and will be closed.

# %%
#| export
def _finish_response(self) -> None:
    if not self.head_sent:
        self.send(b"", whole=True)
    elif self.chunked:
        self.connection.sendall(b"0\r\n\r\n")
    elif self.left and not self.bodyless:
        self.connection.log.error(f"the app sent {self.sent} of the {self.length} bytes its "
                                  f"Content-Length promised; closing the connection")
        self.aborted = True

Exchange.finish = _finish_response

# %% [markdown]
# The response side is complete, so you can watch the framing decisions on the fake
# connection. `framed` builds an exchange for a request, calls the app and sends its
# result, and shows every byte the server would have written:

# %%
def framed(app, request=GET):
    exchange, conn = fake_exchange(request)
    environ = build_environ(exchange.head, {}, exchange.body)
    exchange.send_result(app(environ, exchange.start_response))
    return barelab.show_bytes(b"".join(conn.sent))

def words(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one "
    yield b"two\n"

# %% [markdown]
# `hello` returns a list, so its length is known and it gets a `Content-Length`. Head and
# body went out in one `sendall`:

# %%
framed(hello)

# %% [markdown]
# `words` is a generator, so the length is unknown until the end. Each piece is a chunk:
# its size in hex (`4`), CR LF, the bytes, CR LF, and `0` with an empty line at the end.

# %%
framed(words)

# %% [markdown]
# The same generator for an HTTP/1.0 client, which does not understand chunks: the body
# is sent as it is, and the connection closes after it to mark the end.

# %%
framed(words, b"GET / HTTP/1.0\r\n\r\n")

# %% [markdown]
# And `HEAD`: exactly the head a `GET` would get, `Content-Length: 13` included, and no
# body (trap 5).

# %%
framed(hello, HEAD)

# %% [markdown]
# Four requests, three framings, and in no case did the app have to know about any of
# them: it returned a list or yielded bytes, and the server chose.

# %% [markdown]
# ## Errors, and `close()` always
#
# `run` calls the app and sends its response. Three endings are possible: all went well;
# the client vanished (`ClientDisconnected`, from a send or from `wsgi.input`), which is
# not the app's fault and gets one line in the log; or any other exception, which `fail`
# below deals with. However it ended, the `finally` calls the iterable's `close()`
# (trap 10).

# %%
#| export
def _run(self, app, environ: dict) -> None:
    """Call the app and send its response; whatever happens, call close() (PEP 3333)."""
    result = None
    try:
        result = app(environ, self.start_response)
        self.send_result(result)
    except ClientDisconnected as gone:
        self.aborted = True
        self.connection.log.info(f"{self.connection.peer}: the client went away ({gone})")
    except Exception as error:
        self.fail(error)
    finally:
        self.close_result(result)

Exchange.run = _run

# %% [markdown]
# `close()` is the app's code too, and it can fail. Its error is logged, and it does not
# stop the server from going on with the connection.

# %%
#| export
def _close_result(self, result) -> None:
    """Call the iterable's close(), if it has one (PEP 3333), and log its errors."""
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception as error:
            self.connection.log.error("the app's iterable failed in close()", error)

Exchange.close_result = _close_result

# %% [markdown]
# What does an error become (trap 11)? First, whose fault is it? If it is the error the
# request body failed with (a malformed chunk, a body over the limit), the client gets
# that 4xx, and the log one line. Otherwise it is a bug in the app: the traceback goes to
# the log, and the client gets a plain 500 that gives nothing away.

# %%
#| export
def _blame(self, error: Exception) -> tuple[int, str]:
    """Log the error; return the status and text the client should get for it."""
    where = f"{self.head.method.decode()} {self.head.target.decode('latin-1')}"
    if error is self.body.error:           # a bad request body: the client's fault
        self.connection.log.info(f"{self.connection.peer}: {where}: {error.message}")
        return error.status, error.message
    moment = " after the response started; closing the connection" if self.head_sent else ""
    self.connection.log.error(f"application error in {where}{moment}: {error!r}", error)
    return 500, "The application raised an error; the server log has details."

Exchange.blame = _blame

# %% [markdown]
# Then `fail` answers, if it still can. That is only possible while the head is unsent;
# afterwards the connection is broken off (`aborted`), and the client sees the response
# end too early. A 500 may even keep the connection open: the request was fine, so the
# next one on the connection can still be found.
#
# Only a 500 may keep the connection. A 4xx from `blame` means the request body was
# broken, so nobody knows where the next request would start.

# %%
#| export
def _fail(self, error: Exception) -> None:
    """Answer an error: a 500 (or the body's 4xx) if the head is not out, else hang up."""
    status, text = self.blame(error)
    if self.head_sent:
        self.aborted = True
        return
    self.keep_alive = (status == 500 and self.keep_alive and self.head.version != b"1.0"
                       and self.body.reusable() and not self.connection.server.stopping)
    response = error_response(status, text, keep_alive=self.keep_alive,
                              head_only=self.head.method == b"HEAD")
    self.code, self.head_sent = status, True
    self.connection.sendall(response)

Exchange.fail = _fail

# %% [markdown]
# Both halves of trap 11 on the fake connection. The `broken` app fails before it calls
# `start_response`, so there is still time for a 500:

# %%
exchange, conn = fake_exchange()
exchange.run(broken, {})
barelab.show_bytes(b"".join(conn.sent))

# %% [markdown]
# The body says only that something failed; the `KeyError` and its traceback are in the
# log, where the client cannot read them. There is no `Connection: close` either: the
# request itself was fine, so the connection can carry the next one.

# %% [markdown]
# A `Tracked` body that fails after its first piece: the head and that piece are out, so
# the exchange is marked `aborted` and no last chunk follows. `close()` was called anyway,
# and the log holds the error:

# %%
body = Tracked(b"partial\n", fail=True)
exchange, conn = fake_exchange()
exchange.run(tracked_app, {})
exchange.aborted, body.closed, b"".join(conn.sent).partition(b"\r\n\r\n")[2]

# %% [markdown]
# The body that went out is one chunk, `partial`, and then nothing. Without the `0` chunk
# that ends a chunked body, any HTTP client knows the response is incomplete, which is
# exactly what it should conclude.

# %% [markdown]
# ## One connection, many requests
#
# A `Connection` owns one client socket and a buffer of bytes received but not yet used.
# It runs on its own thread, and reads requests one after the other until the client or
# the server is done with them (trap 6). Its `idle` flag tells `stop()` whether an app is
# running on it right now. Here is the life of a connection's thread, which the next
# cells build piece by piece:
#
# ```mermaid
# flowchart TD
#     R["read_head()<br/>wait for a whole request head"] -->|a head| P["respond()<br/>run the app in an Exchange"]
#     R -->|"client closed, or idle too long"| X["close()<br/>linger, then close the socket"]
#     R -->|"malformed head: HTTPError"| J["reject()<br/>400, 408, 413, 414, 431 or 501"]
#     J --> X
#     P -->|"keep-alive, body skipped"| R
#     P -->|"Connection: close, aborted, stopping"| X
# ```

# %%
#| export
class Connection:
    """One client connection, served on its own thread: requests in order, kept alive."""

    def __init__(self, server, sock: socket.socket, client: tuple):
        self.server, self.sock, self.client = server, sock, client[:2]
        self.options, self.log = server.options, server.log
        self.peer = f"{client[0]}:{client[1]}"
        self.base = base_environ(server.address, self.client, ErrorLog(server.log))
        self.buffer = bytearray()          # received, not yet parsed
        self.timeout = None                # the socket's timeout right now
        self.idle = False                  # no app running: stop() may close it at once
        self.peer_closed = False
        self.responded = False             # a response just went out: close gently
        self.thread = None

# %% [markdown]
# Most attributes are there for later methods: `base` is the per-connection part of the
# `environ` from `base_environ`; `buffer` holds bytes received but not yet used, which
# may already include the next request; `peer_closed` and `responded` decide how the
# socket is closed at the end.
#
# Receiving and sending, each with a timeout so that no client can hold a thread forever:
# `keep_alive_timeout` between requests, `io_timeout` for everything else. A connection
# reset is treated as the client closing. A failed send becomes `ClientDisconnected`, so an
# app streaming to a vanished client stops at its next `yield` instead of computing for
# nobody. `settimeout` is a system call, so `receive` remembers the current timeout and
# calls it only when the timeout changes.
#
# One line in `receive` looks redundant: `except TimeoutError: raise`, before
# `except OSError`. It is not. `TimeoutError` is a subclass of `OSError`, so without that
# line a timeout would pass for a closed connection; this way it reaches the caller, which
# knows what the timeout meant.

# %%
#| export
def _receive(self, timeout: float) -> bytes:
    """Add the client's next bytes to the buffer and return them; b"" once it closed."""
    if timeout != self.timeout:
        self.sock.settimeout(timeout)
        self.timeout = timeout
    try:
        data = self.sock.recv(65536)
    except TimeoutError:
        raise
    except OSError:                        # a reset is just a rude way to close
        data = b""
    if data:
        self.buffer += data
    else:
        self.peer_closed = True
    return data

Connection.receive = _receive

# %% [markdown]
# `wsgi.input` asks for more body through `receive_body`, which turns "the client closed"
# and "nothing came for `io_timeout`" into the errors the app will see.

# %%
#| export
def _receive_body(self) -> None:
    """More of the request body, or an error the app sees from wsgi.input."""
    try:
        if not self.receive(self.options["io_timeout"]):
            raise ClientDisconnected("the client closed the connection mid-body")
    except TimeoutError:
        raise RequestTimeout("the request body stalled (io_timeout)") from None

Connection.receive_body = _receive_body

# %% [markdown]
# Sending waits `io_timeout` at most too. A client that stops reading lets the kernel's
# send buffer fill up, and then `sendall` blocks; without a timeout, one such client
# would hold its thread for ever.

# %%
#| export
def _sendall(self, data: bytes) -> None:
    if self.timeout != self.options["io_timeout"]:
        self.timeout = self.options["io_timeout"]
        self.sock.settimeout(self.timeout)
    try:
        self.sock.sendall(data)
    except OSError as error:               # reset, broken pipe, or a client not reading
        self.peer_closed = True
        raise ClientDisconnected(f"sending failed: {error}") from None

Connection.sendall = _sendall

# %% [markdown]
# Reading a head loops until chapter 02's `split_head` finds its end, which also enforces
# the limits: 414 for a request line over `max_line_bytes`, 431 for a header section over
# `max_header_bytes`, both before the bytes are all in. Between requests the wait is
# `keep_alive_timeout`, and running out of it just closes. Once a head has begun, the whole
# head must arrive within `io_timeout`, however slowly it trickles in; a client that sends
# one byte every few seconds (the "slowloris" attack) gets a 408.

# %%
#| export
def _wait_for_head(self, deadline: float | None) -> bool:
    """Wait for more bytes of a request head; False if the client closed or went quiet."""
    self.idle = True                       # no app is running: stop() may cut us off
    if self.server.stopping:
        return False
    timeout = (self.options["keep_alive_timeout"] if deadline is None
               else max(deadline - time.monotonic(), 0.001))
    try:
        got = self.receive(timeout)
    except TimeoutError:
        if deadline is None:
            return False
        raise RequestTimeout("the request head did not arrive in time (io_timeout)") from None
    if not got and self.buffer.strip(b"\r\n"):
        raise BadRequest("the connection closed in the middle of a request head")
    return bool(got)

Connection.wait_for_head = _wait_for_head

# %% [markdown]
# `read_head` calls `wait_for_head` until `split_head` finds a whole head. The deadline
# starts with the first byte of a head, not before: between requests only the
# keep-alive wait applies. One odd check remains. `split_head` skips empty lines before a
# request line, as RFC 9112 §2.2 asks a server to do, so a client could send nothing but
# `\r\n` for ever; past the size of the largest head allowed, that is a 431.

# %%
#| export
def _read_head(self) -> RequestHead | None:
    """The next request head, or None if the client closed or went quiet between requests."""
    options, deadline = self.options, None
    limits = options["max_line_bytes"], options["max_header_bytes"]
    while (parts := split_head(self.buffer, *limits)) is None:
        if len(self.buffer) > sum(limits):
            raise HeaderFieldsTooLarge("too many empty lines before the request")
        if self.buffer and deadline is None:
            deadline = time.monotonic() + options["io_timeout"]
        if not self.wait_for_head(deadline):
            return None
    self.idle = False
    del self.buffer[:parts[2]]
    return parse_head(parts[0], parts[1], options["max_body_bytes"])

Connection.read_head = _read_head

# %% [markdown]
# One exchange, start to end: build the body and the environ, run the app, and log the
# response, if one went out at all (a client that vanished before the head left gets no
# access-log line, only the info line `run` wrote). The log call sits inside
# `log.in_flight()`, which lets a notebook cell that asks for `server.log` right after a
# response wait the moment it takes to be written. `respond` returns whether the
# connection may carry another request.
#
# The order of the last line matters too: `body.finish()` runs only if everything else
# allows keeping the connection, since there is no point skipping an unread body on a
# connection that is about to close.

# %%
#| export
def _respond(self, head: RequestHead) -> bool:
    """Run the app for one request; True if the connection can carry another one."""
    started = time.perf_counter()
    with self.log.in_flight():
        body = RequestBody(self, head)
        exchange = Exchange(self, head, body)
        exchange.run(self.server.app, build_environ(head, self.base, body))
        if exchange.head_sent:
            self.log.request(self.client, head.method.decode("ascii"),
                             head.target.decode("latin-1"), head.version.decode("ascii"),
                             exchange.code, exchange.sent, time.perf_counter() - started)
    self.responded = not exchange.aborted
    return exchange.keep_alive and not exchange.aborted and body.finish()

Connection.respond = _respond

# %% [markdown]
# A request the server refuses (any `HTTPError` from the head) gets its status and
# `Connection: close`: after a malformed head, nobody can say where the next request would
# begin. The server could guess, and two servers that guess differently behind each other
# are how request smuggling works. The log keeps the reason. `log.request` writes the
# access-log line that `server.log.requests` shows; `-` stands for the method and target
# it could not read.

# %%
#| export
def _reject(self, error: HTTPError) -> None:
    """Answer a request we will not serve with the status its error names, then close."""
    with self.log.in_flight():
        response = error_response(error.status, error.message)
        try:
            self.sendall(response)
        except ClientDisconnected:
            return
        self.responded = True
        self.log.info(f"{self.peer}: refused with {error.status}: {error.message}")
        self.log.request(self.client, "-", "-", "-", error.status, 0, 0.0)

Connection.reject = _reject

# %% [markdown]
# The thread's whole life: read, answer, repeat. The loop ends when a head is refused,
# when the client closed or stayed quiet between requests (`read_head` returned `None`),
# when `respond` says the connection cannot carry another request, or when the server is
# stopping. Whatever happens, the socket is closed and the server forgets the
# connection, so its count stays right.

# %%
#| export
def _serve(self) -> None:
    """The connection's thread: read a request, answer it, again, until one side is done."""
    try:
        while True:
            self.responded = False
            try:
                head = self.read_head()
            except HTTPError as error:
                self.reject(error)
                break
            if head is None or not self.respond(head) or self.server.stopping:
                break
    except Exception as error:             # a bug here must not take the server down
        self.log.error(f"{self.peer}: internal error in the connection", error)
    finally:
        self.close()
        self.server.forget(self)

Connection.serve = _serve

# %% [markdown]
# Closing needs one subtlety. If bytes from the client are still unread when a socket is
# closed, the kernel answers with a *reset* (RST) instead of a normal close, and a reset
# can destroy the response before the client has read it: the client sees "connection
# reset" instead of your 413. So after a response, the server first stops *sending*
# (`shutdown(SHUT_WR)`), then reads and discards until the client closes too, for a
# second at most. This is called *lingering*; RFC 9112 §9.6 describes the same staged
# close.
#
# One more case: the server may be stopping. `stop()` sets its `stopping` flag first and
# looks at each connection's `idle` flag afterwards; `close` sets `idle` first and looks
# at `stopping` afterwards. Whichever runs second sees what the other did, so either
# `stop()` shuts this socket down, which ends the lingering at once, or `close` sees the
# server stopping and does not linger at all.

# %%
#| export
def _close(self) -> None:
    """Close; right after a response, linger: stop sending, read until the client closes."""
    if self.responded and not self.peer_closed:
        self.idle = True                   # from now on, stop() may cut the lingering short
        if self.server.stopping:           # it may have looked already: do not linger
            self.sock.close()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass
    self.sock.close()

Connection.close = _close

# %% [markdown]
# `shutdown` is for `stop()`, on another thread: shutting a socket down (unlike closing it)
# wakes up a thread blocked in `recv()` on it, which then sees the end of the stream.

# %%
#| export
def _shutdown(self) -> None:
    """From another thread: make this connection's blocked recv() or send() return now."""
    try:
        self.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

Connection.shutdown = _shutdown

# %% [markdown]
# A `Connection` can run without any server around it. `socket.socketpair()` gives two
# connected sockets, one for you and one for the connection; a `SimpleNamespace` plays
# the server, with the few attributes a connection reads from it. Send a `HEAD` and then a
# `GET` that asks to close, and shut your sending side, as a client that has nothing more
# to say:

# %%
LAST_GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
pretend_server = types.SimpleNamespace(app=hello, options=server_options({}), log=ServerLog(),
                                       address=("127.0.0.1", 8000), stopping=False,
                                       forget=lambda connection: None)
yours, its = socket.socketpair()
yours.sendall(HEAD + LAST_GET)
yours.shutdown(socket.SHUT_WR)

# %% [markdown]
# `serve()` is the method a connection's thread runs. Call it right here, on the
# notebook's own thread: it returns when the connection is done, and everything it sent
# is waiting in your socket. `iter(function, b"")` calls `yours.recv` until it returns
# `b""`, the end of the stream: the same trick `wsgi.input` uses to iterate over lines.

# %%
Connection(pretend_server, its, ("127.0.0.1", 5000)).serve()
print(b"".join(iter(lambda: yours.recv(65536), b"")).decode())
yours.close()

# %% [markdown]
# Two responses on one connection, in order: the `HEAD` answer with no body, then the
# `GET` answer with `Connection: close`, after which the connection closed. No thread, no
# listening socket, no port: a `Connection` needs only a socket and something that looks
# like a server. The access log has both requests:

# %%
[entry.message for entry in pretend_server.log.requests]

# %% [markdown]
# ## Many clients, and a prompt stop
#
# The server itself accepts connections and gives each its own thread (trap 12), up to
# `max_connections`. A thread costs memory (its stack, at least), so the number is
# bounded: one client more gets `503 Service Unavailable` with `Retry-After`, right away,
# instead of waiting in a queue with no answer.
#
# How does a thread blocked in `accept()` learn that it should stop, without waking up
# every 0.1 s to look? It does not block in `accept()` at all. It waits in a *selector* on
# two sockets at once: the listening socket, and one end of a `socketpair()`. `stop()`
# writes one byte into the other end, and the selector wakes at once. The whole stop, with
# one idle keep-alive connection open, goes like this:
#
# ```mermaid
# sequenceDiagram
#     participant N as your cell, in stop()
#     participant L as accept thread
#     participant T as connection thread
#     Note over T: idle, blocked in recv()
#     N->>L: one byte into the socketpair
#     Note over L: select() returns, the loop ends
#     N->>N: join the accept thread, close the listening socket
#     N->>T: shutdown(SHUT_RDWR)
#     Note over T: recv() returns b"", the thread ends
#     N->>T: join
# ```
#
# Nothing in it waits on a timer, so a stop takes only as long as the threads need to
# notice: milliseconds, not the seconds of a keep-alive timeout.
#
# This section is ten short cells of code with nothing to run in between: the pieces only
# work together. The next section starts the server and puts all of them to work. Start
# with the class and its bookkeeping:

# %%
#| export
class WSGIServer(Engine):
    """The course's WSGI server: HTTP/1.1 by hand, one thread per connection.

    ``barelab.serve(app, server=WSGIServer, **options)`` runs it; options are the names in
    ``OPTIONS``. Beyond ``max_connections`` a client gets 503 at once.
    """

    kind = "wsgi"

    def __init__(self, app, sock: socket.socket, log, **options):
        super().__init__(app, sock, log, **options)
        self.options = server_options(options)
        self.address = sock.getsockname()[:2]
        self.connections: set[Connection] = set()
        self.lock = threading.Lock()
        self.stopping = False
        self.accept_thread = None

    def forget(self, connection: Connection) -> None:
        with self.lock:
            self.connections.discard(connection)

# %% [markdown]
# The constructor checks the options (a typo fails here, when you call `barelab.serve`)
# and notes the address it listens on, for `SERVER_NAME` and `SERVER_PORT`. `connections`
# is the set of open connections, guarded by `lock`; `forget` is what a connection's
# thread calls on its way out.
#
# `start()` makes the alarm, a `socketpair()`, and starts the accept thread. The listening
# socket is made non-blocking: the thread will only call `accept()` when the selector says
# a client is waiting.
#
# `kind = "wsgi"` tells barelab which sort of app this engine serves; chapter 13's ASGI
# server says `"asgi"`.

# %%
#| export
def _start(self) -> None:
    """Accept in a background thread; a socketpair is the alarm stop() rings."""
    self.wake_reader, self.wake_writer = socket.socketpair()
    self.sock.setblocking(False)
    self.accept_thread = threading.Thread(target=self.accept_loop, daemon=True,
                                          name=f"wsgi-server-{self.address[1]}")
    self.accept_thread.start()

WSGIServer.start = _start

# %% [markdown]
# The accept loop waits on both sockets. A readable listening socket means clients are
# waiting; a readable alarm means stop. The loop also holds the sockets of clients it
# turned away (see below) until they close or a second has passed.
#
# The one computation in it is `wait`: with no turned-away client to watch, the selector
# may sleep until something happens (`None`); otherwise it wakes in time for the earliest
# of them to expire.

# %%
#| export
def _accept_loop(self) -> None:
    """Wait for a client or for the alarm, never on a timer; 503'd clients linger here."""
    turned_away = {}                       # socket -> when we stop waiting for it to close
    with selectors.DefaultSelector() as selector:
        selector.register(self.sock, selectors.EVENT_READ, "listen")
        selector.register(self.wake_reader, selectors.EVENT_READ, "wake")
        while True:
            wait = min(turned_away.values()) - time.monotonic() if turned_away else None
            for key, _ in selector.select(None if wait is None else max(wait, 0)):
                if key.data == "wake":
                    for sock in turned_away:
                        sock.close()
                    return
                if key.data == "listen":
                    self.accept_all(selector, turned_away)
                else:
                    self.drain_turned_away(key.fileobj, selector, turned_away)
            self.expire_turned_away(selector, turned_away)

WSGIServer.accept_loop = _accept_loop

# %% [markdown]
# Accepting takes every waiting client at once: the listening socket is non-blocking, so
# `accept()` raises `BlockingIOError` when nobody is left. Each socket gets `TCP_NODELAY`.
# Without it, the kernel holds a small packet back while an earlier one is still
# unacknowledged, hoping to merge them (Nagle's algorithm); a client that delays its
# acknowledgements, often by 40 ms, then makes both sides wait, and a request-response
# protocol pays for that on every request.

# %%
#| export
def _accept_all(self, selector, turned_away) -> None:
    while True:
        try:
            sock, client = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as error:           # out of file descriptors, say: log it, go on
            self.log.error(f"accept() failed: {error}")
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.admit(Connection(self, sock, client)):
            self.turn_away(sock, client, selector, turned_away)

WSGIServer.accept_all = _accept_all

# %% [markdown]
# `admit` counts a connection in and gives it its thread, unless `max_connections` are
# already open. The count is checked and changed under a lock, because connection
# threads remove themselves from the set (`forget`) at any moment.

# %%
#| export
def _admit(self, connection: Connection) -> bool:
    """Count the connection in and start its thread; False if the server is full."""
    with self.lock:
        if len(self.connections) >= self.options["max_connections"]:
            return False
        self.connections.add(connection)
    connection.thread = threading.Thread(target=connection.serve, daemon=True,
                                         name=f"wsgi-server-{connection.peer}")
    connection.thread.start()
    return True

WSGIServer.admit = _admit

# %% [markdown]
# A client turned away gets its 503 without a thread of its own: the accept loop sends it,
# stops sending, and keeps the socket in its selector for a second, reading whatever the
# client still sends, until the client closes (the lingering from above, without a thread).
#
# `error_response` has no parameter for extra headers, so `Retry-After` is slipped in
# before the blank line that ends the head: the first `\r\n\r\n` in the response.

# %%
#| export
def _turn_away(self, sock, client, selector, turned_away) -> None:
    response = error_response(503, "Too many connections; retry in a moment.")
    try:
        sock.setblocking(False)
        sock.send(response.replace(b"\r\n\r\n", b"\r\nRetry-After: 1\r\n\r\n", 1))
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        sock.close()
        return
    selector.register(sock, selectors.EVENT_READ, "turned away")
    turned_away[sock] = time.monotonic() + 1.0
    self.log.request(client, "-", "-", "-", 503, 0, 0.0)

WSGIServer.turn_away = _turn_away

# %% [markdown]
# Why linger here at all, when the 503 has gone out? For the same reason as after any
# response: closing a socket with the client's request still unread makes the kernel send
# a reset, and the reset may destroy the 503 before the client reads it.
#
# When a turned-away socket becomes readable, the accept loop reads what came. Bytes mean
# the client is still talking: keep waiting. `b""` or an error means it closed: drop it.

# %%
#| export
def _drain_turned_away(self, sock, selector, turned_away) -> None:
    try:
        if sock.recv(65536):
            return
    except BlockingIOError:
        return
    except OSError:
        pass
    self.drop_turned_away(sock, selector, turned_away)

WSGIServer.drain_turned_away = _drain_turned_away

# %% [markdown]
# Dropping a socket takes it out of the selector and out of the `turned_away` dictionary
# before closing it. A socket closed while still registered would stay in the selector's
# table, and the next turned-away socket to get the same file descriptor number could not
# be registered. And once a second has passed, `expire_turned_away` drops a socket whose
# client never closed.

# %%
#| export
def _drop_turned_away(self, sock, selector, turned_away) -> None:
    selector.unregister(sock)
    del turned_away[sock]
    sock.close()

def _expire_turned_away(self, selector, turned_away) -> None:
    now = time.monotonic()
    for sock in [sock for sock, until in turned_away.items() if until < now]:
        self.drop_turned_away(sock, selector, turned_away)

WSGIServer.drop_turned_away, WSGIServer.expire_turned_away = (_drop_turned_away,
                                                              _expire_turned_away)

# %% [markdown]
# And `stop()`, the diagram above in code: set `stopping`, ring the alarm, and join the
# accept thread, which returns as soon as it hears the alarm. Then close the listening
# socket, so no new client can connect, and end the connections that are still open.
# Calling it twice, or on a server that never started, is harmless.

# %%
#| export
def _stop(self, timeout: float = 2.0) -> None:
    """Stop now: no polling, the listening socket closed, every thread joined."""
    if self.stopping:
        return
    self.stopping = True
    if self.accept_thread is None:         # never started
        self.sock.close()
        return
    self.wake_writer.send(b"\0")
    self.accept_thread.join()
    self.sock.close()
    self.end_connections(timeout)
    self.wake_reader.close()
    self.wake_writer.close()

WSGIServer.stop = _stop

# %% [markdown]
# Ending the connections: an idle one is shut down at once, which wakes its thread's
# `recv()`. A busy one (an app is running) gets `timeout` seconds to finish its response,
# which will say `Connection: close` because the server is stopping; then its socket is
# shut down too.

# %%
#| export
def _end_connections(self, timeout: float) -> None:
    """Shut idle connections now; give busy ones ``timeout`` seconds, then shut them too."""
    with self.lock:
        connections = list(self.connections)
    for connection in connections:
        if connection.idle:
            connection.shutdown()
    deadline = time.monotonic() + timeout
    for connection in connections:
        connection.thread.join(max(deadline - time.monotonic(), 0))
        if connection.thread.is_alive():   # still busy: cut its socket, wait a little more
            connection.shutdown()
            connection.thread.join(1.0)

WSGIServer.end_connections = _end_connections

# %% [markdown]
# ## The same twelve requests, again
#
# That is the whole server. Now send it the twelve traps from the start of the chapter
# and compare. Serve the `show_environ` app on it, under its own name, next to the naive
# one:

# %%
server = barelab.serve(show_environ, server=WSGIServer, name="course")
server

# %% [markdown]
# Send the four-trap request. The course server keeps connections open, so the request
# says `Connection: close` to get a quick end to the exchange:

# %%
closing = four_traps.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
print(barelab.raw_exchange(server, closing).received.decode())

# %% [markdown]
# The decoded path, joined headers and cookies, no `X-User_Id`, and `CONTENT_TYPE` and
# `CONTENT_LENGTH` without `HTTP_`. The head has a `Date`, a `Server` and
# `Connection: close`, as asked. Now the other traps, with a helper like `try_naive`:

# %%
def try_course(app, request):
    global server
    server = barelab.serve(app, server=WSGIServer, name="course")
    return barelab.raw_exchange(server, request)

try_course(hello, HEAD + LAST_GET)

# %% [markdown]
# Trap 5: the HEAD response has the `Content-Length` a GET would get (13) and no body, so
# the GET's response that follows starts exactly where it should. That was also trap 6:
# two requests on one connection, two answers, in order.
#
# Trap 7 is the 200 kB POST. It asks to close, so the exchange ends when the response is
# out; the status is all you need to see:

# %%
try_course(hello, big_post.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")).status

# %% [markdown]
# A 200, where the naive server sent nothing. The body arrived in several `recv()`s and
# was no problem. The app did not even read it; the server would have skipped it to keep
# the connection, and here, since the client asked to close, did not bother.
#
# The other half of trap 7 is a chunked body that arrives in pieces. To see what reaches
# the app, `echo` reads the whole body and reports it with its length:

# %%
def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got %d bytes: %s\n" % (len(body), body)]

server = barelab.serve(echo, server=WSGIServer, name="course")

# %% [markdown]
# The client sends the head and a first chunk, which carries a chunk extension
# (`;note=first`, a name and value a client may attach to a chunk), waits 0.2 s, and sends
# the second chunk and the last one. By then the app is already inside `read()`:

# %%
with socket.create_connection((server.host, server.port), timeout=3) as sock:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"6;note=first\r\nHello,\r\n")
    time.sleep(0.2)                           # the app is already reading, and waits
    sock.sendall(b"7\r\n world!\r\n0\r\n\r\n")
    print(sock.recv(65536).decode())

# %% [markdown]
# The app got all 13 bytes, decoded, although the second chunk left the client 0.2 s
# after the app had started reading: `read()` waited for it. The chunk extension
# `;note=first` was ignored, as RFC 9112 §7.1.1 requires of an extension the recipient
# does not recognise.
#
# Trap 8, streaming, with the same clock as before:

# %%
server = barelab.serve(streaming, server=WSGIServer, name="course")
arrival_times(server, GET)

# %% [markdown]
# Three bursts now, 0.3 s apart: each word left the server the moment the generator
# yielded it, the first one together with the head. No `Content-Length` could be known in
# advance, so the body is chunked: look for the hex sizes `4`, `4` and `6` before the
# words, and the last chunk `0\r\n\r\n` right behind `three`.
#
# Trap 9, the app that calls `write()` before it returns the rest of its body:

# %%
try_course(writer, LAST_GET)

# %% [markdown]
# Trap 9: `write()` works, and whatever the app returns follows it. Since `write()` sends at
# once, before the server knows whether more will follow, the body is chunked here too.
#
# Traps 10 and 11 together: two `Tracked` bodies, one that completes and one that fails
# after its first piece. Look at whether each was closed, and at the server's error log:

# %%
bodies = [Tracked(b"fine\n"), Tracked(b"partial\n", fail=True)]
for body in bodies:
    try_course(tracked_app, LAST_GET)
[body.closed for body in bodies], [entry.message for entry in server.log.errors]

# %% [markdown]
# Trap 10: `close()` was called both times, also when the iterable failed halfway. And look
# at the log for trap 11's second half: the error came after the status line was out, so
# the server logged it with its traceback and closed the connection without the final
# chunk. The client knows its response is incomplete. The first half, an error before
# anything was sent:

# %%
try_course(broken, LAST_GET)

# %% [markdown]
# A 500 that reveals nothing. The log has the message, and the full traceback with it
# (`server.log` shows it behind a "traceback" fold):

# %%
server.log.errors[-1].message

# %% [markdown]
# Trap 12: the slow client again. It now occupies one thread of its own, and your request
# gets another. Compare the time with the naive server's two seconds:

# %%
server = barelab.serve(hello, server=WSGIServer, name="course")
slow_client = socket.create_connection((server.host, server.port))
started = time.perf_counter()
answer = barelab.http_request(server, timeout=5)
slow_client.close()
answer.status, f"{time.perf_counter() - started:.3f} s"

# %% [markdown]
# A millisecond or so. The silent client still holds its thread, until `io_timeout` runs
# out, but nobody else waits for it. Twelve traps, twelve fixes.

# %% [markdown]
# ## Limits: every bad request gets a clear answer
#
# A server on the internet receives garbage, by accident and on purpose. Each kind of
# garbage has its own status code, and after each one the server must carry on. A smaller
# set of limits makes the demonstration short. The cell sends nine bad requests, each on
# a fresh connection, and shows the status line each one got back. First the server, with
# limits small enough to cross with a short request, and half a second for `io_timeout`:

# %%
strict = barelab.serve(echo, server=WSGIServer, name="strict", max_line_bytes=100,
                       max_header_bytes=200, max_body_bytes=1000, io_timeout=0.5)

# %% [markdown]
# Then the requests. The first five break a rule of the protocol; the next three cross a
# limit; the last one starts a head and never finishes it:

# %%
probes = {
    "bad Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n",
    "no Host": b"GET / HTTP/1.1\r\n\r\n",
    "CL and TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n",
    "gzip, chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "long target": b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 300 + b"\r\n\r\n",
    "huge body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    "stalled head": b"GET / HTTP/1.1\r\nHost: x\r\n",
}

# %% [markdown]
# `show_transcript` prints pairs as a two-column table. Each request goes out on its own
# connection, because the server closes a connection after refusing a request:

# %%
from barelab.display import show_transcript

show_transcript([(name, barelab.raw_exchange(strict, data).received.split(b"\r\n")[0])
                 for name, data in probes.items()], ["request", "status line"])

# %% [markdown]
# Read the table top to bottom:
#
# - 400 for malformed requests: the first four. `CL and TE` is the dangerous one: a
#   request with both could be framed two ways, the trick behind request smuggling, so
#   RFC 9112 §6.1 lets a server refuse it outright.
# - 501 for a transfer coding the server does not know (`gzip`, RFC 9112 §6.1).
# - 414 for a target over `max_line_bytes` (RFC 9110 §15.5.15).
# - 431 for headers over `max_header_bytes` (RFC 6585 §5).
# - 413 for a `Content-Length` over `max_body_bytes` (RFC 9110 §15.5.14), answered before
#   a single byte of the body was read.
# - 408 after `io_timeout` for a head that never finished (RFC 9110 §15.5.9).
#
# Each came with `Connection: close`, and the log says why:

# %%
[entry.message for entry in strict.log.entries if "refused" in entry.message][:3]

# %% [markdown]
# Each refusal carries its reason. A client's developer who sees the 400 in `curl -i`
# reads the same text in its body.
#
# `max_connections` is a limit too. With two allowed, hold two connections open, and the
# third client gets a 503 at once:

# %%
busy = barelab.serve(hello, server=WSGIServer, name="busy", max_connections=2)
holders = [socket.create_connection((busy.host, busy.port)) for _ in range(2)]
time.sleep(0.05)                       # let the server accept both
third = barelab.raw_exchange(busy, GET)
for holder in holders:
    holder.close()
print(third.received.decode())

# %% [markdown]
# `503 Service Unavailable` (RFC 9110 §15.6.4) with `Retry-After: 1` (§10.2.3): a client
# that honours it waits a second and tries again, by which time a connection is likely
# free. Answering at once is kinder than letting the third client wait in the kernel's
# queue with no idea why nothing happens.

# %% [markdown]
# ### `Expect: 100-continue`
#
# The diagram from the `wsgi.input` section, on a real socket. The client sends its head
# and waits. The `echo` app reads the body, so the server sends `100 Continue`, the
# client sends the body, and the real response follows:

# %%
server = barelab.serve(echo, server=WSGIServer, name="course")
with socket.create_connection((server.host, server.port), timeout=3) as sock:
    sock.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                 b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    interim = sock.recv(65536)
    sock.sendall(b"hello world")
    final = sock.recv(65536)
barelab.show_bytes(interim), final.split(b"\r\n")[0]

# %% [markdown]
# Had the app answered without reading (a 401 for a missing login, say), no `100 Continue`
# would have gone out, and the client would have skipped the upload: its `Connection:
# close` would tell it the server is not waiting for the body either.

# %% [markdown]
# ### `exc_info`: changing your mind, or not
#
# An app that catches its own error can replace a status it has not sent yet. `careful`
# starts a 200, then fails, and calls `start_response` again with `sys.exc_info()`:

# %%
import sys

def careful(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise LookupError("no such report")
    except LookupError:
        start_response("404 Not Found", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"no such report\n"]

barelab.http_request(barelab.serve(careful, server=WSGIServer, name="course"))

# %% [markdown]
# The client got the 404. The first `start_response` never reached the wire: it had only
# been recorded, so replacing it cost nothing.
#
# Once the head is out, the same call re-raises the error inside the app, as PEP 3333
# requires; the app gives up, and the server, which has sent its 200 already, breaks the
# connection off.

# %%
def too_late(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"the first half\n"
    try:
        raise LookupError("the second half is missing")
    except LookupError:
        start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never sent\n"

server = barelab.serve(too_late, server=WSGIServer, name="course")
barelab.raw_exchange(server, LAST_GET)

# %% [markdown]
# The first chunk, then nothing: no `0\r\n\r\n`, so any HTTP client reports the response
# as incomplete.

# %% [markdown]
# ### wsgiref's validator agrees
#
# The standard library's `wsgiref.validate.validator` (chapter 04) checks both sides of
# PEP 3333 while an app runs: it raises `AssertionError` for an `environ` that breaks the
# spec, and warns about anything suspicious.
#
# The app to wrap is an echo with one difference: it passes `read()` a size. PEP 3333
# lists `read(size)` with its argument, and the validator holds apps to that letter,
# although this server (like most) also accepts `read()` with none.

# %%
def validated_echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or -1))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]

# %% [markdown]
# Serve it wrapped, and send a little of everything on one connection: an encoded path, a
# body with a length, a chunked body, a `HEAD`. Any warning the validator issues is
# caught and listed; so are errors in the server's log:

# %%
import warnings
from wsgiref.validate import validator

server = barelab.serve(validator(validated_echo), server=WSGIServer, name="course")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    barelab.raw_exchange(server, b"GET /caf%C3%A9?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                         b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"2\r\nho\r\n0\r\n\r\n" + HEAD + LAST_GET)
[str(w.message) for w in caught], server.log.errors, len(server.log.requests)

# %% [markdown]
# No warnings, no errors, five requests answered: a GET with an encoded path and a query,
# a POST with a `Content-Length` body, a chunked POST, a HEAD and a last GET, all on one
# connection. The validator checked every `environ` and every `start_response` call, and
# found nothing to say.

# %% [markdown]
# ### A prompt stop
#
# `stop()` with an idle keep-alive client still connected: no 0.1 s poll, no waiting for
# the client's timeout. The client reads its response first, so the connection is idle
# when `stop()` is called:

# %%
client = socket.create_connection((server.host, server.port))
client.sendall(GET)
client.recv(65536)                     # the answer; the connection stays open, idle
started = time.perf_counter()
server.stop()
stopped_in = time.perf_counter() - started
client.settimeout(1)
f"stopped in {stopped_in * 1000:.1f} ms", client.recv(1) == b""    # b"": the server closed

# %% [markdown]
# Milliseconds at most, where waiting for the client would have taken the whole
# `keep_alive_timeout` of 5 s. And the client's `recv` returns `b""`: the server closed
# its end, so the client knows at once instead of finding out at its next request.

# %% [markdown]
# ## Real frameworks on your server
#
# Flask's app object is a WSGI callable (chapter 01), so your server runs it as it is. Two
# routes: one with a path parameter and a JSON answer, one that streams. A Flask view
# that returns a `dict` gets a JSON response; a `Response` built on a generator streams.

# %%
import flask

flask_app = flask.Flask("chapter06")

@flask_app.get("/hello/<name>")
def flask_hello(name):
    return {"hello": name, "lang": flask.request.args.get("lang", "en")}

@flask_app.get("/count")
def flask_count():
    return flask.Response((f"{n}\n" for n in range(3)), mimetype="text/plain")

# %% [markdown]
# Serving it is the same one line as for any app in this chapter:

# %%
flask_server = barelab.serve(flask_app, server=WSGIServer, name="flask")
flask_server

# %% [markdown]
# Ask for `café`, percent-encoded as a browser sends it, with a query string:

# %%
# !curl -s -i "{flask_server.url}hello/caf%C3%A9?lang=fr"

# %% [markdown]
# `café` arrived intact: your server decoded the path to latin-1 bytes-in-str, and Flask
# (Werkzeug, to be exact) turned those bytes back into UTF-8 text. The streaming route is
# chunked, because Flask cannot know its length. `curl` decodes the chunks, so ask for the
# raw bytes (`--raw`) to see them:

# %%
# !curl -s -i --raw {flask_server.url}count

# %% [markdown]
# Django needs settings before anything else. For a one-file Django app they can be
# given in code: no project, no `settings.py`. `ROOT_URLCONF=__name__` says "the URL
# patterns are in this notebook". `ALLOWED_HOSTS` lists the host names this app answers
# to; Django refuses other `Host` headers with 400, a guard against forged links in
# password-reset mails.

# %%
import django
from django.conf import settings

if not settings.configured:                # configure() may run only once per process
    settings.configure(DEBUG=False, ROOT_URLCONF=__name__, SECRET_KEY="chapter-06-not-secret",
                       ALLOWED_HOSTS=["127.0.0.1", "localhost"])
    django.setup()

# %% [markdown]
# Two views and their URL patterns, then `get_wsgi_application()`, the same function a
# Django project's `wsgi.py` calls for Gunicorn:

# %%
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, JsonResponse
from django.urls import path

def django_hello(request, name):
    return JsonResponse({"hello": name, "host": request.get_host()})

def django_echo(request):
    return HttpResponse(request.body.upper(), content_type="text/plain")

urlpatterns = [path("hello/<str:name>", django_hello), path("echo", django_echo)]
django_server = barelab.serve(get_wsgi_application(), server=WSGIServer, name="django")

# %% [markdown]
# Fetch the hello view with `curl`, and look at how its body is framed:

# %%
# !curl -s -i {django_server.url}hello/ada

# %% [markdown]
# The answer is chunked, although it is short. Django returns its response object itself
# as the iterable, not a list, and sets no `Content-Length`; your server cannot know the
# length before iterating, so it frames the body with chunks. A full Django project
# usually has `CommonMiddleware`, which adds a `Content-Length` to responses like this.

# %% [markdown]
# And a POST through barelab's client, whose body Django reads from your `wsgi.input`
# (Django's CSRF check is middleware, and this minimal project has none):

# %%
barelab.http_request(django_server, "POST", "/echo", body=b"shout this")

# %% [markdown]
# `request.get_host()` is where Django checks `ALLOWED_HOSTS`. With a `Host` that is not
# listed, the view never runs and Django answers 400 itself; the server passed the header
# through, and the app decided:

# %%
barelab.http_request(django_server, "GET", "/hello/ada", headers={"Host": "evil.example"}).status

# %% [markdown]
# The Django server's access log has the three requests, each with its status and size.
# Flask's server keeps its own log the same way:

# %%
[entry.message for entry in django_server.log.requests]

# %% [markdown]
# Two 200s and the 400 for the forged `Host`. Neither framework needed a line of code to
# run on your server: that is what the WSGI contract is for.

# %% [markdown]
# ## How fast is it?
#
# Correct came first; it is also quick. `benchmarks/wsgi_servers.py` runs a small app on
# this server, on barelab's own engine, on `wsgiref` and on Gunicorn's sync worker, and
# loads each with the same client (`python benchmarks/wsgi_servers.py`). On the
# two-core machine this course was built on, the course server answered a few thousand
# small requests a second, several times what Gunicorn's sync worker managed there. That
# is not because it is cleverer than Gunicorn: the sync worker closes the connection after
# every response, on purpose (it is meant to sit behind nginx), so each request pays for a
# new TCP connection. What keeps this server quick is a short path for each request: one
# `recv` that usually holds the whole head, one parse of it, an environ copied from a
# per-connection template, and one `sendall` for the head and a small body.

# %% [markdown]
# ## Summary
#
# - A WSGI server turns bytes into `app(environ, start_response)` and back. The naive
#   version is about forty lines, and it gets twelve everyday requests wrong.
# - You built `barelab.built.wsgi_server.WSGIServer`: a thread per connection up to
#   `max_connections` (then 503), HTTP/1.1 parsed with chapter 02's functions, and
#   `barelab.serve(app, server=WSGIServer)` to run it from a cell.
# - The environ: `PATH_INFO` percent-decoded into latin-1 "bytes in str"; repeated headers
#   joined with `", "` (cookies with `"; "`); header names with `_` dropped;
#   `CONTENT_TYPE` and `CONTENT_LENGTH` without `HTTP_`.
# - `wsgi.input` reads the body only when asked, so bodies of any size and chunked bodies
#   work, `Expect: 100-continue` is answered on the first read, and reads end at the
#   body's end.
# - Framing: `Content-Length` when the whole body is known, chunked when it is streamed
#   (each piece sent at once), close-delimited for HTTP/1.0; no body for HEAD, 204, 304.
# - Keep-alive unless someone says `close`; pipelined requests answered in order.
# - Errors: a 500 (traceback only in the log) while the head is unsent, a broken-off
#   connection after; `exc_info` re-raised once the head is out; `close()` always.
# - Limits answer 400, 408, 413, 414, 431, 501 and 503, and the server serves on.
# - `stop()` is a wake-up through a socketpair, not a poll: it closes the listening socket
#   and joins every thread.

# %% [markdown]
# ## Exercises
#
# Each exercise has a solution cell (replace its body with your own) and a check cell that
# tells you whether your answer works.
#
# ### Exercise 1 — The URL of the request
#
# PEP 3333 shows how an app rebuilds the URL it was asked for ("URL Reconstruction"):
# scheme, then `HTTP_HOST` (or `SERVER_NAME` and a `SERVER_PORT` that is not the scheme's
# default), then `SCRIPT_NAME` and `PATH_INFO` percent-encoded again, then `?` and the
# `QUERY_STRING` if it is not empty. Write `request_url(environ) -> str`. Remember that
# `PATH_INFO` holds latin-1 characters: encode it back to bytes before quoting.

# %% tags=["solution"]
### BEGIN SOLUTION
from urllib.parse import quote

def request_url(environ) -> str:
    url = environ["wsgi.url_scheme"] + "://"
    if environ.get("HTTP_HOST"):
        url += environ["HTTP_HOST"]
    else:
        url += environ["SERVER_NAME"]
        default = "443" if environ["wsgi.url_scheme"] == "https" else "80"
        if environ["SERVER_PORT"] != default:
            url += ":" + environ["SERVER_PORT"]
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    url += quote(path.encode("latin-1"))
    if environ.get("QUERY_STRING"):
        url += "?" + environ["QUERY_STRING"]
    return url
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

def url_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [request_url(environ).encode("utf-8")]

with check("Exercise 1"):
    server = barelab.serve(url_app, server=WSGIServer, name="exercise")
    answer = barelab.http_request(server, "GET", "/caf%C3%A9/menu?day=mon",
                                  headers={"Host": "example.org"})
    assert answer.text == "http://example.org/caf%C3%A9/menu?day=mon", answer.text
    answer = barelab.http_request(server, "GET", "/plain", headers={"Host": "a.test:8080"})
    assert answer.text == "http://a.test:8080/plain", "no '?' without a query string"
    assert request_url({"wsgi.url_scheme": "http", "SERVER_NAME": "b.test", "SERVER_PORT": "80",
                        "PATH_INFO": "/x", "QUERY_STRING": ""}) == "http://b.test/x", \
        "without HTTP_HOST, use SERVER_NAME, and leave out port 80"

# %% [markdown]
# ### Exercise 2 — A countdown that streams
#
# Write a WSGI app `countdown` that answers `text/plain` with the lines `3\n`, `2\n`, `1\n`
# and `liftoff\n`, each its own piece of a generator, with a pause of 0.1 s before every
# line after the first. The check reads the raw bytes from `WSGIServer` and wants four
# chunks, the first arriving before the rest exist.

# %% tags=["solution"]
### BEGIN SOLUTION
def countdown(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for n, line in enumerate([b"3\n", b"2\n", b"1\n", b"liftoff\n"]):
        if n:
            time.sleep(0.1)
        yield line
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    server = barelab.serve(countdown, server=WSGIServer, name="exercise")
    pieces = arrival_times(server, GET)
    received = b"".join(data for _, data in pieces)
    assert b"Transfer-Encoding: chunked" in received, "a generator's response is chunked"
    body = received.partition(b"\r\n\r\n")[2]
    assert body == b"2\r\n3\n\r\n2\r\n2\n\r\n2\r\n1\n\r\n8\r\nliftoff\n\r\n0\r\n\r\n", body
    assert len(pieces) >= 4, "each line should arrive on its own, not all at once"

# %% [markdown]
# ### Exercise 3 — Always close
#
# Frameworks wrap the iterable an app returns, and a wrapper must pass `close()` on. Write
# a class `ClosingBody(iterable, on_close)`: iterating it iterates `iterable`; its `close()`
# calls `iterable.close()` if there is one, then `on_close()`, even if the first raised.
# The check runs it on `WSGIServer` with a good and a failing body.

# %% tags=["solution"]
### BEGIN SOLUTION
class ClosingBody:
    def __init__(self, iterable, on_close):
        self.iterable, self.on_close = iterable, on_close

    def __iter__(self):
        return iter(self.iterable)

    def close(self):
        try:
            if hasattr(self.iterable, "close"):
                self.iterable.close()
        finally:
            self.on_close()
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    calls = []
    inner = [Tracked(b"ok\n"), Tracked(b"half\n", fail=True)]
    def closing_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingBody(inner[len(calls)], lambda: calls.append("closed"))
    server = barelab.serve(closing_app, server=WSGIServer, name="exercise")
    assert barelab.raw_exchange(server, LAST_GET).received.endswith(b"0\r\n\r\n")
    barelab.raw_exchange(server, LAST_GET)
    assert calls == ["closed", "closed"], f"on_close calls: {calls}"
    assert all(body.closed for body in inner), "pass close() on to the wrapped iterable"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were running).

# %%
barelab.stop_all()

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 07. WSGI middleware
#
# Logging, CORS, authentication: every real app needs them, and none of them is the app's
# business. In WSGI each one is a *middleware*, a callable that wraps another callable. In
# this chapter you write five of them and learn the three ways a middleware quietly breaks
# the app it wraps.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - write a middleware as a class around a WSGI app, and stack several with `compose`, in an
#   order you can justify;
# - wrap `start_response` correctly (headers added before they leave, `exc_info` passed on,
#   `write` returned) and wrap the body only when you must, with `ClosingIterator`, so
#   streaming and `close()` survive;
# - build request logging timed until `close()`, a timing header, request IDs, CORS for
#   several origins with `Vary: Origin`, and HTTP Basic authentication;
# - prove each layer follows PEP 3333 with `wsgiref.validate.validator` on both sides of it,
#   and show what a browser and a cache make of your CORS headers.

# %% [markdown]
# ## A middleware is an app that holds an app
#
# PEP 3333 names the idea in its section "Middleware: Components that Play Both Sides": a
# middleware is *a server* to the app inside it and *an app* to the server outside it. The
# server calls the outer layer with `environ` and `start_response`. That layer may look at
# or change both, calls the next layer with them, and may look at or change what comes back.
#
# ```mermaid
# flowchart LR
#     S["server"] -- "environ,<br/>start_response" --> L["logging"]
#     L --> C["CORS"] --> A["auth"] --> APP["your app"]
#     APP -. "status, headers,<br/>body iterable" .-> A
#     A -.-> C -.-> L -. "response" .-> S
# ```
#
# The request travels inwards along the solid arrows, the response outwards along the dotted
# ones. Every layer sees both.
#
# A layer in the middle can break the contract in either direction, so you need a way to
# check it. The standard library has one: `wsgiref.validate.validator(app)` wraps an app and
# raises `AssertionError` the moment either side of the call breaks a PEP 3333 rule. Every
# app in this chapter runs inside one. Start with the smallest app there is, validated:

# %%
import barelab
from wsgiref.validate import validator

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Hello!\n"]

barelab.call_wsgi(validator(hello)).headers

# %% [markdown]
# `barelab.call_wsgi(app)` plays the server for one request: it builds an `environ`, calls
# the app, iterates the body and closes it, and keeps a record of everything. `.headers` is
# the list the app handed to `start_response`. The validator stayed silent, and silence is
# what passing looks like: it only ever speaks up with an `AssertionError`.
#
# Now a middleware, written as a closure. `powered_by(app)` returns a new WSGI app,
# `middleware`. When called, it calls `app`, but hands it its own `start_response`, which
# adds one header and passes everything on to the real one. It gets a validator on **each**
# side: the outer one checks it as an app, the inner one checks it as a server to `hello`.

# %%
def powered_by(app):
    def middleware(environ, start_response):
        def add_header(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Powered-By", "bare metal")], exc_info)
        return app(environ, add_header)
    return middleware

barelab.call_wsgi(validator(powered_by(validator(hello)))).headers

# %% [markdown]
# Read the call from the inside out: `hello`, a validator around it, `powered_by` around
# that, and a second validator outside. The header is there, and `hello` never knew. Three
# details in `add_header` matter more than they look, and the traps later in the chapter are
# about exactly these:
#
# - it builds a **new** list (`headers + [...]`) instead of changing the app's list later;
# - it takes `exc_info` (the error an app reports when it replaces a response it started)
#   and passes it on;
# - it **returns** what the real `start_response` returned, the `write` callable (an older
#   way for an app to send body bytes).
#
# And `middleware` returns the app's body untouched, so whatever the app does with its body
# (stream it, clean up in `close()`) still happens.
#
# ### Closure or class?
#
# A closure is fine for three lines. The middleware in this chapter are classes instead:
# `__init__(app, ...)` stores the app and the settings, and `__call__(environ,
# start_response)` handles a request. A class shows its settings as attributes, can keep
# state you want to read later (the request logger's records), and checks its settings
# once, when the stack is built, rather than on every request. Here is the same middleware
# as a class:

# %%
class PoweredBy:
    def __init__(self, app, value="bare metal"):
        self.app, self.value = app, value

    def __call__(self, environ, start_response):
        def add_header(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Powered-By", self.value)], exc_info)
        return self.app(environ, add_header)

barelab.call_wsgi(validator(PoweredBy(validator(hello), "a class"))).header("X-Powered-By")

# %% [markdown]
# `.header(name)` picks one header's value out of the response. The class did the same job
# as the closure, and its setting, `value`, is now an argument you can change per stack.
#
# ### The validator at work
#
# So far both validators stayed quiet. Here is a middleware that gets two things wrong: it
# drops `exc_info`, and it turns the header list into a tuple.

# %%
def sloppy(app):
    def middleware(environ, start_response):
        def add_header(status, headers, exc_info=None):
            return start_response(status, tuple(headers) + (("X-Sloppy", "1"),))
        return app(environ, add_header)
    return middleware

call = barelab.call_wsgi(validator(sloppy(validator(hello))), raise_errors=False)
call.exception

# %% [markdown]
# The outer validator caught the tuple: "Headers ... must be of type list" (PEP 3333, "The
# start_response() Callable": `response_headers` "must be a Python list"). The dropped
# `exc_info` goes unnoticed here, because `hello` never has an error to report; trap 4,
# further down, shows what it costs. With `raise_errors=False`, `call_wsgi` keeps the
# exception in `call.exception` instead of raising it, so a cell can show a failure and
# carry on. Typing `validator(...(validator(...)))` around every layer gets old
# fast, so the first function this chapter exports, `compose`, takes a `between=` argument
# that puts a validator at every boundary.

# %%
#| default_exp wsgi_middleware

# %% [markdown]
# The module opens with its imports and a short design note, the same one you just read.

# %%
#| export
# WSGI middleware: each component is a class whose __init__ takes the app it wraps and
# whose __call__(environ, start_response) is itself a WSGI app (PEP 3333, "Middleware:
# Components that Play Both Sides"). A component changes headers inside its own
# start_response, passes exc_info on and returns write; it touches the body only when it
# must, and then through ClosingIterator, so streaming and close() survive every layer.
import base64
import binascii
import hashlib
import hmac
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

# %% [markdown]
# `compose(app, *middleware)` builds a stack. The layers are listed **outermost first**, in
# the order a request meets them, so `compose(app, A, B)` is `A(B(app))`. A layer is
# anything that takes an app and returns an app: a class, or `functools.partial` of one with
# its settings filled in.
#
# Look at the loop: it walks the list backwards, so the last layer listed wraps the app
# first and the first one listed ends up outermost. `between` wraps the app itself and then
# each new layer as it is added, so every boundary gets exactly one.

# %%
#| export
def compose(app, *middleware, between=None):
    """Wrap ``app`` in ``middleware``, listed outermost first: ``compose(app, A, B)`` is
    ``A(B(app))``. ``between`` (say ``wsgiref.validate.validator``) wraps the app and
    every layer, so it checks each boundary from both sides."""
    wrap = between if between is not None else (lambda inner: inner)
    app = wrap(app)
    for layer in reversed(middleware):
        app = wrap(layer(app))
    return app

# %%
stack = compose(hello, PoweredBy, between=validator)
barelab.call_wsgi(stack).header("X-Powered-By")

# %% [markdown]
# `stack` is `validator(PoweredBy(validator(hello)))`, the same stack you typed by hand
# before, and it passed both checks. From here on every stack in the chapter is built with
# `between=validator`, so any layer that breaks PEP 3333 fails loudly in its own cell.
#
# Headers are a list of `(name, value)` pairs, and names are case-insensitive (RFC 9110
# §5.1), so every middleware needs the same two small helpers: find the values of a header,
# and drop a header.

# %%
#| export
def header_values(headers, name: str) -> list[str]:
    """Every value of header ``name`` (any case), in order."""
    return [v for n, v in headers if n.lower() == name.lower()]


def without(headers, *names: str) -> list:
    """A new list of ``headers`` with every header called one of ``names`` left out."""
    drop = {name.lower() for name in names}
    return [(n, v) for n, v in headers if n.lower() not in drop]

# %%
sample = [("Content-Type", "text/plain"), ("vary", "Accept"), ("Vary", "Cookie")]
header_values(sample, "VARY"), without(sample, "vary")

# %% [markdown]
# Asked for `VARY`, `header_values` found both `Vary` fields, whatever their spelling, in
# the order they came. `without` returned a new list and left `sample` as it was: a
# middleware must not change a list it did not make, because the layer that made it may
# still hold on to it.
#
# ## The body: stream it, and close it
#
# A middleware that only changes headers hands the app's body back untouched, and that is
# the safest thing to do with it. Some middleware must see the body: a logger counts its
# bytes and wants to know when it ends. The two ways that goes wrong are the next two
# traps.
#
# To see streaming, you need an app that streams. `ticker` is a generator: it sends one
# line, waits a quarter of a second, sends the next. (A generator function is a fine WSGI
# app: calling it returns an iterable, and `start_response` runs on the first `next()`.)

# %%
import time

def ticker(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    for n in (1, 2, 3):
        if n > 1:
            time.sleep(0.25)
        yield f"tick {n}\n".encode()

ticker_server = barelab.serve(compose(ticker, between=validator), name="ticker")
ticker_server

# %% [markdown]
# You can click the link, but a browser is a poor stopwatch here: it holds back the first
# few hundred bytes of a page before drawing anything, so 21 bytes of ticks may well appear
# all at once. The honest measurement watches the socket.
#
# `arrivals(server, path)` sends a GET (with any extra `headers`), reads whatever comes, and
# notes the moment each `tick N` first shows up, in seconds after the request went out. It
# speaks HTTP by hand, with a raw socket, because every HTTP client library you know waits
# for the whole body before handing it over, which would hide the very thing to measure.
# `setdefault` keeps the *first* time a tick was seen: `seen` grows, and the search runs
# over all of it on every pass.

# %%
import re
import socket

def arrivals(server, path="/", headers={}):
    """Seconds after the request went out at which each 'tick N' line reached the client."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n"
    seen, times = b"", {}
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.perf_counter()
        sock.sendall(request.encode())
        while data := sock.recv(65536):
            seen += data
            for tick in re.findall(rb"tick \d", seen):
                times.setdefault(tick.decode(), time.perf_counter() - start)
    return times

# %% [markdown]
# A second helper prints those times and says, in words, whether the lines came one by one
# (spread over about half a second) or all together.

# %%
def show_arrivals(times):
    for tick, seconds in times.items():
        print(f"{tick} arrived after {seconds:.2f} s")
    spread = max(times.values()) - min(times.values())
    print("verdict:", "one by one, as written" if spread > 0.3 else "all at once, at the end")

show_arrivals(arrivals(ticker_server))

# %% [markdown]
# About 0, 0.25 and 0.5 seconds: the server sent each line the moment the generator
# produced it, and the client had it a moment later. (Durations are masked in the stored
# notebook, so run the cell yourself to see your own numbers.) That is the baseline every
# middleware in this chapter has to keep.
#
# ### Trap 1: a middleware that buffers the body
#
# Say you want every response to carry a `Content-Length`, so browsers can show a progress
# bar. You need the body's length before the headers go out, so you read the whole body
# first. Here is that middleware, written the way it usually is. Look for the line marked
# "waits": `b"".join(body)` cannot return before the generator is exhausted, and the real
# `start_response` is only called after it.

# %%
def add_content_length(app):
    def middleware(environ, start_response):
        captured = []
        def capture(status, headers, exc_info=None):
            captured[:] = [status, headers]
        body = app(environ, capture)
        data = b"".join(body)     # waits for the whole body
        if hasattr(body, "close"):
            body.close()
        start_response(captured[0], captured[1] + [("Content-Length", str(len(data)))])
        return [data]
    return middleware

# %% [markdown]
# Serve the ticker behind it, on the same port (serving under a name that is already
# running replaces that server), and measure again:

# %%
ticker_server = barelab.serve(compose(ticker, add_content_length, between=validator),
                              name="ticker")
show_arrivals(arrivals(ticker_server))

# %% [markdown]
# Every line now arrives after half a second, together. For three ticks that is a nuisance;
# for a large CSV export it is the whole file in the server's memory; for a live feed or a
# long poll the response never arrives at all.
#
# The PEP forbids exactly this. Its section "Middleware Handling of Block Boundaries" says
# that "middleware components must not block iteration waiting for multiple values from an
# application iterable", and puts it another way: a middleware "must yield at least one
# value each time its underlying application yields a value". And there is more wrong in
# these dozen lines: `capture` returns nothing, so an app that calls `write()` crashes, and
# it swallows `exc_info`. Three bugs, in code that looks like a reasonable afternoon's work.
#
# The fix is to not do it. A middleware that must see the body looks at each chunk as it
# passes and hands it on at once; if it needs the length, it counts while forwarding and
# learns the total at the end, which is exactly what the request logger below does. The
# server, not a middleware, decides how to frame a body of unknown length: barelab's
# server, like any HTTP/1.1 server, sends it chunked (RFC 9112 §7.1).

# %% [markdown]
# ### Trap 2: a middleware that drops `close()`
#
# PEP 3333 ("Specification Details"): "If the iterable returned by the application has a
# `close()` method, the server or gateway **must** call that method upon completion of the
# current request, whether the request was completed normally, or terminated early due to
# an application error during iteration or an early disconnect of the browser." Apps rely
# on it. Django sends its `request_finished` signal, which gives database connections back,
# from the response's `close()`; a generator's `finally:` block runs when it is closed.
#
# Here is an app that streams a file and closes it in `finally:`. It notes every file it
# opens in `opened` and every cleanup in `cleanups`, so you can check on both. The file
# lives in a fresh temporary directory, removed again in the last cell.

# %%
import tempfile
from pathlib import Path

report = Path(tempfile.mkdtemp()) / "report.txt"
report.write_text("line 1\nline 2\nline 3\n")
opened, cleanups = [], []

def report_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    file = open(report, "rb")
    opened.append(file)
    try:
        yield from file
    finally:
        file.close()
        cleanups.append("finally ran")

# %% [markdown]
# And a middleware that upper-cases the body as it streams. `map(bytes.upper, body)` is
# lazy, so it streams, which is more than the previous trap managed. But a `map` object has
# no `close()` method.

# %%
def shout(app):
    def middleware(environ, start_response):
        return map(bytes.upper, app(environ, start_response))
    return middleware

# %% [markdown]
# Play the server by hand. `barelab.build_environ()` makes the `environ` a server would, and
# the `lambda` is a `start_response` that ignores what it is given. The client hangs up
# after the first chunk, which happens all the time (a closed tab, a `curl | head`), so the
# server stops iterating and calls `close()` on what it got, if there is one.
#
# This time there is a validator only on the outside. One between `shout` and
# `report_app` would wrap the app's generator, never be closed, and complain about it from
# the garbage collector; that is its job, but here you want to watch the file instead.

# %%
environ, start_response = barelab.build_environ(), lambda status, headers, exc_info=None: None
body = validator(shout(report_app))(environ, start_response)
print("first chunk:", next(iter(body)))
body.close()  # what a server does next (PEP 3333)
print("cleanups:", cleanups, "| file closed:", opened[-1].closed)

# %% [markdown]
# The validator's wrapper has a `close()`, so the server's call worked, but it found no
# `close()` on the `map` to pass it on to. The `finally:` block has not run and the file is
# still open. It will close eventually: CPython destroys the generator, and runs its
# `finally:`, when the last reference to it disappears.

# %%
del body
print("cleanups:", cleanups, "| file closed:", opened[-1].closed)

# %% [markdown]
# So the cleanup happened, at a moment nobody chose: here when this cell dropped `body`, in
# a server whenever it lets go of the response object, on PyPy whenever its garbage
# collector runs. And for an iterable whose `close()` does real work, such as Django's
# response or Werkzeug's `ClosingIterator` with its callbacks, there is no garbage-collector
# rescue at all: that work simply never happens.
#
# ### The fix: `ClosingIterator`
#
# Wrapping a body correctly takes a small class. First a helper it needs: run a list of
# cleanup callbacks so that one raising cannot stop the ones after it. When a callback
# raises, the rest still run, and then the first exception goes on to the caller.

# %%
#| export
def _run_all(callbacks) -> None:
    """Call every callback in order, even if one raises; then re-raise the first error."""
    first_error = None
    for callback in callbacks:
        try:
            callback()
        except BaseException as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error

# %%
ran = []
try:
    _run_all([lambda: ran.append(1), lambda: 1 / 0, lambda: ran.append(3), lambda: {}["x"]])
except ZeroDivisionError as error:
    print("raised:", repr(error), "| ran:", ran)

# %% [markdown]
# The second callback raised, the third still ran, and of the two errors the first one
# came out: the `KeyError` from the last callback was dropped, since a function can raise
# only one exception. For cleanup that is the right trade. A failing `close()` of one layer
# must not stop the file of another from being closed.
#
# Now the class, in two steps. It wraps the app's body (`iterable`) and takes three
# optional hooks, all keyword-only so a call says what each one is:
#
# - `transform(chunk)` returns a changed chunk (upper-case it, censor it);
# - `on_chunk(chunk)` only looks (count the bytes);
# - `on_close`, a list of callbacks that run after the inner body was closed (write the
#   log line).
#
# The first step is the part the trap was about. `close()` sets a flag first, so a second
# call does nothing; then it closes the inner body, if it has a `close()`, and runs the
# callbacks, all through `_run_all`. If even `iter()` fails in the constructor, the body's
# `close()` is still owed, so the constructor calls it before letting the error out.

# %%
#| export
class ClosingIterator:
    """Forward a WSGI body chunk by chunk, keeping streaming and close() intact."""

    def __init__(self, iterable, *, transform=None, on_chunk=None, on_close=()):
        self._iterable, self._transform, self._on_chunk = iterable, transform, on_chunk
        self._on_close, self._closed, self.error = list(on_close), False, None
        try:
            self._iterator = iter(iterable)
        except BaseException:
            self.close()
            raise

    def __iter__(self):
        return self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            inner = getattr(self._iterable, "close", None)
            _run_all(([inner] if inner is not None else []) + self._on_close)

# %% [markdown]
# Close one twice, and build one around something that is not iterable at all. Watch
# how often each callback runs:

# %%
closed = []
wrapper = ClosingIterator([b"a list body"], on_close=[lambda: closed.append("list")])
wrapper.close()
wrapper.close()
try:
    ClosingIterator(42, on_close=[lambda: closed.append("not iterable")])
except TypeError as error:
    print("TypeError:", error)
closed

# %% [markdown]
# Once each, though the first wrapper was closed twice, which matters because some servers
# (and some middleware) do call `close()` twice. A list has no `close()` of its own, so
# only the callback ran; and `42` made
# `iter()` raise, yet its cleanup still happened before the `TypeError` came out.
#
# The second step is `__next__`, which hands out one chunk per call: take the next chunk
# from the inner body, pass it through `transform`, show it to `on_chunk`, return it.
# `StopIteration` (the body is done) passes straight through. Any other exception from the
# inner body is kept in `.error` for the logger and re-raised: the server, not a
# middleware, decides what a failure means on the wire. The method is written as a plain
# function and then attached to the class, which is how a class can grow over two cells.

# %%
#| export
def _closing_next(self) -> bytes:
    """The inner body's next chunk, through ``transform`` and shown to ``on_chunk``."""
    try:
        chunk = next(self._iterator)
    except StopIteration:
        raise
    except BaseException as exc:
        self.error = exc
        raise
    chunk = self._transform(chunk) if self._transform is not None else chunk
    if self._on_chunk is not None:
        self._on_chunk(chunk)
    return chunk


ClosingIterator.__next__ = _closing_next

# %% [markdown]
# `shout`, fixed: the same upper-casing, through `ClosingIterator`. The middleware shrinks
# to one line of real work, and the wrapper it returns has the `close()` the `map` lacked.

# %%
def shout(app):
    def middleware(environ, start_response):
        return ClosingIterator(app(environ, start_response), transform=bytes.upper)
    return middleware

# %% [markdown]
# Replay the same early hang-up. This time both validators stay in place: the inner one
# would complain if the app's body were left unclosed.

# %%
cleanups.clear()
body = compose(report_app, shout, between=validator)(barelab.build_environ(), start_response)
print("first chunk:", next(iter(body)))
body.close()
print("cleanups:", cleanups, "| file closed:", opened[-1].closed)

# %% [markdown]
# The `finally:` ran and the file is closed the moment the server called `close()`, not
# whenever the garbage collector gets there. The server's `close()` travelled inwards
# through every layer, each one passing it on:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant V1 as validator (outer)
#     participant C as ClosingIterator (shout)
#     participant V2 as validator (inner)
#     participant G as report_app's generator
#     S->>V1: close()
#     V1->>C: close()
#     C->>V2: close()
#     V2->>G: close()
#     Note over G: finally: file.close()
# ```
#
# With the `map` in the middle, the chain stopped at the outer validator.
#
# And the streaming? `barelab.call_wsgi` plays the server and records each
# chunk as a `yield` row, so you can see three separate chunks come through, and the one
# `close()` at the end:

# %%
barelab.call_wsgi(compose(ticker, shout, between=validator)).transcript

# %% [markdown]
# Three `yield` rows, each already upper-cased, then one `close()`. `ClosingIterator` never
# held more than one chunk, so the ticker would reach a real client at the same pace as
# before. That is the whole recipe for a body-changing middleware: wrap, forward one chunk
# at a time, pass `close()` on.
#
# ## `start_response`, wrapped correctly
#
# Every middleware below changes headers, so it wraps `start_response`. PEP 3333 ("The
# start_response() Callable") fixes what that wrapper must do: take
# `(status, response_headers, exc_info=None)`, and return a `write(body_data)` callable.
# Each of the next two traps breaks one of those, in code that looks reasonable.
#
# ### Trap 3: changing the headers after the app called `write()`
#
# `write()` is the old way to send a body: instead of returning an iterable, the app pushes
# bytes out. PEP 3333 keeps it for frameworks older than WSGI, and some still use it. Here
# is such an app: `start_response` hands back `write`, the app calls it once and returns an
# empty body.

# %%
def pusher(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    write(b"pushed with write()\n")
    return []

# %% [markdown]
# And a middleware that wants to add a header *after* the app has done its work, say to
# report that it finished. It keeps a reference to the app's header list, lets the app run,
# then appends to that list:

# %%
def late_header(app):
    def middleware(environ, start_response):
        seen = {}
        def keep(status, headers, exc_info=None):
            seen["headers"] = headers
            return start_response(status, headers, exc_info)
        body = app(environ, keep)
        seen["headers"].append(("X-Done", "yes"))  # too late: they are on the wire
        return body
    return middleware

# %% [markdown]
# Run it through `call_wsgi`. The transcript shows the order: `start_response()` with one
# header, then `write()`, which sends the head and that body chunk. Only then does the
# middleware append to the list.

# %%
call = barelab.call_wsgi(compose(pusher, late_header, between=validator))
print(call.transcript)
print("X-Done:", call.header("X-Done"))

# %% [markdown]
# `X-Done` is missing. The first `write()` puts the status and headers on the wire (PEP
# 3333: start_response "must not actually transmit the response headers" until "the
# application's first invocation of the write() callable" or the first non-empty chunk), so
# there is nothing left to append to. Even with an app that returns a list, whether a later
# `append` shows up depends on when the server copies the list, and barelab copies it at
# once. The rule: a middleware changes headers **inside** its `start_response` wrapper,
# before passing them on, as `powered_by` did.
#
# ### Trap 4: `exc_info` dropped
#
# When an app hits an error after calling `start_response` but before any body went out, it
# may call `start_response` a second time with the error page's status, passing
# `sys.exc_info()` as the third argument. That is the one case where a second call is
# allowed (PEP 3333, "The start_response() Callable": it is "a fatal error to call
# start_response without the exc_info argument if start_response has already been
# called"). The server then throws away the headers it was holding and sends the new ones.
#
# `fragile` does exactly that: it starts a 200, its database call fails, and in the
# `except` block it starts over with a 500 and a polite body.

# %%
import sys

def fragile(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    try:
        raise ConnectionError("the database went away")
    except ConnectionError:
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain; charset=utf-8")], sys.exc_info())
        return [b"Sorry, try again later.\n"]

barelab.call_wsgi(compose(fragile, between=validator)).status

# %% [markdown]
# On its own, `fragile` answers a clean 500, and the validator accepted the second call
# because it carried `exc_info`. Now two wrappers people write, both adding a harmless
# `X-Layer` header. The first has no third parameter at all; the second accepts `exc_info`
# but does not pass it on.

# %%
def two_arguments(app):
    def middleware(environ, start_response):
        def wrapped(status, headers):
            return start_response(status, headers + [("X-Layer", "1")])
        return app(environ, wrapped)
    return middleware

def drops_exc_info(app):
    def middleware(environ, start_response):
        def wrapped(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Layer", "1")])
        return app(environ, wrapped)
    return middleware

# %% [markdown]
# Put each one, and `powered_by` from the start of the chapter for comparison, between
# `fragile` and the server:

# %%
for broken in (two_arguments, drops_exc_info, powered_by):
    call = barelab.call_wsgi(compose(fragile, broken, between=validator), raise_errors=False)
    print(f"{broken.__name__:15}", call.status, "|", repr(call.exception))

# %% [markdown]
# The status column is the last status that reached the server. For the first two it is
# still the `200 OK` from `fragile`'s first call, because the second call never got
# through; then the app call ended in an exception, with no body sent.
#
# - `two_arguments` turns the app's careful error handling into a `TypeError`: the client
#   gets whatever the server does with a crash (a bare 500 of its own, chapter 06), not
#   the app's polite page, and the log shows a `TypeError` in a middleware instead of the
#   `ConnectionError` that happened.
# - `drops_exc_info` makes the second call look like a bug: the validator (and any strict
#   server) raises "start_response() called a second time without exc_info".
# - `powered_by`, which passes `exc_info` positionally, lets the 500 through.
#
# ## Request logging, timed until `close()`
#
# A request log line needs the method, the path, the status, the number of body bytes and
# how long the response took. The last one is the tricky part. A middleware that reads the
# clock when the app *returns* measures almost nothing: for a generator app, returning is
# instant, and all the work happens while the server iterates. The response is finished
# when the server calls `close()`.
#
# Each line of the log is one `RequestRecord`, a frozen dataclass: once a request is over,
# nothing about it changes. `__str__` turns it into the one-line form you would grep for.

# %%
#| export
@dataclass(frozen=True)
class RequestRecord:
    """One line of the request log."""

    method: str
    path: str
    status: int | None       # None if the app raised before choosing one
    bytes: int               # body bytes the app produced (yielded or written)
    duration: float          # seconds, from the call until close()
    request_id: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        status = "-" if self.status is None else self.status
        line = f"{self.method} {self.path} {status} {self.bytes} bytes {self.duration * 1e3:.1f} ms"
        line += f" id={self.request_id}" if self.request_id else ""
        return line + (f" error={self.error}" if self.error else "")

# %%
print(RequestRecord("GET", "/notes", 200, 38, 0.0123, request_id="checkout-7f3a"))
print(RequestRecord("GET", "/", None, 0, 0.0001, error="ZeroDivisionError"))

# %% [markdown]
# A status of `None` prints as `-`, the way access logs have always marked "no value", and
# the optional parts only show up when they are set.
#
# What goes into a log needs care: `PATH_INFO` is already percent-decoded, so a request for
# `/a%0aGET%20/admin` would put a newline, and a forged second line, into a plain-text log.
# `request_path` re-encodes the path (as "bytes in a str", chapter 04) and appends the query
# string, which PEP 3333 leaves encoded.

# %%
#| export
def request_path(environ) -> str:
    """SCRIPT_NAME + PATH_INFO re-encoded for a log line, plus ``?QUERY_STRING``."""
    raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    path = quote(raw, safe="/:@!$&'()*+,;=-._~")
    query = environ.get("QUERY_STRING", "")
    return path + ("?" + quote(query, safe="/:@!$&'()*+,;=-._~?%") if query else "")

# %%
request_path(barelab.build_environ(path="/a%0aGET%20/admin?x=1"))

# %% [markdown]
# The newline stays `%0A`, harmless: one request, one log line. The status goes into the
# record as a number, taken from the front of the status line, or `None` if the front is
# not three digits (PEP 3333 leaves checking the status line to the server):

# %%
#| export
def _status_code(status: str) -> int | None:
    code = status.split(" ", 1)[0]
    return int(code) if code.isdigit() and len(code) == 3 else None

# %%
_status_code("404 Not Found"), _status_code("OK")

# %% [markdown]
# `_status_code` stays cautious because a logger sits outside everything else and must not
# be the layer that crashes on a malformed status.
#
# Now the logger itself. While a request runs it has to keep track of four things: when
# it started, the method and path (noted on the way in, since inner layers may change
# `environ`), the status once chosen, and the bytes so far. A small mutable dataclass,
# `_RequestTally`, holds them; `count` adds a chunk's length, and `record` freezes the
# tally into a `RequestRecord` with the time elapsed.

# %%
#| export
@dataclass
class _RequestTally:
    """What RequestLogger learns about one request while the response is under way."""

    started: float
    method: str
    path: str
    status: int | None = None
    bytes: int = 0

    def count(self, chunk: bytes) -> None:
        self.bytes += len(chunk)

    def record(self, request_id=None, error=None) -> RequestRecord:
        return RequestRecord(self.method, self.path, self.status, self.bytes,
                             time.perf_counter() - self.started, request_id, error)

# %%
tally = _RequestTally(time.perf_counter(), "GET", "/notes")
tally.count(b"first chunk, ")
tally.count(b"second chunk")
tally.status = 200
print(tally.record())

# %% [markdown]
# Two chunks, 25 bytes, summed as they passed. The tally learns the status through a
# `start_response` wrapper. `_tallying_start_response` passes everything on to the real
# one, notes the status, and returns a `write` that counts the bytes before passing them
# on, so an app that pushes with `write()` (trap 3) is counted too.

# %%
#| export
def _tallying_start_response(start_response, tally: _RequestTally):
    """A start_response that notes the status in ``tally`` and returns a counting write."""
    def logging_start_response(status, headers, exc_info=None):
        write = start_response(status, headers, exc_info)
        tally.status = _status_code(status)

        def counting_write(data):
            tally.count(data)
            return write(data)
        return counting_write
    return logging_start_response

# %% [markdown]
# Note the order in `logging_start_response`: the status is noted only *after* the real
# `start_response` accepted it. If that call raises (a bad status, or `exc_info` re-raised
# because the head was already sent), the record keeps the status the client actually
# got. Try it on `pusher`, which sends its whole body through `write()`:

# %%
tally = _RequestTally(time.perf_counter(), "GET", "/")

def tallied_pusher(environ, start_response):
    return pusher(environ, _tallying_start_response(start_response, tally))

barelab.call_wsgi(tallied_pusher)
tally.status, tally.bytes

# %% [markdown]
# The 200 and the 20 bytes of `pushed with write()\n`, both seen from outside the app.
#
# Now the class. Its settings are where the records go: a list you can read (`records`,
# a fresh one unless you pass your own) and, optionally, a `logging.Logger`. `_finish`
# turns a tally into a record, with the request ID if an inner layer stored one in
# `environ` (the request ID middleware below does), and files it in both places.

# %%
#| export
class RequestLogger:
    """Record every request as a RequestRecord in ``records`` (and to ``logger`` if given)."""

    def __init__(self, app, records=None, logger=None):
        self.app = app
        self.records = [] if records is None else records
        self.logger = logger  # a logging.Logger, or None

    def _finish(self, tally: _RequestTally, environ, error=None) -> None:
        record = tally.record(environ.get("barelab.request_id"), error)
        self.records.append(record)
        if self.logger is not None:
            self.logger.info("%s", record)

# %% [markdown]
# Handling a request puts the pieces together. A tally starts before the app is called;
# the app gets the tallying `start_response`; the body goes back inside a
# `ClosingIterator` whose `on_chunk` counts bytes and whose `on_close` calls `_finish`, so
# the record is written when the server closes the response, not before. If the app raises
# before it even returns a body, there will be no `close()`, so `_finish` runs at once,
# with the exception's name, and the exception goes on to the server.

# %%
#| export
def _logger_call(self, environ, start_response):
    tally = _RequestTally(time.perf_counter(), environ.get("REQUEST_METHOD", "-"),
                          request_path(environ))
    try:
        body = self.app(environ, _tallying_start_response(start_response, tally))
    except Exception as exc:
        self._finish(tally, environ, type(exc).__name__)
        raise

    def finish():
        self._finish(tally, environ, type(wrapper.error).__name__ if wrapper.error else None)
    wrapper = ClosingIterator(body, on_chunk=tally.count, on_close=[finish])
    return wrapper


RequestLogger.__call__ = _logger_call

# %% [markdown]
# Try it on the ticker, and put a naive timer inside it for comparison, one that stops the
# clock as soon as the app returns:

# %%
naive = []

def naive_timer(app):
    def middleware(environ, start_response):
        started = time.perf_counter()
        body = app(environ, start_response)
        naive.append(time.perf_counter() - started)
        return body
    return middleware

# %% [markdown]
# The logger goes outside, the naive timer inside, the ticker innermost. The query string
# is there only to show that it lands in the log line:

# %%
logger = RequestLogger(compose(ticker, naive_timer, between=validator))
barelab.call_wsgi(compose(logger, between=validator), path="/ticks?fast=no")
print(logger.records[-1])
print(f"the naive timer saw {naive[-1] * 1e3:.3f} ms")

# %% [markdown]
# The logger saw about 500 ms, the real time the client waited; the naive timer saw a few
# microseconds, the time it takes to create a generator. The byte count is the 21 bytes of
# the three lines. Both timers are honest about what they measured; only one measured
# what you wanted to know.
#
# Two more cases: `pusher`, whose body all goes through `write()`, and an app that fails
# before it chooses a status at all.

# %%
def broken_app(environ, start_response):
    raise ZeroDivisionError("oops")

for app in (pusher, broken_app):
    logger = RequestLogger(compose(app, between=validator))
    barelab.call_wsgi(compose(logger, between=validator), raise_errors=False)
    print(logger.records[-1])

# %% [markdown]
# `pusher`'s 20 bytes all came through `write()`. `broken_app` never chose a status, so the
# record says `-` and names the exception; the exception itself went on to the server,
# which turns it into a 500 (chapter 06). A logger that swallowed it would hide the crash
# from every layer outside it. In
# production you would pass `logger=logging.getLogger("access")` and let the `logging`
# module write the lines to a file; `records` is there so a notebook (or a test) can look.
#
# ## A timing header
#
# Sometimes you want the timing *in the response*, where a browser's developer tools can
# show it. Two conventions exist: the de-facto `X-Response-Time: 12.3ms`, and the W3C's
# [Server Timing](https://www.w3.org/TR/server-timing/) header, `Server-Timing: app;dur=12.3`
# (a metric name and a duration in milliseconds), which browsers display in their network
# panel. `ResponseTimer` writes either. It only changes headers, so it returns the app's body
# untouched: streaming and `close()` come for free.
#
# The two headers differ in one way that matters to a middleware. `Server-Timing` is a
# list: the app, or another layer, may already have reported a metric of its own (`db`,
# `cache`), and each metric is welcome, so a new one is *added*. `X-Response-Time` holds
# one value, so an old one is *replaced*. `_with_timing` does the right thing for each:

# %%
#| export
def _with_timing(headers, header: str, metric: str, ms: float) -> list:
    """``headers`` plus a timing header: one more Server-Timing metric, or the one
    X-Response-Time."""
    if header.lower() == "server-timing":
        return list(headers) + [(header, f"{metric};dur={ms:.3f}")]
    return without(headers, header) + [(header, f"{ms:.3f}ms")]

# %%
[_with_timing([("Server-Timing", "db;dur=4")], "Server-Timing", "app", 12.5),
 _with_timing([("X-Response-Time", "old")], "X-Response-Time", "app", 12.5)]

# %% [markdown]
# The `db` metric kept its place next to the new `app` one; the old `X-Response-Time` is
# gone. The class checks its settings when the stack is built (a metric name is a token,
# like a header name) and, per request, reads the clock on the way in and again inside
# its `start_response` wrapper:

# %%
#| export
class ResponseTimer:
    """Add the time until the app called start_response, as Server-Timing or X-Response-Time."""

    def __init__(self, app, header="Server-Timing", metric="app"):
        if header.lower() not in ("server-timing", "x-response-time"):
            raise ValueError(f"header must be Server-Timing or X-Response-Time, not {header!r}")
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", metric):
            raise ValueError(f"a Server-Timing metric name is a token, not {metric!r}")
        self.app, self.header, self.metric = app, header, metric

    def __call__(self, environ, start_response):
        started = time.perf_counter()

        def timed_start_response(status, headers, exc_info=None):
            ms = (time.perf_counter() - started) * 1000
            return start_response(status, _with_timing(headers, self.header, self.metric, ms),
                                  exc_info)

        return self.app(environ, timed_start_response)

# %% [markdown]
# Give it an app that takes a known time, 100 ms of sleep before it answers, and read the
# header back:

# %%
def slow_hello(environ, start_response):
    time.sleep(0.1)
    return hello(environ, start_response)

value = barelab.call_wsgi(compose(slow_hello, ResponseTimer, between=validator)).header(
    "Server-Timing")
metric, duration = value.split(";dur=")
print(f"metric {metric!r}: {float(duration):.0f} ms")

# %% [markdown]
# About 100 ms, the sleep (the exact figure is masked in the stored notebook). Now the
# ticker, which you know takes half a second:

# %%
value = barelab.call_wsgi(compose(ticker, ResponseTimer, between=validator)).header(
    "Server-Timing")
print(f"{float(value.split(';dur=')[1]):.2f} ms for a response that took half a second")

# %% [markdown]
# A fraction of a millisecond. That is not a bug in the timer: a header can only carry what
# was known **when the headers were sent**, and they are sent before the first chunk of the
# body. So a timing header measures *time to headers*. For an app that builds the whole page
# and then returns it, that is nearly everything. For a streaming app it says how fast the
# response *started*, nothing about how long it ran; that number only exists at `close()`,
# in the request log. (HTTP has a place for facts known at the end, trailer fields after a
# chunked body, RFC 9110 §6.5, but WSGI has no way to send them.)
#
# Here is when each clock stops, for the ticker:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant T as ResponseTimer
#     participant A as ticker (a generator)
#     S->>T: app(environ, start_response)
#     T->>A: app(environ, timed_start_response)
#     A-->>S: generator: nothing has run yet
#     S->>A: next()
#     A->>T: start_response(...)
#     Note over T: clock read here: the timing header
#     T->>S: start_response(..., headers + timing)
#     A-->>S: tick 1, then 0.5 s more of ticks
#     S->>A: close()
#     Note over S,A: a RequestLogger's clock stops here
# ```
#
# ## Request IDs
#
# When a user reports "it failed at 10:42", you want to find that one request in the logs of
# every service it touched. A request ID is a name for one request: the outermost service
# makes one up, puts it in a header, and every service after it reuses it. `RequestID`
# honours an incoming `X-Request-ID` if it looks sane, makes one with `uuid4().hex`
# otherwise, stores it in `environ` for the app and the logger, and sends it back in the
# response.
#
# "Looks sane" is a short allow-list: letters, digits, `.`, `_` and `-`, at most 128 of
# them. The ID ends up in log lines and in a response header, so a client must not be able
# to smuggle newlines or megabytes into either. Two `X-Request-ID` headers arrive joined
# with a comma, and fail the check too.
#
# One detail to look for in `__init__`: the server hands request headers to the app under
# their CGI names, so `X-Request-ID` arrives as `environ["HTTP_X_REQUEST_ID"]`, and
# `_cgi_name` works that name out once. On the way out the ID replaces any `X-Request-ID`
# the app set, so the response never carries two.

# %%
#| export
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestID:
    """Give every request an ID: a valid incoming one, or uuid4().hex; in environ and back."""

    def __init__(self, app, header="X-Request-ID", environ_key="barelab.request_id",
                 trust_incoming=True):
        self.app, self.header, self.environ_key = app, header, environ_key
        self.trust_incoming = trust_incoming
        self._cgi_name = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ, start_response):
        incoming = environ.get(self._cgi_name, "")
        valid = self.trust_incoming and _REQUEST_ID.fullmatch(incoming)
        request_id = incoming if valid else uuid.uuid4().hex
        environ[self.environ_key] = request_id

        def id_start_response(status, headers, exc_info=None):
            headers = without(headers, self.header) + [(self.header, request_id)]
            return start_response(status, headers, exc_info)

        return self.app(environ, id_start_response)

# %% [markdown]
# The `environ` key is `barelab.request_id`: PEP 3333 ("environ Variables") asks that keys a
# server or middleware adds be lower case and "prefixed with a name that is unique to the
# defining server or gateway". To see what the app gets, here is an app that only echoes
# that key:

# %%
def show_id(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"app sees {environ['barelab.request_id']}".encode()]

# %% [markdown]
# Three requests: one without an ID, one with a good ID, and one trying to sneak a second
# header (and a cookie) into the response through the ID. The left column is the response
# header, the right one what the app saw:

# %%
with_ids = compose(show_id, RequestID, between=validator)
for sent in ({}, {"X-Request-ID": "checkout-7f3a"}, {"X-Request-ID": "x\r\nSet-Cookie: a=1"}):
    call = barelab.call_wsgi(with_ids, headers=sent)
    print(f"{call.header('X-Request-ID'):32} | {call.text}")

# %% [markdown]
# The first and third got fresh 32-hex IDs (masked as `REQUEST-ID` in the stored notebook),
# the second kept its own. The app and the response agree every time. In the real world,
# `trust_incoming=False` is right for a service on the open internet, where anyone can pick
# an ID that collides with another user's; `True` fits a service behind your own proxy,
# which sets the header.
#
# Put `RequestLogger` outside `RequestID` and the log line carries the ID too, because the
# logger reads `environ` when the response closes, after the inner layer stored it there.
# To hand the logger a list of your own, `functools.partial(RequestLogger, records=records)`
# fills in that setting and leaves a function from app to app, which is what `compose`
# expects of a layer:

# %%
from functools import partial

records = []
logged = compose(show_id, partial(RequestLogger, records=records), RequestID,
                 between=validator)
barelab.call_wsgi(logged, headers={"X-Request-ID": "checkout-7f3a"})
print(records[-1])

# %% [markdown]
# The log line and the response header carry the same ID, so a user's bug report with the
# header in it leads straight to the log line.
#
# ## CORS: several allowed origins
#
# A page from `https://app.example` that calls `fetch("https://api.example/notes")` makes a
# *cross-origin* request. The browser sends it with an `Origin: https://app.example` header,
# but it lets the page's script read the response only if the response says so, with
# `Access-Control-Allow-Origin`. That is CORS, the Cross-Origin Resource Sharing protocol,
# defined in the [Fetch standard](https://fetch.spec.whatwg.org/#http-cors-protocol)
# (section "CORS protocol"). Note who enforces it: the **browser**, to protect its user's
# logged-in sessions. `curl` ignores CORS entirely, so CORS is not access control for your
# server; that is what the auth middleware later is for.
#
# The browser's decision is a short algorithm, the Fetch standard's "CORS check". It is
# worth having as a function, because you cannot open a browser inside a test. Each
# `return` that starts with `blocked:` is one way a browser says no, with the reason
# its console would give:

# %%
#| export
def browser_cors_check(headers, origin: str, credentials: bool = False) -> str:
    """What a browser decides for a response to a CORS request from ``origin`` (Fetch
    standard, "CORS check"): ``"ok"``, or ``"blocked: "`` and the reason."""
    values = header_values(headers, "Access-Control-Allow-Origin")
    if not values:
        return "blocked: no Access-Control-Allow-Origin"
    allowed = ", ".join(values)  # Fetch "get": repeated fields combine into one value
    if allowed == "*" and credentials:
        return "blocked: '*' does not count when the request carries credentials"
    if allowed not in ("*", origin):
        return f"blocked: Access-Control-Allow-Origin {allowed!r} is not {origin!r}"
    if credentials and header_values(headers, "Access-Control-Allow-Credentials") != ["true"]:
        return "blocked: credentials need Access-Control-Allow-Credentials: true"
    return "ok"

# %% [markdown]
# Read it top to bottom as the browser does. No header: blocked. The header must then be
# `*` or the very origin that asked, byte for byte. With credentials (cookies, HTTP auth)
# `*` no longer counts, and the response must also say
# `Access-Control-Allow-Credentials: true`. Here is one response's grant, judged for three
# different requests:

# %%
grant = [("Access-Control-Allow-Origin", "https://app.example")]
for origin, credentials in [("https://app.example", False), ("https://admin.example", False),
                            ("https://app.example", True)]:
    verdict = browser_cors_check(grant, origin, credentials)
    print(f"{origin:22} credentials={credentials!s:5} {verdict}")

# %% [markdown]
# The grant is good for the origin it names, useless for any other, and not enough once
# the request carries credentials. Here is the API
# this section protects, a JSON app that reports who asked (auth comes later, so for now
# it is `anonymous`):

# %%
import json

def notes_api(environ, start_response):
    user = environ.get("REMOTE_USER", "anonymous")
    body = json.dumps({"user": user, "notes": ["buy milk"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]

barelab.call_wsgi(validator(notes_api)).text

# %% [markdown]
# It sets its own `Content-Length`, because the body is one known `bytes` object; CORS will
# not touch it, since it only adds headers.
#
# One helper for the rest of the section: send the same request from several origins and
# show, per origin, the status, the two CORS-relevant headers and the browser's verdict.
# An origin of `None` sends no `Origin` header at all, the way a browser loads a page or
# `curl` asks; the browser runs no CORS check for it, so its verdict column shows `-`.

# %%
def cors_table(app, origins, method="GET", path="/notes", headers=(), credentials=False):
    rows = []
    for origin in origins:
        sent = dict(headers, **({"Origin": origin} if origin else {}))
        call = barelab.call_wsgi(app, method, path, headers=sent)
        verdict = browser_cors_check(call.headers, origin, credentials) if origin else "-"
        rows.append((origin or "(no Origin)", call.status,
                     call.header("Access-Control-Allow-Origin") or "-",
                     call.header("Vary") or "-", verdict))
    return barelab.show_transcript(rows, columns=("Origin", "status", "Allow-Origin",
                                                  "Vary", "browser says"))

# %% [markdown]
# ### Trap 5: a comma list of origins
#
# Two front ends, `https://app.example` and `https://admin.example`, both call this API. The
# header's name says "allow origin", so the obvious move is to list both. Look at the last
# column of the table, the browser's verdict:

# %%
ALLOWED = ["https://app.example", "https://admin.example"]

def cors_comma_list(app):
    def middleware(environ, start_response):
        def wrapped(status, headers, exc_info=None):
            extra = [("Access-Control-Allow-Origin", ", ".join(ALLOWED))]
            return start_response(status, headers + extra, exc_info)
        return app(environ, wrapped)
    return middleware

cors_table(compose(notes_api, cors_comma_list, between=validator), ALLOWED)

# %% [markdown]
# Both front ends are blocked, each with the reason a browser console would show. The header
# holds one origin or `*`; a list is neither, and no browser splits it. (Sending two
# `Access-Control-Allow-Origin` lines fails the same way: the check combines them into the
# same comma list first.) The server must pick **the one origin that matched** and echo it.
# This version reads `Origin` on the way in and grants it only if it is on the list. Four
# requests this time: the two front ends, a stranger, and one with no `Origin` at all.

# %%
def cors_no_vary(app):
    def middleware(environ, start_response):
        origin = environ.get("HTTP_ORIGIN")
        extra = [("Access-Control-Allow-Origin", origin)] if origin in ALLOWED else []
        def wrapped(status, headers, exc_info=None):
            return start_response(status, headers + extra, exc_info)
        return app(environ, wrapped)
    return middleware

cors_table(compose(notes_api, cors_no_vary, between=validator),
           ALLOWED + ["https://evil.example", None])

# %% [markdown]
# That looks right: each allowed origin gets its own name back, a stranger gets nothing, and
# a plain request without `Origin` gets nothing either. It is still wrong, and the name of
# the function says why.
#
# ### Trap 6: forgetting `Vary: Origin`
#
# The response now **depends on a request header**: the same URL gives different headers
# for different `Origin`s. Caches (the browser's own, a CDN, a reverse proxy) store
# responses by URL, and reuse one for another request only if the request headers named in
# the response's `Vary` field are the same (RFC 9110 §12.5.5). Without `Vary: Origin`, a
# cache has no idea the origin matters.
#
# To watch that happen, here is a tiny shared cache, written as a middleware itself: one
# stored response per URL, reused while the request headers its `Vary` names are unchanged.
# (A cache must read the whole body to store it: buffering is its job, not a trap. It is
# also missing everything else a real cache does, like expiry.)
#
# The cache's key question is "which request headers did the stored response depend on,
# and what were they?". `varied_on` answers it: it reads the names in the response's `Vary`
# and looks each one up in a request's `environ`.

# %%
def varied_on(headers, environ):
    """The request's values of every header that the response's Vary field names."""
    names = [n.strip() for v in header_values(headers, "Vary") for n in v.split(",")]
    return tuple(environ.get("HTTP_" + n.upper().replace("-", "_")) for n in names if n)

from_a = barelab.build_environ(headers={"Origin": "https://a.example"})
varied_on([("Vary", "Origin")], from_a), varied_on([], from_a)

# %% [markdown]
# With `Vary: Origin` the stored response remembers the origin it was made for; with no
# `Vary` it remembers nothing, so *every* later request matches it. The cache keeps one
# entry per URL, a tuple `(status, headers, body, varied_on)`, and answers from it while
# the new request's `varied_on` is the same as the stored one's (`entry[3]`):

# %%
class TinyCache:
    def __init__(self, app):
        self.app, self.store = app, {}

    def __call__(self, environ, start_response):
        url = environ["PATH_INFO"] + "?" + environ["QUERY_STRING"]
        entry = self.store.get(url)
        if entry is None or entry[3] != varied_on(entry[1], environ):
            entry = self.store[url] = self.fetch(environ)
        start_response(entry[0], entry[1])
        return [entry[2]]

# %% [markdown]
# `fetch` asks the app behind the cache and builds that tuple, closing the body, of course.
# It is attached to the class afterwards, the same way `ClosingIterator` got its
# `__next__`.

# %%
def fetch(self, environ):
    got = []
    body = self.app(environ, lambda status, headers, exc_info=None: got.extend([status, headers]))
    try:
        data = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return got[0], got[1], data, varied_on(got[1], environ)

TinyCache.fetch = fetch

# %% [markdown]
# Now put the cache in front of `cors_no_vary` and let the two front ends ask for the same
# URL, one after the other:

# %%
cors_table(compose(notes_api, TinyCache, cors_no_vary, between=validator), ALLOWED)

# %% [markdown]
# The admin front end got the response the cache stored for the app front end, with
# `https://app.example` in it, and its browser blocked it. Real users see this as "CORS
# works for whoever came first after each deploy". The Fetch standard's section "CORS
# protocol and HTTP caches" describes the same failure for a response to a request without
# `Origin` (a page load, say) cached without `Access-Control-Allow-Origin`, and concludes:
# when `Access-Control-Allow-Origin` is not `*` or one fixed origin, send `Vary: Origin`,
# and send it on **every** response of the resource, also to requests that had no `Origin`
# or a refused one, since their headers depend on `Origin` just as much.
#
# Adding to `Vary` needs a little care: the app may have set `Vary: Accept-Encoding`
# already, `Vary: *` already covers everything, and names are case-insensitive. `add_vary`
# extends the app's own `Vary` field where there is one, rather than adding a second line
# that a careless cache might read alone.

# %%
#| export
def add_vary(headers, name: str) -> list:
    """A new header list whose Vary field lists ``name`` (RFC 9110 §12.5.5)."""
    headers = list(headers)
    listed = [t.strip().lower() for v in header_values(headers, "Vary") for t in v.split(",")]
    if "*" in listed or name.lower() in listed:
        return headers
    for index, (field, value) in enumerate(headers):
        if field.lower() == "vary":
            headers[index] = (field, f"{value}, {name}" if value.strip() else name)
            return headers
    return headers + [("Vary", name)]

# %%
[add_vary([], "Origin"), add_vary([("Vary", "Accept-Encoding")], "Origin"),
 add_vary([("vary", "origin")], "Origin"), add_vary([("Vary", "*")], "Origin")]

# %% [markdown]
# In order: a new field; `Origin` appended to the app's list; nothing to do, since
# `origin` in any case is already there; and nothing to do for `*`, which already says
# "this response depends on everything".

# %% [markdown]
# ### The `CORS` middleware
#
# Now the real thing. Its settings are checked once, when the stack is built. An allowed
# origin is `scheme://host[:port]` in lower case, with no path: that is how browsers write
# the `Origin` header (the HTML standard's "serialization of an origin", which Fetch uses
# for it), so `"https://app.example/"` with a trailing slash, a classic typo, would never
# match anything, and is refused now rather than failing silently later. `"*"` means "any
# origin" and cannot be combined with credentials. The cell also defines two patterns the
# rest of the CORS code needs: `_TOKEN`, what RFC 9110 calls a token (the characters a
# method or header name may use), and the three methods Fetch never asks permission for.

# %%
#| export
_ORIGIN = re.compile(r"[a-z][a-z0-9+.\-]*://(\[[0-9a-f:.]+\]|[a-z0-9\-.]+)(:[0-9]{1,5})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SAFELISTED_METHODS = ("GET", "HEAD", "POST")  # Fetch: never need Allow-Methods


def _cors_origins(origins, credentials: bool):
    if origins == "*":
        if credentials:
            raise ValueError("origins='*' with credentials=True: browsers refuse '*' when a "
                             "request carries credentials (Fetch, 'CORS protocol and credentials')")
        return "*"
    for origin in [origins] if isinstance(origins, str) else origins:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port] in lower "
                             "case, with no path and no trailing slash")
    return frozenset([origins] if isinstance(origins, str) else origins)

# %% [markdown]
# Three typical mistakes, refused with a message that says what to write instead:

# %%
for bad in ("https://app.example/", "https://App.example", "null"):
    try:
        _cors_origins([bad], credentials=False)
    except ValueError as error:
        print(error)

# %% [markdown]
# The trailing slash and the capital letter are typos that would have failed silently on
# every request. `null` is the `Origin` of sandboxed frames and local files; allowing it
# lets every one of those in, so it is refused too.
#
# Methods and header names must be tokens (RFC 9110 §5.6.2), listed one by one. `*` is
# refused too: with credentials, browsers read `*` in these lists literally, as a method or
# header named `*`, so a list that only works without credentials is a trap for later.

# %%
#| export
def _cors_tokens(kind: str, names) -> tuple:
    for name in names:
        if not _TOKEN.fullmatch(name) or name == "*":
            raise ValueError(f"{kind} must be listed one by one as tokens, not {name!r}")
    return tuple(names)

# %%
try:
    _cors_tokens("methods", ["GET", "*"])
except ValueError as error:
    print(error)

# %% [markdown]
# The message names the list and the entry, so a slip in a settings file points at itself.
#
# The class keeps its settings and answers two questions about them:
#
# - `allowed(origin)` gives the `Access-Control-Allow-Origin` value for an origin: the
#   origin itself if it is on the list, `"*"` in any-origin mode, `None` otherwise;
# - `grant(allow)` is the list of headers that grant it.
#
# Request headers are matched in lower case, so `headers` is stored that way.

# %%
#| export
class CORS:
    """CORS for a list of origins (or "*"): echo the one that matched, Vary: Origin on every
    response, preflights answered without calling the app (Fetch, "CORS protocol")."""

    def __init__(self, app, origins, *, methods=("GET", "HEAD", "POST"), headers=(),
                 credentials=False, expose=(), max_age=600):
        self.app, self.credentials, self.max_age = app, bool(credentials), int(max_age)
        self.origins = _cors_origins(origins, self.credentials)
        self.methods = _cors_tokens("methods", methods)
        self.headers = tuple(h.lower() for h in _cors_tokens("headers", headers))
        self.expose = _cors_tokens("exposed headers", expose)

    def allowed(self, origin):
        """The Access-Control-Allow-Origin value for ``origin``, or None."""
        return "*" if self.origins == "*" else origin if origin in self.origins else None

    def grant(self, allow: str) -> list:
        credentials = [("Access-Control-Allow-Credentials", "true")] if self.credentials else []
        return [("Access-Control-Allow-Origin", allow)] + credentials

# %%
cors = CORS(hello, ALLOWED, credentials=True)
[cors.allowed("https://admin.example"), cors.allowed("https://evil.example"),
 cors.grant("https://admin.example")]

# %% [markdown]
# The admin front end is allowed as itself, a stranger gets `None`, and a grant with
# credentials on is two headers. `CORS(hello, "*").allowed(...)` would say `"*"` to anyone.
#
# Handling a request comes next, attached to the class like `ClosingIterator.__next__`. A
# preflight (an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`,
# explained in a moment) goes to `_preflight`; every other request reaches the app through
# a `start_response` wrapper that lets `_cors_headers` rewrite the app's headers. Both
# helpers are plain functions defined further down; Python looks them up when a request
# arrives, not when the method is defined.

# %%
#| export
def _cors_call(self, environ, start_response):
    origin = environ.get("HTTP_ORIGIN")
    if (origin is not None and environ.get("REQUEST_METHOD") == "OPTIONS"
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ):
        return _preflight(self, environ, start_response, origin)
    allow = self.allowed(origin)

    def cors_start_response(status, headers, exc_info=None):
        return start_response(status, _cors_headers(self, headers, allow), exc_info)

    return self.app(environ, cors_start_response)


CORS.__call__ = _cors_call

# %% [markdown]
# The header work happens in `_cors_headers`, called from inside the `start_response`
# wrapper, so it runs before anything is sent (trap 3). In order:
#
# 1. drop any CORS response headers the app set itself: the middleware owns them, and an
#    app's own `Access-Control-Allow-Origin` next to the middleware's would make two, which
#    a browser reads as a comma list and blocks (trap 5);
# 2. if the origin matched, grant it: `Access-Control-Allow-Origin` (and
#    `Access-Control-Allow-Credentials: true` if credentials are on), plus
#    `Access-Control-Expose-Headers` if some response headers should be readable by
#    scripts;
# 3. add `Origin` to `Vary`, matched or not (trap 6), unless the answer is the fixed `*`.

# %%
#| export
def _cors_headers(cors: CORS, headers, allow) -> list:
    headers = without(headers, "Access-Control-Allow-Origin",
                      "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers")
    if allow is not None:
        headers += cors.grant(allow)
        if cors.expose:
            headers.append(("Access-Control-Expose-Headers", ", ".join(cors.expose)))
    return headers if cors.origins == "*" else add_vary(headers, "Origin")

# %%
_cors_headers(CORS(hello, ALLOWED, credentials=True), [("Vary", "Cookie")], ALLOWED[1])

# %% [markdown]
# The app's `Vary: Cookie` became `Cookie, Origin` in place, and the grant follows: two
# headers, since credentials are on. With `origins="*"` the answer does not depend on
# `Origin` at all, so it goes out on every response, and without `Vary`: exactly the Fetch
# standard's advice for a fixed value.
#
# ### Preflight requests
#
# A "simple" request (GET, HEAD or POST with plain headers) is sent at once and the CORS
# check runs on its response. Anything else, a `DELETE`, or a POST with
# `Content-Type: application/json` or an `Authorization` header, first makes the browser ask
# permission with a **preflight**: an `OPTIONS` request carrying `Origin`,
# `Access-Control-Request-Method` and, if any, `Access-Control-Request-Headers`. Only a 2xx
# answer that passes the CORS check and lists the method and headers lets the real request
# go out (Fetch, "CORS-preflight fetch").
#
# ```mermaid
# sequenceDiagram
#     participant B as Browser (page on app.example)
#     participant M as CORS middleware
#     participant A as app
#     B->>M: OPTIONS /notes<br/>Origin, Access-Control-Request-Method: DELETE
#     M-->>B: 204, Allow-Origin, Allow-Methods, Max-Age (the app is not called)
#     B->>M: DELETE /notes, Origin
#     M->>A: DELETE /notes
#     A-->>M: 200
#     M-->>B: 200 + Allow-Origin, Vary: Origin
# ```
#
# The middleware answers a preflight itself: the app has no idea what `OPTIONS` means, and
# must not run anything for it. An allowed request gets `204 No Content` with the lists and
# `Access-Control-Max-Age` (how many seconds the browser may reuse the answer; browsers cap
# it, Chromium at two hours). A refused one gets a `403` whose body says why, which is what
# you want to read in the browser's network panel at 2 a.m.
#
# First the decision. `_preflight_refusal` checks the three things a preflight asks for,
# in order: the origin, the method (the three safelisted ones need no listing), and every
# request header named in `Access-Control-Request-Headers`, compared in lower case. It
# returns the reason for the first one that fails, or `None`. The `[:100]` and `[:40]`
# slices keep a hostile request from putting megabytes into the refusal.

# %%
#| export
def _preflight_refusal(cors: CORS, environ, origin: str) -> str | None:
    """Why a CORS preflight from ``origin`` is refused, or None if it is allowed."""
    method = environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]
    asked = [h.strip().lower() for h in
             environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",") if h.strip()]
    if cors.allowed(origin) is None:
        return f"origin {origin[:100]!r} is not allowed"
    if method not in cors.methods and method not in _SAFELISTED_METHODS:
        return f"method {method[:40]!r} is not allowed"
    if unknown := [h for h in asked if h not in cors.headers]:
        return f"header {unknown[0][:40]!r} is not allowed"
    return None

# %%
asking = barelab.build_environ("OPTIONS", headers={
    "Access-Control-Request-Method": "DELETE",
    "Access-Control-Request-Headers": "Content-Type, Authorization"})
strict = CORS(hello, ALLOWED, methods=["DELETE"], headers=["Content-Type"])
[_preflight_refusal(strict, asking, "https://app.example"),
 _preflight_refusal(CORS(hello, "*", methods=["DELETE"]), asking, "https://evil.example")]

# %% [markdown]
# The strict settings allow `DELETE` but not the `Authorization` header, so that preflight
# is refused by name. Any-origin mode lets the stranger's origin through, then refuses the
# first header nobody listed, `content-type`: `"*"` opens the door to every origin, not to
# every request.
#
# Then the answer. A refusal becomes a plain-text 403 with the reason; permission becomes
# a 204 carrying the grant, the allowed lists and `Access-Control-Max-Age`. Either way it
# carries `Vary: Origin` unless the origin list is `*`, for the same cache reason as
# before.

# %%
#| export
def _preflight(cors: CORS, environ, start_response, origin: str):
    """Answer a CORS preflight (Fetch, "CORS-preflight request") without calling the app."""
    vary = [] if cors.origins == "*" else [("Vary", "Origin")]
    refusal = _preflight_refusal(cors, environ, origin)
    if refusal is not None:
        body = f"CORS preflight refused: {refusal}\n".encode()
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))] + vary)
        return [body]
    headers = cors.grant(cors.allowed(origin))
    headers.append(("Access-Control-Allow-Methods", ", ".join(cors.methods)))
    if cors.headers:
        headers.append(("Access-Control-Allow-Headers", ", ".join(cors.headers)))
    headers.append(("Access-Control-Max-Age", str(cors.max_age)))
    start_response("204 No Content", headers + vary)
    return []

# %% [markdown]
# First the plain requests, with the cache in front, in the order that broke the naive
# version, plus a stranger and a request without `Origin`:

# %%
api_cors = partial(CORS, origins=ALLOWED, methods=["GET", "POST", "DELETE"],
                   headers=["Authorization", "Content-Type"], credentials=True,
                   expose=["X-Request-ID"])
cors_table(compose(notes_api, TinyCache, api_cors, between=validator),
           [None] + ALLOWED + ["https://evil.example"], credentials=True)

# %% [markdown]
# Every response carries `Vary: Origin`, so the cache kept one entry per origin and each
# front end got its own name back; the stranger and the plain request got no grant. (The
# table shows the credentialed check, since this API allows credentials, and the
# `Access-Control-Allow-Credentials: true` that goes with each grant.)
#
# Now preflights. `preflight` sends what a browser would before a non-simple request: an
# `OPTIONS` with the origin, the method it wants, and the extra headers it wants to send.

# %%
def preflight(app, origin, method, headers=""):
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return barelab.call_wsgi(app, "OPTIONS", "/notes", headers=sent)

# %% [markdown]
# The admin front end wants to `DELETE` a note and send its `Authorization` header:

# %%
cors_app = compose(notes_api, api_cors, between=validator)
call = preflight(cors_app, "https://admin.example", "DELETE", "authorization")
print(call.status, "| body:", call.body)
barelab.show_headers(call.headers)

# %% [markdown]
# `204`, no body, no `Content-Type` (the validator insists: a 204 has no content), the
# granted origin, the method and header lists, and the `Max-Age`. `notes_api` was never
# called: it would have answered an `OPTIONS` as if it were a `GET`. Now three refusals, a
# `PUT` nobody allowed, a header nobody allowed and a stranger, one line each:

# %%
for origin, method, asked in [("https://app.example", "PUT", ""),
                              ("https://app.example", "GET", "x-debug"),
                              ("https://evil.example", "DELETE", "")]:
    call = preflight(cors_app, origin, method, asked)
    print(call.status, "|", call.text.strip())

# %% [markdown]
# An `OPTIONS` request *without* `Access-Control-Request-Method` is not a preflight; it goes
# to the app like any other request. Last, the credentials rule once more, this time as the
# middleware enforces it, at definition:

# %%
try:
    CORS(notes_api, "*", credentials=True)
except ValueError as error:
    print(error)

# %% [markdown]
# ## Authentication: HTTP Basic
#
# The last layer decides who may use the API at all. Two common choices:
#
# - **HTTP Basic** (RFC 7617): the client sends `Authorization: Basic <base64 of
#   user:password>` on every request. `curl -u`, every HTTP library and every browser
#   support it out of the box, and a browser shows its own login box when challenged.
# - **Bearer tokens** (RFC 6750): `Authorization: Bearer <token>`, a token the client got
#   from somewhere else (a login endpoint, an OAuth server).
#
# This chapter builds Basic, because it needs no other moving parts and you can try it with
# `curl -u` in the next minute; exercise 3 builds the bearer variant. Over plain HTTP both
# send the secret in the clear, so in production they only go over HTTPS.
#
# First the parsing, by the RFCs. The scheme name is case-insensitive (RFC 9110 §11.1) and
# separated from its credentials by one or more spaces (RFC 9110 §11.4); the credentials are
# base64 (strictly: `validate=True` refuses stray characters instead of skipping them); the
# user-id cannot contain a colon, the password can, so split at the **first** colon (RFC 7617
# §2). Anything malformed is simply "no valid credentials".

# %%
#| export
def parse_basic(header: str | None):
    """``(user, password)`` from an ``Authorization: Basic ...`` value, or None (RFC 7617)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(" "), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None

# %%
token = base64.b64encode("ada:pass:with:colons".encode()).decode()
[parse_basic(f"Basic {token}"), parse_basic(f"bAsIc   {token}"),
 parse_basic("Basic not*base64"), parse_basic(f"Bearer {token}"), parse_basic(None)]

# %% [markdown]
# The first two found `ada` and kept every colon of her password, whatever the case of
# `Basic` and however many spaces followed it. The last three, bad base64, another scheme
# and no header at all, are the same `None` to the caller: no valid credentials.
#
# Now the password check. Comparing with `==` stops at the first differing character, so
# how long a wrong guess takes leaks how many leading characters were right, and an attacker
# who can measure that finds the password one character at a time. `hmac.compare_digest`
# takes the same time whatever the contents. Two details on top of that:
#
# - `compare_digest` refuses `str` with non-ASCII characters (try `"pässword"`), and its time
#   may still depend on the *length* of its inputs. Comparing SHA-256 digests of the two
#   passwords fixes both: always 32 bytes.
# - An unknown user must cost the same as a wrong password, or the timing tells an attacker
#   which user names exist. So an unknown user is compared against a dummy digest.
#
# (A real user store keeps salted, slow hashes such as `hashlib.scrypt`, never the
# passwords; the digests here only make the comparison fixed-length.) First the problem:

# %%
import hmac

try:
    hmac.compare_digest("pässword", "password")
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# And the fix, `_digest`: the UTF-8 bytes of any password, hashed to 32 bytes. `_NOBODY` is
# the dummy an unknown user is compared against.

# %%
#| export
def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


_NOBODY = _digest("no such user")

# %%
hmac.compare_digest(_digest("pässword"), _digest("password")), len(_digest("pässword"))

# %% [markdown]
# `False` this time, not a `TypeError`, and 32 bytes whatever the password was. `_NOBODY`
# is worked out once, at import, so checking an unknown user costs exactly what checking a
# known one does: one hash of the password sent, one comparison.
#
# A refused request gets `401 Unauthorized`, and RFC 9110 §11.6.1 says how: "A server
# generating a 401 (Unauthorized) response MUST send a WWW-Authenticate header field
# containing at least one challenge." For Basic the challenge names a realm (a label the
# browser shows in its login box) and, per RFC 7617 §2.1, may say `charset="UTF-8"` to
# promise that user names and passwords are read as UTF-8.
#
# Some paths must stay open: a health check for the load balancer, say. An exempt entry
# matches the path itself and everything below it, but not a longer word (`/health`
# exempts `/health/db`, not `/healthz`). A path with a `.` or `..` segment is never exempt:
# the server does not remove dot segments from `PATH_INFO`, a router behind you might, and
# `/health/../admin` must not walk past the check.

# %%
#| export
def is_exempt(path: str, exempt) -> bool:
    """True if ``path`` is one of ``exempt`` or below one, and has no dot segments."""
    if {".", ".."} & set(path.split("/")):
        return False
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in exempt)

# %%
{path: is_exempt(path, ["/health"]) for path in
 ["/health", "/health/db", "/healthz", "/health/../admin", "/notes"]}

# %% [markdown]
# `/healthz` merely starts with the same letters, and `/health/../admin` is `/admin` once
# anything resolves the dots; both stay behind the check, as does everything else.
#
# The refusal itself: a plain-text 401 with the challenge. The body does not say *whether*
# the user name or the password was wrong, for the same reason the timing does not.

# %%
#| export
def unauthorized(start_response, challenge: str):
    """Answer 401 with ``WWW-Authenticate: <challenge>`` (RFC 9110 §11.6.1)."""
    body = b"401 Unauthorized: send valid credentials\n"
    start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                        ("Content-Length", str(len(body))),
                                        ("WWW-Authenticate", challenge)])
    return [body]

# %%
unauthorized(lambda status, headers: print(status, headers), 'Basic realm="demo"')

# %% [markdown]
# It calls `start_response` (here a `print`) and returns the body, exactly like any other
# WSGI app; a middleware that answers by itself is an app for that one response.

# %% [markdown]
# The middleware puts it all together, in three cells. First its settings, checked up
# front by `_check_basic_settings`: the realm goes inside a quoted string, so no quotes or
# backslashes; a user-id cannot contain a colon (RFC 7617 §2), since the colon separates
# it from the password; and an exempt path is a path, so it starts with `/`.

# %%
#| export
def _check_basic_settings(users, realm: str, exempt) -> None:
    if not re.fullmatch(r"[\x20-\x7e]*", realm) or '"' in realm or "\\" in realm:
        raise ValueError(f"realm must be printable ASCII without quotes or backslashes: {realm!r}")
    if any(":" in user for user in users):
        raise ValueError("a user-id cannot contain ':' (RFC 7617 §2)")
    if any(not path.startswith("/") for path in exempt):
        raise ValueError("exempt paths start with '/'")

# %%
for settings in ({"realm": 'my "app"'}, {"users": {"a:b": "pw"}}, {"exempt": ["health"]}):
    try:
        _check_basic_settings(**{"users": {}, "realm": "ok", "exempt": (), **settings})
    except ValueError as error:
        print(error)

# %% [markdown]
# Three mistakes, three messages, all raised when the stack is built, long before the
# first request could have hit them.
#
# Then the class with its `authenticate` method, the one place a password is checked: parse
# the header, look up the user's digest (or the dummy for an unknown user), compare in
# constant time. Note the last line: the comparison runs in every case, and only then do
# the checks that need no secret (were there credentials at all, is the user known) decide.

# %%
#| export
class BasicAuth:
    """HTTP Basic authentication (RFC 7617); sets REMOTE_USER, answers 401 otherwise."""

    def __init__(self, app, users, *, realm="barelab", exempt=()):
        _check_basic_settings(users, realm, exempt)
        self.app, self.exempt = app, tuple(exempt)
        self._digests = {user: _digest(password) for user, password in users.items()}
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'

    def authenticate(self, header) -> str | None:
        """The user name, if ``header`` holds valid Basic credentials; else None."""
        credentials = parse_basic(header)
        user, password = credentials if credentials else ("", "")
        expected = self._digests.get(user, _NOBODY)
        matches = hmac.compare_digest(_digest(password), expected)
        return user if matches and credentials and user in self._digests else None

# %% [markdown]
# `basic(user, password)` builds the header a client would send, the same thing `curl -u`
# does. Four attempts on a store with one user:

# %%
def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

auth = BasicAuth(hello, {"ada": "lovelace"})

def who(user, password):
    return auth.authenticate(basic(user, password)["Authorization"])

[who("ada", "lovelace"), who("ada", "wrong"), who("grace", "lovelace"), auth.authenticate(None)]

# %% [markdown]
# Only the right pair gives a name. The wrong password, the unknown user and the missing
# header all give `None`, and each went through the same digest comparison on the way, so
# a stopwatch learns nothing about which one it was.
#
# Last, handling a request. An exempt path goes straight to the app; otherwise a failure
# gets the 401, and a success reaches the app with the user's name in
# `environ["REMOTE_USER"]`, the key CGI (and so WSGI) has always used for it (RFC 3875
# §4.1.11), so the app, or Flask's `request.remote_user`, can read it.

# %%
#| export
def _basic_auth_call(self, environ, start_response):
    if is_exempt(environ.get("PATH_INFO", ""), self.exempt):
        return self.app(environ, start_response)
    user = self.authenticate(environ.get("HTTP_AUTHORIZATION"))
    if user is None:
        return unauthorized(start_response, self.challenge)
    environ["REMOTE_USER"] = user
    return self.app(environ, start_response)


BasicAuth.__call__ = _basic_auth_call

# %% [markdown]
# Try it in front of the notes API: a wrong password, a right one, an open path and a path
# that tries to climb out of it:

# %%
guarded = compose(notes_api, partial(BasicAuth, users={"ada": "lovelace"}, exempt=["/health"]),
                  between=validator)
for path, headers in [("/notes", basic("ada", "wrong")), ("/notes", basic("ada", "lovelace")),
                      ("/health", {}), ("/health/../notes", {})]:
    call = barelab.call_wsgi(guarded, path=path, headers=headers)
    print(f"{path:17} {call.status:17} {call.text.strip()}")

# %% [markdown]
# The wrong password got the 401 and its short explanation; the right one reached the app,
# which now reports `ada` instead of `anonymous`. The open path reached the app with no
# credentials at all; the one that tried to climb out of it did not. And the whole 401 as
# a client sees it, with its challenge:

# %%
call = barelab.call_wsgi(guarded, path="/notes")
print(call.status)
call.headers

# %% [markdown]
# `WWW-Authenticate` is what makes a browser open its login box; `curl` and HTTP libraries
# read it too, and know from `Basic` what to send next time.
#
# ## Stacking them: the order matters
#
# Five layers and an app. A request passes the layers outermost first, the response passes
# them innermost first, and a layer that answers by itself (auth with a 401, CORS with a
# preflight) hides everything inside it. So the order is a decision, and two wrong orders
# show why.
#
# ### Auth outside CORS: every preflight is a 401
#
# Browsers send preflights **without** credentials: the Fetch standard builds the preflight
# request without the user's cookies or `Authorization`, whatever the real request carries.
# Put auth outside CORS and it turns every preflight away before CORS can answer it.
#
# `api_auth` is the auth layer with its settings filled in, as `api_cors` is for CORS, so
# the two can be stacked in either order. The cell prints the preflight's status and what
# the browser makes of it:

# %%
api_auth = partial(BasicAuth, users={"ada": "lovelace"}, exempt=["/health"])
wrong_order = compose(notes_api, api_auth, api_cors, between=validator)
call = preflight(wrong_order, "https://app.example", "DELETE", "authorization")
print(call.status, "|", browser_cors_check(call.headers, "https://app.example", credentials=True))

# %% [markdown]
# A preflight needs a 2xx *and* a passing CORS check, and got neither: the browser never
# sends the `DELETE`, and the page's script sees only a generic network error, not even
# the 401. Swap the two:

# %%
right_order = compose(notes_api, api_cors, api_auth, between=validator)
call = preflight(right_order, "https://app.example", "DELETE", "authorization")
print(call.status, "|", browser_cors_check(call.headers, "https://app.example", credentials=True))

# %% [markdown]
# A 204 the browser accepts: now the `DELETE` may go out, with the `Authorization` header
# the page gives it, and meet auth. And if that header is missing or wrong, the 401 from
# auth passes back out through CORS on its way to the browser, so it carries the grant
# too, and the page's script can read the 401 and show a login form:

# %%
cors_table(right_order, ["https://app.example"], credentials=True)

# %% [markdown]
# ### Logging inside auth: the 401s vanish
#
# The requests you most want to see in a log are the refused ones: someone is guessing
# passwords. A logger inside auth never hears of them, because auth answers without
# calling it. To see that, put one logger on each side of auth, each with its own list, and
# send three requests: no credentials, a wrong password, the right one.

# %%
inner_log, outer_log = [], []
stack = compose(notes_api, partial(RequestLogger, records=outer_log), api_cors, api_auth,
                partial(RequestLogger, records=inner_log), between=validator)
for headers in ({}, basic("ada", "wrong"), basic("ada", "lovelace")):
    barelab.call_wsgi(stack, path="/notes", headers=headers)
print("inner logger saw", len(inner_log), "| outer logger saw", len(outer_log))
for record in outer_log:
    print(" ", record)

# %% [markdown]
# The inner logger saw one request, the outer one saw all three: two 401s of 41 bytes each,
# the 401 body, and the one 200 with the notes. So logging goes **outermost**: it sees every
# response, including the ones other layers made up, and times the whole stack.
#
# ### The stack
#
# Put together, from the outside in:
#
# 1. `RequestLogger`: sees and times everything, and records the request ID;
# 2. `RequestID`: every response, even a 401 or a preflight, carries its ID;
# 3. `ResponseTimer`: time to headers of everything inside it;
# 4. `CORS`: answers preflights before auth, and grants the 401s too;
# 5. `BasicAuth`: lets through only known users, except on `/health`;
# 6. the app.
#
# ```mermaid
# flowchart LR
#     S["server"] --> L["RequestLogger"] --> I["RequestID"] --> T["ResponseTimer"]
#     T --> C["CORS"] --> B["BasicAuth"] --> APP["site"]
#     C -. "preflight: 204 or 403" .-> T
#     B -. "no valid credentials: 401" .-> C
# ```
#
# The dotted arrows are the answers a layer makes up by itself. Each goes back out through
# every layer outside it, and nothing inside it ever hears of the request.
#
# The app is a little site: `/health` for the load balancer, `/ticks` to prove streaming
# survives all five layers, and the notes API for everything else. CORS lists
# `X-Request-ID` in `expose`, so a page's script may read that header (browsers hide all
# but a few response headers from cross-origin scripts unless told otherwise). The
# `X-Response-Time` form of the timer is used, since its value carries a unit.

# %%
def site(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"ok\n"]
    if path == "/ticks":
        return ticker(environ, start_response)
    return notes_api(environ, start_response)

# %% [markdown]
# And the stack, written in the order of the list above. `compose` lists layers outermost
# first, so the code reads like the picture at the top of the chapter, from the server
# inwards:

# %%
access_log = []
full_stack = compose(site, partial(RequestLogger, records=access_log), RequestID,
                     partial(ResponseTimer, header="X-Response-Time"), api_cors, api_auth,
                     between=validator)

# %% [markdown]
# ## Serving the stack
#
# Now over a real socket. `barelab.serve` starts it and shows a link (the page asks for a
# password: `ada` / `lovelace`).

# %%
server = barelab.serve(full_stack, name="notes")
server

# %% [markdown]
# A credentialed request from the admin front end, as a browser would send it. The cell
# prints the browser's verdict first, then shows the reply:

# %%
reply = barelab.http_request(server, "GET", "/notes",
                             headers={"Origin": "https://admin.example",
                                      **basic("ada", "lovelace")})
print(browser_cors_check(reply.headers, "https://admin.example", credentials=True))
reply

# %% [markdown]
# `ok`, and every layer left its mark: the grant and `Vary: Origin` from CORS, the exposed
# `X-Request-ID`, `X-Response-Time`, and `ada` in the body from auth. Now with `curl`, first
# a preflight (`-X OPTIONS` and two headers; `-m 5` makes curl give up after five seconds,
# should anything hang):

# %%
# !curl -s -i -m 5 -X OPTIONS -H "Origin: https://app.example" -H "Access-Control-Request-Method: DELETE" -H "Access-Control-Request-Headers: authorization" {server.url}notes

# %% [markdown]
# CORS answered it without asking auth, and the preflight still carries an
# `X-Response-Time` and an `X-Request-ID`: those layers sit outside CORS, so they see the
# responses it makes up, too. Then the real request, with `-u` for the credentials:

# %%
# !curl -s -i -m 5 -u ada:lovelace -H "Origin: https://app.example" {server.url}notes

# %% [markdown]
# The same grant as in the Python request, now for `app.example`, and a fresh request ID.
# The same without a password, and from a stranger: a 401 with its challenge, no grant for
# `evil.example`, and still `Vary: Origin`.

# %%
# !curl -s -i -m 5 -H "Origin: https://evil.example" {server.url}notes

# %% [markdown]
# And the streaming test, through all five layers:

# %%
show_arrivals(arrivals(server, "/ticks", basic("ada", "lovelace")))

# %% [markdown]
# Still one by one: logging counts the chunks as they pass, and the other four layers never
# touch the body at all. (Run it yourself to see the times; the verdict is the part the
# stored notebook can keep.) Two logs tell the story of these requests. The server's log has
# one line per request, as the server saw it:

# %%
server.log

# %% [markdown]
# The server can time a request and count its bytes too, but it has never heard of a
# request ID. The access log the `RequestLogger` kept has what only the stack knows: the
# ID of each request (the same ones the curl replies showed) and the 21 bytes of the
# ticker, timed until its `close()`:

# %%
for record in access_log:
    print(record)

# %% [markdown]
# ## Summary
#
# - A WSGI middleware is an app that holds an app (PEP 3333, "Middleware: Components that
#   Play Both Sides"). Here each is a class, `__init__(app, ...)` and
#   `__call__(environ, start_response)`; `compose(app, *middleware)` stacks them, outermost
#   first, and `between=validator` checks every boundary from both sides.
# - Headers change **inside** a `start_response` wrapper that takes and passes on
#   `exc_info` and returns `write`; changing them later is too late once `write()` ran.
# - The body is best left alone. A layer that must see it forwards it chunk by chunk
#   through `ClosingIterator`, which calls the inner `close()` exactly once; buffering it
#   breaks streaming, and dropping `close()` leaves cleanup to the garbage collector, or
#   to nobody.
# - `barelab.built.wsgi_middleware` holds `RequestLogger` (timed until `close()`),
#   `ResponseTimer` (time to headers only), `RequestID` (`uuid4().hex` or a sane incoming
#   one, in `environ` and the response), `CORS` and `BasicAuth`, plus `ClosingIterator`,
#   `compose`, `add_vary`, `parse_basic` and `browser_cors_check`.
# - CORS echoes the one origin that matched, never a list, sends `Vary: Origin` on every
#   response whose headers depend on `Origin` (matched or not), answers preflights itself
#   with 204 or a 403 that says why, and never combines `*` with credentials.
# - Basic auth compares fixed-length digests with `hmac.compare_digest`, costs the same for
#   unknown users, and answers 401 with `WWW-Authenticate` (RFC 9110 §11.6.1).
# - Order: logging outermost (it sees the 401s), CORS outside auth (preflights carry no
#   credentials), the app innermost.
#
# Chapter 08 builds the router that goes where `site` did its `if path == ...` by hand.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a streaming body transformer
#
# Write `Censor`, a middleware class that replaces every `b"secret"` in the body with
# `b"******"` (same length, so a `Content-Length` stays right), chunk by chunk as the body
# streams, without ever joining the chunks, and with the app's `close()` still called
# exactly once. You may assume the word never straddles two chunks. (Hint: this chapter
# exported something that takes a `transform`.)

# %% tags=["solution"]
class Censor:
    ### BEGIN SOLUTION
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        return ClosingIterator(body, transform=lambda chunk: chunk.replace(b"secret", b"******"))
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

closes = []

class Leaky:
    """A body that records its chunks being taken and its close() calls."""
    def __init__(self):
        self.chunks = iter([b"the secret is ", b"42, keep it secret\n"])
    def __iter__(self):
        return self
    def __next__(self):
        return next(self.chunks)
    def close(self):
        closes.append("closed")

def leaky_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Leaky()

with check("Exercise 1"):
    call = barelab.call_wsgi(compose(leaky_app, Censor, between=validator))
    assert call.body == b"the ****** is 42, keep it ******\n", f"the body is {call.body!r}"
    chunks = [detail for step, detail in call.steps if step == "yield"]
    assert len(chunks) == 2, f"expected the 2 chunks to stream one by one, got {len(chunks)}"
    assert closes == ["closed"], f"the app's close() ran {len(closes)} times, expected once"

# %% [markdown]
# ### Exercise 2 — an error page, with `exc_info`
#
# Write `ErrorPage`: if calling the app raises an exception, answer `500 Internal Server
# Error` with `Content-Type: text/plain; charset=utf-8` and the body
# `b"Something went wrong.\n"`, never the traceback. The app may already have called
# `start_response`, so call it with `sys.exc_info()` as the third argument, as PEP 3333
# says. Errors raised later, while the body is iterated, are the server's business: let
# them through.

# %% tags=["solution"]
class ErrorPage:
    ### BEGIN SOLUTION
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            return self.app(environ, start_response)
        except Exception:
            body = b"Something went wrong.\n"
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))], sys.exc_info())
            return [body]
    ### END SOLUTION

# %% tags=["check"]
def fails_late(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise KeyError("user_id")

with check("Exercise 2"):
    for app in (broken_app, fails_late):
        call = barelab.call_wsgi(compose(app, ErrorPage, between=validator), raise_errors=False)
        assert call.exception is None, f"{app.__name__}: the middleware raised {call.exception!r}"
        assert call.status == "500 Internal Server Error", f"{app.__name__}: got {call.status!r}"
        assert call.body == b"Something went wrong.\n", f"{app.__name__}: body {call.body!r}"
    call = barelab.call_wsgi(compose(hello, ErrorPage, between=validator))
    assert call.status == "200 OK" and call.body == b"Hello!\n", "a working app must pass through"

# %% [markdown]
# ### Exercise 3 — bearer tokens
#
# Write `BearerAuth(app, tokens)`, where `tokens` maps a token to a user name. A request
# with `Authorization: Bearer <token>` (scheme in any case) for a known token reaches the
# app with `REMOTE_USER` set to that user. Anything else gets `401 Unauthorized` with a
# `text/plain` body and the challenge `WWW-Authenticate: Bearer realm="api"` (RFC 6750 §3).
# Compare tokens in constant time.

# %% tags=["solution"]
class BearerAuth:
    ### BEGIN SOLUTION
    def __init__(self, app, tokens):
        self.app = app
        self.tokens = {_digest(token): user for token, user in tokens.items()}

    def __call__(self, environ, start_response):
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        user = None
        if scheme.lower() == "bearer":
            given = _digest(token.strip(" "))
            for known, name in self.tokens.items():  # look at every one: same time for all
                if hmac.compare_digest(given, known):
                    user = name
        if user is None:
            body = b"401 Unauthorized: send a bearer token\n"
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("Content-Length", str(len(body))),
                                                ("WWW-Authenticate", 'Bearer realm="api"')])
            return [body]
        environ["REMOTE_USER"] = user
        return self.app(environ, start_response)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    app = compose(notes_api, partial(BearerAuth, tokens={"t0k3n": "grace"}), between=validator)
    good = barelab.call_wsgi(app, headers={"Authorization": "bearer t0k3n"})
    assert good.status == "200 OK", f"a good token got {good.status!r}"
    assert good.json()["user"] == "grace", "set REMOTE_USER to the token's user"
    for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t0k3n"}):
        bad = barelab.call_wsgi(app, headers=sent)
        assert bad.status_code == 401, f"{sent} got {bad.status!r}, expected a 401"
        assert bad.header("WWW-Authenticate") == 'Bearer realm="api"', "send the challenge"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were still running), and
# remove the report file from the `close()` trap.

# %%
report.unlink()
report.parent.rmdir()
barelab.stop_all()

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
# The header is there, and `hello` never knew. Three details in `add_header` matter more
# than they look, and the traps later in the chapter are about exactly these:
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
# `exc_info` goes unnoticed here, because `hello` never has an error to report; trap 4
# shows what it costs. Typing `validator(...(validator(...)))` around every layer gets old
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
# `stack` is `validator(PoweredBy(validator(hello)))`, and it passed both checks.
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
# To see *when* each line arrives, the client has to watch the socket itself.
# `arrivals(server, path)` sends a GET (with any extra `headers`), reads whatever comes, and
# notes the moment each `tick N` first shows up, in seconds after the request went out.

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
# The numbers are masked in the stored notebook; run the cell yourself to see them: about
# 0, 0.25 and 0.5 seconds. The server sent each line the moment the generator produced it.
#
# ### Trap 1: a middleware that buffers the body
#
# Say you want every response to carry a `Content-Length`, so browsers can show a progress
# bar. You need the body's length before the headers go out, so you read the whole body
# first. Here is that middleware, written the way it usually is:

# %%
def add_content_length(app):
    def middleware(environ, start_response):
        captured = []
        def capture(status, headers, exc_info=None):
            captured[:] = [status, headers]
            return lambda data: None  # (write() is not supported: a second bug)
        body = app(environ, capture)
        try:
            data = b"".join(body)     # waits for the whole body
        finally:
            if hasattr(body, "close"):
                body.close()
        start_response(captured[0], captured[1] + [("Content-Length", str(len(data)))])
        return [data]
    return middleware

ticker_server = barelab.serve(compose(ticker, add_content_length, between=validator),
                              name="ticker")
show_arrivals(arrivals(ticker_server))

# %% [markdown]
# Every line now arrives after half a second, together. For three ticks that is a nuisance;
# for a large CSV export it is the whole file in the server's memory; for a live feed or a
# long poll the response never arrives at all. (It also throws away anything the app
# passes to `write()`, and it loses `exc_info`: three bugs in a dozen lines.)
#
# The fix is to not do it. A middleware that must see the body looks at each chunk as it
# passes and hands it on at once; if it needs the length, it counts while forwarding and
# learns the total at the end, which is exactly what the request logger below does. The
# server, not a middleware, decides how to frame a body of unknown length (chunked, RFC
# 9112 §7.1). Put the plain ticker back:

# %%
ticker_server = barelab.serve(compose(ticker, between=validator), name="ticker")
show_arrivals(arrivals(ticker_server))

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
# opens in `opened` and every cleanup in `cleanups`, so you can check on both.

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
# server stops iterating and calls `close()` on what it got, if there is one. (Only a validator outside the middleware here: the
# inside one would rightly complain that its iterator is never closed.)

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
# came out. Now the class. It is an iterator
# (`__iter__` returns itself, `__next__` hands out one chunk per call) that forwards the
# inner body chunk by chunk; `transform` may change each chunk and `on_chunk` may look at
# it. `close()` closes the inner body exactly once and then runs the `on_close` callbacks.
# An exception from the inner body is kept in `.error` for the logger and re-raised: the
# server decides what a failure means on the wire. If even `iter()` fails, the body's
# `close()` is still owed, so the constructor calls it.

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

    def __next__(self) -> bytes:
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

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            inner = getattr(self._iterable, "close", None)
            _run_all(([inner] if inner is not None else []) + self._on_close)

# %% [markdown]
# `shout`, fixed: the same upper-casing, through `ClosingIterator`. This time both
# validators stay in place, and the same early hang-up is replayed.

# %%
def shout(app):
    def middleware(environ, start_response):
        return ClosingIterator(app(environ, start_response), transform=bytes.upper)
    return middleware

cleanups.clear()
body = compose(report_app, shout, between=validator)(barelab.build_environ(), start_response)
print("first chunk:", next(iter(body)))
body.close()
print("cleanups:", cleanups, "| file closed:", opened[-1].closed)

# %% [markdown]
# The `finally:` ran and the file is closed the moment the server called `close()`, not
# whenever the garbage collector gets there. A second `close()` does nothing, which matters
# because some servers (and some middleware) call it twice:

# %%
body.close()
cleanups

# %% [markdown]
# Still one entry. And the streaming? `barelab.call_wsgi` plays the server and records each
# chunk as a `yield` row, so you can see three separate chunks come through, and the one
# `close()` at the end:

# %%
barelab.call_wsgi(compose(ticker, shout, between=validator)).transcript

# %% [markdown]
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
# is such an app, and a middleware that keeps a reference to the header list and appends to
# it once the app has returned:

# %%
def pusher(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    write(b"pushed with write()\n")
    return []

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
# allowed (PEP 3333: it is "a fatal error to call start_response without the exc_info
# argument if start_response has already been called").

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
# On its own, `fragile` answers a clean 500. Now two wrappers people write. The first has no
# third parameter at all; the second accepts `exc_info` but does not pass it on.

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

# %%
for broken in (two_arguments, drops_exc_info, powered_by):
    call = barelab.call_wsgi(compose(fragile, broken, between=validator), raise_errors=False)
    print(f"{broken.__name__:15}", call.status, "|", repr(call.exception))

# %% [markdown]
# - `two_arguments` turns the app's careful error handling into a `TypeError`: the status
#   the client gets is whatever the server does with a crash, and the log shows a
#   `TypeError` in a middleware instead of the `ConnectionError` that happened.
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
# when the server calls `close()`. Each line is one `RequestRecord`:

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

# %% [markdown]
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
# The newline stays `%0A`, harmless. The status goes into the record as a number, taken
# from the front of the status line:

# %%
#| export
def _status_code(status: str) -> int | None:
    code = status.split(" ", 1)[0]
    return int(code) if code.isdigit() and len(code) == 3 else None

# %%
_status_code("404 Not Found"), _status_code("OK")

# %% [markdown]
# Now the logger. Read it in four parts:
#
# - on the way in, it notes the clock, the method and the path (inner layers may change
#   `environ` later);
# - `logging_start_response` passes everything on, then notes the status, and returns a
#   `write` that counts the bytes before passing them on;
# - `finish` builds the record and stores it (and hands it to a `logging.Logger` if you
#   gave one);
# - the body goes back inside a `ClosingIterator` whose `on_chunk` counts bytes and whose
#   `on_close` calls `finish`. If the app raises before it even returns a body, `finish`
#   runs at once, with the exception's name, and the exception goes on to the server.

# %%
#| export
class RequestLogger:
    """Record every request as a RequestRecord in ``records`` (and to ``logger`` if given)."""

    def __init__(self, app, records=None, logger=None):
        self.app = app
        self.records = [] if records is None else records
        self.logger = logger  # a logging.Logger, or None

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        method, path = environ.get("REQUEST_METHOD", "-"), request_path(environ)
        seen = {"status": None, "bytes": 0}

        def count(chunk):
            seen["bytes"] += len(chunk)

        def logging_start_response(status, headers, exc_info=None):
            write = start_response(status, headers, exc_info)
            seen["status"] = _status_code(status)

            def counting_write(data):
                count(data)
                return write(data)
            return counting_write

        def finish(error=None):
            record = RequestRecord(method, path, seen["status"], seen["bytes"],
                                   time.perf_counter() - started,
                                   environ.get("barelab.request_id"), error)
            self.records.append(record)
            if self.logger is not None:
                self.logger.info("%s", record)

        try:
            body = self.app(environ, logging_start_response)
        except Exception as exc:
            finish(type(exc).__name__)
            raise
        wrapper = ClosingIterator(body, on_chunk=count, on_close=[
            lambda: finish(type(wrapper.error).__name__ if wrapper.error else None)])
        return wrapper

# %% [markdown]
# The status is noted only after the real `start_response` accepted it: if that call raises
# (a bad status, or `exc_info` re-raised because the head was already sent), the record
# keeps the status the client actually got. Try it on the ticker, next to a naive timer that
# stops the clock when the app returns:

# %%
naive = []

def naive_timer(app):
    def middleware(environ, start_response):
        started = time.perf_counter()
        body = app(environ, start_response)
        naive.append(time.perf_counter() - started)
        return body
    return middleware

logger = RequestLogger(compose(ticker, naive_timer, between=validator))
barelab.call_wsgi(compose(logger, between=validator), path="/ticks?fast=no")
print(logger.records[-1])
print(f"the naive timer saw {naive[-1] * 1e3:.3f} ms")

# %% [markdown]
# The logger saw about 500 ms, the real time the client waited; the naive timer saw a few
# microseconds, the time it takes to create a generator. The byte count is the 21 bytes of
# the three lines. The record also works with `write()`, and when the app fails:

# %%
def broken_app(environ, start_response):
    raise ZeroDivisionError("oops")

for app in (pusher, broken_app):
    logger = RequestLogger(compose(app, between=validator))
    barelab.call_wsgi(compose(logger, between=validator), raise_errors=False)
    print(logger.records[-1])

# %% [markdown]
# `pusher`'s 20 bytes all came through `write()`. `broken_app` never chose a status, so the
# record says `-` and names the exception; the server turns it into a 500 (chapter 06). In
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
            if self.header.lower() == "server-timing":  # a list: other metrics may stay
                headers = list(headers) + [(self.header, f"{self.metric};dur={ms:.3f}")]
            else:
                headers = without(headers, self.header) + [(self.header, f"{ms:.3f}ms")]
            return start_response(status, headers, exc_info)

        return self.app(environ, timed_start_response)

# %%
def slow_hello(environ, start_response):
    time.sleep(0.1)
    return hello(environ, start_response)

value = barelab.call_wsgi(compose(slow_hello, ResponseTimer, between=validator)).header(
    "Server-Timing")
metric, duration = value.split(";dur=")
print(f"metric {metric!r}: {float(duration):.0f} ms")

# %% [markdown]
# About 100 ms, the sleep. Now the ticker, which takes half a second:

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
# The `environ` key is `barelab.request_id`: PEP 3333 asks that keys a server or middleware
# adds be lower case and "prefixed with a name that is unique to the defining server or
# gateway". Three requests: one without an ID, one with a good ID, one trying to sneak a
# second header in.

# %%
def show_id(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"app sees {environ['barelab.request_id']}".encode()]

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
# worth having as a function, because you cannot open a browser inside a test:

# %%
#| export
def browser_cors_check(headers, origin: str, credentials: bool = False) -> str:
    """What a browser decides for a response to a CORS request from ``origin`` (Fetch
    standard, "CORS check"): ``"ok"``, or ``"blocked: "`` and the reason."""
    values = header_values(headers, "Access-Control-Allow-Origin")
    if not values:
        return "blocked: no Access-Control-Allow-Origin"
    allowed = ", ".join(values)  # Fetch "get": repeated fields combine into one value
    if allowed == "*" and not credentials:
        return "ok"
    if allowed == "*":
        return "blocked: '*' does not count when the request carries credentials"
    if allowed != origin:
        return f"blocked: Access-Control-Allow-Origin {allowed!r} is not {origin!r}"
    if not credentials:
        return "ok"
    if ", ".join(header_values(headers, "Access-Control-Allow-Credentials")) == "true":
        return "ok"
    return "blocked: credentials need Access-Control-Allow-Credentials: true"

# %% [markdown]
# The comparison is exact: the header must be `*` or the very origin that asked, byte for
# byte, and with credentials (cookies, HTTP auth) only the origin will do. Here is the API
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
# One helper for the rest of the section: send the same request from several origins and
# show, per origin, the status, the two CORS-relevant headers and the browser's verdict.

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
# header's name says "allow origin", so the obvious move is to list both:

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
# Both front ends are blocked. The header holds one origin or `*`; a list is neither, and no
# browser splits it. (Sending two `Access-Control-Allow-Origin` lines fails the same way:
# the check combines them into the same comma list first.) The server must pick **the one
# origin that matched** and echo it:

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

# %%
def varied_on(headers, environ):
    """The request's values of every header that the response's Vary field names."""
    names = [n.strip() for v in header_values(headers, "Vary") for n in v.split(",")]
    return tuple(environ.get("HTTP_" + n.upper().replace("-", "_")) for n in names if n)

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
# `fetch` asks the app behind the cache and keeps `(status, headers, body, varied_on)`,
# closing the body, of course. It is written as a plain function and then attached to the
# class, which is how a class can grow over two cells.

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
# already, `Vary: *` already covers everything, and names are case-insensitive.

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
# ### The `CORS` middleware
#
# Now the real thing. Its settings are checked once, when the stack is built. An allowed
# origin is `scheme://host[:port]` in lower case, with no path: that is how browsers write
# the `Origin` header (Fetch, "origin serialization"), so `"https://app.example/"` with a
# trailing slash, a classic typo, would never match anything, and is refused now rather than
# failing silently later. `"*"` means "any origin" and cannot be combined with credentials.

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

# %% [markdown]
# Three typical mistakes, refused with a message that says what to write instead:

# %%
for bad in ("https://app.example/", "https://App.example", "null"):
    try:
        _cors_origins([bad], credentials=False)
    except ValueError as error:
        print(error)

# %% [markdown]
# (`null` is the `Origin` of sandboxed frames and local files; allowing it lets any of those
# in, so it is refused too.) The class itself is short, because the work is split into
# three pieces:
#
# - `allowed(origin)` gives the `Access-Control-Allow-Origin` value for an origin: the
#   origin itself if it is on the list, `"*"` in any-origin mode, `None` otherwise;
# - `grant(allow)` is the list of headers that grant it;
# - `__call__` hands preflights to `_preflight` (further down) and, for every other request,
#   wraps `start_response` so that `_cors_headers` (next cell) rewrites the app's headers.
#
# Both helpers are plain functions defined after the class; Python looks them up when a
# request arrives, not when the class is defined.

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

    def __call__(self, environ, start_response):
        origin = environ.get("HTTP_ORIGIN")
        if (origin is not None and environ.get("REQUEST_METHOD") == "OPTIONS"
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ):
            return _preflight(self, environ, start_response, origin)
        allow = self.allowed(origin)

        def cors_start_response(status, headers, exc_info=None):
            return start_response(status, _cors_headers(self, headers, allow), exc_info)

        return self.app(environ, cors_start_response)

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
# With `origins="*"` the answer does not depend on `Origin` at all, so it goes out on every
# response, and without `Vary`: exactly the Fetch standard's advice for a fixed value.
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

# %%
#| export
def _preflight(cors: CORS, environ, start_response, origin: str):
    """Answer a CORS preflight (Fetch, "CORS-preflight request") without calling the app."""
    method = environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]
    asked = [h.strip().lower() for h in
             environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",") if h.strip()]
    allow, refusal = cors.allowed(origin), None
    if allow is None:
        refusal = f"origin {origin[:100]!r} is not allowed"
    elif method not in cors.methods and method not in _SAFELISTED_METHODS:
        refusal = f"method {method[:40]!r} is not allowed"
    elif unknown := [h for h in asked if h not in cors.headers]:
        refusal = f"header {unknown[0][:40]!r} is not allowed"
    vary = [] if cors.origins == "*" else [("Vary", "Origin")]
    if refusal is not None:
        body = f"CORS preflight refused: {refusal}\n".encode()
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))] + vary)
        return [body]
    headers = cors.grant(allow) + [("Access-Control-Allow-Methods", ", ".join(cors.methods))]
    if cors.headers:
        headers.append(("Access-Control-Allow-Headers", ", ".join(cors.headers)))
    start_response("204 No Content", headers + [("Access-Control-Max-Age", str(cors.max_age))] + vary)
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
# `Access-Control-Allow-Credentials: true` that goes with each grant.) Now preflights: a
# `DELETE` with an `Authorization` header from each allowed origin, a `PUT` nobody allowed,
# a header nobody allowed, and a stranger.

# %%
def preflight(app, origin, method, headers=""):
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return barelab.call_wsgi(app, "OPTIONS", "/notes", headers=sent)

cors_app = compose(notes_api, api_cors, between=validator)
call = preflight(cors_app, "https://admin.example", "DELETE", "authorization")
print(call.status, "| body:", call.body)
barelab.show_headers(call.headers)

# %% [markdown]
# `204`, no body, no `Content-Type` (the validator insists: a 204 has no content), the
# granted origin, the method and header lists, and the `Max-Age`. The refusals, one line
# each:

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

# %% [markdown]
# The middleware puts it all together. Its settings are checked up front: the realm goes
# inside a quoted string, so no quotes or backslashes; a user-id cannot contain a colon (RFC
# 7617 §2), since the colon separates it from the password. Then, per request: an exempt
# path goes straight to the app; otherwise `authenticate` parses the header, looks up the
# user's digest (or the dummy) and compares in constant time; a failure gets the 401, a
# success reaches the app with the user's name in `environ`.

# %%
#| export
class BasicAuth:
    """HTTP Basic authentication (RFC 7617); sets REMOTE_USER, answers 401 otherwise."""

    def __init__(self, app, users, *, realm="barelab", exempt=()):
        if not re.fullmatch(r"[\x20-\x7e]*", realm) or '"' in realm or "\\" in realm:
            raise ValueError(f"realm must be printable ASCII without quotes or backslashes: {realm!r}")
        if any(":" in user for user in users):
            raise ValueError("a user-id cannot contain ':' (RFC 7617 §2)")
        if any(not path.startswith("/") for path in exempt):
            raise ValueError("exempt paths start with '/'")
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

    def __call__(self, environ, start_response):
        if is_exempt(environ.get("PATH_INFO", ""), self.exempt):
            return self.app(environ, start_response)
        user = self.authenticate(environ.get("HTTP_AUTHORIZATION"))
        if user is None:
            return unauthorized(start_response, self.challenge)
        environ["REMOTE_USER"] = user  # the CGI name for it (RFC 3875 §4.1.11)
        return self.app(environ, start_response)

# %% [markdown]
# On success the user name goes into `environ["REMOTE_USER"]`, the key CGI (and so WSGI)
# has always used for it, so the app, or Flask's `request.remote_user`, can read it. Try a
# wrong password, a right one, an open path and a path that tries to climb out of it:

# %%
def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

guarded = compose(notes_api, partial(BasicAuth, users={"ada": "lovelace"}, exempt=["/health"]),
                  between=validator)
for path, headers in [("/notes", basic("ada", "wrong")), ("/notes", basic("ada", "lovelace")),
                      ("/health", {}), ("/health/../notes", {})]:
    call = barelab.call_wsgi(guarded, path=path, headers=headers)
    print(f"{path:17} {call.status:17} {call.text.strip()}")

# %% [markdown]
# The open path reached the app as `anonymous`; the sneaky one did not. And the whole 401
# as a client sees it, with its challenge:

# %%
call = barelab.call_wsgi(guarded, path="/notes")
print(call.status)
call.headers

# %% [markdown]
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
# Put auth outside CORS and it turns every preflight away before CORS can answer it:

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
# With CORS outside, a 401 from auth also passes back through CORS on its way out, so it
# carries the grant and the page's script can read the 401 and show a login form:

# %%
cors_table(right_order, ["https://app.example"], credentials=True)

# %% [markdown]
# ### Logging inside auth: the 401s vanish
#
# The requests you most want to see in a log are the refused ones: someone is guessing
# passwords. A logger inside auth never hears of them, because auth answers without
# calling it:

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
# The inner logger saw one request, the outer one saw all three, two of them 401s. So
# logging goes **outermost**: it sees every response, including the ones other layers made
# up, and times the whole stack.
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
# A credentialed request from the admin front end, as a browser would send it:

# %%
reply = barelab.http_request(server, "GET", "/notes",
                             headers={"Origin": "https://admin.example",
                                      **basic("ada", "lovelace")})
print(browser_cors_check(reply.headers, "https://admin.example", credentials=True))
reply

# %% [markdown]
# Every layer left its mark: the grant and `Vary: Origin` from CORS, the exposed
# `X-Request-ID`, `X-Response-Time`, and `ada` in the body from auth. Now with `curl`, first
# a preflight (`-X OPTIONS` and two headers), then the real request with `-u` for the
# credentials (`-m 5` makes curl give up after five seconds, should anything hang):

# %%
# !curl -s -i -m 5 -X OPTIONS -H "Origin: https://app.example" -H "Access-Control-Request-Method: DELETE" -H "Access-Control-Request-Headers: authorization" {server.url}notes

# %%
# !curl -s -i -m 5 -u ada:lovelace -H "Origin: https://app.example" {server.url}notes

# %% [markdown]
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
# touch the body at all. Two logs tell the story of these requests. The server's log has
# one line per request, as the server saw it:

# %%
server.log

# %% [markdown]
# And the access log the `RequestLogger` kept, with what only the stack knows: the request
# ID of each request and the 21 bytes of the ticker timed until its `close()`:

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

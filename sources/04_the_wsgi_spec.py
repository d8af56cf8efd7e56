# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 04. The WSGI spec
#
# Chapter 01 called Flask with an `environ` you wrote by hand. This chapter reads the one a
# real server writes, key by key, against the words of PEP 3333. Then it takes the other
# side of the contract (`start_response`, the returned iterable, `close()`), breaks it on
# purpose, and ends with the classic security bug of hand-written WSGI: a file server that
# hands out files it was never meant to.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - read every key of a live `environ`, grouped as PEP 3333 groups them: CGI variables,
#   `HTTP_` headers and `wsgi.*` keys;
# - explain why `PATH_INFO` holds "bytes in a str" and turn a garbled UTF-8 path back into
#   text;
# - use `start_response` with `exc_info`, and say when `close()` is called on the body
#   (always, also when the app fails or the client goes away);
# - wrap any app in `wsgiref.validate.validator` and read what it catches, and what it
#   does not;
# - serve files from a directory without letting `..`, `%2e%2e%2f`, NUL bytes or symlinks
#   reach outside it, with `barelab.built.static_files`.

# %% [markdown]
# ## A request, caught in the act
#
# The fastest way to learn what a server hands an app is to catch it. The app below keeps
# a copy of each `environ` it gets, reads the request body, and answers with one line.
#
# It is wrapped in `validator` from the standard library's `wsgiref.validate`. The
# validator is itself a WSGI app: it checks the `environ` on the way in and everything the
# app gives back on the way out, and raises `AssertionError` at the first thing PEP 3333
# forbids. Every app in Part II runs inside one.

# %%
import barelab
from wsgiref.validate import validator

caught = []

def catch(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    caught.append((dict(environ), body))
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"caught\n"]

server = barelab.serve(validator(catch), name="catch")
server

# %% [markdown]
# Now send it a request with a bit of everything: a POST with a body, a path with an `é`
# in it (percent-encoded, as a browser sends it), a query string with a repeated key, a
# custom header and two `Cookie` lines. `show_raw()` shows the bytes that went out.

# %%
reply = barelab.http_request(
    server, "POST", "/caf%C3%A9/menu?size=large&size=small", body=b"hello",
    headers=[("Content-Type", "text/plain"), ("X-Trace", "abc123"),
             ("Cookie", "theme=dark"), ("Cookie", "lang=en")])
reply.show_raw()

# %% [markdown]
# That request went through a real socket to a real server thread, which parsed it and
# built an `environ`. The app stored it. Here it is as a table, in three groups. A small
# helper does the grouping. Two of the values (the port numbers) change on every run, so
# the helper prints `PORT` for them, and objects are shown by their type.

# %%
def group_of(key):
    return "wsgi.*" if key.startswith("wsgi.") else "HTTP_" if key.startswith("HTTP_") else "CGI"

def environ_table(environ):
    rows = []
    for key in sorted(environ, key=lambda k: ("CGI HTTP_ wsgi.*".split().index(group_of(k)), k)):
        value = environ[key]
        shown = "PORT" if key in ("SERVER_PORT", "REMOTE_PORT") else (
            repr(value) if isinstance(value, (str, bool, tuple))
            else getattr(value, "__name__", type(value).__name__))
        rows.append((group_of(key), key, shown))
    return barelab.show_transcript(rows, columns=("group", "key", "value"))

environ, body = caught[-1]
environ_table(environ)

# %% [markdown]
# Twenty-seven keys for one request. PEP 3333 sorts them into the same groups, in its
# section **"environ Variables"**. The rest of this section walks through them.
#
# ### CGI variables
#
# The keys in capitals without a prefix come from CGI, the 1990s convention for running a
# program per request, whose names WSGI kept on purpose. The ones to know:
#
# - `REQUEST_METHOD` is the method, `SERVER_PROTOCOL` the HTTP version of the request.
# - `SCRIPT_NAME` is the part of the URL that leads *to* the app (empty: the app is
#   mounted at the root), and `PATH_INFO` the part *inside* it. A server that mounts an
#   app at `/shop` moves `/shop` from one to the other.
# - `QUERY_STRING` is everything after the `?`, **still percent-encoded**. `PATH_INFO`,
#   by contrast, is already decoded: `%C3%A9` became two characters. More on that below.
# - `CONTENT_TYPE` and `CONTENT_LENGTH` are the two headers that do **not** get an `HTTP_`
#   prefix (CGI named them first). The validator fails an `environ` that has
#   `HTTP_CONTENT_LENGTH`.
# - `SERVER_NAME`, `SERVER_PORT` and `REMOTE_ADDR` say who is talking to whom.
#
# `REQUEST_URI` and `RAW_URI` are not in PEP 3333. barelab adds them, as gunicorn and
# Werkzeug's server do, so an app can see the target exactly as it arrived.
#
# The spec promises that these keys are enough to rebuild the URL. `wsgiref.util`
# implements its recipe ("URL Reconstruction"):

# %%
from wsgiref.util import request_uri

request_uri(environ)

# %% [markdown]
# ### HTTP_ variables
#
# Every other request header becomes `HTTP_` plus its name in capitals, with `-` turned
# into `_`. So `X-Trace` is `HTTP_X_TRACE`, and `Connection: close`, which barelab's
# client adds, is `HTTP_CONNECTION`:

# %%
{key: value for key, value in environ.items() if key.startswith("HTTP_")}

# %% [markdown]
# Look at `HTTP_COOKIE`. The request had two `Cookie` lines and a dict has room for one
# value, so the server joined them. RFC 9110 §5.3 says repeated fields are joined with
# `", "`, and RFC 6265 §5.4 makes an exception for `Cookie`, which is joined with `"; "`.
# Joining cookies with a comma would corrupt them, and this is the server's job, not the
# app's.
#
# ### wsgi.* variables
#
# The lowercase keys are WSGI's own. `wsgi.version`, `wsgi.url_scheme` and the three
# booleans about threads and processes describe the server. Two of them are the request's
# streams, and one is a helper:
#
# - `wsgi.input` is the request body, a file-like object to `read()`. The app read it in
#   `catch`, exactly `CONTENT_LENGTH` bytes:

# %%
body

# %% [markdown]
# - `wsgi.errors` is a text stream for error messages; barelab turns each line written
#   to it into an entry in `server.log`.
# - `wsgi.file_wrapper` is optional (PEP 3333, "Optional Platform-Specific File
#   Handling"): a class an app may use to send a file efficiently. The static file server
#   at the end of this chapter uses it.
#
# Both streams are not the server's own objects here: the table says `InputWrapper` and
# `ErrorWrapper`. The validator swapped them in to watch every call the app makes. Watch
# it catch one. PEP 3333 ("Input and Error Streams") lets a server refuse to read past
# `CONTENT_LENGTH`, so an app must pass a size to `read()`. Calling it with no size fails
# at once, even on this finished request:

# %%
try:
    environ["wsgi.input"].read()
except AssertionError as error:
    print("AssertionError from the validator:", repr(error))

# %% [markdown]
# The message is empty: the validator's bare `assert_(len(args) == 1)` says nothing more.
# Its traceback would point at that line. Not every check it makes has a friendly message.

# %% [markdown]
# ## Unicode Issues: bytes in a str
#
# The request asked for `/caf%C3%A9/menu`. `%C3%A9` is the two bytes of `é` in UTF-8,
# percent-encoded. The server decoded the percent signs, as CGI requires, and got two
# bytes. Which characters should two bytes become? Look:

# %%
environ["PATH_INFO"]

# %% [markdown]
# `cafÃ©`: the classic *mojibake*, text decoded with the wrong encoding. The server did
# not guess an encoding, and that is the rule. PEP 3333, section **"Unicode Issues"**,
# says every string in `environ` is a *native string* whose characters are all in the
# range U+0000 to U+00FF, one character per byte, which is what decoding with latin-1
# (ISO-8859-1) gives. The bytes from the wire survive untouched. Only the app knows which
# encoding its URLs use, so the app turns them back into bytes and decodes them itself:

# %%
raw = environ["PATH_INFO"].encode("latin-1")
raw, raw.decode("utf-8")

# %% [markdown]
# Encoding with latin-1 can never fail on such a string and gives back exactly the bytes
# that arrived; decoding those with UTF-8 gives `/café/menu`. Frameworks do this for you:
# Werkzeug decodes paths as UTF-8, Django too. A path that is *not* valid UTF-8 (say
# `%FF`) is then the app's problem, and a good app answers it with a 400 or 404 instead of
# a crash. Exercise 1 asks you to write this.
#
# Response headers follow the same rule in the other direction: they are native strings,
# and the server encodes them with latin-1. You will see what happens with `bytes` there
# in a moment.

# %% [markdown]
# ## The start_response() Callable
#
# That covers what comes in. What goes out is set by PEP 3333's section **"The
# start_response() Callable"**:
#
# ```python
# start_response(status, response_headers, exc_info=None) -> write
# ```
#
# - `status` is a str such as `"404 Not Found"`: three digits, a space, a reason phrase.
# - `response_headers` is a **list** of `(name, value)` **tuples of str**. The app must
#   not send "hop-by-hop" headers such as `Connection` or `Transfer-Encoding`: how the
#   bytes travel is the server's business.
# - `exc_info` is for errors, below. The returned `write` is a legacy way to send body
#   bytes; chapter 06 deals with it.
#
# Calling `start_response` does not send anything. PEP 3333 lets the server hold the
# headers until the app produces its first non-empty piece of body, and that gives the app
# a chance to change its mind.
#
# ### exc_info: changing your mind before the headers go out
#
# Say the app has called `start_response("200 OK", ...)` and then hits an error while
# building the body. It may call `start_response` a second time, with an error status and
# `exc_info=sys.exc_info()`. If nothing was sent yet, the new status replaces the old one.
# `call_wsgi` shows each step:

# %%
import sys

def second_thoughts(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        page = {"title": "Menu"}["price"].encode()  # a bug: there is no "price" key
    except KeyError:
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain")], sys.exc_info())
        return [b"Sorry, something broke.\n"]
    return [page]

barelab.call_wsgi(validator(second_thoughts))

# %% [markdown]
# Two `start_response` rows in the transcript, and the response is the 500. Calling it a
# second time *without* `exc_info` is an error (PEP 3333: "it is a fatal error to call
# start_response without the exc_info argument if start_response has already been
# called").
#
# ### ... and when it is too late
#
# Once the first body bytes have gone out, the status line is on the wire and cannot be
# taken back. PEP 3333 then requires `start_response` to **re-raise** the exception it was
# given, into the app. This app sends one line, then fails:

# %%
def too_late(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first line\n"
    try:
        raise ValueError("the second line cannot be computed")
    except ValueError:
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain")], sys.exc_info())
    yield b"never sent\n"

barelab.call_wsgi(validator(too_late), raise_errors=False).transcript

# %% [markdown]
# The `yield` row is the line that went out; the second `start_response` raised the
# `ValueError` right back, so `never sent` was never yielded. What does a client see? Serve
# it and read the raw bytes:

# %%
too_late_server = barelab.serve(validator(too_late))
barelab.raw_exchange(too_late_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# A `200 OK`, one chunk (`b` is 11 in hexadecimal: the length of `first line\n`), then the
# server hung up **without** the final `0\r\n\r\n` chunk that ends a chunked body. The
# status line cannot be changed any more, so an incomplete message is the only honest
# signal left; a client or proxy that sees it knows the response is broken. (The framing
# with chunks is the server's choice, covered in chapter 06; RFC 9112 §7.1 defines it.)
# The server's log has the traceback:

# %%
print(too_late_server.log.errors[-1].message)

# %% [markdown]
# ## The returned iterable, and close()
#
# The body is whatever iterable the app returns: a list, or a generator as above. The
# server iterates it and sends each piece. PEP 3333, section **"Buffering and
# Streaming"**, asks the server not to hold pieces back, so a generator can stream.
#
# Then comes a rule that matters for anything holding a resource (a file, a database
# cursor, a lock): if the iterable has a `close()` method, the server **must** call it
# when the request is done, "whether the request was completed normally, or terminated
# early due to an application error during iteration or an early disconnect of the
# browser" (PEP 3333, "Specification Details"). A generator has `close()`: it raises
# `GeneratorExit` at the paused `yield`, so its `finally:` block runs.
#
# The generator below counts out 50 lines, one every 20 ms, and writes down in `events`
# how it ended: it finished, or `close()` stopped it, and in every case its `finally:`
# ran. `finished` lets a cell wait for that last step. `fail_at` makes it raise at that
# line instead.

# %%
import threading
import time

events = []
finished = threading.Event()

def ticks(fail_at):
    try:
        for n in range(1, 51):
            if n == fail_at:
                raise RuntimeError(f"tick {n} failed")
            yield b"tick %d\n" % n
            time.sleep(0.02)
        events.append("all 50 ticks sent")
    except GeneratorExit:
        events.append("close() stopped the generator early")
        raise
    finally:
        events.append("finally: cleanup ran")
        finished.set()

[len(list(ticks(fail_at=0))), events]

# %% [markdown]
# Iterated to the end in-process, it gives 50 lines and both events. The app around it
# reads `fail_at` from the query string (`?fail=3`; chapter 05 parses query strings
# properly) and returns the generator as its body:

# %%
def ticker(environ, start_response):
    fail_at = int(environ["QUERY_STRING"].partition("fail=")[2] or 0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ticks(fail_at)

ticker_server = barelab.serve(validator(ticker))

# %% [markdown]
# First the happy path over the network: a complete response, and the cleanup ran once.

# %%
events.clear()
reply = barelab.http_request(ticker_server, path="/")
print(reply.status, len(reply.body), "bytes;", events)

# %% [markdown]
# Now make the app fail at line 3. The client got two lines and a cut-off response (the
# same broken framing as before), and the generator's `finally:` still ran:

# %%
events.clear(); finished.clear()
exchange = barelab.raw_exchange(ticker_server, b"GET /?fail=3 HTTP/1.1\r\nHost: x\r\n\r\n")
finished.wait(5)
print(exchange.received.endswith(b"0\r\n\r\n"), events)

# %% [markdown]
# `False`: the response never got its final chunk. The only event is the `finally:` line:
# the generator neither finished nor was stopped by `close()`. It raised, and its cleanup
# ran on the way out.
#
# Last, the client that walks away. The cell opens a socket, sends a request, reads the
# first bytes of the answer and hangs up in the middle of the 50 lines. The server notices
# when its next write fails, stops iterating, and calls `close()`:

# %%
import socket

events.clear(); finished.clear()
with socket.create_connection((ticker_server.host, ticker_server.port)) as sock:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = sock.recv(100)
print(first.split(b"\r\n")[0], "then the client hung up")
finished.wait(5)
events

# %% [markdown]
# `GeneratorExit` arrived at the paused `yield`: that is `close()`. A `try`/`finally` (or
# a `with` block) inside a generator is how a WSGI app releases what it holds, whatever
# happens to the request.

# %% [markdown]
# ## str versus bytes, and the validator
#
# The most common WSGI bug is a type error. The body must be **bytes**, because the
# network carries bytes; the status and headers must be **str**, because PEP 3333 says
# so. Python 2 blurred the two, and tutorials written then still circulate.
#
# Here are four broken apps, one per line, each with one mistake:

# %%
def str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["hello"]

def bytes_header(environ, start_response):
    start_response("200 OK", [("Content-Type", b"text/plain")])
    return [b"hello"]

def forgot_start_response(environ, start_response):
    return [b"hello"]

def no_reason_phrase(environ, start_response):
    start_response("200", [("Content-Type", "text/plain")])
    return [b"hello"]

# %% [markdown]
# `lint` calls an app in-process through the validator and says what it found. The
# validator reports some problems as a `WSGIWarning` instead of an error; `lint` turns
# those into errors too, so nothing slips by.

# %%
import warnings
from wsgiref.validate import WSGIWarning

def lint(app):
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        try:
            barelab.call_wsgi(validator(app))
        except (AssertionError, WSGIWarning) as error:
            return f"{type(error).__name__}: {error}"
    return "passes"

broken = [str_body, bytes_header, forgot_start_response, no_reason_phrase]
barelab.show_transcript([(app.__name__, lint(app)) for app in broken])

# %% [markdown]
# Four catches, each naming the problem. What does a real server make of such an app,
# without a validator in front? barelab's server checks the same rules itself and answers
# with a 500, keeping the reason in its log rather than showing it to the client:

# %%
str_server = barelab.serve(str_body)
print(barelab.http_request(str_server).status_line)
print(str_server.log.errors[-1].message)

# %% [markdown]
# ### What the validator does not catch
#
# The validator is a good smoke detector, not a proof. PEP 3333 ("Other HTTP Features")
# forbids apps to send hop-by-hop headers such as `Connection`, yet:

# %%
def sets_connection(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"hello"]

lint(sets_connection)

# %% [markdown]
# It passes. The check lives in another part of `wsgiref`: its server-side handler, which
# runs an app and writes an HTTP response to any file. Run the same app through
# `wsgiref.handlers.SimpleHandler`, with an in-memory file standing in for the socket:

# %%
import io
from wsgiref.handlers import SimpleHandler

wire, errors = io.BytesIO(), io.StringIO()
SimpleHandler(io.BytesIO(), wire, errors, barelab.build_environ()).run(validator(sets_connection))
print(errors.getvalue().strip().splitlines()[-1])
barelab.show_bytes(wire.getvalue())

# %% [markdown]
# The handler refused the header and answered 500. Notice its status line says
# `HTTP/1.0`: wsgiref is a reference implementation, not a production server. Chapter 05
# runs a whole app on it and compares.

# %% [markdown]
# ## Serving files without leaking the disk
#
# A WSGI app that serves files looks like three lines: take `PATH_INFO`, stick it onto a
# folder, open the file. Those three lines are one of the oldest security holes on the
# web, called **path traversal**. Build a small site in a temporary folder to try it. The
# site lives in `public/`; next to it, *outside* the folder you mean to publish, sits a
# secret.

# %%
import os
import tempfile
from pathlib import Path

workdir = Path(tempfile.mkdtemp(prefix="barelab04-"))
public = workdir / "public"
(public / "css").mkdir(parents=True)
(public / "index.html").write_text("<h1>Welcome</h1>\n", encoding="utf-8")
(public / "css" / "site.css").write_text("h1 { color: teal; }\n", encoding="utf-8")
(public / "menu.txt").write_text("café 2.50\nthé 2.00\n", encoding="utf-8")
(workdir / "secret.txt").write_text("db_password=hunter2\n", encoding="utf-8")
sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))

# %% [markdown]
# Here is the naive file server, as it appears in many tutorials. It strips the leading
# `/` so that `os.path.join` does not treat the path as absolute, and it answers 404 when
# the file cannot be opened.

# %%
def naive_files(environ, start_response):
    path = os.path.join(public, environ["PATH_INFO"].lstrip("/"))
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [data]

naive_server = barelab.serve(validator(naive_files))
print(barelab.http_request(naive_server, path="/menu.txt").text)

# %% [markdown]
# It works. Now ask for a file one folder *up*. A browser or `curl` would never send this
# path: they remove `..` segments before sending. So send the bytes yourself with
# `raw_exchange`; an attacker does exactly that. `GET(target)` writes the bytes of such a
# request, so each attack below is one short line.

# %%
def GET(target):
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

barelab.raw_exchange(naive_server, GET(b"/../secret.txt"))

# %% [markdown]
# `db_password=hunter2`, served to anyone who asks. `os.path.join(public, "../secret.txt")`
# is a path that leaves `public/`, and `open` follows it.
#
# You can see the client side of the story with `curl`. By default it removes the `..`
# before sending, like a browser, and gets a 404; with `--path-as-is` it sends the path
# as typed:

# %%
# !curl -s {naive_server.url}../secret.txt
# !curl -s --path-as-is {naive_server.url}../secret.txt

# %% [markdown]
# So "browsers never send `..`" protects nobody. Nor does refusing requests whose target
# contains `..`: the server decodes percent-escapes in `PATH_INFO`, so `%2e%2e%2f` arrives
# at the app as `../`:

# %%
exchange = barelab.raw_exchange(naive_server, GET(b"/%2e%2e%2fsecret.txt"))
barelab.show_bytes(exchange.received.partition(b"\r\n\r\n")[2])

# %% [markdown]
# The secret again, in one chunk of `0x14` = 20 bytes. And one more byte crashes the app
# outright: `%00` decodes to a NUL byte, which `open()` refuses with a `ValueError`, not
# an `OSError`, so the `except` does not catch it:

# %%
print(barelab.raw_exchange(naive_server, GET(b"/%00")).received.split(b"\r\n")[0])
print(naive_server.log.errors[-1].message)

# %% [markdown]
# ## A static file server that stays inside its folder
#
# The fix is not one check but two, at two levels:
#
# ```mermaid
# flowchart TB
#     P["PATH_INFO<br/>(bytes in a str)"] --> T{"as text: UTF-8?<br/>no . or .. segment?<br/>no NUL, backslash,<br/>encoded separator?"}
#     T -- no --> B["400 Bad Request"]
#     T -- yes --> R{"as a file: real path,<br/>symlinks resolved,<br/>still under the root?"}
#     R -- no --> N["404 Not Found"]
#     R -- yes --> F{"regular file?<br/>(a folder: its index.html)"}
#     F -- no --> N
#     F -- yes --> S["200 with Content-Type,<br/>Content-Length, Last-Modified<br/>(or 304 Not Modified)"]
# ```
#
# The text check refuses every path that *spells* a way out. The file check catches the
# ways out that cannot be spelled, such as a symbolic link inside the folder that points
# outside it. Each on its own has holes; together they leave none.
#
# Everything from here on goes into `barelab/built/static_files.py`:

# %%
#| default_exp static_files

# %% [markdown]
# The module opens with its imports and two error classes. It reuses the `HTTPError`
# family from chapter 02, where each refusal carries the status to answer with, and adds
# the two statuses a file server needs.

# %%
#| export
# A static-file WSGI app that serves one folder and nothing outside it. A path is checked
# twice: as text (valid UTF-8, no dot segments, no NUL, backslash or encoded separator),
# then as a file (its real path, with symlinks resolved, must still lie under the root).
import mimetypes
import os
import re
import stat
import time
from datetime import timezone
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

from barelab.built.http_wire import BadRequest, HTTPError, reason_phrase

BLOCK_SIZE = 64 * 1024  # bytes per read when streaming a file
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # no effect on regular files; see _open_file

class NotFound(HTTPError): status = 404            # RFC 9110 §15.5.5
class MethodNotAllowed(HTTPError): status = 405    # RFC 9110 §15.5.6

# %% [markdown]
# ### Check 1: the path as text
#
# `path_segments` turns `PATH_INFO` into a list of names, or refuses it. It decodes the
# path as UTF-8 (the "Unicode Issues" trick), drops empty segments (so `//` and the
# leading `/` vanish), and refuses any segment that could climb out or confuse a
# filesystem. A name that *still* contains `%2e`, `%2f`, `%5c` or `%00` after the server
# decoded it was encoded twice, which is an attack on any layer that decodes again.
# Hidden names such as `.env` are never served.

# %%
#| export
_ENCODED_SPECIAL = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)

def path_segments(path_info: str) -> list[str]:
    """The names in PATH_INFO, or BadRequest/NotFound for a path that could leave the root."""
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadRequest("the path is not UTF-8 (PEP 3333, 'Unicode Issues')") from None
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        if segment in (".", ".."):
            raise BadRequest(f"the path has a {segment!r} segment (RFC 3986 §5.2.4)")
        if "\0" in segment or "\\" in segment or _ENCODED_SPECIAL.search(segment):
            raise BadRequest("the path has a NUL, a backslash or a doubly encoded character")
    if any(segment.startswith(".") for segment in segments):
        raise NotFound("hidden files are not served")
    return segments

# %% [markdown]
# Feed it the attacks from above, and a few more. `attempt` shows a result or the
# exception, so one table holds them all. The backslash matters on Windows, where it
# separates folders; the encoded `..` is what a server that does *not* decode `PATH_INFO`
# would pass on.

# %%
def attempt(function, *args):
    try:
        return repr(function(*args))
    except Exception as error:
        return repr(error)

paths = ["/css/site.css", "//css///site.css", "/caf\xc3\xa9", "/../secret.txt",
         "/css/../../secret.txt", "/..\\secret.txt", "/%2e%2e%2fsecret.txt",
         "/menu.txt\x00.html", "/\xff", "/.env"]
barelab.show_transcript([(repr(p), attempt(path_segments, p)) for p in paths])

# %% [markdown]
# Each attack is refused with a status and a reason. `/cafÃ©` is the mojibake form of
# `/café` that a server puts in `PATH_INFO`, and it comes out as the real word; `\xff`
# alone is not UTF-8, so that path is a 400.
#
# ### Check 2: the path as a file
#
# Now build the file path and ask the operating system where it *really* points.
# `os.path.realpath` follows every symbolic link and removes every `..`; the result must
# still lie inside the root (also resolved, in case the root itself is reached through a
# link). `os.path.commonpath` compares whole path components, so a sibling folder named
# `public-old` does not count as inside `public`.

# %%
#| export
def resolve_under(root: str, segments: list[str]) -> str:
    """The real path of root/segments; NotFound if it lies outside the real root."""
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, *segments))
    if os.path.commonpath([real_root, candidate]) != real_root:
        raise NotFound("the path leads outside the served folder")
    return candidate

# %% [markdown]
# To see why the second check is needed, plant a symbolic link inside `public/` that
# points at the secret. As text, `/leak.txt` is a perfectly innocent path; as a file, it
# resolves outside the root and is refused:

# %%
(public / "leak.txt").symlink_to(workdir / "secret.txt")
print(path_segments("/leak.txt"))
attempt(resolve_under, str(public), ["leak.txt"])

# %% [markdown]
# The naive server, by the way, serves it happily:

# %%
barelab.http_request(naive_server, path="/leak.txt").text

# %% [markdown]
# ### Headers: type, length, date
#
# A file's response carries three facts about it. **Content-Type** comes from the file
# name through `mimetypes`. A `MimeTypes()` object of its own uses only Python's built-in
# table, so the answer does not depend on the machine's `/etc/mime.types`. Text gets
# `charset=utf-8`, the encoding this server assumes its text files use.

# %%
#| export
_TYPES = mimetypes.MimeTypes()  # Python's built-in table only: the same on every machine

def content_type(path: str) -> str:
    """The Content-Type for a file name; text is declared UTF-8."""
    kind = _TYPES.guess_type(path)[0] or "application/octet-stream"
    return kind + "; charset=utf-8" if kind.startswith("text/") else kind

# %%
[content_type(name) for name in ("index.html", "site.css", "menu.txt", "logo.png", "data")]

# %% [markdown]
# **Content-Length** is the file's size, and **Last-Modified** its modification time as
# an HTTP date (RFC 9110 §8.8.2). A browser that has the file already sends that date back
# as `If-Modified-Since`. If the file has not changed since, the answer is **304 Not
# Modified** with no body, and the browser uses its copy (RFC 9110 §13.1.3). The rules
# that decide it:
#
# - a date that does not parse is ignored (the request is then answered in full);
# - `If-None-Match` takes precedence over `If-Modified-Since`. This server sends no
#   `ETag`, so only `If-None-Match: *` ("any version you have") can match;
# - file times have sub-second precision and HTTP dates do not, so compare whole seconds.

# %%
#| export
def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)

def not_modified(environ: dict, mtime: int) -> bool:
    """True if the client's cached copy is current (RFC 9110 §13.1.2-3, §13.2.2)."""
    if "HTTP_IF_NONE_MATCH" in environ:   # takes precedence; we send no ETag, so only *
        return environ["HTTP_IF_NONE_MATCH"].strip() == "*"
    try:
        since = parsedate_to_datetime(environ.get("HTTP_IF_MODIFIED_SINCE", ""))
    except (TypeError, ValueError):
        return False                      # absent or not a date: ignore it
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return mtime <= since.timestamp()

# %%
stamp = 1_700_000_000
[not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(stamp)}, stamp),
 not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(stamp - 1)}, stamp),
 not_modified({"HTTP_IF_MODIFIED_SINCE": "yesterday"}, stamp),
 not_modified({"HTTP_IF_NONE_MATCH": "*"}, stamp)]

# %% [markdown]
# The same date: fresh. One second older: stale. Garbage: ignored. `*`: fresh.
#
# ### The body: a file, streamed, and always closed
#
# Reading a whole file into memory to return `[data]` works for a menu and fails for a
# video. The body should be read in blocks as the server sends it, and the file must be
# closed however the response ends: exactly the `close()` contract from earlier.
#
# A generator with `with open(...)` inside looks right but has a hole. If the server
# calls `close()` before the first `next()` (say the client vanished at once), a generator
# that never started never runs its `finally`. So the body is a small class whose
# `close()` closes the file no matter what. It also never yields more than the size the
# `Content-Length` promised, even if the file grows meanwhile.

# %%
#| export
class FileChunks:
    """A response body that reads ``file`` in blocks, at most ``size`` bytes in all;
    ``close()`` closes the file, as PEP 3333 requires the server to call it."""

    def __init__(self, file, size: int, block_size: int = BLOCK_SIZE):
        self.file, self.size, self.block_size = file, size, block_size

    def __iter__(self):
        remaining = self.size
        while remaining > 0:
            block = self.file.read(min(self.block_size, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block

    def close(self) -> None:
        self.file.close()

# %%
chunks = FileChunks(open(public / "menu.txt", "rb"), size=9, block_size=4)
print(list(chunks))
chunks.close()
chunks.file.closed

# %% [markdown]
# Blocks of four bytes, cut at the 9-byte limit (`\xc3\xa9` is the `é`), and the file is
# closed. When the server offers `wsgi.file_wrapper`, the app uses it instead. The server
# may then send the file by a faster route, such as the operating system's `sendfile()`;
# its wrapper has the same `close()` duty.
#
# ### The app
#
# A few helpers first, then the app itself. `_plain` answers with a short text message.
# On `HEAD` it sends the same headers and no body (RFC 9110 §9.3.2).

# %%
#| export
def _plain(start_response, status: int, text: str, head: bool, headers=()):
    body = (text + "\n").encode("utf-8")
    start_response(f"{status} {reason_phrase(status)}",
                   [("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))), *headers])
    return [] if head else [body]

# %% [markdown]
# `_open_file` turns a list of segments into an open regular file. A folder yields its
# `index.html`, or a 404 when `index` is `None`. Anything else (a FIFO, a device, a file
# it may not read) is a 404 too. A FIFO is a trap: a plain `open()` on one waits until
# some other program writes to it, which may be never. Opening with `O_NONBLOCK` returns
# at once, and the check after it refuses what is not a regular file.

# %%
#| export
def _open_file(root: str, segments: list[str], index: str | None):
    path = resolve_under(root, segments)
    if os.path.isdir(path):
        if index is None:
            raise NotFound("no index file for this folder")
        path = resolve_under(root, [*segments, index])
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer that never comes
        file = open(path, "rb", opener=lambda p, flags: os.open(p, flags | _NONBLOCK))
    except OSError:
        raise NotFound("no such file") from None
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise NotFound("not a regular file")
    return file

# %% [markdown]
# Next, the two ways a request for an existing path can end. A folder asked for without
# its trailing slash (`/css`) is redirected to `/css/`, so that relative links inside its
# index page work. The `Location` is the app's own prefix (`SCRIPT_NAME`) plus the
# *checked* segments, percent-encoded again, plus the slash and the query. It is never
# copied from the request: copying `//evil.example` would make an *open redirect* to
# another site.

# %%
#| export
def _redirect_to_folder(environ, segments, start_response, head):
    location = environ.get("SCRIPT_NAME", "") + "".join(
        "/" + quote(segment.encode("utf-8"), safe="") for segment in segments) + "/"
    if environ.get("QUERY_STRING"):
        location += "?" + environ["QUERY_STRING"]
    return _plain(start_response, 301, f"see {location}", head, [("Location", location)])

# %% [markdown]
# A file gets a 304 or a 200. `_send_file` takes size and date from the *open* file
# (`os.fstat`), so the numbers describe the bytes that will be sent. `Last-Modified` is
# never later than now, because RFC 9110 §8.8.2.1 forbids dates in the future. For a 304
# or a HEAD it closes the file at once and sends no body, and a 304 carries no
# `Content-Type` or `Content-Length`, as RFC 9110 §15.4.5 advises.

# %%
#| export
def _send_file(environ, start_response, file, head):
    info = os.fstat(file.fileno())
    mtime = int(min(info.st_mtime, time.time()))
    dated = [("Last-Modified", http_date(mtime))]
    if not_modified(environ, mtime):
        file.close()
        start_response("304 Not Modified", dated)
        return []
    start_response("200 OK", [("Content-Type", content_type(file.name)),
                              ("Content-Length", str(info.st_size)), *dated])
    if head:
        file.close()
        return []
    wrapper = environ.get("wsgi.file_wrapper")
    return wrapper(file, BLOCK_SIZE) if wrapper else FileChunks(file, info.st_size)

# %% [markdown]
# `_serve_path` puts the checks in order. It raises an `HTTPError` for every refusal, and
# refuses a path that ends in `/` but names a file (`/menu.txt/`), which would break
# relative links the other way round.

# %%
#| export
def _serve_path(root: str, index, environ, start_response, head: bool):
    path_info = environ.get("PATH_INFO", "")
    segments = path_segments(path_info)
    is_folder = os.path.isdir(resolve_under(root, segments))
    if is_folder and not path_info.endswith("/"):
        return _redirect_to_folder(environ, segments, start_response, head)
    if path_info.endswith("/") and not is_folder:
        raise NotFound("a path ending in / names a folder, and there is none")
    return _send_file(environ, start_response, _open_file(root, segments, index), head)

# %% [markdown]
# And the factory. `static_files(root)` returns a WSGI app. It refuses every method but
# `GET` and `HEAD` with a 405 and an `Allow` header (RFC 9110 §15.5.6), and turns every
# `HTTPError` into a short text answer with its status.

# %%
#| export
def static_files(root, *, index: str | None = "index.html"):
    """A WSGI app serving the files under ``root`` (GET and HEAD), and nothing outside it."""
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise ValueError(f"static_files: {root!r} is not a folder")

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        try:
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed here; use GET or HEAD")
            return _serve_path(root, index, environ, start_response, method == "HEAD")
        except HTTPError as error:
            extra = [("Allow", "GET, HEAD")] if error.status == 405 else []
            return _plain(start_response, error.status, error.message, method == "HEAD", extra)

    return app

# %% [markdown]
# ### The attacks, again
#
# Serve `public/` with the new app, inside the validator, and fetch a real file first.

# %%
files = static_files(public)
files_server = barelab.serve(validator(files), name="files")
barelab.http_request(files_server, path="/menu.txt")

# %% [markdown]
# The type is right, the length is the 21 bytes on disk (each accented letter is two
# bytes in UTF-8), and the date is the file's. Now replay every attack on the wire with
# `raw_exchange`, and read just the status lines:

# %%
attacks = [b"/../secret.txt", b"/%2e%2e%2fsecret.txt", b"/%2e%2e/secret.txt",
           b"/css/..%2f..%2fsecret.txt", b"/..%5csecret.txt", b"/%252e%252e%252fsecret.txt",
           b"/%00", b"/menu.txt%00.html", b"/leak.txt", b"/%ff", b"/.env"]
rows = []
for target in attacks:
    answer = barelab.raw_exchange(files_server, GET(target)).received
    rows.append((target.decode(), answer.split(b"\r\n")[0].decode(),
                 answer.rsplit(b"\r\n\r\n", 1)[-1].decode().strip()))
barelab.show_transcript(rows, columns=("target", "status", "reason"))

# %% [markdown]
# Not one byte of the secret, and not one crash. The doubly encoded one (`%252e` is an
# encoded `%`) reached the app as the text `%2e%2e%2f` and was refused too. The 400s name
# a malformed path; the 404s, for the symlink and the hidden file, do not say what exists.
# And nothing went to the server log as an error:

# %%
files_server.log.errors

# %% [markdown]
# ### Caching, HEAD, methods and folders
#
# A browser fetching `index.html` a second time sends back the date it was given. The
# answer is a 304 with no body:

# %%
first = barelab.http_request(files_server, path="/index.html")
again = barelab.http_request(files_server, path="/index.html",
                             headers=[("If-Modified-Since", first.header("Last-Modified"))])
again.show_raw()

# %% [markdown]
# `HEAD` gets the headers of a `GET`, `Content-Length` included, and no body:

# %%
barelab.http_request(files_server, "HEAD", "/css/site.css")

# %% [markdown]
# Any other method is a 405 that says which methods would work:

# %%
barelab.http_request(files_server, "DELETE", "/index.html")

# %% [markdown]
# And a folder asked for without its slash is redirected, keeping the query string. The
# `Location` is built from checked names, so `//evil.example` would redirect to
# `/evil.example/` (if such a folder existed), never to another host:

# %%
barelab.http_request(files_server, path="/css?v=2")

# %% [markdown]
# A last look at the log: every request the file server answered, with its status.

# %%
files_server.log

# %% [markdown]
# ## Summary
#
# - A live `environ` has three groups of keys (PEP 3333, "environ Variables"): CGI
#   variables (`REQUEST_METHOD`, `SCRIPT_NAME`, `PATH_INFO`, `QUERY_STRING`,
#   `CONTENT_TYPE`, `CONTENT_LENGTH` without the `HTTP_` prefix...), `HTTP_*` headers
#   (repeats joined, `Cookie` with `"; "`), and `wsgi.*` keys (`wsgi.input`, to be read
#   with a size; `wsgi.errors`; `wsgi.file_wrapper`).
# - Strings in `environ` are bytes in a str (PEP 3333, "Unicode Issues"):
#   `environ["PATH_INFO"].encode("latin-1").decode("utf-8")` recovers a UTF-8 path.
#   `PATH_INFO` is already percent-decoded; `QUERY_STRING` is not.
# - `start_response(status, headers, exc_info=None)`: str status with a reason phrase, a
#   list of str tuples, no hop-by-hop headers. With `exc_info` the app may replace the
#   status before the body starts; afterwards `start_response` re-raises, and the client
#   gets a cut-off response.
# - The body is an iterable of **bytes**; its `close()` is always called, also after an
#   app error or a client that went away. Use `try`/`finally` inside generators, and a
#   class when a resource is opened before the first `next()`.
# - `wsgiref.validate.validator` catches str bodies, bytes headers, a missing
#   `start_response` and more; it does not catch hop-by-hop headers.
# - You built `barelab.built.static_files`: `static_files(root, index="index.html")`,
#   which refuses path traversal by text (`path_segments`) *and* by real path
#   (`resolve_under`), streams with `FileChunks` or `wsgi.file_wrapper`, and answers
#   HEAD, 304, 405 with `Allow`, and folder redirects.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it that prints ✅ when
# your answer works.
#
# ### Exercise 1 — the path as text
#
# Write `path_text(environ)` that returns `PATH_INFO` as real text, decoded from UTF-8,
# or `None` when its bytes are not valid UTF-8.

# %% tags=["solution"]
def path_text(environ):
    ### BEGIN SOLUTION
    try:
        return environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    assert path_text(barelab.build_environ("GET", "/caf%C3%A9")) == "/café", \
        "for /caf%C3%A9 expected '/café': encode with latin-1, then decode with UTF-8"
    assert path_text(barelab.build_environ("GET", "/plain")) == "/plain"
    assert path_text(barelab.build_environ("GET", "/%FF")) is None, \
        "the byte 0xFF alone is not UTF-8: return None instead of raising"
    assert path_text(environ) == "/café/menu", "the environ caught at the top of the chapter"

# %% [markdown]
# ### Exercise 2 — pass the validator
#
# Write `greeting`, a WSGI app that answers `200 OK` with the body `héllo` encoded in
# UTF-8, a `Content-Type` that says so, and a correct `Content-Length`. The check runs it
# through `lint` (warnings count as errors) and then through barelab's server.

# %% tags=["solution"]
def greeting(environ, start_response):
    ### BEGIN SOLUTION
    body = "héllo".encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    verdict = lint(greeting)
    assert verdict == "passes", f"the validator says: {verdict}"
    call = barelab.call_wsgi(greeting)
    assert call.body.decode("utf-8") == "héllo", f"the body is {call.body!r}"
    assert "utf-8" in (call.header("Content-Type") or "").lower(), "say charset=utf-8"
    assert call.header("Content-Length") == str(len(call.body)), \
        "Content-Length counts bytes, not characters"
    with barelab.serve(validator(greeting), name="greeting") as greeting_server:
        assert barelab.http_request(greeting_server).text == "héllo"

# %% [markdown]
# ### Exercise 3 — a body that cleans up
#
# Write a class `Countdown` whose instances are WSGI bodies: iterating `Countdown(3, log)`
# yields `b"3\n"`, `b"2\n"`, `b"1\n"`, and its `close()` appends the string `"closed"` to
# the list `log`. The check serves an app returning it, and also calls `close()` on one
# that was never iterated, the case a plain generator gets wrong.

# %% tags=["solution"]
class Countdown:
    ### BEGIN SOLUTION
    def __init__(self, start, log):
        self.start, self.log = start, log

    def __iter__(self):
        for n in range(self.start, 0, -1):
            yield b"%d\n" % n

    def close(self):
        self.log.append("closed")
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    closes = []
    unused = Countdown(5, closes)
    unused.close()
    assert closes == ["closed"], "close() before any iteration must still log 'closed'"

    def countdown_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Countdown(3, closes)

    with barelab.serve(validator(countdown_app), name="countdown") as countdown_server:
        answer = barelab.http_request(countdown_server)
        countdown_server.log  # waits until the server has finished with the request
    assert answer.body == b"3\n2\n1\n", f"the body is {answer.body!r}"
    assert closes == ["closed", "closed"], f"the server's close() was not logged: {closes}"

# %% [markdown]
# ### Exercise 4 — only some files
#
# Write `only_types(app, suffixes)`, a WSGI app that wraps another. It passes a request on
# to `app` when `PATH_INFO` ends with one of `suffixes` (or with `/`, for index pages),
# and answers `404 Not Found` itself otherwise, with a `text/plain` body. Wrap
# `static_files(public)` in it so that only `.html` and `.css` files are served.

# %% tags=["solution"]
def only_types(app, suffixes):
    ### BEGIN SOLUTION
    def guarded(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.endswith("/") or path.endswith(tuple(suffixes)):
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    return guarded
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    site = validator(only_types(static_files(public), (".html", ".css")))
    assert barelab.call_wsgi(site, path="/css/site.css").status_code == 200, "CSS is allowed"
    assert barelab.call_wsgi(site, path="/").body == b"<h1>Welcome</h1>\n", "index pages too"
    assert barelab.call_wsgi(site, path="/menu.txt").status_code == 404, ".txt is not"
    assert barelab.call_wsgi(site, path="/../secret.txt").status_code in (400, 404)

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were running), and
# remove the temporary folder.

# %%
import shutil

shutil.rmtree(workdir)
barelab.stop_all()

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
# ## The contract on one page
#
# [PEP 3333](https://peps.python.org/pep-3333/) is long, but the contract it describes
# fits in one picture. The server calls the app once per request; the app answers through
# two channels, a callback for the status and headers and a return value for the body:
#
# ```mermaid
# sequenceDiagram
#     participant S as Server
#     participant A as App
#     S->>A: app(environ, start_response)
#     A->>S: start_response("200 OK", [("Content-Type", "text/plain")])
#     A-->>S: return an iterable of bytes
#     loop for each piece of the body
#         S->>A: next(iterable)
#         A-->>S: b"..." (the server sends it on)
#     end
#     S->>A: iterable.close(), if it has one
# ```
#
# Every rule in this chapter is about one arrow of that picture. PEP 3333's sections have
# names, not numbers, so the chapter quotes them by name in **bold**: search the PEP for
# the name and you land on the rule.

# %% [markdown]
# ## A request, caught in the act
#
# The fastest way to learn what a server hands an app is to catch it. The app below keeps
# a copy of each `environ` it gets, reads the request body, and answers with one line.
#
# Two details in it come straight from the spec. `CONTENT_LENGTH` "may be empty or
# absent" (PEP 3333, **"environ Variables"**), hence the `or 0`. And `dict(environ)` takes
# a snapshot: the `environ` belongs to the server for the length of the request, so you
# copy what you want to keep.

# %%
import barelab
from wsgiref.validate import validator

caught = []

def catch(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    caught.append((dict(environ), body))
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"caught\n"]

# %% [markdown]
# Before serving it, wrap it in `validator` from the standard library's
# `wsgiref.validate`. The validator is itself a WSGI app that sits between server and
# app: it checks the `environ` on the way in and everything the app gives back on the way
# out, and raises `AssertionError` at the first thing PEP 3333 forbids. Every app in Part
# II runs inside one, so a broken rule shows up as an error instead of a mystery.

# %%
server = barelab.serve(validator(catch), name="catch")
server

# %% [markdown]
# Now send it a request with a bit of everything: a POST with a body, a path with an `é`
# in it (percent-encoded, as a browser sends it), a query string with a repeated key, a
# custom header and two `Cookie` lines. `show_raw()` shows the bytes that went out and
# the bytes that came back.

# %%
reply = barelab.http_request(
    server, "POST", "/caf%C3%A9/menu?size=large&size=small", body=b"hello",
    headers=[("Content-Type", "text/plain"), ("X-Trace", "abc123"),
             ("Cookie", "theme=dark"), ("Cookie", "lang=en")])
reply.show_raw()

# %% [markdown]
# The request is the one you asked for. The answer has a header you did not write:
# `Transfer-Encoding: chunked`. `catch` gave no `Content-Length`, so the server cut the
# body into chunks, each announced by its length in hexadecimal: `7` bytes of
# `caught\n`, then a `0` chunk that says "the end". How the body travels is the server's
# business, not the app's; chapter 06 builds this framing.

# %% [markdown]
# ## The environ, key by key
#
# That request went through a real socket to a real server thread, which parsed it and
# built an `environ`. The app stored it. To read it comfortably, print it as a table in
# the three groups PEP 3333 uses. The first helper names a key's group:

# %%
GROUPS = ("CGI", "HTTP_", "wsgi.*")

def group_of(key):
    if key.startswith("wsgi."):
        return "wsgi.*"
    return "HTTP_" if key.startswith("HTTP_") else "CGI"

[group_of(key) for key in ("PATH_INFO", "HTTP_HOST", "wsgi.input")]

# %% [markdown]
# The second one turns each value into something printable. Two values, the port
# numbers, change on every run, so it prints `PORT` for them. Streams and classes have no
# useful `repr`, so it prints their name instead. `environ_table` then sorts the keys by
# group, and by name within a group, and shows one row per key.

# %%
def shown(key, value):
    if key in ("SERVER_PORT", "REMOTE_PORT"):
        return "PORT"
    if isinstance(value, (str, bool, tuple)):
        return repr(value)
    return getattr(value, "__name__", type(value).__name__)

def environ_table(environ):
    keys = sorted(environ, key=lambda key: (GROUPS.index(group_of(key)), key))
    rows = [(group_of(key), key, shown(key, environ[key])) for key in keys]
    return barelab.show_transcript(rows, columns=("group", "key", "value"))

# %% [markdown]
# Here is the `environ` of the request above. Look for the path: it does not say `café`.

# %%
environ, body = caught[-1]
environ_table(environ)

# %% [markdown]
# Twenty-seven keys for one request: 14 CGI variables, 4 headers and 9 `wsgi.*` keys.
# PEP 3333 describes them in its section **"environ Variables"**, in the same three
# groups. The rest of this part walks through them, and shows each rule doing something.
#
# ### CGI variables
#
# The keys in capitals without a prefix come from CGI, the 1990s convention for running a
# program per request. WSGI kept its names on purpose, so that code written for CGI would
# feel at home. The first ones are plain:
#
# - `REQUEST_METHOD` is the method (`'POST'`), `SERVER_PROTOCOL` the HTTP version the
#   client spoke (`'HTTP/1.1'`).
# - `SERVER_NAME` and `SERVER_PORT` say where the request arrived, `REMOTE_ADDR` who sent
#   it. `SERVER_SOFTWARE` names the server.
#
# `SCRIPT_NAME` and `PATH_INFO` are a pair. Together they make the path of the URL.
# `SCRIPT_NAME` is the part that leads *to* the app, and `PATH_INFO` the part *inside*
# it. Here `SCRIPT_NAME` is empty, because the app is mounted at the root. When a server
# mounts an app under a prefix, it moves that prefix from one key to the other.
# `wsgiref.util.shift_path_info` does exactly that move. `barelab.build_environ` builds
# an `environ` the way a server would, without a socket, so you can try it on
# `/shop/cart`:

# %%
from wsgiref.util import shift_path_info

mounted = barelab.build_environ("GET", "/shop/cart")
moved = shift_path_info(mounted)
moved, mounted["SCRIPT_NAME"], mounted["PATH_INFO"]

# %% [markdown]
# `shop` moved over: an app mounted at `/shop` sees `PATH_INFO = '/cart'`, so it routes
# without knowing where it is mounted, and it prefixes its own links with `SCRIPT_NAME`.
# The file server at the end of this chapter does that for its redirects.
#
# `QUERY_STRING` is everything after the `?`, **still percent-encoded**, and not parsed
# at all. The repeated `size` key is still there twice. Splitting it into pairs is the
# app's job; `urllib.parse` does it (chapter 05 goes further):

# %%
from urllib.parse import parse_qs

environ["QUERY_STRING"], parse_qs(environ["QUERY_STRING"])

# %% [markdown]
# `PATH_INFO`, by contrast, is already percent-decoded: the `%C3%A9` in the request
# became two characters, `Ã©`. That odd pair has its own section below.
#
# `CONTENT_TYPE` and `CONTENT_LENGTH` are the two request headers that do **not** get an
# `HTTP_` prefix: CGI named them first. A server that puts them under `HTTP_` breaks
# every app that looks for the body's length. The validator checks this on the way in.
# Give `catch` an `environ` with the wrong key and see:

# %%
try:
    barelab.call_wsgi(validator(catch), environ={"HTTP_CONTENT_LENGTH": "5"})
except AssertionError as error:
    print("AssertionError:", error)

# %% [markdown]
# The app was never called: the validator refused the `environ` first, and its message
# says which key to use.
#
# Two keys in the table are not in PEP 3333 at all. `REQUEST_URI` and `RAW_URI` are the
# request target exactly as it arrived, percent signs and all; barelab adds them, as
# gunicorn and Werkzeug's development server do. `REMOTE_PORT` is another such extra.
# Servers may add keys; apps must not count on them.
#
# The spec promises that the standard keys are enough to rebuild the URL the client
# asked for. Its section **"URL Reconstruction"** gives the recipe (use `HTTP_HOST` when
# there is one, else `SERVER_NAME` and `SERVER_PORT`), and `wsgiref.util` implements it:

# %%
from wsgiref.util import request_uri

request_uri(environ)

# %% [markdown]
# The `é` is percent-encoded again: `request_uri` quotes `PATH_INFO` back into a valid
# URL, so the result matches what the client sent.
#
# ### HTTP_ variables
#
# Every other request header becomes `HTTP_` plus its name in capitals, with `-` turned
# into `_`. So `X-Trace` is `HTTP_X_TRACE`, and `Connection: close`, which barelab's
# client adds, is `HTTP_CONNECTION`:

# %%
{key: value for key, value in environ.items() if key.startswith("HTTP_")}

# %% [markdown]
# Look at `HTTP_COOKIE`. The request had two `Cookie` lines and a dict has room for one
# value, so the server joined them. The general rule, RFC 9110 §5.3, joins repeated
# fields with a comma. `Cookie` is the exception. A browser must send all its cookies in
# **one** `Cookie` line, separated by `"; "` (RFC 6265 §5.4), so a server that gets two
# lines joins them with `"; "` too; HTTP/2 spells out that rule in RFC 9113 §8.2.3.
# Joined with a comma, `theme=dark, lang=en` would make the value of `theme` read
# `dark, lang=en`. Getting this right is the server's job, not the app's.
#
# ### wsgi.* variables
#
# The lowercase keys are WSGI's own. Five of them describe the server:
#
# - `wsgi.version` is `(1, 0)`. PEP 3333 is WSGI 1.0.1, but it kept the tuple of PEP 333.
# - `wsgi.url_scheme` is `'http'` or `'https'`: the one part of the URL no header carries.
# - `wsgi.multithread`, `wsgi.multiprocess` and `wsgi.run_once` say whether the app may
#   be called from several threads or processes at once, or only once per process (as
#   under CGI). barelab runs one thread per request, so `wsgi.multithread` is `True`.
#
# `wsgi.input_terminated` is not in PEP 3333: it is a later extension, used by Werkzeug
# and Flask, where the server promises that `wsgi.input` ends where the body ends. That
# lets an app read a body sent without a `Content-Length` (in chunks, say).
#
# The other three keys are things the app uses. `wsgi.input` is the request body, a
# file-like object of bytes to `read()`. The app read it in `catch`, exactly
# `CONTENT_LENGTH` bytes:

# %%
body

# %% [markdown]
# `wsgi.errors` is a text stream for error messages, the WSGI version of `stderr`. Where
# the text goes is up to the server; barelab turns each line written to it into an error
# entry in `server.log`. Try it with an app that complains on every request:

# %%
def grumbles(environ, start_response):
    environ["wsgi.errors"].write("the kitchen is out of croissants\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]

grumbles_server = barelab.serve(validator(grumbles), name="grumbles")
barelab.http_request(grumbles_server).text, grumbles_server.log.errors[-1].message

# %% [markdown]
# The client got `ok`; the complaint went to the operator, in the log, and never to the
# client. That is the point of the stream: error details belong to whoever runs the
# server. Flask relies on it: during a request, `app.logger` writes to `wsgi.errors`.
#
# `wsgi.file_wrapper` is optional (PEP 3333, **"Optional Platform-Specific File
# Handling"**): a class an app may use to send a file efficiently. The static file server
# at the end of this chapter uses it.
#
# ### The validator watches the streams too
#
# The table did not say `wsgi.input` was a socket or a file. It said `InputWrapper` and
# `ErrorWrapper`: the validator swapped in wrappers of its own, to watch every call the
# app makes on the streams.
#
# Here is one of its checks. In PEP 3333's table of methods (**"Input and Error
# Streams"**) `read` takes a size: `read(size)`. The PEP adds that a server *should*
# also accept `read()` with no size, but a server that does not is still within the
# spec. So a portable app always passes a size, and the validator, which checks the
# strictest reading, fails a call without one. It fails at once, even on this finished
# request:

# %%
try:
    environ["wsgi.input"].read()
except AssertionError as error:
    print("AssertionError from the validator:", repr(error))

# %% [markdown]
# The message is empty. The validator's check is a bare `assert_(len(args) == 1)`, and
# only its traceback would point at that line. Not every check it makes comes with a
# friendly message, so when the validator fails without words, read the traceback.
#
# ### Where you met these keys before
#
# If you have used Flask, you have read every one of these keys already, through
# Werkzeug's `request` object, which is a view of the `environ`:
#
# | Flask / Werkzeug | comes from |
# |---|---|
# | `request.method` | `REQUEST_METHOD` |
# | `request.script_root`, `request.path` | `SCRIPT_NAME`, `PATH_INFO` (decoded as UTF-8) |
# | `request.query_string`, `request.args` | `QUERY_STRING`, raw and parsed |
# | `request.headers`, `request.cookies` | the `HTTP_*` keys, `CONTENT_TYPE`, `CONTENT_LENGTH` |
# | `request.get_data()` | `wsgi.input`, read up to `CONTENT_LENGTH` |
# | `request.url` | the "URL Reconstruction" recipe |
# | `request.environ` | the dict itself |
#
# So when a Flask route shows a strange path or a missing header, the `environ` is
# where to look.

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
# not guess an encoding, and that is the rule.
#
# PEP 3333 has two sections on this. **"A Note On String Types"** says headers and
# metadata are *native strings*, Python's `str`. **"Unicode Issues"** says every such
# string must contain only the characters U+0000 to U+00FF. That is one character per
# byte, which is exactly what decoding with latin-1 (ISO-8859-1) gives. So the bytes
# from the wire survive untouched, each one dressed up as a character.
#
# Only the app knows which encoding its URLs use. The obvious fix, encoding the string
# back with UTF-8, makes things worse: each of the two characters becomes two bytes of
# its own.

# %%
environ["PATH_INFO"].encode("utf-8")

# %% [markdown]
# Four bytes where the wire had two. The right way is to undo the server's step, then do
# the decoding the server refused to guess. Encode with latin-1 to get the original
# bytes, then decode those with UTF-8:

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
#   bytes travel is the server's business, as the chunks above showed.
# - `exc_info` is for errors, below. The returned `write` is a legacy way to send body
#   bytes; chapter 06 deals with it.
#
# Calling `start_response` does not send anything. The PEP forbids it to: the server must
# hold the status and headers until the app produces its first non-empty piece of body.
# That delay gives the app a chance to change its mind.
#
# ### Calling it twice: an error, unless there was an error
#
# First the wrong way to change your mind. This app calls `start_response` twice, with no
# reason given the second time:

# %%
def changes_its_mind(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"which one?\n"]

barelab.call_wsgi(changes_its_mind, raise_errors=False).transcript

# %% [markdown]
# The second call raised. `call_wsgi`'s `start_response` checks this rule (the validator
# does not): PEP 3333 calls it "a fatal error to call start_response without the exc_info
# argument if start_response has already been called within the current invocation of
# the application".
#
# ### exc_info: changing your mind before the headers go out
#
# The legal way is for errors. Say the app has called `start_response("200 OK", ...)` and
# then hits an exception while building the body. It may call `start_response` a second
# time, with an error status and `exc_info=sys.exc_info()`, the exception it caught. If
# nothing was sent yet, the new status replaces the old one. `call_wsgi` records each
# step:

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
# `call_wsgi` shows a whole call in three parts: the `environ` it built (folded away),
# the transcript of every step, and the response the server would send. Read the
# transcript: two `start_response` rows, the second one carrying the `KeyError` as its
# `exc_info`. The response is the 500. The 200 was never sent, so no client will ever
# know about it.
#
# ### ... and when it is too late
#
# Once the first body bytes have gone out, the status line is on the wire and cannot be
# taken back. For that case PEP 3333 says `start_response` must raise, and should
# re-raise the very exception it was given, straight back into the app. This app sends
# one line, then fails:

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
# `ValueError` right back, so `never sent` was never yielded. The generator died with
# the exception, and `call_wsgi` still called `close()` on it, as a server must. What does a client see? Serve
# it and read the raw bytes:

# %%
too_late_server = barelab.serve(validator(too_late))
barelab.raw_exchange(too_late_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# A `200 OK`, one chunk (`b` is 11 in hexadecimal: the length of `first line\n`), then the
# server hung up **without** the final `0\r\n\r\n` chunk that ends a chunked body
# (RFC 9112 §7.1 defines the chunks). The status line cannot be changed any more, so an
# incomplete message is the only honest signal left. RFC 9112 §8 tells a client that
# sees one to record the response as incomplete, so a browser or a cache will not take
# the half page for the whole. The server's log has the reason:

# %%
print(too_late_server.log.errors[-1].message)

# %% [markdown]
# The server knew the response had started, so it did the only thing left: it closed
# the connection. Chapter 06 writes that logic into a server of your own.

# %% [markdown]
# ## The returned iterable, and close()
#
# The body is whatever iterable the app returns: a list, or a generator as above. The
# server iterates it and sends each piece. PEP 3333, section **"Buffering and
# Streaming"**, forbids the server to hold pieces back, so a generator can stream.
#
# Then comes a rule that matters for anything holding a resource (a file, a database
# cursor, a lock). If the iterable has a `close()` method, the server **must** call it
# when the request is done, "whether the request was completed normally, or terminated
# early due to an application error during iteration or an early disconnect of the
# browser" (PEP 3333, **"Specification Details"**).
#
# A generator has a `close()` method. It raises `GeneratorExit` at the paused `yield`,
# so the generator's `finally:` block runs. The generator below counts out 50 lines, one
# every 20 ms, and writes down in `events` how it ended. `fail_at=3` makes it raise at
# line 3; `fail_at=0` never fails. The server runs it in another thread, so it also sets
# `finished` when its cleanup is done, and a cell can wait for that.

# %%
import threading
import time

events, finished = [], threading.Event()

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

# %% [markdown]
# Try it in-process first. `list()` iterates it to the end, as a server would on a good
# day; look for the number of lines and the order of the events:

# %%
[len(list(ticks(fail_at=0))), events]

# %% [markdown]
# Fifty lines, then the loop ended and `finally:` ran. Now take one line and call
# `close()` yourself, as a server does when the client has gone:

# %%
events.clear()
generator = ticks(fail_at=0)
next(generator), generator.close(), events

# %% [markdown]
# `GeneratorExit` arrived at the paused `yield`, and `finally:` ran. One case slips
# through, and it will matter later in this chapter: a generator that was **never
# started** has no paused `yield` to raise at. Closing it runs nothing at all, not even
# its `finally:`:

# %%
events.clear()
ticks(fail_at=0).close()
events

# %% [markdown]
# An empty list. Keep that in mind for when the resource is opened *before* the
# generator starts.
#
# Now over the network. The app around the generator reads `fail_at` from the query
# string and returns the generator as its body. `partition("fail=")[2]` is whatever
# follows `fail=`, or `""` when there is no such thing; chapter 05 parses query strings
# properly.

# %%
def ticker(environ, start_response):
    fail_at = int(environ["QUERY_STRING"].partition("fail=")[2] or 0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ticks(fail_at)

ticker_server = barelab.serve(validator(ticker))

# %% [markdown]
# First the happy path: a complete response, and the cleanup ran once. (391 bytes is
# nine lines like `tick 1\n` of 7 bytes and forty-one like `tick 10\n` of 8.)

# %%
events.clear()
reply = barelab.http_request(ticker_server, path="/")
print(reply.status, len(reply.body), "bytes;", events)

# %% [markdown]
# Now make the app fail at line 3. Count the ticks that reached the client, check
# whether the body got its final `0` chunk, and read the events:

# %%
events.clear(); finished.clear()
exchange = barelab.raw_exchange(ticker_server, b"GET /?fail=3 HTTP/1.1\r\nHost: x\r\n\r\n")
finished.wait(5)
print(exchange.received.count(b"tick "), exchange.received.endswith(b"0\r\n\r\n"), events)

# %% [markdown]
# Two ticks, then `False`: the response never got its final chunk, the same cut-off as
# `too_late`. The only event is the `finally:` line. The generator neither finished nor
# was stopped by `close()`: it raised, and its cleanup ran on the way out. The server
# still called `close()`, as the rule says, but on a generator that has already ended
# that does nothing.
#
# Last, the client that walks away. The cell opens a socket, sends a request, reads the
# first 100 bytes of the answer (the status line, the headers and a tick or two) and
# hangs up in the middle of the 50 lines. The server notices
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
# The same two events as your own `close()` call in-process: the server did exactly what
# you did by hand. Here are the three endings side by side:
#
# | how the response ended | what the generator saw | `finally:` ran? |
# |---|---|---|
# | all 50 lines sent | the loop ended | yes |
# | the app raised at line 3 | its own exception | yes |
# | the client hung up | `GeneratorExit` from `close()` | yes |
# | closed before the first line | nothing at all | **no** |
#
# In Flask you rarely write these generators yourself: a response's `call_on_close`
# registers a function for Werkzeug to run from `close()`. Underneath, it is this rule.
# A `try`/`finally` (or a `with` block) inside a generator is how a WSGI app releases
# what it holds, whatever happens to the request, as long as the resource is acquired
# inside the generator. The last row is the exception; the file server below runs
# straight into it.

# %% [markdown]
# ## str versus bytes, and the validator
#
# The most common WSGI bug is a type error. The body must be **bytes**, because the
# network carries bytes; the status and headers must be **str**, because PEP 3333 says
# so. Python 2 blurred the two, and tutorials written then still circulate.
#
# Here are four broken apps, each with one mistake. The first two mix up the types:

# %%
def str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["hello"]

def bytes_header(environ, start_response):
    start_response("200 OK", [("Content-Type", b"text/plain")])
    return [b"hello"]

# %% [markdown]
# The other two get the protocol wrong: one never calls `start_response`, the other
# gives a status with no reason phrase.

# %%
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

# %% [markdown]
# Run all four through it, one row per app:

# %%
broken = [str_body, bytes_header, forgot_start_response, no_reason_phrase]
barelab.show_transcript([(app.__name__, lint(app)) for app in broken])

# %% [markdown]
# Four catches, each naming the problem, and each found before a single byte went to a
# client. `forgot_start_response` is caught at the moment the body is iterated: that is
# the last moment the status could still have been set. `no_reason_phrase` is only a
# warning to the validator: HTTP allows an empty reason phrase (RFC 9112 §4), though
# PEP 3333 asks for one. `lint` is stricter.
#
# What does a real server make of such an app, without a validator in front? barelab's
# server checks the same rules itself and answers with a 500, keeping the reason in its
# log rather than showing it to the client:

# %%
str_server = barelab.serve(str_body)
print(barelab.http_request(str_server).status_line)
print(str_server.log.errors[-1].message)

# %% [markdown]
# The client learns only that something broke. The log says what and quotes the rule,
# so the person who runs the server can fix the app.

# %% [markdown]
# ### What the validator does not catch
#
# The validator is a good smoke detector, not a proof. Here is a rule it skips.
#
# A *hop-by-hop* header describes one connection, not the message: `Connection`,
# `Keep-Alive`, `Transfer-Encoding`, `Upgrade` and the like (RFC 9110 §7.6.1). Only the
# server knows whether it will keep the connection open or cut the body into chunks, so
# PEP 3333 forbids apps to send such headers (**"Other HTTP Features"**). Yet:

# %%
def sets_connection(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"hello"]

lint(sets_connection)

# %% [markdown]
# It passes. The check lives in another part of `wsgiref`: its server-side handler,
# which runs an app and writes an HTTP response to any file. `SimpleHandler` takes the
# request body to read, a file to write the response into, a stream for errors and an
# `environ`. Give it in-memory files in place of a socket:

# %%
import io
from wsgiref.handlers import SimpleHandler

wire, errors = io.BytesIO(), io.StringIO()
handler = SimpleHandler(io.BytesIO(), wire, errors, barelab.build_environ())
handler.run(validator(sets_connection))
print(errors.getvalue().strip().splitlines()[-1])

# %% [markdown]
# The handler refused the header and wrote the reason to its error stream. This is what
# it wrote on the "wire" instead:

# %%
barelab.show_bytes(wire.getvalue())

# %% [markdown]
# A 500 with a generic message: the reason stayed in the error stream, for the operator,
# like `wsgi.errors` earlier. Notice the status line says `HTTP/1.0`: `SimpleHandler`
# claims HTTP/1.0 unless told otherwise, one of many signs that wsgiref is a reference
# implementation, not a production server. Chapter 05 runs a whole app on wsgiref and
# compares.

# %% [markdown]
# ## Serving files without leaking the disk
#
# A WSGI app that serves files looks like three lines: take `PATH_INFO`, stick it onto a
# folder, open the file. Those three lines are one of the oldest security holes on the
# web, called **path traversal**. Every framework ships a safe version (Flask's `static/`
# folder, Starlette's `StaticFiles`), and in production a front server such as nginx
# often serves files instead. You build one anyway, because it is the clearest place to
# see why `PATH_INFO` is untrusted input, and later chapters reuse its error classes.
#
# Build a small site in a temporary folder to try it. The
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
# Here is the naive file server, as it appears in many tutorials. It answers 404 when
# the file cannot be opened, and it strips the leading `/` from `PATH_INFO` first. That
# strip is its one nod to safety, because `os.path.join` throws away everything before
# an absolute path:

# %%
os.path.join(public, "/etc/passwd")

# %% [markdown]
# Without the strip, `GET /etc/passwd` would read the system's user list. With it, the
# path stays relative. Here is the whole app:

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

# %% [markdown]
# Serve it, inside the validator as always, and fetch the menu:

# %%
naive_server = barelab.serve(validator(naive_files))
print(barelab.http_request(naive_server, path="/menu.txt").text)

# %% [markdown]
# It works, and the validator has no complaint: every type is right. Path traversal
# breaks no rule of PEP 3333, so no validator will ever catch it.
#
# Now ask for a file one folder *up*. A browser or `curl` would never send this path:
# they remove `..` segments before sending. So send the bytes yourself with
# `raw_exchange`; an attacker does exactly that. `GET(target)` writes the bytes of such a
# request, so each attack below is one short line. Its `Connection: close` asks the
# server to hang up after answering, so `raw_exchange` knows when the answer is over.

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
# So "browsers never send `..`" protects nobody. (Flask's `send_from_directory` exists
# for this reason: it joins paths through Werkzeug's `safe_join`, which refuses them.) Nor does refusing requests whose target
# contains `..`: the server decodes percent-escapes in `PATH_INFO`, so `%2e%2e%2f` arrives
# at the app as `../`. This shows only the body of the answer:

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
# A 500 for a one-byte request. Three lines of code, two holes: it leaks files and it
# crashes on input it did not expect.

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
# outside it. Each has holes on its own; together they close every way out this chapter
# shows, and the tests in `tests/test_static_files.py` throw random paths at them too.
#
# Everything from here on goes into `barelab/built/static_files.py`. The cell below names
# the module; each cell that starts with `#| export` is copied into it when the course is
# built, and every other cell is a demo that stays in the notebook. Chapters 05 and 12
# import `NotFound` and `MethodNotAllowed` from this module.

# %%
#| default_exp static_files

# %% [markdown]
# The module opens with a comment on its design and its imports. Nothing in it is new
# to you except, perhaps, `email.utils`: HTTP dates are the dates of e-mail headers, so
# the standard library writes and parses them there. `BLOCK_SIZE` is how much of a file
# the app reads at a time. `_NONBLOCK` is a flag for opening files, explained where the
# app opens them; Windows has no such flag, hence the `getattr` with a default of 0.

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

# %% [markdown]
# It reuses the `HTTPError` family from chapter 02, where each refusal is an exception
# that carries the status to answer with. Chapter 02 defined `BadRequest` (400); a file
# server also needs 404 and 405:

# %%
#| export
class NotFound(HTTPError): status = 404            # RFC 9110 §15.5.5
class MethodNotAllowed(HTTPError): status = 405    # RFC 9110 §15.5.6


# %% [markdown]
# Each class only sets `status`; the message is the one you pass in:

# %%
NotFound("no such file"), MethodNotAllowed("use GET").status

# %% [markdown]
# The `repr` shows status and message together, which makes the tables below easy to
# read. Later chapters import these two classes from here.
#
# ### Check 1: the path as text
#
# The text check comes in three small pieces, each raising an `HTTPError` for a path it
# refuses. To show results and refusals in one table, `attempt` calls a function and
# returns either what it gave back or the exception it raised:

# %%
def attempt(function, *args):
    try:
        return repr(function(*args))
    except Exception as error:
        return repr(error)

attempt(int, "42"), attempt(int, "forty-two")

# %% [markdown]
# The first piece undoes the "bytes in a str" of `PATH_INFO` with the latin-1 trick from
# **"Unicode Issues"**, then splits the path on `/`. Empty names are dropped, so the
# leading `/`, a trailing `/` and a doubled `//` all vanish.

# %%
#| export
def _decoded_segments(path_info: str) -> list[str]:
    """PATH_INFO as UTF-8 text, split into its non-empty names."""
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadRequest("the path is not UTF-8 (PEP 3333, 'Unicode Issues')") from None
    return [segment for segment in path.split("/") if segment]

# %% [markdown]
# Give it the path a server makes of `//café///menu/`, and a path with the lone byte
# `0xFF`:

# %%
[attempt(_decoded_segments, path) for path in ("//caf\xc3\xa9///menu/", "/\xff")]

# %% [markdown]
# `café` came out as a real word. `\xff` on its own is not UTF-8 in any position, so that
# path is a 400: the client sent something no file name can be.
#
# The second piece looks at one name. It refuses `.` and `..`, the *dot segments* that
# RFC 3986 §5.2.4 resolves away and a filesystem follows. It also refuses a NUL byte, and
# a backslash, which separates folders on Windows. A name that *still* contains `%2e`,
# `%2f`, `%5c` or `%00` after the server decoded it was encoded twice. That is an attack
# on any layer that decodes again, so it is refused too.

# %%
#| export
_ENCODED_SPECIAL = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)

def _check_segment(segment: str) -> None:
    if segment in (".", ".."):
        raise BadRequest(f"the path has a {segment!r} segment (RFC 3986 §5.2.4)")
    if "\0" in segment or "\\" in segment or _ENCODED_SPECIAL.search(segment):
        raise BadRequest("the path has a NUL, a backslash or a doubly encoded character")

# %% [markdown]
# It returns nothing for a good name and raises for a bad one. Four names, one good:

# %%
[attempt(_check_segment, name) for name in ("menu.txt", "..", "..\\secret.txt", "%2e%2e")]

# %% [markdown]
# `None` means the name passed. The third piece, `path_segments`, is the one the app
# calls. It runs the other two, and then refuses hidden names such as `.env`. Those are
# a 404, the answer for a file that is not there, so the client learns nothing about
# what the folder holds.

# %%
#| export
def path_segments(path_info: str) -> list[str]:
    """The names in PATH_INFO, or BadRequest/NotFound for a path that could leave the root."""
    segments = _decoded_segments(path_info)
    for segment in segments:
        _check_segment(segment)
    if any(segment.startswith(".") for segment in segments):
        raise NotFound("hidden files are not served")
    return segments

# %% [markdown]
# Feed it the attacks from above, and a few more, in the form a server puts them in
# `PATH_INFO`: already percent-decoded, bytes as latin-1 characters.

# %%
paths = ["/css/site.css", "//css///site.css", "/caf\xc3\xa9", "/../secret.txt",
         "/css/../../secret.txt", "/..\\secret.txt", "/%2e%2e%2fsecret.txt",
         "/menu.txt\x00.html", "/\xff", "/.env"]
barelab.show_transcript([(repr(p), attempt(path_segments, p)) for p in paths])

# %% [markdown]
# The first three pass, as lists of names. Every attack is refused with a status and a
# reason. Note `/css/../../secret.txt`: it would be easy to resolve the `..` against
# `css` and go on, but then the second `..` climbs out of the root. Refusing every dot
# segment is simpler and leaves nothing to get wrong.
#
# ### Check 2: the path as a file
#
# Now build the file path and ask the operating system where it *really* points.
# `os.path.realpath` follows every symbolic link and removes every `..`; the result must
# still lie inside the root (also resolved, in case the root itself is reached through a
# link). The comparison is the subtle part. A plain string test gets a sibling folder
# wrong:

# %%
sibling = "/srv/public-old/x"
sibling.startswith("/srv/public"), os.path.commonpath(["/srv/public", sibling])

# %% [markdown]
# `startswith` says `public-old` is inside `public`. `os.path.commonpath` compares whole
# path components, and says the two only share `/srv`. So the check uses it:

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
# The first check passed it, the second one stopped it. No text check could have: the
# name `leak.txt` says nothing about where the link points. The naive server, by the
# way, serves it happily:

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

# %% [markdown]
# Five names, from the site's own files to one with no extension at all:

# %%
[content_type(name) for name in ("index.html", "site.css", "menu.txt", "logo.png", "data")]

# %% [markdown]
# A name with no known extension gets `application/octet-stream`, "some bytes": a
# browser downloads it instead of guessing.
#
# **Content-Length** is the file's size. **Last-Modified** is its modification time as
# an HTTP date (RFC 9110 §8.8.2), the format `email.utils` can already write:

# %%
#| export
def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)

# %% [markdown]
# Timestamp 0 is the start of the Unix clock:

# %%
http_date(0)

# %% [markdown]
# The Unix epoch, in the one date format HTTP senders must use. A browser that has the
# file already sends that date back as `If-Modified-Since`. If the file has not changed
# since, the answer is **304 Not Modified** with no body, and the browser uses its copy
# (RFC 9110 §13.1.3). The rules that decide it:
#
# - a date that does not parse is ignored (the request is then answered in full);
# - `If-None-Match` takes precedence over `If-Modified-Since` (RFC 9110 §13.2.2). This
#   server sends no `ETag`, so only `If-None-Match: *` ("any version you have") can match;
# - file times have sub-second precision and HTTP dates do not, so compare whole seconds.

# %%
#| export
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

# %% [markdown]
# Four cached copies of a file last changed at `stamp`, four verdicts:

# %%
stamp = 1_700_000_000
{"same date": not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(stamp)}, stamp),
 "a second older": not_modified({"HTTP_IF_MODIFIED_SINCE": http_date(stamp - 1)}, stamp),
 "not a date": not_modified({"HTTP_IF_MODIFIED_SINCE": "yesterday"}, stamp),
 "If-None-Match: *": not_modified({"HTTP_IF_NONE_MATCH": "*"}, stamp)}

# %% [markdown]
# The same date is fresh, so the browser may keep its copy. One second older is stale.
# Garbage is ignored, which means "send it". `*` is fresh.
#
# ### The body: a file, streamed, and always closed
#
# Reading a whole file into memory to return `[data]` works for a menu and fails for a
# video. The body should be read in blocks as the server sends it, and the file must be
# closed however the response ends: exactly the `close()` contract from earlier.
#
# The app has to open the file *before* it returns: that is how it learns whether to
# answer 200 or 404, and how big the file is. So a generator body gets the file already
# open. Remember the generator that was never started? Here is the same hole with a file
# in it. The server closes the body before the first `next()`, as it does when the
# client vanishes at once:

# %%
def generator_chunks(file):
    with file:
        yield from iter(lambda: file.read(4), b"")

menu = open(public / "menu.txt", "rb")
generator_chunks(menu).close()
print("file closed by close():", menu.closed)
menu.close()

# %% [markdown]
# (`iter(function, b"")` calls `file.read(4)` again and again until it returns `b""`,
# the end of the file: a compact way to read in blocks.)
#
# `False`: the `with` block never started, so nothing closed the file. Under load, that
# is a leaked file descriptor per vanished client, until the process runs out of them.
#
# So the body is a small class whose `close()` closes the file no matter what. It also
# never yields more than the `size` the `Content-Length` promised, even if the file
# grows meanwhile.

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

# %% [markdown]
# Try it with tiny blocks of four bytes and a limit of nine:

# %%
chunks = FileChunks(open(public / "menu.txt", "rb"), size=9, block_size=4)
print(list(chunks))
chunks.close()
chunks.file.closed

# %% [markdown]
# Blocks of four bytes, cut at the 9-byte limit (`\xc3\xa9` is the `é`, split across two
# blocks, which is fine for bytes), and the file is closed. A `FileChunks` that is never
# iterated closes its file just the same, because `close()` does not depend on the
# iteration having started.
#
# When the server offers `wsgi.file_wrapper`, the app uses it instead. The server may
# then send the file by a faster route, such as the operating system's `sendfile()`; its
# wrapper has the same `close()` duty.
#
# ### The app, one helper at a time
#
# Five small helpers, then the app itself. Each helper is shown working right after it
# is defined. The helpers take `start_response` like an app does, so a stand-in that
# prints its arguments lets you see what they would send:

# %%
def print_start(status, headers, exc_info=None):
    print(status, headers)

print_start("200 OK", [("Content-Type", "text/plain")])

# %% [markdown]
# `_plain` answers with a short text message. It always sends `Content-Length`; on `HEAD`
# it sends the same headers and no body (RFC 9110 §9.3.2).

# %%
#| export
def _plain(start_response, status: int, text: str, head: bool, headers=()):
    body = (text + "\n").encode("utf-8")
    start_response(f"{status} {reason_phrase(status)}",
                   [("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))), *headers])
    return [] if head else [body]

# %% [markdown]
# Ask it for a 404. The printed line is what it passed to `start_response`; the list
# below it is the body it returned:

# %%
_plain(print_start, 404, "no such file", head=False)

# %% [markdown]
# The status line gets its reason phrase from chapter 02's `reason_phrase`, and the
# length is 13: twelve characters and the newline.
#
# `_open_file` turns a list of names into an open regular file. A folder yields its
# `index.html`, or a 404 when `index` is `None`. Anything else (a FIFO, a device, a file
# it may not read) is a 404 too. A FIFO, a "named pipe", is a trap: a plain `open()` on
# one waits until some other program writes to it, which may be never, and the request
# hangs with it. Opening with `O_NONBLOCK` returns at once, and the check after it
# refuses what is not a regular file. The `opener=` argument of `open` is how you add
# such a flag: `open` calls it with the path and its own flags, and wants a file
# descriptor back.

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
# The root folder gives its `index.html`:

# %%
with _open_file(str(public), [], "index.html") as file:
    print(file.read())

# %% [markdown]
# The `with` block closes it again. Now the refusals: a folder with no index, a file that is not there, and a FIFO made
# just for the occasion. Each answer comes back at once, the FIFO's included:

# %%
os.mkfifo(public / "pipe")
[attempt(_open_file, str(public), ["css"], None),
 attempt(_open_file, str(public), ["nope.txt"], "index.html"),
 attempt(_open_file, str(public), ["pipe"], "index.html")]

# %% [markdown]
# Next, the two ways a request for an existing path can end. A folder asked for without
# its trailing slash (`/css`) is redirected to `/css/`, so that relative links inside its
# index page work. The `Location` is the app's own prefix (`SCRIPT_NAME`) plus the
# *checked* names, percent-encoded again, plus the slash and the query. It is never
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
# Here is `SCRIPT_NAME` paying off. Pretend the file server is mounted at `/static`, the
# way `shift_path_info` mounted the shop earlier:

# %%
request = barelab.build_environ("GET", "/css", query="v=2")
request["SCRIPT_NAME"] = "/static"
_redirect_to_folder(request, ["css"], print_start, head=False)

# %% [markdown]
# The `Location` is `/static/css/?v=2`: the full path as the browser knows it, although
# the app itself only ever saw `/css`. Had it built the `Location` from `PATH_INFO`
# alone, the browser would have gone to `/css/`, outside the mount, and got a 404 from
# some other app.
#
# A file gets a 304 or a 200. `_send_file` takes size and date from the *open* file
# (`os.fstat`), so the numbers describe the bytes that will be sent. `Last-Modified` is
# never later than now, because RFC 9110 §8.8.2.1 forbids dates in the future. For a 304
# or a HEAD it closes the file at once and sends no body. A 304 carries no
# `Content-Type` or `Content-Length`: RFC 9110 §15.4.5 asks a 304 to leave out such
# metadata, since the client has the file already.

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
# Call it with an empty `environ`: no cached copy, and no `wsgi.file_wrapper`, so the
# body is a `FileChunks`:

# %%
menu_body = _send_file({}, print_start, open(public / "menu.txt", "rb"), head=False)
print(type(menu_body).__name__, b"".join(menu_body))
menu_body.close()

# %% [markdown]
# A 200 with the three headers, and the 21 bytes of the menu.
#
# `_serve_path` puts the checks in order: text first, then file, then redirect or send.
# It raises an `HTTPError` for every refusal. It also refuses a path that ends in `/`
# but names a file (`/menu.txt/`), which would break relative links the other way round.

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
# Try the odd case, a file asked for as if it were a folder:

# %%
attempt(_serve_path, str(public), "index.html", barelab.build_environ("GET", "/menu.txt/"),
        print_start, False)

# %% [markdown]
# A `NotFound`, raised before anything was sent. Turning it into a response is the last
# job, and it belongs to the app.
#
# `static_files(root)` returns that app. It refuses every method but `GET` and `HEAD`
# with a 405 and an `Allow` header (RFC 9110 §15.5.6), and turns every `HTTPError` into a
# short text answer with its status. A root that is not a folder is a mistake in your
# code, not in a request, so it raises at once, before any server starts.

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
# bytes in UTF-8), and the date is the file's. The body travelled through
# `wsgi.file_wrapper` this time, because barelab's server offers one. Now replay every attack on the wire with
# `raw_exchange`. Each one tries a different disguise:
#
# - `..` plain, percent-encoded (`%2e` is `.`, `%2f` is `/`), and mixed with a real folder;
# - `%5c`, a backslash, which is a folder separator on Windows;
# - `%252e`, encoded twice (`%25` is `%`), for a layer that decodes a second time;
# - `%00`, the NUL byte that crashed the naive server, alone and as a fake extension;
# - `/leak.txt`, the symlink; `/%ff`, bytes that are not UTF-8; `/.env`, a hidden file;
#   and `/pipe`, the FIFO.
#
# The table keeps just the status line and the body, which gives the reason:

# %%
attacks = [b"/../secret.txt", b"/%2e%2e%2fsecret.txt", b"/%2e%2e/secret.txt",
           b"/css/..%2f..%2fsecret.txt", b"/..%5csecret.txt", b"/%252e%252e%252fsecret.txt",
           b"/%00", b"/menu.txt%00.html", b"/leak.txt", b"/%ff", b"/.env", b"/pipe"]
rows = []
for target in attacks:
    answer = barelab.raw_exchange(files_server, GET(target)).received
    rows.append((target.decode(), answer.split(b"\r\n")[0].decode(),
                 answer.rsplit(b"\r\n\r\n", 1)[-1].decode().strip()))
barelab.show_transcript(rows, columns=("target", "status", "reason"))

# %% [markdown]
# Not one byte of the secret, and not one crash. The doubly encoded one (`%252e` is an
# encoded `%`) reached the app as the text `%2e%2e%2f` and was refused too. The 400s are
# for paths no file can have. The 404s, for the symlink, the hidden file and the FIFO,
# are the answer a missing file gets. And nothing went to the server log as an error:
# every refusal was a planned answer, not a crash.

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
# Only `Last-Modified` came from the app; `Date`, `Server` and `Connection` are the
# server's. `HEAD` gets the headers of a `GET`, `Content-Length` included, and no body:
# it asks "what would you send?", so the length is that of the body it did not send.

# %%
barelab.http_request(files_server, "HEAD", "/css/site.css")

# %% [markdown]
# Any other method is a 405. RFC 9110 §15.5.6 requires it to carry an `Allow` header
# that lists the methods that would work:

# %%
barelab.http_request(files_server, "DELETE", "/index.html")

# %% [markdown]
# And a folder asked for without its slash is redirected, keeping the query string. The
# `Location` is built from checked names, so `//evil.example` would redirect to
# `/evil.example/` (if such a folder existed), never to another host:

# %%
barelab.http_request(files_server, path="/css?v=2")

# %% [markdown]
# A last look at the log: every request the file server answered, with its status and
# the size of the body it sent. Each attack is one line with a 400 or a 404, which is
# what an operator wants to see, and the 304 and the HEAD sent `0B`.

# %%
files_server.log
# %% [markdown]
# ## Summary
#
# - A live `environ` has three groups of keys (PEP 3333, **"environ Variables"**). CGI
#   variables: `REQUEST_METHOD`, `SCRIPT_NAME` + `PATH_INFO` (the path, split at the
#   mount point), `QUERY_STRING`, and `CONTENT_TYPE` / `CONTENT_LENGTH` without the
#   `HTTP_` prefix. `HTTP_*` headers, repeats joined, `Cookie` with `"; "`. And `wsgi.*`
#   keys: `wsgi.input` (read it with a size), `wsgi.errors` (the operator's log),
#   `wsgi.file_wrapper`, and five that describe the server.
# - Strings in `environ` are bytes in a str (**"Unicode Issues"**):
#   `environ["PATH_INFO"].encode("latin-1").decode("utf-8")` recovers a UTF-8 path.
#   `PATH_INFO` is already percent-decoded; `QUERY_STRING` is not.
# - `start_response(status, headers, exc_info=None)` takes a str status with a reason
#   phrase and a list of str tuples, with no hop-by-hop headers. It sends nothing itself.
#   A second call needs `exc_info`; it replaces the status while nothing is sent, and
#   re-raises afterwards, leaving the client a cut-off response.
# - The body is an iterable of **bytes**. Its `close()` is always called, also after an
#   app error or a client that went away. A generator's `finally:` runs then, except when
#   the generator never started, so a resource opened *before* the body starts needs a
#   class with its own `close()`.
# - `wsgiref.validate.validator` catches str bodies, bytes headers, a missing
#   `start_response`, `HTTP_CONTENT_LENGTH` and `read()` without a size. It does not
#   catch hop-by-hop headers, a second `start_response`, or any security bug.
# - You built `barelab.built.static_files`: `static_files(root, index="index.html")`,
#   which refuses path traversal by text (`path_segments`) *and* by real path
#   (`resolve_under`), streams with `FileChunks` or `wsgi.file_wrapper`, and answers
#   HEAD, 304, 405 with `Allow`, and folder redirects that respect `SCRIPT_NAME`.

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

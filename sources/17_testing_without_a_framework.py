# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 17. Testing without a framework
#
# Every framework ships a test client: Flask's `app.test_client()`, Starlette's
# `TestClient`, Django's `Client`. Each one calls the app directly, with no server and no
# socket, and hands back a response a test can check. In this chapter you build one that
# works for *any* WSGI or ASGI app, then a tiny pytest-style runner to drive it, and then you
# run the very same tests, HTTP and WebSocket, over a real socket against the servers you
# wrote in chapters 06, 13 and 15.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - explain what an in-process test client is: a server's half of PEP 3333 or of the ASGI
#   spec, played from a function call, plus a client's half (cookies, JSON, forms);
# - call a WSGI app the way a server does (environ, `start_response`, the body iterable,
#   `close()`) and check it with `wsgiref.validate` on the way;
# - run an ASGI app from a notebook cell on a private event loop in a worker thread, and
#   say why `asyncio.run` in a cell fails;
# - keep cookies between requests the way RFC 6265 says, stream a response chunk by chunk,
#   run the lifespan around a test session, and hold a WebSocket conversation;
# - write a test runner of about 70 lines, with fixtures, and run one set of tests, HTTP and
#   WebSocket, in-process and over the network, and explain the differences you see.

# %% [markdown]
# ## Why call the app directly?
#
# A test could start a server, make real HTTP requests and read the answers. That works,
# and this chapter ends by doing exactly that. But it costs something: a port, a thread, the
# bytes on the wire, and a server whose own behaviour gets mixed into every test. When what
# you want to test is *the app*, you can skip all of that. Chapter 01 showed the trick: an
# app is one callable, so a test can call it.
#
# ```mermaid
# flowchart LR
#     subgraph "over a socket"
#         T1["test"] --> C1["client"] -- "bytes" --> S1["server"] --> A1["app"]
#     end
#     subgraph "in-process"
#         T2["test"] --> C2["test client<br/>(client + server's half)"] -- "environ / scope" --> A2["app"]
#     end
# ```
#
# The test client on the right plays two parts at once. Towards the test it is an HTTP
# client: `client.get("/hello")`, `response.json()`, a cookie jar. Towards the app it is the
# server: it builds the `environ` or the `scope`, and it follows the spec's rules about
# `start_response`, `close()`, `http.disconnect` and the rest. It never turns anything into
# bytes.
#
# `barelab.call_wsgi` already does the server's part, with a transcript. It answers one
# question per call, though. A test wants more: to log in on one request and find the cookie
# on the next, to read a stream piece by piece, to talk over a WebSocket. Here is where we
# start from:

# %%
import barelab

def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Hello, test!\n"]

call = barelab.call_wsgi(hello_app, "GET", "/")
call.status, call.body

# %% [markdown]
# That is already a test in disguise: `assert call.status == "200 OK"`. Everything in this
# chapter grows from that one call. Notice what it hands back, though: the status is the
# string PEP 3333 uses, `"200 OK"`, and the body is raw bytes. A test would rather compare
# a number and read text, and that difference in comfort is most of what a test client adds.
#
# ## A map of the client
#
# The test client is about a dozen small parts. Before you build any of them, here is how
# they fit together. Follow one call, `client.get("/hello")`, from left to right:
#
# ```mermaid
# flowchart LR
#     T["your test"] -- "client.get('/hello')" --> B["① BaseClient<br/>build_request + CookieJar"]
#     B -- "Request" --> O{"open_stream"}
#     O -- "WSGI app" --> W["② WSGIExchange<br/>environ, start_response"]
#     O -- "ASGI app" --> P["③ Portal: a loop in a thread<br/>ASGIExchange, Lifespan, WebSocketSession"]
#     W --> R["④ StreamingResponse<br/>status_code, headers, text, json()"]
#     P --> R
#     R --> T
#     X["⑤ run_tests + fixtures"] -.->|calls| T
# ```
#
# 1. **BaseClient** turns `get("/hello", params=...)` into a `Request`: method, path,
#    query, headers, body. Its **CookieJar** adds the cookies earlier answers set.
# 2. For a **WSGI** app, a `WSGIExchange` plays the server: it builds the environ, passes
#    `start_response`, reads the body iterable and calls `close()`.
# 3. For an **ASGI** app, a **Portal** runs the app on an event loop in a thread of its
#    own, and an `ASGIExchange` passes messages across. The same portal carries the
#    lifespan and WebSocket conversations.
# 4. Either way, the test gets a **Response** back, read through the names httpx uses.
# 5. Last, a small **test runner** calls your `test_*` functions with a client, and a
#    `SocketClient` swaps the in-process half for a real socket, for requests and for
#    WebSockets alike.
#
# The chapter builds these in a different order from the arrows: first the ends a test
# touches (④ the response and ① the request), then the two middles (② and ③), then ⑤.
# Each section starts by saying where it sits on this map.
#
# ## The module
#
# The client goes into one module, `barelab/built/testing.py`. It is not a toy: chapter 18
# tests its framework with it, and chapters 21 to 25 keep using it, so every part has to
# hold up outside this notebook. This cell names the module:

# %%
#| default_exp testing

# %% [markdown]
# The module opens with its plan in a comment (the map above, in words) and the standard
# library modules it needs. Nothing here runs yet; these are the tools the parts below use.
# Two of them are worth a glance now, because they shape the design: `threading` and
# `queue`, which the ASGI half needs to run an app beside the test instead of inside it.

# %%
#| export
# A test client that calls a WSGI or ASGI app in-process, playing the server's part with no
# socket: a request becomes an environ or a scope, the app's answer becomes a Response. ASGI
# apps run on a private event loop in a worker thread (a Portal), because the caller's thread
# may already run one (a notebook kernel does); every wait for that thread has a timeout, so
# a stuck app raises TimeoutError instead of hanging the caller. Cookies persist in a
# CookieJar (RFC 6265, minus what means nothing for one in-process host). A session,
# `with TestClient(app) as client:`, keeps one loop and runs the ASGI lifespan around it.
import asyncio
import inspect
import json as jsonlib
import queue
import re
import threading
import time
import traceback

# %% [markdown]
# The rest of the imports. Half of them come from earlier chapters, so the client reuses
# what you already built instead of writing it again: chapter 09's `Headers`, chapter 11's
# ASGI message checker, chapter 02's reason phrases, and barelab's `build_environ` and
# `build_scope`, which turn a method, a path and headers into a PEP 3333 environ or an ASGI
# scope. Each one is explained where it is first used.

# %%
#| export
from collections import Counter
from contextlib import ExitStack, contextmanager
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urlsplit
from wsgiref.validate import validator

from barelab.built import http_objects
from barelab.built.asgi_types import HTTPResponseChecker, checked_send
from barelab.built.http_wire import reason_phrase
from barelab.calling import build_environ, build_scope
from barelab.client import http_request
from barelab.serving import detect_kind

# %% [markdown]
# One number rules every wait in this module. An app can hang: it waits for a message that
# never comes, or sleeps for an hour. A test that hangs is worse than a test that fails,
# because in a notebook it freezes the kernel. So the client never waits longer than
# `TIMEOUT` seconds for anything, and says what it was waiting for when it gives up.

# %%
#| export
TIMEOUT = 5.0   # seconds any one wait may last before the client gives up on the app

# %% [markdown]
# ## What a test reads: the response
#
# **On the map:** ④, the box the arrows end in. It is the only part a test reads, so it
# comes first.
#
# Start from the end: what should a test get back? Starlette's and httpx's answer has
# become the usual one: an object with `status_code`, `headers`, `content` (bytes), `text`
# and `json()`. This client's `Response` has the same names, so tests read the same in
# every client.
#
# Headers first. Names are case-insensitive (RFC 9110 §5.1) and a name may repeat. Chapter
# 09 built exactly that, `Headers`, a multi-dict that ignores case. Its `getall` returns
# every value; httpx calls the same thing `get_list`, so this subclass adds that name.

# %%
#| export
class Headers(http_objects.Headers):
    """Response fields: chapter 09's case-insensitive multi-dict, plus httpx's get_list."""

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` in order; the only safe way to read Set-Cookie."""
        return self.getall(name)

# %% [markdown]
# Why "the only safe way"? A response that sets two cookies carries two `Set-Cookie`
# lines. Most headers that repeat can be joined with a comma into one value (RFC 9110
# §5.3), but `Set-Cookie` cannot: an `Expires` date holds a comma of its own (RFC 6265 §3).
# Look at what joining would do:

# %%
headers = Headers([("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
                   ("set-cookie", "b=2")])
print(headers["SET-COOKIE"])
print(", ".join(headers.get_list("set-cookie")))
headers.get_list("set-cookie")

# %% [markdown]
# `headers["SET-COOKIE"]` found the first line in any case of the name. Joined with
# commas, the two lines become one string that no one can split back: is `21 Oct 2037
# 07:28:00 GMT` a cookie? `get_list` keeps them apart.
#
# Now the response itself. It holds three facts: the status as a number, the headers in
# the class you just made, and the body as bytes. The body sits behind a property,
# `content`, for a reason the next section makes clear.

# %%
#| export
class Response:
    """What the app answered: ``status_code``, ``headers``, ``content``; ``text``, ``json()``."""

    def __init__(self, status_code: int, headers, content: bytes = b""):
        self.status_code = status_code
        self.headers = Headers(headers)
        self._content = content

    @property
    def content(self) -> bytes:
        return self._content

# %% [markdown]
# The two readings a test wants most. `text` decodes with the charset the `Content-Type`
# names, and UTF-8 if it names none (`errors="replace"`, so a wrong guess shows `�` instead
# of raising inside a test about something else). `json()` parses the body. The `repr`
# adds the reason phrase from chapter 02, so a failing test prints `404 Not Found`, not a
# bare number.

# %%
#| export
def _text(self) -> str:
    charset = re.search(r"charset=\"?([\w.:-]+)", self.headers.get("content-type", ""), re.I)
    return self.content.decode(charset.group(1) if charset else "utf-8", errors="replace")

def _json(self):
    return jsonlib.loads(self.content)

Response.text, Response.json = property(_text), _json
Response.__repr__ = lambda self: f"<Response [{self.status_code} {reason_phrase(self.status_code)}]>"

# %% [markdown]
# A hand-made one, to see the four ways in. The body is Latin-1 on purpose, and the header
# says so, so `text` decodes `é` correctly:

# %%
response = Response(200, [("Content-Type", "text/plain; charset=latin-1")], "café".encode("latin-1"))
response, response.content, response.text

# %% [markdown]
# The `repr` reads like a log line, `content` is the five bytes the app sent (`é` is one
# byte in Latin-1), and `text` is the four characters a person reads. Had the header said
# nothing, `text` would have tried UTF-8 and shown `caf�`: a wrong charset is a real bug
# worth a test, and this is how it would look.
#
# `content` is a property, not a plain attribute, because of what comes next: a response
# whose body has not arrived yet.
#
# ### A body that arrives in pieces
#
# A response can stream: a WSGI generator, several ASGI `http.response.body` messages. A
# test may want to see the pieces as they come, or stop after the first one. So the client
# builds every response as a `StreamingResponse`, which holds an iterator of chunks and a
# function to call when the test is done with it (`on_close`).
#
# The first piece is the state it keeps. `_read` collects the chunks handed out so far and
# `_done` says whether the iterator ran dry. Until it did, `content` refuses to answer:
# returning half a body would make a test pass or fail for the wrong reason.

# %%
#| export
class StreamingResponse(Response):
    """A Response whose body arrives chunk by chunk: iterate ``iter_bytes()`` or ``read()``."""

    def __init__(self, status_code, headers, chunks, on_close):
        super().__init__(status_code, headers)
        self._chunks, self._on_close = chunks, on_close
        self._read, self._done, self.closed = [], False, False

    @property
    def content(self) -> bytes:
        if not self._done:
            raise RuntimeError("the body has not been read: call response.read() first")
        return b"".join(self._read)

# %% [markdown]
# Make one from a list of two chunks and ask for its body too early. The error says what
# to do instead:

# %%
closed = []
streamed = StreamingResponse(200, [], iter([b"one ", b"two"]), closed.append)
try:
    streamed.content
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# `content` refused, and the message names the method to call instead. The response is not
# broken; its body is simply still on its way, and only the test knows whether it wants to
# wait for all of it.
#
# Three methods give the body out. The first, `iter_bytes()`, hands out one chunk at a time
# and keeps a copy of each, so that `content` can answer once the last one has gone by.
# Empty chunks are skipped: an ASGI app may send `body=b""` to say "nothing yet", and a
# test should not have to step over those.

# %%
#| export
def _iter_bytes(self):
    """Each body chunk as the app produced it (empty chunks skipped)."""
    if self.closed:
        raise RuntimeError("the response is closed")
    for chunk in self._chunks:
        if chunk:
            self._read.append(chunk)
            yield chunk
    self._done = True

StreamingResponse.iter_bytes = _iter_bytes

# %% [markdown]
# The other two are short. `read()` runs `iter_bytes()` to the end and returns the whole
# body. `close()` calls `on_close` once, telling it whether the body was read to the end;
# that one boolean is how the client will later tell an ASGI app "the test hung up".

# %%
#| export
def _read_all(self) -> bytes:
    for _ in self.iter_bytes():
        pass
    return self.content

def _close_response(self) -> None:
    if not self.closed:
        self.closed = True
        self._on_close(self._done)

StreamingResponse.read, StreamingResponse.close = _read_all, _close_response

# %% [markdown]
# Now read the same response to its end, then close it, and look at what `on_close`
# heard:

# %%
print(list(streamed.iter_bytes()), streamed.content)
streamed.close()
closed

# %% [markdown]
# The two chunks came out one by one, as the app produced them, and after the last one
# `content` had its answer: the same bytes, joined. `[True]` is what `on_close` heard: the
# response was closed after its body was read to the end. A `False` there would mean the
# test left early, and for an ASGI app that is worth telling: it is the client hanging up.

# %% [markdown]
# ## Cookies that persist
#
# **On the map:** the CookieJar inside ①. It sits between responses and requests: it reads
# `Set-Cookie` from one answer and writes `Cookie` into the next request.
#
# A test logs in with one request and expects to be known on the next. A browser makes
# that work: it stores each cookie a `Set-Cookie` header gives it and sends it back in a
# `Cookie` header on later requests whose path matches. A test client needs the same
# memory, a cookie jar. RFC 6265 says how it behaves, in section 5, in enough detail to
# follow step by step. Four parts matter to a test client.
#
# **Path.** A cookie applies to a path and everything below it. Without a `Path`
# attribute, the default is the request path's "directory" (§5.1.4): a cookie set by
# `/account/login` applies to `/account`.

# %%
#| export
def default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request path, for a cookie without Path."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4: /docs matches /docs, /docs/ and /docs/a, but not /docsearch."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")

# %% [markdown]
# The trap is in the second function. "Starts with" alone would let a `/docs` cookie leak
# to `/docsearch`, a different part of the site:

# %%
print([default_path(p) for p in ("/login", "/account/login", "/a/b/")])
[path_matches(p, "/docs") for p in ("/docs", "/docs/a", "/docsearch", "/")]

# %% [markdown]
# Read the first line as "where would a cookie without `Path` apply?": a login at `/login`
# sets it for the whole site, one at `/account/login` only under `/account`, and `/a/b/`
# keeps its trailing directory. The second line is the matching rule: `/docs` itself and
# anything under it, but not `/docsearch` and not the root.
#
# **Expiry.** `Max-Age` is a number of seconds; `Expires` is a date. When both are given,
# `Max-Age` wins (§5.3, step 3). A time that has already passed means "delete this cookie",
# which is how a server logs you out: `Max-Age=0`, or an `Expires` in the past.
#
# A stored cookie is a small record. `expires` is a Unix time, or `None` for a session
# cookie that lives as long as the client does.

# %%
#| export
class Cookie:
    """One stored cookie: name, value, path, when it expires (None: end of session), secure."""

    def __init__(self, name, value, path="/", expires=None, secure=False):
        self.name, self.value, self.path = name, value, path
        self.expires, self.secure = expires, secure

    def __repr__(self) -> str:
        extra = (" secure" if self.secure else "") + (" expires" if self.expires else "")
        return f"<Cookie {self.name}={self.value} path={self.path}{extra}>"

# %% [markdown]
# `_expiry` turns the two attributes into that one number. The order of the checks *is*
# the rule: `Max-Age` is looked at first, and only a well-formed one counts. A date the
# client cannot parse is ignored, not an error (§5.2.1), so a server's typo never breaks a
# test that was not about dates.

# %%
#| export
def _expiry(attributes: dict, now: float):
    """Max-Age wins over Expires (RFC 6265 §5.3 step 3); either may say "already expired"."""
    if "max-age" in attributes and re.fullmatch(r"-?[0-9]+", attributes["max-age"]):
        return now + int(attributes["max-age"])
    if "expires" in attributes:
        try:
            return parsedate_to_datetime(attributes["expires"]).timestamp()
        except (TypeError, ValueError):
            return None        # §5.2.1: an unparsable date is ignored, not an error
    return None

# %% [markdown]
# **Parsing.** A `Set-Cookie` value is `name=value` and then attributes separated by `;`.
# Attribute names ignore case; a line without `=` in its first part, or with an empty name,
# is ignored whole (§5.2). A `Path` that does not start with `/` counts as no path.
# `Secure` is kept for the next step.

# %%
#| export
def parse_set_cookie(line: str, request_path: str, now: float):
    """A Set-Cookie value read as RFC 6265 §5.2 says, or None where it says ignore it."""
    pair, *rest = line.split(";")
    if "=" not in pair or not pair.split("=", 1)[0].strip():
        return None
    name, value = (part.strip() for part in pair.split("=", 1))
    attributes = {}
    for item in rest:
        key, _, val = item.partition("=")
        attributes[key.strip().lower()] = val.strip()
    path = attributes.get("path", "")
    return Cookie(name, value, path if path.startswith("/") else default_path(request_path),
                  _expiry(attributes, now), "secure" in attributes)

# %% [markdown]
# Four lines a server might send. `now` is fixed at 1000 so the expiry times are easy to
# read: `Max-Age=60` expires at 1060 and wins over the `Expires` date; `Max-Age=0` is
# already over; the last line has no name and is dropped.

# %%
for line in ("user=ada; Path=/; HttpOnly", "theme=dark; max-age=60; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
             "user=; Max-Age=0; Path=/", "=nameless"):
    cookie = parse_set_cookie(line, "/account/login", now=1000)
    print(f"{line!r:70} -> {cookie!r} {'' if cookie is None else cookie.expires}")

# %% [markdown]
# Line by line: `user=ada` has an explicit `Path=/` and no expiry, so it is a session
# cookie (`HttpOnly` is read and dropped, as promised). `theme` expires at 1060, not in
# 2037: `Max-Age` won. The third cookie expires at 1000, which is *now*, so the jar will
# delete it rather than store it. And `=nameless` is `None`: the RFC says ignore it, so the
# parser does not guess.
#
# **The jar.** `CookieJar` is where cookies live between requests. It has two jobs, one
# per direction: `store` reads a response's `Set-Cookie` lines, and `header_for` writes the
# `Cookie` header of the next request.
#
# Three attributes are left out, each for a reason:
#
# - **Domain** says which hosts share a cookie. A test client talks to exactly one host,
#   so every cookie is its cookie.
# - **Secure** means "only over HTTPS". The jar keeps that rule: a `Secure` cookie goes
#   back only when the base URL is `https://`. No bytes travel in-process, so nothing could
#   leak, but a test that passes only because the client ignored `Secure` would pass for an
#   app that is broken in every browser.
# - **HttpOnly** and **SameSite** limit what JavaScript and other sites can do. A test
#   client is neither.
#
# The jar keys its cookies by `(name, path)`: the same name under two paths is two cookies
# (§5.3, step 11). A dict keeps insertion order, which matters later when two cookies have
# paths of the same length and the RFC says "earlier first".

# %%
#| export
class CookieJar:
    """Cookies one client keeps between requests. Domain is ignored: there is one host."""

    def __init__(self):
        self._cookies: dict[tuple[str, str], Cookie] = {}

# %% [markdown]
# `store` parses each line and then does one of three things. An expired cookie is
# removed: that is how a server deletes one. A cookie the jar already has is updated in
# place, so it keeps its position. A new one is added at the end. Lines the parser
# refused (`None`) are skipped without a word, as a browser would.

# %%
#| export
def _store(self, set_cookie_lines, request_path: str) -> None:
    now = time.time()
    for line in set_cookie_lines:
        cookie = parse_set_cookie(line, request_path, now)
        if cookie is None:
            continue
        key = (cookie.name, cookie.path)
        if cookie.expires is not None and cookie.expires <= now:
            self._cookies.pop(key, None)      # how a server deletes a cookie
        elif key in self._cookies:
            self._cookies[key].__dict__.update(cookie.__dict__)   # keeps its place
        else:
            self._cookies[key] = cookie

CookieJar.store = _store

# %% [markdown]
# Store two lines with the same name under two paths, and look inside. The keys show that
# they are two different cookies:

# %%
jar = CookieJar()
jar.store(["user=ada; Path=/", "user=bob; Path=/admin"], "/login")
jar._cookies

# %% [markdown]
# Two entries, `('user', '/')` and `('user', '/admin')`: the second line did not overwrite
# the first, because a cookie is known by its name *and* its path. A jar keyed by name
# alone would have kept only `bob`, and a test of "the admin cookie does not leak to the
# rest of the site" could never fail.
#
# The other direction: which cookies go back with a request to `path`, and in what order.
# Expired ones stay home, `Secure` ones travel only over `https`, and longer paths go
# first, so the most specific `user` above comes before the general one.

# %%
#| export
def _header_for(self, path: str, secure: bool) -> str | None:
    now = time.time()
    live = [c for c in self._cookies.values() if c.expires is None or c.expires > now]
    chosen = [c for c in live if path_matches(path, c.path) and (secure or not c.secure)]
    chosen.sort(key=lambda c: -len(c.path))   # §5.4: longer paths first; stable otherwise
    return "; ".join(f"{c.name}={c.value}" for c in chosen) or None

CookieJar.header_for = _header_for

# %% [markdown]
# Ask for two paths: one under `/admin`, where both cookies match, and the root, where
# only the general one does:

# %%
jar.header_for("/admin/users", secure=False), jar.header_for("/", secure=False)

# %% [markdown]
# `user=bob; user=ada`: the app gets both, most specific first, as the RFC orders them.
# Which one it believes is up to its framework (Werkzeug takes the first, Starlette the
# last), so a stray cookie under a longer path can shadow the one you meant to test.
#
# A test also wants to look into the jar and to put a cookie in it by hand, so the jar
# gets a few dict-like methods: `jar["user"]`, `"user" in jar`, `len(jar)`, `set`, `clear`.
# Lookups go by name only, since that is how a test thinks ("is `user` set?"). When the
# same name sits under two paths, `get` answers with the first one stored.

# %%
#| export
def _jar_set(self, name: str, value: str, path: str = "/") -> None:
    self._cookies[(name, path)] = Cookie(name, value, path)

def _jar_get(self, name: str, default=None):
    return next((c.value for c in self._cookies.values() if c.name == name), default)

def _jar_getitem(self, name: str) -> str:
    value = self.get(name)
    if value is None:
        raise KeyError(name)
    return value

CookieJar.set, CookieJar.get, CookieJar.__getitem__ = _jar_set, _jar_get, _jar_getitem

# %% [markdown]
# The rest are one line each. `__repr__` lists the stored cookies, so printing a client's
# jar in a failing test shows exactly what it holds, paths and all.

# %%
#| export
CookieJar.__contains__ = lambda self, name: self.get(name) is not None
CookieJar.__len__ = lambda self: len(self._cookies)
CookieJar.clear = lambda self: self._cookies.clear()
CookieJar.__repr__ = lambda self: f"CookieJar({list(self._cookies.values())})"

# %% [markdown]
# A fresh jar, now with the other rules in play: three cookies, one of them `Secure`, one
# under `/docs`; then the `Cookie` header for three requests. `print(jar)` uses the new
# `__repr__`:

# %%
jar = CookieJar()
jar.store(["user=ada; Path=/", "token=s3cret; Path=/; Secure", "page=2; Path=/docs"], "/login")
print(jar)
print(jar.header_for("/docs/intro", secure=False))
print(jar.header_for("/docs/intro", secure=True))
print(jar.header_for("/docsearch", secure=False))

# %% [markdown]
# `page=2` comes first for `/docs/intro` because its path is longer; `token` appears only
# over a secure connection; `/docsearch` gets no `page`, thanks to `path_matches`. And a
# logout, as a server writes it (an empty value that expired zero seconds from now), takes
# that cookie out of the jar:

# %%
jar.store(["user=; Max-Age=0; Path=/"], "/logout")
"user" in jar, len(jar)

# %% [markdown]
# `False, 2`: `user` is gone, `token` and `page` stay. Notice that the jar never stored an
# empty `user`: an expired cookie is a deletion, not a value. That is the whole of a
# browser's cookie memory that a test needs.


# %% [markdown]
# ## What a test writes: the request
#
# **On the map:** the rest of ①, `BaseClient`, which turns the keyword arguments a test
# writes into a `Request`.
#
# The other side. A test says `client.post("/login", data={"user": "ada"})` and expects the
# client to fill in everything a real client would. `Request` holds the result: a method, a
# path, a query string (still encoded), header pairs and body bytes. These are exactly the
# pieces of a request line and a head (chapter 02), before anyone turns them into bytes.
#
# One odd line comes first. `json=None` is a real request, with the body `null`, so the
# client cannot use `None` to mean "no JSON given". A private sentinel object, `_NO_JSON`,
# plays that part.

# %%
#| export
_NO_JSON = object()   # "json= was not given": None is a JSON document too

class Request:
    """One request as a client would send it: method, path, query, header pairs, body."""

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body = headers, body

    def __repr__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"<Request {self.method} {self.path}{query} ({len(self.body)} bytes)>"

# %% [markdown]
# A `Request` is plain data; nothing checks it. Its `repr` is one line, which keeps the
# printouts below short:

# %%
Request("GET", "/hello", "name=Ada", [("host", "testserver")], b"")

# %% [markdown]
# The query stays encoded (`name=Ada`), exactly as it would sit after `?` on the wire, and
# the headers are plain pairs, in order. Filling one in by hand is what the client will
# save you from.
#
# A body comes in one of three forms, with httpx's names: `json=` (a Python value, sent as
# JSON), `data=` (a dict sent as an HTML form, `application/x-www-form-urlencoded`) or
# `content=` (bytes or text, sent as given). Each form implies a `Content-Type`.
# `encode_body` turns whichever was given into bytes and that type. Giving two at once is a
# mistake in the test, and it says so instead of picking one.

# %%
#| export
def encode_body(json, data, content) -> tuple[bytes, str | None]:
    """``(body, content_type)`` from exactly one of json=, data= (a form) or content=."""
    given = [name for name, v in (("json", json is not _NO_JSON), ("data", data is not None),
                                  ("content", content is not None)) if v]
    if len(given) > 1:
        raise TypeError(f"give one body: {' and '.join(given)} were both given")
    if json is not _NO_JSON:
        return jsonlib.dumps(json).encode("utf-8"), "application/json"
    if data is not None:
        return urlencode(data, doseq=True).encode("ascii"), "application/x-www-form-urlencoded"
    if isinstance(content, str):
        return content.encode("utf-8"), "text/plain; charset=utf-8"
    return bytes(content or b""), None

# %% [markdown]
# The three forms, then the mistake. Watch the second item of each pair, the
# `Content-Type` that each form implies:

# %%
print(encode_body({"n": [1, 2]}, None, None))
print(encode_body(_NO_JSON, {"user": "ada", "tag": ["a", "b"]}, None))
print(encode_body(_NO_JSON, None, "plain"))
try:
    encode_body({"n": 1}, {"user": "ada"}, None)
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# JSON became compact bytes with `application/json`; the form became `user=ada&tag=a&tag=b`
# with the form type; text became UTF-8 and says so. Note `tag=a&tag=b`: a form field with
# a list value repeats, as a browser sends a multi-select. Raw bytes would come back with
# `None`: the client has no idea what they are, so it claims nothing. The last line is the
# refusal, naming both arguments the test gave.
#
# ### A client that does not care where the app is
#
# Most of a client is the same whether the app is called in-process or reached over a
# socket: turning keyword arguments into a `Request`, and keeping cookies. So that part is a
# base class. Each kind of client then adds one method, `open_stream(request)`, that
# delivers the request and returns a `StreamingResponse`. That split is what lets the last
# part of the chapter run one set of tests both ways.
#
# A client has a *base URL*, by default `http://testserver` (Starlette's choice). Nothing
# listens there; the URL only says what `Host` header to send, what `wsgi.url_scheme` the
# app sees, and whether the connection counts as secure for cookies.

# %%
#| export
class BaseClient:
    """The part of a client that does not care where the app is: building requests from
    keyword arguments, and the cookie jar. Subclasses define ``open_stream(request)``."""

    def __init__(self, base_url: str, headers=(), cookies=None, timeout: float = TIMEOUT):
        parts = urlsplit(base_url)
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.headers = list(headers.items() if hasattr(headers, "items") else headers)
        self.cookies, self.timeout = CookieJar(), timeout
        for name, value in (cookies or {}).items():
            self.cookies.set(name, value)

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

# %% [markdown]
# The constructor takes headers as a dict or as pairs (pairs allow a name twice), and
# seeds the jar from `cookies=`. `host_header` writes the port only when it is not the
# scheme's default, as browsers do:

# %%
[BaseClient(url).host_header() for url in ("http://testserver", "https://example.com:8443")]

# %% [markdown]
# `testserver` alone, because 80 is `http`'s default; `example.com:8443`, because 8443 is
# not `https`'s 443. An app that builds absolute URLs from `Host` sees what a browser
# would have sent.
#
# `build_request` does what a real client does before it sends anything. Read it in four
# steps:
#
# 1. split the query off the path, and append `params=` to it (so `"/a?x=1"` with
#    `params={"y": 2}` becomes `x=1&y=2`);
# 2. encode the body with `encode_body`;
# 3. write the headers: `Host` first (every HTTP/1.1 request carries one, RFC 9112 §3.2),
#    then the client's own and the request's, then `Content-Type` unless the test set one,
#    then `Content-Length` for a body;
# 4. add `Cookie`, from the jar and from a one-off `cookies=` argument, which is sent but
#    not kept.

# %%
#| export
def build_request(self, method, path, *, params=None, headers=None, json=_NO_JSON, data=None,
                  content=None, cookies=None) -> Request:
    """A Request from httpx-style arguments, with Host, Cookie and Content-* filled in."""
    path, _, query = path.partition("?")
    if params:
        query = "&".join(q for q in (query, urlencode(params, doseq=True)) if q)
    body, content_type = encode_body(json, data, content)
    fields = [("host", self.host_header()), *self.headers]
    fields += list(headers.items() if hasattr(headers, "items") else headers or ())
    if content_type and "content-type" not in {name.lower() for name, _ in fields}:
        fields.append(("content-type", content_type))
    if body or method in ("POST", "PUT", "PATCH"):   # RFC 9110 §8.6: say the length
        fields.append(("content-length", str(len(body))))
    jar = self.cookies.header_for(path or "/", secure=self.scheme == "https")
    extra = "; ".join(f"{name}={value}" for name, value in (cookies or {}).items())
    if jar or extra:
        fields.append(("cookie", "; ".join(c for c in (jar, extra) if c)))
    return Request(method, path or "/", query, fields, body)

BaseClient.build_request = build_request

# %% [markdown]
# One line deserves a second look: `Content-Length` is sent for every `POST`, `PUT` and
# `PATCH`, even with an empty body. RFC 9110 §8.6 asks a client to say the length when the
# method expects content, and some servers answer `411 Length Required` when it is missing.
#
# `stream` and `request` are the two ways to send. `stream` is the general one: a context
# manager that opens the response, stores any `Set-Cookie` lines in the jar as soon as the
# headers are known, hands the response to the `with` block, and closes it however the
# block ends. It calls `self.open_stream`, the one method each kind of client supplies.

# %%
#| export
@contextmanager
def stream(self, method: str, path: str, **options):
    """``with client.stream("GET", "/feed") as response:`` then ``response.iter_bytes()``;
    leaving the block closes the response, whether or not it was read to the end."""
    request = self.build_request(method, path, **options)
    response = self.open_stream(request)
    self.cookies.store(response.headers.get_list("set-cookie"), request.path)
    try:
        yield response
    finally:
        response.close()

# %% [markdown]
# `request` is `stream` plus "read the whole body", which is what most tests want. Because
# the body has been read by the time it returns, `response.content` works on what it gives
# back.

# %%
#| export
def request(self, method: str, path: str, **options) -> Response:
    """Send one request and return the whole response; Set-Cookie lines go to the jar."""
    with self.stream(method, path, **options) as response:
        response.read()
    return response

BaseClient.request, BaseClient.stream = request, stream

# %% [markdown]
# And the shortcuts every client has: `client.get(path, ...)` is
# `client.request("GET", path, ...)`, and so on for the other methods. A loop writes the
# seven of them. `_method` is a factory, a function that returns a function, so each
# shortcut remembers its own `name`; a plain `lambda` inside the loop would see only the
# last value of the loop variable, and every shortcut would send `OPTIONS`.

# %%
#| export
def _method(name: str):
    def call(self, path: str, **options) -> Response:
        return self.request(name, path, **options)
    call.__name__, call.__doc__ = name.lower(), f"``request({name!r}, path, ...)``."
    return call

for _name in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
    setattr(BaseClient, _name.lower(), _method(_name))

# %% [markdown]
# Nothing can be sent yet, since `BaseClient` has no `open_stream`. But the requests
# themselves can be built and read. This client starts with a `user` cookie in its jar
# (the `cookies=` argument), so the request carries it:

# %%
draft = BaseClient("http://testserver", cookies={"user": "ada"})
login = draft.build_request("POST", "/login?next=/me", data={"user": "ada"}, params={"lang": "en"})
login, login.headers, login.body

# %% [markdown]
# The query string kept `next=/me` from the path and added `lang=en`; the headers say
# where the request goes, what the body is and how long it is, and `Cookie` came from the
# jar. That is everything a server would have read off the wire, without the wire.

# %% [markdown]
# ## Calling a WSGI app
#
# **On the map:** ②. The request is built; now something has to hand it to a WSGI app and
# collect the answer, playing the server's part from chapter 06 without a socket.
#
# ### The environ
#
# To call a WSGI app the client needs an `environ`. Chapter 04 wrote one by hand and chapter
# 06's server builds one from the bytes it reads. Here the request was never bytes, so
# `barelab.build_environ` fits: from a method, a path, a query and header pairs it builds a
# complete PEP 3333 environ, with `PATH_INFO` percent-decoded as "bytes in a str", headers
# as `HTTP_*` keys (except `CONTENT_TYPE` and `CONTENT_LENGTH`), repeated `Cookie` lines
# joined with `"; "`, and the body in `wsgi.input`. It assumes `http://127.0.0.1`, so
# `wsgi_environ` then tells it the client's real origin.

# %%
#| export
def wsgi_environ(client, request: Request) -> dict:
    """PEP 3333 environ for ``request``: barelab's build_environ, told the client's origin."""
    environ = build_environ(request.method, request.path, query=request.query,
                            headers=request.headers, body=request.body)
    environ.update({"wsgi.url_scheme": client.scheme, "SERVER_NAME": client.host,
                    "SERVER_PORT": str(client.port)})
    return environ

# %% [markdown]
# The login request from above, as the app would see it (the `wsgi.*` keys left out).
# This dict is all a WSGI app ever gets; everything a Flask `request` offers is computed
# from it:

# %%
environ = wsgi_environ(draft, login)
{key: value for key, value in environ.items() if not key.startswith("wsgi.")}

# %% [markdown]
# `Content-Type` and `Content-Length` lost their `HTTP_` prefix, as PEP 3333 requires, and
# `HTTP_HOST` is `testserver`, not an address.
#
# ### The call
#
# The server's half of one WSGI call has three parts (PEP 3333, "The Server/Gateway Side"):
# a `start_response` the app calls with the status and headers, the body iterable the app
# returns, and that iterable's `close()`, which the server must call at the end whatever
# happened. `WSGIExchange` holds them.
#
# Its `start_response` follows the two rules chapter 06 followed. With `exc_info` (an app
# reporting an error), the status may still be replaced, unless body bytes have already gone
# out: then it is too late and the exception is raised again. And it returns the legacy
# `write()` callable, whose bytes come before the iterable's.

# %%
#| export
class WSGIExchange:
    """The server's half of one WSGI call: start_response, the body iterable, close()."""

    def __init__(self, app, environ):
        self.app, self.environ = app, environ
        self.status = self.headers = self.result = None
        self.early: list[bytes] = []       # write() calls and chunks read to find the status

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None and self.status is not None and self.early:
            raise exc_info[1].with_traceback(exc_info[2])   # PEP 3333: too late to change
        self.status, self.headers = status, headers
        return self.early.append           # the legacy write(): its bytes come first

# %% [markdown]
# There is one subtlety in *when* the status is known. A generator app runs none of its
# code until someone asks for its first chunk, so its `start_response` call happens only
# then. PEP 3333 allows that: `start_response` must come before the first body chunk, not
# before the app returns. See it with an exchange's own `start_response`: call a generator
# app with it, and the status is still unknown when the call returns.

# %%
def late_starter(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first "
    yield b"second"

exchange = WSGIExchange(late_starter, wsgi_environ(draft, draft.build_request("GET", "/")))
body = late_starter(exchange.environ, exchange.start_response)
print(type(body).__name__, exchange.status)

# %% [markdown]
# A `generator`, and no status: the `start_response` line has not run. So `begin` calls
# the app and then pulls chunks, keeping them in `early`, until the status is there.

# %%
#| export
def _wsgi_begin(self) -> None:
    """Call the app and pull chunks until start_response has been called (PEP 3333 lets a
    generator call it late, just before its first chunk)."""
    self.result = self.app(self.environ, self.start_response)
    self.iterator = iter(self.result)
    while self.status is None:
        try:
            self.early.append(next(self.iterator))
        except StopIteration:
            raise RuntimeError("the app returned without calling start_response "
                               "(PEP 3333: it must, before its first body chunk)") from None

WSGIExchange.begin = _wsgi_begin

# %% [markdown]
# A fresh exchange, and `begin` this time. It should come back with the status known, and
# with the one chunk it had to pull to get there waiting in `early`:

# %%
exchange = WSGIExchange(late_starter, exchange.environ)
exchange.begin()
exchange.status, exchange.early

# %% [markdown]
# That is the price of a late `start_response`: to learn the status, the client had to
# run the generator up to its first `yield`, so one chunk of body is already out. Keeping
# it in `early` means nothing is lost; a server does the same thing before it writes the
# status line.
#
# Two more pieces finish the exchange. `chunks` hands out the kept chunks and then the
# rest, refusing anything that is not bytes, and `close` does what PEP 3333 says always
# happens at the end, error or not.

# %%
#| export
def _wsgi_chunks(self):
    for chunk in _chain(self.early, self.iterator):
        if not isinstance(chunk, bytes):   # a server would fail here too, so never hide it
            raise TypeError(f"PEP 3333: the body is an iterable of bytes, not of "
                            f"{type(chunk).__name__} ({chunk!r:.30})")
        yield chunk

def _chain(first, then):
    yield from first
    yield from then

def _wsgi_close(self) -> None:
    if hasattr(self.result, "close"):      # PEP 3333: always, even after an error
        self.result.close()

WSGIExchange.chunks, WSGIExchange.close = _wsgi_chunks, _wsgi_close

# %% [markdown]
# The body comes out whole, the early chunk first, and nothing was lost by pulling it
# ahead of time. The `close()` after it is the PEP 3333 duty; for a generator it runs any
# `finally` block the app wrote:

# %%
print(b"".join(exchange.chunks()))
exchange.close()

# %% [markdown]
# ### The client
#
# Now `TestClient` itself. It takes the app, works out its kind with barelab's
# `detect_kind` (an `async def` callable is ASGI, anything else callable is WSGI), and has
# three switches:
#
# - `validate=True` checks the app against the spec on every call;
# - `raise_app_exceptions=True` (the default) lets an exception the app raises reach the
#   test, with its traceback, instead of becoming a 500 the test has to explain;
# - `timeout` bounds every wait.
#
# One line looks odd: `__test__ = False`. pytest collects classes whose names start with
# `Test`, and this one is not a test. The attribute tells pytest so.

# %%
#| export
class TestClient(BaseClient):
    """Call a WSGI or ASGI app in-process, as a server would, and read what it answered.

    ``with TestClient(app) as client:`` is a session: for ASGI one event loop for every
    request, with the lifespan's startup before the block and its shutdown after it.
    """

    __test__ = False   # its name starts with "Test": tell pytest it is not a test class

    def __init__(self, app, *, base_url: str = "http://testserver", headers=(), cookies=None,
                 validate: bool = False, raise_app_exceptions: bool = True,
                 timeout: float = TIMEOUT):
        super().__init__(base_url, headers, cookies, timeout)
        self.app, self.kind = app, detect_kind(app)
        self.validate, self.raise_app_exceptions = validate, raise_app_exceptions
        self.portal = self.lifespan = None
        self.state: dict = {}

    def __repr__(self) -> str:
        session = " (in a session)" if self.portal else ""
        return f"<TestClient {self.kind.upper()} {self.scheme}://{self.host_header()}{session}>"

# %% [markdown]
# Three attributes wait for later sections: `portal` and `lifespan` are set while a
# session (`with TestClient(app) as client:`) is open, and `state` is the dict the
# lifespan fills in. Outside a session they stay empty.
#
# Nothing is sent yet, but the client already knows what it holds. Its `repr` says the
# app's kind and the origin it pretends to be:

# %%
TestClient(hello_app), TestClient(hello_app, base_url="https://example.com:8443")

# %% [markdown]
# `WSGI http://testserver` for the default, and `https://example.com:8443` for the other:
# the port shows because it is not the default one. That `repr` is what a failing test
# prints when it shows the client, so it says the two things you would want to know.
#
# `open_stream` is the fork on the map: WSGI apps go to `_open_wsgi`, ASGI apps to
# `_open_asgi` (built in the next section). Next to it sits `server_error`, the canned 500
# a server sends when the app fails before it has started a response.

# %%
#| export
def server_error() -> StreamingResponse:
    """What a server answers when the app failed before its response started."""
    return StreamingResponse(500, [("content-type", "text/plain; charset=utf-8")],
                             iter([b"Internal Server Error\n"]), lambda done: None)


def open_stream(self, request: Request) -> StreamingResponse:
    """Call the app with ``request``; return once the status and headers are known."""
    if self.kind == "wsgi":
        return self._open_wsgi(request)
    return self._open_asgi(request)

# %% [markdown]
# The WSGI half wraps the app in `wsgiref.validate.validator` when asked, runs the
# exchange, and turns the result into a `StreamingResponse` whose `on_close` is the
# exchange's `close()`. Two server duties happen here:
#
# - If the app fails before its response started, a server would answer 500. The test
#   client raises the error instead, unless told not to.
# - For `HEAD`, a server sends the headers and no body (RFC 9110 §9.3.2), whatever the app
#   produced. The client does the same: it never reads the body at all.
#
# The status arrives as PEP 3333's string, `"200 OK"`; the number before the first space is
# what becomes `status_code`.

# %%
#| export
def _open_wsgi(self, request: Request) -> StreamingResponse:
    app = validator(self.app) if self.validate else self.app
    exchange = WSGIExchange(app, wsgi_environ(self, request))
    try:
        exchange.begin()
    except Exception:
        exchange.close()
        if self.raise_app_exceptions:
            raise
        return server_error()
    chunks = iter(()) if request.method == "HEAD" else exchange.chunks()  # RFC 9110 §9.3.2
    status = int(exchange.status.split(None, 1)[0])
    return StreamingResponse(status, exchange.headers, chunks, lambda done: exchange.close())

TestClient.open_stream, TestClient._open_wsgi = open_stream, _open_wsgi

# %% [markdown]
# That closes the loop on the map for WSGI: request, exchange, response. The app from the
# top of the chapter, tested the way a Flask test would be:

# %%
response = TestClient(hello_app).get("/")
assert response.status_code == 200
response, response.text

# %% [markdown]
# Compare it with `barelab.call_wsgi(hello_app, "GET", "/")` at the start: the same call,
# but the status is now a number, the body is `text`, and the `assert` reads like a test.
#
# ### An app to test
#
# A client needs an app. This one is small and uses what chapters 08 and 09 built: a
# `Router` with a route per feature a test client must handle, and `Request` / `Response`
# objects (`wsgi_app` turns a `handler(request)` into a WSGI app).
#
# | method | path | what it does |
# | --- | --- | --- |
# | GET | `/hello?name=Ada` | plain text |
# | POST | `/echo` | JSON in, the same JSON out; invalid JSON is a 400 |
# | POST | `/login` | reads a form, sets a `user` cookie |
# | GET | `/me` | says who the `user` cookie names |
# | POST | `/logout` | deletes the cookie |
# | GET | `/count` | streams three lines |

# %%
from barelab.built.http_objects import JSONResponse, Response as AppResponse, wsgi_app
from barelab.built.routing import Router

notes_wsgi = Router()

@notes_wsgi.route("/hello")
@wsgi_app
def hello(request):
    return AppResponse(f"Hello, {request.query.get('name', 'world')}!\n")

@notes_wsgi.route("/echo", methods=["POST"])
@wsgi_app
def echo(request):
    return JSONResponse(request.json)

# %% [markdown]
# (Chapter 09's class is also called `Response`; here it is imported as `AppResponse` so
# that `Response` keeps meaning the test client's.) Three routes for the cookie round
# trip: log in, ask who you are, log out. The cookie helpers are chapter 09's:

# %%
@notes_wsgi.route("/login", methods=["POST"])
@wsgi_app
def login_route(request):
    response = JSONResponse({"user": request.form["user"]})
    response.set_cookie("user", request.form["user"])
    return response

@notes_wsgi.route("/me")
@wsgi_app
def me(request):
    return JSONResponse({"user": request.cookies.get("user")})

@notes_wsgi.route("/logout", methods=["POST"])
@wsgi_app
def logout(request):
    response = JSONResponse({"user": None})
    response.delete_cookie("user")
    return response

# %% [markdown]
# The last route streams: its body is a generator of three lines, so a server cannot know
# the length in advance. Printing the router lists every route it holds:

# %%
@notes_wsgi.route("/count")
@wsgi_app
def count(request):
    return AppResponse((f"{n}\n" for n in range(1, 4)), content_type="text/plain; charset=utf-8")

notes_wsgi

# %% [markdown]
# The router lists six routes, each with its methods: the table above, in the router's
# own words.
#
# The first requests. Each printed line is what a test would assert on: the client
# itself, a greeting built from the query, a JSON round trip, and two answers with no
# body, one because the route does not exist and one because the method was `HEAD`:

# %%
client = TestClient(notes_wsgi)
print(client)
hello_reply = client.get("/hello", params={"name": "Ada"})
print(hello_reply, repr(hello_reply.text))
print(client.post("/echo", json={"n": [1, 2]}).json())
print(client.get("/nowhere").status_code, client.head("/hello").content)

# %% [markdown]
# `params=` reached the app as a query (`Hello, Ada!`), and the list inside the JSON came
# back as a list. The router's 404 came back like any other response, and `HEAD` got
# headers and no body: `b''`, even though the `/hello` route wrote one.
# Invalid JSON is the app's problem to refuse; chapter 09's `Request.json` turns it into a
# 400 with the reason:

# %%
bad = client.post("/echo", content=b"{oops", headers={"Content-Type": "application/json"})
bad.status_code, bad.text

# %% [markdown]
# A 400 with a sentence a person can act on. The test client had nothing to do with that
# answer; it delivered the bytes the test gave it, which is what a test of an app's error
# handling needs.
#
# ### Checking the app against PEP 3333
#
# Some mistakes the client catches anyway: a body of `str` instead of bytes cannot be
# joined, and a server would fail on it too.

# %%
def text_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["not bytes"]

try:
    TestClient(text_body).get("/")
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# The message names the spec, the type it found and the start of the bad value, so the
# fix is obvious: `b"not bytes"`.
#
# Other mistakes slip through, because the client only collects what it is given. This app
# passes its headers as a tuple, where PEP 3333 says "a Python list". The client does not
# mind:

# %%
def tuple_headers(environ, start_response):
    start_response("200 OK", (("Content-Type", "text/plain"),))
    return [b"fine?"]

TestClient(tuple_headers).get("/").content

# %% [markdown]
# `b'fine?'`: the test would pass. But the standard library's own server, `wsgiref`, asserts `type(headers) is list` and
# would answer 500. The test passed, the app is broken. A test client can do better than a
# forgiving server: it can check the app's side of the spec on every call. The standard
# library has that checker, `wsgiref.validate.validator`, which wraps an app and asserts
# each rule as the call goes on. With `validate=True` the test fails where the bug is:

# %%
try:
    TestClient(tuple_headers, validate=True).get("/")
except AssertionError as error:
    print("AssertionError:", error)

# %% [markdown]
# `validator` stopped the call at `start_response`, with the rule it checks in its own
# words. The price is small (a few asserts per call), and it catches a whole class of bugs
# that only show up on a stricter server, so `validate=True` is a good default for the
# tests of a WSGI app you wrote by hand.
#
# The course's app passes the same check, on every route:

# %%
checked = TestClient(notes_wsgi, validate=True)
[checked.get(path).status_code for path in ("/hello", "/me", "/count", "/nowhere")]

# %% [markdown]
# No assertion fired, and the 404 is among the answers: the validator checks *how* the app
# answers (types, order, `close()`), not *what* it answers. Whether `/nowhere` should be a
# 404 is a question for your own tests.
#
# ### When the app raises
#
# Flask's and Starlette's test clients re-raise an exception from the app by default, and
# so does this one: a test that breaks should show the traceback of the bug, not a 500 that
# hides it. With `raise_app_exceptions=False` the client answers as a server would.

# %%
def broken(environ, start_response):
    raise ZeroDivisionError("the app divided by zero")

try:
    TestClient(broken).get("/")
except ZeroDivisionError as error:
    print("raised in the test:", error)
TestClient(broken, raise_app_exceptions=False).get("/")

# %% [markdown]
# The first call put the app's own exception in the test's hands, message and all. The
# second is what a browser would have got: `500 Internal Server Error`, which says that
# something broke and nothing about what. That is the one you want only when the test is
# *about* the 500 page.
#
# ### Cookies through the client
#
# The jar from the cookie section is at work in every client: `stream` stores each
# response's `Set-Cookie` lines, and `build_request` adds the `Cookie` header. Log in, ask
# who you are, log out, ask again. Every `TestClient` has its own jar, so tests do not
# share cookies by accident:

# %%
client = TestClient(notes_wsgi)
client.post("/login", data={"user": "ada"})
print(client.cookies, client.get("/me").json())
client.post("/logout")
print(client.cookies, client.get("/me").json())

# %% [markdown]
# The first line shows the cookie in the jar and the app recognising `ada`; the second
# shows an empty jar and `None`. Nothing in the test mentioned a header: the login
# response's `Set-Cookie` and the next request's `Cookie` were the client's business, as
# they are a browser's.
#
# ## Calling an ASGI app
#
# **On the map:** ③, the other branch of the fork. Here is the map again, with what you
# have built so far filled in:
#
# ```mermaid
# flowchart LR
#     T["your test"] --> B["① BaseClient + CookieJar ✔"]
#     B --> O{"open_stream ✔"}
#     O -- "WSGI app" --> W["② WSGIExchange ✔"]
#     O -- "ASGI app" --> P["③ Portal + ASGIExchange<br/>(this section)"]
#     W --> R["④ StreamingResponse ✔"]
#     P --> R
#     R --> T
#     style P fill:#ffe9a8,stroke:#b58900
# ```
#
# An ASGI app is a coroutine function: calling it builds a coroutine, and something has to
# run that on an event loop. In a script, `asyncio.run(...)` would. In a notebook it cannot,
# and it is worth seeing why:

# %%
import asyncio

async def hello_asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, ASGI!\n"})

coroutine = hello_asgi({"type": "http"}, None, None)
try:
    asyncio.run(coroutine)
except RuntimeError as error:
    print("RuntimeError:", error)
coroutine.close()   # never run: close it, or Python warns "was never awaited"

# %% [markdown]
# The kernel's own thread is already running an event loop: that loop is what makes
# top-level `await` work in a cell. `asyncio.run` starts a *new* loop, and refuses to do so
# inside a running one.
#
# What about `await app(...)` on the kernel's loop? That does run, but it is the wrong
# tool for a test client. A test calls `client.get(...)`, an ordinary function that blocks
# until the answer is there. One thread can do one thing at a time, so while it blocks,
# its loop cannot run the app it is waiting for:
#
# ```mermaid
# flowchart LR
#     subgraph K["kernel thread: one event loop"]
#         C["client.get('/')<br/>blocks until the app answers"]
#         A["the app's coroutine<br/>queued on the same loop"]
#     end
#     C -- "waits for" --> A
#     A -- "waits for the loop,<br/>which waits for client.get" --> C
# ```
#
# Each waits for the other, forever: a deadlock, and a frozen notebook. The way out is the
# one `barelab.call_asgi` takes: a **second** event loop, running in a thread of its own.
# Starlette's `TestClient` does the same through anyio, and calls it a *portal*. The test's
# thread may block as long as it likes, because the app runs somewhere else:
#
# ```mermaid
# flowchart LR
#     subgraph K["kernel thread (the test)"]
#         C["client.get('/')<br/>waits, with a timeout"]
#     end
#     subgraph P["portal thread: its own event loop"]
#         A["app(scope, receive, send)"]
#     end
#     C -- "① submit(coroutine)" --> A
#     A -- "② send(message) puts it<br/>in a queue.Queue" --> C
#     C -. "③ call_soon(function):<br/>'the client left'" .-> A
# ```
#
# Three crossings, and each one uses the one tool that is safe between threads:
#
# 1. The test hands the app's coroutine to the other loop with
#    `asyncio.run_coroutine_threadsafe`, and gets back a future it can wait on.
# 2. The app's messages come back through a `queue.Queue`, which any thread may read, with
#    a timeout.
# 3. When the test needs to tell the loop something (the client left), it asks the loop to
#    run a function with `call_soon_threadsafe`, because asyncio objects may only be
#    touched from their own loop's thread.
#
# The `Portal` class is the right-hand box: a new loop, and a daemon thread that runs it
# forever. `submit` is crossing ①, `call_soon` is crossing ③.

# %%
#| export
class Portal:
    """An event loop running in a daemon thread of its own. ``call`` runs a coroutine on it
    and waits (with a timeout) in the caller's thread; ``submit`` starts one and returns."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="testclient-loop")
        self.thread.start()

    def submit(self, coroutine):
        """Schedule ``coroutine`` on the loop; a concurrent.futures.Future for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, function, *args) -> None:
        """Run a plain function on the loop's thread (asyncio objects are not thread-safe)."""
        self.loop.call_soon_threadsafe(function, *args)

# %% [markdown]
# Start one, and look at the threads: a new one, named so you can find it, is now running
# the portal's loop.

# %%
portal = Portal()
print([thread.name for thread in threading.enumerate() if thread.name.startswith("testclient")])
portal.submit(asyncio.sleep(0, result="ran on the portal")).result(1.0)

# %% [markdown]
# One thread named `testclient-loop`, and the coroutine's result, `'ran on the portal'`,
# back in this thread. `submit` returned a `concurrent.futures.Future` (the thread-safe
# kind, not asyncio's), and `.result(1.0)` waited up to a second for it here, in the
# kernel's thread, while the other thread did the work.
#
# `call` is `submit` plus waiting. The timeout is set twice, on purpose. `asyncio.wait_for`
# inside the loop cancels the coroutine cleanly when time is up. But an app can block the
# loop itself (`time.sleep` inside `async def`), and then nothing inside the loop runs, not
# even the timeout. So the waiting thread has its own, slightly longer limit.

# %%
#| export
def _portal_call(self, coroutine, timeout: float, what: str):
    """Run ``coroutine`` on the loop and return its result, or raise TimeoutError."""
    future = self.submit(asyncio.wait_for(coroutine, timeout))
    try:
        return future.result(timeout + 1.0)   # +1: wait_for fires first, unless the app
    except TimeoutError:                      # blocked the loop itself (time.sleep)
        future.cancel()
        raise TimeoutError(f"{what}: no answer within {timeout}s") from None

Portal.call = _portal_call

# %% [markdown]
# And `stop`, in two parts. The first runs *on* the loop: cancel every task still running
# there (an app a test gave up on) and give them a moment to finish their `finally`
# blocks. It skips itself, since a task that cancelled itself would never report back.

# %%
#| export
async def _cancel_all(timeout: float) -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)

# %% [markdown]
# The second runs in the caller's thread: submit that cleanup, stop the loop, join the
# thread, close the loop. Every wait in it has a limit too, and a loop whose thread would
# not stop is left open rather than closed under a running thread.

# %%
#| export
def _portal_stop(self, timeout: float = 1.0) -> None:
    """Cancel what still runs, stop the loop, join the thread, close the loop."""
    if self.thread.is_alive():
        try:
            self.submit(_cancel_all(timeout)).result(timeout + 1.0)
        except TimeoutError:
            pass                           # a task that ignores cancellation: leave it
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
    if not self.thread.is_alive():
        self.loop.close()

Portal.stop = _portal_stop

# %% [markdown]
# The same portal at work: a coroutine that finishes, one that would take ten seconds,
# and proof that the thread is gone after `stop`:

# %%
print(portal.call(asyncio.sleep(0.01, result="done"), 1.0, "a short sleep"))
try:
    portal.call(asyncio.sleep(10), 0.2, "a long sleep")
except TimeoutError as error:
    print("TimeoutError:", error)
portal.stop()
portal.thread.is_alive()

# %% [markdown]
# The short sleep answered `done`. The long one was cut off after 0.2 seconds, and the
# error says which wait gave up and how long it waited, which is what you want to read in
# a test report. `False`: after `stop`, the thread is gone, and the next test starts with
# no leftovers.
#
# ### The server's half of an ASGI call
#
# `ASGIExchange` is to ASGI what `WSGIExchange` was to WSGI: the server's side of one
# `http` call. The app runs on the portal's loop; the test reads from the caller's thread.
# Messages cross between them through `outbox`, a `queue.Queue`, which is safe to use from
# two threads and can be waited on with a timeout.
#
# Two small classes first. `ClientDisconnected` is what `send` raises once the client has
# gone: the ASGI HTTP spec (version 2.4) asks servers to raise a subclass of `OSError`
# there. `AppEnded` is put in the queue when the app's coroutine ends, with the exception
# if it raised, so the waiting thread learns about it.

# %%
#| export
class ClientDisconnected(OSError):
    """ASGI HTTP spec 2.4: send() after the client left raises a subclass of OSError."""


class AppEnded:
    """Put in a message queue when the app's coroutine ends; ``error`` if it raised."""

    def __init__(self, error: BaseException | None = None):
        self.error = error

    def __repr__(self) -> str:
        return f"AppEnded({self.error!r})" if self.error else "AppEnded()"

# %% [markdown]
# The exchange's state: the app, its scope and the request body; the `outbox`; two flags
# (has the body been handed over, has the client gone); an `asyncio.Event` that fires
# when the response is complete or the client left; and, with `validate=True`, chapter
# 11's `HTTPResponseChecker`, which refuses a message that breaks the spec (wrong types,
# uppercase header names, body before start) with the spec's own words.

# %%
#| export
class ASGIExchange:
    """The server's half of one ASGI ``http`` call. The app runs on the portal's loop;
    what it sends lands in ``outbox``, a thread-safe queue the caller reads with a timeout."""

    def __init__(self, app, scope: dict, body: bytes, validate: bool):
        self.app, self.scope, self.body = app, scope, body
        self.outbox = queue.Queue()
        self.body_sent = self.gone = False
        self.finished = asyncio.Event()          # response complete, or the client left
        self.checker = HTTPResponseChecker() if validate else None

# %% [markdown]
# `receive` gives the app the whole body in one `http.request` message. After that, a real
# server's `receive` waits until something happens to the connection, and so does this one:
# it returns `http.disconnect` once the response is complete or the client left. An app that
# listens for a disconnect while it streams (chapter 12's `stream` does) therefore keeps
# streaming until the test stops reading.
#
# `send` puts each message in the queue, notes when the last body message went out, and
# refuses once the client is gone.

# %%
#| export
async def _exchange_receive(self) -> dict:
    if not self.body_sent and not self.gone:
        self.body_sent = True
        return {"type": "http.request", "body": self.body, "more_body": False}
    await self.finished.wait()               # then, as a server does: the client is done
    return {"type": "http.disconnect"}

async def _exchange_send(self, message: dict) -> None:
    if self.gone:
        raise ClientDisconnected("the client closed the response")
    self.outbox.put(message)
    if message.get("type") == "http.response.body" and not message.get("more_body"):
        self.finished.set()

ASGIExchange.receive, ASGIExchange.send = _exchange_receive, _exchange_send

# %% [markdown]
# `run` is the coroutine the portal runs (crossing ① on the portal diagram). It calls the
# app and, whatever happens, puts an `AppEnded` in the queue, so the waiting thread always
# hears how the app ended. A cancellation is passed on after that: a cancelled task must
# stay cancelled, or `Portal.stop` could not end it.

# %%
#| export
async def _exchange_run(self) -> None:
    send = self.send if self.checker is None else checked_send(self.send, self.checker)
    try:
        await self.app(self.scope, self.receive, send)
        if self.checker is not None:
            self.checker.finish()
    except asyncio.CancelledError as error:
        self.outbox.put(AppEnded(error))
        raise                                  # cancelling must still cancel
    except Exception as error:
        self.outbox.put(AppEnded(error))
    else:
        self.outbox.put(AppEnded())
    finally:
        self.finished.set()

ASGIExchange.run = _exchange_run

# %% [markdown]
# `leave` is the other direction, crossing ③ on the portal diagram: the test stopped
# reading before the end. It runs on the loop's thread, marks the client as gone, and
# wakes a `receive` that was waiting, which then says `http.disconnect`.

# %%
#| export
def _exchange_leave(self) -> None:
    """The client closed the response early (run on the loop's thread)."""
    self.gone = True
    self.finished.set()

ASGIExchange.leave = _exchange_leave

# %% [markdown]
# Two helpers for the caller's side. `next_message` waits on the queue and, when time is
# up, says what it was waiting for. `decode_headers` turns ASGI's byte pairs into the
# `str` pairs `Headers` holds.

# %%
#| export
def next_message(outbox: queue.Queue, timeout: float, waiting_for: str):
    """The next message from the app, or a TimeoutError that says what was awaited."""
    try:
        return outbox.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"the app sent nothing for {timeout}s while the client waited "
                           f"for {waiting_for}") from None


def decode_headers(raw) -> list[tuple[str, str]]:
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw]

# %% [markdown]
# An exchange driven by hand on a portal, before any client uses it. This cell plays the
# test's thread: it submits `run`, then reads the outbox, which fills from the portal's
# thread:

# %%
portal = Portal()
exchange = ASGIExchange(hello_asgi, barelab.build_scope("http"), b"", validate=True)
portal.submit(exchange.run())
for _ in range(3):
    print(next_message(exchange.outbox, 1.0, "a message"))
portal.stop()

# %% [markdown]
# The app's two messages, in order, and then `AppEnded()`: it returned without an error.
# The client's job from here is to turn those messages into a `StreamingResponse`.

# %% [markdown]
# ### The ASGI half of the client
#
# Outside a session, each request gets a portal of its own, stopped when the request ends,
# so no thread outlives a request. Inside a `with TestClient(app)` block (the section on
# lifespan below) every request shares the session's portal. `_borrow_portal` says which,
# and whether this call owns it.
#
# The scope comes from `barelab.build_scope`, told the client's origin like the environ
# was. It also gets `state`: a *copy* of the lifespan's state dict, the way servers hand it
# to each request (chapter 14).

# %%
#| export
def _borrow_portal(self) -> tuple[Portal, bool]:
    """``(portal, owned)``: the session's loop, or outside a session a fresh one to stop."""
    return (self.portal, False) if self.portal is not None else (Portal(), True)


def asgi_scope(self, kind: str, request: Request) -> dict:
    """An ASGI scope (spec 2.4) for ``request``: barelab's build_scope, told the origin and
    given a copy of the lifespan state, as servers do."""
    scope = build_scope(kind, request.method, request.path, query=request.query,
                        headers=request.headers)
    secure = self.scheme == "https"
    scope.update(scheme=("wss" if secure else "ws") if kind == "websocket" else self.scheme,
                 server=(self.host, self.port), state=dict(self.state))
    return scope

TestClient._borrow_portal, TestClient.asgi_scope = _borrow_portal, asgi_scope

# %% [markdown]
# The login request from the WSGI section, as an ASGI app would see it. Compare it with
# the environ: the same facts, in ASGI's shape (a `query_string` in bytes, `server` as a
# pair, and `state`, empty outside a session):

# %%
scope = TestClient(hello_asgi).asgi_scope("http", login)
{key: scope[key] for key in ("type", "method", "path", "query_string", "scheme", "server", "state")}

# %% [markdown]
# `query_string` is bytes, `next=/me&lang=en`, never decoded: the ASGI spec leaves that to
# the app. `server` is `('testserver', 80)`, the origin the client pretends to be, and
# `state` is `{}` because no lifespan has run. The environ said the same things with
# strings and `HTTP_*` keys.
#
# Sending a request to an ASGI app takes three methods, each running at a different
# moment of the response's life:
#
# | method | runs when | does |
# | --- | --- | --- |
# | `_open_asgi` | the test sends the request | starts the app, waits for `http.response.start` |
# | `_asgi_chunks` | the test asks for the next chunk | waits for the next `http.response.body` |
# | `_asgi_close` | the response closes | tells the app if the test left, waits for it to end |
#
# `_open_asgi` starts the exchange and waits for `http.response.start`. If the app ended
# first, `_asgi_close` raises its error (or the client answers 500). Otherwise the response
# is returned at once, with the status and headers, and a generator of body chunks that
# reads the queue only when the test asks for the next chunk.

# %%
#| export
def _open_asgi(self, request: Request) -> StreamingResponse:
    portal, owned = self._borrow_portal()
    exchange = ASGIExchange(self.app, self.asgi_scope("http", request), request.body,
                            self.validate)
    exchange.future = portal.submit(exchange.run())
    try:
        start = next_message(exchange.outbox, self.timeout, "http.response.start")
    except TimeoutError:
        self._asgi_close(exchange, portal, owned, done=False)
        raise
    if isinstance(start, AppEnded):
        exchange.outbox.put(start)
        self._asgi_close(exchange, portal, owned, done=True)   # raises the app's error
        return server_error()
    return StreamingResponse(
        start.get("status", 200), decode_headers(start.get("headers", [])),
        self._asgi_chunks(exchange, head=request.method == "HEAD"),
        lambda done: self._asgi_close(exchange, portal, owned, done))

TestClient._open_asgi = _open_asgi

# %% [markdown]
# Three endings are possible while the client waits for the first message, and each
# gets its own branch:
#
# - **nothing comes** within the timeout: the client leaves, so the app is told and then
#   cancelled, and the test gets the `TimeoutError`;
# - **the app ended** before starting a response: the marker goes back into the queue,
#   and `_asgi_close` raises the app's error, or, if the app ended without one (or
#   `raise_app_exceptions` is off), the client answers 500, as a server would;
# - **`http.response.start`** arrived: the response goes back to the test at once, with
#   the body still to come.
#
# The chunks: one `http.response.body` message after another, until `more_body` is false.
# For `HEAD` there are none to hand out, as for WSGI. If the app ends in the middle, the
# marker goes back into the queue for `_asgi_close` to find.

# %%
#| export
def _asgi_chunks(self, exchange: ASGIExchange, head: bool):
    while not head:                         # RFC 9110 §9.3.2: no content for HEAD
        message = next_message(exchange.outbox, self.timeout, "http.response.body")
        if isinstance(message, AppEnded):
            exchange.outbox.put(message)    # for _asgi_close, which raises the app's error
            if message.error is None:
                raise RuntimeError("the app returned before its response was complete "
                                   "(ASGI: the last http.response.body has more_body False)")
            return
        yield bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return

TestClient._asgi_chunks = _asgi_chunks

# %% [markdown]
# The last of the three runs when the response closes, and it has two jobs. The first is
# waiting for the app to return: a server keeps the app running after the last byte, for
# cleanup or background work, and so does the client. `_await_app_end` reads the queue
# until the `AppEnded` marker comes. If it never comes, the app is cancelled (it must not
# keep running in a session), and the timeout reaches the test only if the test had read
# the whole body; a test that left early has no business with an app that will not stop.

# %%
#| export
def _await_app_end(self, exchange: ASGIExchange, done: bool) -> "AppEnded | None":
    """The app's AppEnded marker; None if the test left early and the app never returned."""
    message = None
    while not isinstance(message, AppEnded):
        try:
            message = next_message(exchange.outbox, self.timeout, "the app to return")
        except TimeoutError:
            exchange.future.cancel()       # do not leave it running in a session
            if done:
                raise
            return None                    # the test already left: not its business
    return message

TestClient._await_app_end = _await_app_end

# %% [markdown]
# `_asgi_close` wraps that. If the test left before the end, it first tells the loop
# (`leave`), so the app's `receive` says `http.disconnect` and its `send` raises. Then it
# waits, raises what the app raised, and releases the portal. What the app raises *after*
# the client left is not the test's business either: a server would only log it, and the
# test sees the error that made it leave.

# %%
#| export
def _asgi_close(self, exchange: ASGIExchange, portal: Portal, owned: bool, done: bool):
    """Leave (if the body was not read to the end), wait for the app to return, and raise
    what it raised, unless that came after the client left (then it is the server's log)."""
    try:
        if not done:
            portal.call_soon(exchange.leave)
        message = self._await_app_end(exchange, done)
        if (message is not None and message.error is not None and self.raise_app_exceptions
                and not exchange.gone):
            raise message.error
    finally:
        if owned:
            portal.stop()

TestClient._asgi_close = _asgi_close

# %% [markdown]
# That completes branch ③ of the map. The first ASGI app of this section, through the
# client:

# %%
response = TestClient(hello_asgi).get("/")
response, response.text

# %% [markdown]
# One line, the same as for WSGI. Behind it, a portal started, the app ran on its thread,
# two messages crossed the queue, and the portal stopped.
#
# ### The same app, in ASGI
#
# To run one set of tests against both kinds of app, the ASGI version must answer the same
# requests the same way. It is written with chapter 12's helpers (`send_text`,
# `send_json`, `read_json`, which answers 400 for invalid JSON) and a route table in an
# `if` chain. `HEAD` is routed like `GET`: an app answers it with the same headers, and
# the server drops the body.
#
# Two helpers first. Chapter 12 gave no cookie parser, so `cookies_of` reads the `cookie`
# header by hand: split on `;`, then on the first `=`.

# %%
from urllib.parse import parse_qs

from barelab.built.asgi_basics import (encode_headers, header, read_body, read_json,
                                       send_error, send_json, send_text)
from barelab.built.http_wire import HTTPError

def cookies_of(scope):
    pairs = (part.strip().partition("=") for part in (header(scope, "cookie") or "").split(";"))
    return {name: value for name, _, value in pairs if name}

# %% [markdown]
# And `count_lines`, the streamed body: a start message, one body message per line with
# `more_body=True`, and an empty last message that says "that was all". A server sees
# no `Content-Length` and no end until that last message, which is why it has to stream.

# %%
async def count_lines(send):
    await send({"type": "http.response.start", "status": 200,
                "headers": encode_headers([("content-type", "text/plain; charset=utf-8")])})
    for n in range(1, 4):
        await send({"type": "http.response.body", "body": f"{n}\n".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})

# %% [markdown]
# The three account routes go in a function of their own, which answers `True` when the
# route was one of its own. Login reads the form and sets the cookie with `Path=/`; logout
# expires it with `Max-Age=0`. Those are the same two moves chapter 09's `set_cookie` and
# `delete_cookie` made for the WSGI app.

# %%
async def account_routes(route, scope, receive, send) -> bool:
    if route == ("POST", "/login"):
        user = parse_qs((await read_body(receive)).decode())["user"][0]
        await send_json(send, {"user": user}, headers=[("set-cookie", f"user={user}; Path=/")])
    elif route == ("GET", "/me"):
        await send_json(send, {"user": cookies_of(scope).get("user")})
    elif route == ("POST", "/logout"):
        await send_json(send, {"user": None}, headers=[("set-cookie", "user=; Max-Age=0; Path=/")])
    else:
        return False
    return True

# %% [markdown]
# The app itself. It refuses any scope but `http`, which also tells a server that it does
# not speak lifespan, and turns chapter 02's `HTTPError` (raised by `read_json` for a bad
# body) into an error response:

# %%
async def notes_asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("notes_asgi speaks HTTP only")   # no lifespan: see chapter 14
    route = ("GET" if scope["method"] == "HEAD" else scope["method"], scope["path"])
    try:
        if route == ("GET", "/hello"):
            name = parse_qs(scope["query_string"].decode()).get("name", ["world"])[0]
            await send_text(send, f"Hello, {name}!\n")
        elif route == ("POST", "/echo"):
            await send_json(send, await read_json(scope, receive))
        elif route == ("GET", "/count"):
            await count_lines(send)
        elif not await account_routes(route, scope, receive, send):
            await send_text(send, "Not Found\n", 404)
    except HTTPError as error:
        await send_error(send, error)

# %% [markdown]
# The client finds out by itself that this is an ASGI app. The calls are the ones the WSGI
# app got:

# %%
client = TestClient(notes_asgi, validate=True)
print(client)
print(client.get("/hello", params={"name": "Ada"}).text, end="")
print(client.post("/echo", json={"n": [1, 2]}).json())
print(client.post("/echo", content=b"{oops", headers={"content-type": "application/json"}).text, end="")
client.post("/login", data={"user": "ada"})
print(client.get("/me").json(), client.get("/count").text.split())

# %% [markdown]
# Same answers as the WSGI app, line for line: the greeting, the JSON, the 400 with its
# reason, the cookie round trip and the three counted lines, with chapter 11's checker
# watching every message. Each of those requests ran on a fresh portal that was stopped
# when the request ended, so no `testclient` thread should be left:

# %%
[thread.name for thread in threading.enumerate() if thread.name.startswith("testclient")]

# %% [markdown]
# An empty list: six requests, six portals, all stopped. A test suite of a thousand
# requests leaves no more threads behind than one of six.
#
# ### A broken ASGI app, and one that hangs
#
# The checker earns its place on apps like this one, which writes a header name in
# capitals (ASGI wants lowercase) and forgets to finish its response:

# %%
async def sloppy_asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"Content-Type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})

try:
    TestClient(sloppy_asgi, validate=True).get("/")
except Exception as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# The message names the rule and the section of the spec. Without `validate` the capitals
# pass, but the unfinished response is still caught: the app returned while its last body
# message said `more_body: True`.

# %%
try:
    TestClient(sloppy_asgi).get("/")
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# A server would have sent `half` and then left the browser waiting for the rest; the
# test client turns that into an error at once, with the rule the app broke.
#
# Worse than returning too early is never returning. This app starts a response and then
# waits for an hour. The client waits for the next body message, nothing comes, and after
# `timeout` seconds (half a second here) it says what it was waiting for. The kernel never
# hangs, and the portal's `stop` cancels the sleeping app.

# %%
async def stalls(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(3600)

try:
    TestClient(stalls, timeout=0.5).get("/")
except TimeoutError as error:
    print("TimeoutError:", error)

# %% [markdown]
# Half a second later the test has its answer, and it names the message that never came.
# Without the timeout, this cell would still be running, and so would the notebook's
# kernel.
#
# ## Streaming
#
# **On the map:** nothing new. Streaming is the path ② and ③ already built, from the app
# through `StreamingResponse` (④), seen one chunk at a time.
#
# `client.stream(...)` hands the response to a `with` block before its body has been read,
# and `iter_bytes()` pulls one chunk at a time. To see that the chunks really arrive as the
# app sends them, and not all at the end, let the app and the test write into one shared
# list: the app before each chunk, the test as each one arrives. The app pauses 0.1 s
# between chunks. It uses chapter 12's `stream`, which sends each chunk of an async
# generator as it comes while listening for `http.disconnect`, and returns `False` if the
# client left before the end.

# %%
from barelab.built.asgi_basics import stream as stream_chunks

timeline = []

async def ticker(scope, receive, send):
    async def ticks():
        for n in range(3):
            timeline.append(f"app sends tick {n}")
            yield f"tick {n}\n".encode()
            await asyncio.sleep(0.1)
    finished = await stream_chunks(send, receive, ticks())
    timeline.append("app: the whole stream went out" if finished else "app: the client left")

# %% [markdown]
# Read the whole stream, noting each chunk in the timeline as it arrives. If the client
# collected the body before handing it over, all three `app sends` lines would come first:

# %%
timeline.clear()
with TestClient(ticker).stream("GET", "/") as response:
    for chunk in response.iter_bytes():
        timeline.append(f"test got {chunk!r}")
timeline

# %% [markdown]
# The lines alternate: each tick reached the test before the app produced the next one.
# The last line is the app's own verdict: the stream went out whole. That is streaming. Now leave after the first chunk, as a test that only checks the start
# of a feed would:

# %%
timeline.clear()
with TestClient(ticker).stream("GET", "/") as response:
    for chunk in response.iter_bytes():
        timeline.append(f"test got {chunk!r}, and leaves")
        break
timeline

# %% [markdown]
# Leaving the `with` block closed the response before its end, so the client told the app
# it had gone: chapter 12's `stream` was listening for `http.disconnect`, stopped
# producing, and said so. A client that simply stopped reading, without telling the app,
# would have left it ticking in the background.
#
# The WSGI side streams too: the body iterable is pulled lazily, one chunk per
# `iter_bytes()` step, and `close()` reaches the generator when the block ends. Here the
# generator notes its own `finally`, which is where a real one would release a file or a
# database cursor:

# %%
def wsgi_ticker(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        for n in range(3):
            timeline.append(f"app yields tick {n}")
            yield f"tick {n}\n".encode()
    finally:
        timeline.append("app: closed")

# %% [markdown]
# Take one chunk and leave. A WSGI app cannot be told "the client left" the way an ASGI
# app can; the only signal PEP 3333 has is `close()`, and it arrives as a
# `GeneratorExit` at the paused `yield`:

# %%
timeline.clear()
with TestClient(wsgi_ticker).stream("GET", "/") as response:
    timeline.append(f"test got {next(response.iter_bytes())!r}, and leaves")
timeline

# %% [markdown]
# Tick 0 was produced, the test took it and left, and the generator's `finally` ran
# straight away. Ticks 1 and 2 were never made: pulling lazily means the app does no work
# nobody will read.
#
# ## Lifespan: a session around the tests
#
# **On the map:** the `Lifespan` inside ③. Until now each ASGI request had a portal of its
# own; a session keeps one portal for many requests.
#
# An app that opens a database at startup (chapter 14) cannot be tested one request at a
# time on throwaway loops: the database would be opened by the lifespan on one loop and
# used by a request on another, and nothing would ever send `lifespan.startup` at all.
# Starlette's answer is the one used here: `with TestClient(app) as client:` is a
# *session*. Entering it starts one portal and runs the lifespan startup on it; every
# request inside the block uses that portal and gets a copy of the lifespan's state;
# leaving it runs the shutdown and stops the portal.
#
# `LifespanFailed` is what the test sees when the app answers `lifespan.startup.failed`:
# the spec says a server should then report the message and exit, and for a test client
# "exit" means "raise".

# %%
#| export
class LifespanFailed(RuntimeError):
    """The app answered lifespan.startup (or .shutdown) with .failed; the text is its message."""

# %% [markdown]
# `Lifespan` is the server's half of the protocol. It holds the app, the state dict the
# app will fill in, and one flag, `supported`, which stays `True` unless the app turns
# out not to speak lifespan at all.

# %%
#| export
class Lifespan:
    """The server's half of the lifespan protocol, run on a portal's loop (ASGI spec,
    "Lifespan Protocol"): startup before the first request, shutdown after the last."""

    def __init__(self, app, state: dict):
        self.app, self.state = app, state
        self.supported = True

# %% [markdown]
# `_run` is the app's side of it, one long call that lasts from startup to shutdown: the
# app gets a `lifespan` scope, reads events from `inbox` and answers into `outbox`, and
# when it returns or raises, an `AppEnded` goes into `outbox` as for HTTP. The scope's
# `state` is the very dict the client will copy into each request's scope.

# %%
#| export
async def _lifespan_run(self) -> None:
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "state": self.state}
    try:
        await self.app(scope, self.inbox.get, self.outbox.put)
    except Exception as error:
        await self.outbox.put(AppEnded(error))
    else:
        await self.outbox.put(AppEnded())

Lifespan._run = _lifespan_run

# %% [markdown]
# Both lifespan messages and their answers run on the portal's loop, so they use
# `asyncio.Queue`s; no thread is crossed until the whole startup is over. `_exchange`
# sends one event and reads the answer, which must be `.complete` or `.failed` for that
# same event; anything else is a broken app, and the error says what was expected. An app that raises on
# the lifespan scope before answering anything is saying it does not speak lifespan, and
# the spec says the server then carries on without it; `startup` records that, and
# `shutdown` sends nothing to such an app (nor to one whose startup never completed).

# %%
#| export
async def _lifespan_exchange(self, event: str):
    await self.inbox.put({"type": f"lifespan.{event}"})
    message = await self.outbox.get()
    if isinstance(message, AppEnded):
        return message
    if message["type"] == f"lifespan.{event}.failed":
        raise LifespanFailed(f"{event} failed: {message.get('message', '')}")
    if message["type"] != f"lifespan.{event}.complete":
        raise RuntimeError(f"expected lifespan.{event}.complete, got {message['type']!r}")
    return message

Lifespan._exchange = _lifespan_exchange

# %% [markdown]
# `startup` starts the app as a task on the loop and sends the first event; `shutdown`
# sends the second and waits for the app to end. `ensure_future` is what lets the app's
# lifespan call stay alive between the two, suspended in its `receive`, for as long as
# the session lasts.

# %%
#| export
async def _lifespan_startup(self) -> None:
    """Send lifespan.startup; an app that ends before answering does not speak lifespan."""
    self.inbox, self.outbox = asyncio.Queue(), asyncio.Queue()
    self.task = asyncio.ensure_future(self._run())
    if isinstance(await self._exchange("startup"), AppEnded):
        self.supported = False

async def _lifespan_shutdown(self) -> None:
    """Send lifespan.shutdown (only after a complete startup) and wait for the app to end."""
    if self.supported:
        await self._exchange("shutdown")
        await self.task

Lifespan.startup, Lifespan.shutdown = _lifespan_startup, _lifespan_shutdown

# %% [markdown]
# Try it on a portal, with a lifespan app written in raw messages that writes each event
# it gets into the state. The two `portal.call`s are what a session will do when it opens
# and when it closes:

# %%
async def noting_lifespan(scope, receive, send):
    scope["state"]["events"] = [(await receive())["type"]]
    await send({"type": "lifespan.startup.complete"})
    scope["state"]["events"].append((await receive())["type"])
    await send({"type": "lifespan.shutdown.complete"})

portal, noted = Portal(), Lifespan(noting_lifespan, {})
portal.call(noted.startup(), 1.0, "lifespan.startup")
print(noted.state)
portal.call(noted.shutdown(), 1.0, "lifespan.shutdown")
portal.stop()
noted.state

# %% [markdown]
# After startup the state holds one event, after shutdown two. The state dict is the one
# the app filled in at startup, the same one each request will get a copy of.
#
# `__enter__` and `__exit__` make the session. Entering starts a portal, gives the
# lifespan a fresh state dict, and runs the startup on the portal. A startup that fails
# stops the portal before the error reaches the test, so a failed session leaves no
# thread behind. For a WSGI app a session changes nothing (WSGI has no lifespan), which
# keeps `with TestClient(app)` usable for both kinds.

# %%
#| export
def _client_enter(self) -> "TestClient":
    """Start a session: for ASGI, one loop for every call and the lifespan startup."""
    if self.kind == "asgi" and self.portal is None:
        portal, self.state = Portal(), {}
        lifespan = Lifespan(self.app, self.state)
        try:
            portal.call(lifespan.startup(), self.timeout, "lifespan.startup")
        except BaseException:
            portal.stop()
            raise
        self.portal, self.lifespan = portal, lifespan
    return self

# %% [markdown]
# Leaving runs the shutdown and stops the portal, in a `finally` so that a shutdown that
# fails still stops the thread. `self.portal` is cleared first: from here on, requests
# made with this client are back to one portal each.

# %%
#| export
def _client_exit(self, *exc_info) -> None:
    """End the session: the lifespan shutdown, then the loop stops."""
    portal, self.portal = self.portal, None
    if portal is not None:
        try:
            portal.call(self.lifespan.shutdown(), self.timeout, "lifespan.shutdown")
        finally:
            portal.stop()

TestClient.__enter__, TestClient.__exit__ = _client_enter, _client_exit

# %% [markdown]
# A Starlette app with a lifespan that opens a "database" (a list, to keep the focus on
# the protocol) and yields it as state. Starlette copies what the lifespan yields into
# `scope["state"]`, and `request.state` reads it. `opened` records what happened, when:

# %%
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse as StarletteJSON
from starlette.routing import Route

opened = []

@asynccontextmanager
async def lifespan(app):
    opened.append("startup")
    yield {"db": ["first row"]}
    opened.append("shutdown")

async def rows(request):
    return StarletteJSON({"rows": request.state.db, "events so far": list(opened)})

starlette_app = Starlette(routes=[Route("/rows", rows)], lifespan=lifespan)

# %% [markdown]
# Outside a session there is no lifespan, so no state, and Starlette says so:

# %%
try:
    TestClient(starlette_app).get("/rows")
except AttributeError as error:
    print("AttributeError:", error)

# %% [markdown]
# `'State' object has no attribute 'db'`: the route asked for state that only a lifespan
# could have put there. That is the error a test suite meets when it forgets the session.
#
# Inside a session, the startup ran before the first request and the shutdown after the
# block:

# %%
opened.clear()
with TestClient(starlette_app) as session:
    print(session)
    print(session.get("/rows").json())
opened

# %% [markdown]
# The `repr` says `(in a session)`. The request saw the row the lifespan yielded, and
# `events so far` shows only the startup at that moment; the shutdown joined the list when
# the block ended.
#
# ### Startup failure
#
# And a startup that fails. Chapter 14's `with_lifespan` turns an async context manager
# into the lifespan protocol and reports an exception as `lifespan.startup.failed` with its
# type and text. The session does not start; the test sees the message:

# %%
from barelab.built.app_lifespan import with_lifespan

@asynccontextmanager
async def no_database(app):
    raise ConnectionRefusedError("the database is not running")
    yield

try:
    with TestClient(with_lifespan(notes_asgi, no_database)) as session:
        print("never printed")
except LifespanFailed as error:
    print("LifespanFailed:", error)
[thread.name for thread in threading.enumerate() if thread.name.startswith("testclient")]

# %% [markdown]
# The message carries the exception's type and text, as the app reported them, and the
# empty list says no thread was left behind. And `notes_asgi`, which raises on a lifespan
# scope, is an app that does not speak lifespan: a session with it simply starts, and
# records that the lifespan is not supported:

# %%
with TestClient(notes_asgi) as session:
    print(session.lifespan.supported, session.get("/hello").text, end="")

# %% [markdown]
# `False`, and the request went through anyway. That is what the course's ASGI server does
# with such an app too, as its log will show near the end: note it, and serve without.
#
# ## WebSocket sessions
#
# **On the map:** the `WebSocketSession` inside ③. It uses the same portal and the same
# kind of queue as an HTTP request, but the messages go both ways, for as long as the test
# likes.
#
# A WebSocket is a conversation: the test sends, the app answers, either side may close.
# In ASGI it is a `websocket` scope and a stream of messages each way (ASGI WebSocket spec;
# chapter 15). The client's part:
#
# ```mermaid
# sequenceDiagram
#     participant T as test
#     participant A as app (on the portal)
#     T->>A: websocket.connect
#     A->>T: websocket.accept (or websocket.close: refused, HTTP 403)
#     T->>A: websocket.receive {"text": "hi"}
#     A->>T: websocket.send {"text": "HI"}
#     A->>T: websocket.close {"code": 4000}
#     T->>A: websocket.disconnect {"code": 4000} (the echo)
#     Note over T: receive_text() raises WebSocketDisconnect(4000)
# ```
#
# Two exceptions carry the endings. `WebSocketDenied` is a refused handshake: an app that
# closes before accepting makes the server answer the handshake with HTTP 403 (ASGI
# WebSocket spec, "Close - send event"), and one that uses the Denial Response extension
# sends an HTTP response of its own. `WebSocketDisconnect` is a close after the
# conversation began, with the app's code and reason.

# %%
#| export
class WebSocketDenied(Exception):
    """The app refused the WebSocket handshake: ``status`` is the HTTP answer a browser got
    (403 for a websocket.close before accept), ``code`` the close code the app gave."""

    def __init__(self, status: int, code: int | None = None, reason: str = "",
                 headers=(), body: bytes = b""):
        detail = f"close code {code}" if code is not None else "no close code"
        super().__init__(f"the app refused the WebSocket: HTTP {status} ({detail}"
                         + (f", {reason!r}" if reason else "") + ")")
        self.status, self.code, self.reason = status, code, reason
        self.headers, self.body = Headers(headers), body

# %% [markdown]
# Its message is written for the person reading a failed test: the HTTP status a browser
# would have seen, and the close code the app chose.

# %%
print(WebSocketDenied(403, 4404))

# %% [markdown]
# `WebSocketDisconnect` is the ending after the conversation began. It has the same name
# and fields (`code`, `reason`) as Starlette's, so a test reads the same against either.

# %%
#| export
class WebSocketDisconnect(Exception):
    """The app closed the WebSocket; ``code`` and ``reason`` are what it sent."""

    def __init__(self, code: int = 1000, reason: str = ""):
        super().__init__(f"the app closed the WebSocket with code {code}"
                         + (f" ({reason!r})" if reason else ""))
        self.code, self.reason = code, reason

# %% [markdown]
# First an app to talk to, written against the bare ASGI messages, so that each part of
# the client can be tried on it as soon as it exists. It accepts `shout` as a
# subprotocol if offered, answers text in capitals and bytes reversed, refuses any path but
# `/ws` by closing before accepting, and closes with 4000 when told `bye`.

# %%
async def shouter(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] != "/ws":
        return await send({"type": "websocket.close", "code": 4404})
    chosen = "shout" if "shout" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") == "bye":
            return await send({"type": "websocket.close", "code": 4000, "reason": "you said bye"})
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})

# %% [markdown]
# `WebSocketSession` runs one `websocket` scope. Unlike an HTTP exchange, messages travel
# both ways for as long as the test likes, so it has two queues. Messages to the app go
# into an `asyncio.Queue` on the portal's loop (`inbox`), put there with `call_soon`
# because asyncio objects belong to their loop's thread. Messages from the app come back
# through a `queue.Queue` (`outbox`), read with a timeout, as for HTTP.

# %%
#| export
class WebSocketSession:
    """One WebSocket to an ASGI app, driven from the caller's thread. The app's receive()
    reads ``inbox`` (an asyncio queue on the portal's loop); what it sends goes to
    ``outbox`` (a thread-safe queue the caller reads with a timeout)."""

    def __init__(self, client, scope: dict):
        self.client, self.scope, self.timeout = client, scope, client.timeout
        self.inbox, self.outbox = asyncio.Queue(), queue.Queue()
        self.accepted_subprotocol, self.accept_headers = None, Headers()
        self.closed = self.app_accepted = self.app_told = False

# %% [markdown]
# The app hears that the conversation is over exactly once, whoever closed first.
# `_tell_app` is the one place that puts a `websocket.disconnect` in its queue; it runs on
# the loop's thread and keeps a flag, so a second ending is dropped.

# %%
#| export
def _tell_app(self, code: int, reason: str = "") -> None:
    """Queue the app's one websocket.disconnect (run on the portal loop's thread)."""
    if not self.app_told:
        self.app_told = True
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

WebSocketSession._tell_app = _tell_app

# %% [markdown]
# `_run` is the coroutine the portal runs: the app, with `inbox.get` as its `receive` and
# a `send` that drops each message into `outbox`. As with HTTP, an `AppEnded` marker
# follows whatever the app did. When the app returns without closing, the session will
# report a normal closure (1000), which is what a server sends then; when it raises, the
# test gets the exception.
#
# `send` also plays the client's part of the closing handshake. A real client that gets
# a Close frame answers with one (RFC 6455 §5.5.1: an endpoint that receives a Close and
# has not sent one "MUST send a Close frame in response"), and the server then hands the
# app `websocket.disconnect` with that code (ASGI WebSocket spec, "Disconnect -
# receive event"). So once the app has accepted and then closes with code c, its next
# `receive()` returns the disconnect with c, at once, as it would behind a real server.

# %%
#| export
async def _ws_run(self) -> None:
    async def send(message):
        kind = message.get("type")
        if kind == "websocket.accept":
            self.app_accepted = True
        elif kind == "websocket.close" and self.app_accepted:   # the client echoes it
            self._tell_app(message.get("code", 1000))
        self.outbox.put(message)
    try:
        await self.client.app(self.scope, self.inbox.get, send)
    except Exception as error:
        self.outbox.put(AppEnded(error))
    else:
        self.outbox.put(AppEnded())

WebSocketSession._run = _ws_run

# %% [markdown]
# Two private helpers carry every message. `_to_app` is crossing ③ of the portal diagram
# (a function run on the loop's thread), `_from_app` is crossing ② (a read from the
# thread-safe queue, with a timeout).

# %%
#| export
def _ws_to_app(self, message: dict) -> None:
    if self.closed:
        raise RuntimeError("this WebSocket is closed")
    self.portal.call_soon(self.inbox.put_nowait, message)

def _ws_from_app(self, waiting_for: str) -> dict:
    message = next_message(self.outbox, self.timeout, waiting_for)
    if isinstance(message, AppEnded):
        self.closed = True
        if message.error is not None:
            raise message.error
        return {"type": "websocket.close", "code": 1000}   # returned: a normal closure
    return message

WebSocketSession._to_app, WebSocketSession._from_app = _ws_to_app, _ws_from_app

# %% [markdown]
# The handshake. The client sends `websocket.connect` and reads the app's first message.
# `websocket.accept` opens the conversation, and its subprotocol must be one the client
# offered: RFC 6455 §4.1 tells a client to fail the connection otherwise, so the test
# client does too. `websocket.close` is the 403. `websocket.http.response.start` is a
# denial response, whose body follows in `websocket.http.response.body` messages.

# %%
#| export
def _connect(self) -> None:
    """websocket.connect, then the app's answer: accept, close (403) or a denial response."""
    self._to_app({"type": "websocket.connect"})
    message = self._from_app("websocket.accept")
    kind = message["type"]
    if kind == "websocket.accept":
        offered, chosen = self.scope["subprotocols"], message.get("subprotocol")
        if chosen is not None and chosen not in offered:   # RFC 6455 §4.1: fail it
            raise WebSocketDenied(500, reason=f"the app chose subprotocol {chosen!r}, "
                                              f"which the client did not offer ({offered})")
        self.accepted_subprotocol = chosen
        self.accept_headers = Headers(decode_headers(message.get("headers", [])))
        return
    self.closed = True
    self._refused(message)

WebSocketSession._connect = _connect

# %% [markdown]
# An accepted session keeps what the app chose: `accepted_subprotocol`, and any extra
# headers the app put in `websocket.accept` (a server would add them to its `101`), as
# `accept_headers`.
#
# Any first message other than `websocket.accept` ends the session before it began.
# `_refused` turns it into a `WebSocketDenied` with the status a browser would have seen,
# reading the body of a denial response first.

# %%
#| export
def _refused(self, message: dict) -> None:
    """Raise WebSocketDenied for a refused handshake (or RuntimeError for a wrong message)."""
    kind = message["type"]
    if kind == "websocket.close":     # ASGI: a close before accept is an HTTP 403
        raise WebSocketDenied(403, message.get("code", 1000), message.get("reason") or "")
    if kind == "websocket.http.response.start":   # the Denial Response extension
        body, part = b"", {"more_body": True}
        while part.get("more_body", False):
            part = self._from_app("websocket.http.response.body")
            body += part.get("body", b"")
        raise WebSocketDenied(message["status"], headers=decode_headers(message["headers"]),
                              body=body)
    raise RuntimeError(f"ASGI WebSocket spec: the first message is websocket.accept or "
                       f"websocket.close, not {kind!r}")

WebSocketSession._refused = _refused

# %% [markdown]
# The session is a context manager. Entering it borrows a portal, starts the app and does
# the handshake. If the handshake fails (refused, or timed out), the app is ended at once,
# so a refused session leaves nothing running.

# %%
#| export
def _ws_enter(self) -> "WebSocketSession":
    self.portal, self.owned = self.client._borrow_portal()
    self.future = self.portal.submit(self._run())
    try:
        self._connect()
    except BaseException:
        self._finish()
        raise
    return self

# %% [markdown]
# Leaving closes the socket with 1000 if nobody has closed it yet, waits for the app to
# return, and then looks for an error the app raised after the test stopped looking: that
# one must not vanish either. It is raised only if the block itself ended cleanly, so it
# never hides the test's own failure.

# %%
#| export
def _ws_exit(self, *exc_info) -> None:
    if not self.closed:
        self.close(1000)
    self._finish()
    unseen = [m for m in _drain(self.outbox) if isinstance(m, AppEnded) and m.error]
    if unseen and self.client.raise_app_exceptions and exc_info[0] is None:
        raise unseen[0].error

WebSocketSession.__enter__, WebSocketSession.__exit__ = _ws_enter, _ws_exit

# %% [markdown]
# Both call `_finish`, the one place that ends the app: wait for it to return, cancel it
# if it will not, and stop the portal if the session owned it. An exception from the
# future is not raised here, because `_run` already put it in the outbox, where the
# reader will find it.

# %%
#| export
def _finish(self) -> None:
    """Wait for the app to return (cancel it if it will not), then release the loop."""
    try:
        self.future.result(self.timeout)
    except Exception:
        self.future.cancel()               # its errors come through the outbox
    finally:
        if self.owned:
            self.portal.stop()

WebSocketSession._finish = _finish

# %% [markdown]
# `_drain` empties the queue without waiting, which is how `__exit__` finds an error
# nobody has read yet.

# %%
#| export
def _drain(outbox: queue.Queue) -> list:
    messages = []
    while not outbox.empty():
        messages.append(outbox.get_nowait())
    return messages

# %% [markdown]
# Sending is putting a `websocket.receive` message in the app's queue: `text` for a text
# frame, `bytes` for a binary one (RFC 6455 §5.6); JSON goes as text. `close` tells the
# app `websocket.disconnect` with the code, through `_tell_app`, so a client that closes
# after the app did adds nothing the app has not heard.

# %%
#| export
def _send_text(self, text: str) -> None:
    self._to_app({"type": "websocket.receive", "text": text})

def _send_bytes(self, data: bytes) -> None:
    self._to_app({"type": "websocket.receive", "bytes": bytes(data)})

def _send_json(self, data) -> None:
    self.send_text(jsonlib.dumps(data))

def _close(self, code: int = 1000, reason: str = "") -> None:
    """The client closes: the app's next receive() is websocket.disconnect with ``code``."""
    if self.closed:
        raise RuntimeError("this WebSocket is closed")
    self.portal.call_soon(self._tell_app, code, reason)
    self.closed = True

WebSocketSession.send_text, WebSocketSession.send_bytes = _send_text, _send_bytes
WebSocketSession.send_json, WebSocketSession.close = _send_json, _close

# %% [markdown]
# With `close`, the session can open and shut by hand, with a scope built the way an
# HTTP one was (leaving the block closes with 1000). The handshake with `shouter`
# succeeds on `/ws` and is refused elsewhere:

# %%
ws_client = TestClient(shouter)

def handshake(path):
    request = ws_client.build_request("GET", path)
    return WebSocketSession(ws_client, ws_client.asgi_scope("websocket", request))

with handshake("/ws") as ws:
    print("accepted:", not ws.closed)
try:
    with handshake("/elsewhere") as ws:
        print("never printed")
except WebSocketDenied as denied:
    print("WebSocketDenied:", denied)

# %% [markdown]
# The first session was accepted and closed quietly at the end of its block. The second
# never reached its body: `shouter` closed before accepting, and the test read that as a
# browser would, a 403, with the app's close code alongside. The session can open, send
# and close, but it cannot hear the app yet: that is the last piece.
#
# Receiving reads the app's next `websocket.send`. A `websocket.close` becomes
# `WebSocketDisconnect`. `receive_text` and `receive_bytes` check the frame type, because
# a test that expects text and gets bytes has found a bug.

# %%
#| export
def _receive(self) -> dict:
    """The next websocket.send from the app; WebSocketDisconnect if the app closed."""
    message = self._from_app("websocket.send")
    if message["type"] == "websocket.close":
        self.closed = True
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
    if message["type"] != "websocket.send":
        raise RuntimeError(f"expected websocket.send, got {message['type']!r}")
    return message

WebSocketSession.receive = _receive

# %% [markdown]
# `receive` hands back the raw message, a dict. Most tests know which kind of frame they
# expect, so three typed readers sit on top of it; each one fails loudly on the other kind.

# %%
#| export
def _receive_text(self) -> str:
    message = self.receive()
    if message.get("text") is None:
        raise TypeError(f"expected a text message, got bytes: {message.get('bytes')!r:.60}")
    return message["text"]

def _receive_bytes(self) -> bytes:
    message = self.receive()
    if message.get("bytes") is None:
        raise TypeError(f"expected a binary message, got text: {message.get('text')!r:.60}")
    return message["bytes"]

WebSocketSession.receive_text = _receive_text
WebSocketSession.receive_bytes = _receive_bytes
WebSocketSession.receive_json = lambda self: jsonlib.loads(self.receive_text())

# %% [markdown]
# Now the session can talk. One exchange by hand, then a binary frame where the test
# expects text, which is refused with the bytes in the message:

# %%
with handshake("/ws") as ws:
    ws.send_text("hello")
    print(ws.receive_text())
    ws.send_bytes(b"abc")
    try:
        ws.receive_text()
    except TypeError as error:
        print("TypeError:", error)

# %% [markdown]
# The text came back in capitals. The bytes did not come back as text: `receive_text`
# refused them, and its message shows what arrived instead (`b'cba'`, reversed), which is
# what you would want to read if a test of yours had mixed the two up.
#
# Last, the client method, so that a test never builds a scope by hand. It builds the
# request like any other (so cookies and headers go along), adds the handshake headers a
# browser sends (RFC 6455 §4.1; the key is the RFC's own sample, since nobody checks it
# in-process), offers the subprotocols, and returns a session for a `with` block. A WSGI
# app gets a clear refusal instead.

# %%
#| export
def websocket_connect(self, path: str, *, subprotocols=(), headers=None, params=None,
                      cookies=None) -> WebSocketSession:
    """``with client.websocket_connect("/ws") as ws:`` runs an ASGI websocket scope."""
    if self.kind != "asgi":
        raise TypeError("WebSockets need ASGI: a WSGI app answers one request with one "
                        "response and has no way to keep talking (PEP 3333)")
    fields = list(headers.items() if hasattr(headers, "items") else headers or ())
    fields += [("connection", "upgrade"), ("upgrade", "websocket"),
               ("sec-websocket-version", "13"),
               ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]   # RFC 6455 §1.3's sample
    if subprotocols:
        fields.append(("sec-websocket-protocol", ", ".join(subprotocols)))
    request = self.build_request("GET", path, params=params, headers=fields, cookies=cookies)
    return WebSocketSession(self, self.asgi_scope("websocket", request))

TestClient.websocket_connect = websocket_connect

# %% [markdown]
# Nothing happens when `websocket_connect` returns: the session is built but not open.
# The handshake waits for `with`, so that the block's end always closes what its start
# opened, and a refusal surfaces as an exception on the `with` line, where a reader
# expects it.
#
# Now a whole conversation, written as a test would write it: a function that takes a
# client, asks for the `shout` subprotocol, sends a text frame, a binary frame and JSON
# (which goes as text and comes back in capitals), then says `bye` and catches the app's
# close. It returns what it saw, so the result can be read, and compared later.

# %%
def shout_conversation(client):
    with client.websocket_connect("/ws", subprotocols=["shout"]) as ws:
        seen = [ws.accepted_subprotocol]
        ws.send_text("hello"); seen.append(ws.receive_text())
        ws.send_bytes(b"\x01\x02\x03"); seen.append(ws.receive_bytes())
        ws.send_json({"quiet": True}); seen.append(ws.receive_text())
        ws.send_text("bye")
        try:
            ws.receive_text()
        except WebSocketDisconnect as closed:
            seen.append((closed.code, closed.reason))
    return seen

shout_conversation(TestClient(shouter))

# %% [markdown]
# Read it left to right: `shout` was agreed, `HELLO` came back in capitals, the three
# bytes reversed, the JSON shouted (`TRUE` is no longer valid JSON, which is why it was
# read with `receive_text`), and last the close, with the app's code 4000 and its reason.
# A refused handshake raises `WebSocketDenied` when the `with` opens, as `handshake` showed.
#
# The same code works on Starlette, whose WebSocket class speaks the same messages:

# %%
from starlette.routing import WebSocketRoute

async def starlette_echo(websocket):
    await websocket.accept()
    await websocket.send_text(f"echo: {await websocket.receive_text()}")
    await websocket.close(1000)

with TestClient(Starlette(routes=[WebSocketRoute("/ws", starlette_echo)])).websocket_connect("/ws") as ws:
    ws.send_text("hi")
    print(ws.receive_text())

# %% [markdown]
# Now the closing handshake from the app's side. `closer` accepts, closes with 4001 and
# then does what a framework does after its own close: it calls `receive()` once more, to
# hear the client's answer, and keeps what it got. Look at the code it hears.

# %%
async def closer(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4001})
    heard.append(await receive())

heard = []
with TestClient(closer).websocket_connect("/ws") as ws:
    try:
        ws.receive_text()
    except WebSocketDisconnect as closed:
        print("the test saw:", closed.code)
print("the app heard:", heard)

# %% [markdown]
# The app's last `receive()` returned at once, with its own 4001 echoed back, as a
# browser would have answered. Without the echo it would wait for an answer that never
# comes, until the session gave up on it.
#
# And an app that never answers the handshake fails the test after the timeout, instead
# of freezing the notebook. The message says the client was waiting for
# `websocket.accept`:

# %%
async def silent(scope, receive, send):
    await asyncio.sleep(3600)

try:
    with TestClient(silent, timeout=0.3).websocket_connect("/ws") as ws:
        pass
except TimeoutError as error:
    print("TimeoutError:", error)

# %% [markdown]
# That completes the client: requests, streams, sessions and WebSockets, for any WSGI or
# ASGI app, with a timeout on every wait.
#
# ## A test runner in about 70 lines
#
# **On the map:** ⑤, the box on the left. The client is done; now something has to call
# your tests and hand each one a client.
#
# pytest does three things a notebook can do too: it **collects** functions whose names
# start with `test_`, it **injects fixtures** (a test that takes a `client` parameter gets
# whatever the `client` fixture makes), and it **reports** each outcome with the assert
# that failed. Here is each, small.
#
# An outcome first. pytest tells a *failure* (an `assert` was false) from an *error*
# (anything else went wrong); so does `TestResult`. Its `repr` is one line of the report.

# %%
#| export
class TestResult:
    """One test's outcome: "passed", "failed" (an assert) or "error" (anything else)."""

    __test__ = False

    def __init__(self, name: str, outcome: str, message: str = ""):
        self.name, self.outcome, self.message = name, outcome, message

    def __repr__(self) -> str:
        line = f"{self.outcome.upper():<7} {self.name}"
        return line + (f"\n        {self.message}" if self.message else "")

# %% [markdown]
# `__test__ = False` again: the name starts with `Test`, and pytest must not try to collect
# it. Two of them, to see the layout: the outcome in capitals, the name, and the message
# indented under it:

# %%
print(TestResult("test_ok", "passed"))
print(TestResult("test_broken", "failed", "expected 200, got 404"))

# %% [markdown]
# The padding lines the names up, so a column of outcomes can be read at a glance, and a
# passing test takes one line.
#
# `TestReport` holds the list. `ok` is what a check would assert on, and the last line
# counts each outcome, the way pytest's summary line does.

# %%
#| export
class TestReport:
    """What ``run_tests`` found: one TestResult per test, and a one-line tally."""

    __test__ = False

    def __init__(self, results: list):
        self.results = results

    @property
    def ok(self) -> bool:
        return all(r.outcome == "passed" for r in self.results)

    def tally(self) -> str:
        counts = Counter(r.outcome for r in self.results)
        return ", ".join(f"{counts[o]} {o}" for o in ("passed", "failed", "error") if counts[o])

    def __repr__(self) -> str:
        return "\n".join([*map(repr, self.results), f"== {self.tally() or 'no tests'} =="])

# %% [markdown]
# `describe_failure` writes the message. pytest rewrites `assert` statements to show the
# values on each side; without that, the next best thing for a bare `assert` is the line
# of source that failed, which `traceback` can find. An `assert` with a message shows the
# message, and any other exception shows its type.

# %%
#| export
def describe_failure(error: BaseException) -> str:
    """An assert's message, or for a bare assert the line that failed; else Type: text."""
    if isinstance(error, AssertionError):
        line = traceback.extract_tb(error.__traceback__)[-1].line
        return str(error) or f"assert failed: {line}"
    return f"{type(error).__name__}: {error}"

# %% [markdown]
# A report built by hand from three outcomes, one of each kind, with messages written by
# `describe_failure` from real exceptions:

# %%
def bare_assert():
    assert 1 + 1 == 3

def missing_key():
    return {}["missing"]

def describe(function):
    try:
        function()
    except Exception as error:
        return describe_failure(error)

TestReport([TestResult("test_a", "passed"),
            TestResult("test_b", "failed", describe(bare_assert)),
            TestResult("test_c", "error", describe(missing_key))])

# %% [markdown]
# The bare `assert` reported its own source line, `assert 1 + 1 == 3`, which is most of
# what pytest's rewriting would have told you. The `KeyError` is an *error*, not a
# failure: the test did not get as far as checking anything. The last line is the tally.
#
# Fixtures. A fixture is a function named like the parameter it fills. It may ask for
# other fixtures the same way, and it may `yield` its value instead of returning it: then
# the code after `yield` is its teardown, run when the test is over, pass or fail.
#
# `call_with_fixtures` reads the parameter names with `inspect.signature`, makes each
# fixture (recursively, since a fixture may have parameters of its own), and calls the
# function. An `ExitStack` collects the teardowns, and `made` makes sure each fixture runs
# once per test even when two others both ask for it.

# %%
#| export
def call_with_fixtures(function, fixtures: dict, stack: ExitStack, made: dict):
    """Call ``function`` with each parameter taken from the fixture of that name. A fixture
    may ask for other fixtures; one that yields is torn down when ``stack`` closes."""
    arguments = {}
    for name in inspect.signature(function).parameters:
        if name not in made:
            if name not in fixtures:
                raise LookupError(f"no fixture named {name!r} (known: {', '.join(fixtures)})")
            made[name] = call_with_fixtures(fixtures[name], fixtures, stack, made)
        arguments[name] = made[name]
    result = function(**arguments)
    if inspect.isgenerator(result):
        stack.callback(_teardown, result)
        return next(result)
    return result

# %% [markdown]
# A fixture that yields is a generator: `next` ran it up to its `yield` and took the
# value. `_teardown`, registered on the stack, runs the rest. If the generator yields a
# second time, the fixture is wrong, and the runner says so instead of quietly ignoring
# half of it.

# %%
#| export
def _teardown(generator) -> None:
    """Run a yield fixture to its end: the code after ``yield`` is its teardown."""
    for _ in generator:
        raise RuntimeError("a fixture must yield exactly once")

# %% [markdown]
# A fixture that yields, and one that asks for it. Watch the order of the lines: setup,
# then the test, then the teardown when the `ExitStack` closes:

# %%
def numbers():
    print("setup: make the list")
    yield [1, 2, 3]
    print("teardown: throw it away")

def total(numbers):
    return sum(numbers)

fixtures = {"numbers": numbers, "total": total}
with ExitStack() as stack:
    print("the test sees", call_with_fixtures(lambda total: total, fixtures, stack, {}))

# %% [markdown]
# `setup` printed first, then the value the test saw (6, the total of the fixture's
# list, made through `total`, which asked for `numbers`), then `teardown` as the
# `ExitStack` closed.
#
# And the runner, in two parts. `_run_one` runs one test with fresh fixtures and turns
# however it ended into a `TestResult`: an `AssertionError` is a failure, any other
# exception an error. It never raises, because a report that stops at the first failure
# would hide the others.

# %%
#| export
def _run_one(name: str, function, fixtures: dict) -> TestResult:
    """One test with fresh fixtures, torn down when it ends; the outcome, never an exception."""
    try:
        with ExitStack() as stack:
            call_with_fixtures(function, fixtures, stack, {})
    except AssertionError as failure:
        return TestResult(name, "failed", describe_failure(failure))
    except Exception as error:
        return TestResult(name, "error", describe_failure(error))
    return TestResult(name, "passed")

# %% [markdown]
# `run_tests` is collection plus that: every function whose name starts with `test_`, in
# the order the namespace holds them, which for `globals()` is the order they were
# defined.

# %%
#| export
def run_tests(namespace: dict, fixtures: dict | None = None) -> TestReport:
    """Run every function named ``test_*`` in ``namespace`` (say ``globals()``), in the order
    they were defined, each with fresh fixtures; report, never raise."""
    tests = [(name, function) for name, function in list(namespace.items())
             if name.startswith("test_") and inspect.isfunction(function)]
    return TestReport([_run_one(name, function, fixtures or {}) for name, function in tests])

# %% [markdown]
# ### Tests for the notes apps
#
# Now the tests. Each takes a `client` and checks one behaviour of the notes app. Nothing
# in them says WSGI or ASGI, in-process or network: that is the fixture's business.

# %%
def test_hello_uses_the_query(client):
    response = client.get("/hello", params={"name": "Ada"})
    assert response.status_code == 200, response.status_code
    assert response.text == "Hello, Ada!\n", response.text

def test_json_round_trip(client):
    assert client.post("/echo", json={"n": [1, 2]}).json() == {"n": [1, 2]}

def test_invalid_json_is_a_400(client):
    response = client.post("/echo", content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400, f"got {response.status_code}"

# %% [markdown]
# Each `assert` carries the value it checked as its message (`response.status_code`,
# `response.text`), because the runner has no pytest to rewrite it: when one fails, the
# report shows what came back instead of just the line.
#
# Three more: the cookie round trip (log in, be known, log out, be forgotten), the stream,
# and `HEAD`, which must answer with headers and no body.

# %%
def test_login_cookie_persists_then_goes(client):
    assert client.get("/me").json() == {"user": None}
    client.post("/login", data={"user": "ada"})
    assert client.get("/me").json() == {"user": "ada"}
    client.post("/logout")
    assert "user" not in client.cookies, client.cookies

def test_count_streams_three_lines(client):
    assert client.get("/count").text == "1\n2\n3\n"

def test_head_has_no_body(client):
    response = client.head("/hello")
    assert response.status_code == 200 and response.content == b""

# %% [markdown]
# None of the six says how the client was made. That is the fixture's job, and swapping
# it is how the same tests will reach a different app, or a real server.
#
# A fixture that makes an in-process client for whichever app `app_under_test` names,
# inside a session, with validation on. It yields, so the session's `__exit__` (and for
# ASGI the lifespan shutdown) runs after each test. Then the run, against the WSGI app:

# %%
app_under_test = notes_wsgi

def in_process():
    with TestClient(app_under_test, validate=True) as session:
        yield session

run_tests(globals(), {"client": in_process})

# %% [markdown]
# Six passed, in the order they were written. Each one got a fresh client from the
# fixture, inside its own session, so the cookie test started with an empty jar no matter
# what ran before it. The same tests, the same fixture, the ASGI app:

# %%
app_under_test = notes_asgi
run_tests(globals(), {"client": in_process})

# %% [markdown]
# And a test that fails, to see a report that says something. A bare `assert` shows its
# line; one with a message shows the message:

# %%
def wrong_greeting(client):
    assert client.get("/hello").text == "Hi!\n"

def wrong_status(client):
    assert client.get("/nowhere").status_code == 200, "expected /nowhere to exist"

run_tests({"test_wrong_greeting": wrong_greeting, "test_wrong_status": wrong_status},
          {"client": in_process})

# %% [markdown]
# Two failures, each with what you need to start looking: the line of the bare `assert`,
# and the message of the other. Neither stopped the run.
#
# The namespace can be any dict, not just `globals()`. Here it holds only these two, under
# `test_` names, while the functions themselves are named so that the runs below, which
# collect from `globals()`, do not pick them up.
#
# ## The same tests over a real socket
#
# **On the map:** the fork in `open_stream` gets a third branch. `SocketClient` keeps ① and
# ④ and replaces the in-process middle with a real server and a real socket.
#
# The tests only ever call `client.get`, `client.post`, `client.head`, `client.cookies`.
# Any object with those can run them. `SocketClient` is a `BaseClient` whose
# `open_stream` sends the request over the network with `barelab.http_request`, to a
# running server. It shares everything else with `TestClient`: the request building and
# the cookie jar. Its base URL is the server's own, so `Host` names the real address.

# %%
#| export
class SocketClient(BaseClient):
    """TestClient's interface over a real socket: each request is one barelab.http_request
    to a running server, so the same tests can run in-process and over the network."""

    __test__ = False

    def __init__(self, server, *, headers=(), cookies=None, timeout: float = TIMEOUT):
        super().__init__(server.url, headers, cookies, timeout)
        self.server = server

    def __repr__(self) -> str:
        return f"<SocketClient {self.server.url}>"

# %% [markdown]
# Its `open_stream` is the whole difference. It puts the query back on the path, sends the
# request's own headers and body, and wraps the answer in the same `StreamingResponse`.
# `barelab.http_request` reads each response whole, so this "stream" is one chunk, and
# there is nothing to tell the server on close.

# %%
#| export
def _socket_open_stream(self, request: Request) -> StreamingResponse:
    target = request.path + (f"?{request.query}" if request.query else "")
    result = http_request(self.server, request.method, target, headers=request.headers,
                          body=request.body, timeout=self.timeout)
    return StreamingResponse(result.status, result.headers, iter([result.body]),
                             lambda done: None)

SocketClient.open_stream = _socket_open_stream

# %% [markdown]
# Serve the WSGI app on chapter 06's server and the ASGI app on chapter 13's, both through
# `barelab.serve(app, server=...)`. The two clients print the addresses they will talk to:

# %%
from barelab.built.asgi_server import ASGIServer
from barelab.built.wsgi_server import WSGIServer

wsgi_server = barelab.serve(notes_wsgi, server=WSGIServer, name="notes-wsgi")
asgi_server = barelab.serve(notes_asgi, server=ASGIServer, name="notes-asgi")
print(SocketClient(wsgi_server), SocketClient(asgi_server))

# %% [markdown]
# Two real addresses on `127.0.0.1`, with ports the system chose. From here on, nothing is
# in-process: every request is bytes on a socket.
#
# A fixture that makes a `SocketClient` for the server `server_under_test` names. It
# returns instead of yielding: the server runs for the whole chapter, so there is
# nothing to set up or tear down per test, only a fresh client with an empty jar. Then the
# same six tests, over the network, on both servers:

# %%
def over_the_network():
    return SocketClient(server_under_test)

server_under_test = wsgi_server
print(run_tests(globals(), {"client": over_the_network}))
server_under_test = asgi_server
run_tests(globals(), {"client": over_the_network})

# %% [markdown]
# Twelve more passes. Each request crossed a socket, went through a parser from chapter 02
# and a server from chapter 06 or 13, and came back as bytes. The tests did not change by
# one character, and neither did the apps. The servers' logs show every request. Here is
# the ASGI server's: first its lifespan probe, which `notes_asgi` refused, so the server
# went on without one; then one line per request the six tests made, the `HEAD` among them:

# %%
asgi_server.log

# %% [markdown]
# Nine requests from six tests (the cookie test alone made four), each with the status and
# the body size the server wrote. The `HEAD` line shows `0B`: the server dropped the body,
# as the test client did in-process.
#
# ### A difference, found on purpose
#
# In-process and over the network are not the same thing, and a test can tell them apart.
# Look at the headers of one streamed response both ways, first from the test client and
# then from chapter 06's server:

# %%
print(TestClient(notes_wsgi).get("/count").headers)
print(SocketClient(wsgi_server).get("/count").headers)

# %% [markdown]
# The app sent one header. Over the network there are four more, and every one of them is
# the server's work:
#
# - `Transfer-Encoding: chunked`: the body was a generator of unknown length, so chapter
#   06's server framed it in chunks (RFC 9112 §7.1). In-process there is no framing at all.
# - `Date`: RFC 9110 §6.6.1 says an origin server with a clock must send it.
# - `Server` and `Connection: close` (the client asked to close after one response).
#
# So a test about *those* headers passes over the socket and fails in-process:

# %%
def test_response_is_dated(client):
    assert "date" in client.get("/hello").headers, "no Date header (RFC 9110 §6.6.1)"

app_under_test, server_under_test = notes_wsgi, wsgi_server
only_this = {"test_response_is_dated": test_response_is_dated}
print("in-process:", run_tests(only_this, {"client": in_process}), sep="\n")
print("over the network:", run_tests(only_this, {"client": over_the_network}), sep="\n")

# %% [markdown]
# One test, two verdicts: `FAILED` in-process, with the message the test wrote, and
# `PASSED` over the network. That is not a bug in either client. The in-process client tests **the app**; `Date`,
# framing and connection handling are **the server's** job, so testing them means testing
# a server, over a socket, as chapter 19 will do. The dividing line is the same one
# chapter 01 drew, between the app's answer and the server's bytes. `HEAD`, on the other
# hand, agreed both ways, because the test client does that server duty (dropping the
# body) on purpose: an app may produce a body for `HEAD`, and a test should not fail
# because of bytes no client will ever see.
#
# That new test now sits in `globals()`, where the earlier runs collect from. Remove it,
# so that running the notebook again shows the six tests above and nothing else:

# %%
del test_response_is_dated
sorted(name for name in globals() if name.startswith("test_"))

# %% [markdown]
# The six from before, and no seventh: a second run of the notebook will report exactly
# what the first one did.
#
# ### WebSockets over the socket
#
# The HTTP tests ran both ways, and where they differed, the difference was the server's
# work. A WebSocket test should run both ways too: `TestClient` has
# `websocket_connect`, so `SocketClient` needs one with the same arguments, handing back a
# session with the same methods and raising the same two exceptions. Then a test written
# against `ws.send_text` and `ws.receive_text` cannot tell which client it was given.
#
# Nothing new has to be written about frames. `barelab.websocket_connect`, the client
# chapter 15 talked to its server with, already speaks RFC 6455 over a socket (through
# wsproto): it sends the upgrade request, checks the `101`, masks and unmasks frames,
# answers pings and finishes the closing handshake. What is missing is a thin layer that makes it look like a `WebSocketSession`.
# The imports come first; `open_websocket` is barelab's function under a name that does not
# clash with the client's method.

# %%
#| export
from barelab.client import WebSocketClosed, WebSocketRejected
from barelab.client import websocket_connect as open_websocket

# %% [markdown]
# `SocketWebSocketSession` keeps what the handshake needs until the `with` block opens it,
# just as the in-process session waits for `__enter__` before it sends
# `websocket.connect`. `socket` is barelab's `WebSocketClient` once the handshake is done.
# One attribute is thinner than in-process: `accept_headers` stays empty, because barelab's
# client keeps the subprotocol from the `101` but not its other headers.

# %%
#| export
class SocketWebSocketSession:
    """WebSocketSession's interface over a real socket: barelab.websocket_connect does the
    handshake and the frames; this class gives its answers the in-process session's shape."""

    def __init__(self, client, target: str, headers: list, subprotocols):
        self.client, self.target, self.headers = client, target, headers
        self.subprotocols = list(subprotocols)
        self.accepted_subprotocol, self.accept_headers = None, Headers()
        self.socket, self.closed = None, False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self.socket else "not open yet"
        return f"<SocketWebSocketSession {self.target} ({state})>"

# %% [markdown]
# Entering the block is the handshake. A server that refuses answers with an HTTP status
# instead of `101`, and barelab raises `WebSocketRejected`; the session turns that into the
# `WebSocketDenied` a test already expects, with the status, headers and body the server
# sent. There is no close code to pass on: only the HTTP response crossed the wire.

# %%
#| export
def _socket_ws_enter(self) -> "SocketWebSocketSession":
    try:
        self.socket = open_websocket(self.client.server, self.target, headers=self.headers,
                                     subprotocols=self.subprotocols, timeout=self.client.timeout)
    except WebSocketRejected as refused:
        self.closed = True
        raise WebSocketDenied(refused.status, headers=refused.headers, body=refused.body) from None
    self.accepted_subprotocol = self.socket.subprotocol
    return self

SocketWebSocketSession.__enter__ = _socket_ws_enter

# %% [markdown]
# `close` sends a close frame with the code and waits for the server's answering one, the
# closing handshake of RFC 6455 §7. Leaving the block closes with 1000, as the in-process
# session does; closing twice is harmless, since barelab's client ignores the second.

# %%
#| export
def _socket_ws_close(self, code: int = 1000, reason: str = "") -> None:
    """Send a close frame with ``code`` and wait for the server's (RFC 6455 §5.5.1)."""
    if self.socket is not None:
        self.socket.close(code, reason)
    self.closed = True

SocketWebSocketSession.close = _socket_ws_close
SocketWebSocketSession.__exit__ = lambda self, *exc_info: self.close(1000)

# %% [markdown]
# `receive` is the one real translation. barelab hands back a `str` for a text frame and
# `bytes` for a binary one, and raises `WebSocketClosed` when the server's close frame
# arrives. The session rewrites those as the ASGI-shaped message and the
# `WebSocketDisconnect` that the in-process `receive` produces, so the typed readers
# written for `WebSocketSession` (`_receive_text`, `_receive_bytes`) work here unchanged.

# %%
#| export
def _socket_ws_receive(self) -> dict:
    """The next message, shaped like the app's websocket.send; WebSocketDisconnect on close."""
    try:
        data = self.socket.receive()
    except WebSocketClosed as closed:
        self.closed = True
        raise WebSocketDisconnect(closed.code, closed.reason) from None
    key = "text" if isinstance(data, str) else "bytes"
    return {"type": "websocket.send", key: data}

SocketWebSocketSession.receive = _socket_ws_receive

# %% [markdown]
# The rest is borrowed. Sending goes straight to barelab's client; `send_json` and the
# three typed readers are the very functions `WebSocketSession` uses, attached to a second
# class. They only ever call `send_text` and `receive`, so they cannot tell the difference.

# %%
#| export
SocketWebSocketSession.send_text = lambda self, text: self.socket.send_text(text)
SocketWebSocketSession.send_bytes = lambda self, data: self.socket.send_bytes(bytes(data))
SocketWebSocketSession.send_json = _send_json
SocketWebSocketSession.receive_text = _receive_text
SocketWebSocketSession.receive_bytes = _receive_bytes
SocketWebSocketSession.receive_json = lambda self: jsonlib.loads(self.receive_text())

# %% [markdown]
# Last, the method on `SocketClient`, with `TestClient.websocket_connect`'s signature. It
# builds the request the usual way, so the client's headers, its cookie jar and `params=`
# all go along. It drops `Host`, because barelab's handshake writes its own, and the
# upgrade headers, because barelab writes those too (with a fresh random key, which a real
# server does check).

# %%
#| export
def _socket_websocket_connect(self, path: str, *, subprotocols=(), headers=None, params=None,
                              cookies=None) -> SocketWebSocketSession:
    """``with client.websocket_connect("/ws") as ws:`` over a real socket to the server."""
    request = self.build_request("GET", path, params=params, headers=headers, cookies=cookies)
    target = request.path + (f"?{request.query}" if request.query else "")
    fields = [(name, value) for name, value in request.headers if name.lower() != "host"]
    return SocketWebSocketSession(self, target, fields, subprotocols)

SocketClient.websocket_connect = _socket_websocket_connect

# %% [markdown]
# Now the WebSocket test from earlier, `shout_conversation`, written once and never
# changed, can run both ways. Chapter 13's `ASGIServer` answers HTTP only; chapter 15 gave
# it WebSockets as `WebSocketASGIServer`, the same server with an upgrade path. Serve
# `shouter` on it (`lifespan="off"`, since `shouter` speaks only WebSocket), and run the
# conversation in-process and then over the socket:

# %%
from barelab.built.websocket import WebSocketASGIServer

shout_server = barelab.serve(shouter, server=WebSocketASGIServer, name="shouter", lifespan="off")
print("in-process:      ", shout_conversation(TestClient(shouter)))
print("over the socket: ", shout_conversation(SocketClient(shout_server)))

# %% [markdown]
# Line for line the same: the subprotocol agreed, `HELLO` in capitals, the bytes reversed,
# the JSON shouted, and the close with the app's code and reason. Over the socket, every one of those went
# through the chapter 15 server as real frames: the close code 4000 and the reason `you
# said bye` travelled in a close frame (RFC 6455 §5.5.1) and came back out of wsproto.
#
# A refusal is where the two differ, and for the same reason the `Date` header did. Ask
# for a path `shouter` refuses, both ways:

# %%
for client in (TestClient(shouter), SocketClient(shout_server)):
    try:
        with client.websocket_connect("/elsewhere"):
            pass
    except WebSocketDenied as denied:
        print(f"{type(client).__name__:13} status {denied.status}, close code {denied.code}")

# %% [markdown]
# Both say 403, the status the ASGI WebSocket spec tells a server to answer a close before
# accept with. Only the in-process client knows the close code, 4404: it read the app's
# `websocket.close` message itself. Over the socket the handshake ended with an HTTP
# response, and an HTTP response has no place for a WebSocket close code, so the code
# stayed inside the server. A test that asserts on `denied.status` runs both ways; one that
# asserts on `denied.code` tests something only the app and the in-process client share.
# The server's log shows the two handshakes as the browser saw them, a `101` and a `403`:

# %%
shout_server.log

# %% [markdown]
# The `101` is the accepted conversation, the `403` the refusal. Nothing in the log
# mentions 4404: the close code lived and died inside the server.
#
# ## Summary
#
# The map from the start, every part built, with the socket branch added at the end:
#
# ```mermaid
# flowchart LR
#     X["⑤ run_tests + fixtures"] --> T["test_* functions"]
#     T --> B["① BaseClient + CookieJar"]
#     B --> O{"open_stream"}
#     O -- "TestClient, WSGI" --> W["② WSGIExchange"]
#     O -- "TestClient, ASGI" --> P["③ Portal: ASGIExchange,<br/>Lifespan, WebSocketSession"]
#     O -- "SocketClient" --> S["a real server<br/>(chapter 06, 13 or 15)"]
#     W --> R["④ StreamingResponse"]
#     P --> R
#     S --> R
# ```
#
# - A test client is a server's half of the spec played from a function call, plus a
#   client's half: `TestClient(app).get("/")` builds an environ or a scope, calls the app,
#   and returns a `Response` with `status_code`, `headers`, `content`, `text` and `json()`.
# - The WSGI half calls `start_response`-then-iterate-then-`close()` like chapter 06's
#   server, finds the status even when a generator calls `start_response` late, drops the
#   body for `HEAD`, and can check every call with `wsgiref.validate` (`validate=True`).
# - The ASGI half runs the app on a **portal**, a private event loop in a worker thread,
#   because the kernel's thread already runs a loop (`asyncio.run` fails there) and a
#   blocking test cannot wait on the loop it blocks. Messages cross threads through a
#   `queue.Queue`, and every wait has a timeout.
# - The `CookieJar` follows RFC 6265: paths (and `/docs` not matching `/docsearch`),
#   `Max-Age` over `Expires`, deletion by expiry, longer paths first, `Secure` only over
#   `https://`, `Domain` ignored for one host.
# - `client.stream(...)` hands out chunks as the app makes them and tells the app when the
#   test leaves early; `with TestClient(app)` runs the lifespan around a session;
#   `websocket_connect` holds a conversation and turns refusals and closes into
#   `WebSocketDenied` and `WebSocketDisconnect`.
# - `run_tests` collects `test_*` functions, fills parameters from fixtures (with `yield`
#   teardown) and reports failures with their message. The same tests ran in-process and
#   over the network against the course's servers; what differed was the server's work.
# - `SocketClient.websocket_connect` has `TestClient`'s signature and session methods,
#   built on barelab's wsproto client, so one WebSocket test ran in-process and against
#   chapter 15's server. Over the socket a refusal is only an HTTP 403: the app's close
#   code never leaves the server.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a test that finds a bug
#
# `buggy_notes` below is `notes_asgi` with one bug: its logout forgets to give the cookie a
# `Path`, so the browser's cookie (set with `Path=/`) survives. Write a test
# `check_logout_forgets(client)` that logs in as `ada`, logs out, and asserts that `/me`
# then answers `{"user": None}`. The check runs it against both apps: it must pass on
# `notes_asgi` and fail on `buggy_notes`.

# %%
async def buggy_notes(scope, receive, send):
    if scope["type"] == "http" and (scope["method"], scope["path"]) == ("POST", "/logout"):
        return await send_json(send, {"user": None}, headers=[("set-cookie", "user=; Max-Age=0; Path=/logout")])
    await notes_asgi(scope, receive, send)

# %% tags=["solution"]
def check_logout_forgets(client):
    ### BEGIN SOLUTION
    client.post("/login", data={"user": "ada"})
    client.post("/logout")
    assert client.get("/me").json() == {"user": None}, "still logged in after /logout"
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    good = run_tests({"test_logout": check_logout_forgets}, {"client": lambda: TestClient(notes_asgi)})
    bad = run_tests({"test_logout": check_logout_forgets}, {"client": lambda: TestClient(buggy_notes)})
    assert good.ok, f"your test fails on the correct app:\n{good}"
    assert not bad.ok, "your test passes on buggy_notes: does it check /me after logging out?"

# %% [markdown]
# ### Exercise 2 — a fixture that logs in
#
# Write a yield fixture `logged_in(client)` that logs in as `grace` with the client it is
# given, yields that client, and logs out afterwards. Then
# `run_tests({"test_me": who_am_i}, {"client": ..., "logged_in": logged_in})` can give a test
# a client that is already logged in.

# %% tags=["solution"]
def logged_in(client):
    ### BEGIN SOLUTION
    client.post("/login", data={"user": "grace"})
    yield client
    client.post("/logout")
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    seen = []
    def who_am_i(logged_in):
        seen.append((logged_in.get("/me").json(), logged_in))
    report = run_tests({"test_me": who_am_i},
                       {"client": lambda: TestClient(notes_wsgi), "logged_in": logged_in})
    assert report.ok, f"the test did not pass:\n{report}"
    assert seen[0][0] == {"user": "grace"}, f"/me said {seen[0][0]}, expected grace"
    assert "user" not in seen[0][1].cookies, "after the test, log out (the code after yield)"

# %% [markdown]
# ### Exercise 3 — a WebSocket counter
#
# Write an ASGI app `counter_ws` that accepts every WebSocket, answers each text message
# with the number of messages received so far (as text: `"1"`, `"2"`, ...), and closes
# with code 4001 when it receives the text `"stop"`. Check it yourself with
# `TestClient(counter_ws).websocket_connect("/")`.

# %% tags=["solution"]
async def counter_ws(scope, receive, send):
    ### BEGIN SOLUTION
    await receive()                                     # websocket.connect
    await send({"type": "websocket.accept"})
    count = 0
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") == "stop":
            return await send({"type": "websocket.close", "code": 4001})
        count += 1
        await send({"type": "websocket.send", "text": str(count)})
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    with TestClient(counter_ws, timeout=1.0).websocket_connect("/") as ws:
        answers = []
        for text in ("a", "b", "c"):
            ws.send_text(text)
            answers.append(ws.receive_text())
        assert answers == ["1", "2", "3"], f"the answers were {answers}, expected ['1', '2', '3']"
        ws.send_text("stop")
        try:
            ws.receive_text()
            raise AssertionError("after 'stop' the app should close, but it answered")
        except WebSocketDisconnect as closed:
            assert closed.code == 4001, f"closed with {closed.code}, expected 4001"

# %% [markdown]
# ### Exercise 4 — the Date header, in-process
#
# The in-process client sends no `Date` because no server is involved. Some test suites
# want it anyway. Write a WSGI middleware `dated(app)` (chapter 07) that adds a `Date`
# header in IMF-fixdate form (`email.utils.formatdate(usegmt=True)`) unless the app set
# one, so that `test_response_is_dated` from above passes in-process.

# %% tags=["solution"]
from email.utils import formatdate

def dated(app):
    ### BEGIN SOLUTION
    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            if not any(name.lower() == "date" for name, _ in headers):
                headers = [*headers, ("Date", formatdate(usegmt=True))]
            return start_response(status, headers, exc_info)
        return app(environ, start)
    return wrapped
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    headers = TestClient(dated(notes_wsgi), validate=True).get("/hello").headers
    assert "date" in headers, "no Date header in the response"
    assert headers["date"].endswith(" GMT"), f"Date is {headers['date']!r}: use usegmt=True"
    assert len(headers.get_list("date")) == 1, "one Date header, not two"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 21. Exceptions as responses
#
# In Flask you write `abort(404)` and a 404 page appears. In this chapter you build the
# machinery behind that line for `bare`: exception classes that *are* HTTP answers, a
# renderer that picks JSON, HTML or plain text from the client's `Accept` header, and,
# on top of chapter 18's exception handlers, an app class that answers every error
# (yours, the router's, a bug) in that one standard shape.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - raise `NotFound`, `MethodNotAllowed`, `Unauthorized`, `TooManyRequests` and friends,
#   and say which header each status code requires (`Allow`, `WWW-Authenticate`,
#   `Retry-After`);
# - render an error as a *problem details* object (RFC 9457: `type`, `title`, `status`,
#   `detail`, `instance`) and as HTML or text, chosen by real `Accept` negotiation with
#   q-values (RFC 9110 §12.5.1), and explain why `"json" in accept` is a bug;
# - register an exception handler per class and predict which one runs, using the class's
#   MRO (method resolution order);
# - build a richer error system on chapter 18's hooks (`exception_handlers`,
#   `answer_error`) instead of replacing `respond`, and say why that is the smaller change;
# - turn a bug into a plain 500 whose body says nothing about your code, while the full
#   traceback goes to the log.

# %% [markdown]
# ## Where errors go in `bare` today
#
# Chapter 18's `bare` already has an exception class for HTTP errors,
# `HTTPException(status, detail)`, and its router raises two subclasses of it, `NotFound`
# and `MethodNotAllowed`. A route raises one, and `bare` answers with its status. `bare`
# also lets you register exception handlers; you will come back to those later. Start
# from there: build an app with one route that raises an `HTTPException`, and call the
# app in-process with chapter 17's `TestClient` (no socket, no server).

# %%
import barelab
from barelab.built.bare import Bare, HTTPException
from barelab.built.testing import TestClient

# %% [markdown]
# The route converts `item_id` to an `int`, finds no such item (there is no database at
# all), and raises. Nothing catches the exception in the handler: it is `bare`'s job to
# turn it into a response. Look at what the client receives: the status is in the
# response's head, so what you are reading here is the body.

# %%
plain = Bare(name="plain")

@plain.get("/items/{item_id:int}")
async def show_item(request):
    raise HTTPException(404, f"no item {request.path_params['item_id']}")

client = TestClient(plain)
print(client.get("/items/7").text)

# %% [markdown]
# The body is one line of text: status, reason phrase, detail. The `TestClient` sent no
# `Accept` header, and for such a client chapter 18 chose plain text. Ask for JSON
# instead, as a JavaScript front end would, and `bare` gives a small JSON object of its
# own design:

# %%
print(client.get("/items/7", headers={"Accept": "application/json"}).text)

# %% [markdown]
# The field names `status`, `error` and `detail` were chosen by chapter 18, and any other
# framework would have chosen differently. That is a fine start, but three things are
# missing:
#
# 1. **A standard shape.** Every API invents its own error JSON (`error`, `message`,
#    `errors`, `code`...). RFC 9457 defines one, *problem details*, with its own media
#    type `application/problem+json`, so a client library can read errors from any API.
# 2. **Names.** `HTTPException(429)` does not say that a 429 must tell the client when to
#    come back. A `TooManyRequests(retry_after=30)` class can make that impossible to
#    forget.
# 3. **One answer for every error.** Your code raises `OutOfStock` or `KeyError`, not
#    HTTP statuses. Chapter 18's `@app.exception_handler(KeyError)` lets you map them to
#    responses, but each handler then invents its own format, the router's 404 keeps the
#    one above, and a bug gets a bare line of text.
#
# The rest of the chapter builds those three pieces and plugs them into chapter 18's
# exception-handler hook. The components are exported to `barelab/built/bare_errors.py`.

# %%
#| default_exp bare_errors

# %%
#| export
# Exceptions as responses for bare: an HTTPProblem family (NotFound, MethodNotAllowed,
# Unauthorized, TooManyRequests, ...) that knows its status and required headers, content
# negotiation with q-values (RFC 9110 §12.5.1), rendering as problem details (RFC 9457),
# HTML or text, and ErrorBare: a Bare built on bare's exception-handler hooks, whose every
# error, its own 404/405 included, is answered as a problem, and whose bugs are logged 500s.
import html
import json
import logging

from barelab.built import bare                                            # chapter 18
from barelab.built.http_wire import reason_phrase                         # chapter 02
from barelab.built.bare import Bare, HTTPException, Response               # chapter 18

# %% [markdown]
# The exported module starts with its imports: chapter 02's table of reason phrases, and
# chapter 18's `Bare`, `HTTPException` and `Response`, which everything here extends.
# The module `bare` itself is imported too, because this chapter defines a `NotFound`
# and a `MethodNotAllowed` of its own: chapter 18's classes of the same names, which its
# router raises, stay reachable as `bare.NotFound` and `bare.MethodNotAllowed`.
#
# ## Exception classes that know their status
#
# The plan: one base class, `HTTPProblem`, that *is* a `bare.HTTPException` (so plain
# `bare` still understands it), and one subclass per status. Each subclass only sets a
# class attribute `status`. The constructor takes a human `detail`, extra headers, and any
# *extension members*: RFC 9457 lets a problem carry fields of its own, like `balance`.
# The bare `*` in the signature makes everything after `detail` keyword-only: you write
# `status=503`, never a lone number that a reader has to decode.

# %%
#| export
class HTTPProblem(HTTPException):
    """An error that is an HTTP answer: ``status`` (a class attribute, or ``status=``),
    ``detail`` for humans, ``type`` (a URI naming the kind of problem, RFC 9457 §3.1.1),
    ``title`` and extension members (``**extra``) for the problem details object."""

    status = 500
    type = "about:blank"

    def __init__(self, detail: str | None = None, *, status: int | None = None, headers=(),
                 type: str | None = None, title: str | None = None, **extra):
        super().__init__(status or self.status, detail, headers)
        self.type = type or self.type
        self.title = title or getattr(self, "title", None) or reason_phrase(self.status)
        self.extra = extra

# %% [markdown]
# Two details of that constructor matter later. `title` is looked up on the class first
# (`getattr(self, "title", None)`), so a subclass can set its own title once for all its
# instances. And `super().__init__` is chapter 18's, which refuses a status outside
# 400–599. Look at what one instance holds: `status` comes from the argument, `title`
# from the reason phrase of chapter 02, and `type` is `about:blank`, which RFC 9457
# defines as "nothing more to say than the status code".

# %%
problem = HTTPProblem("the database is on fire", status=503)
print(problem.status, problem.title, problem.type, problem.detail, sep=" | ")
print(isinstance(problem, HTTPException))

# %% [markdown]
# The `True` on the second line is the point of subclassing: anything that already
# catches `bare.HTTPException`, like chapter 18's `Bare.respond`, handles an
# `HTTPProblem` too. Now the named classes. Most are one line each. The interesting ones take arguments,
# because RFC 9110 **requires** a header with their status:
#
# | status | class | required header | RFC 9110 |
# | --- | --- | --- | --- |
# | 405 | `MethodNotAllowed(allowed)` | `Allow: GET, HEAD` | §15.5.6 "MUST generate an Allow header" |
# | 401 | `Unauthorized(scheme, realm)` | `WWW-Authenticate: Bearer realm="api"` | §15.5.2 "MUST send a WWW-Authenticate" |
# | 429 | `TooManyRequests(retry_after)` | `Retry-After: 30` | RFC 6585 §4 "MAY include" |
#
# Making the header a constructor argument turns "remember to add the header" into "you
# cannot build the exception without it".
#
# Start with the plain ones. Each class sets `status` and nothing else: the title comes
# from the reason phrase, and the constructor is `HTTPProblem`'s.

# %%
#| export
class BadRequest(HTTPProblem):
    status = 400

class Forbidden(HTTPProblem):
    status = 403

class NotFound(HTTPProblem):
    status = 404

class Conflict(HTTPProblem):
    status = 409

# %% [markdown]
# `Conflict` (409) means the request clashes with the current state of the resource:
# ordering more kettles than the shop has, or saving over a newer version. Two more
# complete the plain set: 422 for content that parses but makes no sense, and 500, which
# `ErrorBare` will use for bugs later on.

# %%
#| export
class UnprocessableContent(HTTPProblem):
    """422: the request was well-formed but its content makes no sense (RFC 9110 §15.5.21)."""
    status = 422

class InternalServerError(HTTPProblem):
    status = 500

# %% [markdown]
# 422 used to be called "Unprocessable Entity" (it came from WebDAV, RFC 4918). RFC 9110
# moved it into core HTTP and renamed it **Unprocessable Content**, which is why the class
# has the new name. Check that chapter 02's table of reason phrases agrees:

# %%
print(UnprocessableContent("age must be positive").title)

# %% [markdown]
# It does: the title came from chapter 02's table, and nobody had to type it. If a
# future RFC renames a status again, one table changes and every class follows.
#
# Now the three that carry a header. Each one builds its header from its own arguments
# and passes it to `HTTPProblem.__init__`, followed by any headers the caller adds. The
# first is 405: the client used a method this URL does not support, and the `Allow`
# header lists the ones it does, so that the client can correct itself.

# %%
#| export
class MethodNotAllowed(HTTPProblem):
    status = 405

    def __init__(self, allowed, detail: str | None = None, **options):
        self.allowed = sorted(set(allowed))
        headers = [("allow", ", ".join(self.allowed)), *options.pop("headers", ())]
        super().__init__(detail, headers=headers, **options)

# %% [markdown]
# The methods are sorted and deduplicated, so the header is the same whatever order the
# caller listed them in; a header that changes from run to run is a caching headache.
# The list stays on the exception as `.allowed`, so a handler can read the methods
# without parsing the header. Chapter 18's router has a `MethodNotAllowed` of its own
# with the same attribute; you will meet it when `ErrorBare` upgrades the router's 405.
#
# Next, 401. Despite its name, 401 means "I do not know who you are" (not authenticated);
# "I know who you are and the answer is no" is 403 `Forbidden`. A 401 must name a
# *challenge*: the scheme the client should use to log in, like `Bearer` for tokens or
# `Basic` for a user name and password, and a `realm` naming the protected area.

# %%
#| export
class Unauthorized(HTTPProblem):
    status = 401

    def __init__(self, detail: str | None = None, *, scheme: str = "Bearer",
                 realm: str = "bare", **options):
        challenge = f'{scheme} realm="{realm}"'
        headers = [("www-authenticate", challenge), *options.pop("headers", ())]
        super().__init__(detail, headers=headers, **options)

# %% [markdown]
# Last, 429 from RFC 6585: the client is over its rate limit. `Retry-After` says how many
# seconds to wait. RFC 6585 only says *may*, but a 429 without it leaves the client
# guessing, and guessing clients retry in a tight loop, which is the opposite of what you
# want. So this class makes the number compulsory.

# %%
#| export
class TooManyRequests(HTTPProblem):
    status = 429

    def __init__(self, retry_after: int, detail: str | None = None, **options):
        self.retry_after = int(retry_after)
        headers = [("retry-after", str(self.retry_after)), *options.pop("headers", ())]
        super().__init__(detail, headers=headers, **options)

# %% [markdown]
# Try to forget the header: build a 429 with only a detail, as you might in a hurry.
# Python stops you before any response exists.

# %%
try:
    TooManyRequests(detail="slow down")
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# A 429 without "when may I come back" cannot even be constructed: the mistake shows up
# in the first test that reaches that line, not in a client's logs weeks later. With the
# number of seconds it works, and so do the other two:

# %%
print(TooManyRequests(30, "slow down").headers)
print(MethodNotAllowed({"POST", "GET"}).headers)
print(Unauthorized(realm="api").headers)

# %% [markdown]
# Each `headers` is a list of `(name, value)` pairs with lowercase names, the form that
# chapter 18's `Response` takes, so the renderer can copy them into the response as they
# are. `MethodNotAllowed` was given a set, `{"POST", "GET"}`, whose order Python does not
# promise, and still printed `GET, POST`: that is the sorting at work. The quotes around
# `api` come from the HTTP syntax for a `realm` parameter, which RFC 9110 §11.5 says
# a sender must always quote.

# %% [markdown]
# ## Problem details: RFC 9457
#
# A problem details object is a JSON object with five standard members, all optional:
#
# | member | meaning |
# | --- | --- |
# | `type` | a URI naming the *kind* of problem; `about:blank` means "see the status" |
# | `title` | a short summary of that kind, the same for every occurrence |
# | `status` | the HTTP status code, repeated for convenience |
# | `detail` | what went wrong *this time*, for a human |
# | `instance` | a URI for *this occurrence*; here, the request's path |
#
# Extension members sit next to them. `problem_body` builds the dict; the standard
# members come first, and an extension cannot overwrite them: a stray `status=200` in
# `**extra` must not make an error look like a success.

# %%
#| export
def problem_body(problem: HTTPProblem, instance: str | None = None) -> dict:
    """The RFC 9457 problem details object for ``problem``, as a dict."""
    body = {"type": problem.type, "title": problem.title, "status": problem.status,
            "detail": problem.detail}
    if instance is not None:
        body["instance"] = instance
    extra = getattr(problem, "extra", {})
    return {**body, **{name: value for name, value in extra.items() if name not in body}}

# %% [markdown]
# Build the body of the 404 from the start of the chapter, with the request's path as
# `instance`, and print it as the JSON a client would receive:

# %%
print(json.dumps(problem_body(NotFound("no item 7"), "/items/7"), indent=1))

# %% [markdown]
# Every 404 from this API will look like that, whichever route raised it, so a client
# can write one error-reading function. `type` and `title` say *what kind* of problem
# (the same for all 404s), `detail` and `instance` say *which* one.
#
# Now break it on purpose. Give a problem an extension member `balance`, which is
# harmless, and slip a `status` of 200 into its extension members, as a careless
# `**kwargs` passed along from somewhere else might:

# %%
sneaky = NotFound("no item 7", balance=30)
sneaky.extra["status"] = 200
print(problem_body(sneaky))

# %% [markdown]
# The status is still 404: the stray `status` was dropped, because a standard member of
# that name was already there. `balance`, which clashes with nothing, came through, after
# the standard members, and `instance` is missing because none was given.
#
# ## Choosing a format: the `Accept` header
#
# A browser sends something like `text/html,application/xhtml+xml,*/*;q=0.8`; `curl`
# sends `*/*`; a JavaScript `fetch` for an API often sends `application/json`. The server
# picks one of the formats it can produce. The tempting shortcut is a substring test:

# %%
def naive_wants_json(accept):
    return "json" in accept

print(naive_wants_json("application/json"))
print(naive_wants_json("text/html"))

# %% [markdown]
# Both right. Now a client that says, in the language of RFC 9110, "HTML please, and
# JSON **never**". `q=0` means *not acceptable*:

# %%
print(naive_wants_json("text/html, application/json;q=0"))

# %% [markdown]
# `True`: the shortcut answers with exactly the format the client refused. It also misses
# `*/*` (everything is fine, so pick your default) and `application/*`. The real rule is
# RFC 9110 §12.5.1:
#
# - the field is a comma-separated list of *media ranges*: `type/subtype`, `type/*` or
#   `*/*`, each with an optional weight `q` from 0 to 1 (default 1);
# - for each format the server can produce, the **most specific** range that matches it
#   decides its weight: `text/html;q=0.5, text/*;q=1` gives `text/html` 0.5;
# - the server picks the format with the highest weight above 0.
#
# ```mermaid
# flowchart LR
#     A["Accept: text/html;q=0.5, text/*, */*;q=0.1"] --> P[parse into ranges with q]
#     P --> W["weight of each offer:<br/>application/problem+json: 0.1 (*/*)<br/>text/html: 0.5 (exact)<br/>text/plain: 1 (text/*)"]
#     W --> C["pick the highest: text/plain"]
# ```
#
# First, parsing, in two steps. A range may carry parameters besides `q`
# (`text/html;level=1`), and they make it more specific. The small helper below turns
# the parts after the semicolons into a dict: names lowercased (they are
# case-insensitive), quotes around a value dropped.

# %%
#| export
def _range_params(parts: list[str]) -> dict:
    """The ``name=value`` parameters of one media range: names lowercased, quotes dropped."""
    return {name.strip().lower(): value.strip().strip('"')
            for name, _, value in (part.partition("=") for part in parts if part)}

# %% [markdown]
# Feed it the parts of `text/html;level=1;Q="0.3";;` that follow the first semicolon:

# %%
print(_range_params(["level=1", 'Q="0.3"', ""]))

# %% [markdown]
# The empty part (what a stray `;;` leaves behind) is skipped, and `Q` became `q`. The
# weight is still the string `"0.3"`: turning it into a number is `parse_accept`'s job.
# It splits the field on commas and each entry on semicolons, keeps the first part as
# the range, and takes `q` out of the parameters, because a weight is not a property of
# the format. A `q` that is not a number from 0 to 1 (RFC 9110 §12.4.2) counts as 0, as
# in chapter 18. In `kind, *parts = ...`, the star collects every part after the first
# into a list, empty when the entry has no semicolon at all.

# %%
#| export
def parse_accept(accept: str | None) -> list[tuple[str, dict, float]]:
    """The media ranges of an Accept field: ``(range, params, q)``, lowercased."""
    ranges = []
    for entry in (accept or "").split(","):
        kind, *parts = [part.strip() for part in entry.split(";")]
        if "/" not in kind:
            continue                              # not a media range: ignore it
        params = _range_params(parts)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((kind.lower(), params, q if 0 <= q <= 1 else 0.0))
    return ranges

# %% [markdown]
# Feed it a field with one of everything: a parameter, a weight, a broken weight, and an
# entry that is not a media range at all.

# %%
for media_range in parse_accept("text/html;level=1, text/*;q=0.3, */*;q=oops, nonsense"):
    print(media_range)

# %% [markdown]
# `nonsense` had no slash, so it was dropped; `q=oops` became 0. Next, how specific a
# range is for one offered type, or `None` when it does not match at all. An exact type
# beats `type/*`, which beats `*/*`. A range with parameters, like `text/html;level=1`, is
# more specific still, but only matches an offer with the same parameters.

# %%
#| export
def specificity(media_range: str, params: dict, offer: str) -> int | None:
    """How precisely ``media_range`` names ``offer`` (higher is more precise), or None.
    A range with parameters matches only an offer that has the same parameters."""
    (offer_type, offer_params, _), = parse_accept(offer)
    kind, _, subtype = media_range.partition("/")
    offer_kind, _, offer_subtype = offer_type.partition("/")
    if media_range == "*/*":
        return 0
    if kind != offer_kind:
        return None
    if subtype == "*":
        return 1
    if subtype != offer_subtype or any(offer_params.get(n) != v for n, v in params.items()):
        return None
    return 2 + len(params)

# %% [markdown]
# The first line of `specificity` reuses `parse_accept` to split an offer such as
# `text/html;level=1` into its type and parameters; the trailing comma in
# `(offer_type, offer_params, _), = ...` unpacks a list that must hold exactly one entry.
# Here is the score of five ranges against the offer `text/html`:

# %%
for media_range, params in [("*/*", {}), ("text/*", {}), ("text/html", {}),
                            ("text/html", {"level": "1"}), ("application/json", {})]:
    print(f"{media_range:<17} {params!s:<15}", specificity(media_range, params, "text/html"))

# %% [markdown]
# The ladder reads 0, 1, 2, and `None` for the two that do not match: `application/json`
# is another type altogether, and `level=1` asks for a variant this offer is not. Offered
# `text/html;level=1`, the same range would score 3: every parameter that matches makes a
# range one step more specific, which is the `2 + len(params)` on the last line.
#
# With a score per range, the weight of one offer follows: among the ranges that match
# it, take the one with the highest score, and use its `q`. An offer that no range
# matches gets 0, the same as "not acceptable".

# %%
#| export
def weight(ranges: list, offer: str) -> float:
    """The q of the most specific range in ``ranges`` matching ``offer`` (0 if none)."""
    scored = [(score, q) for kind, params, q in ranges
              if (score := specificity(kind, params, offer)) is not None]
    return max(scored)[1] if scored else 0.0

# %% [markdown]
# `(score := ...)` keeps each range's score in a name as the filter computes it, so
# `specificity` runs once per range. `max` on `(score, q)` pairs compares the scores
# first, and `[1]` takes the `q` of the winner. Feed it the `Accept` field from the
# diagram, and compare with the weights the diagram predicted:

# %%
ranges = parse_accept("text/html;q=0.5, text/*, */*;q=0.1")
for offer in ["application/problem+json", "text/html", "text/plain"]:
    print(f"{offer:<25}", weight(ranges, offer))

# %% [markdown]
# `text/html` is matched by all three ranges, and the exact one wins with its 0.5, even
# though `text/*` would have given it 1. `text/plain` has no exact range, so `text/*`
# decides; `application/problem+json` is matched only by `*/*`, so it gets 0.1.
#
# Now `negotiate`: weigh every offer and return the heaviest. Ties go to the *server's*
# order of preference, the order of `offers`. The trick for that is to compare pairs
# `(weight, -index)`: `max` takes the highest weight, and among equal weights the
# smallest index, which is the largest `-index`; on the last line, `-minus_index` turns
# it back into the index of the winner. When nothing is acceptable, RFC 9110 lets the
# server either answer 406 or ignore the header; for an error response, ignoring it is
# kinder, so `negotiate` returns `default`.

# %%
#| export
def negotiate(accept: str | None, offers: list[str], default: str | None = None) -> str | None:
    """The offer the client prefers (RFC 9110 §12.5.1); ``default`` when none is acceptable.
    No Accept field at all means "anything", so the first offer."""
    if not accept or not accept.strip():
        return offers[0]
    ranges = parse_accept(accept)
    weights = [(weight(ranges, offer), -index) for index, offer in enumerate(offers)]
    best, minus_index = max(weights)
    return offers[-minus_index] if best > 0 else default

# %% [markdown]
# Run the trap from before through it, plus the cases the shortcut could not handle.
# `OFFERS` lists what an error renderer can produce, in the server's order of
# preference: problem JSON first, because that is what an API client can parse.

# %%
OFFERS = ["application/problem+json", "application/json", "text/html", "text/plain"]
for accept in ["text/html, application/json;q=0", "*/*", "text/*",
               "text/html;q=0.5, text/*, */*;q=0.1", "image/png", None]:
    print(f"{accept!s:<36} -> {negotiate(accept, OFFERS, default='(none)')}")

# %% [markdown]
# Read the rows one at a time: the refused JSON is not chosen; `*/*` takes the server's
# first choice; `text/*` ties HTML and text at 1, and HTML is earlier in `OFFERS`; the
# diagram's example picks `text/plain`; `image/png` matches nothing, and no header at all
# means "anything".

# %% [markdown]
# ## Rendering a problem three ways
#
# Now the renderer. Whichever format wins, the response gets the problem's headers
# (`Allow`, `Retry-After`...) and `Vary: Accept`, which tells caches that this URL's
# answer depends on the `Accept` header. `application/json` is offered as well as
# `application/problem+json` so that a client asking for plain JSON gets the same body
# under the type it asked for.
#
# The HTML version escapes every string: `detail` often quotes user input, and an
# unescaped `<script>` in a 404 page is a classic cross-site scripting hole. The page
# shows status and title as its heading and the detail as a paragraph; every other
# member goes into a definition list below them.

# %%
#| export
PROBLEM_TYPES = ["application/problem+json", "application/json", "text/html", "text/plain"]


def problem_html(body: dict) -> str:
    """A small HTML page for a problem details object, every value escaped."""
    rows = "".join(f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(str(value))}</dd>"
                   for key, value in body.items() if key not in ("title", "detail"))
    title = html.escape(f"{body['status']} {body['title']}")
    return (f"<!doctype html>\n<title>{title}</title>\n<h1>{title}</h1>\n"
            f"<p>{html.escape(str(body['detail']))}</p>\n<dl>{rows}</dl>\n")

# %% [markdown]
# Break it on purpose: what would a page built with a plain f-string show, if the detail
# quotes a path the client typed? Compare it with `problem_html`:

# %%
detail = "no page /<script>steal(document.cookie)</script>"
print(f"<p>{detail}</p>")
print(problem_html({"status": 404, "title": "Not Found", "detail": detail}).splitlines()[3])

# %% [markdown]
# The first line is a working `<script>` element: a browser showing that 404 page would
# run it. The second is harmless text, because `html.escape` turned `<` and `>` into
# `&lt;` and `&gt;`. Now `render_problem` itself: negotiate, build the content, attach
# the headers. Note `default=PROBLEM_TYPES[0]`: a client whose `Accept` matches nothing
# (an `<img>` tag asking for `image/png`, say) still gets problem JSON rather than a 406,
# because an error about an error helps nobody.

# %%
#| export
def render_problem(problem: HTTPProblem, accept: str | None = None,
                   instance: str | None = None) -> Response:
    """``problem`` as a Response in the format ``accept`` prefers; problem+json by default."""
    body = problem_body(problem, instance)
    chosen = negotiate(accept, PROBLEM_TYPES, default=PROBLEM_TYPES[0])
    if chosen == "text/html":
        content = problem_html(body)
    elif chosen == "text/plain":
        content = f"{problem.status} {problem.title}: {problem.detail}\n"
    else:
        content = json.dumps(body)
    headers = [*problem.headers, ("vary", "Accept")]
    charset = "; charset=utf-8" if chosen.startswith("text/") else ""
    return Response(content, problem.status, headers, media_type=chosen + charset)

# %% [markdown]
# The last line hands the negotiated type to `Response` as its `media_type`, so the
# `Content-Type` header says exactly what was chosen. One problem, three clients. Look at
# the `Content-Type` of each, and at the `Retry-After` that travels along in every format.

# %%
slow = TooManyRequests(30, "5 requests per minute", limit=5)
for accept in ["application/json", "text/plain", "text/html;q=0.9, */*;q=0.1"]:
    response = render_problem(slow, accept, "/search")
    print(response.status, response.header("content-type"),
          response.header("retry-after"))
    print(response.body.decode())

# %% [markdown]
# Three bodies, one status, one `Retry-After`: the format changes, the meaning does not.
# The JSON version has the extension member `limit` after the standard five. The text
# types say `charset=utf-8` because text has no default encoding you can rely on; JSON is
# UTF-8 by definition (RFC 8259), so `application/problem+json` needs none.
#
# The third client asked for HTML with 0.9 and anything else with 0.1, like a browser
# does, and got the page: `h1` and `title` show status and title, the detail is a
# paragraph, and the other members are a definition list (`dl`), `limit` included.

# %% [markdown]
# ## Handlers per exception class
#
# Which code turns an exception into a response? Flask, Starlette and chapter 18's `bare`
# all let you register a *handler* per exception class: in Flask,
# `@app.errorhandler(KeyError)`, in `bare`, `@app.exception_handler(KeyError)`. When an error
# is raised, the framework walks the exception class's **MRO** (method resolution order:
# the class, then its parents, up to `object`) and takes the first class that has a
# handler. So the most specific handler wins. Look at an MRO:

# %%
class OutOfStock(Conflict):
    type = "https://example.com/problems/out-of-stock"
    title = "Out of stock"

print([klass.__name__ for klass in OutOfStock.__mro__])

# %% [markdown]
# `OutOfStock` is a `Conflict` (409) with its own `type` URI and `title`: every
# out-of-stock problem shares them, and a client can test `type` instead of parsing the
# English in `detail`. Reading the MRO from the left, a handler for `OutOfStock` beats
# one for `Conflict`, which beats one for `HTTPProblem`, which beats one for `Exception`.
#
# The picture below is the family so far, each arrow going from a class to its parent. An
# MRO is the path from a class upwards; `KeyError` is there as an exception from outside
# the family, whose path meets the others only at `Exception`.
#
# ```mermaid
# flowchart BT
#     OutOfStock --> Conflict --> HTTPProblem --> HTTPException["bare.HTTPException"] --> Exception
#     NotFound --> HTTPProblem
#     MethodNotAllowed --> HTTPProblem
#     KeyError --> LookupError --> Exception
# ```
#
# Write that walk yourself, as a plain function over a dict of handlers. It returns
# `None` when no class in the MRO has one. (Chapter 18's `Bare` has a method of the same
# name; you will compare the two in the next section.)

# %%
#| export
def handler_for(handlers: dict, error: BaseException):
    """The handler registered for the first class in ``type(error).__mro__``, or None."""
    for klass in type(error).__mro__:
        if klass in handlers:
            return handlers[klass]
    return None

# %% [markdown]
# Try it with strings in place of real handlers, so that the output says which one
# each exception would get:

# %%
handlers = {Exception: "generic 500", HTTPProblem: "problem", Conflict: "conflict"}
for error in [OutOfStock(), Conflict(), NotFound(), KeyError("x")]:
    print(f"{type(error).__name__:<12} -> {handler_for(handlers, error)}")

# %% [markdown]
# `OutOfStock` found the `Conflict` handler, its nearest ancestor in the dict. `NotFound`
# has no handler of its own nor one for `Conflict`, so it fell back to `HTTPProblem`, and
# `KeyError` is not an `HTTPProblem` at all, so only `Exception` caught it.

# %% [markdown]
# ## Plugging it into `bare`: `ErrorBare`
#
# Where does that walk run in a real app? Chapter 18 already has the place. When a handler
# or the router raises, `Bare.respond` catches the exception before anything has been sent
# and asks `self.answer_error(request, error)` for the response. `answer_error` looks up
# a handler in `app.exception_handlers` with `app.handler_for(error)`, the same MRO walk
# as yours, and without one it falls back to chapter 18's short JSON-or-text answer.
# `@app.exception_handler(KeyError)` fills that dict.
#
# So this chapter needs no new hook: it shows what a richer handler system looks like on
# top of the one `bare` has. Chapter 18's walk differs from yours in one place, though.
# Give a plain `Bare` a handler for `Exception` (a string stands in for the handler, as
# before) and ask both walks about a bug and about a 404:

# %%
generic = Bare(name="generic")
generic.add_exception_handler(Exception, "generic 500")
for error in [KeyError("x"), HTTPException(404)]:
    print(f"{type(error).__name__:<13} yours: {handler_for(generic.exception_handlers, error)}"
          f" | bare's: {generic.handler_for(error)}")

# %% [markdown]
# Both give the `KeyError` to the `Exception` handler. For the 404 they disagree: `bare`'s
# walk stops at `HTTPException` and answers `None`, "use the default rendering". A handler
# for `Exception` is meant for bugs; it must not turn every 404 in the app into a 500.
#
# That default rendering is chapter 18's plain one. To get problem details for *every*
# error, including the ones `bare` raises itself, `ErrorBare` does three things:
#
# ```mermaid
# flowchart TB
#     R["Bare.respond (chapter 18): the handler or the router raised"] --> A["ErrorBare.answer_error(request, error)"]
#     A -- "a bare.HTTPException: the router's NotFound or MethodNotAllowed, 400 from request.json()" --> U["1. as_problem: upgrade to this chapter's NotFound, MethodNotAllowed, BadRequest..."]
#     U --> B
#     A -- "an HTTPProblem, or your own exception" --> B["Bare.answer_error: handler_for walks the MRO"]
#     B -- "a handler answered (2. the default one renders any HTTPProblem by Accept)" --> OK["respond sends that response"]
#     B -- "no handler (a bug), or the handler failed" --> L["3. log the traceback; answer a 500 problem with no detail"]
# ```
#
# ### 1. The upgrade: `as_problem`
#
# Routing and request parsing raise chapter 18's exceptions. The router refuses with
# `bare.NotFound` and `bare.MethodNotAllowed`, which share their names with this
# chapter's classes but are plain `HTTPException`s. Ask chapter 18's `refusal` what the
# router raises for a `DELETE` on a path that only has a `GET` route:

# %%
refused = bare.refusal({"method": "DELETE", "path": "/items/7"}, {"GET"})
print(type(refused).__module__, type(refused).__name__, isinstance(refused, HTTPProblem))
print(refused.allowed, refused.headers)

# %% [markdown]
# `bare`'s own `MethodNotAllowed`, not an `HTTPProblem`. It carries the allowed methods
# twice: as the `Allow` header, and as the list `.allowed`, sorted, with `HEAD` added
# because `GET` is there, and `OPTIONS` because the router answers it on every path.
#
# `as_problem` turns such an exception into the named class for its status, so that a
# handler registered for this chapter's `NotFound` also sees the router's 404. The 405 is
# rebuilt from `.allowed`, which keeps that attribute for handlers that want to read it.

# %%
#| export
PROBLEM_CLASSES = {klass.status: klass for klass in
                   (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed,
                    Conflict, UnprocessableContent, TooManyRequests, InternalServerError)}


def as_problem(error: HTTPException) -> HTTPProblem:
    """``error`` as an HTTPProblem of the class for its status (headers kept)."""
    if isinstance(error, HTTPProblem):
        return error
    if isinstance(error, bare.MethodNotAllowed):          # the router's 405 lists .allowed
        return MethodNotAllowed(error.allowed, error.detail)
    klass = PROBLEM_CLASSES.get(error.status, HTTPProblem)
    problem = HTTPProblem.__new__(klass)
    HTTPProblem.__init__(problem, error.detail, status=error.status, headers=error.headers)
    return problem

# %% [markdown]
# Every other status goes through `HTTPProblem.__new__` and then the base
# `HTTPProblem.__init__`. Why not simply call the class? Because some constructors want
# arguments a plain `HTTPException` does not have: `TooManyRequests` needs its
# `retry_after`. The base `__init__` skips the subclass's arguments and keeps the headers
# the exception already carries. Upgrade the router's two refusals, and the 400 that
# `request.json()` raises for a broken body:

# %%
for error in [refused, bare.NotFound("nothing at /x"), HTTPException(400, "bad JSON")]:
    problem = as_problem(error)
    print(f"{type(error).__name__:<16} -> {type(problem).__name__:<16} {problem.headers}")
print(as_problem(refused).allowed)

# %% [markdown]
# Each one came out as this chapter's class for its status. The `Allow` header survived,
# and so did the list `.allowed` on the new `MethodNotAllowed`.
#
# One limit of the `__new__` path: the subclass's `__init__` never runs, so what it
# would have stored is missing. A plain `HTTPException(429)` becomes a `TooManyRequests`
# without a `.retry_after` attribute; a handler for it should read the `Retry-After`
# header, which is there if whoever raised the 429 set it.
#
# ### 2. The default handler
#
# Every `HTTPProblem`, upgraded or raised by a route, needs one answer: rendered in the
# format the client prefers. That is one exception handler, registered for
# `HTTPProblem`, so the MRO walk finds it for every class in the family unless a more
# specific handler is registered. Anything with no handler at all is a bug, and its
# traceback will go to the logger `bare.errors`, defined here too.

# %%
#| export
logger = logging.getLogger("bare.errors")


async def render_http_problem(request, problem: HTTPProblem) -> Response:
    """The default handler for HTTPProblem: render it in the format the client prefers."""
    return render_problem(problem, request.headers.get("accept"), request.scope["path"])

# %% [markdown]
# That is the shape of every exception handler in `bare`: a function taking the request
# (so it can read `Accept`, the path, the user...) and the exception, and returning a
# response. `ErrorBare` registers this one when it is created, with chapter 18's
# `add_exception_handler`:

# %%
#| export
class ErrorBare(Bare):
    """A Bare that answers every error as a problem: bare's own HTTPExceptions are upgraded
    (as_problem), handlers in ``exception_handlers`` are found by the MRO (the one for
    HTTPProblem renders by Accept), and a bug is a logged 500 problem without details."""

    def __init__(self, **options):
        super().__init__(**options)
        self.add_exception_handler(HTTPProblem, render_http_problem)

# %% [markdown]
# The decorator `@app.exception_handler(klass)` comes from chapter 18, unchanged. Make a
# throwaway app, register a handler for `KeyError`, and list what the dict holds:

# %%
demo = ErrorBare(name="demo")

@demo.exception_handler(KeyError)
async def no_such_key(request, error):
    return Response(f"no key {error.args[0]}\n", 404)

print({klass.__name__: handler.__name__ for klass, handler in demo.exception_handlers.items()})

# %% [markdown]
# Two entries: the default for the whole `HTTPProblem` family, and yours. Since the lookup
# and the call are chapter 18's, a handler may also be a plain `def`, and may return
# anything `to_response` accepts. Mind that a returned dict becomes JSON with status 200,
# so an error handler usually returns a `Response` with the status it means.
#
# ### 3. Bugs: a logged 500
#
# Last, `answer_error` itself. It upgrades an `HTTPException`, then lets chapter 18's
# `answer_error` do the lookup and call the handler. That returns a pair: the response,
# and an exception to re-raise, or `None`. The exception is the error itself when no
# handler matched (a bug), or the handler's own error when a handler failed. Chapter 18
# re-raises it so that the server logs the traceback; `ErrorBare` logs it itself and
# answers a 500 problem whose `detail` is a fixed sentence: never `str(error)`, which may
# hold a password, an SQL query or a file path.
#
# The method is written as a plain function and attached to the class on its last line,
# so that it can have a cell of its own. That is also why it calls
# `Bare.answer_error(self, ...)` by name: `super()` without arguments works only inside a
# `class` block.

# %%
#| export
async def _answer_error(self, request, error: Exception):
    if isinstance(error, HTTPException):
        error = as_problem(error)
    response, failure = await Bare.answer_error(self, request, error)
    if failure is None:
        return response, None
    logger.error("unhandled %s in %s %s", type(failure).__name__, request.method,
                 request.scope["path"], exc_info=failure)
    problem = InternalServerError("The server failed to answer this request.")
    return render_problem(problem, request.headers.get("accept"), request.scope["path"]), None

ErrorBare.answer_error = _answer_error

# %% [markdown]
# Try it without any server or route: build a `Request` by hand from a minimal ASGI scope
# that asks for plain text, and hand `answer_error` two exceptions. The first is the
# router's `bare.NotFound`, the second a `KeyError`, which `demo` has a handler for.
# The request's `receive` is `None`: nothing here reads a body, so nothing will call it.
# (`answer_error` is a coroutine; a notebook cell can `await` at the top level.)

# %%
by_hand = bare.Request({"type": "http", "method": "GET", "path": "/demo",
                        "headers": [(b"accept", b"text/plain")]}, None)
for error in [bare.NotFound("nothing at /demo"), KeyError("colour")]:
    answer, to_raise = await demo.answer_error(by_hand, error)
    print(f"{answer.status} | {answer.body.decode().strip()} | re-raise: {to_raise}")

# %% [markdown]
# Each line is the status, the body, and what `respond` should re-raise. The `NotFound`
# was upgraded and rendered by the default handler, as text because the scope asked for
# `text/plain`; the `KeyError` went to `no_such_key`, found by the MRO walk. Neither
# leaves anything to re-raise. A bug was left out of the list on purpose: it would write
# a traceback to the log, and you will catch the log properly in a moment.
#
# That is all of `ErrorBare`: one handler registered and one method overridden.
# `respond` stays chapter 18's, with everything it does: no body for `HEAD`, no second
# answer once a response has started, and the callbacks of `call_after_response`. Side by
# side with a plain `Bare`, which the next section puts to the test:
#
# | when | plain `Bare` (chapter 18) | `ErrorBare` |
# | --- | --- | --- |
# | a route raises an `HTTPException` | short JSON or text | problem details, format by `Accept` |
# | the router refuses (404, 405) | `bare.NotFound`, `bare.MethodNotAllowed`, same rendering | upgraded, so this chapter's handlers see them |
# | a bug, or a failing handler | plain-text 500, re-raised for the server's log | 500 problem, traceback on the `bare.errors` logger |
# | a handler for `Exception` | catches bugs only, never an `HTTPException` | the same |
#
# Starlette splits the work in two as well: its `ExceptionMiddleware` finds a handler by
# walking the MRO, and its `ServerErrorMiddleware` answers a 500 for whatever is left and
# re-raises it for the server to log, as a plain `Bare` does. There the pieces are two
# middleware layers; here they are one method that `respond` calls.

# %% [markdown]
# ## An app that fails in every way
#
# Now put `ErrorBare` to work on a small shop API. `GET /items/{id}` always raises `NotFound`. `POST
# /orders` reads a JSON body with `request.json()`, raises a 422 with the extension
# member `field` for a quantity that is not positive, and otherwise raises `OutOfStock`,
# the `Conflict` subclass from the MRO section, with the extension member `available`.

# %%
shop = ErrorBare(name="shop")

@shop.get("/items/{item_id:int}")
async def get_item(request):
    raise NotFound(f"no item {request.path_params['item_id']}")

@shop.post("/orders")
async def order(request):
    data = await request.json()
    if data.get("quantity", 0) <= 0:
        raise UnprocessableContent("quantity must be positive", field="quantity")
    raise OutOfStock(f"only 2 of {data.get('item')} left", available=2)

# %% [markdown]
# Call it in-process. The first line is the 404 as problem JSON; the second is the same
# route with the browser's `Accept`, so HTML:

# %%
client = TestClient(shop)
missing = client.get("/items/7")
print(missing.status_code, missing.headers["content-type"], missing.text)
print(client.get("/items/7", headers={"Accept": "text/html"}).text)

# %% [markdown]
# Same route, same exception, two formats: the format follows the `Accept` header, the
# content follows the exception. The `OutOfStock` class from the MRO section sets its own
# `type` URI and `title`, and `available=2` rides along as an extension member:

# %%
print(client.post("/orders", json={"item": "kettle", "quantity": 3}).json())
print(client.post("/orders", json={"item": "kettle", "quantity": 0}).json())

# %% [markdown]
# The second line is the 422: the JSON was valid, but a quantity of 0 is not something
# the shop can process, and the extension member `field` tells a form which input to
# highlight. The errors that `bare` itself raises come out in the same shape: the
# router's 405 (with its `Allow` header), and the 400 for a body that is not JSON,
# raised by `request.json()` deep inside `bare`.

# %%
wrong_method = client.delete("/items/7")
print(wrong_method.status_code, wrong_method.headers["allow"], wrong_method.json()["title"])
broken = client.post("/orders", content=b"{not json",
                     headers={"Content-Type": "application/json"})
print(broken.status_code, broken.json()["detail"])

# %% [markdown]
# Neither route raised these. The router found no `DELETE` route and raised `bare`'s
# `MethodNotAllowed`; `as_problem` rebuilt it from `.allowed` as this chapter's
# `MethodNotAllowed`, so the `Allow` header is the router's own. The 400 came from
# `request.json()` as a plain `HTTPException`, upgraded to `BadRequest`, and its detail is
# the JSON parser's own message, which tells the client where its body went wrong.
#
# Because `ErrorBare` leaves `respond` alone, chapter 18's work after the response still
# happens, error or not. A route that notes an audit entry with `call_after_response` and
# then fails still gets its entry, once the 404 has gone out:

# %%
audit = []

@shop.get("/audited/{item_id:int}")
async def audited(request):
    request.call_after_response(audit.append, f"looked for {request.path}")
    raise NotFound("audited items are never found")

print(client.get("/audited/3").status_code, audit)

# %% [markdown]
# The entry is there, although the route raised before it could return anything:
# `respond`'s `finally` clause ran the callback once the last byte of the 404 was sent.
#
# Had `ErrorBare` overridden `respond` instead, it would have had to copy that `finally`
# clause, and every other detail of chapter 18's `respond`. Overriding only the method
# that decides the answer keeps `ErrorBare` small and keeps it in step with `bare`.
#
# ## Your own errors, your own handlers
#
# Add two routes: one raises the domain error `PaymentDeclined`, one has a plain bug.
# `PaymentDeclined` is an ordinary `Exception`: the payment code that raises it knows
# nothing about HTTP, and should not have to. Before you register any handler, both
# errors are "unexpected" as far as `shop` knows.

# %%
class PaymentDeclined(Exception):
    """A domain error: the payment code raises it and knows nothing about HTTP."""

@shop.post("/pay")
async def pay(request):
    raise PaymentDeclined("card ending 4242 declined")

@shop.get("/report")
async def report(request):
    sales = []
    return {"average": sum(sales) / len(sales)}    # a bug: no sales, division by zero

# %% [markdown]
# Before calling them, catch what the `bare.errors` logger writes, so that you can look
# at it. In Python's `logging`, a *handler* is a destination for log records (a second
# meaning of the word, unrelated to exception handlers): in production it would be
# stderr, a file or a log service; here it is a list, so the notebook can show what
# arrived. A `logging.Handler` delivers each record by calling its method `emit(record)`,
# so one whose `emit` is the list's `append` is all it takes. (Assigning `handlers`
# replaces any catcher from an earlier run of this cell, so running it twice does not
# log everything twice.)

# %%
caught = logging.Handler()
caught.records = []
caught.emit = caught.records.append
logging.getLogger("bare.errors").handlers = [caught]
print("records caught so far:", len(caught.records))

# %% [markdown]
# Now the bug. The response is a 500 with a fixed sentence: no exception name, no file,
# no line, nothing an attacker could learn about the code.

# %%
crash = client.get("/report")
print(crash.status_code, crash.json())
print("Traceback" in crash.text, "ZeroDivisionError" in crash.text)

# %% [markdown]
# `False False`: neither the word `Traceback` nor the exception's name reached the
# client. Where did the traceback go? To the log record, whole. The last line of it
# names the error, and the message names the exact request:

# %%
record = caught.records[-1]
print(record.getMessage())
print(logging.Formatter().formatException(record.exc_info).splitlines()[-1])

# %% [markdown]
# That split is the whole deal: the client learns *that* it failed, the operator learns
# *why*. Now the domain error. Nothing has said yet what `PaymentDeclined` means in HTTP,
# so it is treated like any bug. That is the right default (an unknown error is the
# server's fault), but a declined card is the client's problem, as you will fix next:

# %%
declined_before = client.post("/pay")
print(declined_before.status_code, declined_before.json()["detail"])

# %% [markdown]
# A 500 with the same fixed sentence as the bug, and a record in the log. Now say what
# a declined payment means in HTTP. The handler builds an `HTTPProblem` on the spot,
# with status 402 and a `type` URI of the shop's own, and renders it as the default
# handler would. Passing `str(error)` as the detail is fine here, unlike in the 500:
# you know this exception, and its message was written for the customer.

# %%
@shop.exception_handler(PaymentDeclined)
async def declined(request, error):
    problem = HTTPProblem(str(error), status=402,
                          type="https://example.com/problems/declined")
    return render_problem(problem, request.headers.get("accept"), request.scope["path"])

print(client.post("/pay").json())

# %% [markdown]
# Now a 402 problem with a `type` URI a client can recognise. The route did not change:
# the mapping from a domain error to HTTP lives in one place. 402 Payment Required is
# reserved "for future use" by RFC 9110 §15.5.3, but it is widely used for exactly this.
#
# Why does the handler render the problem instead of simply raising it? Because an
# exception that escapes a handler counts as the handler failing: `answer_error` would
# log it and answer the 500. A handler *returns* its answer.
#
# A handler can also change how a whole family looks. Register one for `Conflict` that
# answers in plain text: it beats the default `HTTPProblem` handler for `OutOfStock` (a
# subclass of `Conflict`), but not for `NotFound`, which is no `Conflict`.

# %%
@shop.exception_handler(Conflict)
async def conflict_as_text(request, error):
    return Response(f"conflict: {error.detail}\n", error.status)

print(client.post("/orders", json={"item": "kettle", "quantity": 3}).text)
print(client.get("/items/7").headers["content-type"])

# %% [markdown]
# `OutOfStock` now answers in the `Conflict` handler's plain text, while `NotFound` still
# goes to the default handler and stays problem JSON: the MRO walk at work.
#
# ## Served by barelab
#
# Everything so far ran in-process. Serve the same app on a real socket and ask with
# `curl`, which sends `Accept: */*`: the server's first choice, problem JSON.

# %%
server = barelab.serve(shop)
server

# %% [markdown]
# If you click the link, your browser sends its own `Accept`, with `text/html` first, and
# gets the HTML page. Add `items/7` to the address to see the 404. From the notebook, use
# `curl` and look at the head of the response:

# %%
# !curl -s -i --no-styled-output {server.url}items/7

# %% [markdown]
# The head has `Content-Type: application/problem+json`, `Vary: Accept` and a
# `Content-Length` computed by `bare`'s `Response`; `Date` and `Server` were added by the
# server. These are the same bytes the `TestClient` saw in-process, now on a real socket.
# Next, ask for plain text, and make the bug happen over the socket:

# %%
as_text = barelab.http_request(server, "GET", "/items/7", headers={"Accept": "text/plain"})
print(as_text.text)
print(barelab.http_request(server, "GET", "/report").text)

# %% [markdown]
# The first line is the same 404 in plain text, one line of status, title and detail.
# The second is the bug's 500 as problem JSON, the first choice for a client that asks
# for no format in particular, and with the fixed sentence as its only detail.
#
# The server's log shows three requests and no app error: the app handled every exception
# itself, and the traceback of the `/report` bug went to the `bare.errors` logger instead.
# Compare the two 404s for `/items/7`: one answer, two sizes, as JSON for `curl` and as
# the 25 bytes of text you just read.

# %%
server.log

# %% [markdown]
# The app runs in the server's thread, in the same Python process as this notebook, so
# its log record landed in the same `caught` list as before:

# %%
print(caught.records[-1].getMessage())

# %% [markdown]
# ## Summary
#
# - An exception class per status (`NotFound`, `MethodNotAllowed`, `Unauthorized`,
#   `TooManyRequests`, `UnprocessableContent`...) turns required headers into required
#   constructor arguments: `Allow`, `WWW-Authenticate`, `Retry-After`.
# - RFC 9457 problem details give errors a standard JSON shape: `type`, `title`,
#   `status`, `detail`, `instance`, plus extension members, served as
#   `application/problem+json`.
# - `Accept` negotiation weighs each offer by its most specific matching range;
#   `q=0` means "never". `"json" in accept` gets that exactly wrong. When nothing matches,
#   an error response falls back to JSON instead of a 406.
# - Handlers are registered per class and found by walking the exception's MRO, so the
#   most specific one wins; domain errors become HTTP statuses in one place.
# - A bug becomes a 500 with a fixed sentence, and its traceback goes to the log, never
#   to the client.
# - Because `ErrorBare` keeps chapter 18's `respond`, everything else `respond` does
#   still happens, such as the `call_after_response` callbacks after an error answer.
# - Chapter 18's `bare` has the hook: `respond` asks `answer_error`, which finds a handler
#   in `exception_handlers` by the MRO (stopping at `HTTPException`). `ErrorBare` is a
#   richer handler system on top of it: it upgrades `bare`'s own `NotFound`,
#   `MethodNotAllowed` and 400s to named problems, registers one renderer for the whole
#   `HTTPProblem` family with `add_exception_handler`, and overrides only `answer_error`,
#   so that a bug or a failing handler becomes a logged 500 problem.

# %% [markdown]
# ## Exercises
#
# Each exercise has a solution cell to fill in and a check cell that tells you whether it
# works. They use only what this chapter exported, so you can also
# `from barelab.built.bare_errors import *` in a fresh notebook and do them there.
#
# ### Exercise 1 — Gone
#
# RFC 9110 §15.5.11: `410 Gone` says a resource existed and was removed on purpose. Write
# a class `Gone` in the `HTTPProblem` family, so that `render_problem(Gone("deleted"))`
# answers 410 with the title `Gone`.

# %% tags=["solution"]
### BEGIN SOLUTION
class Gone(HTTPProblem):
    status = 410
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    assert isinstance(Gone, type), "define the class Gone first"
    gone = render_problem(Gone("deleted on purpose"), "application/json", "/old")
    assert gone.status == 410, f"status {gone.status}, expected 410"
    body = json.loads(gone.body)
    assert body["title"] == "Gone", body
    assert body["detail"] == "deleted on purpose", body
    print(body)

# %% [markdown]
# ### Exercise 2 — a stricter `Accept`
#
# Write `prefers(accept, offers)` that returns the offer `negotiate` picks, but **`None`**
# when the client accepts none of them (a server that wants to answer `406 Not
# Acceptable`). Use `negotiate`; one line is enough.

# %% tags=["solution"]
def prefers(accept, offers):
    ### BEGIN SOLUTION
    return negotiate(accept, offers, default=None)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert callable(prefers), "define prefers first"
    offers = ["application/json", "text/csv"]
    assert prefers("text/csv;q=0.9, application/json;q=0.1", offers) == "text/csv"
    assert prefers("application/json;q=0, text/*", offers) == "text/csv"
    assert prefers("image/png", offers) is None, "nothing acceptable must give None"
    assert prefers("application/json;q=0", offers) is None, "q=0 means not acceptable"
    print("ok")

# %% [markdown]
# ### Exercise 3 — a domain error becomes a 404
#
# Build an `ErrorBare` app `catalog` with a route `GET /books/{isbn}` that looks the ISBN up
# in the dict `BOOKS = {"123": "Dune"}` with `BOOKS[isbn]`, so an unknown ISBN raises
# `KeyError`. Register a handler so that a `KeyError` becomes a `NotFound` problem
# (rendered by `render_problem`), not a 500.

# %% tags=["solution"]
BOOKS = {"123": "Dune"}

### BEGIN SOLUTION
catalog = ErrorBare(name="catalog")

@catalog.get("/books/{isbn}")
async def book(request):
    return {"title": BOOKS[request.path_params["isbn"]]}

@catalog.exception_handler(KeyError)
async def key_missing(request, error):
    return render_problem(NotFound(f"no book {error.args[0]}"),
                          request.headers.get("accept"), request.scope["path"])
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    assert isinstance(catalog, ErrorBare), "define catalog as an ErrorBare first"
    books = TestClient(catalog)
    assert books.get("/books/123").json() == {"title": "Dune"}
    lost = books.get("/books/999")
    assert lost.status_code == 404, f"status {lost.status_code}: is KeyError handled?"
    assert lost.headers["content-type"] == "application/problem+json", lost.headers
    assert lost.json()["instance"] == "/books/999", lost.json()
    print(lost.json())

# %% [markdown]
# ### Exercise 4 — no script in the error page
#
# A 404 `detail` that quotes the path is common. Check that the HTML rendering cannot be
# used to inject markup: write `html_for(detail)` that returns the body text of
# `render_problem(NotFound(detail), "text/html")`. The check feeds it a `<script>`.

# %% tags=["solution"]
def html_for(detail):
    ### BEGIN SOLUTION
    return render_problem(NotFound(detail), "text/html").body.decode()
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    assert callable(html_for), "define html_for first"
    page = html_for("<script>alert(1)</script>")
    assert "<script>" not in page, "the detail reached the page unescaped"
    assert "&lt;script&gt;" in page, "the detail should appear, escaped"
    print(page)

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

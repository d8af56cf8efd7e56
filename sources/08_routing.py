# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 08. Routing
#
# `@app.route("/users/<int:id>")` is the first line of Flask most people write, and the
# last one they look inside. In this chapter you build that machine: path templates with
# typed parameters, compiled to regular expressions, in a router that knows a missing page
# (404) from a wrong method (405), answers HEAD with the GET handler, and hands whole apps
# a part of the URL space. The router is itself a WSGI app, and so is everything it calls.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - compile a template such as `/users/{id:int}/posts/{slug}` into a regular expression,
#   with the literal parts escaped and each parameter a typed, named group;
# - say why the `int` converter matches `0|[1-9][0-9]*` and not `\d+`, and why a
#   misspelt converter must fail when the route is added, not when a request comes in;
# - answer 404 and 405 for the right reasons, with the `Allow` header RFC 9110 §15.5.6
#   requires, and serve HEAD and OPTIONS without writing a handler for them;
# - mount a WSGI app (a Flask app, even) under `/api` so that it sees the right
#   `SCRIPT_NAME` and `PATH_INFO` (PEP 3333) and `/apiary` stays out of it;
# - build URLs with `url_for` that come back to the same route with the same values.

# %% [markdown]
# ## What a router does
#
# A router is the `if`/`elif` ladder on `PATH_INFO` you wrote by hand in chapter 05,
# turned into a table. Each row says "this path shape, these methods, this app". For each
# request the router walks the table top to bottom and hands the request to the first row
# that takes it. When no row takes it, the router itself answers, and the answer depends on
# *why* no row took it:
#
# ```mermaid
# flowchart TD
#     A["request: REQUEST_METHOD, PATH_INFO"] --> U{"PATH_INFO is UTF-8?"}
#     U -- "no (and no mount takes it)" --> X["400 Bad Request"]
#     U -- yes --> B["next row of the table, in the order declared"]
#     B -- "a mount, and the path is at or below its prefix" --> M["the mounted app<br/>SCRIPT_NAME += prefix<br/>PATH_INFO = the rest"]
#     B -- "a route whose regex matches the whole path" --> C{"method accepted?<br/>(GET also takes HEAD)"}
#     C -- yes --> H["the route's app<br/>parameters in wsgiorg.routing_args"]
#     C -- no --> N["remember its methods"] --> B
#     B -- "no rows left" --> E{"did any route match the path?"}
#     E -- no --> F["404 Not Found"]
#     E -- "yes, and the method is OPTIONS" --> O["204 No Content + Allow"]
#     E -- "yes" --> G["405 Method Not Allowed + Allow"]
# ```
#
# The boxes where a request can end up, the route's app and the mounted app, are WSGI
# apps, and so is the router itself, which is what a server calls. That is the Starlette idea, "everything is
# an app", in WSGI clothes. It means a router can be mounted inside another router, wrapped
# in chapter 07's middleware, or served on its own.

# %% [markdown]
# ## A naive router, broken three ways
#
# Most tutorial routers are one `re.sub`: replace each `{name}` in the template with a
# named group that matches one path segment, and call `re.match`. `(?P<name>...)` is a
# *named group*: whatever it matches is available afterwards as `match["name"]`.

# %%
import re

def naive_compile(template):
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))

naive_compile("/files/v1.0/{name}").pattern

# %% [markdown]
# It looks right: the literal part is copied as it is, and `{name}` became a group that
# takes anything up to the next `/`. `naive_match` puts it to work on one path, and
# returns the parameters it found, or says that the template did not match:

# %%
def naive_match(template, path):
    found = naive_compile(template).match(path)
    return str(found.groupdict()) if found else "no match"

naive_match("/files/v1.0/{name}", "/files/v1.0/readme")

# %% [markdown]
# That is the case every tutorial shows. Now ask it about three paths that a real site
# will receive sooner or later, one for each row below. `show_transcript`, from barelab,
# draws a list of rows as a table.

# %%
from barelab import show_transcript

cases = [("/files/v1.0/{name}", "/files/v1x0/readme"), ("/users/{name}", "/users/ada/delete"),
         ("/users/{id:integer}", "/users/7")]
show_transcript([(template, path, naive_match(template, path)) for template, path in cases],
                columns=("template", "path", "naive router says"))

# %% [markdown]
# Three bugs, each one a real outage somewhere:
#
# - **Literal parts were not escaped.** In a regex `.` means "any character", so the
#   template for version `1.0` also answers `v1x0`, `v1/0`, and anything else a scanner
#   cares to try. Every literal character must be matched as itself: `re.escape`.
# - **`re.match` matches a prefix.** It anchors at the start only, so `/users/{name}`
#   answered `/users/ada/delete` with `name='ada'`, and a handler that shows a user just
#   got a request meant for somebody else's delete route. The whole path must match:
#   `re.fullmatch`.
# - **A typo was silently accepted.** `{id:integer}` is not a `\w+` name, so the naive
#   `re.sub` left it in the pattern as literal text. The route now matches only the path
#   `/users/{id:integer}`, and nothing tells you so: the page is just a 404 forever. A
#   mistake in a route table should stop the program when the route is added, with a
#   message that says what is allowed.

# %% [markdown]
# ## Converters: the type of a parameter
#
# Everything built from here on goes into one module. This cell names it; each cell marked
# `#| export` is copied into `barelab/built/routing.py` when the notebook is built, so
# later chapters can `from barelab.built.routing import Router`.

# %%
#| default_exp routing

# %% [markdown]
# The module opens with a comment on its design, then its imports. `quote` and `unquote`
# do percent-encoding (`' '` ↔ `'%20'`); `reason_phrase` comes from chapter 02 and turns
# `404` into `"Not Found"`.

# %%
#| export
# Routing for WSGI: path templates with typed parameters, compiled to regular expressions.
# A Router is itself a WSGI app, and so is everything it dispatches to: handlers and mounted
# apps. It reads PATH_INFO and REQUEST_METHOD and nothing else, and answers 400, 404, 405
# and OPTIONS by itself. A mistake in a route table (unknown converter, bad braces, a name
# used twice, a route that can never be reached) raises ValueError when the route is added,
# so it fails as the program starts, never on a request.
import re
import uuid
from urllib.parse import quote, unquote

from barelab.built.http_wire import reason_phrase

# %% [markdown]
# A parameter such as `{id:int}` has a **converter**, `int`, that answers three questions:
#
# - `regex`: which text can this parameter match?
# - `to_python(text)`: what value does the handler get for that text? Raising `ValueError`
#   here means "this route does not match after all".
# - `to_url(value)`: how is a value written back into a URL? `url_for` uses it.
#
# The base class is the plain string case: one path segment, given to the handler as is.
# `quote(..., safe="")` percent-encodes everything that is not a letter, a digit or one of
# `_.-~`, including `/`.

# %%
#| export
class Converter:
    """One type of path parameter: the text it matches and how that text becomes a value."""

    regex = r"[^/]+"

    def to_python(self, text: str):
        """The value for the matched text; ValueError means "this route does not match"."""
        return text

    def to_url(self, value) -> str:
        """The value as percent-encoded URL text (url_for checks that it matches ``regex``)."""
        return quote(str(value), safe="")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.regex!r})"

# %% [markdown]
# Ask the base class all three questions, with a value that holds a space and a slash:

# %%
plain = Converter()
plain, plain.to_python("hello world/2"), plain.to_url("hello world/2")

# %% [markdown]
# The regex takes one segment, `to_python` hands the text over unchanged, and `to_url`
# turned the space into `%20` and the slash into `%2F`: inside a parameter, a `/` is data,
# not a separator.
#
# The `str` converter is the default, used when a parameter names no converter. It adds
# one refusal to `to_url`. The segments `.` and `..` mean "this folder" and "the parent
# folder", and every client removes them from a URL before sending it (RFC 3986 §5.2.4):
# `curl http://host/users/..` asks for `/`. Percent-encoding does not help, because `%2E`
# is just another spelling of `.` (RFC 3986 §6.2.2.2). So a URL with a `..` parameter
# cannot reach its route, and `url_for` refuses to build it.

# %%
#| export
class StrConverter(Converter):
    """One path segment: any text without "/" (the default converter)."""

    def to_url(self, value) -> str:
        if str(value) in (".", ".."):
            raise ValueError(f"{value!r} is a dot-segment: clients remove it from URLs "
                             "(RFC 3986 §5.2.4), so no request would carry it")
        return quote(str(value), safe="")

# %% [markdown]
# Many calls in this chapter are meant to fail, and a traceback would stop the cell at
# the first one. `attempt` calls a function and shows its result, or the exception it
# raised, so that one cell (or one table) can hold both:

# %%
def attempt(function, *args):
    """Call function(*args); show the result, or the exception it raised."""
    try:
        return repr(function(*args))
    except Exception as error:
        return f"{type(error).__name__}: {error}"

attempt(StrConverter().to_url, "notes"), attempt(StrConverter().to_url, "..")

# %% [markdown]
# An ordinary value goes through; `..` is refused, and the message says why.
#
# ### `int`: one number, one URL
#
# For an `int` parameter the obvious regex is `\d+`. Try it on a number written in
# Arabic-Indic digits, which a browser sends as easily as `42`:

# %%
digits = "٤٢"
re.fullmatch(r"\d+", digits) is not None, int(digits)

# %% [markdown]
# In a `str` pattern, `\d` means any Unicode decimal digit, and `int()` accepts them all.
# So `/users/٤٢` would show user 42. That is a second URL for the same resource, one that
# a cache, a rate limiter or an access rule written for `/users/42` does not recognise.
# The same goes for `/users/042` and `/users/0042`: `int()` drops leading zeros happily.
#
# This router takes a firm line: **every integer has exactly one URL**. The `int`
# converter matches ASCII digits only (`[0-9]`, not `\d`), with no leading zero (`0` itself
# is fine), and no sign, because the numbers in paths are ids and counts, which are never
# negative. `/users/007` is a 404, not a quiet alias. Werkzeug's `int` converter makes the
# same choice about signs; exercise 1 builds a signed converter for when you need one.
#
# `to_url` has a trap of its own: `True` is an `int` in Python (`isinstance(True, int)`
# is true, and `True + 1 == 2`), so `isinstance` alone would let it in, and `str(True)`
# would put the text `True` in the URL. The extra check names the real mistake instead.
#
# One more trap hides in `to_python`: since Python 3.11, `int()` refuses strings of more
# than 4300 digits (a defence against slow conversions). That `ValueError` is exactly the
# "does not match" signal a converter may raise, so a 5000-digit id is a 404, never a 500.

# %%
#| export
class IntConverter(Converter):
    """A non-negative integer written the one canonical way: ASCII digits, no leading zero."""

    regex = r"0|[1-9][0-9]*"

    def to_python(self, text: str) -> int:
        return int(text)        # ValueError above 4300 digits: the route does not match

    def to_url(self, value) -> str:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"an int parameter needs an int, not {value!r}")
        return str(value)

# %% [markdown]
# Put six candidates through both steps: does the regex take the text, and what does
# `to_python` make of it? The last one is a 1 followed by 5000 zeros, cut short in the
# table (as is its error message) so that it fits on a line.

# %%
as_int = IntConverter()
candidates = ["42", "0", "007", "-7", "٤٢", "1" + "0" * 5000]
show_transcript([(text[:12] + ("…" if len(text) > 12 else ""),
                  str(re.fullmatch(as_int.regex, text) is not None),
                  attempt(as_int.to_python, text)[:60]) for text in candidates],
                columns=("text", "regex matches", "to_python"))

# %% [markdown]
# Read the `to_python` column for the rows where the regex says `False`: `int()` would
# have turned `007`, `-7` and `٤٢` into numbers without a murmur. The regex is the only
# thing standing in the way, and it refuses all three, so they never reach `to_python`. The 5000-digit
# number passes the regex and is refused by `int()`, and the router will treat that as "no
# match". (You could also cap the length in the regex; this way the limit is Python's own.)
#
# ### `path`: the rest of the path
#
# A `path` parameter matches the rest of the path, slashes included: it is for file names
# under a folder, such as `/static/{file:path}`. It must not match a string that starts
# with `/`, and here is why. Handlers join such a parameter to a folder name, and:

# %%
import os.path

os.path.join("/srv/static", "css/site.css"), os.path.join("/srv/static", "/etc/passwd")

# %% [markdown]
# An absolute second argument throws the first one away. The request
# `GET /static//etc/passwd` would hand the handler `/etc/passwd`. So the regex is
# `[^/].*`: at least one character, and not a slash first. (`..` segments are still the
# handler's problem: chapter 04's static files refuse them.) Werkzeug's `path` converter
# makes the same choice.

# %%
#| export
class PathConverter(Converter):
    """The rest of the path, "/" included: at least one character, not starting with "/"."""

    regex = r"[^/].*"

    def to_url(self, value) -> str:
        if {".", ".."} & set(str(value).split("/")):
            raise ValueError(f"{value!r} has a dot-segment: clients remove them from URLs "
                             "(RFC 3986 §5.2.4), so no request would carry it")
        return quote(str(value), safe="/")

# %% [markdown]
# Check the two paths from the `os.path.join` cell against the regex, and write one back
# as a URL:

# %%
as_path = PathConverter()
[bool(re.fullmatch(as_path.regex, text)) for text in ("css/site.css", "/etc/passwd")], \
    as_path.to_url("css/site map.css")

# %% [markdown]
# The file under the folder matches and the absolute path does not. `to_url` keeps `/` as
# it is (`safe="/"`), since here it *is* a separator, and encodes only the space.
#
# ### `uuid`, and the table of converters
#
# The last converter matches a UUID in its canonical form: lowercase hex in groups of
# 8-4-4-4-12, the way `str(uuid.UUID(...))` writes it. Uppercase is refused for the same
# reason as `007`: one resource, one URL. The handler gets a `uuid.UUID` object.

# %%
#| export
class UUIDConverter(Converter):
    """A UUID in its canonical lowercase form; the handler gets a ``uuid.UUID``."""

    regex = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def to_python(self, text: str) -> uuid.UUID:
        return uuid.UUID(text)

    def to_url(self, value) -> str:
        return str(uuid.UUID(str(value)))

# %% [markdown]
# `to_url` goes through `uuid.UUID` too, so whatever spelling of a UUID you pass in, the
# URL gets the canonical one:

# %%
as_uuid = UUIDConverter()
as_uuid.to_python("12345678-1234-5678-1234-567812345678"), \
    as_uuid.to_url("{12345678-1234-5678-1234-567812345678}".upper())

# %% [markdown]
# The handler gets a `UUID` object, not a string, and the braced uppercase spelling came
# out lowercase and without braces.
#
# `CONVERTERS` maps the name used in a template (`{id:int}`) to a converter object. One
# object per converter is enough, because converters keep no state between requests. A
# router can be given more (exercise 1 adds one).

# %%
#| export
CONVERTERS = {"str": StrConverter(), "int": IntConverter(), "path": PathConverter(),
              "uuid": UUIDConverter()}

# %% [markdown]
# Here are the four, with their regexes:

# %%
show_transcript([(name, converter.regex) for name, converter in CONVERTERS.items()],
                columns=("name", "regex"))

# %% [markdown]
# ## From template to regex
#
# Now the template itself. The plan: split `/users/{id:int}/posts/{slug}` into *literal*
# parts (`/users/`, `/posts/`) and *parameters* (`id` with the `int` converter, `slug` with
# `str`), checking every piece as you go; then glue one regex together from the pieces.
#
# A parameter is whatever sits between a `{` and the next `}`, with no other brace inside.
# `_parameter` checks one of them. Its name must be a Python identifier, because it becomes
# a regex group name and a keyword argument of `url_for`. It must not be used twice in one
# template. And its converter, if it names one, must exist: the error lists the ones that
# do, so a typo is fixed in seconds.

# %%
#| export
PARAMETER = re.compile(r"\{([^{}]*)\}")


def _parameter(template: str, spec: str, converters: dict, seen: set) -> tuple:
    name, colon, kind = spec.partition(":")
    if not name.isidentifier():
        raise ValueError(f"bad parameter {{{spec}}} in {template!r}: "
                         "its name must be a Python identifier")
    if name in seen:
        raise ValueError(f"parameter {name!r} appears twice in {template!r}")
    if colon and kind not in converters:
        raise ValueError(f"unknown converter {kind!r} in {template!r}; "
                         f"known converters: {', '.join(sorted(converters))}")
    seen.add(name)
    return name, converters[kind if colon else "str"]

# %% [markdown]
# Give it one good parameter and one with a typo in its converter. `spec` is the text
# between the braces, and `seen` the names used so far in this template:

# %%
_parameter("/users/{id:int}", "id:int", CONVERTERS, set()), \
    attempt(_parameter, "/users/{id:intt}", "id:intt", CONVERTERS, set())

# %% [markdown]
# The good one comes back as a pair, the name and the converter object. The typo is
# refused, and the message lists the four names you could have meant.

# %% [markdown]
# `parse_template` walks the template from one parameter to the next and collects the
# literal text in between. Whatever braces are left in the literal parts afterwards were
# not part of a well-formed `{...}`, so they are an error: `{id` with no `}`, a stray `}`,
# `{{id}}`. Two more rules:
#
# - A template starts with `/`, because `PATH_INFO` does (PEP 3333).
# - Two parameters may not touch. In `/{name}{ext}`, which part of `report.pdf` is the
#   name? The regex would pick one answer, silently. Write `/{name}.{ext}` instead.
#
# The result is a list: strings for literal parts, `(name, converter)` pairs for
# parameters.

# %%
#| export
def parse_template(template: str, converters: dict = CONVERTERS) -> list:
    """Split a template into literal strings and ``(name, converter)`` pairs; ValueError if bad."""
    if not template.startswith("/"):
        raise ValueError(f"template {template!r} must start with '/'")
    parts, seen, end = [], set(), 0
    for found in PARAMETER.finditer(template):
        parts += [template[end:found.start()], _parameter(template, found[1], converters, seen)]
        end = found.end()
    parts.append(template[end:])
    for literal in parts[::2]:
        if "{" in literal or "}" in literal:
            raise ValueError(f"unbalanced brace in {template!r} (near {literal!r})")
    if "" in parts[2:-1:2]:
        raise ValueError(f"two parameters touch in {template!r}: put a literal between them")
    return [part for part in parts if part != ""]

# %%
parse_template("/users/{id:int}/posts/{slug}")

# %% [markdown]
# Four parts: the literal `/users/`, the parameter `id` with its `IntConverter`, the
# literal `/posts/`, and `slug` with the default `StrConverter`.
#
# Two lines of `parse_template` deserve a second look. Before the empty strings are
# dropped, `parts` strictly alternates: literal, parameter, literal, ..., literal, with a
# literal (maybe `""`) at both ends. So `parts[::2]`, every second item from the first,
# is exactly the literal text, and that is where a stray brace would be. `parts[2:-1:2]`
# skips the first and the last literal and keeps the ones *between* two parameters; if
# one of those is `""`, two parameters touch.
#
# Gluing the regex together is where the first naive bug gets fixed: each literal part goes
# through `re.escape`, which puts a backslash before every character that means something
# in a regex. Each parameter becomes a named group around its converter's regex.

# %%
#| export
def compile_template(parts: list) -> re.Pattern:
    """One regex for the whole path: literal parts escaped, each parameter a named group."""
    return re.compile("".join(
        re.escape(part) if isinstance(part, str) else f"(?P<{part[0]}>{part[1].regex})"
        for part in parts), re.DOTALL)      # "." must match "\n" too: %0A decodes to one

# %%
versioned = compile_template(parse_template("/files/v1.0/{name}"))
versioned.pattern

# %% [markdown]
# The dot is now `\.`, a dot and nothing else. Two details in that cell matter:
#
# - The group around each converter's regex keeps it in one piece. Without it, the `|` in
#   `int`'s `0|[1-9][0-9]*` would split the *whole* pattern in two.
# - `re.DOTALL`. A client may send `%0A`, which decodes to a newline, and by default a
#   regex `.` matches anything *except* a newline. Without the flag, `path`'s `[^/].*`
#   would refuse `notes%0Adraft.txt`, and `url_for` would refuse to write it. This one was
#   found by the chapter's property tests (hypothesis), on the input `'0\n'`.
#
# Ask the same question the naive router got wrong, using `fullmatch` this time:

# %%
[bool(versioned.fullmatch(path)) for path in
 ("/files/v1.0/readme", "/files/v1x0/readme", "/files/v1.0/readme/extra")]

# %% [markdown]
# Only the real path matches. `v1x0` fails on the escaped dot, and the extra segment fails
# because `fullmatch` must cover the whole string.
#
# And the third bug: a bad template now fails at once, with a message. Here is a gallery
# of mistakes, each refused by `parse_template` before any request could meet it:

# %%
bad_templates = ["/users/{id:integer}", "/users/{id", "/users/id}", "/users/{}",
                 "/users/{id:}", "/users/{user id}", "/a/{x}/b/{x}", "/{name}{ext}", "users"]
show_transcript([(template, attempt(parse_template, template)) for template in bad_templates],
                columns=("template", "parse_template says"))

# %% [markdown]
# The typo from the naive router, `{id:integer}`, now names the four converters that do
# exist. `{id:}` names an empty converter, which is as unknown as `integer`.

# %% [markdown]
# ## Routes
#
# A route is a template plus the WSGI app that answers it and the HTTP methods it accepts.
#
# Methods first. A method name is a *token* (RFC 9110 §9.1, §5.6.2), and method names are
# case-sensitive: a request for `get /` is not a GET. Inside the program, though,
# `methods=["get"]` can only mean one thing, so the route table upper-cases what you write.
# Then the rule that saves every app a handler: RFC 9110 §9.3.2 says HEAD is "identical to
# GET except that the server MUST NOT send content in the response", and §9.1 says every
# general-purpose server must support both. So wherever GET is accepted, HEAD is too, and
# the GET handler answers it.

# %%
#| export
METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")   # a token, RFC 9110 §5.6.2


def allowed_methods(methods) -> frozenset:
    """The methods a route answers: as declared, upper-cased, plus HEAD wherever GET is."""
    if isinstance(methods, str):
        raise TypeError(f"methods must be a list such as [{methods!r}], not a string")
    declared = {method.upper() for method in methods}
    if not declared or not all(METHOD.fullmatch(method) for method in declared):
        raise ValueError(f"methods must be HTTP method names (RFC 9110 §9), got {methods!r}")
    return frozenset(declared | ({"HEAD"} if "GET" in declared else set()))

# %%
sorted(allowed_methods(["get", "post"])), attempt(allowed_methods, "GET")

# %% [markdown]
# The lowercase names came out uppercase, and HEAD joined because GET is there. `METHOD`
# is RFC 9110's `token`: letters, digits and fifteen punctuation marks, which is why a
# name with a space or a slash in it is refused.
#
# The second call is a trap worth a clear error: `methods="GET"` is a string, and a string
# is an iterable of letters, so without the check the route would accept the methods `G`,
# `E` and `T`.
#
# Now the `Route` itself. Creating one does all the checking: `parse_template` refuses a
# bad template, `allowed_methods` a bad method list, and `compile_template` builds the
# regex once, so no request ever pays for it. `params` keeps just the parameters, in
# order. A route's `name` defaults to the handler's function name; `url_for` will look
# routes up by it.

# %%
#| export
class Route:
    """A path template, the WSGI app that answers it, and the methods it accepts."""

    def __init__(self, template: str, app, methods=("GET",), name: str | None = None,
                 converters: dict = CONVERTERS):
        self.template, self.app = template, app
        self.name = name if name is not None else getattr(app, "__name__", None)
        self.parts = parse_template(template, converters)
        self.params = [part for part in self.parts if not isinstance(part, str)]
        self.regex = compile_template(self.parts)
        self.methods = allowed_methods(methods)

    def __repr__(self) -> str:
        return f"<Route {', '.join(sorted(self.methods))} {self.template} -> {self.name}>"

# %% [markdown]
# A route needs an app to answer with. For now any function will do, since nothing will
# call it yet; its name becomes the route's name. Declare the methods in lowercase, to see
# what the route makes of them:

# %%
def show_post(environ, start_response):
    raise NotImplementedError("not called yet")

post_route = Route("/users/{id:int}/posts/{slug}", show_post, methods=["get"])
post_route

# %% [markdown]
# The repr reads like a line of a route table: `get` became `GET`, HEAD joined it, and the
# name `show_post` came from the function.
#
# `match(path)` answers "is this path mine?". It returns the parameters, each already
# converted by its converter, or `None`. Two things make it strict: `fullmatch`, so the
# regex must cover the whole path, and the `ValueError` rule, so a converter that refuses
# the text (the 5000-digit number) also means `None`, never an exception.

# %%
#| export
def _match(self, path: str) -> dict | None:
    """The converted parameters if ``path`` (decoded text) is this route's, else None."""
    found = self.regex.fullmatch(path)
    if found is None:
        return None
    try:
        return {name: converter.to_python(found[name]) for name, converter in self.params}
    except ValueError:
        return None

Route.match = _match

# %% [markdown]
# `_match` is written as a function and then attached to the class, to keep each cell
# short: `Route.match = _match` has the same effect as writing `def match` inside the
# class. The chapter does this a few more times.
#
# Try `post_route` on four paths: the one it was written for, and three near misses.

# %%
show_transcript([(path, repr(post_route.match(path))) for path in [
    "/users/7/posts/hello-world", "/users/7/posts/hello/world", "/users/07/posts/x",
    "/users/7/posts/"]], columns=("path", "match"))

# %% [markdown]
# `id` arrives as the integer `7`, not the string `"7"`. A `str` parameter stops at `/`, a
# leading zero is refused, and an empty segment is not a value (the converter's regex ends
# in `+`, so it needs at least one character).

# %% [markdown]
# ### Building URLs: `url`
#
# Writing `"/users/" + str(user.id) + "/posts/" + slug` by hand goes wrong the first time
# a slug contains a space or a `?`. The route knows its own shape, so it can write the URL:
# literal parts percent-encoded with `/` kept, each value through its converter's `to_url`.
#
# Each value gets one extra check, which makes every converter safe at once: decode the
# text `to_url` made and make sure it matches the converter's regex. A URL that would not
# come back to this same route is an error *now*, not a 404 for a user later.
# `_param_url` does that for one parameter.

# %%
#| export
def _param_url(template: str, name: str, converter: Converter, value) -> str:
    """``value`` as URL text for parameter ``name``; ValueError if it would not come back."""
    text = converter.to_url(value)
    if not re.fullmatch(converter.regex, unquote(text), re.DOTALL):
        raise ValueError(f"{name}={value!r} cannot go into {template!r}: "
                         f"{text!r} would not match {{{name}}}")
    return text

# %% [markdown]
# The `str` value `a/b` is the classic case. `to_url` happily writes `a%2Fb`, but the
# server decodes `%2F` back to `/` (you will see why in a moment), and a `str` parameter
# never matches a `/`:

# %%
attempt(_param_url, "/posts/{slug}", "slug", StrConverter(), "a/b")

# %% [markdown]
# The whole URL is then the pieces glued together. The values come in as keyword
# arguments, one per parameter; a missing or an extra one is a `TypeError`, just as it
# would be for a function call.

# %%
#| export
def _url(self, **values) -> str:
    names = [name for name, _ in self.params]
    if sorted(values) != sorted(names):
        raise TypeError(f"route {self.name!r} takes {names}, got {sorted(values)}")
    return "".join(quote(part, safe="/") if isinstance(part, str)
                   else _param_url(self.template, *part, values[part[0]])
                   for part in self.parts)

Route.url = _url

# %% [markdown]
# Five sets of values for `post_route`, one that works and four that should not:

# %%
show_transcript([(repr(values), attempt(lambda: post_route.url(**values))) for values in [
    {"id": 7, "slug": "hello world?"}, {"id": 7, "slug": "a/b"}, {"id": -1, "slug": "x"},
    {"id": "7", "slug": "x"}, {"id": 7}]], columns=("values", "url"))

# %% [markdown]
# The first URL is usable as is: the space and the `?` are encoded, so the `?` does not
# start a query string. Each of the other four is refused with the reason: a slash inside
# a `str` value, a negative id, an id that is a string, a missing value.

# %% [markdown]
# ## Mounts: a whole app under a prefix
#
# A **mount** hands a prefix and everything below it to another WSGI app: an admin app at
# `/admin`, an API at `/api`, an old Flask app at `/legacy`. The naive test for "is this
# path under `/api`?" is a string prefix:

# %%
[path.startswith("/api") for path in ("/api", "/api/users", "/apiary", "/api-docs")]

# %% [markdown]
# `/apiary` (a page about bees) and `/api-docs` are not under `/api`, yet they start with
# the same four characters. Paths are made of *segments*, and a prefix must end on a
# segment boundary: the path is the prefix itself, or the prefix followed by `/`.
#
# The mounted app must also learn where it lives. PEP 3333 splits the path in two:
# `SCRIPT_NAME` is "the initial portion of the request URL's path that corresponds to the
# application object", and `PATH_INFO` is "the remainder". The section "URL
# Reconstruction" rebuilds the URL as `quote(SCRIPT_NAME) + quote(PATH_INFO)`, so a mount
# moves its prefix from the front of `PATH_INFO` to the end of `SCRIPT_NAME` and changes
# nothing else. The mounted app sees `PATH_INFO="/users"`, routes on that, and still
# builds correct links with `SCRIPT_NAME` in front.
#
# A `Mount` holds the prefix and the app, and checks the prefix when it is made. It also
# keeps `raw`, the prefix in `PATH_INFO`'s own form ("bytes in str", explained two sections
# from here), so that a prefix such as `/café` works too.

# %%
#| export
class Mount:
    """A WSGI app that answers every path at or below ``prefix``, on a segment boundary."""

    def __init__(self, prefix: str, app):
        if not prefix.startswith("/") or prefix.endswith("/") or PARAMETER.search(prefix):
            raise ValueError(f"mount prefix {prefix!r} must start with '/', not end with '/', "
                             "and have no parameters")
        self.prefix, self.app = prefix, app
        self.raw = prefix.encode("utf-8").decode("latin-1")    # as it appears in PATH_INFO

    def __repr__(self) -> str:
        return f"<Mount {self.prefix} -> {getattr(self.app, '__name__', type(self.app).__name__)}>"

# %%
Mount("/api", show_post), attempt(Mount, "/api/", show_post)

# %% [markdown]
# Why refuse a prefix that ends in `/`? `Mount("/api/", ...)` would keep `/api` itself
# out, and would hand `/api/users` to the app as `users`, without the leading slash that
# every non-empty `PATH_INFO` must have (CGI's rule, RFC 3875 §4.1.5, which
# `wsgiref.validate` checks).
#
# `split` does the segment-boundary test. It returns what is left of `PATH_INFO` below the
# prefix, which becomes the mounted app's `PATH_INFO`, or `None` when the path is not
# below the prefix at all.

# %%
#| export
def _split(self, path_info: str) -> str | None:
    """What is left of PATH_INFO below the prefix, or None if the path is not below it."""
    if path_info == self.raw or path_info.startswith(self.raw + "/"):
        return path_info[len(self.raw):]
    return None

Mount.split = _split

# %% [markdown]
# The same four paths as the `startswith` test, and `/api/`:

# %%
api_mount = Mount("/api", show_post)
{path: api_mount.split(path) for path in ("/api", "/api/", "/api/users/7", "/apiary", "/api-docs")}

# %% [markdown]
# `/apiary` and `/api-docs` stay out. `/api` itself is in, with an empty `PATH_INFO`. PEP
# 3333 allows exactly that: `PATH_INFO` "may be an empty string, if the request URL targets
# the application root and does not have a trailing slash." Keep it in mind: the router
# will have to treat an empty `PATH_INFO` as its root, `/`.

# %% [markdown]
# ## Which route wins?
#
# Here is the order trap. A route for any user's profile, then a route for your own:

# %%
def show_user(environ, start_response):
    raise NotImplementedError("not called yet")

def show_me(environ, start_response):
    raise NotImplementedError("not called yet")

table = [Route("/users/{name}", show_user), Route("/users/me", show_me)]
[route.name for route in table if route.match("/users/me") is not None]

# %% [markdown]
# Both routes match `/users/me`. A router that takes the first match in declaration order
# sends it to `show_user` with `name='me'`, and `show_me` never runs.
#
# There are two ways out:
#
# 1. **Sort by specificity**, as Werkzeug (and so Flask) does: literal segments beat
#    parameters, whatever the order you wrote. `/users/me` wins automatically. The price is
#    a ranking rule you must learn and trust. Is `/{a}/b` more specific than `/a/{b}`? Is
#    `{id:int}` more specific than `{name}`? Werkzeug answers with a weighting scheme, and
#    the order in your file stops meaning anything.
# 2. **Keep declaration order**, as Django, Starlette and Express do: the first route that
#    matches wins, and reading the table top to bottom tells you what happens.
#
# This router keeps declaration order, because a table you can read beats a rule you must
# remember. But it does not let the trap pass in silence. When you add a route whose
# template has no parameters, there is exactly one path it can match, so the router can
# simply *try* that path on every earlier row. If an earlier route takes it for the same
# methods, or a mount takes it, the new route is dead code, and adding it is an error
# that tells you to move it up.
#
# A template with parameters is not checked: whether one regex covers another is a hard
# question in general, and a check that is sometimes wrong is worse than none.
#
# Read `unreachable_reason` with that in mind. For a template with no parameters, the
# template *is* the one path it can match, so the function simply hands the template to
# each earlier entry as if it were a request. Routes get it as text, through `match`;
# mounts compare in `PATH_INFO`'s "bytes in str" form, hence the `encode`/`decode` line.

# %%
#| export
def unreachable_reason(entries: list, route: Route) -> str | None:
    """Why ``route`` could never be reached behind ``entries``, or None if it can be."""
    if route.params:              # only a template without parameters has a single path
        return None
    raw = route.template.encode("utf-8").decode("latin-1")
    for entry in entries:
        if isinstance(entry, Mount) and entry.split(raw) is not None:
            return f"the mount at {entry.prefix!r} takes every path below it"
        if isinstance(entry, Route) and entry.match(route.template) is not None:
            taken = entry.methods & route.methods
            if taken:
                return (f"{entry.template!r}, declared earlier, matches it first for "
                        f"{', '.join(sorted(taken))}")
    return None

# %%
unreachable_reason(table[:1], table[1])

# %% [markdown]
# Methods count. If `/users/me` accepted only `DELETE`, the earlier GET route would not
# stand in its way, and the check would pass:

# %%
print(unreachable_reason(table[:1], Route("/users/me", show_me, methods=["DELETE"])))

# %% [markdown]
# `None`: nothing stands in the way. (The `print` is there because a cell whose value is
# `None` shows nothing at all.)

# %% [markdown]
# ## Which path? Percent-decoding and UTF-8
#
# Routes match text such as `/posts/café`. What arrives in `environ` is not quite that.
# The browser sends the path percent-encoded, `/posts/caf%C3%A9` (the two UTF-8 bytes of
# `é`). The server decodes the percent escapes into *bytes*, and PEP 3333 ("Unicode
# Issues") says every `environ` string holds bytes as latin-1 characters, one character
# per byte. `barelab.build_environ` builds an environ the way a server does:

# %%
import barelab

path_info = barelab.build_environ(path="/posts/caf%C3%A9")["PATH_INFO"]
path_info, len(path_info)

# %% [markdown]
# Twelve characters where you expected eleven: `é` became two, `Ã` (byte `0xC3`) and `©`
# (byte `0xA9`). This is the "bytes in str" form. Match routes on it as it is, and the
# handler gets `'cafÃ©'`, which is garbage (called *mojibake*). The two bytes are UTF-8,
# which RFC 3986 §2.5 recommends for text in URLs and every browser uses for non-ASCII
# paths, so the router turns the string back into bytes and decodes those as UTF-8:

# %%
path_info.encode("latin-1").decode("utf-8")

# %% [markdown]
# Now the case where it fails. `%FF` is a legal escape (RFC 3986 allows any byte), but the
# byte `0xFF` never appears in UTF-8. Three choices:
#
# - **decode with `errors="replace"`**, as Werkzeug and uvicorn do: `%FF` becomes `�`, and
#   so do `%FE` and `%C0`. Different URLs turn into the same parameter, and the handler
#   gets a value the client never sent.
# - **404 Not Found**: true, in a way, since no route is written in bytes that are not
#   UTF-8. But it tells the client "wrong address", when the address is fine and its
#   encoding is not.
# - **400 Bad Request**: RFC 9110 §15.5.1 defines it for "something that is perceived to
#   be a client error". A path the router cannot read is one.
#
# This router answers **400**, for every path its *routes* would have to read. Mounts are
# different: to route to a mount, the router only compares a prefix, which needs no
# decoding, and the mounted app gets `PATH_INFO` untouched. So a path below a mount
# reaches its app whatever its bytes, and that app decides what they mean.
#
# `decode_path` returns the text, or `None` when the bytes are not UTF-8. An empty
# `PATH_INFO` (the root of a mounted app, as you saw) becomes `/`.

# %%
#| export
def decode_path(path_info: str) -> str | None:
    """PATH_INFO ("bytes in str", PEP 3333) as the UTF-8 text it spells; None if it is not."""
    try:
        return path_info.encode("latin-1").decode("utf-8") or "/"
    except UnicodeError:        # not UTF-8, or a server that broke PEP 3333's latin-1 rule
        return None

# %%
[decode_path(barelab.build_environ(path=p)["PATH_INFO"]) for p in
 ("/posts/caf%C3%A9", "/posts/%FF", "/a%2Fb", "")]

# %% [markdown]
# Look at the third one. `%2F` decoded to `/` before the router ever saw it: the server did
# it, following CGI, and in `PATH_INFO` an encoded slash and a real one look the same. So
# no `str` parameter can ever receive a `/`, and that is why `url` refuses to build one.
# (Some servers keep the raw path in a non-standard key, such as gunicorn's `RAW_URI`.
# A router that relies on it only works on those servers.)

# %% [markdown]
# ## The router
#
# Every piece is ready. The router needs one more small thing: a way to answer a request
# itself, for the 400, 404 and 405 responses. `text_response` writes a short text body
# with its `Content-Type` and `Content-Length`, except for 204 and 304, which carry no
# content and so no `Content-Length` either (RFC 9110 §8.6 says a server "MUST NOT send a
# Content-Length header field in any response with a status code of ... 204").

# %%
#| export
def text_response(start_response, status: int, text: str, headers=()) -> list:
    """Answer with a short text/plain body; a 204 or 304 gets no body and no length."""
    line = f"{status} {reason_phrase(status)}"
    if status in (204, 304):
        start_response(line, list(headers))
        return []
    body = text.encode("utf-8")
    start_response(line, [("Content-Type", "text/plain; charset=utf-8"),
                          ("Content-Length", str(len(body))), *headers])
    return [body]

# %% [markdown]
# To see what it does, hand it a `start_response` that prints what it is given. One call
# with a 404 and one with a 204:

# %%
def print_start(status, headers):
    print(status, headers)

text_response(print_start, 404, "Not Found\n"), text_response(print_start, 204, "ignored")

# %% [markdown]
# The 404 got its status line, both headers and a body of one piece of bytes. The 204 got
# no headers and an empty body, even though it was given text: the function enforces the
# rule, so no caller can get it wrong.
#
# ### Handing over the parameters
#
# A route's app is a plain WSGI app, so the parameters must travel inside `environ`. Any
# key would do, but there is a published convention, the wsgiorg
# [routing_args](https://wsgi.readthedocs.io/en/latest/specifications/routing_args.html)
# specification: `environ["wsgiorg.routing_args"]` holds a tuple `(positional, named)`,
# the two halves of a Python call's `*args, **kwargs`. Other WSGI libraries read it:
# WebOb's `request.urlvars`, for one. This router only fills the named half, and keeps
# whatever an outer router put there before. `route_params` reads it back for a handler.

# %%
#| export
ROUTING_ARGS = "wsgiorg.routing_args"


def route_params(environ: dict) -> dict:
    """The named parameters a router found in the path (from ``wsgiorg.routing_args``)."""
    return environ.get(ROUTING_ARGS, ((), {}))[1]

# %% [markdown]
# ### The `Router` class
#
# The class holds the table, `entries`: routes and mounts, in the order they were
# declared. Next to it sits `names`, an index of routes by name for `url_for`. `converters=`
# adds converters to the four built-in ones. The methods come one cell at a time.

# %%
#| export
class Router:
    """A WSGI app that hands each request to the first route or mount that takes it."""

    def __init__(self, converters: dict | None = None):
        self.converters = {**CONVERTERS, **(converters or {})}
        self.entries: list = []          # Route and Mount objects, in declaration order
        self.names: dict = {}            # route name -> Route, for url_for

    def __repr__(self) -> str:
        return "\n".join(map(repr, self.entries)) or "<Router: no routes>"

# %%
empty = Router()
empty, sorted(empty.converters)

# %% [markdown]
# An empty table, and the four converter names its templates may use.
#
# `mount` applies the reachability rule to mounts: a mount at `/api/v1` added after one at
# `/api` would never see a request, because `/api` takes all of `/api/v1/...` first.

# %%
#| export
def _mount(self, prefix: str, app) -> Mount:
    """Hand ``prefix`` and every path below it to ``app``."""
    mount = Mount(prefix, app)
    for entry in self.entries:
        if isinstance(entry, Mount) and entry.split(mount.raw) is not None:
            raise ValueError(f"mount {prefix!r} can never be reached: the mount at "
                             f"{entry.prefix!r} takes it. Mount it before that one.")
    self.entries.append(mount)
    return mount

Router.mount = _mount

# %% [markdown]
# Mount in the wrong order and see the refusal:

# %%
apis = Router()
apis.mount("/api", show_post)
attempt(apis.mount, "/api/v1", show_post)

# %% [markdown]
# The message names the mount in the way and says how to fix it: the longer prefix goes
# first.
#
# `add` builds the `Route` (which checks the template and the methods), refuses a
# `name=` that is already taken and a route that can never be reached, and only then
# appends it. A route is never half-added.
#
# A name that was not given but taken from the function is allowed to repeat: one function
# may serve `/` and `/index.html`, and every app wrapped by `validator` is a function
# called `lint_app`. Such a name becomes *ambiguous* (`None` in the index), and `url_for`
# refuses it with a message saying so. That is the job of the last two lines of `_add`:
# the first time a function name appears it points to its route, the second time it
# points to `None`.

# %%
#| export
def _add(self, template: str, app, methods=("GET",), name: str | None = None) -> Route:
    route = Route(template, app, methods, name, self.converters)
    if name is not None and name in self.names:
        raise ValueError(f"a route is already named {name!r}")
    reason = unreachable_reason(self.entries, route)
    if reason:
        raise ValueError(f"route {template!r} can never be reached: {reason}. "
                         "Declare it before that one.")
    self.entries.append(route)
    if route.name is not None:      # a name taken twice from function names is ambiguous
        self.names[route.name] = None if route.name in self.names else route
    return route

Router.add = _add

# %% [markdown]
# Try the order trap again, on a real router this time:

# %%
users = Router()
users.add("/users/{name}", show_user)
attempt(users.add, "/users/me", show_me)

# %% [markdown]
# The error says what is wrong and how to fix it. Do what it says: declare `/users/me`
# first, and both routes are reachable.

# %%
users = Router()
users.add("/users/me", show_me)
users.add("/users/{name}", show_user)
users

# %% [markdown]
# Flask users write routes with a decorator, and so can you. `route` takes the same
# arguments as `add` and returns your function unchanged, so the same function can still
# be called or tested directly.

# %%
#| export
def _route(self, template: str, methods=("GET",), name: str | None = None):
    """Decorator form of ``add``; returns the handler unchanged."""
    def decorator(app):
        self.add(template, app, methods, name)
        return app
    return decorator

Router.route = _route

# %%
@users.route("/users/{name}/avatar")
def avatar(environ, start_response):
    raise NotImplementedError("not called yet")

users

# %% [markdown]
# A third row in the table, named after the function. Last, `url_for` finds a route by
# name and lets it write the URL. The name is *positional-only* (the `/` in the signature),
# so a route may have a parameter called `name`, as these do, without a clash.

# %%
#| export
def _url_for(self, name: str, /, **params) -> str:
    """The path, from this router's root, that route ``name`` answers with ``params``."""
    if name not in self.names:
        raise LookupError(f"no route named {name!r}; known: {', '.join(self.names)}")
    if self.names[name] is None:
        raise LookupError(f"{name!r} names several routes: add them with name=...")
    return self.names[name].url(**params)

Router.url_for = _url_for

# %%
users.url_for("avatar", name="ada lovelace"), attempt(users.url_for, "avatars")

# %% [markdown]
# The first `name` is the route, the second the parameter, and the space in the value came
# out as `%20`. A misspelt route name is a `LookupError` that lists the names there are.

# %% [markdown]
# ### 404 or 405?
#
# Now the dispatch itself, and the most common router bug of all. The naive loop asks one
# question per route, "path and method both right?", and answers 404 when no route says
# yes:

# %%
def naive_dispatch(router, method, path):
    for route in router.entries:
        if route.match(path) is not None and method in route.methods:
            return route.name
    return "404 Not Found"

[naive_dispatch(users, method, "/users/ada") for method in ("GET", "HEAD", "POST")]

# %% [markdown]
# The HEAD is right, because `Route.methods` already includes it. The POST is wrong. The
# page `/users/ada` exists, so "Not Found" is false, and a client, a crawler or a
# developer reading logs will go looking for a page that is right there. RFC 9110 §15.5.6
# has the right answer: **405 Method Not Allowed**, and "the origin server MUST generate
# an Allow header field in a 405 response containing a list of the target resource's
# currently supported methods".
#
# So the loop must tell two failures apart: "no route has this path" (404) and "some
# routes have this path, none takes this method" (405). Before the loop itself, the two
# things it hands on when a request *is* taken.
#
# A mount's app gets a *copy* of `environ` with the prefix moved from the front of
# `PATH_INFO` to the end of `SCRIPT_NAME`. A copy, not a change in place, so that
# middleware around the router still sees the request as it came.

# %%
#| export
def _mount_environ(environ: dict, mount: Mount, rest: str) -> dict:
    """A copy of environ for ``mount``'s app: the prefix moved from PATH_INFO to SCRIPT_NAME."""
    return {**environ, "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + mount.raw,
            "PATH_INFO": rest}

# %% [markdown]
# Pretend the whole site is itself mounted at `/site`, so `SCRIPT_NAME` is not empty, and
# a request arrives for `/api/users/7` below it:

# %%
outer = {"SCRIPT_NAME": "/site", "PATH_INFO": "/api/users/7"}
_mount_environ(outer, api_mount, api_mount.split(outer["PATH_INFO"]))

# %% [markdown]
# `SCRIPT_NAME` grew by `/api` and `PATH_INFO` lost it. Glue the two back together and
# you get `/site/api/users/7`, the path the client asked for: nothing was lost on the way.
#
# A route's app gets a copy with its parameters added to the named half of
# `wsgiorg.routing_args`, next to any that an outer router put there first:

# %%
#| export
def _params_environ(environ: dict, params: dict) -> dict:
    """A copy of environ with ``params`` added to the named half of wsgiorg.routing_args."""
    args, named = environ.get(ROUTING_ARGS, ((), {}))
    return {**environ, ROUTING_ARGS: (args, {**named, **params})}

# %%
_params_environ({ROUTING_ARGS: ((), {"version": 2})}, {"id": 7})

# %% [markdown]
# `version` came from the outer router, `id` from this one, and `route_params` would give
# the handler both.
#
# Now the loop. It walks the whole table, and every route whose path matches but not
# whose method does adds its methods to `allowed`. Mounts take every method: the mounted
# app decides what it accepts. When no entry took the request, `refuse` (next cell)
# answers.
#
# Each app is called through `forward`, not directly. For every method but HEAD,
# `forward(app, environ, start_response)` is just `app(environ, start_response)`; the HEAD
# case gets its own section below. A refusal to a HEAD loses its body the same way.

# %%
#| export
def _dispatch(self, environ: dict, start_response):
    raw, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    path, allowed = decode_path(raw), set()
    for entry in self.entries:
        if isinstance(entry, Mount):
            rest = entry.split(raw)
            if rest is not None:
                return forward(entry.app, _mount_environ(environ, entry, rest), start_response)
        elif path is not None and (params := entry.match(path)) is not None:
            if method in entry.methods:
                return forward(entry.app, _params_environ(environ, params), start_response)
            allowed |= entry.methods
    answer = refuse(raw, path, method, allowed, start_response)
    return [] if method == "HEAD" else answer

Router.__call__ = _dispatch

# %% [markdown]
# `(params := entry.match(path))` is Python's assignment expression: it calls `match` once,
# keeps the result in `params`, and lets the `if` test it in the same line. And the last
# line drops the body of a refusal to HEAD, for the same reason `forward` does for an app.
# Assigning `_dispatch` to `Router.__call__` is what makes a `Router` object callable as
# `router(environ, start_response)`, which is all a WSGI server asks of an app.

# %% [markdown]
# When nothing took the request, `refuse` answers, in this order:
#
# - the path is not UTF-8: **400**;
# - `OPTIONS *`, the request about the server as a whole (RFC 9110 §9.3.7): **204**, a
#   friendly "I am here";
# - no route matched the path: **404**;
# - the method is OPTIONS: **204 No Content** with `Allow`. RFC 9110 §9.3.7 says a
#   successful OPTIONS response "SHOULD send any header that might indicate optional
#   features ... (e.g., Allow)". This router answers OPTIONS for every path it knows,
#   unless a route claims OPTIONS for itself;
# - anything else: **405** with `Allow`.
#
# Since the router answers OPTIONS and HEAD itself, both belong in `Allow`. The list is
# sorted, so the header is the same on every request, and one header with commas is the
# form RFC 9110 §10.2.1 defines.

# %%
#| export
def refuse(raw: str, path: str | None, method: str, allowed: set, start_response) -> list:
    """The router's own answer when no route or mount took the request."""
    if path is None:
        return text_response(start_response, 400, "Bad Request: the path is not UTF-8\n")
    if raw == "*" and method == "OPTIONS":
        return text_response(start_response, 204, "")
    if not allowed:
        return text_response(start_response, 404, "Not Found\n")
    allow = ", ".join(sorted(allowed | {"OPTIONS"}))
    if method == "OPTIONS":
        return text_response(start_response, 204, "", [("Allow", allow)])
    return text_response(start_response, 405, f"Method Not Allowed. Allow: {allow}\n",
                         [("Allow", allow)])


# %% [markdown]
# Read `_dispatch` with one request in mind, `POST /users/ada` on the `users` router from
# above. `decode_path` gives the text `/users/ada`. The first route, `/users/me`, does not
# match. The second, `/users/{name}`, matches, but takes only GET and HEAD, so those two go
# into `allowed` and the loop moves on. The third, the avatar route, does not match. The
# table ends; `allowed` is not empty; the method is not OPTIONS: `refuse` answers 405 with
# `Allow: GET, HEAD, OPTIONS`. Check that reading against the real thing, and compare a
# path that really is not there:

# %%
def status_and_allow(router, method, path):
    reply = barelab.call_wsgi(router, method, path)
    return reply.status, reply.header("Allow")

status_and_allow(users, "POST", "/users/ada"), status_and_allow(users, "GET", "/nobody")

# %% [markdown]
# The POST that the naive loop called a 404 is now a 405 with the list of methods the
# page does take. `/nobody` matches no route at all, so it is a plain 404, with no `Allow`
# header to offer.

# %% [markdown]
# ### HEAD: no body, whatever the server
#
# A HEAD goes to the GET handler, which produces a body as usual. RFC 9110 §9.3.2 puts the
# duty to drop it on the server: "the server MUST NOT send content in the response". PEP
# 3333 says nothing about HEAD at all, and servers disagree about whose job it is.
# barelab's engine drops the body (h11 frames the response and refuses body bytes for a
# HEAD); gunicorn's maintainer long held that it is the app's job not to produce one
# (gunicorn issue #2598), and only a 2026 change (pull request #3616) made it drop the
# bytes. The standard library's `wsgiref` sends whatever it is given.
#
# See it. `wsgiref_once` serves an app with wsgiref for exactly one request and returns
# what came back. Port `0` asks the operating system for any free port;
# `handle_request` serves one request and returns, so the thread ends by itself, and
# `join(timeout=5)` waits for it without risking a hang. `QuietHandler` keeps wsgiref
# from printing a log line from its thread, which would land in a random cell.

# %%
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass

def wsgiref_once(app, data):
    httpd = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    worker = threading.Thread(target=httpd.handle_request, daemon=True)
    worker.start()
    try:
        return barelab.raw_exchange(f"http://127.0.0.1:{httpd.server_port}/", data)
    finally:
        worker.join(timeout=5)
        httpd.server_close()

# %% [markdown]
# A plain handler, asked with HEAD:

# %%
def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]

wsgiref_once(hello, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# There it is: `hello\n` after the empty line, six bytes that a HEAD response must not
# carry. wsgiref answers in HTTP/1.0 and closes the connection, so here the damage stays
# small. On a kept-alive connection, the client would read those six bytes as the start
# of the *next* response; behind a proxy that reuses connections, one user's stray body
# becomes the beginning of another user's answer.
#
# The router is the component that turned HEAD into a GET, so it makes sure no body
# leaves. Three details, all from PEP 3333:
#
# - A generator app calls `start_response` only when it is first iterated. So `drop_body`
#   runs the body up to its first non-empty piece (by then the status and headers are
#   known), and no further.
# - If the body has a `close()` method, the server must call it; since the router takes
#   the body away from the server, the router calls it.
# - Old apps may write through the `write()` callable that `start_response` returns
#   ("The write() callable" in PEP 3333). For HEAD it gets one that writes nothing.

# %%
#| export
def drop_body(result) -> list:
    """Run a response body until start_response has surely been called; close it; send nothing."""
    try:
        for chunk in result:
            if chunk:       # the app must call start_response before this (PEP 3333)
                break
    finally:
        if hasattr(result, "close"):
            result.close()
    return []

# %% [markdown]
# Watch it on a generator body that announces each step. It should stop after the first
# piece and still run the generator's `finally`:

# %%
def noisy_body():
    try:
        yield b"first piece"
        print("second piece made")      # never printed: drop_body stopped before
        yield b"second piece"
    finally:
        print("body closed")

drop_body(noisy_body())

# %% [markdown]
# One line printed, from `close()`, and nothing was returned to send. `forward` wraps it
# up: for HEAD, the app gets a `start_response` whose `write()` does nothing, and its body
# goes through `drop_body`.

# %%
#| export
def forward(app, environ: dict, start_response):
    """Call a WSGI app; for HEAD, make sure no body bytes leave, whatever app and server do."""
    if environ["REQUEST_METHOD"] != "HEAD":
        return app(environ, start_response)

    def start_without_body(status, headers, exc_info=None):
        start_response(status, headers, exc_info)
        return lambda data: None            # the legacy write() sends nothing either

    return drop_body(app(environ, start_without_body))

# %% [markdown]
# The headers go through untouched: `Content-Length` still says how long the GET body
# would be, which RFC 9110 §9.3.2 allows ("the server SHOULD send the same header fields in
# response to a HEAD request as it would have sent if the request method had been GET").
# The same `hello` behind a router, under the same wsgiref:

# %%
hello_router = Router()
hello_router.add("/", hello)
wsgiref_once(hello_router, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# Same status, same headers, `Content-Length: 6`, and nothing after the empty line.

# %% [markdown]
# ## The router at work
#
# Time for a real app. Each handler is a WSGI app that reads its parameters with
# `route_params` and answers with `text_response`. `!r` in the f-strings writes the value's
# `repr`, so the body shows whether `id` arrived as `7` or `'7'`. (Chapter 09 builds Request and Response
# objects that make handlers shorter; what you see here is what they stand on.)

# %%
site = Router()

@site.route("/")
def home(environ, start_response):
    return text_response(start_response, 200, "home\n")

@site.route("/users/{id:int}")
def show_user(environ, start_response):
    return text_response(start_response, 200, f"user {route_params(environ)['id']!r}\n")

# %% [markdown]
# Two more routes on the same path, for other methods:

# %%
@site.route("/users/{id:int}", methods=["PUT", "DELETE"])
def change_user(environ, start_response):
    verb = environ["REQUEST_METHOD"].lower()
    return text_response(start_response, 200, f"{verb} user {route_params(environ)['id']!r}\n")

@site.route("/users/{id:int}/posts/{slug}")
def show_post(environ, start_response):
    return text_response(start_response, 200, f"{route_params(environ)!r}\n")

site

# %% [markdown]
# The router shows its table. The GET routes gained HEAD. Call it in-process, without a
# server, as chapter 01 did with Flask:

# %%
barelab.call_wsgi(site, "GET", "/users/7/posts/hello")

# %% [markdown]
# The body is the parameters `show_post` found in `wsgiorg.routing_args`, with `id`
# already an `int`. You will not find that key in the folded environ above: barelab shows
# the environ it gave the router, and the router handed `show_post` a copy with the key
# added.
#
# ### A mounted app
#
# Now mount something the router did not build: a small Flask app at `/legacy`. Flask
# reads `SCRIPT_NAME`, so its own `url_for` will know it lives under `/legacy`. The
# handler reports what Flask saw: `request.script_root` is Flask's name for
# `SCRIPT_NAME`, and `request.path` for `PATH_INFO`. (A Flask view that returns a dict
# answers with JSON.) A Flask app is a WSGI app, so `mount` takes it like any other.

# %%
from flask import Flask, request, url_for

legacy = Flask("legacy")

@legacy.get("/hello")
def legacy_hello():
    return {"script_root": request.script_root, "path": request.path,
            "url_for": url_for("legacy_hello")}

site.mount("/legacy", legacy)

# %% [markdown]
# ## Serving it
#
# Every app this part of the course builds runs inside `wsgiref.validate.validator`, the
# standard library's PEP 3333 checker. It wraps an app, checks every `environ`, every
# `start_response` call and every body the app produces, and raises `AssertionError` on
# the first violation. barelab's server logs such an error, so the log at the end of this
# section is where you will see whether it found anything.

# %%
from wsgiref.validate import validator

server = barelab.serve(validator(site), name="site")
server

# %% [markdown]
# The happy path first. `http_request` sends one request and returns the response:

# %%
barelab.http_request(server, "GET", "/users/7")

# %% [markdown]
# Now the misses. Each row is one real request over the network: a leading zero, an
# unknown path, a trailing slash, and a method that no route of this path handles.
# `row` sends one request and keeps the four things worth comparing: the request, the
# status line, the `Allow` header (empty when there is none) and the body.

# %%
def row(method, path, **options):
    reply = barelab.http_request(server, method, path, **options)
    return (f"{method} {path}", reply.status_line, reply.header("Allow") or "", reply.text.strip())

show_transcript([row("GET", "/users/007"), row("GET", "/nope"), row("GET", "/users/7/"),
                 row("POST", "/users/7")],
                columns=("request", "status", "Allow", "body"))

# %% [markdown]
# Read it row by row:
#
# - `/users/007` is a **404**: one integer, one URL.
# - `/nope`: **404**, nothing there.
# - `/users/7/` is a **404** too. This router is *strict* about trailing slashes: `/users/7`
#   and `/users/7/` are different URLs (RFC 3986 treats them so), and the router does not
#   guess. The alternative is to redirect one to the other with **308 Permanent Redirect**,
#   which keeps the method and the body, unlike 301. That is friendly to people typing URLs
#   and costs a round trip for every client that got it wrong, and it hides the mistake
#   from API clients, which should fix their URL instead. Exercise 4 adds it as an option.
# - `POST /users/7`: **405**, and `Allow` lists what the path does accept: GET and HEAD
#   from `show_user`, PUT and DELETE from `change_user`, and OPTIONS from the router.
#
# Method names are case-sensitive (RFC 9110 §9.1). This request goes in-process, to
# `site` itself rather than the served `validator(site)`, because `validator` would add a
# warning of its own: it knows only eight standard method names, all in uppercase.

# %%
status_and_allow(site, "get", "/users/7")

# %% [markdown]
# A **405**, not a 200: `get` is not `GET`, and the `Allow` header tells the client the
# right spelling.

# %% [markdown]
# ### HEAD and OPTIONS
#
# A HEAD request goes to `show_user`, the GET handler. Look at the raw bytes:

# %%
barelab.raw_exchange(server, b"HEAD /users/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

# %% [markdown]
# `200 OK`, the same `Content-Type` and `Content-Length: 7` that a GET gets, and no body
# after the empty line. Here the body was dropped twice over: by the router's `forward`,
# and by barelab's server, which would have dropped it anyway.
#
# OPTIONS needs no handler either. The router answers for any path it knows:

# %%
options = barelab.http_request(server, "OPTIONS", "/users/7")
options.status_line, options.header("Allow"), options.header("Content-Length"), options.body

# %% [markdown]
# `204 No Content`, the same `Allow` list as the 405, no body and no `Content-Length`.

# %% [markdown]
# ### The mount
#
# Ask the Flask app, and its neighbour `/legacyx`:

# %%
show_transcript([row("GET", "/legacy/hello"), row("GET", "/legacyx/hello"),
                 row("GET", "/legacy/nope")], columns=("request", "status", "Allow", "body"))

# %% [markdown]
# The first line is Flask's answer. It saw `SCRIPT_NAME="/legacy"` as its `script_root`
# and `PATH_INFO="/hello"` as its `path`, and routed on the second. Its own `url_for`
# wrote `/legacy/hello`, a link that works from the outside. Flask never learnt it was
# mounted; `SCRIPT_NAME` told it.
#
# `/legacyx/hello` is the router's 404: not under the mount, and no route. `/legacy/nope`
# is a 404 too, but a different one. Its HTML page is Flask's: once a request is under the
# prefix, the mounted app has the last word, and `/legacy/...` is Flask's URL space.

# %% [markdown]
# ### Percent-encoded paths, and `url_for`
#
# `url_for` writes a path from a route name and values; the server decodes it; the router
# matches it and decodes the values again. If every step is right, the handler gets
# exactly the values you started with, whatever characters they contain:

# %%
url = site.url_for("show_post", id=42, slug="café & crème brûlée?")
reply = barelab.http_request(server, "GET", url)
url, reply.text

# %% [markdown]
# `url_for` encoded the accented letters as UTF-8 escapes, and the space, `&` and `?` too.
# The server decoded the escapes to bytes, the router decoded the bytes as UTF-8, and
# `show_post` got the slug back letter for letter, and `id` as the int `42`. The test
# suite of this chapter checks that round trip on thousands of random values.
#
# Finally, a path whose bytes are not UTF-8:

# %%
reply = barelab.http_request(server, "GET", "/users/7/posts/%FF")
reply.status_line, reply.text

# %% [markdown]
# And the byte that is not UTF-8 gets the **400** decided earlier.
#
# Last, the server log: every request of this section, and no error. Had `validator` found
# a PEP 3333 violation in the router, in a handler or in Flask, it would have raised, and
# the log would show an `error` line with its traceback.

# %%
print("errors:", server.log.errors)
server.log

# %% [markdown]
# ## Summary
#
# - A router is a table of **routes** and **mounts**, walked in **declaration order**. The
#   first entry that takes the request gets it; an unreachable literal route is refused
#   when it is added.
# - A template such as `/users/{id:int}/posts/{slug}` compiles to **one regex**: literal
#   parts through `re.escape`, each parameter a named group around its **converter's**
#   regex, matched with `fullmatch`.
# - Converters decide what a parameter accepts: `int` is `0|[1-9][0-9]*` (ASCII digits,
#   one spelling per number), `path` never starts with `/`, `str` stops at `/`. A
#   `ValueError` from `to_python` means "no match".
# - Mistakes in the table fail **when the route is added**: unknown converters (the error
#   lists the known ones), malformed braces, repeated names, touching parameters.
# - No route has the path: **404**. Routes have the path but not the method: **405** with
#   `Allow` (RFC 9110 §15.5.6). GET routes answer **HEAD**, and the router makes sure no
#   body leaves, since not every server drops it (wsgiref does not). **OPTIONS** gets 204
#   with `Allow`. A path that is not UTF-8: **400**.
# - A **mount** matches its prefix on a segment boundary (`/api`, `/api/...`, never
#   `/apiary`) and moves the prefix from `PATH_INFO` to `SCRIPT_NAME` (PEP 3333), so a
#   mounted Flask app builds correct links without knowing it was mounted.
# - `url_for` writes paths that come back to the same route with the same values, and
#   refuses values that could not.
#
# Chapter 09 builds `Request` and `Response` objects, so that handlers stop talking to
# `start_response` directly.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a signed integer converter
#
# Write `SignedIntConverter`, a `Converter` for integers that may be negative, keeping the
# rule "one number, one URL": `-5`, `0` and `12` match; `-0`, `+5`, `05` and `--5` do not.
# `to_python` returns an `int`, and `to_url` writes one. Then build `temperatures`, a
# `Router` that knows your converter as `signed` (pass `converters=`), with a route
# `/temperature/{degrees:signed}` named `temperature` whose handler answers the number as
# text.

# %% tags=["solution"]
### BEGIN SOLUTION
class SignedIntConverter(Converter):
    regex = r"0|-?[1-9][0-9]*"

    def to_python(self, text):
        return int(text)

    def to_url(self, value):
        return str(int(value))


temperatures = Router(converters={"signed": SignedIntConverter()})

@temperatures.route("/temperature/{degrees:signed}")
def temperature(environ, start_response):
    return text_response(start_response, 200, str(route_params(environ)["degrees"]))
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    for text, expected in [("-5", -5), ("0", 0), ("12", 12)]:
        reply = barelab.call_wsgi(temperatures, "GET", f"/temperature/{text}")
        assert reply.status_code == 200, f"/temperature/{text} answered {reply.status}"
        assert reply.text == str(expected), f"/temperature/{text} answered {reply.text!r}"
    for text in ["-0", "+5", "05", "--5", "", "5-"]:
        reply = barelab.call_wsgi(temperatures, "GET", f"/temperature/{text}")
        assert reply.status_code == 404, f"/temperature/{text} should be a 404, got {reply.status}"
    assert temperatures.url_for("temperature", degrees=-40) == "/temperature/-40", \
        "url_for('temperature', degrees=-40) should be '/temperature/-40'"

# %% [markdown]
# ### Exercise 2 — two versions of an API
#
# Build `gateway`, a `Router` with two routers mounted in it: one at `/api/v1` and one at
# `/api/v2`. Each has a single route, `/users/{id:int}`, whose handler answers the text
# `f"{SCRIPT_NAME} user {id}"`, so `GET /api/v2/users/7` gets `/api/v2 user 7`. A function
# that builds one such router and returns it saves you writing it twice. Before you run
# the check, guess what `GET /api/v10/users/7` answers.

# %% tags=["solution"]
### BEGIN SOLUTION
def make_version():
    version = Router()

    @version.route("/users/{id:int}")
    def user(environ, start_response):
        text = f"{environ['SCRIPT_NAME']} user {route_params(environ)['id']}"
        return text_response(start_response, 200, text)

    return version

gateway = Router()
gateway.mount("/api/v1", make_version())
gateway.mount("/api/v2", make_version())
### END SOLUTION
gateway

# %% tags=["check"]
with check("Exercise 2"):
    for version in ("v1", "v2"):
        reply = barelab.call_wsgi(validator(gateway), "GET", f"/api/{version}/users/7")
        assert reply.status_code == 200, f"/api/{version}/users/7 answered {reply.status}"
        assert reply.text == f"/api/{version} user 7", f"the body is {reply.text!r}"
    for path in ("/api/v10/users/7", "/api/v1", "/api/users/7", "/api/v1/users/x"):
        reply = barelab.call_wsgi(validator(gateway), "GET", path)
        assert reply.status_code == 404, f"{path} should be a 404, got {reply.status}"

# %% [markdown]
# ### Exercise 3 — a URL from outside the mount
#
# `url_for` writes paths from the router's own root. Under a mount, a link must start with
# `SCRIPT_NAME`. Write `external_url_for(router, environ, name, **params)` that puts the
# request's `SCRIPT_NAME` in front, percent-encoded. Careful: `SCRIPT_NAME` is "bytes in
# str", so `/café` arrives as `/cafÃ©`, and the URL must say `/caf%C3%A9`. PEP 3333's
# "URL Reconstruction" recipe calls `quote(environ['SCRIPT_NAME'])` directly; in Python 3
# that encodes each of those characters as UTF-8 a second time, so turn the string back
# into its bytes first.

# %% tags=["solution"]
from urllib.parse import quote

def external_url_for(router, environ, name, **params):
    ### BEGIN SOLUTION
    script_name = quote(environ.get("SCRIPT_NAME", "").encode("latin-1"))
    return script_name + router.url_for(name, **params)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    plain = {"SCRIPT_NAME": ""}
    assert external_url_for(site, plain, "show_user", id=7) == "/users/7", \
        "with no SCRIPT_NAME the URL is url_for's"
    mounted = {"SCRIPT_NAME": "/api"}
    assert external_url_for(site, mounted, "show_user", id=7) == "/api/users/7"
    cafe = {"SCRIPT_NAME": "/café".encode("utf-8").decode("latin-1")}
    got = external_url_for(site, cafe, "show_user", id=7)
    assert got == "/caf%C3%A9/users/7", f"got {got!r}: encode SCRIPT_NAME as latin-1 bytes first"

# %% [markdown]
# ### Exercise 4 — redirecting the trailing slash
#
# Some sites prefer to forgive `/users/7/`. Write `redirect_slashes(router)`, a WSGI app
# that answers **308 Permanent Redirect** when the path does not match any route of
# `router` but the same path with its trailing slash removed (or added) does. `Location`
# is the other path, with `SCRIPT_NAME` in front and the query string kept. Every other
# request goes to `router` unchanged. Use `decode_path` and the routes' `match`. (A 308
# needs a body and a `Content-Type` like any other response; `text_response` does that.)

# %% tags=["solution"]
def redirect_slashes(router):
    ### BEGIN SOLUTION
    def matches(path):
        return any(isinstance(e, Route) and e.match(path) is not None for e in router.entries)

    def app(environ, start_response):
        path = decode_path(environ.get("PATH_INFO", ""))
        if path is not None and not matches(path):
            other = path[:-1] if path.endswith("/") else path + "/"
            if other and matches(other):
                location = quote(environ.get("SCRIPT_NAME", "").encode("latin-1")) + quote(other)
                query = environ.get("QUERY_STRING", "")
                location += f"?{query}" if query else ""
                return text_response(start_response, 308, f"See {location}\n",
                                     [("Location", location)])
        return router(environ, start_response)
    return app
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    forgiving = validator(redirect_slashes(site))
    moved = barelab.call_wsgi(forgiving, "GET", "/users/7/?tab=posts")
    assert moved.status_code == 308, f"/users/7/ answered {moved.status}, expected 308"
    assert moved.header("Location") == "/users/7?tab=posts", \
        f"Location is {moved.header('Location')!r}"
    assert barelab.call_wsgi(forgiving, "GET", "/users/7").body == b"user 7\n"
    assert barelab.call_wsgi(forgiving, "GET", "/nope/").status_code == 404, \
        "a path with no route either way stays a 404"
    assert barelab.call_wsgi(forgiving, "POST", "/users/7").status_code == 405, \
        "a 405 must stay a 405"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

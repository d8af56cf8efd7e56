# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 22. Dependency injection from handler signatures
#
# In Flask you write `request.args.get("limit", type=int)` inside the handler. In FastAPI
# you write `async def show(item_id: int, limit: int = 10)` and the framework reads the
# signature, hands you an `int`, or answers 422 when it cannot. In this chapter you build that for
# `bare`: a handler's **signature** becomes the recipe for its arguments.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - read a function's parameters, defaults and type hints with `inspect.signature` and
#   `typing.get_type_hints`, and say why the second one beats `parameter.annotation`;
# - fill a handler's arguments from the path, the query string, the request itself and a
#   JSON body checked field by field against a dataclass;
# - explain why a naive `int(...)` on user input is a server bug (a 500) and answer
#   **422 Unprocessable Content** (RFC 9110 §15.5.21) with a list of `{loc, msg, type}`;
# - write `Depends(...)` dependencies that take injected parameters themselves, run once per
#   request however often they are asked for, and clean up after the response with `yield`;
# - use `bare`'s `request.call_after_response` hook (chapter 18) to run work after the
#   client has its answer, and weigh that against cleaning up before it.

# %% [markdown]
# ## The trap: `int()` on user input
#
# Start with chapter 18's `bare` as it is. A handler gets a `Request` and digs out what it
# needs. Here is the obvious way to read a page size from `?limit=`:

# %%
from barelab.built.bare import Bare, HTTPException, Request
from barelab.built.testing import TestClient

naive = Bare(name="naive")

@naive.get("/items")
async def list_items(request):
    limit = int(request.query["limit"])
    return {"limit": limit}

# %% [markdown]
# With a good query string it works. `TestClient` (chapter 17) calls the app in-process, so
# there is no socket and no server to start:

# %%
client = TestClient(naive, raise_app_exceptions=False)
client.get("/items?limit=3").json()

# %% [markdown]
# `{'limit': 3}`, an `int` as promised. The happy path is the only one most handlers are
# ever tried on, which is why the problem below survives into production.
#
# Now send what a user might type. `raise_app_exceptions=False` asks the client to behave
# like a server: report the status the client would see instead of re-raising the error.

# %%
for query in ["limit=ten", "", "limit=%20%207"]:
    response = client.get(f"/items?{query}")
    print(f"{query!r:16} -> status {response.status_code}, body {response.text.strip()!r}")

# %% [markdown]
# Three surprises. `limit=ten` raises `ValueError`, a missing `limit` raises `KeyError`, and
# both become **500 Internal Server Error**: the server says *it* is broken when the
# *client* sent a bad request. Your error dashboards fill with bugs that are not bugs, and
# the client learns nothing about what to fix. The third line is quieter but as wrong:
# `int("  7")` accepts spaces (and `"1_000"`, and Arabic-Indic digits), so what the API
# accepts is whatever `int()` happens to accept.
#
# The right answer to "I understood your request but its content is wrong" is **422
# Unprocessable Content** (RFC 9110 §15.5.21), with a body that says *where* and *why*.
# Why not plain **400 Bad Request**? A 400 is the general "your request is wrong", and
# the examples RFC 9110 §15.5.1 gives for it are broken syntax and framing. `?limit=ten`
# is a perfectly good query string, which every server and proxy on the way parsed fine.
# What is wrong is its *content*, as this endpoint reads it, and 422 says exactly that.
# FastAPI's shape for the body is a list, one entry per problem:
#
# ```json
# {"detail": [{"loc": ["query", "limit"], "msg": "Input should be a valid integer", "type": "int_parsing"}]}
# ```
#
# You could write that check by hand in every handler. Instead, let the handler *declare*
# what it needs, and let one piece of code do the checking for all of them.

# %% [markdown]
# ## What a signature tells you
#
# A Python function carries a description of its parameters. `inspect.signature` reads
# names, kinds and defaults. Look at a handler written the FastAPI way:

# %%
import inspect

async def search(item_id: int, q: str, limit: int = 10, tags: list[str] = []):
    ...

for parameter in inspect.signature(search).parameters.values():
    print(parameter.name, parameter.annotation, parameter.default, sep=" | ")

# %% [markdown]
# Every line is a recipe: `item_id` is an `int`, `q` is a required `str` (its default is
# the marker `inspect.Parameter.empty`), `limit` falls back to 10, and `tags` is a list.
#
# Careful with `parameter.annotation`, though. A module that starts with
# `from __future__ import annotations` (or uses a name defined later) stores annotations as
# **strings**:

# %%
async def stringly(limit: "int" = 10, tags: "list[str]" = []):
    ...

print([p.annotation for p in inspect.signature(stringly).parameters.values()])

# %% [markdown]
# `'int'` is not `int`. `typing.get_type_hints` evaluates those strings in the function's
# module and gives real types back, so that is what the injector uses:

# %%
import typing

typing.get_type_hints(stringly)

# %% [markdown]
# Real types this time: `int` is the class itself, and `list[str]` a generic alias you
# can take apart. A hint that names something the module cannot resolve raises
# `NameError` here, which is one more reason to read the hints once, when the route is
# added, and not while a request waits.
#
# Two more `typing` helpers take a type apart: `get_origin` says what kind of generic it
# is, `get_args` what is inside. `int | None` is a union (`Optional[int]` is the same thing):

# %%
for hint in [list[str], int | None, typing.Optional[float], int]:
    print(f"{str(hint):26} origin={typing.get_origin(hint)}  args={typing.get_args(hint)}")

# %% [markdown]
# Read the origins: `list` for `list[str]`, two different union types for the two
# spellings of "int or None", and `None` for plain `int`, which is not generic at all. The
# args are what the brackets held, `NoneType` included.
#
# That is all the reflection this chapter needs. Here is the plan, as a picture. For each
# parameter the injector asks one question, in this order, and the answer says where the
# value comes from:
#
# ```mermaid
# flowchart TD
#     P["a handler parameter"] --> D{"default is Depends(f)?"}
#     D -- yes --> F["run f (its own parameters injected the same way), once per request"]
#     D -- no --> R{"annotated Request?"}
#     R -- yes --> RQ["the Request object"]
#     R -- no --> B{"annotated with a dataclass?"}
#     B -- yes --> BD["the JSON body, checked field by field"]
#     B -- no --> N{"its name is a path parameter?"}
#     N -- yes --> PP["the path parameter, converted to the annotation"]
#     N -- no --> Q["the query parameter: converted, repeated for list[...], or the default"]
# ```
#
# Every value that does not fit becomes one entry of the 422's list. The injector keeps
# going after the first problem, so the client learns about all of them at once.

# %% [markdown]
# ## Building the injector
#
# Everything marked `#| export` below is written to `barelab/built/bare_depends.py`. The
# pieces come bottom up, each tried on its own before the next one uses it:
#
# 1. `convert` turns one string into an `int`, `float`, `bool` or `str`, strictly;
# 2. `plan` reads a signature once and says where each parameter comes from;
# 3. `read_value` finds and converts a path or query value;
# 4. `check_json` and `build_model` check a JSON body against a dataclass;
# 5. `solve` and `resolve` fill a whole signature, dependencies included;
# 6. `inject` wraps a handler into the `async def endpoint(request)` that `bare` calls,
#    and `InjectingBare` applies it to every route.

# %%
#| default_exp bare_depends

# %% [markdown]
# The module opens with its design in a few lines and its imports. Note what it takes from
# chapter 18: `Bare` to subclass, `Request` to recognise in a signature, and
# `to_response`, so that a handler here may return what a `bare` handler may return. Only
# the standard library does the rest: `inspect` and `typing` read signatures, `re` and
# `math` check strings, `contextlib` runs yield-dependencies.

# %%
#| export
# Dependency injection for bare: a handler declares what it needs in its signature and
# `inject` turns it into the `async def handler(request)` that bare calls. Each parameter is
# planned once, when the route is added (a parameter nobody can fill is a TypeError then,
# not a 500 later): the Request, a Depends(...) dependency, a dataclass read from the JSON
# body, or a path or query value converted to its annotation. Every value that does not fit
# becomes one {loc, msg, type} entry of a 422 answer (RFC 9110 §15.5.21). Dependencies run
# once per request; the code after a yield-dependency's `yield` runs after the response,
# through bare's request.call_after_response hook (chapter 18).
import dataclasses
import inspect
import math
import re
import types
import typing
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import cache, wraps

from barelab.built.bare import Bare, JSONResponse, Request, Response, to_response  # ch 18


# %% [markdown]
# Then come the two small types the rest builds on: `Depends`, the marker you put in a
# default, and `ValidationError`, which carries a list of problems.
#
# `Depends` does nothing on its own: it is a labelled box around a function. Putting it in
# the *default* of a parameter is FastAPI's trick for marking "this argument is computed",
# without inventing new syntax: `db: dict = Depends(get_db)` is still an ordinary Python
# function signature, which your editor and type checker understand. `use_cache=False`
# asks for a fresh call every time. The `callable` check refuses the common slip of
# writing `Depends(get_db())`, which would pass the *result* of a call made at import.

# %%
#| export
class Depends:
    """A parameter's default that says "call this and pass me what it returns"."""

    def __init__(self, dependency, *, use_cache: bool = True):
        if not callable(dependency):
            raise TypeError(f"Depends takes a function, not {dependency!r}")
        self.dependency, self.use_cache = dependency, use_cache

    def __repr__(self) -> str:
        return f"Depends({getattr(self.dependency, '__name__', self.dependency)})"


# %% [markdown]
# A problem is a small dict: `loc` is the path to the bad value (`["query", "limit"]`,
# `["body", "tags", 1]`), `msg` is for a human, `type` is a stable code a program can test.
# `ValidationError` carries a list of them, so one exception can report several. `issue()`
# builds one entry of that list.

# %%
#| export
def issue(loc, msg: str, kind: str) -> dict:
    """One entry of a 422's detail list, in FastAPI's shape: where, what, which kind."""
    return {"loc": list(loc), "msg": msg, "type": kind}


class ValidationError(Exception):
    """The request does not fit the handler's signature; ``errors`` lists every issue."""

    def __init__(self, errors: list):
        super().__init__(f"{len(errors)} validation error(s): {errors}")
        self.errors = errors

# %% [markdown]
# The module's opening comment is the whole chapter in eight lines; come back to it at the
# end. A dependency's name shows in its repr, which helps when you print a plan later, and
# `issue` turns a place, a message and a kind into one entry of the list a 422 carries:

# %%
def get_settings():
    return {"page_size": 20}

print(Depends(get_settings))
print(issue(["query", "limit"], "Field required", "missing"))

# %% [markdown]
# `loc` came back as a list even though `issue` accepts any sequence: the detail goes out
# as JSON, where a tuple would become an array anyway, and comparing lists in tests is
# simpler when they are lists from the start. The three keys are the ones FastAPI uses, so
# a client written for FastAPI's 422s can read these too.

# %% [markdown]
# ### Converting one string
#
# Path and query values arrive as `str`. Before converting one, the injector has to know
# what to convert it *to*, and an annotation like `int | None` first needs its `| None`
# peeled off. `unwrap_optional` does that, and this is where `get_origin` and `get_args`
# earn their keep. `int | None` and `Optional[int]` have different origins
# (`types.UnionType` and `typing.Union`), so it checks for both. A union of two real
# types, like `int | str`, is left alone: which one would a query string be?

# %%
#| export
def unwrap_optional(kind) -> tuple:
    """``(X, True)`` for ``X | None`` or ``Optional[X]``; ``(kind, False)`` otherwise."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(others) == 1 and len(typing.get_args(kind)) == 2:
            return others[0], True
    return kind, False

# %% [markdown]
# Run it on the types you met earlier, plus the union it refuses to guess about:

# %%
[unwrap_optional(kind) for kind in (int | None, typing.Optional[str], list[int], int | str)]

# %% [markdown]
# Both spellings of Optional come out the same, with `True` for "`None` is allowed". A
# `list[int]` passes through untouched, flagged `False`: taking a list apart is a
# different job, done by the planner below. `int | str` also comes back as it was, and
# the planner will refuse it, since no rule says which of the two `"7"` should be.
#
# Now the conversion itself. `convert` turns a string into `str`, `int`, `float` or
# `bool`, and is strict where `int()` is lax. Its rules are a few patterns and word lists.
# `SCALARS` holds the words each type uses in an error message and in its `type` code:

# %%
#| export
INTEGER = re.compile(r"[+-]?[0-9]+")                  # int() also takes " 7", "1_0", "٣"
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
SCALARS = {str: ("a valid string", "string"), int: ("a valid integer", "int"),
           float: ("a valid number", "float"), bool: ("a valid boolean", "bool")}

# %% [markdown]
# The pattern says `[0-9]`, not `\d`, on purpose: in Python's `re`, `\d` matches every
# Unicode digit, which is the very laxness of `int()` this is meant to avoid. Put the two
# side by side:

# %%
for raw in ["7", "-7", " 7", "1_000", "٣"]:
    print(f"{raw!r:8} int() -> {int(raw)!r:5} INTEGER -> {bool(INTEGER.fullmatch(raw))}")

# %% [markdown]
# `int()` took all five, including the Arabic-Indic digit three (`٣`). `INTEGER` takes
# ASCII digits with an optional sign and nothing else: what a client most likely meant,
# and what your API documentation will say.
#
# `convert` tries the one rule for the wanted type and, if it does not match, raises a
# ValidationError built from the `SCALARS` table: "Input should be a valid integer", type
# `int_parsing`. The raw value is quoted, cut to 40 characters so a huge input cannot
# bloat the answer.
#
# Each rule is a `fullmatch`, never a `match`: the whole string must fit, so `"7abc"` is
# refused rather than read as 7. Booleans compare in lower case (`Yes`, `ON`), and a float
# must also be finite, for a reason the demo shows.

# %%
#| export
def convert(raw: str, kind, loc):
    """The path or query string ``raw`` as ``kind`` (str, int, float or bool); a
    ValidationError that says where (``loc``) and why if it is not one."""
    text = raw.lower()
    if kind is str:
        return raw
    if kind is int and INTEGER.fullmatch(raw):
        return int(raw)
    if kind is float and DECIMAL.fullmatch(raw) and math.isfinite(float(raw)):
        return float(raw)
    if kind is bool and text in TRUE | FALSE:
        return text in TRUE
    what, name = SCALARS[kind]
    raise ValidationError([issue(loc, f"Input should be {what}, not {raw[:40]!r}",
                                 f"{name}_parsing")])

# %% [markdown]
# Each rule starts with `kind is ...`, so at most one of them can apply to a given type,
# and their order does not matter. What matters is the end: every string that no rule
# took falls through to the last two lines and is refused. Nothing is accepted by
# accident. (A type with no rule at all, a `dict` say, would fail on the `SCALARS` lookup
# instead; the planner below makes sure no such type ever gets this far.)
#
# Try it on the inputs that fooled `int()` above. Look at the last column: each failure
# already names its kind (`type`), and the issue behind it also holds the place (`loc`).

# %%
for raw, kind in [("7", int), ("  7", int), ("1_000", int), ("2.5", float),
                  ("nan", float), ("Yes", bool), ("maybe", bool)]:
    try:
        print(f"{raw!r:9} {kind.__name__:5} -> {convert(raw, kind, ['query', 'x'])!r}")
    except ValidationError as error:
        print(f"{raw!r:9} {kind.__name__:5} -> 422 {error.errors[0]['type']}")

# %% [markdown]
# `nan` is refused on purpose: `float("nan")` parses, but a value that is not equal to
# itself makes a poor page size, and JSON cannot even write it back. `Yes` became `True`
# because booleans compare in lower case, and `maybe` is in neither word list.
#
# Every refusal is a `ValidationError`, never a `ValueError`. That difference is the whole
# point: further up, `inject` catches `ValidationError` and answers 422, while any other
# exception still means a bug in your code and still becomes a 500.

# %% [markdown]
# ### A plan for each function
#
# Reading a signature on every request would be wasted work, and would find mistakes too
# late. `plan` reads it once (`functools.cache` remembers the answer per function) and
# returns one `Param` per parameter, saying where its value comes from. An annotation it
# cannot fill is a `TypeError` right away, while the route is being added.
#
# A required parameter has no default, and `inspect` marks that with the class
# `inspect.Parameter.empty`. The module calls it `EMPTY`, and a `Param` uses the same
# marker, so `param.default is EMPTY` reads as "required".

# %%
#| export
EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class Param:
    """Where one parameter's value comes from: ``source`` is "request", "depends", "body"
    or "value" (the path parameter of that name, else the query); ``kind`` is its type."""
    name: str
    source: str
    kind: object
    default: object = EMPTY
    many: bool = False                          # list[X]: every repeat of a query key


# %% [markdown]
# Five fields say everything the injector needs at request time: the parameter's `name`
# (the keyword to call with), its `source`, the `kind` to convert to, the `default` for a
# missing value, and `many` for a list that collects every repeat of a query key.
#
# `Param` is frozen: a plan is computed once and shared by every request, so nothing may
# change it. Try to, and the dataclass machinery stops you:

# %%
limit_param = Param("limit", "value", int, 10)
try:
    limit_param.default = 99
except dataclasses.FrozenInstanceError as error:
    print(limit_param, "|", type(error).__name__, error)

# %% [markdown]
# Had a handler been able to change its own plan's default, the next request would have
# seen that change, a bug that shows up only under load. With `frozen=True` the mistake is
# an exception on the spot.
#
# Next, two helpers. `json_kind_ok` answers "can a body field of this type be checked?",
# walking into lists, Optionals and nested dataclasses.

# %%
#| export
def json_kind_ok(kind) -> bool:
    """Can a JSON value be checked against ``kind``? Scalars, lists, Optional, dataclasses."""
    kind, _ = unwrap_optional(kind)
    if typing.get_origin(kind) is list:
        return json_kind_ok((typing.get_args(kind) or (str,))[0])
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return all(json_kind_ok(hints[field.name]) for field in dataclasses.fields(kind))
    return kind in SCALARS

# %% [markdown]
# Three types, three answers. A list of floats and an optional int are fine; a bare `dict`
# says nothing about what is inside it, so there is nothing to check it against:

# %%
json_kind_ok(list[float]), json_kind_ok(int | None), json_kind_ok(dict)

# %% [markdown]
# A `dict` field could hold anything, and the point of a body model is that the handler
# never has to ask. If you need free-form JSON, read `await request.json()` yourself.
#
# `plan_value` plans a parameter that comes from the URL. It strips `| None` and notes a
# `list[X]` as `many=True` with kind `X`. Anything that is not one of the four scalars is
# refused here, with a message that lists what would work.

# %%
#| export
def plan_value(name: str, kind, default) -> Param:
    """A path or query parameter: a scalar, a list of one (repeated key), maybe Optional."""
    inner, _ = unwrap_optional(kind)
    many = typing.get_origin(inner) is list
    if many:
        inner = (typing.get_args(inner) or (str,))[0]
    if inner not in SCALARS:
        raise TypeError(f"parameter {name!r}: cannot read a {kind!r} from a URL; use str, "
                        "int, float, bool or a list of one, a dataclass for the body, "
                        "Request, or Depends(...)")
    return Param(name, "value", inner, default, many)

# %% [markdown]
# One expression in there reads oddly: `(typing.get_args(inner) or (str,))[0]`. A bare
# `list` annotation, with no brackets, has no args, and then the items are taken to be
# strings, the same rule as for a parameter with no annotation at all.
#
# Two URL parameters. Look at the second `Param`: the `| None` is gone from its `kind`,
# because the default (`None`) already covers the missing case.

# %%
print(plan_value("tags", list[int], []))
print(plan_value("q", str | None, None))

# %% [markdown]
# The first one is `many=True` with kind `int`: the list has been taken apart, so that
# later code converts each `?tags=` on its own and never has to look inside `list[int]`
# again.
#
# `plan_parameter` asks the flowchart's questions for one parameter, in order. A few
# lines are worth a second look when you read it:
#
# - `*args` and `**kwargs` are refused, since there is no name to look up in the request;
# - the order of the `if`s *is* the precedence: a parameter whose default is `Depends(...)`
#   is a dependency even if its annotation is a dataclass;
# - `isinstance(kind, type)` comes before `issubclass(kind, Request)` because `list[str]`
#   is not a class, and `issubclass` would raise a `TypeError` on it;
# - for a `Depends`, it plans the dependency too (with `plan`, defined next): planning a
#   handler plans its whole tree, so a bad parameter three levels down is found when the
#   route is added.

# %%
#| export
def plan_parameter(func, p: inspect.Parameter, kind) -> Param:
    """The Param for parameter ``p`` of ``func``, annotated ``kind``: where it comes from."""
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        raise TypeError(f"{func.__qualname__}: *{p.name} cannot be injected")
    if isinstance(p.default, Depends):
        plan(p.default.dependency)                   # its own parameters, checked now
        return Param(p.name, "depends", kind, p.default)
    if isinstance(kind, type) and issubclass(kind, Request):
        return Param(p.name, "request", kind)
    if dataclasses.is_dataclass(kind):
        if not json_kind_ok(kind):
            raise TypeError(f"{func.__qualname__}: {kind.__name__} has a field of a "
                            "type JSON cannot be checked against")
        return Param(p.name, "body", kind, p.default)
    return plan_value(p.name, kind, p.default)

# %% [markdown]
# Feed it the parameters of a function one at a time, as `inspect.signature` lists them.
# `spread` has one of each kind the planner must tell apart:

# %%
async def spread(request: Request, limit: int = 10, *rest):
    ...

for p in inspect.signature(spread).parameters.values():
    try:
        print(plan_parameter(spread, p, typing.get_type_hints(spread).get(p.name, str)))
    except TypeError as error:
        print("TypeError:", error)

# %% [markdown]
# The `Request` annotation gave a `"request"` parameter, `limit` a `"value"`, and `*rest`
# was refused: nothing in a request says how many extra positional values there are.
#
# `plan` runs `plan_parameter` over a whole signature. A parameter with no annotation is
# read as a `str` (`hints.get(p.name, str)`), the way Flask hands you every URL value, and
# `functools.cache` means each function is planned once, however many requests follow:

# %%
#| export
@cache
def plan(func) -> tuple:
    """One Param for each parameter of ``func``, in order (dependencies are planned too)."""
    hints = typing.get_type_hints(func)
    return tuple(plan_parameter(func, p, hints.get(p.name, str))
                 for p in inspect.signature(func).parameters.values())

# %% [markdown]
# `@cache` remembers one plan per function object. A handler registered on two routes is
# planned once, and so is a dependency that twenty handlers share. (The cache keeps those
# functions alive for good, which is fine for handlers defined when a module loads.)
#
# The plan for `search` from the start of the chapter. `EMPTY` marks a required parameter;
# `tags` is `many`, so every `?tags=` in the query will count:

# %%
for param in plan(search):
    print(param)

# %% [markdown]
# Two things to see. `item_id` and `q` look the same as `limit` here: whether a name is a
# path parameter is only known when a request has matched a route, so `read_value` decides
# that later. And `tags` has kind `str` with `many=True`, not kind `list[str]`: the plan
# has already taken the list apart.

# %% [markdown]
# And a mistake caught early: a `dict` cannot come out of a URL, so the plan refuses it
# before any request arrives.

# %%
async def broken(filters: dict):
    ...

try:
    plan(broken)
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# The message names the parameter and lists what would have worked. Because `InjectingBare`
# will call `plan` as each route is added, a mistake like this stops the app while it
# loads: you see it on your machine the first time you run it, not in a log at night.

# %% [markdown]
# ### Path and query values
#
# A `"value"` parameter is filled in two steps. First, find the raw strings: if the route
# matched a path parameter of that name, that one; else every value of that key in the
# query string. The `loc` that comes with them starts with `"path"` or `"query"`, so a
# later issue can say where the bad value was.

# %%
#| export
def find_raw(name: str, request: Request) -> tuple:
    """The raw values for ``name`` and their loc: the path parameter, else the query's."""
    if name in request.path_params:
        return [request.path_params[name]], ("path", name)
    return request.query.getall(name), ("query", name)


# %% [markdown]
# The path wins. For `/items/{item_id}`, a request to `/items/7?item_id=8` gets 7: the
# route promised that segment to `item_id`, and a query string must not be able to
# override what the URL's path says. The path's value comes back in a one-item list, so
# that both branches return the same shape.
#
# You do not need a server to try it: a `Request` is built from an ASGI scope, and a scope
# is a dict. This one stands for `GET /items/7?limit=ten&tags=a&tags=b`, with the router's
# `path_params` already filled in:

# %%
fake = Request({"type": "http", "method": "GET", "path": "/items/7", "headers": [],
                "query_string": b"limit=ten&tags=a&tags=b", "path_params": {"item_id": "7"}},
               receive=None)
for name in ["item_id", "tags", "limit", "page"]:
    print(f"{name:8}", find_raw(name, fake))

# %% [markdown]
# Everything is still a string, and a repeated key gives a list of several. `page` is not
# in the request at all: an empty list, which a later step turns into the default.
#
# The second step converts the raw strings, each on its own. A problem is *appended* to
# `errors` rather than raised, so that one request can report several problems; a value
# that fails is simply not in the result.

# %%
#| export
def convert_all(raws: list, param: Param, loc, errors: list) -> list:
    """Each raw value as ``param.kind``, in order; a bad one is an issue in ``errors``."""
    values = []
    for index, raw in enumerate(raws):
        if not isinstance(raw, str):            # a route converter ({id:int}) did it already
            values.append(raw)
            continue
        try:
            values.append(convert(raw, param.kind, (*loc, index) if param.many else loc))
        except ValidationError as error:
            errors.extend(error.errors)
    return values

# %% [markdown]
# Give it three raw values for a list of ints: a good one, a bad one, and one that is
# already an `int`, as a route converter would hand it over:

# %%
errors = []
print(convert_all(["1", "x", 3], Param("id", "value", int, many=True), ("query", "id"), errors))
errors

# %% [markdown]
# Two values survived, and the issue's `loc` ends in `1`: the index of the bad `?id=`, so
# the client learns *which* repeat was wrong. The `3` went through untouched, which is how
# a path parameter behaves after chapter 08's `{id:int}` has already converted it.
#
# `read_value` puts the steps together. Nothing found means the default, or a `missing`
# issue when there is none. A list default is copied, and a scalar sent twice
# (`?limit=1&limit=2`) keeps the last value, as most frameworks do.

# %%
#| export
def read_value(param: Param, request: Request, errors: list):
    """The value of a path or query parameter, converted; issues go into ``errors``."""
    raws, loc = find_raw(param.name, request)
    if not raws:
        if param.default is EMPTY:
            errors.append(issue(loc, "Field required", "missing"))
        return list(param.default) if isinstance(param.default, list) else param.default
    values = convert_all(raws, param, loc, errors)
    if param.many or not values:
        return values
    return values[-1]                           # a repeated scalar: the last one wins

# %% [markdown]
# Try it on the same fake request, with a handler signature to plan from. `lookup` wants
# the three kinds of thing the fake request holds: a path value, a bad query value and a
# repeated one.

# %%
async def lookup(item_id: int, limit: int = 10, tags: list[str] = []):
    ...

# %% [markdown]
# Now read each of `lookup`'s parameters from it, with one `errors` list for all of them:

# %%
errors = []
for param in plan(lookup):
    print(f"{param.name:8} -> {read_value(param, fake, errors)!r}")
errors

# %% [markdown]
# `item_id` came from the path and `tags` from the query, both converted. `limit` printed
# `[]`, a placeholder and not a value: what counts is the entry it left in `errors`, with
# `loc` `["query", "limit"]`. The function that calls `read_value` (`solve`, further down)
# sees that the list grew and leaves `limit` out of the handler's arguments.

# %% [markdown]
# ### A JSON body, field by field
#
# A body model is a plain `dataclass`. `build_model` checks a decoded JSON value against
# its fields: present fields must have the right JSON type, missing ones must have a
# default. JSON has real types, so this check is **strict**: `"3"` is not an integer here,
# and `true` is not an integer either.
#
# That last one needs care, because in Python it *is*. `bool` is a subclass of `int`, so
# an `isinstance` check alone would take `true` as a number:

# %%
isinstance(True, int), True + True

# %% [markdown]
# `True + True` is `2`. A client that sends `{"quantity": true}` has made a mistake, and a
# check that says "fine, 1" hides it. So the scalar check below has an odd-looking extra
# test, `type(value) is not bool`.
#
# `JSON_TYPES` says which Python types `json.loads` may produce for each annotation. An
# `int` is fine for a `float` field, because JSON writes `20` and not `20.0`; the value
# then comes back as a `float`, so the handler gets the type it declared.

# %%
#| export
JSON_TYPES = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}


def check_scalar(value, kind, loc, errors: list):
    """``value`` if JSON gave a ``kind`` (str, int, float, bool); else an issue, and None."""
    if isinstance(value, JSON_TYPES[kind]) and (kind is bool or type(value) is not bool):
        return float(value) if kind is float else value
    what, name = SCALARS[kind]
    errors.append(issue(loc, f"Input should be {what}", f"{name}_type"))

# %% [markdown]
# Four decoded JSON values, four checks. Watch the middle two:

# %%
errors = []
for value, kind in [(20, float), (True, int), ("3", int), (True, bool)]:
    print(f"{value!r:5} as {kind.__name__:5} -> {check_scalar(value, kind, ['body'], errors)!r}")
errors

# %% [markdown]
# `true` is refused as an `int`, and the string `"3"` too, because in JSON a number has no
# quotes. Both refusals returned `None` and left an issue with type `int_type`, not
# `int_parsing`: nothing was parsed here, the JSON simply held the wrong type.
#
# `check_json` handles the rest of an annotation and calls `check_scalar` at the bottom.
# Read it from the top. `None` is fine for an `Optional` field and nothing else. A
# `list[X]` must be a JSON array, and then each item is checked in turn with its index
# added to `loc`. A nested dataclass goes to `build_model` (below), which calls
# `check_json` again for each of its fields: the two functions walk the JSON together.

# %%
#| export
def check_json(value, kind, loc, errors: list):
    """``value`` (decoded JSON) if it has type ``kind``; otherwise an issue in ``errors``."""
    inner, optional = unwrap_optional(kind)
    if value is None and optional:
        return None
    if typing.get_origin(inner) is list:
        if not isinstance(value, list):
            errors.append(issue(loc, "Input should be a valid list", "list_type"))
            return None
        item = (typing.get_args(inner) or (str,))[0]
        return [check_json(one, item, (*loc, i), errors) for i, one in enumerate(value)]
    if dataclasses.is_dataclass(inner):
        return build_model(inner, value, loc, errors)
    return check_scalar(value, inner, loc, errors)

# %% [markdown]
# Try the branches that are new: `None` with and without `| None`, and a list with one bad
# item.

# %%
errors = []
for value, kind in [(None, int | None), (None, int), (["a", 2], list[str])]:
    name = inspect.formatannotation(kind)
    print(f"{value!r:10} as {name:10} -> {check_json(value, kind, ['body'], errors)!r}")
errors

# %% [markdown]
# A failed check returns `None` and appends an issue, so a `None` in the output means
# nothing on its own: the first line's `None` is a valid value, the second's is a refusal.
# Callers look at `errors` to tell them apart. The list came back as `['a', None]`, with
# one issue whose `loc` is `['body', 1]`: the index of `2` inside the array.
#
# `check_json` checks one value. `build_model` checks a whole object: each field present
# in the data is checked, each absent field without a default is `missing`, and keys the
# model does not know are ignored (FastAPI does the same by default). It calls the
# dataclass only if no new issue appeared, so your `__post_init__` sees valid data only.

# %%
#| export
def build_model(model, data, loc, errors: list):
    """An instance of dataclass ``model`` from a JSON object, or None with issues added."""
    if not isinstance(data, dict):
        errors.append(issue(loc, "Input should be a JSON object", "dict_type"))
        return None
    hints, values, before = typing.get_type_hints(model), {}, len(errors)
    for field in dataclasses.fields(model):
        where = (*loc, field.name)
        if field.name in data:
            values[field.name] = check_json(data[field.name], hints[field.name], where, errors)
        elif field.default is dataclasses.MISSING and \
                field.default_factory is dataclasses.MISSING:
            errors.append(issue(where, "Field required", "missing"))
    return model(**values) if len(errors) == before else None

# %% [markdown]
# Two lines in there deserve a note. `before = len(errors)` lets `build_model` see whether
# *its own* fields added issues, even when `errors` already held some from elsewhere in
# the request. And a field counts as optional when it has a `default` *or* a
# `default_factory`, the way a mutable default like a list must be written in a dataclass.
#
# Here is a model for a shop item, with both kinds of default:

# %%
from dataclasses import dataclass

@dataclass
class NewItem:
    name: str
    price: float
    in_stock: bool = True
    tags: list[str] = dataclasses.field(default_factory=list)

# %% [markdown]
# Try it on three bodies: a good one, one with every kind of mistake, and one that is not
# an object at all. Notice `in_stock: 1` is refused: `1` is not a JSON boolean.

# %%
for data in [{"name": "lamp", "price": 20},
             {"price": "cheap", "in_stock": 1, "tags": ["a", 2]},
             ["lamp", 20]]:
    errors = []
    print(build_model(NewItem, data, ["body"], errors), *errors, sep="\n   ")

# %% [markdown]
# The good body became a real `NewItem` (and `20` became `20.0`, since `price` is a
# float). The bad one produced four issues, each with a path down to the field, and for a
# list down to the index: `['body', 'tags', 1]`. The model was not built, so the first
# printed value is `None`. The last body is a JSON array, and one issue at `['body']` says
# so.

# %% [markdown]
# ### Running dependencies
#
# One standard-library tool first. `contextlib.AsyncExitStack` is a `with` block you can
# enter any number of times, decided at run time: each `enter_async_context(cm)` enters
# `cm` and remembers it, and one `aclose()` later exits them all, last entered first.
# That is exactly what a request needs, since it does not know in advance how many
# yield-dependencies it will open.
#
# A context manager that prints when it opens and closes makes the order visible:

# %%
@asynccontextmanager
async def opened(name):
    print("open", name)
    yield name
    print("close", name)

# %% [markdown]
# Enter two of them on one stack, then close the stack. Watch the order of the lines:

# %%
stack = AsyncExitStack()
print("got", await stack.enter_async_context(opened("db")))
print("got", await stack.enter_async_context(opened("lock")))
await stack.aclose()

# %% [markdown]
# Both were opened when asked for, and nothing was closed until `aclose()`, which closed
# the lock before the database: the reverse order, as nested `with` blocks would close
# them. That order is not a detail. Something opened later may be using something opened
# earlier (a lock kept in the database, a user loaded through the session), so it has to
# be closed first. `inject` will keep such a stack open while the response is sent, and
# close it afterwards.
#
# Now the functions that put it together. Four of them call one another, and a
# dependency's own parameters send the call back to the top, so here is the shape first:
#
# ```mermaid
# flowchart LR
#     S["solve(func)<br/>every parameter of func"] --> F["fill_parameter(param)<br/>one value"]
#     F -- "request, body, path, query" --> V["the value, or issues in errors"]
#     F -- "Depends(dep)" --> R["resolve(dep)<br/>cache, then run it"]
#     R -- "dep's own parameters" --> S
#     R --> C["call_dependency(dep)<br/>sync, async, or yield on the stack"]
# ```
#
# `fill_parameter` is the flowchart from the start of the chapter, in code: one branch per
# `source` a `Param` can have.

# %%
#| export
async def fill_parameter(param: Param, request: Request, cache: dict,
                         stack: AsyncExitStack, errors: list):
    """The value for one planned parameter; issues go into ``errors``."""
    if param.source == "request":
        return request
    if param.source == "depends":
        return await resolve(param.default, request, cache, stack, errors)
    if param.source == "body":
        return build_model(param.kind, await request.json(), ["body"], errors)
    return read_value(param, request, errors)

# %% [markdown]
# It is a coroutine, since a body must be awaited and so may a dependency; a notebook cell
# may use `await` at the top level. The `"body"` branch can call `request.json()` without
# worry: chapter 18's `Request` reads the body once and keeps it, so even two dataclass
# parameters in one signature would not read the stream twice.
#
# Fill the first parameter of `lookup` from the fake request:

# %%
first = plan(lookup)[0]
first.name, await fill_parameter(first, fake, {}, AsyncExitStack(), [])

# %% [markdown]
# `item_id` came from the path, converted to `7`. The empty `{}` is the per-request cache
# and the `AsyncExitStack()` the per-request stack; neither was needed for a path value.
#
# `solve` fills every parameter of a function, a handler or a dependency, and collects the
# keyword arguments. It never stops early. The `before = len(errors)` line remembers how
# many issues there were; if the parameter added any, it is left out of `kwargs` and the
# loop goes on, so every problem gets reported.

# %%
#| export
async def solve(func, request: Request, cache: dict, stack: AsyncExitStack,
                errors: list) -> dict:
    """The keyword arguments for ``func``, filled from the request and its dependencies;
    a parameter with issues (appended to ``errors``) is left out."""
    kwargs = {}
    for param in plan(func):
        before = len(errors)
        value = await fill_parameter(param, request, cache, stack, errors)
        if len(errors) == before:
            kwargs[param.name] = value
    return kwargs

# %% [markdown]
# Give it `lookup` and the fake request from before. This time all three parameters are
# filled in one call, with one `errors` list for the lot:

# %%
errors = []
print(await solve(lookup, fake, {}, AsyncExitStack(), errors))
errors

# %% [markdown]
# Two arguments and one issue: `limit` is missing from the dict, and the issue says why.
# With a non-empty `errors` list, the handler must not be called at all; deciding that is
# `inject`'s job, below.
#
# `resolve`, next, runs one dependency:
#
# 1. it looks in `cache`, a dict that lives for one request, so a dependency asked for
#    twice runs once;
# 2. it solves the dependency's *own* parameters first (the same `solve`: a dependency may
#    take a `Request`, query values, or other dependencies);
# 3. it calls it: sync or `async`, or a generator with `yield`.
#
# Step 3 has to call functions of four shapes, so it gets its own helper first. Both
# `asynccontextmanager` and `contextmanager` turn a generator function into a
# `with`-able object. Entering it on the stack runs the code up to `yield` and hands back
# the yielded value; the stack remembers it, and the code after `yield` runs when the
# stack closes.

# %%
#| export
async def call_dependency(dependency, kwargs: dict, stack: AsyncExitStack):
    """Call ``dependency`` with ``kwargs``: sync, async, or a (sync or async) generator whose
    code after ``yield`` waits until ``stack`` closes."""
    if inspect.isasyncgenfunction(dependency):
        return await stack.enter_async_context(asynccontextmanager(dependency)(**kwargs))
    if inspect.isgeneratorfunction(dependency):
        return stack.enter_context(contextmanager(dependency)(**kwargs))
    value = dependency(**kwargs)
    return await value if inspect.isawaitable(value) else value


# %% [markdown]
# One stack serves both kinds of generator: `AsyncExitStack` has `enter_context` for a
# plain `with`-able object next to `enter_async_context` for an `async with` one, and
# `aclose()` closes both, in reverse order.
#
# Here is one dependency of each common shape: a plain function, a coroutine function,
# and a generator with code after its `yield`:

# %%
def plain():
    return "plain value"

async def awaited():
    return "awaited value"

def generated():
    yield "yielded value"
    print("generator: cleanup after yield")

# %% [markdown]
# Call all three through one stack, then close it. Look for the line that comes last:

# %%
stack = AsyncExitStack()
for dependency in (plain, awaited, generated):
    print(await call_dependency(dependency, {}, stack))
await stack.aclose()

# %% [markdown]
# Each call handed back its value, and the caller cannot tell the shapes apart: that is
# the point of the helper. Only the generator had more to say, and it said it last, when
# `aclose()` ran.
#
# `resolve` wraps that call in the first two rules of the list above: look in the
# per-request `cache` first, and solve the dependency's own parameters before calling it.

# %%
#| export
async def resolve(marker: Depends, request: Request, cache: dict, stack: AsyncExitStack,
                  errors: list):
    """Run one dependency once per request (unless use_cache=False), after its own
    parameters; a yield-dependency's code after ``yield`` waits on ``stack``."""
    dependency = marker.dependency
    if marker.use_cache and dependency in cache:
        return cache[dependency]
    before = len(errors)
    kwargs = await solve(dependency, request, cache, stack, errors)
    if len(errors) > before:
        return None                             # its inputs are wrong: do not call it
    value = await call_dependency(dependency, kwargs, stack)
    if marker.use_cache:
        cache[dependency] = value
    return value

# %% [markdown]
# Note the early `return None` when the dependency's own inputs have issues: a dependency
# is never called with arguments missing. And the `cache` key is the function itself, so
# two `Depends(get_db)` anywhere in one request share one result.
#
# Try it with a dependency that reads `?limit=` itself, and a request that asks for 80:

# %%
calls = []

def page_size(limit: int = 10):
    calls.append(limit)
    return min(limit, 50)

fake_ok = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                   "query_string": b"limit=80"}, receive=None)

# %% [markdown]
# Resolve it twice with the same `cache`, and count the calls. Each `resolve` gets a new
# `AsyncExitStack()`, which is harmless here because `page_size` has no `yield`:

# %%
cache, errors = {}, []
for _ in range(2):
    print(await resolve(Depends(page_size), fake_ok, cache, AsyncExitStack(), errors))
calls, cache

# %% [markdown]
# `80` was read from the query and capped at 50, twice, but `page_size` ran once (`calls`
# has one entry): the second `resolve` found the answer in `cache`. A real request gets a
# fresh `cache` dict, so nothing leaks from one request into the next.

# %% [markdown]
# ### The wrapper bare calls
#
# `bare` calls `await handler(request)` and sends the `Response` it gets back. `inject`
# wraps a handler of any signature into exactly that. Besides filling the arguments, the
# wrapper owns the request's `AsyncExitStack`, and has to decide when to close it.
#
# The answer is: after the response is sent. The client should not wait while a session
# closes or a temporary file is removed. Chapter 18 gave `bare` the hook for this:
# `request.call_after_response(fn, *args)` notes a call that `bare` makes once the
# response's last byte is out, after an error response too. So the wrapper never closes
# the stack itself; it leaves a note for `bare` to do it later.
#
# Closing has two cases. If the handler returned, `stack.aclose()` resumes each generator
# after its `yield`. If it raised, the stack must close *with* that exception, so that a
# dependency's `except` (a rollback, say) sees it. `__aexit__(type, error, traceback)` is
# what the end of a `with` block calls when an exception is on its way out. `close_stack`
# handles both:

# %%
#| export
async def close_stack(stack: AsyncExitStack, error: BaseException | None = None) -> None:
    """Close ``stack``: each yield-dependency resumes after its ``yield``, or, when the
    handler raised ``error``, gets it thrown in there (so that it can roll back)."""
    if error is None:
        await stack.aclose()
    else:
        await stack.__aexit__(type(error), error, error.__traceback__)


# %% [markdown]
# To try both cases you need a context manager that tells them apart. `transaction_of`
# has the shape every database-session dependency has: the code after `yield` runs only on
# success, the `except` only on an error, and the bare `raise` passes the error on:

# %%
@asynccontextmanager
async def transaction_of(name):
    try:
        yield name
        print("commit", name)
    except Exception as error:
        print("rollback", name, "after", repr(error))
        raise

# %% [markdown]
# Open it on a fresh stack twice, and close the first stack cleanly and the second with a
# `KeyError`, as if the handler had raised one:

# %%
for error in (None, KeyError("pear")):
    stack = AsyncExitStack()
    await stack.enter_async_context(transaction_of("db"))
    await close_stack(stack, error)

# %% [markdown]
# The first stack committed; the second threw the `KeyError` in at the `yield`, and the
# rollback saw it. Notice that the rollback's `raise` did not escape from `close_stack`:
# `__aexit__` re-raises only an exception that is *new*. Handing the same error back means
# "I did not handle it", and by the time `close_stack` runs, `bare` has answered it anyway.
#
# Now the body of the wrapper. `call_injected` runs one handler for one request:

# %%
#| export
async def call_injected(handler, request: Request) -> Response:
    """Run ``handler`` with the arguments its plan asks for; 422 when the request does not
    fit. The stack of yield-dependencies closes after the response, through bare's hook."""
    stack, errors = AsyncExitStack(), []
    try:
        kwargs = await solve(handler, request, {}, stack, errors)
        if errors:
            raise ValidationError(errors)
        response = to_response(await handler(**kwargs), handler)
    except ValidationError as error:            # from solve, or raised by your own code
        response = JSONResponse({"detail": error.errors}, 422)
    except BaseException as error:
        request.call_after_response(close_stack, stack, error)
        raise                                   # bare answers it, then closes the stack
    request.call_after_response(close_stack, stack)
    return response


# %% [markdown]
# Every path through it ends with a note for `bare`; only the arguments differ:
#
# ```mermaid
# flowchart TD
#     S["solve the handler's parameters"] --> I{"any issues?"}
#     I -- yes --> V["JSONResponse 422 with every issue"]
#     I -- no --> H["await handler(**kwargs)"]
#     H -- returns --> R["to_response(value)"]
#     H -- "raises ValidationError" --> V
#     H -- "raises anything else" --> X["note close_stack(stack, error), re-raise for bare"]
#     V & R --> N["note close_stack(stack), return the response"]
# ```
#
# Follow a request through it. `solve` fills the arguments; any issue becomes a
# `ValidationError`, and the handler is skipped. Otherwise the handler runs, and
# `to_response` (chapter 18's, the same function `bare` uses) turns its dict into a
# `JSONResponse`. Either way the stack is handed to `request.call_after_response`, with
# the exception when there was one; the exception itself goes on to `bare`, which turns an
# `HTTPException` into its error page.
#
# Two choices in there are easy to miss. The `{}` passed to `solve` is the per-request
# cache: a new dict for every request, so no dependency's value leaks into the next one.
# And the last `except` catches `BaseException`, not just `Exception`: if the task is
# cancelled (a server shutting down, say), the stack must still be closed, and
# `asyncio.CancelledError` is not an `Exception`.
#
# You can watch the hand-over without `bare`. Call `call_injected` on a fresh copy of the
# fake request, for a handler that uses the `generated` dependency from above:

# %%
async def peek(item_id: int, value: str = Depends(generated)):
    return {"item_id": item_id, "value": value}

noted = Request(fake.scope, receive=None)
response = await call_injected(peek, noted)
print(response, response.body)
[fn.__name__ for fn, args, kwargs in noted.after_response]

# %% [markdown]
# A finished 200 response, and one call waiting on the request: `close_stack`. The
# generator has not printed its cleanup line yet. `bare` would now send the response and
# then make the waiting calls; do that part by hand:

# %%
for fn, args, kwargs in noted.after_response:
    await fn(*args, **kwargs)

# %% [markdown]
# There is the cleanup line, printed only when the note was acted on. `inject` itself is
# now short: two checks when the route is added, then a wrapper with the one signature
# `bare` knows.

# %%
#| export
def inject(handler):
    """``handler``, whose parameters say what it needs, as the ``async def
    endpoint(request)`` bare calls; 422 with every issue when the request does not fit."""
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"a handler is an 'async def' function, not {handler!r}")
    plan(handler)                               # a parameter nobody can fill: fail now

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        return await call_injected(handler, request)
    return endpoint


# %% [markdown]
# `inject` calls `plan` once up front, for the early `TypeError`, and `functools.wraps`
# keeps the handler's name, which `bare` uses as the route's name. Last, a `Bare` subclass
# that applies `inject` to every route; `get`, `post` and friends all go through
# `add_route`, so one override covers them.

# %%
#| export
class InjectingBare(Bare):
    """bare whose handlers take what their signatures ask for (each is wrapped by inject)."""

    def add_route(self, path: str, handler, methods=("GET",), name: str | None = None):
        return super().add_route(path, inject(handler), methods, name)

# %% [markdown]
# `add_route` is the one door every route comes through, so the subclass needs no other
# method. WebSocket routes come in through another one, `app.websocket(path)`, and are
# left alone: a WebSocket handler keeps chapter 18's `async def handler(websocket)`.
#
# Break it on purpose first. `broken` (the handler that wanted a `dict` from the URL) and a
# plain `def` handler are both refused by the decorator, before any request exists. The
# second message shows a hex address, which differs on every run:

# %%
def not_async(limit: int = 10):
    return {"limit": limit}

strict = InjectingBare(name="strict")
for handler in (broken, not_async):
    try:
        strict.get("/oops")(handler)
    except TypeError as error:
        print("TypeError:", error)

# %% [markdown]
# Plain `Bare` refuses the `def` too (chapter 18 checks that much), but it would take
# `broken` and hand it the `Request` as `filters`, and the mistake would surface only
# when a request came in. Here the app does not even finish loading, which is where you
# want to find a typo in a signature: on your machine, not in production.
#
# ## Handlers that declare what they need
#
# Time to use it. The same `/items` endpoint as at the start, now with a repeatable tag, a
# boolean flag and an optional price filter next to `limit`. Note there is no `request` in
# sight: every argument arrives converted, or the handler is not called.

# %%
shop = InjectingBare(name="shop")

@shop.get("/items")
async def list_items(limit: int = 10, tags: list[str] = [],
                     in_stock: bool = False, max_price: float | None = None):
    return {"limit": limit, "tags": tags, "in_stock": in_stock, "max_price": max_price}

# %% [markdown]
# The decorator ran `plan` on `list_items` and found nothing to refuse. Ask for a page of
# three red, big items in stock:

# %%
client = TestClient(shop, raise_app_exceptions=False)
client.get("/items?limit=3&tags=red&tags=big&in_stock=yes").json()

# %% [markdown]
# `limit` is an `int`, the two `tags` became a list, `yes` became `True`, and the absent
# `max_price` took its default. With nothing in the query, every default applies.
#
# (A `[]` default is the classic Python trap: one list shared by every call. `read_value`
# hands out a *copy* of a list default, so a handler that appends to `tags` cannot leak
# into the next request.)

# %%
client.get("/items").json()

# %% [markdown]
# Every key is there with its default, `max_price` as `None`: a handler never has to ask
# whether a parameter exists, only what its value is.

# %% [markdown]
# Now the inputs that gave a 500 before. Look at the status and at the detail list: the
# second request has **two** problems and the client hears about both. Each entry is
# enough for a client (or a form in a browser) to point at the exact field to fix.

# %%
for query in ["limit=ten", "limit=%20%207&max_price=cheap", "tags=a&in_stock=maybe"]:
    response = client.get(f"/items?{query}")
    print(response.status_code, query)
    for entry in response.json()["detail"]:
        print("   ", entry)

# %% [markdown]
# Compare with the naive handler: the same `limit=ten` that was a 500 with no explanation
# is now a 422 that quotes the bad value, and `"  7"` is refused instead of quietly read as
# 7. The third request sent a fine `tags` and a bad `in_stock`; only the bad one is listed.
#
# A path parameter works the same way: the name `item_id` matches `{item_id}` in the
# template, and the annotation `int` converts it. A `Request` annotation still gets the
# whole request, for the rare thing the signature cannot say (here, a header):

# %%
@shop.get("/items/{item_id}")
async def show_item(item_id: int, request: Request, verbose: bool = False):
    return {"item_id": item_id, "verbose": verbose,
            "agent": request.headers.get("user-agent")}

# %% [markdown]
# One good request, with a header for the handler to read, and one with a word where the
# number should be:

# %%
print(client.get("/items/42?verbose=1", headers={"user-agent": "demo"}).json())
print(client.get("/items/forty-two").json())

# %% [markdown]
# The second answer's `loc` starts with `"path"`: the client knows the mistake is in the
# URL's path, not its query. (Had the template said `{item_id:int}`, chapter 08's converter
# would have refused `forty-two` with a 404 before the handler was even found; both are
# reasonable, and now you can pick.)

# %% [markdown]
# ## A body model
#
# Annotate a parameter with a dataclass and it comes from the JSON body. `NewItem` is the
# model you tried `build_model` on:

# %%
@shop.post("/items")
async def create_item(item: NewItem):
    return {"created": dataclasses.asdict(item), "type": type(item).__name__}

client.post("/items", json={"name": "lamp", "price": 20, "tags": ["desk"]}).json()

# %% [markdown]
# The handler received a real `NewItem`, with defaults filled in (`in_stock` is `True`),
# and `price` arrived as `20.0`, a `float` as declared. It can use `item.price` with no
# checks of its own. A body with wrong fields gets a 422 whose `loc`s start with
# `"body"`. Note `"in_stock": "no"`: in a query string `no` means false, but in JSON a
# string is never a boolean.

# %%
response = client.post("/items", json={"name": 7, "price": 20, "in_stock": "no"})
response.status_code, response.json()

# %% [markdown]
# What about a body that is not JSON at all? That is not a validation problem but a broken
# request, and `bare`'s own `request.json()` answers it as chapter 18 decided: 415 when the
# Content-Type is not JSON, 400 when the bytes do not parse.

# %%
for headers, body in [({"content-type": "text/plain"}, b"lamp"),
                      ({"content-type": "application/json"}, b'{"name": ')]:
    response = client.post("/items", content=body, headers=headers)
    print(response.status_code, response.text.strip())

# %% [markdown]
# Neither answer is a 422 with a `detail` list: both requests failed before a single
# field could be looked at. The injector did not have to handle them at all, because
# `request.json()` raises `HTTPException`s and `bare` turns those into answers, the same
# as in any plain `bare` handler.

# %% [markdown]
# ## Dependencies with `Depends`
#
# Some arguments are not in the request: a database handle, the current user, paging
# rules shared by ten endpoints. A dependency is a function whose result becomes the
# argument. This is what the name *dependency injection* means: the handler says what it
# depends on, and something else (here the framework) provides it. The handler never
# builds its own database connection, so a test can hand it a different one.
#
# A dependency takes injected parameters itself, so `pagination` below reads `?page=` and
# `?size=` and checks them, once, for every endpoint that uses it:

# %%
def pagination(page: int = 1, size: int = 10):
    if page < 1 or not 1 <= size <= 100:
        raise HTTPException(400, "page >= 1 and 1 <= size <= 100")
    return {"offset": (page - 1) * size, "size": size}

# %% [markdown]
# `pagination` is a plain function: you could call it yourself in a test, with no request
# in sight. A handler asks for it by putting `Depends(pagination)` in a default:

# %%
@shop.get("/catalog")
async def catalog(paging: dict = Depends(pagination)):
    return paging

print(client.get("/catalog?page=3&size=20").json())
print(client.get("/catalog?page=x").json())

# %% [markdown]
# The second request failed *inside the dependency's* parameters, and the 422 says so:
# `page` is a query parameter the handler never mentions, yet its `loc` is exact.
#
# A dependency can also raise an `HTTPException`, and `bare` answers it as usual:

# %%
print(client.get("/catalog?size=1000").text)

# %% [markdown]
# Two kinds of refusal, two statuses. `x` is not an integer at all: the injector says so
# with a 422 before `pagination` runs. `1000` is a fine integer that breaks a rule only
# `pagination` knows, so `pagination` itself refuses it, and it picked 400.
#
# ### Once per request
#
# Here is a tree of dependencies. `current_user` needs the database, `audit` needs the
# database and the user, and the handler asks for all three:
#
# ```mermaid
# flowchart TD
#     me --> current_user & audit & get_db
#     audit --> current_user & get_db
#     current_user --> get_db
# ```
#
# Without a cache, `get_db` would run four times: once each for `me` and `audit`, and once
# inside each of the two runs of `current_user`. A `Counter` will count the calls. First
# the lowest level, a stand-in for a database:

# %%
from collections import Counter

calls = Counter()                               # how often each dependency ran

async def get_db():
    calls["get_db"] += 1
    return {"users": {"t0k3n": "ada"}}

# %% [markdown]
# `current_user` needs the request (for its header) and the database (for the users). A
# wrong token is not a validation problem but a failed login, so it raises a 401:

# %%
async def current_user(request: Request, db: dict = Depends(get_db)):
    calls["current_user"] += 1
    token = request.headers.get("x-token", "")
    if token not in db["users"]:
        raise HTTPException(401, "send a valid X-Token")
    return db["users"][token]

[(param.name, param.source) for param in plan(current_user)]

# %% [markdown]
# The plan of a dependency reads like a handler's: `current_user` takes the request and
# another dependency. `audit` asks for both of those, and the handler `me` asks for all
# three. The last line shows how many times each function ran for this one request:

# %%
def audit(user: str = Depends(current_user), db: dict = Depends(get_db)):
    calls["audit"] += 1
    return f"{user} was here"

@shop.get("/me")
async def me(user: str = Depends(current_user), note: str = Depends(audit),
             db: dict = Depends(get_db)):
    return {"user": user, "note": note}

print(client.get("/me", headers={"x-token": "t0k3n"}).json())
dict(calls)

# %% [markdown]
# One call each, although `get_db` was asked for three times (by `current_user`, `audit`
# and `me`): the per-request `cache` handed the first result to everyone who asked. That
# is also what makes it *one* database connection per request rather than several.
# `current_user` ran once too, though both `me` and `audit` wanted it.
#
# `audit` is a plain `def` while the others are `async def`; `resolve` handles both (a
# sync dependency runs on the event loop, so keep it quick).
#
# A second request starts with an empty cache, so the counts should go up by one each,
# not more. Without the token, `current_user` refuses and nothing after it runs:

# %%
print(client.get("/me", headers={"x-token": "t0k3n"}).status_code, dict(calls))
print(client.get("/me").text.strip(), dict(calls))

# %% [markdown]
# Two of everything after the second request, then a 401 for the third. Its counts moved
# for `get_db` and `current_user`, but not for `audit`: a dependency that raises stops the
# request there, and nothing that needed its value runs.
#
# Sharing is the right default, but not always what you want. `Depends(f,
# use_cache=False)` opts out: every parameter that asks for `f` gets a call of its own.
# That fits the rare dependency whose value must differ each time it is used, such as a
# fresh id for each of two records a handler creates.
#
# ### Calling a handler yourself
#
# `InjectingBare`'s decorator registers the *wrapped* handler but hands you back your own
# function, unchanged. So `me` is still a plain coroutine function with keyword
# parameters, and a unit test can call it with whatever stand-ins it likes: no request,
# no token, no database.

# %%
await me(user="grace", note="a stand-in", db={})

# %% [markdown]
# The handler ran with the values given, and none of the dependencies did. This is the
# testing payoff of declaring needs in the signature: the code that *gets* a user and
# the code that *uses* one can be tested apart. (FastAPI's `dependency_overrides`, listed
# at the end of the chapter, does the same swap for tests that go through HTTP.)

# %% [markdown]
# ### Cleanup after the response: `yield`
#
# A database session must be closed, a lock released, a temporary file removed. Write the
# dependency as a generator: the code before `yield` sets up, the yielded value is the
# argument, and the code after `yield` runs **after the response is sent**. The `log`
# list will record the order in which things happen:

# %%
log = []

async def session():
    log.append("open session")
    try:
        yield "a session"
        log.append("commit")
    except Exception as error:
        log.append(f"rollback ({type(error).__name__})")
        raise
    finally:
        log.append("close session")

inspect.isasyncgenfunction(session)

# %% [markdown]
# `True`: this is the test `call_dependency` makes to pick the `enter_async_context`
# branch.
#
# The `try`/`except`/`finally` around `yield` is what lets the dependency react to the
# handler's outcome: `commit` only when the handler returned, `rollback` when it raised,
# `close session` in both cases. A handler that uses it, with order 0 failing on purpose.
# The last line asks the plan what each of its parameters is:

# %%
@shop.post("/orders/{order_id}")
async def place_order(order_id: int, db: str = Depends(session)):
    log.append(f"handler uses {db}")
    if order_id == 0:
        raise HTTPException(409, "order 0 is taken")
    return {"order": order_id}

[param.source for param in plan(place_order)]

# %% [markdown]
# `order_id` comes from the path and `db` from a dependency; nothing in the plan says
# "generator", because that is decided when the dependency is called, not when it is
# planned.
#
# The interesting question is where "response sent" falls. To see it, wrap `shop` in a tiny
# ASGI middleware that notes in `log` each response message on its way to the client:

# %%
def logging_sends(app):
    async def wrapped(scope, receive, send):
        async def logged(message):
            if message["type"].startswith("http.response"):
                log.append(f"sent {message['type']}")
            await send(message)
        await app(scope, receive, logged)
    return wrapped

# %% [markdown]
# This is an ASGI middleware in chapter 16's shape: it wraps `send`, notes the message,
# and passes it on unchanged, so the client sees exactly what it would have seen without
# it. `TestClient` takes any ASGI app, the wrapped one included. Place order 7 through
# it, then read the log from the top:

# %%
logged_client = TestClient(logging_sends(shop), raise_app_exceptions=False)
print(logged_client.post("/orders/7").json())
print(*log, sep="\n")

# %% [markdown]
# The handler ran with the open session, both response messages went out, and only *then*
# did the session commit and close. The client was not kept waiting for the cleanup.
# As a picture:
#
# ```mermaid
# sequenceDiagram
#     participant B as bare
#     participant E as inject's endpoint
#     participant S as session()
#     participant H as place_order
#     B->>E: await endpoint(request)
#     E->>S: enter on the stack (runs up to yield)
#     S-->>E: "a session"
#     E->>H: place_order(order_id=7, db="a session")
#     H-->>E: {"order": 7}
#     E->>B: request.call_after_response(close_stack, stack)
#     E-->>B: JSONResponse
#     Note over B: http.response.start and body are sent
#     B->>S: close_stack(stack): commit, close session
# ```
#
# `bare` does not know what a dependency is. It only keeps a promise it made in chapter
# 18: whatever was noted with `call_after_response` runs once the response is out.
#
# When the handler raises, the exception is thrown into the generator at its `yield`, so
# the dependency can roll back. Order 0 fails on purpose; watch where the rollback falls:

# %%
log.clear()
print(logged_client.post("/orders/0").status_code)
print(*log, sep="\n")

# %% [markdown]
# The 409 went out first, and the rollback came after it: `bare` runs the noted calls
# after an error response too. The rollback's message names the exception it saw, the
# `HTTPException` the handler raised.
#
# ### Why after, and what it costs
#
# Running cleanup after the response is a choice, and frameworks disagree about it.
# FastAPI ran the code after `yield` after the response until version 0.106, then moved
# it before the response; its release notes and issue tracker record both the reasons and
# what broke. Here is what each choice buys, so you can judge for yourself:
#
# - **After** (this chapter): the client does not wait for the cleanup, and a streaming
#   response can keep using the session while it sends, since the stack closes only after
#   the last byte. The price: the response is already out, so an error in the cleanup
#   cannot change it. `bare` logs such an error on the `"bare"` logger (chapter 18 showed
#   how to read it) and runs the remaining callbacks.
# - **Before**: an error in the cleanup (a failed commit, say) can still become a 500 the
#   client sees. The price: every client waits for every cleanup, and a streaming body
#   cannot use anything the dependencies opened.
#
# If one step must succeed before the client hears "done", put that step in the handler,
# where its failure becomes the response, and leave only the closing to the dependency.

# %% [markdown]
# ## Over a real socket
#
# Nothing here is special to the test client: `shop` is an ordinary ASGI app, and
# `InjectingBare` changed nothing about how it is served. Serve it with `barelab.serve`
# and send the same bad query as at the very start of the chapter:

# %%
import barelab

server = barelab.serve(shop, name="shop")
reply = barelab.http_request(server, "GET", "/items?limit=ten")
print(reply.status, reply.text)

# %% [markdown]
# Where the naive handler answered 500, the same mistake now gets a 422 with the exact
# place (`["query", "limit"]`) and the value that was refused. The server's log shows the
# request like any other:

# %%
server.log

# %% [markdown]
# The access line ends in `422`. That matters beyond this one client: a dashboard that
# counts 5xx responses as the server's own failures now stays quiet when users mistype,
# and the 4xx count tells you how often your API's callers get it wrong.
#
# ## What a full framework adds
#
# You now have the core of FastAPI's parameter handling. What it adds on top is more of
# the same idea, all driven by the same kind of plan:
#
# - more sources: `Header()`, `Cookie()` and `Form()` markers in the default, read like
#   `Depends` but from other parts of the request;
# - constraints in the signature, like `Annotated[int, Query(ge=1, le=100)]`, so that a
#   rule such as `pagination`'s becomes a 422 with no code of yours;
# - Pydantic models instead of dataclasses, with a *lax* mode that, unlike `build_model`,
#   accepts `"3"` for an `int` by default;
# - `app.dependency_overrides`, a dict that swaps one dependency for another, so a test
#   can replace `get_db` with an in-memory stand-in without touching a handler;
# - an OpenAPI document generated from the plans: every `Param` you built says a name, a
#   place, a type and whether it is required, which is exactly what API docs list.
#
# The last point is the deepest one. Once a signature is data, the same data can check a
# request, fill the arguments, and describe the API to the people who call it.

# %% [markdown]
# ## Summary
#
# - A signature is data: `inspect.signature` gives names, kinds and defaults, and
#   `typing.get_type_hints` gives real types (not the strings a module with
#   `from __future__ import annotations` stores). `get_origin`/`get_args` take `list[str]`
#   and `int | None` apart.
# - `inject` reads each handler's plan **once**, when the route is added, so a parameter no
#   one can fill is a `TypeError` at startup, not a 500 at 3 a.m.
# - Values come from, in order: `Depends(...)`, a `Request` annotation, a dataclass (the JSON
#   body, checked strictly field by field), a path parameter of the same name, the query
#   string (converted, repeated for `list[...]`, or the default).
# - A client's mistake is a **422 Unprocessable Content** with *every* problem listed as
#   `{loc, msg, type}`; a naive `int()` turns the same mistake into a 500 and accepts input
#   you never meant to (`"  7"`, `"1_000"`).
# - Dependencies may be sync or async and take injected parameters themselves; a
#   per-request cache makes each run once; a `yield` dependency cleans up after the
#   response is sent, or sees the exception and rolls back.
# - `inject` never closes the dependency stack itself: it hands `close_stack` to chapter
#   18's `request.call_after_response`, so cleanup runs after the client has its response,
#   error responses included. The client never waits for it; the price is that a failing
#   cleanup can only be logged, not turned into a 500.
# - The decorator hands back your function unchanged, so a unit test can call a handler
#   with stand-ins for its dependencies, no HTTP involved.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — a token-checking dependency
#
# Write a dependency `require_admin(request: Request)` that returns the user name `"root"`
# when the `X-Token` header is `"letmein"` and otherwise raises `HTTPException(403, ...)`.
# Then build `admin_app = InjectingBare(name="admin")` with `GET /admin/stats` whose handler
# takes `user: str = Depends(require_admin)` and returns `{"user": user}`.

# %% tags=["solution"]
### BEGIN SOLUTION
def require_admin(request: Request):
    if request.headers.get("x-token") != "letmein":
        raise HTTPException(403, "admins only")
    return "root"

admin_app = InjectingBare(name="admin")

@admin_app.get("/admin/stats")
async def admin_stats(user: str = Depends(require_admin)):
    return {"user": user}
### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    assert callable(require_admin) and admin_app is not None, "define require_admin and admin_app"
    admin_client = TestClient(admin_app, raise_app_exceptions=False)
    good = admin_client.get("/admin/stats", headers={"x-token": "letmein"})
    assert good.status_code == 200 and good.json() == {"user": "root"}, good.text
    bad = admin_client.get("/admin/stats", headers={"x-token": "guess"})
    assert bad.status_code == 403, f"a wrong token got {bad.status_code}, not 403"
    assert admin_client.get("/admin/stats").status_code == 403, "no token must be a 403"

# %% [markdown]
# ### Exercise 2 — a signup model
#
# Define a dataclass `Signup` with `email: str`, `age: int` and `newsletter: bool = False`,
# and an app `signup_app = InjectingBare(name="signup")` with `POST /signup` whose handler
# takes `form: Signup` and returns `{"email": ..., "age": ..., "newsletter": ...}`. The
# check sends a good body and one with a string age and no email.

# %% tags=["solution"]
### BEGIN SOLUTION
@dataclass
class Signup:
    email: str
    age: int
    newsletter: bool = False

signup_app = InjectingBare(name="signup")

@signup_app.post("/signup")
async def signup(form: Signup):
    return dataclasses.asdict(form)
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert dataclasses.is_dataclass(Signup), "define Signup as a dataclass"
    signup_client = TestClient(signup_app, raise_app_exceptions=False)
    good = signup_client.post("/signup", json={"email": "a@b.c", "age": 30})
    assert good.json() == {"email": "a@b.c", "age": 30, "newsletter": False}, good.text
    bad = signup_client.post("/signup", json={"age": "30"})
    assert bad.status_code == 422, f"a bad body got {bad.status_code}, not 422"
    locs = sorted(entry["loc"] for entry in bad.json()["detail"])
    assert locs == [["body", "age"], ["body", "email"]], f"the issues were at {locs}"

# %% [markdown]
# ### Exercise 3 — a transaction that commits or rolls back
#
# Write an async yield-dependency `transaction()` that appends `"begin"` to the list
# `tx_log`, yields `tx_log`, then appends `"commit"` if the handler succeeded or
# `"rollback"` if it raised (re-raise the error). The check adds two routes that use it.

# %% tags=["solution"]
### BEGIN SOLUTION
tx_log = []

async def transaction():
    tx_log.append("begin")
    try:
        yield tx_log
    except Exception:
        tx_log.append("rollback")
        raise
    tx_log.append("commit")
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    assert inspect.isasyncgenfunction(transaction), "transaction is an async def with yield"
    tx_app = InjectingBare(name="tx")

    @tx_app.post("/ok")
    async def ok(tx: list = Depends(transaction)):
        return {"seen": list(tx)}

    @tx_app.post("/fail")
    async def fail(tx: list = Depends(transaction)):
        raise HTTPException(400, "no")

    tx_client = TestClient(tx_app, raise_app_exceptions=False)
    tx_log.clear()
    assert tx_client.post("/ok").json() == {"seen": ["begin"]}, "the handler saw the log"
    assert tx_log == ["begin", "commit"], f"after a success the log is {tx_log}"
    tx_log.clear()
    assert tx_client.post("/fail").status_code == 400, "the handler's 400 must reach the client"
    assert tx_log == ["begin", "rollback"], f"after a failure the log is {tx_log}"

# %% [markdown]
# ### Exercise 4 — a `set[int]` query parameter
#
# `plan` refuses `set[int]`, but a dependency can do what the planner cannot. Write
# `unique_ids(request: Request)`, which returns the *set* of every `?id=` value as ints.
# Use `convert(raw, int, ["query", "id"])` for each value: it raises a `ValidationError`
# for a bad one, and `inject` turns a `ValidationError` raised anywhere below it into a 422.
# Hint: `request.query.getall("id")` lists every value of a repeated key.

# %% tags=["solution"]
### BEGIN SOLUTION
def unique_ids(request: Request):
    return {convert(raw, int, ["query", "id"]) for raw in request.query.getall("id")}
### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    assert callable(unique_ids), "define unique_ids"
    ids_app = InjectingBare(name="ids")

    @ids_app.get("/ids")
    async def ids(found: set = Depends(unique_ids)):
        return {"ids": sorted(found)}

    ids_client = TestClient(ids_app, raise_app_exceptions=False)
    good = ids_client.get("/ids?id=3&id=1&id=3")
    assert good.json() == {"ids": [1, 3]}, f"got {good.text}; duplicates count once"
    bad = ids_client.get("/ids?id=x")
    assert bad.status_code == 422, f"a bad id got {bad.status_code}, not 422"
    assert bad.json()["detail"][0]["loc"] == ["query", "id"], bad.text

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()

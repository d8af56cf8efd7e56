"""barelab.built.bare_depends (chapter 22): dependency injection from handler signatures.

Every test drives an InjectingBare app in-process with chapter 17's TestClient, the way a
client sees it: statuses, JSON bodies and the 422 detail list.
"""

import asyncio
import dataclasses
from dataclasses import dataclass

import pytest

from barelab.built.bare import HTTPException, Request
from barelab.built.bare_depends import (Depends, InjectingBare, Param, ValidationError,
                                        call_injected, check_scalar, close_stack, convert,
                                        convert_all, fill_parameter, inject, issue, plan,
                                        plan_parameter, unwrap_optional)
from barelab.built.testing import TestClient


def client_for(app):
    return TestClient(app, raise_app_exceptions=False)


@pytest.mark.parametrize("raw, kind, expected", [
    ("7", int, 7), ("-3", int, -3), ("+0", int, 0), ("2.5", float, 2.5), ("1e3", float, 1000.0),
    (".5", float, 0.5), ("Yes", bool, True), ("off", bool, False), ("  x ", str, "  x "),
])
def test_convert_accepts(raw, kind, expected):
    value = convert(raw, kind, ["query", "x"])
    assert value == expected and type(value) is kind


@pytest.mark.parametrize("raw, kind", [
    ("  7", int), ("1_000", int), ("٣", int), ("", int), ("nan", float), ("inf", float),
    ("1_0.0", float), ("maybe", bool), ("", bool),
])
def test_convert_refuses(raw, kind):
    with pytest.raises(ValidationError) as info:
        convert(raw, kind, ["query", "x"])
    [entry] = info.value.errors
    assert entry["loc"] == ["query", "x"] and entry["type"].endswith("_parsing")


def test_unwrap_optional():
    import typing
    assert unwrap_optional(int | None) == (int, True)
    assert unwrap_optional(typing.Optional[str]) == (str, True)
    assert unwrap_optional(int | str) == (int | str, False)
    assert unwrap_optional(list[int]) == (list[int], False)


def test_plan_refuses_what_no_request_can_fill():
    async def bad(filters: dict): ...
    async def star(*args): ...
    for handler in (bad, star):
        with pytest.raises(TypeError):
            inject(handler)
    with pytest.raises(TypeError):
        inject(lambda request: None)            # not async


def test_plan_reads_string_annotations():
    async def handler(limit: "int" = 3, tags: "list[str]" = []): ...
    kinds = [(p.name, p.kind, p.many) for p in plan(handler)]
    assert kinds == [("limit", int, False), ("tags", str, True)]


def test_plan_parameter_follows_the_precedence():
    import inspect

    def dep(): ...
    async def handler(request: Request, d: Request = Depends(dep), limit: int = 1): ...
    params = inspect.signature(handler).parameters.values()
    sources = [plan_parameter(handler, p, p.annotation).source for p in params]
    assert sources == ["request", "depends", "value"]


def test_convert_all_keeps_good_values_and_indexes_bad_ones():
    errors = []
    values = convert_all(["1", "x", 3], Param("id", "value", int, many=True), ("query", "id"),
                         errors)
    assert values == [1, 3]
    assert [e["loc"] for e in errors] == [["query", "id", 1]]


def test_check_scalar_is_strict_about_json_types():
    errors = []
    assert check_scalar(20, float, ["body"], errors) == 20.0
    assert check_scalar(True, bool, ["body"], errors) is True
    assert errors == []
    for value, kind in [(True, int), ("3", int), (1, bool), (2, str)]:
        assert check_scalar(value, kind, ["body"], errors) is None
    assert [e["type"] for e in errors] == ["int_type", "int_type", "bool_type", "string_type"]


def request_for(query: bytes = b"", path_params=None):
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                    "query_string": query, "path_params": path_params or {}}, receive=None)


def test_fill_parameter_reads_one_value():
    from contextlib import AsyncExitStack
    errors = []
    value = asyncio.run(fill_parameter(Param("limit", "value", int, 10), request_for(b"limit=4"),
                                       {}, AsyncExitStack(), errors))
    assert value == 4 and errors == []


def test_call_injected_answers_422_and_still_notes_the_cleanup():
    async def handler(limit: int):
        raise AssertionError("not called with a bad limit")

    request = request_for(b"limit=ten")
    response = asyncio.run(call_injected(handler, request))
    assert response.status == 422
    assert [fn for fn, args, kwargs in request.after_response] == [close_stack]


@pytest.fixture
def shop():
    app = InjectingBare(name="shop")

    @app.get("/items")
    async def items(limit: int = 10, tags: list[str] = [], flag: bool = False,
                    price: float | None = None, q: str | None = None):
        return {"limit": limit, "tags": tags, "flag": flag, "price": price, "q": q}

    @app.get("/need")
    async def need(q: str):
        return {"q": q}

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request):
        return {"id": item_id, "path": request.path}

    @app.get("/typed/{item_id:int}")
    async def typed(item_id: int):
        return {"id": item_id}

    return app


def test_query_values_and_defaults(shop):
    client = client_for(shop)
    assert client.get("/items").json() == {"limit": 10, "tags": [], "flag": False,
                                           "price": None, "q": None}
    got = client.get("/items?limit=2&tags=a&tags=b&flag=1&price=2.5&q=hi").json()
    assert got == {"limit": 2, "tags": ["a", "b"], "flag": True, "price": 2.5, "q": "hi"}
    assert client.get("/items?limit=1&limit=5").json()["limit"] == 5


def test_the_list_default_is_not_shared(shop):
    client = client_for(shop)
    first = client.get("/items").json()["tags"]
    assert first == [] and client.get("/items").json()["tags"] == []


def test_every_issue_is_reported_as_422(shop):
    response = client_for(shop).get("/items?limit=ten&flag=maybe&price=cheap")
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (["query", "limit"], "int_parsing"), (["query", "flag"], "bool_parsing"),
        (["query", "price"], "float_parsing")]
    missing = client_for(shop).get("/need")
    assert missing.status_code == 422
    assert missing.json()["detail"] == [issue(["query", "q"], "Field required", "missing")]


def test_path_params_are_converted(shop):
    client = client_for(shop)
    assert client.get("/items/42").json() == {"id": 42, "path": "/items/42"}
    bad = client.get("/items/x")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "item_id"]
    assert client.get("/typed/5").json() == {"id": 5}
    assert client.get("/typed/x").status_code == 404       # chapter 08's converter refuses


@dataclass
class Inner:
    n: int


@dataclass
class Item:
    name: str
    price: float
    stock: bool = True
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = None
    inner: Inner | None = None


@pytest.fixture
def body_app():
    app = InjectingBare()

    @app.post("/items")
    async def create(item: Item):
        return {"item": dataclasses.asdict(item), "cls": type(item).__name__}

    return app


def test_body_model(body_app):
    client = client_for(body_app)
    got = client.post("/items", json={"name": "a", "price": 2, "inner": {"n": 1},
                                      "note": None, "extra": 1}).json()
    assert got == {"cls": "Item", "item": {"name": "a", "price": 2.0, "stock": True,
                                           "tags": [], "note": None, "inner": {"n": 1}}}


def test_body_model_issues(body_app):
    client = client_for(body_app)
    response = client.post("/items", json={"price": "2", "stock": 1, "tags": ["x", 3],
                                           "inner": {"n": True}})
    assert response.status_code == 422
    locs = [entry["loc"] for entry in response.json()["detail"]]
    assert locs == [["body", "name"], ["body", "price"], ["body", "stock"],
                    ["body", "tags", 1], ["body", "inner", "n"]]
    not_object = client.post("/items", json=[1, 2])
    assert not_object.status_code == 422
    assert not_object.json()["detail"][0]["type"] == "dict_type"


def test_body_that_is_not_json_is_4xx_not_422(body_app):
    client = client_for(body_app)
    assert client.post("/items", content=b"{", headers={"content-type":
                                                        "application/json"}).status_code == 400
    assert client.post("/items", content=b"x", headers={"content-type":
                                                        "text/plain"}).status_code == 415


def test_dependencies_nest_and_run_once_per_request():
    calls = []

    def settings():
        calls.append("settings")
        return {"max": 50}

    async def paging(page: int = 1, cfg: dict = Depends(settings)):
        calls.append("paging")
        return {"page": page, "max": cfg["max"]}

    app = InjectingBare()

    @app.get("/")
    async def index(p: dict = Depends(paging), cfg: dict = Depends(settings)):
        return p

    client = client_for(app)
    assert client.get("/?page=2").json() == {"page": 2, "max": 50}
    assert calls == ["settings", "paging"]
    bad = client.get("/?page=x")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "page"]
    assert calls == ["settings", "paging", "settings"]      # paging itself was not called


def test_use_cache_false_runs_each_time():
    count = []

    def tick():
        count.append(1)
        return len(count)

    app = InjectingBare()

    @app.get("/")
    async def index(a: int = Depends(tick, use_cache=False),
                    b: int = Depends(tick, use_cache=False)):
        return [a, b]

    assert client_for(app).get("/").json() == [1, 2]


def test_dependency_errors():
    def guard(request: Request):
        if request.headers.get("x-token") != "ok":
            raise HTTPException(401, "no")
        return "u"

    def ids(request: Request):
        return [convert(raw, int, ["query", "id"]) for raw in request.query.getall("id")]

    app = InjectingBare()

    @app.get("/guarded")
    async def guarded(user: str = Depends(guard)):
        return {"user": user}

    @app.get("/ids")
    async def list_ids(found: list = Depends(ids)):
        return found

    client = client_for(app)
    assert client.get("/guarded").status_code == 401
    assert client.get("/guarded", headers={"x-token": "ok"}).json() == {"user": "u"}
    assert client.get("/ids?id=1&id=2").json() == [1, 2]
    assert client.get("/ids?id=z").status_code == 422


def make_yield_app(log):
    async def session():
        log.append("open")
        try:
            yield "s"
            log.append("commit")
        except Exception:
            log.append("rollback")
            raise
        finally:
            log.append("close")

    def sync_resource():
        log.append("sync open")
        yield "r"
        log.append("sync close")

    app = InjectingBare()

    @app.get("/ok")
    async def ok(s: str = Depends(session), r: str = Depends(sync_resource)):
        log.append("handler")
        return {"s": s, "r": r}

    @app.get("/fail")
    async def fail(s: str = Depends(session)):
        raise HTTPException(409, "taken")

    @app.get("/crash")
    async def crash(s: str = Depends(session)):
        raise RuntimeError("bug")

    def logged(scope_app):
        async def wrapped(scope, receive, send):
            async def spy(message):
                if message["type"] == "http.response.body":
                    log.append("sent")
                await send(message)
            await scope_app(scope, receive, spy)
        return wrapped

    return logged(app)


def test_yield_dependencies_clean_up_after_the_response():
    log = []
    client = client_for(make_yield_app(log))
    assert client.get("/ok").json() == {"s": "s", "r": "r"}
    assert log == ["open", "sync open", "handler", "sent", "sync close", "commit", "close"]


def test_yield_dependencies_see_the_handlers_error_after_the_response():
    log = []
    client = client_for(make_yield_app(log))
    assert client.get("/fail").status_code == 409
    assert log == ["open", "sent", "rollback", "close"]
    log.clear()
    response = client.get("/crash")
    assert response.status_code == 500 and "bug" not in response.text
    assert log == ["open", "sent", "rollback", "close"]


def test_cleanup_is_noted_on_the_request_not_run_by_the_endpoint():
    log = []
    app = InjectingBare()

    def resource():
        yield "r"
        log.append("cleanup")

    @app.get("/")
    async def index(r: str = Depends(resource)):
        return {"r": r}

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                       "query_string": b""}, receive=None)
    endpoint = app.routes[0].app
    response = asyncio.run(endpoint(request))
    assert response.status == 200 and log == []
    assert [fn for fn, args, kwargs in request.after_response] == [close_stack]
    fn, args, kwargs = request.after_response[0]
    asyncio.run(fn(*args, **kwargs))
    assert log == ["cleanup"]


def test_a_failing_cleanup_is_logged_and_the_response_stands(caplog):
    app = InjectingBare()

    async def fragile():
        yield "f"
        raise OSError("disk gone")

    @app.get("/")
    async def index(f: str = Depends(fragile)):
        return {"f": f}

    with caplog.at_level("ERROR", logger="bare"):
        response = client_for(app).get("/")
    assert response.status_code == 200 and response.json() == {"f": "f"}
    failures = [r for r in caplog.records if r.name == "bare"]
    assert len(failures) == 1 and "close_stack" in failures[0].getMessage()
    assert isinstance(failures[0].exc_info[1], OSError)


def test_a_naive_handler_would_have_been_a_500():
    from barelab.built.bare import Bare
    naive = Bare()

    @naive.get("/")
    async def index(request):
        return {"limit": int(request.query["limit"])}

    assert client_for(naive).get("/?limit=ten").status_code == 500
    app = InjectingBare()

    @app.get("/")
    async def fixed(limit: int):
        return {"limit": limit}

    assert client_for(app).get("/?limit=ten").status_code == 422

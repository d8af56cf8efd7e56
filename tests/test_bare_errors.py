"""barelab.built.bare_errors (chapter 21): HTTP problems, Accept negotiation, ErrorBare.

In-process tests use chapter 17's TestClient; one test serves an ErrorBare app with
barelab.serve and reads raw bytes, to check the framing on a real socket.
"""

import json
import logging

import pytest

import barelab
from barelab.built.bare import Bare, HTTPException, Response
from barelab.built.bare_errors import (
    BadRequest, Conflict, ErrorBare, Forbidden, HTTPProblem, InternalServerError,
    MethodNotAllowed, NotFound, TooManyRequests, Unauthorized, UnprocessableContent,
    as_problem, handler_for, negotiate, parse_accept, problem_body, render_problem,
    specificity)
from barelab.built.testing import TestClient

OFFERS = ["application/problem+json", "application/json", "text/html", "text/plain"]


class Caught(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def caught():
    logger = logging.getLogger("bare.errors")
    saved, handler = logger.handlers[:], Caught()
    logger.handlers = [handler]
    yield handler
    logger.handlers = saved


class OutOfStock(Conflict):
    type = "https://example.com/problems/out-of-stock"
    title = "Out of stock"


class Declined(Exception):
    pass


def make_app():
    app = ErrorBare(name="errors_test")

    @app.get("/missing/{n:int}")
    async def missing(request):
        raise NotFound(f"no {request.path_params['n']}")

    @app.post("/order")
    async def order(request):
        data = await request.json()
        if data.get("n", 0) <= 0:
            raise UnprocessableContent("n must be positive", field="n")
        raise OutOfStock("none left", available=0)

    @app.get("/slow")
    async def slow(request):
        raise TooManyRequests(30, "later")

    @app.get("/auth")
    async def auth(request):
        raise Unauthorized(realm="api")

    @app.get("/bug")
    async def bug(request):
        return 1 / 0

    @app.get("/declined")
    async def declined(request):
        raise Declined("card declined")

    @app.get("/echo/{text}")
    async def echo(request):
        raise NotFound(f"no {request.path_params['text']}")

    return app


# --- classes -----------------------------------------------------------------------------

@pytest.mark.parametrize("klass, status", [
    (BadRequest, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409),
    (UnprocessableContent, 422), (InternalServerError, 500)])
def test_simple_classes_have_their_status_and_title(klass, status):
    problem = klass()
    assert problem.status == status and isinstance(problem, HTTPException)
    assert problem.type == "about:blank"
    assert problem.detail == problem.title


def test_unprocessable_content_uses_the_rfc_9110_name():
    assert UnprocessableContent().title == "Unprocessable Content"


def test_required_headers_come_from_arguments():
    assert TooManyRequests(5).headers == [("retry-after", "5")]
    assert MethodNotAllowed(["POST", "GET", "GET"]).headers == [("allow", "GET, POST")]
    assert Unauthorized(scheme="Basic", realm="x").headers == [
        ("www-authenticate", 'Basic realm="x"')]
    with pytest.raises(TypeError):
        TooManyRequests()
    with pytest.raises(TypeError):
        MethodNotAllowed()


def test_extra_headers_are_kept_after_the_required_one():
    problem = TooManyRequests(1, headers=[("x-limit", "5")])
    assert problem.headers == [("retry-after", "1"), ("x-limit", "5")]


def test_status_argument_and_bad_status():
    assert HTTPProblem(status=418).title == "I'm a Teapot"
    with pytest.raises(ValueError):
        HTTPProblem(status=200)


def test_problem_body_standard_members_first_and_not_overwritten():
    body = problem_body(NotFound("x", status_code=1, title_extra=2, detail_ok=3), "/p")
    assert list(body)[:5] == ["type", "title", "status", "detail", "instance"]
    clash = HTTPProblem("real", status=404)
    clash.extra = {"status": 200, "more": 1}
    assert problem_body(clash)["status"] == 404 and problem_body(clash)["more"] == 1
    assert "instance" not in problem_body(NotFound())


def test_as_problem_upgrades_by_status_and_keeps_headers():
    upgraded = as_problem(HTTPException(405, "no", [("allow", "GET")]))
    assert type(upgraded) is MethodNotAllowed and upgraded.headers == [("allow", "GET")]
    assert type(as_problem(HTTPException(413))) is HTTPProblem
    assert as_problem(HTTPException(413)).status == 413
    same = NotFound()
    assert as_problem(same) is same


# --- negotiation ---------------------------------------------------------------------------

def test_parse_accept():
    assert parse_accept('text/html;level=1;q=0.5, junk, */*;q=x, a/b;q=2') == [
        ("text/html", {"level": "1"}, 0.5), ("*/*", {}, 0.0), ("a/b", {}, 0.0)]
    assert parse_accept(None) == [] and parse_accept("") == []


def test_specificity_order_and_parameters():
    assert specificity("*/*", {}, "text/html") == 0
    assert specificity("text/*", {}, "text/html") == 1
    assert specificity("text/html", {}, "text/html") == 2
    assert specificity("text/html", {"level": "1"}, "text/html") is None
    assert specificity("text/html", {"level": "1"}, "text/html;level=1") == 3
    assert specificity("image/*", {}, "text/html") is None


@pytest.mark.parametrize("accept, expected", [
    ("text/html, application/json;q=0", "text/html"),      # the naive "json" in accept trap
    ("application/json", "application/json"),
    ("application/problem+json", "application/problem+json"),
    ("*/*", "application/problem+json"),
    ("text/*", "text/html"),
    ("text/html;q=0.5, text/*, */*;q=0.1", "text/plain"),
    ("text/plain, */*;q=0", "text/plain"),
    ("TEXT/PLAIN", "text/plain"),
    ("image/png", None),
    ("*/*;q=0", None),
    (None, "application/problem+json"),
    ("   ", "application/problem+json"),
])
def test_negotiate(accept, expected):
    assert negotiate(accept, OFFERS) == expected


def test_negotiate_default_when_nothing_matches():
    assert negotiate("image/png", OFFERS, default="x") == "x"


def test_render_problem_formats():
    problem = TooManyRequests(30, "later", limit=5)
    as_json = render_problem(problem, "application/json", "/s")
    assert as_json.header("content-type") == "application/json"
    assert json.loads(as_json.body)["limit"] == 5
    assert as_json.header("retry-after") == "30" and as_json.header("vary") == "Accept"
    text = render_problem(problem, "text/plain")
    assert text.body == b"429 Too Many Requests: later\n"
    assert text.header("content-type") == "text/plain; charset=utf-8"
    page = render_problem(NotFound("<b>&"), "text/html").body.decode()
    assert "<b>" not in page and "&lt;b&gt;&amp;" in page
    fallback = render_problem(problem, "image/png")
    assert fallback.header("content-type") == "application/problem+json"


def test_handler_for_walks_the_mro():
    handlers = {Exception: "e", HTTPProblem: "p", Conflict: "c"}
    assert handler_for(handlers, OutOfStock()) == "c"
    assert handler_for(handlers, NotFound()) == "p"
    assert handler_for(handlers, KeyError()) == "e"
    assert handler_for({}, KeyError()) is None


# --- ErrorBare in-process ------------------------------------------------------------------

def test_named_problem_as_problem_json_and_html():
    client = TestClient(make_app())
    response = client.get("/missing/7")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Not Found", "status": 404,
                               "detail": "no 7", "instance": "/missing/7"}
    page = client.get("/missing/7", headers={"Accept": "text/html"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>404 Not Found</h1>" in page.text


def test_extension_members_and_type_uri():
    client = TestClient(make_app())
    body = client.post("/order", json={"n": 1}).json()
    assert body["type"] == "https://example.com/problems/out-of-stock"
    assert body["title"] == "Out of stock" and body["status"] == 409
    assert body["available"] == 0
    assert client.post("/order", json={"n": 0}).json()["field"] == "n"


def test_required_headers_reach_the_client():
    client = TestClient(make_app())
    assert client.get("/slow").headers["retry-after"] == "30"
    assert client.get("/auth").headers["www-authenticate"] == 'Bearer realm="api"'
    assert client.get("/auth").status_code == 401


def test_bare_own_errors_are_upgraded():
    client = TestClient(make_app())
    wrong = client.delete("/missing/1")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, OPTIONS"
    assert wrong.headers["content-type"] == "application/problem+json"
    nowhere = client.get("/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["title"] == "Not Found"
    broken = client.post("/order", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["title"] == "Bad Request"


def test_handlers_registered_on_the_router_404():
    app = make_app()
    seen = []

    @app.exception_handler(NotFound)
    async def not_found(request, error):
        seen.append(type(error).__name__)
        return Response("custom 404\n", 404)

    client = TestClient(app)
    assert client.get("/nowhere").text == "custom 404\n"
    assert client.get("/missing/3").text == "custom 404\n"
    assert seen == ["NotFound", "NotFound"]


def test_bug_is_a_500_without_traceback_and_is_logged(caught):
    client = TestClient(make_app())
    response = client.get("/bug")
    assert response.status_code == 500
    assert "Traceback" not in response.text and "ZeroDivision" not in response.text
    assert response.json()["title"] == "Internal Server Error"
    record = caught.records[-1]
    assert record.getMessage() == "unhandled ZeroDivisionError in GET /bug"
    assert record.exc_info[0] is ZeroDivisionError
    assert "Traceback" in logging.Formatter().formatException(record.exc_info)


def test_domain_error_is_500_until_a_handler_maps_it(caught):
    app = make_app()
    client = TestClient(app)
    assert client.get("/declined").status_code == 500

    @app.exception_handler(Declined)
    async def declined(request, error):
        return render_problem(HTTPProblem(str(error), status=402),
                              request.headers.get("accept"), request.scope["path"])

    response = client.get("/declined")
    assert response.status_code == 402 and response.json()["detail"] == "card declined"


def test_most_specific_handler_wins():
    app = make_app()

    @app.exception_handler(Conflict)
    async def conflict(request, error):
        return Response("conflict\n", 409)

    @app.exception_handler(OutOfStock)
    async def out_of_stock(request, error):
        return Response("out of stock\n", 409)

    assert TestClient(app).post("/order", json={"n": 1}).text == "out of stock\n"


def test_a_failing_handler_becomes_a_logged_500(caught):
    app = make_app()

    @app.exception_handler(NotFound)
    async def broken(request, error):
        raise RuntimeError("handler bug")

    response = TestClient(app).get("/missing/1")
    assert response.status_code == 500 and "handler bug" not in response.text
    assert caught.records[-1].exc_info[0] is RuntimeError


def test_router_405_is_upgraded_with_its_allowed_list():
    from barelab.built import bare
    refused = bare.refusal({"method": "DELETE", "path": "/x"}, {"GET"})
    upgraded = as_problem(refused)
    assert type(upgraded) is MethodNotAllowed
    assert upgraded.allowed == ["GET", "HEAD", "OPTIONS"] == refused.allowed
    assert upgraded.headers == [("allow", "GET, HEAD, OPTIONS")]
    assert type(as_problem(bare.NotFound("x"))) is NotFound
    app = make_app()
    seen = []

    @app.exception_handler(MethodNotAllowed)
    def wrong_method(request, error):              # a plain def works: bare's answer_error
        seen.append(error.allowed)
        return Response("no\n", 405, error.headers)

    response = TestClient(app).delete("/missing/1")
    assert response.status_code == 405 and response.text == "no\n"
    assert seen == [["GET", "HEAD", "OPTIONS"]]


def test_error_bare_uses_bare_hooks_not_its_own_respond():
    assert ErrorBare.respond is Bare.respond
    app = make_app()
    assert app.handler_for(NotFound()) is app.exception_handlers[HTTPProblem]
    with pytest.raises(TypeError):
        app.add_exception_handler("not a class", lambda request, error: None)


def test_answer_error_never_asks_to_reraise(caught):
    import asyncio
    from barelab.built.bare import Request
    app = make_app()
    request = Request({"type": "http", "method": "GET", "path": "/p", "headers": []}, None)
    response, to_raise = asyncio.run(app.answer_error(request, ZeroDivisionError("x")))
    assert response.status == 500 and to_raise is None
    assert caught.records[-1].getMessage() == "unhandled ZeroDivisionError in GET /p"


def test_after_response_callbacks_run_after_error_answers(caught):
    app = make_app()
    done = []

    @app.get("/audited")
    async def audited(request):
        request.call_after_response(done.append, "after")
        raise NotFound("never")

    @app.get("/audited-bug")
    async def audited_bug(request):
        request.call_after_response(done.append, "after bug")
        return 1 / 0

    client = TestClient(app)
    assert client.get("/audited").status_code == 404
    assert client.get("/audited-bug").status_code == 500
    assert done == ["after", "after bug"]


def test_head_has_no_body():
    response = TestClient(make_app()).head("/missing/7")
    assert response.status_code == 404 and response.content == b""


def test_html_escapes_the_detail():
    page = TestClient(make_app()).get("/echo/%3Cscript%3E", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_plain_bare_still_understands_problems():
    app = Bare(name="plain")

    @app.get("/")
    async def home(request):
        raise TooManyRequests(9)

    response = TestClient(app).get("/")
    assert response.status_code == 429 and response.headers["retry-after"] == "9"


def test_the_response_started_then_failing_is_still_raised():
    from barelab.built.bare import StreamingResponse
    app = ErrorBare(name="stream")

    async def chunks():
        yield b"a"
        raise RuntimeError("mid-stream")

    @app.get("/")
    async def home(request):
        return StreamingResponse(chunks())

    with pytest.raises(RuntimeError):
        TestClient(app).get("/").content


# --- on a socket ---------------------------------------------------------------------------

def test_served_by_barelab(caught):
    with barelab.serve(make_app(), name="errors_socket") as server:
        raw = barelab.raw_exchange(
            server, b"GET /bug HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n"
                    b"Connection: close\r\n\r\n").received
        assert raw.startswith(b"HTTP/1.1 500 ")
        assert b"Traceback" not in raw and b"ZeroDivision" not in raw
        assert raw.endswith(b"500 Internal Server Error: "
                            b"The server failed to answer this request.\n")
        problem = barelab.http_request(server, "GET", "/slow")
        assert problem.status == 429 and problem.header("retry-after") == "30"
    assert caught.records[-1].exc_info[0] is ZeroDivisionError

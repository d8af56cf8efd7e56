"""Tests of barelab.built.wsgi_middleware, the middleware of chapter 07.

Every app and every stack runs with ``wsgiref.validate.validator`` on both sides of each
layer (``compose(..., between=validator)``), so each test also checks that the layer keeps
PEP 3333 as an app towards its server and as a server towards its app. An autouse fixture
fails any test after which the validator's iterator wrapper was garbage collected without
being closed: that is how a dropped ``close()`` shows up. Browser behaviour is checked with
``browser_cors_check`` (the Fetch standard's "CORS check"); streaming over a real socket with
``barelab.serve``.
"""

from __future__ import annotations

import base64
import gc
import logging
import socket
import sys
import time
from contextlib import contextmanager
from functools import partial
from wsgiref.validate import validator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import barelab
from barelab.built import wsgi_middleware as mw
from barelab.built.wsgi_middleware import (
    CORS, BasicAuth, ClosingIterator, RequestID, RequestLogger, RequestRecord, ResponseTimer,
    add_vary, browser_cors_check, compose, header_values, is_exempt, parse_basic,
    request_path, without)

APP = "https://app.example"
ADMIN = "https://admin.example"
EVIL = "https://evil.example"


# -- fixtures and small apps -----------------------------------------------------------------

@contextmanager
def unraisables():
    """Collect exceptions raised where nobody can catch them, such as in __del__: the
    validator's IteratorWrapper raises there when close() was never called."""
    caught = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: caught.append(unraisable.exc_value)
    try:
        yield caught
    finally:
        sys.unraisablehook = previous


@pytest.fixture(scope="module", autouse=True)
def module_unraisables():
    with unraisables() as caught:
        yield caught
        gc.collect()  # once, at the end: wrappers caught in reference cycles show up here
    assert not caught, f"an iterator was never closed: {caught!r}"


@pytest.fixture(autouse=True)
def no_unclosed_iterators(module_unraisables):
    before = len(module_unraisables)
    yield
    assert len(module_unraisables) == before, \
        f"an iterator was never closed: {module_unraisables[before:]!r}"


def test_the_fixture_notices_a_dropped_close():
    def drops_close(app):
        return lambda environ, start_response: map(bytes.upper, app(environ, start_response))

    with unraisables() as caught:
        barelab.call_wsgi(lint(text_app(), drops_close))
        gc.collect()
    assert any("without being closed" in str(exc) for exc in caught)


def lint(app, *layers):
    return compose(app, *layers, between=validator)


def text_app(body=b"hello\n", headers=()):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")] + list(headers))
        return [body]
    return app


def notes(environ, start_response):
    body = environ.get("REMOTE_USER", "anonymous").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


class Tracked:
    """A body that counts its close() calls and can be told to fail."""

    def __init__(self, chunks=(b"a", b"b"), fail_at=None, close_raises=False):
        self.chunks, self.fail_at, self.close_raises = list(chunks), fail_at, close_raises
        self.closes, self.taken = 0, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_at is not None and self.taken == self.fail_at:
            raise RuntimeError("boom in the body")
        if self.taken >= len(self.chunks):
            raise StopIteration
        self.taken += 1
        return self.chunks[self.taken - 1]

    def close(self):
        self.closes += 1
        if self.close_raises:
            raise OSError("close failed")


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- compose and header helpers --------------------------------------------------------------

def tagging(tag):
    def layer(app):
        def middleware(environ, start_response):
            environ.setdefault("test.order", []).append(tag)
            return app(environ, start_response)
        return middleware
    return layer


def test_compose_lists_layers_outermost_first():
    seen = {}

    def app(environ, start_response):
        seen["order"] = environ["test.order"]
        return text_app()(environ, start_response)

    barelab.call_wsgi(lint(app, tagging("A"), tagging("B"), tagging("C")))
    assert seen["order"] == ["A", "B", "C"]


def test_compose_between_wraps_the_app_and_every_layer():
    wrapped = []

    def spy(app):
        wrapped.append(app)
        return app

    compose(text_app(), tagging("A"), tagging("B"), between=spy)
    assert len(wrapped) == 3


def test_compose_without_layers_is_the_app():
    app = text_app()
    assert compose(app) is app


def test_header_helpers_ignore_case():
    headers = [("Vary", "a"), ("vary", "b"), ("X", "1")]
    assert header_values(headers, "VARY") == ["a", "b"]
    assert without(headers, "vAry") == [("X", "1")]


# -- ClosingIterator -------------------------------------------------------------------------

def test_closing_iterator_forwards_lazily():
    produced = []

    def gen():
        for chunk in (b"1", b"2", b"3"):
            produced.append(chunk)
            yield chunk

    wrapper = ClosingIterator(gen())
    assert next(wrapper) == b"1" and produced == [b"1"]
    assert list(wrapper) == [b"2", b"3"]
    wrapper.close()


def test_closing_iterator_closes_inner_exactly_once():
    body = Tracked()
    wrapper = ClosingIterator(body)
    assert list(wrapper) == [b"a", b"b"]
    wrapper.close()
    wrapper.close()
    assert body.closes == 1


def test_closing_iterator_runs_callbacks_even_when_inner_close_raises():
    body, ran = Tracked(close_raises=True), []
    wrapper = ClosingIterator(body, on_close=[lambda: ran.append(1), lambda: ran.append(2)])
    with pytest.raises(OSError):
        wrapper.close()
    assert ran == [1, 2] and body.closes == 1
    wrapper.close()  # already closed: nothing runs again
    assert ran == [1, 2] and body.closes == 1


def test_closing_iterator_runs_every_callback_and_raises_the_first_error():
    ran = []

    def fail(message):
        raise ValueError(message)

    wrapper = ClosingIterator([b"x"], on_close=[lambda: fail("first"), lambda: ran.append(1),
                                               lambda: fail("second"), lambda: ran.append(2)])
    with pytest.raises(ValueError, match="first"):
        wrapper.close()
    assert ran == [1, 2]


def test_closing_iterator_records_an_iteration_error_and_still_closes():
    body = Tracked(fail_at=1)
    wrapper = ClosingIterator(body)
    assert next(wrapper) == b"a"
    with pytest.raises(RuntimeError):
        next(wrapper)
    assert isinstance(wrapper.error, RuntimeError)
    wrapper.close()
    assert body.closes == 1


def test_closing_iterator_closes_when_iter_fails():
    class NotIterable:
        closed = False

        def __iter__(self):
            raise TypeError("cannot iterate")

        def close(self):
            NotIterable.closed = True

    with pytest.raises(TypeError):
        ClosingIterator(NotIterable())
    assert NotIterable.closed


def test_closing_iterator_transform_and_on_chunk():
    seen = []
    wrapper = ClosingIterator([b"ab", b"cd"], transform=bytes.upper, on_chunk=seen.append)
    assert list(wrapper) == [b"AB", b"CD"] and seen == [b"AB", b"CD"]
    wrapper.close()  # a list has no close(): fine


def test_closing_iterator_runs_a_generators_finally_on_early_close():
    cleanups = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"one"
            yield b"two"
        finally:
            cleanups.append("done")

    stack = lint(app, lambda inner: lambda e, s: ClosingIterator(inner(e, s)))
    body = stack(barelab.build_environ(), lambda status, headers, exc_info=None: None)
    assert next(iter(body)) == b"one"
    body.close()
    assert cleanups == ["done"]  # at close(), not whenever the garbage collector runs


# -- RequestLogger ---------------------------------------------------------------------------

def test_request_path_reencodes_for_a_log_line():
    environ = barelab.build_environ(path="/a%0ab%20c/é?x=1%0a")
    assert request_path(environ) == "/a%0Ab%20c/%C3%A9?x=1%0a"
    assert "\n" not in request_path(environ)


def test_logger_records_each_field():
    records = []
    stack = lint(text_app(b"12345"), partial(RequestLogger, records=records))
    barelab.call_wsgi(stack, "POST", "/things?x=1")
    (record,) = records
    assert (record.method, record.path, record.status, record.bytes) == ("POST", "/things?x=1",
                                                                         200, 5)
    assert record.error is None and record.request_id is None
    assert "POST /things?x=1 200 5 bytes" in str(record)


def test_logger_times_until_close_not_until_return():
    def slow(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        for chunk in (b"a", b"b", b"c"):
            time.sleep(0.05)
            yield chunk

    logger = RequestLogger(lint(slow))
    body = lint(logger)(barelab.build_environ(), lambda s, h, e=None: None)
    assert logger.records == []  # nothing written before the response is finished
    assert list(body) == [b"a", b"b", b"c"]
    time.sleep(0.05)
    body.close()
    assert logger.records[0].duration >= 0.2 and logger.records[0].bytes == 3


def test_logger_counts_write_bytes():
    def pusher(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"pushed ")
        return [b"and yielded"]

    logger = RequestLogger(lint(pusher))
    call = barelab.call_wsgi(lint(logger))
    assert call.body == b"pushed and yielded"
    assert logger.records[0].bytes == len(call.body)


def test_logger_records_an_app_that_raises_and_reraises():
    def broken(environ, start_response):
        raise ZeroDivisionError

    logger = RequestLogger(lint(broken))
    call = barelab.call_wsgi(lint(logger), raise_errors=False)
    assert isinstance(call.exception, ZeroDivisionError)
    assert logger.records[0].status is None and logger.records[0].error == "ZeroDivisionError"


def test_logger_records_an_error_during_iteration():
    def breaks_later(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise KeyError("gone")

    logger = RequestLogger(lint(breaks_later))
    barelab.call_wsgi(lint(logger), raise_errors=False)
    record = logger.records[0]
    assert (record.status, record.bytes, record.error) == (200, 7, "KeyError")


def test_logger_keeps_the_final_status_after_exc_info():
    logger = RequestLogger(lint(fragile))
    call = barelab.call_wsgi(lint(logger))
    assert call.status.startswith("500") and logger.records[0].status == 500


def test_logger_writes_to_a_logging_logger(caplog):
    log = logging.getLogger("barelab.test.access")
    stack = lint(text_app(), partial(RequestLogger, logger=log))
    with caplog.at_level(logging.INFO, logger="barelab.test.access"):
        barelab.call_wsgi(stack, path="/x")
    assert any("GET /x 200 6 bytes" in message for message in caplog.messages)


def test_record_str_shows_missing_status_as_dash():
    record = RequestRecord("GET", "/", None, 0, 0.001, "abc", "KeyError")
    assert str(record) == "GET / - 0 bytes 1.0 ms id=abc error=KeyError"


# -- start_response: exc_info and write pass through every layer --------------------------------

def fragile(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ConnectionError("db")
    except ConnectionError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                       sys.exc_info())
        return [b"sorry"]


def pusher(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"via write")
    return []


ALL_LAYERS = [RequestLogger, RequestID, ResponseTimer, partial(CORS, origins=[APP]),
              partial(BasicAuth, users={"ada": "pw"}, exempt=["/"])]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda l: getattr(l, "func", l).__name__)
def test_every_layer_passes_exc_info_on(layer):
    call = barelab.call_wsgi(lint(fragile, layer), headers={"Origin": APP})
    assert call.status == "500 Internal Server Error" and call.body == b"sorry"


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda l: getattr(l, "func", l).__name__)
def test_every_layer_returns_write(layer):
    assert barelab.call_wsgi(lint(pusher, layer)).body == b"via write"


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda l: getattr(l, "func", l).__name__)
def test_every_layer_closes_the_body_once(layer):
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(Tracked())
        return bodies[-1]

    call = barelab.call_wsgi(lint(app, layer), headers={"Origin": APP})
    assert call.body == b"ab" and bodies[0].closes == 1


# -- ResponseTimer ---------------------------------------------------------------------------

def test_server_timing_header_is_added_beside_the_apps():
    app = text_app(headers=[("Server-Timing", "db;dur=1")])
    call = barelab.call_wsgi(lint(app, ResponseTimer))
    values = header_values(call.headers, "Server-Timing")
    assert values[0] == "db;dur=1"
    metric, duration = values[1].split(";dur=")
    assert metric == "app" and float(duration) >= 0


def test_x_response_time_replaces_the_apps():
    app = text_app(headers=[("X-Response-Time", "stale")])
    call = barelab.call_wsgi(lint(app, partial(ResponseTimer, header="X-Response-Time")))
    (value,) = header_values(call.headers, "X-Response-Time")
    assert value.endswith("ms") and float(value[:-2]) >= 0


def test_timer_measures_time_to_headers():
    def slow(environ, start_response):
        time.sleep(0.1)
        return text_app()(environ, start_response)

    value = barelab.call_wsgi(lint(slow, ResponseTimer)).header("Server-Timing")
    assert float(value.split(";dur=")[1]) >= 100


def test_timer_returns_the_body_untouched():
    body = [b"x"]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    assert ResponseTimer(app)(barelab.build_environ(), lambda *a: None) is body


@pytest.mark.parametrize("kwargs", [{"header": "X-Timing"}, {"metric": "a b"},
                                    {"metric": ""}])
def test_timer_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        ResponseTimer(text_app(), **kwargs)


# -- RequestID -------------------------------------------------------------------------------

def echo_id(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Request-ID", "app-set")])
    return [environ["barelab.request_id"].encode()]


def test_request_id_made_with_uuid4_hex_when_none_came():
    ids = set()
    for _ in range(3):
        call = barelab.call_wsgi(lint(echo_id, RequestID))
        (value,) = header_values(call.headers, "X-Request-ID")  # the app's own is replaced
        assert len(value) == 32 and int(value, 16) >= 0 and call.body == value.encode()
        ids.add(value)
    assert len(ids) == 3


def test_request_id_honours_a_valid_incoming_one():
    call = barelab.call_wsgi(lint(echo_id, RequestID), headers={"X-Request-ID": "abc-1.2_3"})
    assert call.header("X-Request-ID") == "abc-1.2_3" and call.body == b"abc-1.2_3"


@pytest.mark.parametrize("incoming", ["", "a,b", "x\r\nSet-Cookie: a=1", "a b", "x" * 129,
                                      "é"])
def test_request_id_replaces_an_invalid_incoming_one(incoming):
    call = barelab.call_wsgi(lint(echo_id, RequestID), headers={"X-Request-ID": incoming})
    value = call.header("X-Request-ID")
    assert value != incoming and len(value) == 32 and call.body == value.encode()


def test_request_id_can_ignore_incoming_ones():
    call = barelab.call_wsgi(lint(echo_id, partial(RequestID, trust_incoming=False)),
                             headers={"X-Request-ID": "chosen"})
    assert call.header("X-Request-ID") != "chosen"


def test_logger_outside_request_id_records_the_id():
    records = []
    stack = lint(echo_id, partial(RequestLogger, records=records), RequestID)
    call = barelab.call_wsgi(stack)
    assert records[0].request_id == call.header("X-Request-ID")


# -- browser_cors_check and add_vary ---------------------------------------------------------

@pytest.mark.parametrize("headers, origin, credentials, ok", [
    ([("Access-Control-Allow-Origin", APP)], APP, False, True),
    ([("Access-Control-Allow-Origin", "*")], APP, False, True),
    ([("Access-Control-Allow-Origin", "*")], APP, True, False),
    ([("Access-Control-Allow-Origin", APP)], APP, True, False),
    ([("Access-Control-Allow-Origin", APP), ("Access-Control-Allow-Credentials", "true")],
     APP, True, True),
    ([("Access-Control-Allow-Origin", f"{APP}, {ADMIN}")], APP, False, False),
    ([("Access-Control-Allow-Origin", APP), ("Access-Control-Allow-Origin", ADMIN)], APP,
     False, False),
    ([("Access-Control-Allow-Origin", APP + "/")], APP, False, False),
    ([], APP, False, False),
])
def test_browser_cors_check(headers, origin, credentials, ok):
    assert (browser_cors_check(headers, origin, credentials) == "ok") is ok


@pytest.mark.parametrize("headers, expected", [
    ([], [("Vary", "Origin")]),
    ([("Vary", "Accept-Encoding")], [("Vary", "Accept-Encoding, Origin")]),
    ([("vary", "ORIGIN")], [("vary", "ORIGIN")]),
    ([("Vary", "*")], [("Vary", "*")]),
    ([("Vary", "")], [("Vary", "Origin")]),
    ([("Vary", "a"), ("Vary", "origin")], [("Vary", "a"), ("Vary", "origin")]),
])
def test_add_vary(headers, expected):
    original = list(headers)
    assert add_vary(headers, "Origin") == expected
    assert headers == original  # a new list; the caller's is untouched


# -- CORS: plain requests --------------------------------------------------------------------

def cors(**kwargs):
    kwargs.setdefault("origins", [APP, ADMIN])
    return partial(CORS, **kwargs)


@pytest.mark.parametrize("origin", [APP, ADMIN])
def test_cors_echoes_the_one_origin_that_matched(origin):
    call = barelab.call_wsgi(lint(text_app(), cors()), headers={"Origin": origin})
    assert header_values(call.headers, "Access-Control-Allow-Origin") == [origin]
    assert "Origin" in call.header("Vary")
    assert browser_cors_check(call.headers, origin) == "ok"


@pytest.mark.parametrize("headers", [{"Origin": EVIL}, {}, {"Origin": "null"},
                                     {"Origin": APP + "/"}, {"Origin": APP.upper()}])
def test_cors_grants_nothing_but_still_varies_for_other_requests(headers):
    call = barelab.call_wsgi(lint(text_app(), cors()), headers=headers)
    assert call.header("Access-Control-Allow-Origin") is None
    assert call.header("Vary") == "Origin"


def test_cors_merges_vary_with_the_apps():
    app = text_app(headers=[("Vary", "Accept-Encoding")])
    call = barelab.call_wsgi(lint(app, cors()), headers={"Origin": APP})
    assert header_values(call.headers, "Vary") == ["Accept-Encoding, Origin"]


def test_cors_replaces_cors_headers_the_app_set():
    app = text_app(headers=[("Access-Control-Allow-Origin", "*"),
                            ("Access-Control-Allow-Credentials", "false")])
    call = barelab.call_wsgi(lint(app, cors(credentials=True)), headers={"Origin": APP})
    assert header_values(call.headers, "Access-Control-Allow-Origin") == [APP]
    assert header_values(call.headers, "Access-Control-Allow-Credentials") == ["true"]
    assert browser_cors_check(call.headers, APP, credentials=True) == "ok"


def test_cors_without_an_origin_list_sends_star_and_no_vary():
    for headers in ({}, {"Origin": EVIL}):
        call = barelab.call_wsgi(lint(text_app(), cors(origins="*")), headers=headers)
        assert call.header("Access-Control-Allow-Origin") == "*"
        assert call.header("Vary") is None
        assert call.header("Access-Control-Allow-Credentials") is None


def test_cors_exposes_headers_only_on_granted_responses():
    stack = lint(text_app(), cors(expose=["X-Request-ID", "Server-Timing"]))
    granted = barelab.call_wsgi(stack, headers={"Origin": APP})
    refused = barelab.call_wsgi(stack, headers={"Origin": EVIL})
    assert granted.header("Access-Control-Expose-Headers") == "X-Request-ID, Server-Timing"
    assert refused.header("Access-Control-Expose-Headers") is None


@pytest.mark.parametrize("origins", [[APP + "/"], ["https://App.example"], ["null"], ["*.example"],
                                     [APP + "/path"], ["app.example"], [f"{APP}, {ADMIN}"]])
def test_cors_refuses_what_is_not_an_origin(origins):
    with pytest.raises(ValueError, match="not an origin"):
        CORS(text_app(), origins)


def test_cors_accepts_ports_and_ipv6_and_a_single_string():
    stack = lint(text_app(), cors(origins="http://[::1]:8080"))
    call = barelab.call_wsgi(stack, headers={"Origin": "http://[::1]:8080"})
    assert call.header("Access-Control-Allow-Origin") == "http://[::1]:8080"
    CORS(text_app(), ["http://localhost:3000"])


def test_cors_refuses_star_with_credentials():
    with pytest.raises(ValueError, match="credentials"):
        CORS(text_app(), "*", credentials=True)


@pytest.mark.parametrize("kwargs", [{"methods": ["*"]}, {"headers": ["*"]},
                                    {"headers": ["bad header"]}, {"expose": ["a,b"]}])
def test_cors_refuses_wildcards_and_non_tokens_in_lists(kwargs):
    with pytest.raises(ValueError):
        CORS(text_app(), [APP], **kwargs)


@settings(max_examples=150, deadline=None, database=None)
@given(allowed=st.sets(st.sampled_from([APP, ADMIN, EVIL, "http://a.test:8000"]), min_size=1),
       origin=st.none() | st.sampled_from([APP, ADMIN, EVIL, "http://a.test:8000", "null",
                                           "https://other.test"]),
       credentials=st.booleans())
def test_cors_property_one_origin_or_nothing_and_always_vary(allowed, origin, credentials):
    stack = lint(text_app(), cors(origins=sorted(allowed), credentials=credentials))
    call = barelab.call_wsgi(stack, headers={"Origin": origin} if origin else {})
    granted = header_values(call.headers, "Access-Control-Allow-Origin")
    assert granted == ([origin] if origin in allowed else [])
    assert "Origin" in call.header("Vary")
    if origin:
        verdict = browser_cors_check(call.headers, origin, credentials)
        assert (verdict == "ok") is (origin in allowed)


class VaryCache:
    """A shared cache keyed on the URL plus the request headers named in Vary."""

    def __init__(self, app):
        self.app, self.store = app, {}

    def __call__(self, environ, start_response):
        url = environ["PATH_INFO"]
        entry = self.store.get(url)
        if entry is None or entry[3] != self.varied(entry[1], environ):
            got = []
            body = self.app(environ, lambda s, h, e=None: got.extend([s, h]))
            try:
                data = b"".join(body)
            finally:
                body.close()
            entry = self.store[url] = (got[0], got[1], data, self.varied(got[1], environ))
        start_response(entry[0], entry[1])
        return [entry[2]]

    @staticmethod
    def varied(headers, environ):
        names = [n.strip() for v in header_values(headers, "Vary") for n in v.split(",")]
        return tuple(environ.get("HTTP_" + n.upper().replace("-", "_")) for n in names if n)


def test_a_vary_respecting_cache_serves_each_origin_its_own_grant():
    stack = lint(text_app(), VaryCache, cors())
    for origin in (None, APP, ADMIN, EVIL, APP):
        call = barelab.call_wsgi(stack, headers={"Origin": origin} if origin else {})
        if origin in (APP, ADMIN):
            assert browser_cors_check(call.headers, origin) == "ok", origin
        else:
            assert call.header("Access-Control-Allow-Origin") is None


# -- CORS: preflights ------------------------------------------------------------------------

def preflight(app, origin=APP, method="DELETE", asked=None):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if asked is not None:
        headers["Access-Control-Request-Headers"] = asked
    return barelab.call_wsgi(app, "OPTIONS", "/notes", headers=headers)


def never_called(environ, start_response):
    raise AssertionError("the app must not see a preflight")


def test_preflight_is_answered_204_without_calling_the_app():
    stack = lint(never_called, cors(methods=["GET", "DELETE"], headers=["Authorization"],
                                    credentials=True, max_age=120))
    call = preflight(stack, asked="authorization")
    assert call.status == "204 No Content" and call.body == b""
    assert call.header("Content-Type") is None and call.header("Content-Length") is None
    assert call.header("Access-Control-Allow-Origin") == APP
    assert call.header("Access-Control-Allow-Methods") == "GET, DELETE"
    assert call.header("Access-Control-Allow-Headers") == "authorization"
    assert call.header("Access-Control-Max-Age") == "120"
    assert call.header("Access-Control-Allow-Credentials") == "true"
    assert call.header("Vary") == "Origin"
    assert browser_cors_check(call.headers, APP, credentials=True) == "ok"


@pytest.mark.parametrize("origin, method, asked, reason", [
    (EVIL, "DELETE", None, "origin"),
    (APP, "PUT", None, "method"),
    (APP, "delete", None, "method"),  # method names are case-sensitive (Fetch)
    (APP, "DELETE", "x-debug", "header"),
    (APP, "DELETE", "authorization, x-debug", "header"),
])
def test_refused_preflight_is_a_403_that_says_why(origin, method, asked, reason):
    stack = lint(never_called, cors(methods=["GET", "DELETE"], headers=["Authorization"]))
    call = preflight(stack, origin, method, asked)
    assert call.status_code == 403 and reason in call.text
    assert call.header("Access-Control-Allow-Origin") is None
    assert call.header("Vary") == "Origin" and call.header("Content-Type").startswith("text/")


def test_preflight_for_a_safelisted_method_needs_no_listing():
    call = preflight(lint(never_called, cors(methods=["DELETE"])), method="POST")
    assert call.status_code == 204


def test_preflight_request_headers_match_in_any_case_and_spacing():
    stack = lint(never_called, cors(headers=["Authorization", "Content-Type"]))
    call = preflight(stack, method="GET", asked=" Content-Type ,AUTHORIZATION,")
    assert call.status_code == 204


def test_options_without_request_method_goes_to_the_app():
    call = barelab.call_wsgi(lint(text_app(b"options!"), cors()), "OPTIONS", "/",
                             headers={"Origin": APP})
    assert call.body == b"options!" and call.header("Access-Control-Allow-Origin") == APP


def test_star_preflight_grants_star_without_vary():
    call = preflight(lint(never_called, cors(origins="*", methods=["DELETE"])), origin=EVIL)
    assert call.status_code == 204 and call.header("Access-Control-Allow-Origin") == "*"
    assert call.header("Vary") is None


# -- BasicAuth -------------------------------------------------------------------------------

def test_parse_basic():
    token = base64.b64encode("ada:a:b".encode()).decode()
    assert parse_basic(f"Basic {token}") == ("ada", "a:b")
    assert parse_basic(f"BASIC   {token}") == ("ada", "a:b")
    assert parse_basic(f"Basic {base64.b64encode(b':').decode()}") == ("", "")
    for bad in (None, "", "Basic", "Basic !!!", f"Bearer {token}", f"Basic {token}x",
                "Basic " + base64.b64encode(b"no colon").decode(),
                "Basic " + base64.b64encode(b"\xff:\xfe").decode()):
        assert parse_basic(bad) is None, bad


AUTH = partial(BasicAuth, users={"ada": "lovelace", "zoë": "pässword"}, exempt=["/health"])


def test_missing_credentials_get_a_401_with_a_challenge():
    call = barelab.call_wsgi(lint(notes, AUTH), path="/notes")
    assert call.status == "401 Unauthorized"
    assert call.header("WWW-Authenticate") == 'Basic realm="barelab", charset="UTF-8"'
    assert call.header("Content-Type").startswith("text/plain")
    assert int(call.header("Content-Length")) == len(call.body)


@pytest.mark.parametrize("headers", [
    basic("ada", "wrong"), basic("nobody", "lovelace"), basic("ADA", "lovelace"),
    basic("ada", "lovelace "), {"Authorization": "Basic garbage"},
    {"Authorization": "Bearer " + base64.b64encode(b"ada:lovelace").decode()},
])
def test_bad_credentials_get_a_401(headers):
    assert barelab.call_wsgi(lint(notes, AUTH), headers=headers).status_code == 401


@pytest.mark.parametrize("user, password", [("ada", "lovelace"), ("zoë", "pässword")])
def test_good_credentials_reach_the_app_with_remote_user(user, password):
    call = barelab.call_wsgi(lint(notes, AUTH), headers=basic(user, password))
    assert call.status == "200 OK" and call.text == user


def test_unknown_users_are_compared_too(monkeypatch):
    calls = []
    real = mw.hmac.compare_digest
    monkeypatch.setattr(mw.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for headers in (basic("nobody", "x"), basic("ada", "x"), {}):
        barelab.call_wsgi(lint(notes, AUTH), headers=headers)
    assert len(calls) == 3


@pytest.mark.parametrize("path, open_", [
    ("/health", True), ("/health/db", True), ("/healthz", False), ("/notes", False),
    ("/health/../notes", False), ("/health/./x", False), ("/", False),
])
def test_exempt_paths(path, open_):
    call = barelab.call_wsgi(lint(notes, AUTH), path=path)
    assert (call.status_code == 200) is open_
    assert is_exempt(path, ["/health"]) is open_


def test_percent_encoded_dot_segments_are_not_exempt():
    # The server decodes %2e%2e to ".." in PATH_INFO, so the check sees it.
    assert barelab.call_wsgi(lint(notes, AUTH), path="/health/%2e%2e/notes").status_code == 401


@pytest.mark.parametrize("kwargs", [{"realm": 'a"b'}, {"realm": "a\\b"}, {"realm": "é"},
                                    {"users": {"a:b": "x"}}, {"exempt": ["health"]}])
def test_basic_auth_refuses_bad_settings(kwargs):
    settings_ = {"users": {"ada": "x"}, **kwargs}
    with pytest.raises(ValueError):
        BasicAuth(notes, **settings_)


# -- stacks: the order matters -----------------------------------------------------------------

API_CORS = cors(methods=["GET", "DELETE"], headers=["Authorization"], credentials=True)
API_AUTH = partial(BasicAuth, users={"ada": "lovelace"})


def test_auth_outside_cors_turns_preflights_away():
    call = preflight(lint(notes, API_AUTH, API_CORS), asked="authorization")
    assert call.status_code == 401
    assert browser_cors_check(call.headers, APP, credentials=True) != "ok"


def test_cors_outside_auth_answers_preflights_and_grants_the_401():
    stack = lint(notes, API_CORS, API_AUTH)
    assert preflight(stack, asked="authorization").status_code == 204
    call = barelab.call_wsgi(stack, headers={"Origin": APP})
    assert call.status_code == 401
    assert browser_cors_check(call.headers, APP, credentials=True) == "ok"


def test_only_the_outer_logger_sees_the_401s():
    inner, outer = [], []
    stack = lint(notes, partial(RequestLogger, records=outer), API_CORS, API_AUTH,
                 partial(RequestLogger, records=inner))
    for headers in ({}, basic("ada", "no"), basic("ada", "lovelace")):
        barelab.call_wsgi(stack, headers=headers)
    assert [r.status for r in outer] == [401, 401, 200]
    assert [r.status for r in inner] == [200]


# -- over a real socket ----------------------------------------------------------------------

def tick_times(server, path, headers):
    fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n"
    seen, times = b"", {}
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        start = time.perf_counter()
        sock.sendall(request.encode())
        while data := sock.recv(65536):
            seen += data
            for n in (1, 2, 3):
                if b"tick %d" % n in seen:
                    times.setdefault(n, time.perf_counter() - start)
    return times, seen


def test_full_stack_served_streams_closes_and_logs():
    cleanups, records = [], []

    def site(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            for n in (1, 2, 3):
                if n > 1:
                    time.sleep(0.15)
                yield b"tick %d\n" % n
        finally:
            cleanups.append("closed")

    stack = lint(site, partial(RequestLogger, records=records), RequestID, ResponseTimer,
                 API_CORS, API_AUTH)
    with barelab.serve(stack, name="test-wsgi-middleware") as server:
        times, raw = tick_times(server, "/ticks", {"Origin": APP, **basic("ada", "lovelace")})
        assert set(times) == {1, 2, 3}
        assert times[3] - times[1] > 0.2, f"the ticks arrived together: {times}"
        assert b"access-control-allow-origin: " + APP.encode() in raw.lower()
        reply = barelab.http_request(server, "GET", "/ticks")
        assert reply.status == 401 and reply.header("X-Request-ID")
        server.log.settle()
        deadline = time.monotonic() + 2
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert cleanups == ["closed"]
    assert [r.status for r in records] == [200, 401]
    assert records[0].bytes == 21 and records[0].duration > 0.25

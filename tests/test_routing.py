"""Tests of barelab.built.routing, the router of chapter 08.

Unit tests pin each rule the chapter states to what the router does: what each converter
accepts, that literal parts are escaped and the whole path must match, which mistakes are
refused when a route is added, 404 vs 405 with a sorted Allow, HEAD and OPTIONS, mounts on a
segment boundary with SCRIPT_NAME/PATH_INFO moved as PEP 3333 describes, and 400 for a path
that is not UTF-8. Every in-process call goes through ``wsgiref.validate.validator``, so a
PEP 3333 violation anywhere fails the test. Property tests check that ``url_for`` and
matching are inverses: for random ints and strings, the handler gets back the values
``url_for`` was given, or ``url_for`` refuses with ValueError exactly when no request could
carry the value. A few tests go over a real socket with barelab's server.
"""

from __future__ import annotations

import os
import uuid
import warnings
from wsgiref.validate import validator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barelab
from barelab.built.routing import (
    CONVERTERS, ROUTING_ARGS, Converter, IntConverter, Mount, PathConverter, Route, Router,
    StrConverter, UUIDConverter, allowed_methods, compile_template, decode_path, drop_body,
    forward, parse_template, route_params, text_response, unreachable_reason)

FAST = settings(max_examples=int(os.environ.get("ROUTING_EXAMPLES", "300")), deadline=None,
                database=None, suppress_health_check=[HealthCheck.too_slow])


def echo(environ, start_response):
    """A handler that answers with what it was given: method, SCRIPT_NAME, PATH_INFO, params."""
    text = (f"{environ['REQUEST_METHOD']} {environ.get('SCRIPT_NAME', '')!r} "
            f"{environ.get('PATH_INFO', '')!r} {route_params(environ)!r}")
    return text_response(start_response, 200, text)


def call(app, method="GET", path="/", **kwargs):
    """Call ``app`` in-process through wsgiref's validator; any warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return barelab.call_wsgi(validator(app), method, path, **kwargs)


@pytest.fixture
def site():
    router = Router()
    router.add("/", echo, name="home")
    router.add("/users/{id:int}", echo, name="show_user")
    router.add("/users/{id:int}", echo, methods=["PUT", "DELETE"], name="change_user")
    router.add("/users/{id:int}/posts/{slug}", echo, name="show_post")
    router.add("/files/{name:path}", echo, name="file")
    router.add("/things/{key:uuid}", echo, name="thing")
    router.add("/submit", echo, methods=["POST"], name="submit")
    return router


# -- converters --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("0", 0), ("7", 7), ("42", 42), ("10", 10),
                                         ("9" * 30, int("9" * 30))])
def test_int_accepts_canonical_ascii_digits(text, value):
    route = Route("/n/{n:int}", echo)
    assert route.match(f"/n/{text}") == {"n": value}


@pytest.mark.parametrize("text", ["007", "00", "-7", "+7", "7.0", "1_000", " 7", "٤٢", "７",
                                  "", "0x10"])
def test_int_refuses_other_spellings(text):
    assert Route("/n/{n:int}", echo).match(f"/n/{text}") is None


def test_int_beyond_pythons_digit_limit_is_no_match_not_an_error():
    assert Route("/n/{n:int}", echo).match("/n/1" + "0" * 5000) is None


def test_str_is_one_nonempty_segment():
    route = Route("/u/{name}", echo)
    assert route.match("/u/ada lovelace") == {"name": "ada lovelace"}
    assert route.match("/u/a/b") is None
    assert route.match("/u/") is None


def test_path_takes_the_rest_but_never_a_leading_slash():
    route = Route("/static/{file:path}", echo)
    assert route.match("/static/css/site.css") == {"file": "css/site.css"}
    assert route.match("/static//etc/passwd") is None
    assert route.match("/static/") is None


def test_path_in_the_middle_of_a_template():
    route = Route("/repo/{tree:path}/edit", echo)
    assert route.match("/repo/a/b/c/edit") == {"tree": "a/b/c"}


def test_uuid_is_canonical_lowercase_and_becomes_a_uuid():
    key = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    route = Route("/t/{key:uuid}", echo)
    assert route.match(f"/t/{key}") == {"key": key}
    assert route.match(f"/t/{str(key).upper()}") is None
    assert route.match(f"/t/{key.hex}") is None
    assert route.url(key=key) == f"/t/{key}"


def test_converter_regexes_are_what_the_chapter_shows():
    assert {name: c.regex for name, c in CONVERTERS.items()} == {
        "str": r"[^/]+", "int": r"0|[1-9][0-9]*", "path": r"[^/].*",
        "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"}
    assert isinstance(CONVERTERS["str"], StrConverter)
    assert isinstance(CONVERTERS["int"], IntConverter)
    assert isinstance(CONVERTERS["path"], PathConverter)
    assert isinstance(CONVERTERS["uuid"], UUIDConverter)


def test_a_custom_converter_plugs_in():
    class Upper(Converter):
        regex = r"[A-Z]+"

        def to_python(self, text):
            return text.lower()

    router = Router(converters={"upper": Upper()})
    router.add("/c/{code:upper}", echo)
    assert call(router, "GET", "/c/ABC").text.endswith("{'code': 'abc'}")
    assert call(router, "GET", "/c/abc").status_code == 404


# -- templates ---------------------------------------------------------------------------------

def test_literal_parts_are_escaped():
    route = Route("/files/v1.0/{name}", echo)
    assert route.match("/files/v1.0/readme") == {"name": "readme"}
    assert route.match("/files/v1x0/readme") is None
    regex = compile_template(parse_template("/a+b/(c)/[d]/{x}"))
    assert regex.fullmatch("/a+b/(c)/[d]/1")
    assert not regex.fullmatch("/aab/c/d/1")


def test_the_whole_path_must_match():
    route = Route("/users/{name}", echo)
    assert route.match("/users/ada/delete") is None
    assert route.match("/x/users/ada") is None


def test_int_group_alternation_does_not_leak_into_the_pattern():
    route = Route("/a/{n:int}/b", echo)
    assert route.match("/a/0/b") == {"n": 0}
    assert route.match("/a/0") is None
    assert route.match("/a/1") is None


@pytest.mark.parametrize("template, words", [
    ("/users/{id:integer}", ["unknown converter 'integer'", "int, path, str, uuid"]),
    ("/users/{id:}", ["unknown converter ''"]),
    ("/users/{id", ["unbalanced brace"]),
    ("/users/id}", ["unbalanced brace"]),
    ("/users/{{id}}", ["unbalanced brace"]),
    ("/users/{}", ["Python identifier"]),
    ("/users/{user id}", ["Python identifier"]),
    ("/users/{1st}", ["Python identifier"]),
    ("/a/{x}/b/{x:int}", ["appears twice"]),
    ("/{name}{ext}", ["touch"]),
    ("users/{id}", ["must start with '/'"]),
    ("", ["must start with '/'"]),
])
def test_bad_templates_fail_when_the_route_is_added(template, words):
    router = Router()
    with pytest.raises(ValueError) as error:
        router.add(template, echo)
    for word in words:
        assert word in str(error.value)
    assert router.entries == []


def test_unknown_converter_error_lists_custom_converters_too():
    router = Router(converters={"slug": StrConverter()})
    with pytest.raises(ValueError, match="int, path, slug, str, uuid"):
        router.add("/x/{s:sluggy}", echo)


def test_parse_template_parts():
    parts = parse_template("/users/{id:int}/posts/{slug}")
    assert parts[0] == "/users/" and parts[2] == "/posts/"
    assert parts[1] == ("id", CONVERTERS["int"]) and parts[3] == ("slug", CONVERTERS["str"])
    assert parse_template("/{name}.{ext}")[1:] == [("name", CONVERTERS["str"]), ".",
                                                   ("ext", CONVERTERS["str"])]


# -- methods, names, order ---------------------------------------------------------------------

def test_methods_are_upper_cased_and_get_brings_head():
    assert allowed_methods(["get", "post"]) == {"GET", "HEAD", "POST"}
    assert allowed_methods(["DELETE"]) == {"DELETE"}


@pytest.mark.parametrize("methods, error", [("GET", TypeError), ([], ValueError),
                                            (["GE T"], ValueError), (["GET:"], ValueError)])
def test_bad_methods_are_refused(methods, error):
    with pytest.raises(error):
        allowed_methods(methods)


def test_explicit_route_names_must_be_unique():
    router = Router()
    router.add("/a", echo, name="a")
    with pytest.raises(ValueError, match="already named 'a'"):
        router.add("/b", echo, name="a")
    router.add("/b", echo, name="b")
    assert router.url_for("b") == "/b"


def test_a_function_name_used_twice_is_ambiguous_not_an_error():
    router = Router()
    router.add("/", echo)
    router.add("/index.html", echo)
    router.add("/v1", validator(echo))
    router.add("/v2", validator(echo))          # both are functions named lint_app
    with pytest.raises(LookupError, match="several routes"):
        router.url_for("echo")
    with pytest.raises(LookupError, match="several routes"):
        router.url_for("lint_app")
    assert call(router, "GET", "/index.html").status_code == 200
    assert call(router, "GET", "/v2").status_code == 200


def test_a_literal_route_behind_a_parameter_route_is_refused():
    router = Router()
    router.add("/users/{name}", echo, name="user")
    with pytest.raises(ValueError, match="can never be reached.*'/users/{name}'"):
        router.add("/users/me", echo, name="me")
    assert len(router.entries) == 1 and "me" not in router.names


def test_other_methods_are_not_shadowed():
    router = Router()
    router.add("/users/{name}", echo, name="user")
    router.add("/users/me", echo, methods=["DELETE"], name="delete_me")
    assert call(router, "DELETE", "/users/me").text.startswith("DELETE")
    assert call(router, "GET", "/users/me").text.endswith("{'name': 'me'}")


def test_a_route_behind_a_mount_is_refused():
    router = Router()
    router.mount("/api", echo)
    with pytest.raises(ValueError, match="mount at '/api'"):
        router.add("/api/users", echo)
    router.add("/apiary", echo)            # not below the mount: fine


def test_declaration_order_wins():
    router = Router()
    router.add("/users/me", echo, name="me")
    router.add("/users/{name}", echo, name="user")
    assert call(router, "GET", "/users/me").text.endswith("{}")
    assert call(router, "GET", "/users/ada").text.endswith("{'name': 'ada'}")


def test_unreachable_reason_is_none_for_templates_with_parameters():
    earlier = [Route("/users/{name}", echo)]
    assert unreachable_reason(earlier, Route("/users/{id:int}", echo)) is None


def test_decorator_returns_the_handler():
    router = Router()

    @router.route("/x", methods=["GET", "POST"])
    def handler(environ, start_response):
        return text_response(start_response, 200, "x")

    assert callable(handler) and handler.__name__ == "handler"
    assert call(router, "POST", "/x").text == "x"


# -- dispatch: 200, 404, 405, HEAD, OPTIONS, 400 -------------------------------------------------

def test_params_arrive_in_wsgiorg_routing_args(site):
    reply = call(site, "GET", "/users/7/posts/hello%20world")
    assert reply.status_code == 200
    assert reply.text == "GET '' '/users/7/posts/hello world' {'id': 7, 'slug': 'hello world'}"


def test_routing_args_keeps_what_an_outer_dispatcher_put_there():
    router = Router()

    def show(environ, start_response):
        return text_response(start_response, 200, repr(environ[ROUTING_ARGS]))

    router.add("/{b}", show)
    reply = call(router, "GET", "/two", environ={ROUTING_ARGS: (("x",), {"a": 1})})
    assert reply.text == "(('x',), {'a': 1, 'b': 'two'})"


def test_the_callers_environ_is_not_changed(site):
    environ = barelab.build_environ("GET", "/users/7")
    seen = []
    site(environ, lambda status, headers, exc_info=None: seen.append(status))
    assert seen == ["200 OK"] and ROUTING_ARGS not in environ


@pytest.mark.parametrize("path", ["/nope", "/users/007", "/users/7/", "/users/", "/users",
                                  "/files/", "/files//etc/passwd", "//", "/users/7/posts"])
def test_unknown_paths_are_404(site, path):
    reply = call(site, "GET", path)
    assert reply.status_code == 404 and reply.header("Allow") is None


def test_wrong_method_is_405_with_sorted_allow(site):
    reply = call(site, "POST", "/users/7")
    assert reply.status_code == 405
    assert reply.header("Allow") == "DELETE, GET, HEAD, OPTIONS, PUT"
    reply = call(site, "GET", "/submit")
    assert reply.status_code == 405 and reply.header("Allow") == "OPTIONS, POST"


def test_methods_are_case_sensitive(site):
    environ = barelab.build_environ("GET", "/users/7")
    environ["REQUEST_METHOD"] = "get"
    statuses = []
    site(environ, lambda status, headers, exc_info=None: statuses.append((status, headers)))
    assert statuses[0][0] == "405 Method Not Allowed"


def test_head_is_served_by_the_get_handler_and_the_body_is_dropped(site):
    seen = []

    def show(environ, start_response):
        seen.append(environ["REQUEST_METHOD"])
        return echo(environ, start_response)

    router = Router()
    router.add("/users/{id:int}", show)
    reply = call(router, "HEAD", "/users/7")
    get = call(router, "GET", "/users/7")
    assert seen == ["HEAD", "GET"]
    assert reply.status_code == 200 and reply.body == b""
    assert int(reply.header("Content-Length")) == len(get.body) + 1   # "HEAD" vs "GET"


def test_head_body_is_dropped_for_generators_and_close_is_called():
    events = []

    def lazy(environ, start_response):
        try:
            yield b""
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
            events.append("started")
            yield b"hello"
            events.append("second chunk")     # never reached for HEAD
            yield b"never"
        finally:
            events.append("closed")

    router = Router()
    router.add("/g", lazy)
    reply = call(router, "HEAD", "/g")
    assert reply.status == "200 OK" and reply.body == b""
    assert events == ["started", "closed"]


def test_head_write_callable_sends_nothing():
    def legacy(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written")
        return [b"returned"]

    router = Router()
    router.add("/w", legacy)
    assert call(router, "HEAD", "/w").body == b""
    assert call(router, "GET", "/w").body == b"writtenreturned"


def test_head_refusals_have_no_body(site):
    for path, status in (("/nope", 404), ("/submit", 405), ("/users/%FF", 400)):
        reply = call(site, "HEAD", path)
        assert reply.status_code == status and reply.body == b""
        assert reply.header("Content-Length") not in (None, "0")


def test_head_through_a_mount_has_no_body():
    router = Router()
    router.mount("/m", echo)
    reply = call(router, "HEAD", "/m/x")
    assert reply.status_code == 200 and reply.body == b""


def test_forward_leaves_other_methods_alone():
    result = ["a"]
    assert forward(lambda environ, start_response: result, {"REQUEST_METHOD": "GET"}, None) \
        is result
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    assert drop_body(Body([b"x", b"y"])) == [] and closed == [True]


def test_head_is_not_added_to_routes_without_get(site):
    reply = call(site, "HEAD", "/submit")
    assert reply.status_code == 405 and reply.header("Allow") == "OPTIONS, POST"


def test_options_answers_204_with_allow_and_no_body(site):
    reply = call(site, "OPTIONS", "/users/7")
    assert reply.status_code == 204 and reply.body == b""
    assert reply.header("Allow") == "DELETE, GET, HEAD, OPTIONS, PUT"
    assert reply.header("Content-Length") is None and reply.header("Content-Type") is None
    assert call(site, "OPTIONS", "/nope").status_code == 404


def test_an_explicit_options_route_wins():
    router = Router()
    router.add("/x", echo, methods=["OPTIONS"])
    assert call(router, "OPTIONS", "/x").status_code == 200


def test_options_asterisk_is_204():
    environ = barelab.build_environ("OPTIONS", "/")
    environ["PATH_INFO"] = "*"
    statuses = []
    Router()(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["204 No Content"]


@pytest.mark.parametrize("path", ["/users/%FF", "/%C0%AF", "/posts/%ED%A0%80"])
def test_a_path_that_is_not_utf8_is_400(site, path):
    assert call(site, "GET", path).status_code == 400


def test_routes_match_the_decoded_utf8_path():
    router = Router()
    router.add("/café/{name}", echo)
    reply = call(router, "GET", "/caf%C3%A9/cr%C3%A8me")
    assert reply.status_code == 200 and reply.text.endswith("{'name': 'crème'}")
    assert router.url_for("echo", name="crème") == "/caf%C3%A9/cr%C3%A8me"


def test_encoded_slash_is_a_slash_in_path_info(site):
    assert call(site, "GET", "/users/7/posts/a%2Fb").status_code == 404
    assert call(site, "GET", "/files/a%2Fb").text.endswith("{'name': 'a/b'}")


def test_empty_path_info_is_the_root(site):
    reply = call(site, "GET", "/", environ={"PATH_INFO": ""})
    assert reply.status_code == 200


def test_handler_result_is_returned_untouched_so_close_reaches_it():
    closed = []

    class Body:
        def __iter__(self):
            yield b"streamed"

        def close(self):
            closed.append(True)

    def handler(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    router = Router()
    router.add("/s", handler)
    reply = call(router, "GET", "/s")
    assert reply.body == b"streamed" and closed == [True]


# -- mounts ------------------------------------------------------------------------------------

@pytest.fixture
def mounted():
    router = Router()
    router.mount("/api", echo)
    router.add("/apiary", echo, name="bees")
    return router


@pytest.mark.parametrize("path, script_name, path_info", [
    ("/api", "/api", ""), ("/api/", "/api", "/"), ("/api/users/7", "/api", "/users/7"),
    ("/api//x", "/api", "//x")])
def test_mount_moves_the_prefix_to_script_name(mounted, path, script_name, path_info):
    reply = call(mounted, "GET", path)
    assert reply.text == f"GET {script_name!r} {path_info!r} {{}}"


@pytest.mark.parametrize("path", ["/apiary", "/api-docs", "/apix/users", "/ap"])
def test_mount_does_not_match_a_longer_word(mounted, path):
    reply = call(mounted, "GET", path)
    assert "'/api'" not in reply.text
    assert reply.status_code == (200 if path == "/apiary" else 404)


def test_mount_appends_to_an_existing_script_name(mounted):
    reply = call(mounted, "GET", "/api/x", environ={"SCRIPT_NAME": "/outer"})
    assert reply.text == "GET '/outer/api' '/x' {}"


def test_mount_takes_every_method(mounted):
    assert call(mounted, "PATCH", "/api/x").text.startswith("PATCH")


def test_a_mount_behind_a_mount_is_refused():
    router = Router()
    router.mount("/api", echo)
    with pytest.raises(ValueError, match="mount at '/api' takes it"):
        router.mount("/api/v1", echo)
    router.mount("/apiv1", echo)          # a different word: fine
    inner_first = Router()
    inner_first.mount("/api/v1", echo)
    inner_first.mount("/api", echo)       # the longer prefix first: both reachable
    assert call(inner_first, "GET", "/api/v1/x").text == "GET '/api/v1' '/x' {}"
    assert call(inner_first, "GET", "/api/v2").text == "GET '/api' '/v2' {}"


def test_nested_routers():
    inner = Router()
    inner.add("/", echo, name="root")
    inner.add("/users/{id:int}", echo, name="user")
    outer = Router()
    outer.mount("/v1", inner)
    assert call(outer, "GET", "/v1").text == "GET '/v1' '' {}"
    assert call(outer, "GET", "/v1/users/3").text == "GET '/v1' '/users/3' {'id': 3}"
    assert call(outer, "GET", "/v1/users/x").status_code == 404
    assert call(outer, "POST", "/v1/users/3").status_code == 405


def test_non_ascii_mount_prefix_and_non_utf8_paths_below_it():
    router = Router()
    router.mount("/café", echo)
    reply = call(router, "GET", "/caf%C3%A9/%FF")
    raw_prefix = "/café".encode().decode("latin-1")
    assert reply.text == f"GET {raw_prefix!r} {'/' + chr(0xFF)!r} {{}}"


@pytest.mark.parametrize("prefix", ["api", "/api/", "/", "/{x}", ""])
def test_bad_mount_prefixes(prefix):
    with pytest.raises(ValueError):
        Mount(prefix, echo)


def test_mount_split():
    mount = Mount("/api", echo)
    assert [mount.split(p) for p in ("/api", "/api/a", "/apiary", "/", "")] == \
        ["", "/a", None, None, None]


# -- url_for -----------------------------------------------------------------------------------

def test_url_for(site):
    assert site.url_for("show_user", id=7) == "/users/7"
    assert site.url_for("show_post", id=7, slug="a b?#") == "/users/7/posts/a%20b%3F%23"
    assert site.url_for("file", name="css/site css") == "/files/css/site%20css"
    assert site.url_for("home") == "/"


@pytest.mark.parametrize("name, params, error", [
    ("nope", {}, LookupError),
    ("show_user", {}, TypeError),
    ("show_user", {"id": 1, "extra": 2}, TypeError),
    ("show_user", {"id": -1}, ValueError),
    ("show_user", {"id": "7"}, ValueError),
    ("show_user", {"id": True}, ValueError),
    ("show_post", {"id": 1, "slug": "a/b"}, ValueError),
    ("show_post", {"id": 1, "slug": ""}, ValueError),
    ("show_post", {"id": 1, "slug": ".."}, ValueError),
    ("show_post", {"id": 1, "slug": "."}, ValueError),
    ("file", {"name": "/etc/passwd"}, ValueError),
    ("file", {"name": "a/../b"}, ValueError),
    ("thing", {"key": "not-a-uuid"}, ValueError),
])
def test_url_for_refuses_what_could_not_come_back(site, name, params, error):
    with pytest.raises(error):
        site.url_for(name, **params)


def test_url_for_name_is_positional_only_so_a_param_may_be_called_name(site):
    assert site.url_for("file", name="a") == "/files/a"


segment_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=20)


@FAST
@given(user_id=st.integers(min_value=0, max_value=10**30), slug=segment_text)
def test_url_for_then_match_gives_back_the_same_params(user_id, slug):
    router = Router()
    router.add("/users/{id:int}/posts/{slug}", echo, name="post")
    try:
        url = router.url_for("post", id=user_id, slug=slug)
    except ValueError:
        assert slug in ("", ".", "..") or "/" in slug
        return
    reply = call(router, "GET", url)
    assert reply.status_code == 200, (url, reply.status)
    assert reply.text.endswith(repr({"id": user_id, "slug": slug})), (url, reply.text)


@FAST
@given(parts=st.lists(segment_text.filter(lambda s: s not in ("", ".", "..") and "/" not in s),
                      min_size=1, max_size=4))
def test_path_params_round_trip(parts):
    router = Router()
    router.add("/files/{name:path}", echo, name="file")
    value = "/".join(parts)
    reply = call(router, "GET", router.url_for("file", name=value))
    assert reply.text.endswith(repr({"name": value}))


@FAST
@given(st.integers(min_value=-10**6, max_value=10**6))
def test_int_urls_are_canonical(number):
    route = Route("/n/{n:int}", echo)
    if number < 0:
        with pytest.raises(ValueError):
            route.url(n=number)
    else:
        assert route.match(route.url(n=number)) == {"n": number}
        assert route.match("/n/0" + str(number)) is None


def test_decode_path():
    assert decode_path("/caf\xc3\xa9") == "/café"
    assert decode_path("/\xff") is None
    assert decode_path("") == "/"
    assert decode_path("/\u20ac") is None       # not latin-1: a server broke PEP 3333


# -- over a real socket ------------------------------------------------------------------------

@pytest.fixture
def server(site):
    site.mount("/api", echo)
    running = barelab.serve(validator(site), name="test_routing")
    yield running
    running.stop()


def test_over_the_network(server):
    assert barelab.http_request(server, "GET", "/users/7").status == 200
    not_found = barelab.http_request(server, "GET", "/apiary")
    assert not_found.status == 404
    wrong = barelab.http_request(server, "POST", "/users/7")
    assert wrong.status == 405 and wrong.header("Allow") == "DELETE, GET, HEAD, OPTIONS, PUT"
    mounted = barelab.http_request(server, "GET", "/api/x%20y")
    assert mounted.text == "GET '/api' '/x y' {}"
    assert barelab.http_request(server, "GET", "/users/%FF").status == 400
    assert server.log.errors == []


def test_head_under_wsgiref_has_no_body(site):
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    httpd = make_server("127.0.0.1", 0, site, handler_class=Quiet)
    worker = threading.Thread(target=httpd.handle_request, daemon=True)
    worker.start()
    try:
        exchange = barelab.raw_exchange(f"http://127.0.0.1:{httpd.server_port}/",
                                        b"HEAD /users/7 HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        worker.join(timeout=5)
        httpd.server_close()
    head, _, body = exchange.received.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and body == b""


def test_head_over_the_network_has_headers_and_no_body(server):
    exchange = barelab.raw_exchange(
        server, b"HEAD /users/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = exchange.received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: " in head and body == b""


def test_url_for_round_trip_over_the_network(server, site):
    for slug in ["café crème", "a?b#c", "100%", "x+y", "日本語"]:
        url = site.url_for("show_post", id=12, slug=slug)
        reply = barelab.http_request(server, "GET", url)
        assert reply.text.endswith(repr({"id": 12, "slug": slug})), (url, reply.text)

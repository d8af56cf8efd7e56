"""barelab.logs: a server's own log, safe across threads and shown on request."""

import threading
import time

from barelab.logs import ServerLog


def test_entries_render_as_text_and_html_with_tracebacks():
    log = ServerLog()
    assert "nothing logged" in str(log) and "nothing logged" in log._repr_html_()
    log.request(("127.0.0.1", 5000), "GET", "/x?y=1", "1.1", 200, 12, 0.0015)
    try:
        raise ValueError("bad <thing>")
    except ValueError as exc:
        log.error("app failed", exc)
    log.info("stopped")
    assert [e.kind for e in log.entries] == ["request", "error", "info"]
    assert '127.0.0.1:5000 "GET /x?y=1 HTTP/1.1" 200 12B 1.5ms' in str(log)
    assert "ValueError: bad <thing>" in log.errors[0].details
    html = log._repr_html_()
    assert "bad &lt;thing&gt;" in html and "<details>" in html
    assert len(log) == 3 and log.requests[0].status == 200
    log.clear()
    assert len(log) == 0


def test_log_is_bounded():
    log = ServerLog(maxlen=3)
    for n in range(10):
        log.info(str(n))
    assert [e.message for e in log.entries] == ["7", "8", "9"]


def test_settle_waits_for_requests_in_flight():
    log = ServerLog()
    assert log.settle(timeout=0.01)  # nothing in flight: at once
    entered = threading.Event()

    def answer():
        with log.in_flight():
            entered.set()
            time.sleep(0.05)
            log.request(None, "GET", "/", "1.1", 200, 0, 0.05)

    worker = threading.Thread(target=answer)
    worker.start()
    entered.wait(1)
    assert log.settle(timeout=2)
    assert len(log.requests) == 1  # the entry is there once settle returns
    worker.join()


def test_settle_gives_up_after_its_timeout():
    log = ServerLog()
    with log.in_flight():
        started = time.perf_counter()
        assert not log.settle(timeout=0.05)
        assert time.perf_counter() - started < 0.5

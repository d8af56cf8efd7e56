"""Requests per second of chapter 06's WSGIServer next to barelab's engine, wsgiref and
gunicorn's sync worker, all in one run. Not a test: read the ratios, not the numbers.

    python benchmarks/wsgi_servers.py [--seconds 3] [--connections 8]

Each server runs the app in benchmarks/wsgi_bench_app.py in its own process; the load comes
from this process, over N keep-alive connections driven by asyncio. A server that closes the
connection after a response (gunicorn's sync worker always does, and says so with
``Connection: close``) is reconnected to, and that response counts like any other: the cost
of the new connection is part of what that server charges per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, wait_until_listening  # noqa: E402  (benchmarks/serving.py)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

IN_PROCESS = {  # servers started by a small script; {port} is filled in
    "course WSGIServer": '''
        import barelab
        from barelab.built.wsgi_server import WSGIServer
        barelab.serve(app, port={port}, server=WSGIServer)
    ''',
    "barelab WSGIEngine": '''
        import barelab
        barelab.serve(app, port={port})
    ''',
    "wsgiref (threading)": '''
        import threading
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
        class Quiet(WSGIRequestHandler):
            def log_message(self, *args): pass
        class Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True
        httpd = make_server("127.0.0.1", {port}, app, server_class=Threading, handler_class=Quiet)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ''',
}


def server_command(label: str, port: int) -> list[str]:
    if label == "gunicorn sync (-w 1)":
        return [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "--chdir", str(BENCH),
                "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi_bench_app:app"]
    script = ("import sys\nsys.path.insert(0, %r)\nfrom wsgi_bench_app import app\n" % str(BENCH)
              + textwrap.dedent(IN_PROCESS[label]).replace("{port}", str(port))
              + "sys.stdin.read()\n")
    return [sys.executable, "-c", script]


class Tally:
    def __init__(self):
        self.responses = self.connections = self.errors = 0


async def read_response(reader) -> bool:
    """Read one response; True if the server said it will close the connection."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    if not head.startswith((b"http/1.1 200 ", b"http/1.0 200 ")):
        raise RuntimeError(f"unexpected response: {head[:60]!r}")
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        raise RuntimeError("the benchmark app always sends Content-Length")
    length = int(head[start + 17:head.find(b"\r\n", start + 2)])
    await reader.readexactly(length)
    if head.startswith(b"http/1.0"):     # wsgiref answers HTTP/1.0: closes unless it says not
        return b"\r\nconnection: keep-alive" not in head
    return b"\r\nconnection: close" in head


async def one_client(port: int, request: bytes, deadline: float, tally: Tally) -> None:
    while time.perf_counter() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        tally.connections += 1
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                closing = await read_response(reader)
                tally.responses += 1
                if closing:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            tally.errors += 1            # closed without saying so: reconnect, count it
        finally:
            writer.close()


async def load(port: int, request: bytes, seconds: float, connections: int) -> tuple[float, Tally]:
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, request, started + seconds, tally)
                           for _ in range(connections)))
    return tally.responses / (time.perf_counter() - started), tally


def measure(label: str, cases: dict, seconds: float, connections: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(server_command(label, port), stdin=subprocess.PIPE, cwd=ROOT)
    try:
        wait_until_listening(port, proc)
        asyncio.run(load(port, cases["hello GET"], 0.3, connections))   # warm up
        return {case: asyncio.run(load(port, request, seconds, connections))
                for case, request in cases.items()}
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    body = b"x" * 65536
    cases = {
        "hello GET": b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
        "64 KiB POST": b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                       b"application/octet-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    }
    labels = [*IN_PROCESS, "gunicorn sync (-w 1)"]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{args.connections} client connections, {args.seconds:g} s per case\n")
    results = {}
    for label in labels:
        results[label] = measure(label, cases, args.seconds, args.connections)
        for case, (rate, tally) in results[label].items():
            print(f"  {label:22} {case:12} {rate:8.0f} req/s   "
                  f"({tally.connections} connections, {tally.errors} unannounced closes)")
    print("\nratios, course WSGIServer / other (same run; above 1 means the course server is faster):")
    for case in cases:
        ours = results["course WSGIServer"][case][0]
        ratios = "   ".join(f"{label}: {ours / results[label][case][0]:.2f}"
                           for label in labels[1:])
        print(f"  {case:12} {ratios}")


if __name__ == "__main__":
    main()

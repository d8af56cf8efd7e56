"""`make lab` starts JupyterLab on notebooks/, and its proxy reaches barelab servers.

Under Binder/JupyterHub a server link is ``{prefix}proxy/{port}/``, answered by
jupyter-server-proxy inside the very Jupyter server `make lab` starts. This test starts it
as a learner would, then fetches a barelab server through that proxy.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import barelab
from jupyterlab_ui import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "barelab-test-token"


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


@pytest.fixture(scope="module")
def lab():
    port = free_port()
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={TOKEN} "
            f"--ServerApp.port_retries=0")
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                fetch(base + "api/status", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read().decode(errors="replace")
                    pytest.fail(f"JupyterLab did not start:\n{output[-3000:]}")
                time.sleep(0.25)
        yield base
    finally:
        stop_process_group(proc)


def test_make_lab_serves_jupyterlab_on_the_notebooks(lab):
    status, body = fetch(lab + "api/contents")
    names = {item["name"] for item in json.loads(body)["content"]}
    assert status == 200
    assert "01_frameworks_are_callables.ipynb" in names, "lab should open on notebooks/"
    status, body = fetch(lab + "lab")
    assert status == 200 and b"JupyterLab" in body


def test_server_links_work_through_jupyter_server_proxy(lab, monkeypatch):
    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"through the proxy: " + environ["PATH_INFO"].encode("latin-1")]

    with barelab.serve(hello, name="proxied") as server:
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/")
        assert server.link == f"/proxy/{server.port}/"
        status, body = fetch(lab.rstrip("/") + server.link + "deep/path")
    assert status == 200
    assert body == b"through the proxy: /deep/path"  # /proxy/<port>/ strips its prefix


def test_websockets_work_through_jupyter_server_proxy(lab, monkeypatch):
    """A chat page under Binder opens ``wss://…/proxy/<port>/ws``: the proxy must upgrade."""
    async def echo(scope, receive, send):
        assert scope["type"] == "websocket"
        await receive()                                       # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo: " + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})

    with barelab.serve(echo, name="proxied-ws", lifespan="off") as server:
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/")
        url = lab.replace("http://", "ws://").rstrip("/") + server.link + "ws"
        client = barelab.websocket_connect(url, headers={"Authorization": f"token {TOKEN}"})
        with client:
            client.send_text("hello")
            assert client.receive() == "echo: hello"
            client.send_bytes(b"\x00\x01\xff")
            assert client.receive() == b"\xff\x01\x00"
        assert client.closed
    assert "/ws" in str(server.log), "the request reached the app through the proxy"

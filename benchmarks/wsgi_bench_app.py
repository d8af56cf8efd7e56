"""The app every server in benchmarks/wsgi_servers.py serves (gunicorn imports it by name).

GET answers a five-byte "hello"; POST reads the whole body and answers its size.
"""


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        size = len(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        body = b"%d" % size
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

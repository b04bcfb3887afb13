"""Whole objects by signed GETs, against a real S3 API on loopback (moto's server): the
bytes s3fs wrote, None for an absent object, several threads at once, and an endpoint that
went away as one error that names it and leaks no signature."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipekit.objects import LocalObjects, S3Objects, _proxy_for, open_objects
from pipekit.uri import storage_failure


def test_objects_from_s3_are_the_bytes_written(s3) -> None:
    blobs = {f"c/{i}/0": os.urandom(1000 + 97 * i) for i in range(12)}
    for name, data in blobs.items():
        s3.pipe_file(f"voxelflex/objects/arr/{name}", data)
    reader = open_objects("s3://voxelflex/objects/arr")
    assert isinstance(reader, S3Objects)
    assert reader.get("c/0/0") == blobs["c/0/0"]
    assert reader.get("c/99/0") is None  # absent, as a chunk never written
    with ThreadPoolExecutor(4) as pool:  # the loader fetches several at once
        got = dict(zip(blobs, pool.map(reader.get, blobs), strict=True))
    assert got == blobs
    reader.close()


def test_local_objects(tmp_path) -> None:
    (tmp_path / "c" / "0").mkdir(parents=True)
    (tmp_path / "c" / "0" / "0").write_bytes(b"abc")
    reader = open_objects(f"file://{tmp_path}")
    assert isinstance(reader, LocalObjects)
    assert reader.get("c/0/0") == b"abc" and reader.get("c/1/0") is None


def test_an_endpoint_that_went_away_is_a_network_error(monkeypatch) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(key, value)
    reader = S3Objects("s3://gone/arr")
    assert reader.get("c/0/0") is None  # the bucket does not exist: nothing there
    server.stop()
    with pytest.raises(ConnectionError) as err:
        reader.get("c/0/0")
    text = str(err.value)
    assert f"{host}:{port}" in text and "s3://gone/arr/c/0/0" in text
    assert "Signature" not in text  # the signed URL is a credential
    assert storage_failure(err.value, "")[0].startswith("the storage service did not answer")


def test_the_proxy_is_the_environments_unless_no_proxy_names_the_host(monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lab:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _proxy_for("http://minio.lab:9000", None) == "http://proxy.lab:3128"
    monkeypatch.setenv("NO_PROXY", "minio.lab")
    assert _proxy_for("http://minio.lab:9000", None) is None
    assert _proxy_for("http://minio.lab:9000", {"http": "http://p:1"}) == "http://p:1"


def test_urls_are_signed_as_awss_worked_example(monkeypatch) -> None:
    """The signature AWS's S3 API reference works out for its query-string (SigV4) example
    (GET examplebucket/test.txt, 2013-05-24T00:00:00Z, 86,400 s, its example keys): the
    settings come through fsspec's config, as `storage_options` puts them there."""
    import datetime

    import botocore.auth
    from fsspec.config import conf

    import pipekit.objects

    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    example = {
        "key": "AKIAIOSFODNN7EXAMPLE",
        "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    monkeypatch.setitem(conf, "s3", example)
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: datetime.datetime(2013, 5, 24)
    )
    monkeypatch.setattr(pipekit.objects, "URL_EXPIRES_S", 86400)
    url = S3Objects("s3://examplebucket")._url("test.txt")
    assert url.startswith("https://examplebucket.s3.amazonaws.com/test.txt?")
    assert url.endswith(
        "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


class _Refusing:
    """An HTTP endpoint on loopback answering every GET with one status and S3's XML error,
    counting the requests."""

    def __init__(self, status: int, code: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = f"<Error><Code>{code}</Code></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.mark.parametrize(
    ("status", "code", "error", "tries", "meaning"),
    [
        (403, "AccessDenied", PermissionError, 2, "permission denied"),  # signed again, once
        (503, "SlowDown", ConnectionError, 3, "the storage service did not answer"),  # retried
    ],
)
def test_refusals_are_named_after_the_clients_attempts(
    monkeypatch, status, code, error, tries, meaning
) -> None:
    endpoint = _Refusing(status, code)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(key, value)
    reader = S3Objects("s3://bkt/arr")
    with pytest.raises(error) as err:
        reader.get("c/0/0")
    endpoint.server.shutdown()
    assert f"HTTP {status} ({code}) reading s3://bkt/arr/c/0/0" in str(err.value)
    assert endpoint.requests == tries
    assert storage_failure(err.value, "")[0].startswith(meaning)

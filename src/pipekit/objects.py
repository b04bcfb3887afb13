"""Many small whole objects under one base URI, read at little CPU per object: the chunks of
a packed store, fetched by the thousand every epoch.

Through s3fs an object of 110 KB from S3 costs the reading process about 3 ms of CPU
(aiobotocore's request pipeline behind s3fs's bridge from sync to async code) against
1.2 ms to decompress it; a loader process spends most of its time on that. Here an S3
object is fetched by a plain HTTP GET of a presigned URL through urllib3's connection pool
(about 0.5 ms): the URL is signed by a botocore client made with s3fs's own settings for that
URI (credentials, endpoint, region, addressing, CA bundle, timeouts, retries, proxies), so
whatever reaches a store through `pipekit.uri` reaches it here. Other schemes use fsspec.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from fsspec.core import url_to_fs

from pipekit.uri import is_local, local_path

# a URL is signed again this long after it was made (well inside its validity, and inside
# any temporary credentials' lifetime that botocore refreshes ahead of expiry)
URL_EXPIRES_S = 3600
RESIGN_AFTER_S = 600
_CODE = re.compile(rb"<Code>([^<]+)</Code>")


class ObjectReader(Protocol):
    def get(self, name: str) -> bytes | None:
        """The whole object `name` (relative to the base), or None when there is none."""
        ...

    def close(self) -> None: ...


class LocalObjects:
    def __init__(self, base: str) -> None:
        self.base = Path(local_path(base))

    def get(self, name: str) -> bytes | None:
        try:
            return (self.base / name).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


class FsspecObjects:
    def __init__(self, base: str) -> None:
        self.fs, self.base = url_to_fs(base)

    def get(self, name: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(f"{self.base.rstrip('/')}/{name}"))
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


class S3Objects:
    """Objects under `s3://bucket/prefix`, one GET each. Thread-safe (the loader fetches
    several at once)."""

    def __init__(self, base: str) -> None:
        import urllib3
        from botocore.config import Config

        fs, path = url_to_fs(base)
        self.bucket, _, prefix = path.partition("/")
        self.prefix = prefix.strip("/")
        session = _session(fs.kwargs)
        config, client_kwargs = _client_settings(fs)
        self.client = session.create_client("s3", config=Config(**config), **client_kwargs)
        self._urls: dict[str, tuple[str, float]] = {}

        meta = self.client.meta.config
        verify = client_kwargs.get("verify")
        if verify is None:  # as botocore resolves it: AWS_CA_BUNDLE, the config file's ca_bundle
            verify = session.get_config_variable("ca_bundle")
        tls: dict[str, Any] = {}
        if verify is False:
            tls["cert_reqs"] = "CERT_NONE"
        elif isinstance(verify, str):
            tls["ca_certs"] = verify
        attempts = int((meta.retries or {}).get("total_max_attempts", 5))
        # server errors and dropped connections are tried again as botocore would; a 4xx
        # answer is final (403 is handled below: a URL signed too long ago)
        retries = urllib3.Retry(
            total=attempts - 1,
            backoff_factor=0.2,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("GET",),
            raise_on_status=False,
        )
        timeout = urllib3.Timeout(connect=meta.connect_timeout, read=meta.read_timeout)
        pool = {"maxsize": 16, "retries": retries, "timeout": timeout, **tls}
        proxy = _proxy_for(self.client.meta.endpoint_url, meta.proxies)
        self.http: Any = (
            urllib3.ProxyManager(proxy, **pool) if proxy else urllib3.PoolManager(**pool)
        )

    def _url(self, key: str, fresh: bool = False) -> str:
        now = time.monotonic()
        cached = self._urls.get(key)
        if cached is None or fresh or now - cached[1] > RESIGN_AFTER_S:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=URL_EXPIRES_S
            )
            self._urls[key] = cached = (url, now)
        return cached[0]

    def get(self, name: str) -> bytes | None:
        import urllib3

        key = f"{self.prefix}/{name}" if self.prefix else name
        for fresh in (False, True):
            try:
                answer = self.http.request("GET", self._url(key, fresh), preload_content=True)
            except urllib3.exceptions.HTTPError as exc:  # no answer after the retries
                # the reason, not the exception's text: that holds the signed URL
                reason = getattr(exc, "reason", None) or type(exc).__name__
                endpoint = self.client.meta.endpoint_url
                raise ConnectionError(
                    f"cannot connect to the storage endpoint {endpoint} reading "
                    f"s3://{self.bucket}/{key}: {reason}"
                ) from None
            if answer.status == 200:
                return bytes(answer.data)
            if answer.status == 404:
                return None
            found = _CODE.search(answer.data or b"")
            code = found.group(1).decode() if found else "no error code"
            if answer.status == 403 and not fresh:
                continue  # signed with credentials since replaced: sign again, once
            what = f"HTTP {answer.status} ({code}) reading s3://{self.bucket}/{key}"
            if answer.status == 403:
                raise PermissionError(f"access denied: {what}")
            if answer.status == 429 or answer.status >= 500:  # still, after the retries
                endpoint = self.client.meta.endpoint_url
                raise ConnectionError(f"the storage endpoint {endpoint} answered {what}")
            raise OSError(what)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.http.clear()
        self.client.close()


_SESSIONS: dict[str, Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(kwargs: dict[str, Any]) -> Any:
    """One botocore session per process and settings: a new session loads the S3 service
    model again (70-240 ms of CPU, against 4 ms for a client from a loaded one), and a
    store is opened afresh every epoch and in every forked loader worker, which inherits
    the loaded session."""
    import botocore.session

    key = repr(sorted(kwargs.items()))
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = botocore.session.Session(**kwargs)
        return _SESSIONS[key]


def _client_settings(fs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(botocore Config arguments, create_client arguments) as s3fs makes its own client
    (s3fs's `set_session`), URLs signed with SigV4 unless the settings say otherwise."""
    from botocore import UNSIGNED

    config = {"connect_timeout": fs.connect_timeout, "read_timeout": fs.read_timeout}
    config |= {"signature_version": "s3v4"} | dict(fs.config_kwargs)
    client = {
        "aws_access_key_id": fs.key,
        "aws_secret_access_key": fs.secret,
        "aws_session_token": fs.token,
        "endpoint_url": fs.endpoint_url,
        "use_ssl": fs.use_ssl,
    }
    client = {k: v for k, v in client.items() if v is not None} | dict(fs.client_kwargs)
    if fs.anon:
        config["signature_version"] = UNSIGNED
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            client.pop(key, None)
    return config, client


def _proxy_for(endpoint: str, proxies: dict[str, str] | None) -> str | None:
    """The proxy botocore would use for `endpoint`: its config's, else the environment's
    (HTTP(S)_PROXY, honouring NO_PROXY)."""
    parts = urlsplit(endpoint)
    if proxies:
        return proxies.get(parts.scheme)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def open_objects(base: str) -> ObjectReader:
    """A reader of whole objects under `base` (a local folder, s3://, or any fsspec URI)."""
    if is_local(base):
        return LocalObjects(base)
    if base.startswith(("s3://", "s3a://")):
        return S3Objects(base)
    return FsspecObjects(base)

"""An S3 API on loopback for the benchmarks: moto's server in a process of its own (so its
work is not counted in the measuring process), the standard AWS variables pointed at it, and
a bucket made."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time


def _serve(port: int, log: str | None) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    requests = logging.getLogger("werkzeug")  # one line per request the server answers
    if log:
        requests.addHandler(logging.FileHandler(log))
        requests.setLevel(logging.INFO)
        requests.propagate = False
    else:
        requests.setLevel(logging.WARNING)
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    while True:
        time.sleep(3600)


def start(bucket: str, log: str | None = None) -> mp.Process:
    """The server started, this process's AWS settings pointed at it, `bucket` made. With
    `log`, the server writes a line per request there. Terminate the process when done."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = mp.Process(target=_serve, args=(port, log), daemon=True)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for _ in range(50):  # the server process may still be starting
        try:
            fs.mkdir(bucket)
            return server
        except Exception:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the S3 server on loopback did not answer in 10 s")

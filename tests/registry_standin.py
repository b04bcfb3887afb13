"""A stand-in for the Kubeflow Model Registry's REST API on loopback: the endpoints the
`model-registry` client calls to register a model (registered model, version, artifact),
kept in memory, every request recorded. Objects come back as the API returns them: the
request's fields plus `id` and the create/update times (strings of epoch milliseconds)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

from tests.json_http import JSONHandler

API = "/api/model_registry/v1"


class RegistryAPI(JSONHandler):
    objects: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    requests: ClassVar[list[tuple[str, str]]] = []
    ids = itertools.count(1)

    def _not_found(self) -> None:
        self._reply({"code": "404", "message": "not found"}, 404)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _new(self, kind: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        now = str(int(time.time() * 1000))
        obj = {**body, **extra, "id": str(next(self.ids))}
        obj |= {"createTimeSinceEpoch": now, "lastUpdateTimeSinceEpoch": now}
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        return obj

    def _find(self, kind: str, **match: str) -> dict[str, Any] | None:
        for obj in self.objects.get(kind, {}).values():
            if all(str(obj.get(k)) == v for k, v in match.items()):
                return obj
        return None

    @staticmethod
    def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"items": items, "size": len(items), "pageSize": len(items), "nextPageToken": ""}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.requests.append(("GET", url.path))
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.removeprefix(API)
        parts = path.strip("/").split("/")
        if path == "/registered_model":
            found = self._find("registered_models", name=q.get("name", ""))
            return self._reply(found) if found else self._not_found()
        if path == "/model_version":
            found = self._find(
                "model_versions",
                name=q.get("name", ""),
                registeredModelId=q.get("parentResourceId", ""),
            )
            return self._reply(found) if found else self._not_found()
        if path == "/model_artifact":
            found = self._find(
                "artifacts", name=q.get("name", ""), _version=q.get("parentResourceId", "")
            )
            if found is None:
                return self._not_found()
            return self._reply({k: v for k, v in found.items() if k != "_version"})
        if len(parts) == 2 and parts[0] in ("registered_models", "model_versions"):
            found = self.objects.get(parts[0], {}).get(parts[1])
            return self._reply(found) if found else self._not_found()
        if len(parts) == 3 and parts[0] == "registered_models" and parts[2] == "versions":
            mine = [
                v
                for v in self.objects.get("model_versions", {}).values()
                if v["registeredModelId"] == parts[1]
            ]
            return self._reply(self._page(mine))
        if len(parts) == 3 and parts[0] == "model_versions" and parts[2] == "artifacts":
            mine = [
                a for a in self.objects.get("artifacts", {}).values() if a["_version"] == parts[1]
            ]
            return self._reply(
                self._page([{k: v for k, v in a.items() if k != "_version"} for a in mine])
            )
        if path == "/registered_models":
            return self._reply(self._page(list(self.objects.get("registered_models", {}).values())))
        self._not_found()

    def do_POST(self) -> None:
        url = urlparse(self.path)
        self.requests.append(("POST", url.path))
        body = self._body()
        path = url.path.removeprefix(API)
        parts = path.strip("/").split("/")
        if path == "/registered_models":
            return self._reply(self._new("registered_models", body), 201)
        if path == "/model_versions":
            return self._reply(self._new("model_versions", body), 201)
        if len(parts) == 3 and parts[0] == "model_versions" and parts[2] == "artifacts":
            created = self._new("artifacts", body, _version=parts[1])
            return self._reply({k: v for k, v in created.items() if k != "_version"}, 201)
        self._not_found()

    def do_PATCH(self) -> None:
        url = urlparse(self.path)
        self.requests.append(("PATCH", url.path))
        body = self._body()
        parts = url.path.removeprefix(API).strip("/").split("/")
        found = self.objects.get(parts[0], {}).get(parts[1]) if len(parts) == 2 else None
        if found is None:
            return self._not_found()
        found.update(body)
        self._reply(found)


def serve() -> tuple[ThreadingHTTPServer, str]:
    RegistryAPI.objects, RegistryAPI.requests = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"

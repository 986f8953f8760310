"""A small async client for the few writes the operator makes itself (Lease, status,
Events): JSON over aiohttp in the operator's loop, no threads."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp
import kubernetes

from .credentials import authorization

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")


class KubeClient:
    def __init__(self, cfg: kubernetes.client.Configuration, timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.base = str(cfg.host).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = False
        if self.base.startswith("https:"):
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
            if not cfg.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = authorization(self.cfg)
        if auth:
            headers["Authorization"] = auth
        elif self.cfg.username:
            basic = f"{self.cfg.username}:{self.cfg.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = "application/json",
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.request(
            method,
            self.base + path,
            json=body,
            headers=self._headers(content_type if body is not None else None),
            ssl=self._ssl,
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, method, path, text)
            if not text:
                return {}
            data = await response.json(content_type=None)
            return data if isinstance(data, dict) else {}

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("PUT", path, body)

    async def patch(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("PATCH", path, body, MERGE_PATCH)

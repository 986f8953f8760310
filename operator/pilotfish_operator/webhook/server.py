"""The webhooks' HTTPS server: `/inject`, `/validate` and `/healthz` on the webhook address.

The certificate comes from a CertSource and is re-checked periodically; a renewed one is
loaded into the live TLS context, so new connections get it without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .admission import AdmissionRequest, BadReview, Response, parse_review, review
from .certs import CertSource, ServingCert
from .inject import Injector
from .validate import validate

log = logging.getLogger(__name__)

# Pods with large specs (many containers, big env) must still fit.
MAX_BODY = 8 * 1024 * 1024


class NamespaceLabels(Protocol):
    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's labels; None when it is not known (treated as no labels)."""


class SkipEvents(Protocol):
    async def skipped(self, namespace: str, pod: Mapping[str, Any], reason: str) -> None:
        """Record that `pod` gets no sidecar (its name may still be empty: generateName)."""


class WebhookServer:
    def __init__(
        self,
        injector: Injector,
        certs: CertSource,
        namespaces: NamespaceLabels,
        events: SkipEvents | None = None,
        *,
        refresh_interval: float = 3600.0,
    ) -> None:
        self.injector = injector
        self.certs = certs
        self.namespaces = namespaces
        self.events = events
        self.refresh_interval = refresh_interval
        self.serving: ServingCert | None = None
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/inject", self._inject)
        app.router.add_post("/validate", self._validate)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0 picks a port, returned)."""
        await self.refresh()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl)
        await site.start()
        bound: int = self._runner.addresses[0][1]
        self._spawn(self._refresh_loop())
        log.info("admission webhooks listening on https://%s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()

    async def refresh(self) -> bool:
        """Load the certificate if it changed; True when it did. Generated certificates
        also make sure their CA is in both webhook configurations (`SecretCerts`)."""
        current = await self.certs.current()
        if self.serving is not None and current.serial == self.serving.serial:
            return False
        _load_chain(self._ssl, current)
        self.serving = current
        log.info("serving webhook certificate serial %x", current.serial)
        return True

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("webhook certificate refresh failed; retrying later")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _inject(self, request: web.Request) -> web.Response:
        admission = await _read(request)
        if isinstance(admission, web.Response):
            return admission
        labels = await self.namespaces.labels(admission.namespace) or {}
        outcome = self.injector.admit(admission, labels)
        pod = admission.object or {}
        meta = pod.get("metadata") or {}
        who = f"{admission.namespace}/{meta.get('name') or meta.get('generateName', '') + '*'}"
        log.info("inject %s: %s (%s)", who, _verdict(outcome.response), outcome.reason)
        if outcome.skipped and self.events is not None and not admission.dry_run:
            self._spawn(self._event(admission.namespace, pod, outcome.reason))
        return web.json_response(review(admission.uid, outcome.response))

    async def _event(self, namespace: str, pod: Mapping[str, Any], reason: str) -> None:
        assert self.events is not None
        try:
            await self.events.skipped(namespace, pod, reason)
        except Exception:
            log.exception("could not record the skip event for a pod in %s", namespace)

    async def _validate(self, request: web.Request) -> web.Response:
        admission = await _read(request)
        if isinstance(admission, web.Response):
            return admission
        response = validate(admission)
        if not response.allowed:
            log.info("validate: denied %s", response.message.replace("\n", "; "))
        return web.json_response(review(admission.uid, response))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")


async def _read(request: web.Request) -> AdmissionRequest | web.Response:
    try:
        return parse_review(await request.read())
    except BadReview as exc:
        return web.Response(status=400, text=f"{exc}\n")


def _verdict(response: Response) -> str:
    if not response.allowed:
        return "denied: " + response.message
    return "patched" if response.patch else "unchanged"


def _load_chain(context: ssl.SSLContext, cert: ServingCert) -> None:
    # The ssl module loads only from files: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="pilotfish-webhook-") as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_file.write_bytes(cert.cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert.key_pem)
        context.load_cert_chain(cert_file, key_file)


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (IPv6 in brackets) as used by `--webhook`."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)

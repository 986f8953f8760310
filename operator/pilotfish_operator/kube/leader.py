"""Leader election with a coordination.k8s.io/v1 Lease, as Kubernetes controllers do it.

Every replica watches and serves xDS; only the leader writes (status, Events).
The lease is taken when it is free or its holder stopped renewing it; expiry is
judged by our own clock from when we last saw the lease change (as client-go
does), so replicas need not agree on the time. Writes carry the resourceVersion
they read, so two replicas can never both win the same round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .client import ApiError, KubeClient

log = logging.getLogger(__name__)

LEASE_NAME = "pilotfish-leader"


def default_identity() -> str:
    # The pod name (HOSTNAME in a pod) tells people who leads; the suffix keeps a
    # restarted container from mistaking its predecessor's lease for its own.
    name = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{name}_{uuid.uuid4().hex[:8]}"


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        name: str = LEASE_NAME,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.is_leader = False
        self.on_change: list[Callable[[bool], None]] = []
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    async def run(self) -> None:
        """Try to acquire or renew every `retry_period` until cancelled; release on the way out."""
        try:
            while True:
                await self.step()
                await asyncio.sleep(self.retry_period)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release())

    async def step(self) -> bool:
        try:
            leading = await self._try()
        except (ApiError, OSError, TimeoutError) as err:
            log.warning("leader election: %s", err)
            # Keep leading through short API trouble, but not past the renew deadline:
            # by then another replica may take the lease.
            leading = self.is_leader and self.clock() - self._renewed_at < self.renew_deadline
        self._set(leading)
        return leading

    async def _try(self) -> bool:
        now = self.clock()
        try:
            lease = await self.client.get(self.path)
        except ApiError as err:
            if err.status != 404:
                raise
            return await self._create()
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # someone else holds a live lease
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": _micro_time(),
        }
        if holder != self.identity:
            new_spec["acquireTime"] = new_spec["renewTime"]
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        body = {**lease, "spec": new_spec}
        try:
            await self.client.put(self.path, body)
        except ApiError as err:
            if err.status == 409:
                return False  # another replica wrote first
            raise
        self._renewed_at = now
        return True

    async def _create(self) -> bool:
        now = _micro_time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            await self.client.post(self.path.rsplit("/", 1)[0], body)
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        self._renewed_at = self.clock()
        return True

    async def release(self) -> None:
        """Give the lease up so another replica takes over at once instead of after expiry."""
        if not self.is_leader:
            return
        self._set(False)
        lease = await self.client.get(self.path)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        spec = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _micro_time()}
        await self.client.put(self.path, {**lease, "spec": spec})
        log.info("released leadership (%s)", self.identity)

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        log.info("%s leadership (%s)", "acquired" if leading else "lost", self.identity)
        for callback in self.on_change:
            callback(leading)

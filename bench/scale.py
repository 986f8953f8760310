"""Issue 11's scale targets, as `bench/run.py` runs them (each worker in a process of
its own; `--scale` adds the 10,000-service fan-out to 100 real Envoys):

- bench/fanout.py: one VirtualService edit → 100 real Envoys ACKed (p50/p99, split);
- bench/ads_clients.py: 10,000 services, 1,000 simulated ADS sidecars: RSS, one edit
  to all, idle CPU of the control plane;
- bench/idle_cpu.py: idle CPU of local mode with 10 real sidecars;
- bench/churn.py: a 100-pod rollout → pushes per sidecar, staleness, failed requests;
- bench/stuck_stream.py: push latency to 1,000 streams with and without one stuck;
- the full 10,000-service push against the static floor comes from bench/envoy_edit.py
  (run.py's per-size Envoy run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Worker = Callable[..., dict[str, Any]]
MIB_PER_MB = 1e6 / 2**20


def run(worker: Worker, quick: bool, scale: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    edits = "4" if quick else "10"
    out["fanout_1000"] = worker(
        "fanout.py", "--services", "1000", "--envoys", "100", "--edits", edits
    )
    if scale:
        out["fanout_10000"] = worker(
            "fanout.py", "--services", "10000", "--envoys", "100", "--edits", "3", timeout=3600
        )
    out["proxies_10000"] = worker(
        "ads_clients.py",
        "--services",
        "10000",
        "--clients",
        "1000",
        "--edits",
        "3" if quick else "5",
    )
    out["idle_local"] = worker("idle_cpu.py", "--seconds", "15" if quick else "30")
    out["churn"] = worker("churn.py")
    out["stuck_stream"] = worker(
        "stuck_stream.py", "--clients", "1000", "--rounds", "4" if quick else "8"
    )
    return out


def verdicts(scale: dict[str, Any], envoy_10000: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def verdict(name: str, value: float, target: float, unit: str) -> None:
        out[name] = {"value": value, "target": target, "unit": unit, "pass": value <= target}

    for n, target in (("1000", 200.0), ("10000", 1000.0)):
        fan = scale.get(f"fanout_{n}")
        if fan is not None:
            verdict(
                f"edit_to_100_envoys_p99_ms_at_{n}",
                fan["summary"]["rebuild_start_to_ack"]["p99_ms"],
                target,
                "ms",
            )
    proxies = scale.get("proxies_10000")
    if proxies is not None:
        verdict(
            "rss_mb_10000_services_1000_proxies",
            proxies["converged_stats"]["rss_mib"] / MIB_PER_MB,
            400.0,
            "MB",
        )
        edit = proxies["edit_summary"]["median_max_from_rebuild_start_s"]
        verdict("edit_to_1000_proxies_s_at_10000", edit, 1.0, "s")
        verdict("idle_cores_10000_services_1000_proxies", proxies["idle"]["cores"], 0.02, "cores")
    if "idle_local" in scale:
        verdict("idle_cores_local_mode", scale["idle_local"]["cores"], 0.02, "cores")
    churn = scale.get("churn")
    if churn is not None:
        pushes = churn["eds_responses_per_sidecar"]["max"]
        out["rollout_100_pods_pushes_per_sidecar"] = {
            "value": pushes,
            "target": "a few (not one per pod), nothing but EDS, no failed request",
            "unit": "EDS responses",
            "pass": pushes <= 15
            and not churn["other_responses_total"]
            and set(churn["statuses"]) == {"200"},
        }
    stuck = scale.get("stuck_stream")
    if stuck is not None:
        verdict("stuck_stream_p99_ratio", stuck["median_p99_ratio_with_to_without"], 1.5, "ratio")
    if envoy_10000 is not None and "full_push_vs_floor" in envoy_10000:
        verdict(
            "full_push_vs_static_floor_at_10000", envoy_10000["full_push_vs_floor"], 1.05, "ratio"
        )
    return out


def table(scale: dict[str, Any]) -> str:
    lines = ["scale (issue 11)"]
    for n in ("1000", "10000"):
        fan = scale.get(f"fanout_{n}")
        if fan is None:
            continue
        s = fan["summary"]
        acked, sent = s["rebuild_start_to_ack"], s["median_last_send_after_rebuild_end_ms"]
        lines.append(
            f"  edit -> {fan['envoys']} Envoys at {n} services ({fan['mode']}): "
            f"p50 {acked['p50_ms']:.0f} / p99 {acked['p99_ms']:.0f} ms (rebuild "
            f"{s['median_rebuild_ms']:.0f} ms: translate {s['median_translate_ms']:.0f} + "
            f"proxies {s['median_proxies_encode_ms']:.0f}; last send +{sent:.0f} ms; "
            f"send -> ACK p50 {s['send_to_ack']['p50_ms']:.0f} ms)"
        )
    p = scale.get("proxies_10000")
    if p is not None:
        e = p["edit_summary"]
        rss, idle = p["converged_stats"]["rss_mib"], p["idle"]["cores"]
        ms = {k: v * 1e3 for k, v in e.items() if isinstance(v, float)}
        lines.append(
            f"  {p['services']} services, {p['clients']} simulated proxies: RSS {rss:.0f} MiB; "
            f"edit -> all ACKed {ms['median_max_from_rebuild_start_s']:.0f} ms (rebuild "
            f"{ms['median_rebuild_s']:.0f}: translate {ms['median_translate_s']:.0f}, proxies "
            f"{ms['median_envoy_s']:.0f}; last send {ms['median_last_send_s']:.0f}); "
            f"idle {idle:.4f} cores"
        )
    if "idle_local" in scale:
        i = scale["idle_local"]
        lines.append(
            f"  local mode idle, {i['sidecars']} sidecars, {i['services']} services: "
            f"{i['cores']:.4f} cores"
        )
    c = scale.get("churn")
    if c is not None:
        others = sum(c["other_responses_total"].values())
        lines.append(
            f"  rollout of {c['pods']} pods to {c['envoys']} sidecars: {c['rebuilds']} "
            f"rebuilds, EDS pushes per sidecar {c['eds_responses_per_sidecar']['median']:.0f}, "
            f"other responses {others}, staleness p90 {c['staleness_s']['p90']:.2f} s, "
            f"requests {c['requests']} ({c['statuses']})"
        )
    st = scale.get("stuck_stream")
    if st is not None:
        with_, without = st["with_stuck"]["median_p99_ms"], st["without_stuck"]["median_p99_ms"]
        lines.append(
            f"  {st['clients']} streams, one stuck: p99 {with_:.0f} ms vs {without:.0f} ms "
            f"without (ratio {st['median_p99_ratio_with_to_without']:.2f})"
        )
    return "\n".join(lines)

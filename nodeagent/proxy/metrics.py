"""The proxy's Prometheus metrics, rendered from its counters in the text exposition format.

Rules of this module: pure rendering; the counters themselves live on the data path
(`relay.PortStats`, plain integer attributes bumped per chunk, so counting costs no lock and
no call). Series of a Service disappear with it.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from kubemu.nodeagent.proxy.relay import PortStats
from kubemu.nodeagent.proxy.state import PortKey


@dataclasses.dataclass
class SyncStats:
    syncs: int = 0
    duration_sum: float = 0.0
    last_sync: float = 0.0          # unix time of the last completed sync
    listeners: Mapping[str, int] = dataclasses.field(default_factory=dict)  # protocol -> open
    failing: int = 0                # wanted listeners whose bind failed
    health_checks: int = 0


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(k: PortKey, **extra: str) -> str:
    pairs = [("namespace", k.namespace), ("service", k.name), ("port", k.port), ("protocol", k.protocol),
             *extra.items()]
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs) + "}"


def render(stats: Iterable[tuple[PortKey, PortStats]], sync: SyncStats) -> str:
    rows = sorted(stats, key=lambda kv: kv[0])
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: Iterable[str]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(samples)

    family("kubemu_proxy_connections_total", "counter",
           "TCP connections accepted and UDP flows opened, per Service port.",
           (f"kubemu_proxy_connections_total{_labels(k)} {s.connections}" for k, s in rows))
    family("kubemu_proxy_connection_failures_total", "counter",
           "Connections reset and datagrams dropped because no endpoint could be reached.",
           (f"kubemu_proxy_connection_failures_total{_labels(k)} {s.failed}" for k, s in rows))
    family("kubemu_proxy_active_connections", "gauge",
           "Open relayed TCP connections and UDP flows.",
           (f"kubemu_proxy_active_connections{_labels(k)} {s.active}" for k, s in rows))
    family("kubemu_proxy_bytes_total", "counter",
           "Payload bytes relayed, by direction.",
           (line for k, s in rows for line in (
               f"kubemu_proxy_bytes_total{_labels(k, direction='to_endpoint')} {s.bytes_to_endpoint}",
               f"kubemu_proxy_bytes_total{_labels(k, direction='to_client')} {s.bytes_to_client}")))
    family("kubemu_proxy_packets_total", "counter",
           "UDP datagrams relayed, by direction.",
           (line for k, s in rows if k.protocol == "UDP" for line in (
               f"kubemu_proxy_packets_total{_labels(k, direction='to_endpoint')} {s.packets_to_endpoint}",
               f"kubemu_proxy_packets_total{_labels(k, direction='to_client')} {s.packets_to_client}")))
    family("kubemu_proxy_listeners", "gauge", "Open Service listeners, by protocol.",
           (f'kubemu_proxy_listeners{{protocol="{p}"}} {n}' for p, n in sorted(sync.listeners.items())))
    family("kubemu_proxy_listener_bind_failures", "gauge",
           "Wanted listeners and health-check ports that could not be bound.",
           [f"kubemu_proxy_listener_bind_failures {sync.failing}"])
    family("kubemu_proxy_health_check_servers", "gauge", "Open health-check node ports.",
           [f"kubemu_proxy_health_check_servers {sync.health_checks}"])
    family("kubemu_proxy_sync_duration_seconds", "summary", "Time spent reconciling listeners.",
           [f"kubemu_proxy_sync_duration_seconds_sum {sync.duration_sum:.6f}",
            f"kubemu_proxy_sync_duration_seconds_count {sync.syncs}"])
    family("kubemu_proxy_last_sync_timestamp_seconds", "gauge", "When the last reconcile finished.",
           [f"kubemu_proxy_last_sync_timestamp_seconds {sync.last_sync:.3f}"])
    return "\n".join(out) + "\n"

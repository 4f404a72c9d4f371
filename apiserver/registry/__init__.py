"""The registry: one Strategy per kind, as Kubernetes' pkg/registry has one per resource."""
from __future__ import annotations

from kubemu import objects
from kubemu.apiserver.registry.apps import DeploymentStrategy, ReplicaSetStrategy
from kubemu.apiserver.registry.base import Strategy
from kubemu.apiserver.registry.endpointslice import EndpointSliceStrategy
from kubemu.apiserver.registry.event import EventStrategy
from kubemu.apiserver.registry.ingress import IngressClassStrategy, IngressStrategy
from kubemu.apiserver.registry.lease import LeaseStrategy
from kubemu.apiserver.registry.namespace import NamespaceStrategy
from kubemu.apiserver.registry.node import NodeStrategy
from kubemu.apiserver.registry.pod import PodStrategy
from kubemu.apiserver.registry.secret import SecretStrategy
from kubemu.apiserver.registry.service import ServiceStrategy

__all__ = ["Strategy", "strategies", "ServiceStrategy", "PodStrategy", "DeploymentStrategy",
           "ReplicaSetStrategy", "EndpointSliceStrategy", "EventStrategy", "LeaseStrategy",
           "NamespaceStrategy", "NodeStrategy", "SecretStrategy", "IngressStrategy",
           "IngressClassStrategy"]


def strategies(service_cidr: str = "127.96.0.0/16",
               node_port_range: tuple[int, int] = (30000, 32767)) -> dict[str, Strategy]:
    """A fresh strategy per kind; the Service strategy owns this cluster's allocators."""
    out: dict[str, Strategy] = {
        "Namespace": NamespaceStrategy(),
        "Node": NodeStrategy(),
        "Lease": LeaseStrategy(),
        "Pod": PodStrategy(),
        "Service": ServiceStrategy(service_cidr, tuple(node_port_range)),  # type: ignore[arg-type]
        "EndpointSlice": EndpointSliceStrategy(),
        "Deployment": DeploymentStrategy(),
        "ReplicaSet": ReplicaSetStrategy(),
        "Event": EventStrategy(),
        "Secret": SecretStrategy(),
        "Ingress": IngressStrategy(),
        "IngressClass": IngressClassStrategy(),
    }
    missing = set(objects.KINDS) - set(out)
    for kind in missing:  # a kind added to the object model gets at least the base rules
        out[kind] = Strategy()
    return out

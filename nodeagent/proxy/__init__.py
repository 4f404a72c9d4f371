"""kubemu.nodeagent.proxy: the kube-proxy half of a node agent (DESIGN.md section 5).

    state.py        which listeners, endpoints and health checks a Service needs (pure)
    picker.py       which endpoint a new connection goes to (pure)
    relay.py        a connection's life (sans-IO TcpRelay) and its TCP/UDP socket shells
    mmsg.py         recvmmsg/sendmmsg through ctypes, for UDP batches
    listeners.py    the listening sockets, reconciled as a diff
    healthcheck.py  health-check node ports for externalTrafficPolicy: Local
    metrics.py      Prometheus text from the counters
    proxy.py        Proxy: informer handlers, the coalescing sync loop, Events

See docs/proxy.md for the semantics and where they differ from kube-proxy.
"""
from kubemu.nodeagent.proxy.proxy import Proxy

__all__ = ["Proxy"]

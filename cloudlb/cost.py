"""What the load balancers cost: a running total per Service at an hourly price.

Every LoadBalancer Service costs money in a cloud for as long as it is provisioned (AWS and GCP
bill per load-balancer-hour), which is why one Ingress in front of many Services exists. kubemu
shows it on the Service itself, where `kubemu describe svc` and `kubemu status` read it:

  kubemu.io/load-balancer-since  when the load balancer was provisioned (RFC 3339, UTC); kept
                                 across cloud-lb restarts, so the meter does not restart
  kubemu.io/hourly-cost          the price per hour, "$0.0250"
  kubemu.io/cost                 the running cost, "$0.000417"

Pure functions; the controller writes the annotations (and a `LoadBalancerCost` Event with the
total over all load balancers) every cost interval.
"""
from __future__ import annotations

from kubemu.timefmt import parse_time, rfc3339

ANNOTATION_SINCE = "kubemu.io/load-balancer-since"
ANNOTATION_HOURLY = "kubemu.io/hourly-cost"
ANNOTATION_COST = "kubemu.io/cost"
EVENT_SUFFIX = "lb-cost"  # the LoadBalancerCost Event of Service web is web.lb-cost


def usd(amount: float, digits: int = 6) -> str:
    return f"${amount:.{digits}f}"


def running_cost(hourly_price: float, since: float, now: float) -> float:
    return max(0.0, now - since) / 3600.0 * hourly_price


def since_of(annotations, now: float) -> float:
    """When the meter started: the annotation, else now (a load balancer provisioned just now)."""
    t = parse_time(annotations.get(ANNOTATION_SINCE, ""))
    return now if t is None else min(t, now)


def annotations(hourly_price: float, since: float, now: float) -> dict[str, str]:
    return {
        ANNOTATION_SINCE: rfc3339(since),
        ANNOTATION_HOURLY: usd(hourly_price, 4),
        ANNOTATION_COST: usd(running_cost(hourly_price, since, now)),
    }


def cost_message(hourly_price: float, since: float, now: float, total: float, count: int) -> str:
    hours = max(0.0, now - since) / 3600.0
    return (f"Load balancer cost so far {usd(running_cost(hourly_price, since, now))} "
            f"({hours:.3f} h at {usd(hourly_price, 4)}/h); all {count} load balancer"
            f"{'' if count == 1 else 's'}: {usd(total)}")

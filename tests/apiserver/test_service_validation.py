"""Service rules, table-driven: defaults, validation messages, allocation, update, release, rebuild.

Each case runs the strategy the way the store does (prepare, validate, allocate) and compares
the field errors with Kubernetes' exact text.
"""
from __future__ import annotations

import copy
import random

import pytest

from kubemu import objects
from kubemu.apiserver.registry.service import ServiceStrategy
from kubemu.errors import ApiError, Invalid

PORTS = [{"name": "http", "port": 80}]


def manifest(spec: dict, name: str = "web", **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", **meta}, "spec": spec}


@pytest.fixture
def strategy() -> ServiceStrategy:
    return ServiceStrategy("127.96.0.0/16", (30000, 32767), rng=random.Random(7))


def create(strategy, doc: dict):
    """The store's create path; returns the object or raises what the store would."""
    obj = objects.from_dict(doc)
    strategy.prepare_for_create(obj)
    errs = strategy.validate(obj)
    if errs:
        raise Invalid.of("Service", obj.metadata.name, errs)
    strategy.allocate(obj)
    return obj


def errors_of(strategy, doc: dict) -> list[str]:
    obj = objects.from_dict(doc)
    strategy.prepare_for_create(obj)
    return [str(e) for e in strategy.validate(obj)]


def update(strategy, old, doc: dict):
    """The store's update path (spec update: status and server-owned metadata from old)."""
    new = objects.from_dict(doc)
    new.metadata.namespace = old.metadata.namespace
    if old.HasField("status"):
        new.status.CopyFrom(old.status)
    else:
        new.ClearField("status")
    new.metadata.generation = old.metadata.generation
    strategy.prepare_for_update(new, old)
    errs = strategy.validate(new) + strategy.validate_update(new, old)
    if errs:
        raise Invalid.of("Service", new.metadata.name, errs)
    strategy.reallocate(new, old)
    return new


def update_status(strategy, old, status: dict):
    new = copy.deepcopy(old)
    new.ClearField("status")
    objects.fill(new.status, status)
    strategy.prepare_for_update(new, old)
    return [str(e) for e in strategy.validate(new) + strategy.validate_update(new, old)]


def spec_of(obj) -> dict:
    return objects.to_dict(obj)["spec"]


# ------------------------------------------------------------------ defaults


def test_defaults_for_a_cluster_ip_service(strategy):
    svc = create(strategy, manifest({"selector": {"app": "web"}, "ports": [{"port": 80}]}))
    spec = spec_of(svc)
    ip = spec.pop("clusterIP")
    assert spec == {
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}],
        "selector": {"app": "web"},
        "clusterIPs": [ip],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    }
    assert svc.metadata.generation == 1
    assert not svc.HasField("status")


def test_defaults_for_load_balancer(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "ports": PORTS}))
    assert svc.spec.externalTrafficPolicy == "Cluster"
    assert svc.spec.allocateLoadBalancerNodePorts is True
    assert svc.spec.ports[0].nodePort and not svc.spec.healthCheckNodePort


def test_defaults_for_node_port_and_named_target_port(strategy):
    svc = create(strategy, manifest({"type": "NodePort", "ports": [
        {"name": "http", "port": 80, "targetPort": "web"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}))
    assert svc.spec.externalTrafficPolicy == "Cluster"
    assert objects.ios_value(svc.spec.ports[0].targetPort) == "web"
    assert objects.ios_value(svc.spec.ports[1].targetPort) == 53
    assert not svc.spec.HasField("allocateLoadBalancerNodePorts")


def test_client_ip_affinity_gets_default_timeout(strategy):
    svc = create(strategy, manifest({"sessionAffinity": "ClientIP", "ports": PORTS}))
    assert svc.spec.sessionAffinityConfig.clientIP.timeoutSeconds == 10800


def test_affinity_config_is_dropped_when_affinity_is_none(strategy):
    svc = create(strategy, manifest({"ports": PORTS, "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}))
    assert svc.spec.sessionAffinity == "None" and not svc.spec.HasField("sessionAffinityConfig")


def test_external_ips_make_a_cluster_ip_service_externally_accessible(strategy):
    svc = create(strategy, manifest({"ports": PORTS, "externalIPs": ["127.200.0.9"]}))
    assert svc.spec.externalTrafficPolicy == "Cluster"


def test_external_name_gets_no_ip_fields(strategy):
    svc = create(strategy, manifest({"type": "ExternalName", "externalName": "example.com"}))
    spec = spec_of(svc)
    assert spec == {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}


def test_headless_service_defaults(strategy):
    svc = create(strategy, manifest({"clusterIP": "None", "selector": {"app": "db"}}))
    assert list(svc.spec.clusterIPs) == ["None"] and svc.spec.clusterIP == "None"
    assert list(svc.spec.ipFamilies) == ["IPv4"] and svc.spec.ipFamilyPolicy == "SingleStack"
    assert strategy.ips.used == 0


def test_headless_selectorless_service_defaults_to_dual_stack_families(strategy):
    """Kubernetes' special case: no IP is allocated, so any family may be listed."""
    svc = create(strategy, manifest({"clusterIP": "None"}))
    assert svc.spec.ipFamilyPolicy == "RequireDualStack"
    assert list(svc.spec.ipFamilies) == ["IPv4", "IPv6"]


def test_cluster_ips_mirrors_cluster_ip(strategy):
    svc = create(strategy, manifest({"clusterIP": "127.96.0.10", "ports": PORTS}))
    assert list(svc.spec.clusterIPs) == ["127.96.0.10"] and strategy.ips.has("127.96.0.10")


# ------------------------------------------------------------------ validation messages

DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
           "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
           "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                 "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
                 "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
             "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


CASES = [
    # (id, spec, extra metadata, expected errors)
    ("name-dns1035", {"ports": PORTS}, {"name": "1web"},
     ['metadata.name: Invalid value: "1web": ' + DNS1035]),
    ("name-too-long", {"ports": PORTS}, {"name": "a" * 64},
     [f'metadata.name: Invalid value: "{"a" * 64}": must be no more than 63 characters']),
    ("ports-required", {"selector": {"app": "web"}}, {}, ["spec.ports: Required value"]),
    ("port-zero", {"ports": [{"port": 0, "targetPort": 8080}]}, {},
     ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ("port-too-big", {"ports": [{"port": 65536, "targetPort": 80}]}, {},
     ["spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"]),
    ("names-required-when-many", {"ports": [{"name": "http", "port": 80}, {"port": 443}]}, {},
     ["spec.ports[1].name: Required value"]),
    ("duplicate-port-name", {"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}, {},
     ['spec.ports[1].name: Duplicate value: "http"']),
    ("port-name-dns1123", {"ports": [{"name": "Http", "port": 80}]}, {},
     ['spec.ports[0].name: Invalid value: "Http": ' + DNS1123_LABEL]),
    ("protocol", {"ports": [{"port": 80, "protocol": "HTTP"}]}, {},
     ['spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"']),
    ("target-port-number", {"ports": [{"port": 80, "targetPort": 70000}]}, {},
     ["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("target-port-name", {"ports": [{"port": 80, "targetPort": "web--http"}]}, {},
     ['spec.ports[0].targetPort: Invalid value: "web--http": must not contain consecutive hyphens']),
    ("target-port-name-long", {"ports": [{"port": 80, "targetPort": "abcdefghijklmnop"}]}, {},
     ['spec.ports[0].targetPort: Invalid value: "abcdefghijklmnop": must be no more than 15 characters']),
    ("target-port-name-digits", {"ports": [{"port": 80, "targetPort": "8080"}]}, {},
     ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)']),
    ("duplicate-port", {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "targetPort": 81}]}, {},
     ['spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
      'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']),
    ("tcp-and-udp-same-port-ok", {"ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}]},
     {}, []),
    ("type", {"type": "Foo", "ports": PORTS}, {},
     ['spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"']),
    ("node-port-with-cluster-ip", {"ports": [{"port": 80, "nodePort": 30080}]}, {},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ("duplicate-node-port", {"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                                           {"name": "b", "port": 81, "nodePort": 30080}]}, {},
     ["spec.ports[1].nodePort: Duplicate value: 30080"]),
    ("same-node-port-other-protocol-ok", {"type": "NodePort", "ports": [
        {"name": "a", "port": 53, "nodePort": 30053}, {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053}]},
     {}, []),
    ("affinity", {"sessionAffinity": "Sticky", "ports": PORTS}, {},
     ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
    ("affinity-timeout-zero", {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
                               "ports": PORTS}, {},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]),
    ("affinity-timeout-max", {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
                              "ports": PORTS}, {},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"]),
    ("affinity-timeout-86400-ok", {"sessionAffinity": "ClientIP",
                                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}, "ports": PORTS}, {}, []),
    ("external-name-required", {"type": "ExternalName"}, {}, ["spec.externalName: Required value"]),
    ("external-name-subdomain", {"type": "ExternalName", "externalName": "Bad_Host"}, {},
     ['spec.externalName: Invalid value: "Bad_Host": ' + SUBDOMAIN]),
    ("external-name-trailing-dot-ok", {"type": "ExternalName", "externalName": "example.com."}, {}, []),
    ("external-name-with-cluster-ip", {"type": "ExternalName", "externalName": "example.com", "clusterIP": "127.96.0.5"},
     {}, ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
    ("external-name-with-families", {"type": "ExternalName", "externalName": "example.com", "ipFamilies": ["IPv4"],
                                     "ipFamilyPolicy": "SingleStack"}, {},
     ["spec.ipFamilies: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]),
    ("headless-node-port", {"type": "NodePort", "clusterIP": "None", "ports": PORTS}, {},
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]),
    ("headless-load-balancer", {"type": "LoadBalancer", "clusterIP": "None", "ports": PORTS}, {},
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"]),
    ("cluster-ip-not-an-ip", {"clusterIP": "300.1.1.1", "ports": PORTS}, {},
     ['spec.clusterIPs[0]: Invalid value: "300.1.1.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']),
    ("cluster-ips-mismatch", {"clusterIP": "127.96.0.5", "clusterIPs": ["127.96.0.6"], "ports": PORTS}, {},
     ['spec.clusterIPs: Invalid value: []string{"127.96.0.6"}: first value must match `clusterIP`']),
    ("cluster-ips-without-cluster-ip", {"clusterIPs": ["127.96.0.6"], "ports": PORTS}, {},
     ['spec.clusterIPs: Invalid value: []string{"127.96.0.6"}: must be empty when `clusterIP` is not specified']),
    ("cluster-ips-two-v4", {"clusterIP": "127.96.0.5", "clusterIPs": ["127.96.0.5", "127.96.0.6"], "ports": PORTS,
                            "ipFamilyPolicy": "PreferDualStack"}, {},
     ['spec.clusterIPs: Invalid value: []string{"127.96.0.5", "127.96.0.6"}: may specify no more than one IP for each IP family']),
    ("ip-family", {"ipFamilies": ["IPv5"], "ports": PORTS}, {},
     ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"']),
    ("ip-family-policy", {"ipFamilyPolicy": "Whatever", "ports": PORTS}, {},
     ['spec.ipFamilyPolicy: Unsupported value: "Whatever": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"']),
    ("require-dual-stack-on-single-stack-cluster", {"ipFamilyPolicy": "RequireDualStack", "ports": PORTS}, {},
     ['spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services']),
    ("ipv6-not-configured", {"ipFamilies": ["IPv6"], "ports": PORTS}, {},
     ['spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster']),
    ("ipv6-cluster-ip-not-configured", {"clusterIP": "fd00::10", "ports": PORTS}, {},
     ['spec.clusterIPs[0]: Invalid value: []string{"fd00::10"}: IPv6 is not configured on this cluster']),
    ("external-ip-invalid", {"externalIPs": ["1.2.3"], "ports": PORTS}, {},
     ['spec.externalIPs[0]: Invalid value: "1.2.3": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']),
    ("external-ip-unspecified", {"externalIPs": ["0.0.0.0"], "ports": PORTS}, {},
     ['spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)']),
    ("external-ip-link-local", {"externalIPs": ["169.254.1.1"], "ports": PORTS}, {},
     ['spec.externalIPs[0]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)']),
    ("external-ip-loopback-ok-in-kubemu", {"externalIPs": ["127.200.0.5"], "ports": PORTS}, {}, []),
    ("source-ranges-not-lb", {"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": PORTS}, {},
     ["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    ("source-ranges-cidr", {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"], "ports": PORTS}, {},
     ['spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)']),
    ("source-ranges-annotation", {"ports": PORTS},
     {"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8"}},
     ["metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: "
      "may only be used when `type` is 'LoadBalancer'"]),
    ("lb-class-not-lb", {"loadBalancerClass": "example.com/lb", "ports": PORTS}, {},
     ["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    ("lb-class-format", {"type": "LoadBalancer", "loadBalancerClass": "-bad", "ports": PORTS}, {},
     ['spec.loadBalancerClass: Invalid value: "-bad": name part must consist of alphanumeric characters, \'-\', '
      "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
      "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    ("allocate-lb-node-ports-not-lb", {"type": "NodePort", "allocateLoadBalancerNodePorts": False, "ports": PORTS}, {},
     ["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    ("etp-not-externally-accessible", {"externalTrafficPolicy": "Local", "ports": PORTS}, {},
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']),
    ("etp-value", {"type": "NodePort", "externalTrafficPolicy": "Global", "ports": PORTS}, {},
     ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"']),
    ("itp-value", {"internalTrafficPolicy": "Nearby", "ports": PORTS}, {},
     ['spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"']),
    ("hc-node-port-not-needed", {"type": "LoadBalancer", "healthCheckNodePort": 30123, "ports": PORTS}, {},
     ["spec.healthCheckNodePort: Invalid value: 30123: may only be set when `type` is 'LoadBalancer' and "
      "`externalTrafficPolicy` is 'Local'"]),
    ("traffic-distribution", {"trafficDistribution": "Anywhere", "ports": PORTS}, {},
     ['spec.trafficDistribution: Unsupported value: "Anywhere": supported values: "PreferClose"']),
    ("selector-label-value", {"selector": {"app": "web app"}, "ports": PORTS}, {},
     ['spec.selector: Invalid value: "web app": a valid label must be an empty string or consist of alphanumeric '
      "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
      "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]),
    ("app-protocol", {"ports": [{"port": 80, "appProtocol": "a/b/c"}]}, {},
     ["spec.ports[0].appProtocol: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric "
      "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
      "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an "
      "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
    ("topology-annotations-disagree", {"ports": PORTS},
     {"annotations": {"service.kubernetes.io/topology-mode": "Auto",
                      "service.kubernetes.io/topology-aware-hints": "Disabled"}},
     ['metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Auto": must match '
      "annotations[service.kubernetes.io/topology-aware-hints] when both are specified"]),
]


@pytest.mark.parametrize("spec,meta,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_messages(strategy, spec, meta, expected):
    name = meta.pop("name", "web")
    assert errors_of(strategy, manifest(spec, name=name, **meta)) == expected


def test_session_affinity_config_rule_when_not_defaulted():
    """Defaulting drops the config when affinity is None; the rule stays for direct callers."""
    from kubemu.apiserver.registry.service import validate_service
    svc = objects.from_dict(manifest({"ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}],
                                      "sessionAffinity": "None", "type": "ClusterIP",
                                      "internalTrafficPolicy": "Cluster",
                                      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}))
    assert [str(e) for e in validate_service(svc)] == [
        "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]


def test_invalid_error_rendering(strategy):
    with pytest.raises(Invalid) as e:
        create(strategy, manifest({"type": "Foo", "ports": [{"port": 0, "targetPort": 1}]}))
    assert str(e.value) == (
        'Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, '
        'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]')


# ------------------------------------------------------------------ ClusterIP allocation


def test_static_cluster_ip(strategy):
    svc = create(strategy, manifest({"clusterIP": "127.96.0.10", "ports": PORTS}))
    assert svc.spec.clusterIP == "127.96.0.10"


def test_static_cluster_ip_already_allocated(strategy):
    create(strategy, manifest({"clusterIP": "127.96.0.5", "ports": PORTS}, name="a"))
    with pytest.raises(Invalid) as e:
        create(strategy, manifest({"clusterIP": "127.96.0.5", "ports": PORTS}, name="b"))
    assert str(e.value.causes[0]) == 'spec.clusterIP: Invalid value: "127.96.0.5": provided IP is already allocated'
    assert str(e.value) == 'Service "b" is invalid: spec.clusterIP: Invalid value: "127.96.0.5": provided IP is already allocated'


@pytest.mark.parametrize("ip", ["10.0.0.5", "127.96.0.0", "127.96.255.255"])
def test_static_cluster_ip_out_of_range(strategy, ip):
    with pytest.raises(Invalid) as e:
        create(strategy, manifest({"clusterIP": ip, "ports": PORTS}))
    assert [str(c) for c in e.value.causes] == [
        f'spec.clusterIP: Invalid value: "{ip}": provided IP is not in the valid range. '
        "The range of valid IPs is 127.96.0.0/16"]


def test_non_canonical_cluster_ip_is_released(strategy):
    svc = create(strategy, manifest({"clusterIP": "127.96.0.010", "ports": PORTS}))
    assert strategy.ips.has("127.96.0.10")
    strategy.release(svc)
    assert strategy.ips.used == 0


def test_first_address_only_on_request(strategy):
    kubernetes = create(strategy, manifest({"clusterIP": "127.96.0.1", "ports": [{"name": "https", "port": 443}]},
                                           name="kubernetes"))
    assert kubernetes.spec.clusterIP == "127.96.0.1"


def test_dynamic_cluster_ips_avoid_the_static_band(strategy):
    for i in range(50):
        svc = create(strategy, manifest({"ports": PORTS}, name=f"s{i}"))
        third, fourth = map(int, svc.spec.clusterIP.split(".")[2:])
        assert (third, fourth) > (1, 0)  # past 127.96.1.0, the end of the static band


def test_cluster_ip_range_exhaustion_is_an_internal_error():
    strategy = ServiceStrategy("127.96.0.0/29", (30000, 32767), rng=random.Random(1))  # .2-.6 dynamic
    for i in range(5):
        create(strategy, manifest({"ports": PORTS}, name=f"s{i}"))
    with pytest.raises(ApiError) as e:
        create(strategy, manifest({"ports": PORTS}, name="full"))
    assert e.value.reason == "InternalError" and e.value.code == 500
    assert str(e.value) == "Internal error occurred: failed to allocate a serviceIP: range is full"


# ------------------------------------------------------------------ NodePort allocation


def test_static_node_port(strategy):
    svc = create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
    assert svc.spec.ports[0].nodePort == 30080 and strategy.node_ports.has(30080)


def test_static_node_port_already_allocated(strategy):
    create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="a"))
    with pytest.raises(Invalid) as e:
        create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="b"))
    assert [str(c) for c in e.value.causes] == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"]


def test_static_node_port_out_of_range(strategy):
    with pytest.raises(Invalid) as e:
        create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}))
    assert [str(c) for c in e.value.causes] == [
        "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"]


def test_dynamic_node_ports_avoid_the_static_band(strategy):
    svc = create(strategy, manifest({"type": "NodePort", "ports": [
        {"name": f"p{i}", "port": 80 + i} for i in range(30)]}))
    assert all(p.nodePort > 30085 for p in svc.spec.ports)
    assert len({p.nodePort for p in svc.spec.ports}) == 30


def test_tcp_and_udp_on_one_port_share_a_node_port(strategy):
    svc = create(strategy, manifest({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}))
    assert svc.spec.ports[0].nodePort == svc.spec.ports[1].nodePort
    assert strategy.node_ports.used == 1


def test_requested_node_port_is_shared_by_ports_with_the_same_number(strategy):
    svc = create(strategy, manifest({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "nodePort": 30053}]}))
    assert [p.nodePort for p in svc.spec.ports] == [30053, 30053]


def test_allocate_load_balancer_node_ports_false(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [
        {"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30081}]}))
    assert [p.nodePort for p in svc.spec.ports] == [0, 30081]


def test_health_check_node_port_for_local_load_balancer(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS}))
    assert svc.spec.healthCheckNodePort and strategy.node_ports.has(svc.spec.healthCheckNodePort)
    assert strategy.node_ports.used == 2


def test_requested_health_check_node_port(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                     "healthCheckNodePort": 30100, "ports": PORTS}))
    assert svc.spec.healthCheckNodePort == 30100


def test_requested_health_check_node_port_taken(strategy):
    create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30100}]}, name="a"))
    with pytest.raises(ApiError) as e:
        create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                   "healthCheckNodePort": 30100, "ports": PORTS}, name="b"))
    assert str(e.value) == ("Internal error occurred: failed to allocate requested HealthCheck NodePort 30100: "
                            "provided port is already allocated")


def test_node_port_exhaustion_and_all_or_nothing():
    strategy = ServiceStrategy("127.96.0.0/16", (30000, 30002), rng=random.Random(3))
    with pytest.raises(ApiError) as e:
        create(strategy, manifest({"type": "NodePort", "ports": [{"name": f"p{i}", "port": 80 + i} for i in range(4)]}))
    assert str(e.value) == "Internal error occurred: failed to allocate a nodePort: range is full"
    assert strategy.node_ports.used == 0 and strategy.ips.used == 0  # nothing leaked


def test_failed_static_node_port_releases_the_cluster_ip(strategy):
    create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="a"))
    before = (strategy.ips.used, strategy.node_ports.used)
    with pytest.raises(Invalid):
        create(strategy, manifest({"type": "NodePort", "clusterIP": "127.96.0.9",
                                   "ports": [{"name": "a", "port": 81}, {"name": "b", "port": 80, "nodePort": 30080}]},
                                  name="b"))
    assert (strategy.ips.used, strategy.node_ports.used) == before
    assert not strategy.ips.has("127.96.0.9")


# ------------------------------------------------------------------ updates


def test_reapplying_the_same_manifest_keeps_allocated_values(strategy):
    doc = manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS})
    old = create(strategy, doc)
    new = update(strategy, old, doc)
    assert new == old  # the store writes nothing for this
    assert new.metadata.generation == 1


def test_reapplying_a_headless_selectorless_service(strategy):
    doc = manifest({"clusterIP": "None", "ports": PORTS})
    old = create(strategy, doc)
    assert update(strategy, old, doc) == old


def test_cluster_ip_is_immutable(strategy):
    old = create(strategy, manifest({"clusterIP": "127.96.0.20", "ports": PORTS}))
    with pytest.raises(Invalid) as e:
        update(strategy, old, manifest({"clusterIP": "127.96.0.21", "ports": PORTS}))
    assert [str(c) for c in e.value.causes] == [
        'spec.clusterIPs[0]: Invalid value: []string{"127.96.0.21"}: may not change once set']


def test_spec_change_bumps_generation(strategy):
    old = create(strategy, manifest({"ports": PORTS}))
    new = update(strategy, old, manifest({"ports": [{"name": "http", "port": 8080}]}))
    assert new.metadata.generation == 2 and new.spec.clusterIP == old.spec.clusterIP


def test_node_port_kept_on_update_and_changed_on_request(strategy):
    old = create(strategy, manifest({"type": "NodePort", "ports": PORTS}))
    original = old.spec.ports[0].nodePort
    kept = update(strategy, old, manifest({"type": "NodePort", "ports": PORTS}))
    assert kept.spec.ports[0].nodePort == original
    moved = update(strategy, kept, manifest({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30999}]}))
    assert moved.spec.ports[0].nodePort == 30999
    assert strategy.node_ports.allocated() == [30999]


def test_update_to_taken_node_port_keeps_the_old_one(strategy):
    create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30500}]}, name="other"))
    old = create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30501}]}))
    with pytest.raises(Invalid) as e:
        update(strategy, old, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30500}]}))
    assert str(e.value.causes[0]) == "spec.ports[0].nodePort: Invalid value: 30500: provided port is already allocated"
    assert strategy.node_ports.allocated() == [30500, 30501]


def test_type_change_to_cluster_ip_releases_node_ports(strategy):
    old = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS}))
    assert strategy.node_ports.used == 2
    new = update(strategy, old, manifest({"ports": PORTS}))
    assert strategy.node_ports.used == 0
    assert new.spec.ports[0].nodePort == 0 and not new.spec.healthCheckNodePort
    assert not new.spec.externalTrafficPolicy and not new.spec.HasField("allocateLoadBalancerNodePorts")
    assert new.spec.clusterIP == old.spec.clusterIP


def test_type_change_to_cluster_ip_with_explicit_node_port_is_forbidden(strategy):
    old = create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30600}]}))
    with pytest.raises(Invalid) as e:
        update(strategy, old, manifest({"ports": [{"port": 80, "nodePort": 30601}]}))
    assert [str(c) for c in e.value.causes] == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert strategy.node_ports.allocated() == [30600]


def test_type_change_to_external_name_releases_everything(strategy):
    old = create(strategy, manifest({"type": "NodePort", "ports": PORTS}))
    new = update(strategy, old, manifest({"type": "ExternalName", "externalName": "db.example.com", "ports": PORTS}))
    assert (strategy.ips.used, strategy.node_ports.used) == (0, 0)
    assert not new.spec.clusterIP and not new.spec.clusterIPs and not new.spec.ipFamilies
    assert not new.spec.HasField("ipFamilyPolicy")


def test_type_change_from_external_name_allocates(strategy):
    old = create(strategy, manifest({"type": "ExternalName", "externalName": "db.example.com"}))
    new = update(strategy, old, manifest({"type": "NodePort", "ports": PORTS}))
    assert new.spec.clusterIP and strategy.ips.has(new.spec.clusterIP)
    assert new.spec.ports[0].nodePort and list(new.spec.ipFamilies) == ["IPv4"]


def test_type_change_to_node_port_allocates_node_ports(strategy):
    old = create(strategy, manifest({"ports": PORTS}))
    new = update(strategy, old, manifest({"type": "NodePort", "ports": PORTS}))
    assert strategy.node_ports.has(new.spec.ports[0].nodePort)


def test_external_traffic_policy_local_allocates_and_cluster_releases_hc(strategy):
    old = create(strategy, manifest({"type": "LoadBalancer", "ports": PORTS}))
    local = update(strategy, old, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS}))
    hc = local.spec.healthCheckNodePort
    assert hc and strategy.node_ports.has(hc)
    back = update(strategy, local, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "ports": PORTS}))
    assert not back.spec.healthCheckNodePort and not strategy.node_ports.has(hc)


def test_health_check_node_port_is_immutable(strategy):
    old = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS}))
    other = 30050 if old.spec.healthCheckNodePort != 30050 else 30051
    with pytest.raises(Invalid) as e:
        update(strategy, old, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                        "healthCheckNodePort": other, "ports": PORTS}))
    assert [str(c) for c in e.value.causes] == ["spec.healthCheckNodePort: Forbidden: field is immutable"]


def test_load_balancer_class_is_immutable(strategy):
    old = create(strategy, manifest({"type": "LoadBalancer", "loadBalancerClass": "example.com/a", "ports": PORTS}))
    with pytest.raises(Invalid) as e:
        update(strategy, old, manifest({"type": "LoadBalancer", "loadBalancerClass": "example.com/b", "ports": PORTS}))
    assert [str(c) for c in e.value.causes] == [
        'spec.loadBalancerClass: Invalid value: "example.com/b": may not change once set']


def test_failed_update_changes_no_allocator(strategy):
    create(strategy, manifest({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30700}]}, name="other"))
    old = create(strategy, manifest({"type": "NodePort", "ports": [{"name": "a", "port": 80}]}))
    before = strategy.node_ports.allocated()
    with pytest.raises(Invalid):
        update(strategy, old, manifest({"type": "NodePort", "ports": [
            {"name": "a", "port": 80}, {"name": "b", "port": 81}, {"name": "c", "port": 82, "nodePort": 30700}]}))
    assert strategy.node_ports.allocated() == before


# ------------------------------------------------------------------ status


def test_load_balancer_status(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "ports": PORTS}))
    assert update_status(strategy, svc, {"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}}) == []
    assert update_status(strategy, svc, {"loadBalancer": {"ingress": [{"ip": "127.200.0.300"}]}}) == [
        'status.loadBalancer.ingress[0].ip: Invalid value: "127.200.0.300": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)"]
    assert update_status(strategy, svc, {"loadBalancer": {"ingress": [{"hostname": "1.2.3.4"}]}}) == [
        'status.loadBalancer.ingress[0].hostname: Invalid value: "1.2.3.4": must be a DNS name, not an IP address']
    assert update_status(strategy, svc, {"loadBalancer": {"ingress": [{"ip": "127.200.0.1", "ipMode": "Magic"}]}}) == [
        'status.loadBalancer.ingress[0].ipMode: Unsupported value: "Magic": supported values: "Proxy", "VIP"']


def test_load_balancer_status_defaults_ip_mode(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "ports": PORTS}))
    new = copy.deepcopy(svc)
    new.status.loadBalancer.ingress.add(ip="127.200.0.1")
    strategy.prepare_for_update(new, svc)
    assert new.status.loadBalancer.ingress[0].ipMode == "VIP"
    assert new.metadata.generation == svc.metadata.generation  # a status write is not a spec change


def test_load_balancer_status_only_for_load_balancers(strategy):
    svc = create(strategy, manifest({"ports": PORTS}))
    assert update_status(strategy, svc, {"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}}) == [
        "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]


def test_type_change_away_from_load_balancer_clears_its_status(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "ports": PORTS}))
    svc.status.loadBalancer.ingress.add(ip="127.200.0.1", ipMode="VIP")
    new = update(strategy, svc, manifest({"type": "NodePort", "ports": PORTS}))
    assert not new.status.loadBalancer.ingress


# ------------------------------------------------------------------ release and rebuild


def test_release_on_delete(strategy):
    svc = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": PORTS}))
    assert (strategy.ips.used, strategy.node_ports.used) == (1, 2)
    strategy.release(svc)
    assert (strategy.ips.used, strategy.node_ports.used) == (0, 0)


def test_release_of_headless_and_external_name_is_a_no_op(strategy):
    keep = create(strategy, manifest({"ports": PORTS}, name="keep"))
    for doc in (manifest({"clusterIP": "None", "ports": PORTS}), manifest({"type": "ExternalName", "externalName": "x.io"})):
        strategy.release(create(strategy, doc))
    assert strategy.ips.allocated() == [keep.spec.clusterIP]


def test_rebuild_from_stored_services(strategy):
    a = create(strategy, manifest({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}, name="a"))
    b = create(strategy, manifest({"clusterIP": "127.96.0.10", "ports": PORTS}, name="b"))
    c = create(strategy, manifest({"clusterIP": "None", "ports": PORTS}, name="c"))
    fresh = ServiceStrategy("127.96.0.0/16", (30000, 32767))
    fresh.rebuild([a, b, c])
    assert fresh.ips.allocated() == strategy.ips.allocated()
    assert fresh.node_ports.allocated() == strategy.node_ports.allocated()
    assert fresh.rebuild_problems == []
    with pytest.raises(Invalid):
        create(fresh, manifest({"clusterIP": "127.96.0.10", "ports": PORTS}, name="d"))


def test_rebuild_reports_conflicts(strategy):
    a = create(strategy, manifest({"clusterIP": "127.96.0.10", "ports": PORTS}, name="a"))
    b = copy.deepcopy(a)
    b.metadata.name = "b"
    strategy.rebuild([a, b])
    assert strategy.rebuild_problems == ["ClusterIP 127.96.0.10: provided IP is already allocated"]
    assert strategy.ips.allocated() == ["127.96.0.10"]

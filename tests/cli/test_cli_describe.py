"""`describe` output, laid out as kubectl's describers lay it out, without a server."""
from __future__ import annotations

import datetime
import decimal

from kubemu import objects
from kubemu.cli import describe as d

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def o(data: dict):
    return objects.from_dict(data)


SVC = o({"kind": "Service", "metadata": {
    "name": "web", "namespace": "default", "uid": "s1", "labels": {"app": "web"},
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n", "note": "hi"}},
    "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "clusterIP": "10.96.0.10",
             "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
             "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"},
                       {"name": "dns", "port": 53, "targetPort": 5353, "nodePort": 30053, "protocol": "UDP"}],
             "sessionAffinity": "None", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
             "internalTrafficPolicy": "Cluster"},
    "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}}})
SLICE = o({"kind": "EndpointSlice", "metadata": {"name": "web-x", "namespace": "default"}, "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353}],
           "endpoints": [{"addresses": ["127.244.1.5"], "conditions": {"ready": True}},
                         {"addresses": ["127.244.2.7"]},
                         {"addresses": ["127.244.3.9"], "conditions": {"ready": False}}]})
EVENT = o({"kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
           "involvedObject": {"kind": "Service", "name": "web", "namespace": "default", "uid": "s1"},
           "type": "Normal", "reason": "EnsuredLoadBalancer", "message": "Ensured load balancer",
           "source": {"component": "cloud-lb"}, "firstTimestamp": "2024-05-01T11:58:00Z",
           "lastTimestamp": "2024-05-01T11:59:30Z", "count": 2})
UNRELATED = [
    o({"kind": "Event", "metadata": {"name": "x.1", "namespace": "default"},
       "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "X"}),
    o({"kind": "Event", "metadata": {"name": "x.2", "namespace": "default"},
       "involvedObject": {"kind": "Service", "name": "web", "namespace": "default", "uid": "old"}, "reason": "Y"}),
]


def test_describe_service_exactly():
    events = d.events_for(SVC, [EVENT, *UNRELATED])
    assert events == [EVENT]
    assert d.describe_service(SVC, [SLICE], events, NOW) == """\
Name:                     web
Namespace:                default
Labels:                   app=web
Annotations:              note: hi
Selector:                 app=web
Type:                     LoadBalancer
IP Family Policy:         SingleStack
IP Families:              IPv4
IP:                       10.96.0.10
IPs:                      10.96.0.10
LoadBalancer Ingress:     127.200.0.1
Port:                     http  80/TCP
TargetPort:               http/TCP
NodePort:                 http  30080/TCP
Endpoints:                127.244.1.5:8080,127.244.2.7:8080
Port:                     dns  53/UDP
TargetPort:               5353/UDP
NodePort:                 dns  30053/UDP
Endpoints:                127.244.1.5:5353,127.244.2.7:5353
Session Affinity:         None
External Traffic Policy:  Local
Internal Traffic Policy:  Cluster
HealthCheck NodePort:     32000
Events:
  Type    Reason               Age               From      Message
  ----    ------               ----              ----      -------
  Normal  EnsuredLoadBalancer  30s (x2 over 2m)  cloud-lb  Ensured load balancer
"""


def test_endpoints_line_limits_to_three():
    many = o({"kind": "EndpointSlice", "metadata": {"name": "s"}, "addressType": "IPv4",
              "ports": [{"name": "", "port": 80}],
              "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)]})
    assert d.format_endpoint_slices([many], "") == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert d.format_endpoint_slices([], "") == "<none>"


def test_describe_pod():
    pod = o({"kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d", "controller": True}]},
             "spec": {"nodeName": "node-1", "containers": [{
                 "name": "web", "image": "echoserver", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2},
                 "env": [{"name": "MODE", "value": "fast"},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]},
             "status": {"phase": "Running", "hostIP": "127.10.0.1", "podIP": "127.244.1.5",
                        "podIPs": [{"ip": "127.244.1.5"}], "startTime": "2024-05-01T11:00:00Z",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 1,
                                               "state": {"running": {"startedAt": "2024-05-01T11:00:01Z"}}}]}})
    text = d.describe_pod(pod, [], NOW)
    assert text.startswith("Name:         web-1\nNamespace:    default\nNode:         node-1/127.10.0.1\n"
                           "Start Time:   Wed, 01 May 2024 11:00:00 +0000\n")
    for line in ("Status:       Running", "IP:           127.244.1.5", "IPs:\n  IP:           127.244.1.5",
                 "Controlled By:  ReplicaSet/web-5d", "    Port:           8080/TCP",
                 "    State:          Running\n      Started:      Wed, 01 May 2024 11:00:01 +0000",
                 "    Ready:          True\n    Restart Count:  1",
                 "    Readiness:      http-get http://:8080/healthz delay=0s timeout=1s period=2s #success=1 #failure=3",
                 "    Environment:\n      MODE:      fast\n      POD_NAME:  web-1 (v1:metadata.name)\n",
                 "Conditions:\n  Type           Status\n  Ready          True \n",
                 "QoS Class:       BestEffort", "Events:          <none>"):
        assert line in text, line
    deleting = o({"kind": "Pod", "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:50Z",
                                              "deletionGracePeriodSeconds": 30},
                  "status": {"phase": "Running"}})
    assert "Status:                    Terminating (lasts 10s)\nTermination Grace Period:  30s\n" in \
        d.describe_pod(deleting, None, NOW)


def test_describe_deployment_lists_its_replicasets():
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}
    dep = o({"kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "uid": "d1",
                                                "creationTimestamp": "2024-05-01T10:00:00Z"},
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
             "status": {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2, "unavailableReplicas": 1,
                        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}})

    def rs(name, image, replicas, created):
        t = {"metadata": {"labels": {"app": "web", "pod-template-hash": name[-3:]}},
             "spec": {"containers": [{"name": "web", "image": image}]}}
        return o({"kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                                                     "ownerReferences": [{"uid": "d1", "controller": True}]},
                  "spec": {"replicas": replicas, "template": t}, "status": {"replicas": replicas}})

    old, new = rs("web-aaa", "nginx:1", 1, "2024-05-01T10:00:00Z"), rs("web-bbb", "nginx:2", 2, "2024-05-01T11:00:00Z")
    stranger = o({"kind": "ReplicaSet", "metadata": {"name": "other", "namespace": "default"}})
    text = d.describe_deployment(dep, [new, stranger, old], [], NOW)
    for line in ("CreationTimestamp:      Wed, 01 May 2024 10:00:00 +0000",
                 "Selector:               app=web",
                 "Replicas:               3 desired | 2 updated | 3 total | 2 available | 1 unavailable",
                 "StrategyType:           RollingUpdate",
                 "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
                 "Pod Template:\n  Labels:  app=web\n  Containers:\n   web:\n    Image:         nginx:2\n",
                 "Conditions:\n  Type           Status  Reason\n  ----           ------  ------\n"
                 "  Available      True    MinimumReplicasAvailable\n",
                 "OldReplicaSets:  web-aaa (1/1 replicas created)\nNewReplicaSet:   web-bbb (2/2 replicas created)\n"):
        assert line in text, line


def test_describe_node_with_pods_and_lease():
    node = o({"kind": "Node", "metadata": {"name": "node-1", "creationTimestamp": "2024-05-01T10:00:00Z"},
              "spec": {"podCIDR": "127.244.1.0/24", "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
              "status": {"allocatable": {"cpu": "2", "memory": "8Gi"}, "capacity": {"cpu": "2", "memory": "8Gi"},
                         "addresses": [{"type": "InternalIP", "address": "127.10.0.1"}],
                         "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "ready", "lastHeartbeatTime": "2024-05-01T11:59:00Z",
                                         "lastTransitionTime": "2024-05-01T10:00:00Z"}],
                         "nodeInfo": {"kubeletVersion": "v1.31.0-kubemu"}}})
    pod = o({"kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2024-05-01T11:59:00Z"},
             "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                                   "limits": {"cpu": "1"}}},
                                     {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}})
    lease = o({"kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1",
                                                                         "renewTime": "2024-05-01T11:59:50Z"}})
    text = d.describe_node(node, [pod], lease, "", [], NOW)
    for line in ("Roles:              <none>", "Taints:             k=v:NoSchedule",
                 "Lease:\n  HolderIdentity:  node-1\n  AcquireTime:     <unset>\n  RenewTime:       Wed, 01 May 2024 11:59:50 +0000\n",
                 "  Ready   True    Wed, 01 May 2024 11:59:00 +0000   Wed, 01 May 2024 10:00:00 +0000   KubeletReady   ready\n",
                 "Addresses:\n  InternalIP:  127.10.0.1\n", "  cpu:     2\n  memory:  8Gi\n",
                 "Non-terminated Pods:          (1 in total)",
                 "  default                     web-1    1 (50%)       1 (50%)     1Gi (12%)        0 (0%)         60s",
                 "  cpu                1 (50%)    1 (50%)", "  memory             1Gi (12%)  0 (0%)"):
        assert line in text, line
    missing = d.describe_node(node, [], None, 'leases.coordination.k8s.io "node-1" not found', None, NOW)
    assert 'Lease:              Failed to get lease: leases.coordination.k8s.io "node-1" not found' in missing


def test_quantities():
    assert d.parse_quantity("500m") == decimal.Decimal("0.5")
    assert d.parse_quantity("1Gi") == 2**30
    assert d.parse_quantity("1e3") == 1000
    assert d.format_quantity(decimal.Decimal("1.5"), False) == "1500m"
    assert d.format_quantity(decimal.Decimal(2), False) == "2"
    assert d.format_quantity(decimal.Decimal(384 * 2**20), True) == "384Mi"
    assert d.format_quantity(decimal.Decimal(0), True) == "0"


def test_generic_describer_for_leases():
    lease = o({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
               "metadata": {"name": "node-1", "namespace": "kube-node-lease", "uid": "u"},
               "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}})
    text = d.describe_generic(lease, None, NOW)
    assert text == """\
Name:         node-1
Namespace:    kube-node-lease
Labels:       <none>
Annotations:  <none>
API Version:  coordination.k8s.io/v1
Kind:         Lease
Metadata:
  UID:  u
Spec:
  Holder Identity:         node-1
  Lease Duration Seconds:  40
"""
    assert d.smart_label("podCIDR") == "Pod CIDR"
    assert d.smart_label("kubernetes.io/x") == "kubernetes.io/x"

"""The `get` tables, names, YAML and JSON, byte for byte, without a server."""
from __future__ import annotations

import datetime
import json

import pytest
import yaml

from kubemu import objects
from kubemu.cli import printers

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
CREATED = "2024-05-01T11:59:55Z"  # 5s before NOW


def obj(data: dict):
    data.setdefault("metadata", {}).setdefault("creationTimestamp", CREATED)
    return objects.from_dict(data)


def table(kind: str, items, **kw) -> str:
    header = printers.table_header(kind, wide=kw.get("wide", False),
                                   all_namespaces=kw.get("all_namespaces", False))
    rows = [printers.table_row(o, NOW, **kw) for o in items]
    return printers.render_table([header, *rows])


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (2 * 86400, "2d"), (2 * 86400 + 3600, "2d1h"),
    (8 * 86400, "8d"), (400 * 86400, "400d"), (800 * 86400, "2y70d"), (3000 * 86400, "8y"),
])
def test_human_duration_matches_apimachinery(seconds, text):
    assert printers.human_duration(seconds) == text


def test_tabwriter_aligns_like_go():
    # column blocks end where a line has fewer cells; the last cell is never padded
    text = "Name:\tweb\nPort:\t<unset>\t80/TCP\nTargetPort:\t80/TCP\nEvents:\n  Type\tReason\n  ----\t------\n"
    assert printers.tabwrite(text, 0, 2) == (
        "Name:        web\n"
        "Port:        <unset>  80/TCP\n"
        "TargetPort:  80/TCP\n"
        "Events:\n"
        "  Type  Reason\n"
        "  ----  ------\n")
    # kubectl's table writer: minimum width 6, padding 3
    assert printers.render_table([["NAME", "READY", "AGE"], ["a", "1/1", "5s"]]) == \
        "NAME   READY   AGE\na      1/1     5s"


def test_service_table_for_every_type():
    svcs = [
        obj({"kind": "Service", "metadata": {"name": "web"}, "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web", "tier": "fe"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
        obj({"kind": "Service", "metadata": {"name": "np"}, "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
        obj({"kind": "Service", "metadata": {"name": "lb-pending"}, "spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"],
            "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}}),
        obj({"kind": "Service", "metadata": {"name": "lb"}, "spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.0.13", "clusterIPs": ["10.96.0.13"],
            "ports": [{"port": 80, "nodePort": 30001, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}}}),
        obj({"kind": "Service", "metadata": {"name": "db"}, "spec": {
            "type": "ExternalName", "externalName": "my.database.example.com"}}),
        obj({"kind": "Service", "metadata": {"name": "headless"}, "spec": {
            "clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}}),
    ]
    assert table("Service", svcs) == """\
NAME         TYPE           CLUSTER-IP   EXTERNAL-IP               PORT(S)         AGE
web          ClusterIP      10.96.0.10   <none>                    80/TCP,53/UDP   5s
np           NodePort       10.96.0.11   <none>                    80:30080/TCP    5s
lb-pending   LoadBalancer   10.96.0.12   <pending>                 443:31443/TCP   5s
lb           LoadBalancer   10.96.0.13   127.200.0.1               80:30001/TCP    5s
db           ExternalName   <none>       my.database.example.com   <none>          5s
headless     ClusterIP      None         <none>                    80/TCP          5s"""
    wide = table("Service", svcs[:2], wide=True)
    assert wide.splitlines()[0].endswith("AGE   SELECTOR")
    assert wide.splitlines()[1].endswith("5s    app=web,tier=fe")
    assert wide.splitlines()[2].endswith("5s    <none>")


def test_load_balancer_ips_are_clipped_unless_wide():
    svc = obj({"kind": "Service", "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"},
               "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.11"}, {"ip": "127.200.0.10"}]}}})
    assert printers.service_external_ip(svc, wide=False) == "127.200.0.10,..."
    assert printers.service_external_ip(svc, wide=True) == "127.200.0.10,127.200.0.11"


def test_all_namespaces_and_kind_prefix():
    svc = obj({"kind": "Service", "metadata": {"name": "web", "namespace": "prod"},
               "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}})
    out = printers.render_table([printers.table_header("Service", all_namespaces=True),
                                 printers.table_row(svc, NOW, all_namespaces=True, with_kind=True)])
    assert out.splitlines() == [
        "NAMESPACE   NAME          TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE",
        "prod        service/web   ClusterIP   10.0.0.1     <none>        80/TCP    5s"]
    assert printers.qualified_name(svc) == "service/web"
    dep = obj({"kind": "Deployment", "metadata": {"name": "web"}})
    assert printers.qualified_name(dep) == "deployment.apps/web"


def _pod(name, status, *, deleting=False, spec=None):
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:30Z"
    return obj({"kind": "Pod", "metadata": meta,
                "spec": spec or {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
                "status": status})


def test_pod_table_states():
    running = _pod("running", {"phase": "Running", "podIP": "127.244.1.5", "podIPs": [{"ip": "127.244.1.5"}],
                               "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                                      "state": {"running": {"startedAt": CREATED}}}]})
    crash = _pod("crash", {"phase": "Running", "containerStatuses": [{
        "name": "c", "ready": False, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}]})
    pending = _pod("pending", {"phase": "Pending"}, spec={"containers": [{"name": "c", "image": "x"}]})
    terminating = _pod("terminating", {"phase": "Running", "containerStatuses": [
        {"name": "c", "ready": True, "state": {"running": {}}}]}, deleting=True)
    done = _pod("done", {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    init = _pod("init", {"phase": "Pending", "initContainerStatuses": [
        {"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]},
        spec={"initContainers": [{"name": "i", "image": "x"}], "containers": [{"name": "c", "image": "x"}]})
    assert table("Pod", [running, crash, pending, terminating, done, init]) == """\
NAME          READY   STATUS             RESTARTS     AGE
running       1/1     Running            0            5s
crash         0/1     CrashLoopBackOff   3 (2m ago)   5s
pending       0/1     Pending            0            5s
terminating   1/1     Terminating        0            5s
done          0/1     Completed          0            5s
init          0/1     Init:0/1           0            5s"""
    wide = table("Pod", [running, pending], wide=True).splitlines()
    assert wide[0] == "NAME      READY   STATUS    RESTARTS   AGE   IP            NODE     NOMINATED NODE   READINESS GATES"
    assert wide[1] == "running   1/1     Running   0          5s    127.244.1.5   node-1   <none>           <none>"
    assert wide[2] == "pending   0/1     Pending   0          5s    <none>        <none>   <none>           <none>"


def test_deployment_and_replicaset_tables():
    dep = obj({"kind": "Deployment", "metadata": {"name": "my-nginx"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"run": "my-nginx"}},
        "template": {"spec": {"containers": [{"name": "my-nginx", "image": "nginx"}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}})
    assert table("Deployment", [dep]) == (
        "NAME       READY   UP-TO-DATE   AVAILABLE   AGE\n"
        "my-nginx   1/2     2            1           5s")
    assert table("Deployment", [dep], wide=True).splitlines()[1].endswith("5s    my-nginx     nginx    run=my-nginx")
    default_replicas = obj({"kind": "Deployment", "metadata": {"name": "d"}})
    assert printers.deployment_row(default_replicas, NOW, False)[1] == "0/1"
    rs = obj({"kind": "ReplicaSet", "metadata": {"name": "my-nginx-5d4b8"}, "spec": {"replicas": 2},
              "status": {"replicas": 2, "readyReplicas": 1}})
    assert table("ReplicaSet", [rs]) == (
        "NAME             DESIRED   CURRENT   READY   AGE\n"
        "my-nginx-5d4b8   2         2         1       5s")


def test_node_table():
    ready = obj({"kind": "Node", "metadata": {"name": "node-1", "labels": {
        "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "127.10.0.1"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.0-kubemu", "osImage": "kubemu",
                                "kernelVersion": "6.1", "containerRuntimeVersion": "kubemu://0.1"}}})
    down = obj({"kind": "Node", "metadata": {"name": "node-2"},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    unknown = obj({"kind": "Node", "metadata": {"name": "node-3"}})
    assert table("Node", [ready, down, unknown]) == """\
NAME     STATUS                     ROLES                AGE   VERSION
node-1   Ready,SchedulingDisabled   control-plane,edge   5s    v1.31.0-kubemu
node-2   NotReady                   <none>               5s    
node-3   Unknown                    <none>               5s    """
    wide = table("Node", [ready], wide=True).splitlines()
    assert wide[0].endswith("VERSION          INTERNAL-IP   EXTERNAL-IP   OS-IMAGE   KERNEL-VERSION   CONTAINER-RUNTIME")
    assert wide[1].endswith("v1.31.0-kubemu   127.10.0.1    <none>        kubemu     6.1              kubemu://0.1")


def test_endpointslice_namespace_event_lease_tables():
    eps = obj({"kind": "EndpointSlice", "metadata": {"name": "web-abc"}, "addressType": "IPv4",
               "ports": [{"port": 8080}, {"name": "x"}, {"port": 1}, {"port": 2}],
               "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)]})
    empty = obj({"kind": "EndpointSlice", "metadata": {"name": "empty"}, "addressType": "IPv4"})
    assert table("EndpointSlice", [eps, empty]) == """\
NAME      ADDRESSTYPE   PORTS                  ENDPOINTS                                AGE
web-abc   IPv4          8080,x,1 + 1 more...   10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...   5s
empty     IPv4          <unset>                <unset>                                  5s"""
    ns = obj({"kind": "Namespace", "metadata": {"name": "prod"}})
    assert table("Namespace", [ns]) == "NAME   STATUS   AGE\nprod   Active   5s"
    ev = obj({"kind": "Event", "metadata": {"name": "web.1"}, "type": "Warning", "reason": "PortInUse",
              "involvedObject": {"kind": "Service", "name": "web"}, "message": "  port 80 in use \n",
              "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z",
              "count": 4, "source": {"component": "nodeagent", "host": "node-1"}})
    assert table("Event", [ev]) == (
        "LAST SEEN           TYPE      REASON      OBJECT        MESSAGE\n"
        "60s (x4 over 10m)   Warning   PortInUse   service/web   port 80 in use")
    wide = table("Event", [ev], wide=True).splitlines()
    assert wide[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE",
                               "MESSAGE", "FIRST", "SEEN", "COUNT", "NAME"]
    assert "nodeagent, node-1" in wide[1] and wide[1].endswith("10m          4       web.1")
    lease = obj({"kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}})
    assert table("Lease", [lease]) == "NAME     HOLDER   AGE\nnode-1   node-1   5s"


def test_table_writer_remembers_widths_for_watch():
    w = printers.TableWriter()
    first = w.render([["NAME", "AGE"], ["a-long-name", "5s"]])
    later = w.render([["b", "6s"]])
    assert first.splitlines()[1] == "a-long-name   5s"
    assert later == "b             6s"


def test_yaml_is_kubectl_shaped():
    text = printers.to_yaml({"spec": {"ports": [{"port": 80, "name": "80"}]}, "kind": "Service",
                             "metadata": {"resourceVersion": "12", "annotations": {"a": "x\ny\n"},
                                          "creationTimestamp": "2024-05-01T11:59:55Z", "name": ""},
                             "data": {"flag": "yes", "on": "true", "plain": "web"}})
    assert text == """\
data:
  flag: "yes"
  "on": "true"
  plain: web
kind: Service
metadata:
  annotations:
    a: |
      x
      y
  creationTimestamp: "2024-05-01T11:59:55Z"
  name: ""
  resourceVersion: "12"
spec:
  ports:
  - name: "80"
    port: 80
"""
    assert yaml.safe_load(text)["metadata"]["resourceVersion"] == "12"


def test_json_is_encoding_json_shaped():
    text = printers.to_json({"b": "<none>", "a": [1, {"c": "&"}]})
    assert text == '{\n    "a": [\n        1,\n        {\n            "c": "\\u0026"\n        }\n    ],\n    "b": "\\u003cnone\\u003e"\n}'
    assert json.loads(text) == {"b": "<none>", "a": [1, {"c": "&"}]}


def test_list_wrapper():
    svc = obj({"kind": "Service", "metadata": {"name": "a"}})
    lst = printers.as_list([svc])
    assert lst["kind"] == "List" and lst["apiVersion"] == "v1"
    assert lst["metadata"] == {"resourceVersion": ""}
    assert lst["items"][0]["metadata"]["name"] == "a"


def test_secret_ingress_ingressclass_tables():
    secret = obj({"kind": "Secret", "metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                  "data": {"tls.crt": "aGVsbG8=", "tls.key": "aGk="}})
    opaque = obj({"kind": "Secret", "metadata": {"name": "plain"}, "stringData": {"a": "b"}})
    assert table("Secret", [secret, opaque]) == (
        "NAME    TYPE                DATA   AGE\n"
        "tls     kubernetes.io/tls   2      5s\n"
        "plain   Opaque              1      5s")
    ing = obj({"kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "web"},
               "spec": {"ingressClassName": "kubemu", "rules": [{"host": f"h{i}.example"} for i in range(4)],
                        "tls": [{"hosts": ["h0.example"]}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.5"}]}}})
    bare = obj({"kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "bare"}})
    assert table("Ingress", [ing, bare]) == (
        "NAME   CLASS    HOSTS                                          ADDRESS       PORTS     AGE\n"
        "web    kubemu   h0.example,h1.example,h2.example + 1 more...   127.200.0.5   80, 443   5s\n"
        "bare   <none>   *                                                            80        5s")
    ic = obj({"kind": "IngressClass", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "kubemu"},
              "spec": {"controller": "kubemu.io/ingress",
                       "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}})
    assert table("IngressClass", [ic]) == (
        "NAME     CONTROLLER          PARAMETERS                            AGE\n"
        "kubemu   kubemu.io/ingress   IngressParameters.k8s.example.com/p   5s")

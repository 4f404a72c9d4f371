"""The kubectl-shaped commands against a real API server process.

Every test works in a namespace of its own; NodePorts are cluster-wide, so the tests that pin
one use a port no other test uses.
"""
from __future__ import annotations

import json
import re

import yaml

from cli_env import manifest


def contains(actual, expected) -> bool:
    """Every field of `expected` is in `actual` with the same value (lists item by item)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(contains(a, e) for a, e in zip(actual, expected))
    return actual == expected


def docs(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def read(cluster, kind: str, name: str, ns: str) -> dict:
    return json.loads(cluster.ok("get", kind, name, "-n", ns, "-o", "json"))


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ------------------------------------------------------------------ documentation manifests

def test_connecting_applications_with_services_manifests(cli_cluster, ns):
    out = cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-f", manifest("nginx-svc.yaml"), "-n", ns)
    assert out == "deployment.apps/my-nginx created\nservice/my-nginx created\n"
    deploy, = docs(manifest("run-my-nginx.yaml"))
    svc, = docs(manifest("nginx-svc.yaml"))
    live_deploy = read(cli_cluster, "deploy", "my-nginx", ns)
    live_svc = read(cli_cluster, "svc", "my-nginx", ns)
    assert contains(live_deploy, deploy)
    assert contains(live_svc, svc)
    assert live_svc["spec"]["clusterIP"]  # allocated by the API server
    out = cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-f", manifest("nginx-svc.yaml"), "-n", ns)
    assert out == "deployment.apps/my-nginx unchanged\nservice/my-nginx unchanged\n"


def test_multi_port_service_manifest(cli_cluster, ns):
    assert cli_cluster.ok("apply", "-f", manifest("multi-port-service.yaml"), "-n", ns) == "service/my-service created\n"
    svc, = docs(manifest("multi-port-service.yaml"))
    live = read(cli_cluster, "service", "my-service", ns)
    assert contains(live, svc)
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o", "jsonpath={.items[0].spec.ports[*].name}") == "http https"
    assert cli_cluster.ok("apply", "-f", manifest("multi-port-service.yaml"), "-n", ns) == "service/my-service unchanged\n"


def test_nodeport_manifest_keeps_its_port_and_collisions_fail(cli_cluster, ns, tmp_path):
    assert cli_cluster.ok("apply", "-f", manifest("nodeport-service.yaml"), "-n", ns) == "service/my-service created\n"
    svc, = docs(manifest("nodeport-service.yaml"))
    live = read(cli_cluster, "svc", "my-service", ns)
    assert contains(live, svc)
    assert live["spec"]["ports"][0]["nodePort"] == 30007
    table = cli_cluster.ok("get", "svc", "my-service", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert table[0].index("PORT(S)") == table[1].index("80:30007/TCP")
    assert table[1].split()[:5] == ["my-service", "NodePort", live["spec"]["clusterIP"], "<none>", "80:30007/TCP"]
    assert cli_cluster.ok("apply", "-f", manifest("nodeport-service.yaml"), "-n", ns) == "service/my-service unchanged\n"

    other = write(tmp_path, "other.yaml", open(manifest("nodeport-service.yaml")).read().replace(
        "name: my-service", "name: other"))
    r = cli_cluster.kubemu("apply", "-f", other, "-n", ns)
    assert r.exit_code == 1
    assert r.stderr == ('The Service "other" is invalid: spec.ports[0].nodePort: Invalid value: 30007: '
                        "provided port is already allocated\n")
    high = write(tmp_path, "high.yaml", open(manifest("nodeport-service.yaml")).read().replace(
        "name: my-service", "name: high").replace("30007", "40000"))
    r = cli_cluster.kubemu("create", "-f", high, "-n", ns)
    assert r.exit_code == 1
    assert r.stderr == ('The Service "high" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided '
                        "port is not in the valid range. The range of valid ports is 30000-32767\n")


def test_selectorless_service_with_endpointslice(cli_cluster, ns):
    out = cli_cluster.ok("apply", "-f", manifest("service-without-selector.yaml"), "-f",
                         manifest("endpointslice.yaml"), "-n", ns)
    assert out == "service/my-service created\nendpointslice.discovery.k8s.io/my-service-1 created\n"
    eps, = docs(manifest("endpointslice.yaml"))
    svc, = docs(manifest("service-without-selector.yaml"))
    assert contains(read(cli_cluster, "endpointslices", "my-service-1", ns), eps)
    assert contains(read(cli_cluster, "svc", "my-service", ns), svc)
    slices = cli_cluster.ok("get", "endpointslice", "-n", ns).splitlines()
    assert slices[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert slices[1].split()[:4] == ["my-service-1", "IPv4", "9376", "10.4.5.6,10.1.2.3"]
    described = cli_cluster.ok("describe", "svc", "my-service", "-n", ns)
    assert "\nSelector:                 <none>\n" in described
    assert "\nEndpoints:                10.4.5.6:9376,10.1.2.3:9376\n" in described


def test_externalname_service_in_its_namespace(cli_cluster):
    cli_cluster.ok("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n")
    assert cli_cluster.ok("apply", "-f", manifest("externalname-service.yaml")) in (
        "service/my-service created\n", "service/my-service unchanged\n")
    svc, = docs(manifest("externalname-service.yaml"))
    assert contains(read(cli_cluster, "svc", "my-service", "prod"), svc)
    row = cli_cluster.ok("get", "svc", "my-service", "-n", "prod").splitlines()[1].split()
    assert row[:5] == ["my-service", "ExternalName", "<none>", "my.database.example.com", "<none>"]
    r = cli_cluster.kubemu("apply", "-f", manifest("externalname-service.yaml"), "-n", "default")
    assert r.exit_code == 1
    assert r.stderr == ('error: the namespace from the provided object "prod" does not match the namespace '
                        "\"default\". You must pass '--namespace=prod' to perform this operation.\n")


# ------------------------------------------------------------------ apply semantics

def test_apply_keeps_server_fields_and_removes_dropped_ones(cli_cluster, ns, tmp_path):
    base = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {app: web%s}\n"
            "spec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - port: 80\n")
    path = write(tmp_path, "web.yaml", base % ", tier: fe")
    assert cli_cluster.ok("apply", "-f", path, "-n", ns) == "service/web created\n"
    first = read(cli_cluster, "svc", "web", ns)
    node_port = first["spec"]["ports"][0]["nodePort"]
    cluster_ip = first["spec"]["clusterIP"]
    assert 30000 <= node_port <= 32767
    assert cli_cluster.ok("apply", "-f", path, "-n", ns) == "service/web unchanged\n"
    write(tmp_path, "web.yaml", base % "")
    assert cli_cluster.ok("apply", "-f", path, "-n", ns) == "service/web configured\n"
    second = read(cli_cluster, "svc", "web", ns)
    assert second["metadata"]["labels"] == {"app": "web"}
    assert second["spec"]["clusterIP"] == cluster_ip
    assert second["spec"]["ports"][0]["nodePort"] == node_port
    # fields changed by someone else stay when this manifest does not mention them
    cli_cluster.ok("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    assert cli_cluster.ok("apply", "-f", path, "-n", ns) == "service/web unchanged\n"
    assert read(cli_cluster, "svc", "web", ns)["spec"]["sessionAffinity"] == "ClientIP"


def test_apply_a_list_and_a_directory(cli_cluster, ns, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 1}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": 2}]}}]}))
    (d / "c.yml").write_text("kind: Service\napiVersion: v1\nmetadata: {name: c}\nspec: {ports: [{port: 3}]}\n")
    assert cli_cluster.ok("apply", "-f", str(d), "-n", ns) == \
        "service/a created\nservice/b created\nservice/c created\n"
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o", "name") == "service/a\nservice/b\nservice/c\n"


def test_apply_reports_each_failure_and_goes_on(cli_cluster, ns, tmp_path):
    path = write(tmp_path, "mixed.yaml", "kind: Service\napiVersion: v1\nmetadata: {name: ok1}\n"
                 "spec: {ports: [{port: 1}]}\n---\nkind: Service\napiVersion: v1\nmetadata: {name: Bad_Name}\n"
                 "spec: {ports: [{port: 1}]}\n---\nkind: Service\napiVersion: v1\nmetadata: {name: ok2}\n"
                 "spec: {ports: [{port: 2}]}\n")
    r = cli_cluster.kubemu("apply", "-f", path, "-n", ns)
    assert r.exit_code == 1
    assert r.stdout == "service/ok1 created\nservice/ok2 created\n"
    assert r.stderr.startswith('The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')


def test_create_and_already_exists(cli_cluster, ns):
    assert cli_cluster.ok("create", "-f", manifest("nginx-svc.yaml"), "-n", ns) == "service/my-nginx created\n"
    r = cli_cluster.kubemu("create", "-f", manifest("nginx-svc.yaml"), "-n", ns)
    assert r.exit_code == 1
    assert r.stderr == (f'Error from server (AlreadyExists): error when creating "{manifest("nginx-svc.yaml")}": '
                        'services "my-nginx" already exists\n')
    # created without --save-config: apply warns, then takes over
    r = cli_cluster.kubemu("apply", "-f", manifest("nginx-svc.yaml"), "-n", ns)
    assert r.exit_code == 0 and r.stdout == "service/my-nginx configured\n"
    assert "missing the kubectl.kubernetes.io/last-applied-configuration annotation" in r.stderr
    assert cli_cluster.ok("apply", "-f", manifest("nginx-svc.yaml"), "-n", ns) == "service/my-nginx unchanged\n"


# ------------------------------------------------------------------ get

def test_get_tables_and_kinds(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-f", manifest("nginx-svc.yaml"), "-n", ns)
    ip = read(cli_cluster, "svc", "my-nginx", ns)["spec"]["clusterIP"]
    out = cli_cluster.ok("get", "svc", "-n", ns)
    header, row = out.splitlines()
    assert re.fullmatch(r"NAME       TYPE        CLUSTER-IP +EXTERNAL-IP   PORT\(S\)   AGE", header)
    assert re.fullmatch(rf"my-nginx   ClusterIP   {re.escape(ip)} +<none>        80/TCP    \d+s", row)
    assert header.index("EXTERNAL-IP") == len("my-nginx   ClusterIP   ") + len(ip) + 3
    wide = cli_cluster.ok("get", "services", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].endswith("AGE   SELECTOR") and wide[1].endswith("run=my-nginx")
    both = cli_cluster.ok("get", "svc,deploy", "-n", ns).split("\n\n")
    assert len(both) == 2
    assert both[0].splitlines()[1].startswith("service/my-nginx   ClusterIP")
    assert both[1].splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert both[1].splitlines()[1].split()[:4] == ["deployment.apps/my-nginx", "0/2", "0", "0"]
    every = cli_cluster.ok("get", "svc", "-A").splitlines()
    assert every[0].startswith("NAMESPACE   NAME")
    assert any(line.split()[:2] == [ns, "my-nginx"] for line in every[1:])
    assert cli_cluster.ok("get", "svc/my-nginx", "deploy/my-nginx", "-n", ns, "-o", "name") == \
        "service/my-nginx\ndeployment.apps/my-nginx\n"
    labels = cli_cluster.ok("get", "svc", "-n", ns, "--show-labels").splitlines()
    assert labels[0].endswith("AGE   LABELS") and labels[1].endswith("run=my-nginx")
    assert cli_cluster.ok("get", "svc", "-n", ns, "-l", "run=nope") == ""
    r = cli_cluster.kubemu("get", "pods", "-n", ns)
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == f"No resources found in {ns} namespace.\n"
    r = cli_cluster.kubemu("get", "svc", "my-nginx", "nope", "-n", ns)
    assert r.exit_code == 1
    assert r.stdout.splitlines()[1].startswith("my-nginx")
    assert r.stderr == 'Error from server (NotFound): services "nope" not found\n'


def test_get_yaml_json_jsonpath_name(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", manifest("multi-port-service.yaml"), "-f", manifest("nginx-svc.yaml"), "-n", ns)
    one = yaml.safe_load(cli_cluster.ok("get", "svc", "my-nginx", "-n", ns, "-o", "yaml"))
    assert one["kind"] == "Service" and one["metadata"]["name"] == "my-nginx"
    many = yaml.safe_load(cli_cluster.ok("get", "svc", "-n", ns, "-o", "yaml"))
    assert many["kind"] == "List" and [i["metadata"]["name"] for i in many["items"]] == ["my-nginx", "my-service"]
    as_json = json.loads(cli_cluster.ok("get", "svc", "-n", ns, "-o", "json"))
    assert as_json["items"] == many["items"]
    ip = one["spec"]["clusterIP"]
    assert cli_cluster.ok("get", "svc", "my-nginx", "-n", ns, "-o", "jsonpath={.spec.clusterIP}") == ip
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}") == "my-nginx my-service"
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o",
                          'jsonpath={range .items[*]}{.metadata.name}:{.spec.ports[0].port}{"\\n"}{end}') == \
        "my-nginx:80\nmy-service:80\n"
    cols = cli_cluster.ok("get", "svc", "-n", ns, "-o", "custom-columns=NAME:.metadata.name,PORTS:.spec.ports[*].port")
    assert cols.splitlines() == ["NAME         PORTS", "my-nginx     80", "my-service   80,443"]
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o", "name", "--sort-by", ".metadata.name") == \
        "service/my-nginx\nservice/my-service\n"
    empty = yaml.safe_load(cli_cluster.ok("get", "deploy", "-n", ns, "-o", "yaml"))
    assert empty == {"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}}


# ------------------------------------------------------------------ delete, patch, scale, expose

def test_delete_by_label_name_and_file(cli_cluster, ns, tmp_path):
    for name, app in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        cli_cluster.ok("apply", "-f", "-", "-n", ns, input=(
            f"kind: Service\napiVersion: v1\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\n"
            "spec: {ports: [{port: 80}]}\n"))
    assert cli_cluster.ok("delete", "svc", "-l", "app=a", "-n", ns) == 'service "a1" deleted\nservice "a2" deleted\n'
    assert cli_cluster.ok("get", "svc", "-n", ns, "-o", "name") == "service/b1\n"
    r = cli_cluster.kubemu("delete", "svc", "-l", "app=a", "-n", ns)
    assert r.exit_code == 0 and r.stderr == "No resources found\n"
    r = cli_cluster.kubemu("delete", "svc", "b1", "nope", "-n", ns)
    assert r.exit_code == 1
    assert r.stdout == 'service "b1" deleted\n'
    assert r.stderr == 'Error from server (NotFound): services "nope" not found\n'
    cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-n", ns)
    assert cli_cluster.ok("delete", "-f", manifest("run-my-nginx.yaml"), "-n", ns, "--cascade=orphan") == \
        'deployment.apps "my-nginx" deleted\n'
    r = cli_cluster.kubemu("delete", "svc", "-n", ns)
    assert r.exit_code == 1 and r.stderr == "error: resource(s) were provided, but no name was specified\n"


def test_patch_merge_strategic_json_and_status(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", "-", "-n", ns, input=(
        "kind: Service\napiVersion: v1\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n"
        "  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]\n"))
    row = cli_cluster.ok("get", "svc", "lb", "-n", ns).splitlines()[1].split()
    assert row[1] == "LoadBalancer" and row[3] == "<pending>"
    assert cli_cluster.ok("patch", "svc", "lb", "-n", ns, "--type", "merge", "-p",
                          '{"metadata":{"labels":{"tier":"edge"}}}') == "service/lb patched\n"
    assert cli_cluster.ok("patch", "svc", "lb", "-n", ns, "--type", "merge", "-p",
                          '{"metadata":{"labels":{"tier":"edge"}}}') == "service/lb patched (no change)\n"
    node_ports = [p["nodePort"] for p in read(cli_cluster, "svc", "lb", ns)["spec"]["ports"]]
    # strategic: ports merge by port+protocol, so allocated nodePorts survive
    assert cli_cluster.ok("patch", "svc/lb", "-n", ns, "-p",
                          "spec:\n  ports:\n  - port: 80\n    targetPort: 8080\n") == "service/lb patched\n"
    live = read(cli_cluster, "svc", "lb", ns)
    assert [p["nodePort"] for p in live["spec"]["ports"]] == node_ports
    assert live["spec"]["ports"][0]["targetPort"] == 8080
    assert cli_cluster.ok("patch", "svc", "lb", "-n", ns, "--type", "json", "-p",
                          '[{"op":"replace","path":"/spec/sessionAffinity","value":"ClientIP"}]') == "service/lb patched\n"
    assert cli_cluster.ok("patch", "svc", "lb", "-n", ns, "--type", "merge", "--subresource", "status", "-p",
                          '{"status":{"loadBalancer":{"ingress":[{"ip":"127.200.0.9"}]}}}') == "service/lb patched\n"
    row = cli_cluster.ok("get", "svc", "lb", "-n", ns).splitlines()[1].split()
    assert row[3] == "127.200.0.9" and row[4] == f"80:{node_ports[0]}/TCP,53:{node_ports[1]}/UDP"
    r = cli_cluster.kubemu("patch", "svc", "lb", "-n", ns, "-p", "{bad")
    assert r.exit_code == 1 and r.stderr.startswith('error: unable to parse "{bad": yaml: line ')
    r = cli_cluster.kubemu("patch", "svc", "lb", "-n", ns, "--type", "merge", "-p", '{"spec":{"type":"Bogus"}}')
    assert r.exit_code == 1 and r.stderr.startswith('The Service "lb" is invalid: spec.type: Unsupported value: "Bogus"')


def test_scale(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-n", ns)
    assert cli_cluster.ok("scale", "deployment", "my-nginx", "--replicas", "5", "-n", ns) == \
        "deployment.apps/my-nginx scaled\n"
    assert cli_cluster.ok("get", "deploy", "my-nginx", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "5"
    r = cli_cluster.kubemu("scale", "deploy/my-nginx", "--replicas", "1", "--current-replicas", "3", "-n", ns)
    assert r.exit_code == 1 and r.stderr == "error: Expected replicas to be 3, was 5\n"
    assert cli_cluster.ok("scale", "deploy/my-nginx", "--replicas", "1", "--current-replicas", "5", "-n", ns) == \
        "deployment.apps/my-nginx scaled\n"
    # the next apply gives the manifest's replicas back, as kubectl apply does
    assert cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-n", ns) == "deployment.apps/my-nginx configured\n"
    assert cli_cluster.ok("get", "deploy", "my-nginx", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
    r = cli_cluster.kubemu("scale", "svc", "x", "--replicas", "2", "-n", ns)
    assert r.exit_code == 1
    assert r.stderr == "Error from server (NotFound): the server could not find the requested resource\n"


def test_expose(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", manifest("run-my-nginx.yaml"), "-n", ns)
    assert cli_cluster.ok("expose", "deployment", "my-nginx", "-n", ns) == "service/my-nginx exposed\n"
    svc = read(cli_cluster, "svc", "my-nginx", ns)
    assert svc["spec"]["selector"] == {"run": "my-nginx"}
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]] == [(80, 80, "TCP")]
    assert cli_cluster.ok("expose", "deploy/my-nginx", "--port", "8080", "--target-port", "80", "--name", "web-np",
                          "--type", "NodePort", "-n", ns) == "service/web-np exposed\n"
    svc = read(cli_cluster, "svc", "web-np", ns)
    assert svc["spec"]["type"] == "NodePort"
    port, = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, 80) and 30000 <= port["nodePort"] <= 32767
    assert cli_cluster.ok("expose", "svc", "web-np", "--name", "again", "--port", "81", "-n", ns) == \
        "service/again exposed\n"
    assert read(cli_cluster, "svc", "again", ns)["spec"]["selector"] == {"run": "my-nginx"}
    dry = yaml.safe_load(cli_cluster.ok("expose", "deploy", "my-nginx", "--name", "dry", "--dry-run=client",
                                        "-o", "yaml", "-n", ns))
    assert dry["metadata"]["name"] == "dry" and dry["spec"]["ports"][0]["port"] == 80
    assert cli_cluster.kubemu("get", "svc", "dry", "-n", ns).exit_code == 1
    r = cli_cluster.kubemu("expose", "deployment", "nope", "--port", "80", "-n", ns)
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'
    r = cli_cluster.kubemu("expose", "namespace", ns)
    assert r.exit_code == 1 and r.stderr == "error: cannot expose a Namespace\n"


# ------------------------------------------------------------------ describe

def test_describe_service_with_events_and_deployment(cli_cluster, ns):
    cli_cluster.ok("apply", "-f", manifest("nginx-svc.yaml"), "-f", manifest("run-my-nginx.yaml"), "-n", ns)
    uid = read(cli_cluster, "svc", "my-nginx", ns)["metadata"]["uid"]
    cli_cluster.ok("create", "-f", "-", "-n", ns, input=(
        "apiVersion: v1\nkind: Event\nmetadata: {name: my-nginx.1}\ntype: Warning\nreason: NoEndpoints\n"
        f"message: no ready endpoints\ninvolvedObject: {{kind: Service, name: my-nginx, namespace: {ns}, uid: {uid}}}\n"
        "source: {component: tester}\nfirstTimestamp: '2020-01-01T00:00:00Z'\nlastTimestamp: '2020-01-01T00:00:00Z'\n"
        "count: 1\n"))
    text = cli_cluster.ok("describe", "svc", "my-nginx", "-n", ns)
    lines = text.splitlines()
    assert lines[:3] == ["Name:                     my-nginx", f"Namespace:                {ns}",
                         "Labels:                   run=my-nginx"]
    for line in ("Annotations:              <none>", "Selector:                 run=my-nginx",
                 "Type:                     ClusterIP", "Port:                     <unset>  80/TCP",
                 "TargetPort:               80/TCP", "Endpoints:                <none>",
                 "Session Affinity:         None", "Events:"):
        assert line in lines, line
    header = lines.index("Events:") + 1
    assert lines[header].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert re.fullmatch(r"  Warning  NoEndpoints  \d+y\d*d? +tester  no ready endpoints", lines[header + 2])
    deploy = cli_cluster.ok("describe", "deployment", "my-nginx", "-n", ns)
    assert "Replicas:               2 desired | 0 updated | 0 total | 0 available | 0 unavailable" in deploy
    assert "  Containers:\n   my-nginx:\n    Image:         nginx\n    Port:          80/TCP\n" in deploy
    both = cli_cluster.ok("describe", "svc", "-n", ns, "--no-show-events")
    assert both.startswith("Name:") and "Events:" not in both
    r = cli_cluster.kubemu("describe", "svc", "nope", "-n", ns)
    assert r.exit_code == 1 and r.stderr == 'Error from server (NotFound): services "nope" not found\n'

"""`kubemu` as a real process: exit status, stdin, `get -w` ended by a timeout or Ctrl-C, and no
traceback for any user mistake."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from kubemu.testing import procs

from cli_env import manifest

BAD_YAML = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n    targetPort 80\n"
BAD_FIELD = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: eighty\n"


@pytest.fixture
def files(tmp_path):
    bad_yaml = tmp_path / "web.yaml"
    bad_yaml.write_text(BAD_YAML)
    bad_field = tmp_path / "field.yaml"
    bad_field.write_text("kind: Namespace\napiVersion: v1\nmetadata: {name: x}\n---\n" + BAD_FIELD)
    return {"yaml": str(bad_yaml), "field": str(bad_field), "empty_dir": str(tmp_path / "nothing")}


MISTAKES = [
    (["get", "foo"], 'error: the server doesn\'t have a resource type "foo"'),
    (["get"], "error: You must specify the type of resource to get."),
    (["get", "svc", "-o", "xml"], 'error: unable to match a printer suitable for the output format "xml"'),
    (["get", "svc", "-o", "jsonpath={.a"], "error: error parsing jsonpath {.a, unclosed action"),
    (["get", "svc", "-o", "custom-columns=NAME"], "error: unexpected custom-columns spec: NAME"),
    (["get", "svc", "x", "-A"], "error: a resource cannot be retrieved by name across all namespaces"),
    (["get", "svc", "svc/x"], "error: there is no need to specify a resource type as a separate argument"),
    (["get", "svc", "-l", "a in (b"], "Error from server (BadRequest): unable to parse requirement"),
    (["apply", "-f", "{yaml}"], "error: error parsing {yaml}: error converting YAML to JSON: yaml: line 8: "
                                "could not find expected ':'"),
    (["apply", "-f", "{field}"], 'error: error validating "{field}" (document 2): error validating data: '
                                 "ValidationError(Service.spec.ports[0].port): expected integer"),
    (["apply", "-f", "/nonexistent.yaml"], 'error: the path "/nonexistent.yaml" does not exist'),
    (["create", "-f", "{field}"], 'error: error validating "{field}" (document 2)'),
    (["describe", "svc", "nope"], 'Error from server (NotFound): services "nope" not found'),
    (["delete", "svc", "nope"], 'Error from server (NotFound): services "nope" not found'),
    (["delete", "svc", "x", "--cascade", "sideways"], "error: invalid cascade value (sideways)"),
    (["patch", "svc", "nope", "-p", "{}"], 'Error from server (NotFound): services "nope" not found'),
    (["patch", "svc", "x", "-p", "{bad"], 'error: unable to parse "{bad": yaml: line'),
    (["patch", "svc", "-p", "{}"], "error: patch needs exactly one object"),
    (["scale", "deploy", "nope", "--replicas", "2"], 'Error from server (NotFound): deployments.apps "nope" not found'),
    (["expose", "node", "x"], "error: cannot expose a Node"),
    (["expose"], "error: You must provide one or more resources"),
]


@pytest.mark.parametrize("args,expected", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_user_mistakes_exit_1_with_one_message_and_no_traceback(cli_cluster, files, args, expected):
    def fill(text: str) -> str:
        return text.replace("{yaml}", files["yaml"]).replace("{field}", files["field"])

    r = cli_cluster.kubemu_proc(*[fill(a) for a in args])
    assert r.exit_code == 1, r
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith(fill(expected)), r.stderr


def test_cluster_discovery_errors_are_messages(cli_cluster, tmp_path):
    r = cli_cluster.kubemu_proc("get", "svc", env={"KUBEMU_SERVER": "", "KUBEMU_STATE_DIR": str(tmp_path)})
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert r.stderr == (f"error: no cluster found in {tmp_path} (start one with `kubemu up`, "
                        "or pass --server / set KUBEMU_SERVER)\n")
    # cluster.json of the state directory names the API server
    (tmp_path / "cluster.json").write_text('{"apiserver": {"address": "%s"}}' % cli_cluster.server)
    r = cli_cluster.kubemu_proc("get", "ns", "default", "-o", "name",
                                env={"KUBEMU_SERVER": "", "KUBEMU_STATE_DIR": str(tmp_path)})
    assert r.exit_code == 0 and r.stdout == "namespace/default\n"
    r = cli_cluster.kubemu_proc("get", "svc", "--server", f"127.0.0.1:{procs.free_port()}")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: the API server is not reachable")


def test_apply_from_stdin(cli_cluster, ns):
    with open(manifest("nginx-svc.yaml")) as f:
        text = f.read()
    r = cli_cluster.kubemu_proc("apply", "-f", "-", "-n", ns, input=text)
    assert (r.exit_code, r.stdout) == (0, "service/my-nginx created\n")
    r = cli_cluster.kubemu_proc("create", "-f", "-", "-n", ns, input=text)
    assert r.exit_code == 1
    assert r.stderr == 'Error from server (AlreadyExists): error when creating "STDIN": services "my-nginx" already exists\n'


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_watch_prints_changes_and_stops_on_ctrl_c(cli_cluster, ns, tmp_path):
    cli_cluster.ok("apply", "-f", "-", "-n", ns, input="kind: Service\napiVersion: v1\nmetadata: {name: first}\n"
                                                       "spec: {ports: [{port: 80}]}\n")
    out = str(tmp_path / "watch.out")
    with open(out, "w") as f:
        proc = subprocess.Popen(procs.kubemu_command("get", "svc", "-w", "-n", ns, "--server", cli_cluster.server),
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        procs.wait_for(lambda: "first" in _read(out), 20, message="the initial table")
        cli_cluster.ok("apply", "-f", "-", "-n", ns, input="kind: Service\napiVersion: v1\nmetadata: {name: two}\n"
                                                           "spec: {type: NodePort, ports: [{port: 81}]}\n")
        procs.wait_for(lambda: "two" in _read(out), 20, message="the watched change")
        cli_cluster.ok("delete", "svc", "first", "-n", ns)
        procs.wait_for(lambda: _read(out).count("first") == 2, 20, message="the deletion")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = _read(out).splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert lines[1].split()[:2] == ["first", "ClusterIP"]
    two = next(line for line in lines if line.startswith("two"))
    assert two.split()[1] == "NodePort"
    # rows printed later line up with the table printed first
    assert two.index("NodePort") == lines[0].index("TYPE")
    assert "Traceback" not in _read(out)


def test_watch_ends_after_request_timeout(cli_cluster, ns):
    started = time.monotonic()
    r = cli_cluster.kubemu_proc("get", "svc", "-w", "-n", ns, "--request-timeout", "1s", "-o", "name", timeout=20)
    assert r.exit_code == 0 and r.stdout == "" and "Traceback" not in r.stderr
    assert time.monotonic() - started < 15


def test_help_lists_the_client_commands():
    p = subprocess.run(procs.kubemu_command("--help"), capture_output=True, text=True, timeout=30,
                       env={**os.environ})
    for cmd in ("apply", "create", "get", "describe", "delete", "patch", "expose", "scale"):
        assert f"  {cmd} " in p.stdout

"""The pytest plugin: the README's example test passes as written, and two test runs using
the `kubemu_cluster` fixture run side by side on clusters of their own."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.search(r"```python\n(def test_.*?)```", text, re.S).group(1)


def pytest_cmd(path: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", os.path.dirname(path), path]


def test_readme_example_passes_as_written(tmp_path):
    test_file = tmp_path / "test_readme_example.py"
    test_file.write_text(readme_example())
    res = subprocess.run(pytest_cmd(str(test_file)), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


SIDE_BY_SIDE = '''
import json, os

def test_cluster(kubemu_cluster):
    kubemu_cluster.apply("""
apiVersion: v1
kind: Service
metadata: {name: mine}
spec:
  ports: [{port: 80}]
""")
    svc = kubemu_cluster.get("Service", "mine")
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"server": kubemu_cluster.server, "slot": kubemu_cluster.slot.index,
                   "clusterIP": svc.spec.clusterIP,
                   "names": sorted(s.metadata.name for s in kubemu_cluster.list("Service", "default"))}, f)
'''


def test_two_runs_side_by_side(tmp_path):
    procs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "test_side.py").write_text(SIDE_BY_SIDE)
        env = dict(os.environ, REPORT=str(d / "report.json"))
        procs.append((d, subprocess.Popen(pytest_cmd(str(d / "test_side.py")) + ["--kubemu-nodes", "1"],
                                          cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)))
    reports = []
    for d, p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
        reports.append(json.loads((d / "report.json").read_text()))
    a, b = reports
    assert a["slot"] != b["slot"] and a["server"] != b["server"]
    assert a["clusterIP"].split(".")[1] != b["clusterIP"].split(".")[1], "each cluster has its own service range"
    assert a["names"] == b["names"] == ["kubernetes", "mine"]

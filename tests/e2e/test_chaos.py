"""scripts/chaos, one short bounded round, with its report asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_chaos_round_loses_nothing_on_clusterip_lb_and_dns(tmp_path):
    report_path = tmp_path / "report.json"
    res = subprocess.run([sys.executable, "-m", "kubemu.chaos", "--nodes", "3", "--rounds", "1",
                          "--down-time", "2", "--rate", "10", "--seed", "7", "--json", str(report_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(report_path.read_text())
    paths = report["paths"]
    for must in ("clusterip", "dns", "loadbalancer"):
        assert paths[must]["mustNotFail"] and paths[must]["sent"] > 20, paths[must]
        assert paths[must]["failed"] == 0, paths[must]
    # the killed node's own NodePort is what clients of a dead node lose
    victim = report["victims"][0].split()[0]
    assert paths[f"nodeport {victim}"]["failed"] > 0
    assert len(report["recoverySeconds"]) == 1
    assert "OK: no request lost" in res.stdout

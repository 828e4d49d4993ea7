"""The Prometheus alerting rules and the Grafana dashboard in k8s/monitoring/.

promtool is not available here, so the checks are static but real: the files parse,
every metric an expression names exists in the code, the rules cover the same eight
metrics as the alarm rules over the same exported values, and kustomize turns them
into schema-valid ConfigMaps.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

from aimp_stats.alarm_domain import POD_METRICS, SERVICE_METRICS, ServiceWindow
from aimp_stats.alarm_exporter import FORGET_AFTER_S, SERVICE_GAUGES, ServiceExporter

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "aimp-alerts.rules.yaml"
DASHBOARD = MONITORING / "aimp-dashboard.json"
#: Metric names are aimp's own, the process collector's, or Triton's GPU metrics.
METRIC_NAME = re.compile(r"\b((?:aimp|process|nv)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum")


@cache
def code_text() -> str:
    """Every Python source file of the platform (services, libraries, inference)."""
    roots = [*ROOT.glob("services/*/src"), *ROOT.glob("libs/*/src"), ROOT / "inference/python/src"]
    return "\n".join(p.read_text() for r in roots for p in r.rglob("*.py"))


def defined_in_code(name: str) -> bool:
    base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
    return any(f'"{n}"' in code_text() for n in {name, base})


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_rules_file_is_well_formed() -> None:
    """Every rule has a unique name, an expression, a hold, a severity and its texts."""
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) and len(names) >= 8
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description"} <= set(rule["annotations"])
        assert balanced(rule["expr"]), rule["alert"]


def test_every_metric_in_the_rules_and_dashboard_exists_in_the_code() -> None:
    """A renamed metric breaks this test, not the alerts (which would silently never fire)."""
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    missing = set()
    for expr in exprs:
        names = METRIC_NAME.findall(expr)
        assert names, f"no metric in {expr!r}"
        missing |= {n for n in names if not defined_in_code(n)}
    assert not missing, f"not defined anywhere in the code: {sorted(missing)}"


def test_the_check_catches_an_unknown_metric() -> None:
    """The existence check is not vacuous: a made-up name is reported missing."""
    assert not defined_in_code("aimp_gateway_made_up_total")
    assert defined_in_code("aimp_http_request_duration_seconds_bucket")


def test_rules_cover_the_alarm_metrics_over_the_exported_values() -> None:
    """One rule per alarm metric; service rules read the gauges the evaluator exports."""
    by_metric = {r["labels"]["metric"]: r for r in rules() if "metric" in r["labels"]}
    assert set(by_metric) == set(SERVICE_METRICS) | set(POD_METRICS)
    for metric in SERVICE_METRICS:
        assert SERVICE_GAUGES[metric]._name in by_metric[metric]["expr"], metric
    assert "process_cpu_seconds_total" in by_metric["pod_cpu"]["expr"]
    assert "nv_gpu_utilization" in by_metric["gpu_util"]["expr"]


def test_exporter_sets_and_clears_the_service_gauges() -> None:
    """Values are the alarm values; a quiet service loses its ratios and reports 0 qps."""
    exporter = ServiceExporter()
    window = ServiceWindow(requests=120, errors=6, throttled=12, p99_ms=42.0)
    exporter.update(1_000.0, {"exp-svc": window})

    def value(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"service": "exp-svc"})

    assert value("aimp_stats_service_error_rate_percent") == 5.0
    assert value("aimp_stats_service_throttled_rate_percent") == 10.0
    assert value("aimp_stats_service_p99_ms") == 42.0
    assert value("aimp_stats_service_qps") == 2.0
    exporter.update(1_010.0, {})
    assert value("aimp_stats_service_error_rate_percent") is None
    assert value("aimp_stats_service_qps") == 0.0
    exporter.update(1_001.0 + FORGET_AFTER_S, {})
    assert value("aimp_stats_service_qps") is None


def test_dashboard_is_valid_grafana_json() -> None:
    """Unique panel ids, panels inside the 24-column grid, a Prometheus datasource variable,
    and a panel for each alarm metric."""
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for target in panel.get("targets", []):
            assert balanced(target["expr"]) and target["refId"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    described = " ".join(p.get("description", "") for p in dashboard["panels"])
    for metric in [*SERVICE_METRICS, *POD_METRICS]:
        assert f"alarm metric {metric}" in described, metric


def test_kustomize_makes_valid_configmaps_of_both_files() -> None:
    """kubectl kustomize k8s/monitoring gives two strict-valid ConfigMaps holding the files."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.stdout) if d}
    assert set(docs) == {"aimp-prometheus-rules", "aimp-grafana-dashboard"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        assert doc["metadata"]["namespace"] == "aimp"
    assert docs["aimp-prometheus-rules"]["data"]["aimp-alerts.rules.yaml"] == RULES.read_text()
    assert docs["aimp-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(docs["aimp-grafana-dashboard"]["data"]["aimp-dashboard.json"])

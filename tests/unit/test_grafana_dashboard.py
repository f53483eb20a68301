"""The Grafana dashboard under ops/ reads only metrics /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "stoflow-operators.json"
SERVED = {
    "stoflow_queue_jobs",
    "stoflow_queue_oldest_pending_seconds",
    "stoflow_jobs_failed_last_hour",
    "stoflow_jobs_per_minute",
    "stoflow_job_mean_run_seconds",
    "stoflow_workers_alive",
    "stoflow_workers_recommended",
    "stoflow_vinted_budget_used",
    "stoflow_vinted_budget_limit",
    "stoflow_vinted_waiting_tasks",
    "stoflow_jobs_total",
    "stoflow_job_duration_seconds_bucket",
    "stoflow_rate_limit_rejections_total",
}


def test_every_panel_queries_metrics_the_gateway_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expr in expressions for name in re.findall(r"\bstoflow_[a-z_]+", expr)}
    assert named <= SERVED, named - SERVED
    assert {"stoflow_queue_jobs", "stoflow_workers_recommended", "stoflow_vinted_budget_used"} <= named

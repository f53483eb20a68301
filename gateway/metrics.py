"""Prometheus metrics of the gateway process (platform-wide counters join them in /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "stoflow_http_requests_total", "HTTP requests answered by the gateway.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "stoflow_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)


def record_http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_DURATION.labels(method=method, route=route).observe(seconds)

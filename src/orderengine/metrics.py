"""Prometheus metrics of one engine, in a registry of its own (no process-wide state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Counters and gauges that `/metrics` exposes in Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "orderengine_orders_accepted", "Orders committed as pending.", registry=self.registry
        )
        self.finished = Counter(
            "orderengine_orders_finished",
            "Orders that reached a terminal status.",
            ["status"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "orderengine_attempts",
            "Execution attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.routed = Counter(
            "orderengine_routed",
            "Routing decisions made, by venue; those not acted on (the order cancelled, or its"
            " attempt put back before its swap was sent) included.",
            ["dex"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "orderengine_requests_rejected",
            "Requests refused with 503 (the engine could not serve them then), by code.",
            ["code"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "orderengine_queued_orders", "Orders waiting for a worker.", registry=self.registry
        )
        self.executing = Gauge(
            "orderengine_executing_orders", "Orders a worker holds now.", registry=self.registry
        )
        self.order_seconds = Histogram(
            "orderengine_order_seconds",
            "Time from acceptance to a terminal status.",
            buckets=(0.1, 0.5, 1, 2, 3, 5, 10, 20, 60),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

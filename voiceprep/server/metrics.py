"""Prometheus metrics (prometheus-client) on a registry of the app's own, so two apps in
one process (tests) never clash, and /metrics shows only the server's figures."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "voiceprep_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.hits = Counter(
            "voiceprep_cache_hits", "Speech requests served from the cache.", registry=r
        )
        self.misses = Counter(
            "voiceprep_cache_misses", "Speech requests not in the cache.", registry=r
        )
        self.syntheses = Counter(
            "voiceprep_syntheses",
            "Syntheses that produced audio (one per missing phrase).",
            registry=r,
        )
        self.failures = Counter(
            "voiceprep_synthesis_failures", "Syntheses that failed (after retries).", registry=r
        )
        self.rejected = Counter(
            "voiceprep_queue_rejections", "Misses refused because the queue was full.", registry=r
        )
        self.latency = Histogram(
            "voiceprep_request_duration_seconds",
            "Time to answer a speech request, by cache result.",
            ["cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.synthesis_seconds = Histogram(
            "voiceprep_synthesis_duration_seconds",
            "Time to fill one missing phrase: a synthesis slot, the call, processing, storing.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

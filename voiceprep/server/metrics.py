"""Prometheus metrics (prometheus-client) on a registry of the app's own, so two apps in
one process (tests) never clash, and /metrics shows only the server's figures."""

from __future__ import annotations

from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter = partial(Counter, registry=self.registry)
        histogram = partial(Histogram, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = counter(
            "voiceprep_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
        )
        self.hits = counter("voiceprep_cache_hits", "Speech requests served from the cache.")
        self.misses = counter("voiceprep_cache_misses", "Speech requests not in the cache.")
        self.syntheses = counter(
            "voiceprep_syntheses", "Syntheses that produced audio (one per missing phrase)."
        )
        self.failures = counter(
            "voiceprep_synthesis_failures", "Syntheses that failed (after retries)."
        )
        self.rejected = counter(
            "voiceprep_queue_rejections", "Misses refused because the queue was full."
        )
        self.latency = histogram(
            "voiceprep_request_duration_seconds",
            "Time to answer a speech request, by cache result.",
            ["cache"],
        )
        self.synthesis_seconds = histogram(
            "voiceprep_synthesis_duration_seconds",
            "Time to fill one missing phrase: a synthesis slot, the call, processing, storing.",
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

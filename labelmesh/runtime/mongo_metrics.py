"""Prometheus timing of every database command a service sends, by command and collection.

FerretDB is where the CPU goes on a small machine (bench/results/pipeline_load-10k.json: 86% of it), and which
collection and command spend it is the question every slowdown starts with; the driver's command monitoring
answers it without touching the code that issues the commands.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from pymongo import monitoring

# Commands whose first value is not a collection name.
_NO_COLLECTION = {"ping", "hello", "isMaster", "ismaster", "endSessions", "buildInfo", "saslStart", "saslContinue"}


class CommandTimer(monitoring.CommandListener):
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.seconds = Histogram(
            "labelmesh_mongo_command_seconds", "Database commands by command and collection, as the client timed them",
            ["service", "command", "collection"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
        self._collections: dict[tuple[object, int], str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in _NO_COLLECTION:
            return
        target = event.command.get(name)
        self._collections[(event.connection_id, event.request_id)] = target if isinstance(target, str) else "-"

    def _observe(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent) -> None:
        collection = self._collections.pop((event.connection_id, event.request_id), None)
        if collection is not None:
            self.seconds.labels(self.service, event.command_name, collection).observe(event.duration_micros / 1e6)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event)

"""The topic catalogue: every topic's name, partitioning and retention, created explicitly, never auto-created."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import EVENT_TYPES, DeadLetter, ModelUpdated

KEEP_FOREVER = "-1"
# The broker's message.max.bytes default, which a topic without its own max.message.bytes inherits.
KAFKA_MAX_MESSAGE_BYTES = 1_048_588


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 3
    config: tuple[tuple[str, str], ...] = (("retention.ms", KEEP_FOREVER), ("retention.bytes", KEEP_FOREVER))

    @property
    def max_message_bytes(self) -> int:
        """The largest record batch the topic accepts."""
        return int(dict(self.config).get("max.message.bytes", KAFKA_MAX_MESSAGE_BYTES))


def _spec(name: str) -> TopicSpec:
    if name == ModelUpdated.TOPIC:
        # Artifacts travel inline so replaying the topic alone can restore any model.
        base = TopicSpec(name)
        return TopicSpec(name, partitions=1, config=base.config + (("max.message.bytes", str(16 * 1024 * 1024)),))
    return TopicSpec(name)


TOPIC_SPECS: tuple[TopicSpec, ...] = tuple(_spec(t.TOPIC) for t in EVENT_TYPES) + (TopicSpec(DeadLetter.TOPIC),)


def max_message_bytes(topic: str) -> int:
    """The size limit of the catalogue's topic of this name (without the deployment's prefix)."""
    return next(spec.max_message_bytes for spec in TOPIC_SPECS if spec.name == topic)

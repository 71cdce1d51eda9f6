"""Creates labelmesh's topics explicitly (partitions, retention) on the configured Kafka cluster."""

from __future__ import annotations

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from labelmesh.runtime.settings import CommonSettings
from schemas.topics import TOPIC_SPECS


async def create_topics(bootstrap: str, prefix: str = "", replication: int = 1) -> list[str]:
    """Create every missing topic; returns the names created (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="labelmesh-infra")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(prefix + spec.name, spec.partitions, replication, topic_configs=dict(spec.config))
            for spec in TOPIC_SPECS
            if prefix + spec.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a non-empty namespace prefix); returns their names.
    A broker keeps memory per partition, so short-lived namespaces (tests, benchmarks) are removed after use."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="labelmesh-infra")
    await admin.start()
    try:
        # labelmesh's own names too: a topic created moments ago may not be listed yet.
        names = sorted({t for t in await admin.list_topics() if t.startswith(prefix)}
                       | {prefix + spec.name for spec in TOPIC_SPECS})
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def main(argv: list[str]) -> int:
    if argv[:1] != ["topics"]:
        print("usage: python -m labelmesh.infra topics", file=sys.stderr)
        return 2
    settings = CommonSettings()
    created = asyncio.run(create_topics(settings.kafka_bootstrap, settings.topic_prefix))
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

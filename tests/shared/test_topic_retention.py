"""The project's topics are created with their retention, on the real (embedded) broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import topics


async def test_every_topic_is_created_with_its_retention(infra_env) -> None:
    _, _, settings = infra_env  # the session's broker, its topics made by ensure_topics
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics.PARTITIONS]
        )
    finally:
        await admin.close()
    found = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in described
        for resource in response.resources
    }
    for name in topics.PARTITIONS:
        assert found[name]["retention.ms"] == str(topics.RETENTION_MS[name]), name
        assert found[name]["cleanup.policy"] == "delete", name
    assert topics.RETENTION_MS[topics.MARKET_TICKS] == 7 * 86_400_000

"""The event bus: FastStream over aiokafka, with the project's conventions.

* at-least-once delivery, idempotent consumers (deterministic ``event_id``);
* undecodable or unprocessable messages go to ``system.deadletters.v1`` with the reason;
* trace context travels in Kafka headers (FastStream's OpenTelemetry middleware).
"""

from shared import compat

# Topics are created by ``broker.ensure_topics`` with the project's partitions and configs, never
# as a side effect of asking about them (see ``compat.forbid_topic_auto_creation``).
compat.forbid_topic_auto_creation()

"""The event bus: FastStream over aiokafka, with the project's conventions.

* at-least-once delivery, idempotent consumers (deterministic ``event_id``);
* undecodable or unprocessable messages go to ``system.deadletters.v1`` with the reason;
* trace context travels in Kafka headers (FastStream's OpenTelemetry middleware).
"""

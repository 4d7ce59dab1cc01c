"""Pre-trade risk: limits, the gate and its checks, kill switches, the throttle, their storage and API.

Domain code (everything but ``store`` and ``routes``) is free of FastAPI, Kafka and the database:
the engine hands it what it needs. See docs/trading-risk.md.
"""

"""The service kit: what every service is made of (app factory, health, metrics, logs, traces)."""

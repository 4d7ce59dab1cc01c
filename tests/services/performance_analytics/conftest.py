"""The in-process performance-analytics here runs the consumer groups the session mesh's runs: a
broker and matrix ports of their own (``own_infra``)."""

from tests.support import own_infra_env  # noqa: F401  (the ``infra_env`` fixture of this directory)

"""The in-process services here run the consumers the session mesh runs too (same groups, or
group-less feeds of the same topics): a broker and matrix ports of their own (``own_infra``)."""

from tests.support import own_infra_env  # noqa: F401  (the ``infra_env`` fixture of this directory)

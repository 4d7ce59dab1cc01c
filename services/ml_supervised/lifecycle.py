"""ml-supervised's model lifecycle: ``shared.ml.lifecycle.Lifecycle`` over the tree kinds."""

from __future__ import annotations

from shared.ml.lifecycle import Lifecycle

#: Who acts when the service acts on its own (expiry, drift).
SERVICE_ACTOR = "service:ml-supervised"

__all__ = ["SERVICE_ACTOR", "Lifecycle"]

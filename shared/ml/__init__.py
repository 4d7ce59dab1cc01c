"""The machine-learning foundation every model service builds on, whatever the model kind.

=================  ==================================================================
module             what it gives
=================  ==================================================================
``dataset``        bars -> feature matrix, with the live ``FeatureSet`` (no research/live skew)
``labels``         forward returns, direction (dead zone), triple barrier; each label's
                   bar interval ``[t, t1]`` (what purging needs)
``validation``     walk-forward splits with purging and an embargo
``kinds``          model kinds: train / serialise / load / predict one row (trees here;
                   torch kinds register the same way)
``trees``          XGBoost and LightGBM, classifiers and regressors
``registry``       the model registry (PostgreSQL) and its artifact files (sha256-checked)
``jobs``           training jobs: persisted, claimed per kind, progress by stage
``drift``          training feature distributions (quantile bins) and PSI
=================  ==================================================================

The registry's tables are a shared migration set (``REGISTRY_MIGRATIONS``): every service
that uses the registry declares ``Postgres(shared_migrations=(REGISTRY_MIGRATIONS,))``.
"""

from __future__ import annotations

from pathlib import Path

#: The model registry's PostgreSQL migrations, shared by every service that uses the registry.
REGISTRY_MIGRATIONS: tuple[str, Path] = ("model-registry", Path(__file__).parent / "migrations" / "postgres")

__all__ = ["REGISTRY_MIGRATIONS"]

"""ml-supervised settings (``ML_SUPERVISED_*``: the prefix comes from its port-matrix entry)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class MlSupervisedSettings(ServiceSettings):
    #: Every field here is read from ``ML_SUPERVISED_<FIELD>``; document each one in README.md.
    pass

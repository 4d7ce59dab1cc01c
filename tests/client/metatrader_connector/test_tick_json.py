"""The connector's tick JSON carries decimals the server's edge accepts."""

from __future__ import annotations

import pytest

from client.metatrader_connector.routes import volume_text
from services.data_bridge.ingest_body import IngestTick


@pytest.mark.parametrize(
    ("volume", "text"),
    [(0.1 + 0.2, "0.3"), (0.0, "0"), (1.5, "1.5"), (12.0, "12"), (1e-9, "0"), (0.123456789, "0.12345679")],
)
def test_volume_has_no_binary_noise(volume, text):
    assert volume_text(volume) == text


def test_a_noisy_float_volume_passes_the_edge():
    tick = {"symbol": "EURUSD", "time_msc": 1, "bid": "1.1", "ask": "1.2", "volume": volume_text(0.1 + 0.2)}
    IngestTick.model_validate(tick)
    with pytest.raises(ValueError):
        IngestTick.model_validate({**tick, "volume": repr(0.1 + 0.2)})

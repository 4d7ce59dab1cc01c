"""feature-engineering's HTTP API: indicators over posted rows (``/api/v1/features``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.feature_engineering.state import FeatureEngineeringDep
from shared.auth import Principal
from shared.auth.fastapi import require
from shared.auth.scopes import MARKET_READ
from shared.indicators import IndicatorError, compute, spec_of
from shared.kit.problems import Problem

router = APIRouter(prefix="/api/v1/features", tags=["features"])

#: A column of finite numbers (NaN and infinities are refused with the position named).
Column = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1)]
COLUMNS = ("open", "high", "low", "close", "volume")


class IndicatorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="TA-Lib's name, e.g. RSI, MACD, BBANDS")
    params: dict[str, Any] = Field(default_factory=dict, description="TA-Lib's parameter names; omitted = defaults")


class ComputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open: Column
    high: Column
    low: Column
    close: Column
    volume: Column
    indicators: Annotated[list[IndicatorRequest], Field(min_length=1)]


def _invalid(field: str, detail: str) -> Problem:
    return Problem(422, f"{field}: {detail}", field=field)


def _check_rows(body: ComputeRequest, max_rows: int) -> int:
    rows = len(body.open)
    if rows > max_rows:
        raise _invalid("open", f"{rows} rows; at most {max_rows}")
    for name in COLUMNS[1:]:
        if len(getattr(body, name)) != rows:
            raise _invalid(name, f"{len(getattr(body, name))} rows, but open has {rows}")
    for i, (high, low) in enumerate(zip(body.high, body.low, strict=True)):
        if high < low:
            raise _invalid(f"high[{i}]", f"{high} is below low {low}")
    return rows


def _resolve(body: ComputeRequest, rows: int, most: int) -> list[tuple[str, dict[str, Any]]]:
    if len(body.indicators) > most:
        raise _invalid("indicators", f"{len(body.indicators)} asked; at most {most} per request")
    resolved = []
    for i, wanted in enumerate(body.indicators):
        where = f"indicators[{i}]"
        try:
            spec = spec_of(wanted.name)
            params = spec.resolve(wanted.params)
            spec.factory(params)  # refuses MA types it does not compute
        except IndicatorError as exc:
            raise _invalid(f"{where}.{exc.field}", exc.message) from None
        for name, period in spec.periods(params).items():
            if period > rows:
                raise _invalid(f"{where}.params.{name}", f"{period} is larger than the input ({rows} rows)")
        resolved.append((spec.name, params))
    return resolved


@router.post(
    "/compute",
    operation_id="compute_indicators",
    summary="TA-Lib indicators over posted OHLCV rows (the streaming objects, run over the rows)",
)
async def compute_indicators(
    body: ComputeRequest, service: FeatureEngineeringDep, _: Annotated[Principal, require(MARKET_READ)]
) -> Response:
    """Each output is as long as the input; ``null`` where TA-Lib has NaN (its warm-up)."""
    settings = service.settings
    rows = _check_rows(body, settings.max_compute_rows)
    wanted = _resolve(body, rows, settings.max_compute_indicators)
    columns = [getattr(body, name) for name in COLUMNS]

    def run() -> bytes:
        answers = [
            {"name": name, "params": params, "outputs": compute(name, params, *columns)} for name, params in wanted
        ]
        return orjson.dumps({"indicators": answers})

    # Off the event loop: 100,000 rows of several indicators take a while.
    return Response(await asyncio.to_thread(run), media_type="application/json")

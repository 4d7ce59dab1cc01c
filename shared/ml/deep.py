"""The sequence kinds in torch (CPU): an LSTM and a small Transformer encoder over windows of features.

Each sample is a window of ``window`` feature rows, oldest first (``shared.ml.sequence``). The
inputs are standardised with the mean and spread of the TRAINING rows only (a regressor's target
too); those statistics travel inside the artifact with the weights, so a loaded model
standardises live windows exactly as it was trained.

* **Deterministic**: ``torch.manual_seed(seed)``, a seeded generator for the batch order,
  ``torch.use_deterministic_algorithms(True)`` and ``threads`` intra-op threads (1 by default):
  the same seed and data give bit-identical weights, artifact bytes and predictions.
* **Early stopping** (``fit_validated``): after each epoch the loss on a validation slice (the
  end of the training rows, purged and embargoed by ``shared.ml.validation.holdout_tail``) is
  measured; ``patience`` epochs without a better one stop training and the best epoch's weights
  are kept. ``fit`` (no slice) trains ``epochs`` epochs.
* **Artifact**: safetensors (never pickle): the weights, ``input.mean``/``input.std``,
  ``target.mean``/``target.std``, and in its JSON header the kind, task, hyperparameters and the
  number of features. The registry checks its sha256 before ``load`` sees it.
* **Inference**: ``torch.inference_mode()``; one window is one forward pass of a 1 x window x
  features tensor (``bench/deep_inference.py`` measures it and the thread count).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from shared.ml.kinds import Floats, Task, Trained, register_kind
from shared.ml.sequence import SequenceParams, sequence_hyperparameters

#: Written into every artifact's header; a file without it is not one of ours.
FORMAT = "hats-sequence-1"
_HEADER_KEY = "hats"
#: Rows per forward pass when predicting many windows (bounds memory).
_PREDICT_CHUNK = 1024


class LstmNet(nn.Module):
    """LSTM layers, then a linear head on the last step's hidden state."""

    def __init__(self, features: int, p: SequenceParams) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, p.hidden, p.layers, batch_first=True, dropout=p.dropout if p.layers > 1 else 0.0)
        self.head = nn.Linear(p.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        result: torch.Tensor = self.head(out[:, -1, :]).squeeze(-1)
        return result


class TransformerNet(nn.Module):
    """Projection to ``hidden`` plus a learned position embedding, pre-norm encoder layers, and a
    linear head on the last (newest) position."""

    def __init__(self, features: int, p: SequenceParams) -> None:
        super().__init__()
        self.project = nn.Linear(features, p.hidden)
        self.position = nn.Parameter(torch.zeros(1, p.window, p.hidden))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            p.hidden, p.heads, p.feedforward, p.dropout, batch_first=True, norm_first=True
        )
        # No nested-tensor fast path: windows are never padded, and it warns with norm_first.
        self.encoder = nn.TransformerEncoder(layer, p.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(p.hidden)
        self.head = nn.Linear(p.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.project(x) + self.position[:, : x.shape[1], :])
        result: torch.Tensor = self.head(self.norm(h[:, -1, :])).squeeze(-1)
        return result


_NETS: dict[str, type[LstmNet] | type[TransformerNet]] = {"lstm": LstmNet, "transformer": TransformerNet}


class SequenceModel:
    """A trained (or loaded) sequence model and its standardisation; ``predict`` takes windows."""

    def __init__(
        self,
        kind: str,
        task: Task,
        params: SequenceParams,
        net: nn.Module,
        stats: Mapping[str, Floats],
        fit_info: dict[str, float] | None = None,
    ) -> None:
        self.kind = kind
        self.task = task
        self.params = params
        self.net = net.eval()
        self.stats = {k: np.asarray(v, dtype=np.float64) for k, v in stats.items()}
        self._mean = self.stats["input.mean"].astype(np.float32)
        self._inv_std = (1.0 / self.stats["input.std"]).astype(np.float32)
        self._y_mean = float(self.stats["target.mean"][0])
        self._y_std = float(self.stats["target.std"][0])
        #: How training went (epochs run, best epoch, its validation loss): reported per fold.
        self.fit_info = fit_info or {}

    @property
    def window(self) -> int:
        return self.params.window

    def _outputs(self, logits: torch.Tensor) -> Floats:
        if self.task == "direction":
            return torch.sigmoid(logits).double().numpy()
        return logits.double().numpy() * self._y_std + self._y_mean

    def predict(self, x: Floats) -> Floats:
        """Raw outputs (probability of up / expected log return) for windows ``x`` (n x window x features)."""
        if x.ndim != 3 or x.shape[1] != self.window:
            raise ValueError(f"expected windows of {self.window} rows, got an array of shape {x.shape}")
        out = np.empty(x.shape[0])
        with torch.inference_mode():
            for lo in range(0, x.shape[0], _PREDICT_CHUNK):
                chunk = (x[lo : lo + _PREDICT_CHUNK].astype(np.float32) - self._mean) * self._inv_std
                out[lo : lo + _PREDICT_CHUNK] = self._outputs(self.net(torch.from_numpy(chunk)))
        return out

    def predict_row(self, x: Floats) -> float:
        """The raw output for one window (window x features): the online path."""
        z = (np.asarray(x, dtype=np.float32) - self._mean) * self._inv_std
        with torch.inference_mode():
            logit = self.net(torch.from_numpy(z).unsqueeze(0))
        return float(self._outputs(logit)[0])

    def to_bytes(self) -> bytes:
        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        for name, values in self.stats.items():
            tensors[name] = torch.from_numpy(np.ascontiguousarray(values))
        header = {
            "format": FORMAT,
            "kind": self.kind,
            "task": self.task,
            "hyperparameters": self.params.model_dump(),
            "features": int(self._mean.shape[0]),
        }
        # One metadata key: safetensors writes its metadata map in no fixed order, so several
        # keys would make the same model's bytes (and sha256) differ from one save to the next.
        return save_tensors(tensors, metadata={_HEADER_KEY: json.dumps(header, sort_keys=True)})


def artifact_header(artifact: bytes) -> dict[str, Any]:
    """Our header in a safetensors file (8-byte little-endian header length, then JSON whose
    ``__metadata__`` holds it); ``ValueError`` if the bytes are not such a file."""
    if len(artifact) < 8:
        raise ValueError("not a safetensors file: too short")
    (size,) = struct.unpack("<Q", artifact[:8])
    if size > len(artifact) - 8:
        raise ValueError("not a safetensors file: its header runs past the end")
    meta = json.loads(artifact[8 : 8 + size]).get("__metadata__") or {}
    if not isinstance(meta, dict) or _HEADER_KEY not in meta:
        raise ValueError(f"not a {FORMAT} artifact: no {_HEADER_KEY} header")
    header: dict[str, Any] = json.loads(meta[_HEADER_KEY])
    return header


def _seeded(seed: int, threads: int) -> torch.Generator:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _standardisation(task: Task, x: Floats, y: Floats) -> dict[str, Floats]:
    rows = x[:, -1, :]  # each training sample's own bar, once (windows overlap)
    std = rows.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    y_mean, y_std = (0.0, 1.0) if task == "direction" else (float(y.mean()), float(y.std()) or 1.0)
    return {
        "input.mean": rows.mean(axis=0),
        "input.std": std,
        "target.mean": np.array([y_mean]),
        "target.std": np.array([y_std]),
    }


def _tensors(x: Floats, y: Floats, stats: Mapping[str, Floats]) -> tuple[torch.Tensor, torch.Tensor]:
    z = ((x - stats["input.mean"]) / stats["input.std"]).astype(np.float32)
    t = ((y - stats["target.mean"][0]) / stats["target.std"][0]).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(z)), torch.from_numpy(np.ascontiguousarray(t))


class SequenceKind:
    """``lstm`` or ``transformer`` as a ``shared.ml.kinds.ModelKind``."""

    suffix = ".safetensors"

    def __init__(self, name: str) -> None:
        self.name = name

    def hyperparameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return sequence_hyperparameters(given)

    def window(self, params: Mapping[str, Any]) -> int:
        """Bars each sample spans: training builds windows of this length."""
        return SequenceParams.model_validate(dict(params)).window

    def fit(self, task: Task, x: Floats, y: Floats, params: Mapping[str, Any], seed: int, threads: int) -> Trained:
        """``epochs`` epochs on every row, no early stopping (nothing to validate on)."""
        return self._fit(task, x, y, None, params, seed, threads)

    def fit_validated(
        self,
        task: Task,
        x: Floats,
        y: Floats,
        x_val: Floats,
        y_val: Floats,
        params: Mapping[str, Any],
        seed: int,
        threads: int,
    ) -> Trained:
        """Train on ``x``, stopping early on the loss over ``x_val`` (see the module docstring)."""
        return self._fit(task, x, y, (x_val, y_val), params, seed, threads)

    def _fit(
        self,
        task: Task,
        x: Floats,
        y: Floats,
        validation: tuple[Floats, Floats] | None,
        params: Mapping[str, Any],
        seed: int,
        threads: int,
    ) -> SequenceModel:
        p = SequenceParams.model_validate(dict(params))
        if x.ndim != 3 or x.shape[1] != p.window:
            raise ValueError(f"expected windows of {p.window} rows, got an array of shape {x.shape}")
        generator = _seeded(seed, threads)
        stats = _standardisation(task, x, y)
        xt, yt = _tensors(x, y, stats)
        net = _NETS[self.name](x.shape[2], p)
        loss_fn: nn.Module = nn.BCEWithLogitsLoss() if task == "direction" else nn.MSELoss()
        optimiser = torch.optim.AdamW(net.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
        val = None if validation is None else _tensors(validation[0], validation[1], stats)
        best_loss, best_epoch, best_state, epochs_run = math.inf, 0, copy.deepcopy(net.state_dict()), 0
        for epoch in range(1, p.epochs + 1):
            net.train()
            order = torch.randperm(xt.shape[0], generator=generator)
            for lo in range(0, xt.shape[0], p.batch_size):
                batch = order[lo : lo + p.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(net(xt[batch]), yt[batch])
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            epochs_run = epoch
            if val is None:
                continue
            net.eval()
            with torch.inference_mode():
                val_loss = float(loss_fn(net(val[0]), val[1]))
            if val_loss < best_loss:
                best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
            elif epoch - best_epoch >= p.patience:
                break
        if val is not None:
            net.load_state_dict(best_state)
        info = {"epochs_run": float(epochs_run), "max_epochs": float(p.epochs)}
        if val is not None:
            info |= {"best_epoch": float(best_epoch), "best_validation_loss": best_loss}
        return SequenceModel(self.name, task, p, net, stats, info)

    def load(self, task: Task, artifact: bytes, threads: int) -> Trained:
        header = artifact_header(artifact)
        if header.get("format") != FORMAT or header.get("kind") != self.name or header.get("task") != task:
            raise ValueError(
                f"artifact is {header.get('format')}/{header.get('kind')}/{header.get('task')}, "
                f"not a {FORMAT} {self.name} {task} model"
            )
        p = SequenceParams.model_validate(header["hyperparameters"])
        tensors = load_tensors(artifact)
        stats = {k: tensors.pop(k).numpy() for k in ("input.mean", "input.std", "target.mean", "target.std")}
        net = _NETS[self.name](int(header["features"]), p)
        net.load_state_dict(tensors, strict=True)
        return SequenceModel(self.name, task, p, net, stats)


def register() -> None:
    """Register ``lstm`` and ``transformer`` (``shared.ml.kinds.kind_of`` does it on first use)."""
    for name in _NETS:
        register_kind(SequenceKind(name))


def configure_inference_threads(threads: int) -> None:
    """Threads one forward pass may use, and a single inter-op thread (set once, before any torch work)."""
    torch.set_num_threads(threads)
    # Refused once set, or after torch ran parallel work in this process: then it stays as it was.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


__all__ = [
    "FORMAT",
    "LstmNet",
    "SequenceKind",
    "SequenceModel",
    "TransformerNet",
    "artifact_header",
    "configure_inference_threads",
    "register",
]

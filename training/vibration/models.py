"""Anomaly models trained on normal windows only, behind one small interface, built by name.

Both take raw feature rows (W, F) float32 and return a score per window, higher = less like
normal. The IsolationForest splits on raw features (trees do not care about scale, and raw
float32 inputs make the ONNX trees compare exactly what scikit-learn compares); the autoencoder
standardises inside its own module, so the exported graph takes the same raw rows.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from sklearn.ensemble import IsolationForest

from core.errors import ConfigError
from training.vibration.config import AnomalyModelConfig


class AnomalyModel(Protocol):
    name: str

    def fit(self, features: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> AnomalyModel: ...

    def score(self, features: np.ndarray) -> np.ndarray: ...


class IsolationForestModel:
    """scikit-learn IsolationForest; score = -decision_function (0 at scikit-learn's own cut)."""

    name = "isolation_forest"

    def __init__(self, cfg: AnomalyModelConfig) -> None:
        c = cfg.isolation_forest
        self.forest = IsolationForest(
            n_estimators=c.n_estimators, max_samples=c.max_samples, max_features=c.max_features,
            random_state=cfg.seed, n_jobs=1,
        )  # fmt: skip

    def fit(self, features: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> IsolationForestModel:
        self.forest.fit(features.astype(np.float32))
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        return -self.forest.decision_function(features.astype(np.float32))


class FeatureAutoencoder(torch.nn.Module):
    """Standardise -> encode -> decode; forward returns the mean squared error per window: (W, F) -> (W,).

    The exportable module: the error is computed inside the graph, so the ONNX output is the score.
    """

    def __init__(self, n_features: int, hidden: int, bottleneck: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("spread", torch.ones(n_features))
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, bottleneck), torch.nn.Tanh()
        )  # fmt: skip
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(bottleneck, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_features)
        )

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(z))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean) / self.spread  # (W, F) in units of normal spread
        return ((self.reconstruct(z) - z) ** 2).mean(-1)  # (W,)


@contextmanager
def one_thread():
    """A 4k-parameter network gains nothing from threads; on a shared 2-core box two threads spin
    against each other (measured: 60x slower than one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class AutoencoderModel:
    """Small PyTorch autoencoder on standardised features; score = reconstruction error."""

    name = "autoencoder"

    def __init__(self, cfg: AnomalyModelConfig) -> None:
        self.cfg, self.net = cfg, None

    def fit(self, features: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> AutoencoderModel:
        c = self.cfg.autoencoder
        torch.manual_seed(self.cfg.seed)
        net = FeatureAutoencoder(features.shape[1], c.hidden, c.bottleneck)
        net.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        net.spread.copy_(torch.as_tensor(spread, dtype=torch.float32))
        z = (torch.as_tensor(features, dtype=torch.float32) - net.mean) / net.spread  # (W, F)
        optimizer = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        with one_thread():
            for _ in range(c.epochs):
                order = torch.randperm(len(z), generator=generator)
                for lo in range(0, len(z), c.batch_size):
                    batch = z[order[lo : lo + c.batch_size]]
                    loss = ((net.reconstruct(batch) - batch) ** 2).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self.net = net.eval()
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        with one_thread(), torch.inference_mode():
            return self.net(torch.as_tensor(features, dtype=torch.float32)).numpy().astype(np.float64)


MODELS: dict[str, Callable[[AnomalyModelConfig], AnomalyModel]] = {
    IsolationForestModel.name: IsolationForestModel,
    AutoencoderModel.name: AutoencoderModel,
}


def build_model(cfg: AnomalyModelConfig) -> AnomalyModel:
    """A fresh, untrained model by `cfg.name`; an unknown name lists the valid ones."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown anomaly model {cfg.name!r}; choose one of {sorted(MODELS)} (model.name)")
    return MODELS[cfg.name](cfg)

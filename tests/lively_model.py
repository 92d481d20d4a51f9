"""An untrained network whose outputs vary like a trained one's: for backend and stage tests."""
from __future__ import annotations

import torch


def lively_model(preset: str = "n", seed: int = 0):
    """The preset with random weights, BatchNorm statistics from one random batch (else the
    activations of a fresh deep net fade and every pixel gets the same probabilities) and
    confident boxes. Returns (model in eval mode, ModelConfig)."""
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_random_calibrated
    cfg = load_preset(preset)
    model = build_random_calibrated(cfg, seed=seed, batch=2)
    with torch.no_grad():
        for conv in model.det_head.m:
            conv.bias.view(model.det_head.na, -1)[:, 4:] += 3.0
    return model.eval(), cfg

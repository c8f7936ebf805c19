"""A small random-init separator exported on the fly: the pipeline's properties (latency,
transparency, routing, file handling) don't depend on the weights, and tests stay fast."""

from __future__ import annotations

from pathlib import Path


def export_tiny_model(out_dir: Path, name: str = "tiny", seed: int = 0, **inputs) -> Path:
    import torch

    from factory.export import export_step_model
    from factory.model import ModelConfig, WaveNetSeparator

    torch.manual_seed(seed)
    net = WaveNetSeparator(ModelConfig(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8), **inputs))
    with torch.no_grad():
        net.head2.weight.mul_(8.0)  # masks far from 0.5: stems that differ clearly
    return export_step_model(net.eval(), out_dir, name, stft=dict(n_fft=1024, hop=256, window="asymmetric"))

"""Regenerates the small random-init test models committed beside this file (needs the factory
extra, torch). The pipeline's properties (latency, transparency, routing, file handling) don't
depend on the weights, so the default test tier uses these files and never imports torch.

    python -m tests.data.models.regenerate      # from the repository root
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
STFT = dict(n_fft=1024, hop=256, window="asymmetric")


def _net(seed: int, dilations: tuple[int, ...]):
    import torch

    from factory.model import ModelConfig, WaveNetSeparator

    torch.manual_seed(seed)
    net = WaveNetSeparator(ModelConfig(residual=16, skip=16, hidden=24, dilations=dilations, lookahead=0))
    with torch.no_grad():  # masks far from 0.5: stems that differ clearly
        net.head2.weight.mul_(8.0)
    return net.eval()


# name -> (seed, dilations): 'tiny' for the engine and CLI tests, 'live' for the live tests
MODELS = {"tiny": (0, (1, 2, 4, 8)), "live": (7, (1, 2, 4, 8, 1, 2))}


def main() -> None:
    from factory.export import export_step_model

    for name, (seed, dilations) in MODELS.items():
        # The step graph, the offline sequence graph (<name>.seq.onnx) and the card naming both.
        export_step_model(_net(seed, dilations), HERE, name, stft=STFT)
        print(f"wrote {HERE / name}.onnx, {HERE / name}.seq.onnx and the card")


if __name__ == "__main__":
    main()

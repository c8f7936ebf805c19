"""The separator network: a WaveNet-style causal regression network over STFT frames.

Input: the mixture's magnitude frames |X| shaped (batch, channels, bins, frames).
Features: log1p(|X|), both channels stacked, with a learned per-feature affine (initialised
from training statistics, as Open-Unmix does), then a learned projection to `residual`
channels (the band reduction).
Body: a stack of gated (tanh·sigmoid), dilated, causal 1-D convolutions over time with kernel
2, each with a residual and a skip path (WaveNet, van den Oord et al. 2016).
Head: skip sum → ReLU → 1x1 → ReLU → 1x1 to one bounded mask per stem, channel and bin; the
output is mask · |X| (non-negative by construction).

Local refiner (optional, `local` > 0 channels): the head's mask logits come out of a
`hidden`-wide bottleneck, so for every frame they lie in a low-dimensional family: enough for
"which stem is loud where" in broad strokes, not for the bin-sharp detail of which spectral
peak or onset belongs to whom. The refiner adds it back per bin: a small convolution over the
mixture's features in a patch of bins × frames (5 × 3 by default; causal in time), stacked with
the head's logits at that bin, and a per-bin MLP (weights shared by all bins) that corrects the
logits. Its last layer starts at zero, so training starts from the plain model.

Lookahead L: the output for frame t is computed from frames up to t + L, so the stream emits
frame t's estimate L frames late. The body and the refiner stay causal in the newest frame; the
mask they compute at frame t is frame t - L's, so the refiner's patches (ending at frame t) must
be longer than L to hold the frame they refine. The default model uses L = 0.

Backward stack (`backward`, offline rendering only): a second stack of the same gated layers
runs over the frames in reverse time, so each frame's mask sees `receptive_field - 1` frames of
the future as well as of the past; the two stacks' skip sums are averaged before the head. It
has no streaming step: the runtime runs it as a sequence graph over overlapping chunks of a
file (see `livedemix.batched`). Started from a causal checkpoint, both stacks take its layers
(`with_backward_stack`), so training starts from an average of the causal estimate and the
causal estimate of the time-reversed input.

Streaming: a kernel-2 dilated causal conv at dilation d needs its input from d frames ago,
so its state is the last d inputs. `StreamingStep` runs one frame with those caches packed
into one tensor `conv_state` of shape (1, Σ d, residual), time-major (and, with lookahead, `mag_state`,
the last L magnitude frames); it shares the weights of the full model, and
`factory/export.py` turns it into the ONNX step model that the runtime runs.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

# Options of experiments that never shipped, with the value that means "off" (what the shipped
# checkpoint and card record): the refiner's frame context, per-bin bias and extra depth, and the
# side signal as a third input plane.
REMOVED_OPTIONS = {"local_context": False, "local_bin_bias": False, "local_depth": 1, "side": False}


@dataclass
class ModelConfig:
    bins: int = 513
    channels: int = 2
    stems: int = 4
    residual: int = 64
    skip: int = 64
    hidden: int = 128
    dilations: tuple = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)
    lookahead: int = 0
    local: int = 0  # channels of the local refiner; 0: none
    # The refiner's patches, each (bins: odd, centred; frames: causal) with `local` channels. A
    # tall one (many bins, one frame) sees vertical structure (onsets: drums), a long one (one
    # bin, many frames) horizontal structure (sustained partials), as in harmonic/percussive
    # separation by median filtering (FitzGerald 2010).
    local_patches: tuple = ((5, 3),)
    backward: bool = False  # a reverse-time stack too (offline only; see the module docstring)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        d["local_patches"] = [list(p) for p in self.local_patches]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        # Options of experiments that never shipped (the git tag experiments-before-cleanup has
        # them): older checkpoints and cards record them switched off, which is this model.
        for key, off in REMOVED_OPTIONS.items():
            if key in d and d.pop(key) != off:
                raise ValueError(
                    f"this model uses {key}, an experiment that was removed (git tag experiments-before-cleanup "
                    "has it): build it from that tag"
                )
        d["dilations"] = tuple(d["dilations"])
        if "local_patches" in d:
            d["local_patches"] = tuple(tuple(p) for p in d["local_patches"])
        return cls(**d)

    def __post_init__(self):
        if self.local and self.lookahead >= self.local_frames:
            raise ValueError(
                f"the local refiner's patches span {self.local_frames} frames: a lookahead of {self.lookahead} "
                "would leave the frame it refines outside them; give a lookahead below that or longer patches"
            )
        if self.backward and self.lookahead:
            raise ValueError("a model with the backward stack already sees the future: give it no lookahead")
        if any(b % 2 == 0 for b, _ in self.local_patches):
            raise ValueError("the local refiner's patches need an odd number of bins (centred on the bin)")

    @property
    def local_frames(self) -> int:
        """Frames the refiner looks at (this one and the past), over all its patches."""
        return max(f for _, f in self.local_patches)

    @property
    def receptive_field(self) -> int:
        """Frames of past context (including the current one) behind each output; with the
        backward stack, as many of the future too."""
        return 1 + sum(self.dilations)


class GatedLayer(nn.Module):
    def __init__(self, residual: int, skip: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(residual, 2 * residual, kernel_size=2, dilation=dilation)
        self.res = nn.Conv1d(residual, residual, 1)
        self.skip = nn.Conv1d(residual, skip, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.conv(F.pad(x, (self.dilation, 0)))
        r = x.shape[1]
        z = torch.tanh(a[:, :r]) * torch.sigmoid(a[:, r:])
        return x + self.res(z), self.skip(z)


class LocalRefiner(nn.Module):
    """Per-bin correction of the head's mask logits (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n = cfg.stems * cfg.channels
        self.shapes = cfg.local_patches
        self.frames = cfg.local_frames
        self.patches = nn.ModuleList(nn.Conv2d(cfg.channels, cfg.local, kernel_size=s) for s in self.shapes)
        self.mix = nn.Conv2d(n + len(self.shapes) * cfg.local, cfg.local, 1)
        self.out = nn.Conv2d(cfg.local, n, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before several patches (the first shipped refiner) named the one `patch`.
        for name in ("weight", "bias"):
            old = f"{prefix}patch.{name}"
            if old in state_dict:
                state_dict[f"{prefix}patches.0.{name}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        feat: torch.Tensor,
        logits: torch.Tensor,
        pad_time: bool = True,
        stride: int = 1,
        offset: int = 0,
    ) -> torch.Tensor:
        """feat (B, C, F, T) normalised features, logits (B, J·C, F, T') → corrected logits. With pad_time=False, feat holds the patch's frames before each output
        frame too (T + `frames` - 1 of them): the streaming step's window. With stride s > 1
        (training only), the outputs are for frames offset, offset + s, … (T' of them)."""
        ps = []
        for (pb, pf), conv in zip(self.shapes, self.patches):
            if pad_time:
                x = F.pad(feat, (pf - 1, 0, pb // 2, pb // 2))
            else:  # the window's last pf frames (no slice when that is all of it: one node less)
                x = F.pad(feat if pf == self.frames else feat[..., self.frames - pf :], (0, 0, pb // 2, pb // 2))
            if stride > 1:  # the patches ending at the chosen frames only
                x = x[..., offset : offset + (logits.shape[-1] - 1) * stride + pf]
                ps.append(F.relu(F.conv2d(x, conv.weight, conv.bias, stride=(1, stride))))
                continue
            ps.append(F.relu(conv(x)))
        z = F.relu(self.mix(torch.cat([logits] + ps, dim=1)))
        return logits + self.out(z)


class WaveNetSeparator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        n_in = cfg.channels * cfg.bins
        self.in_scale = nn.Parameter(torch.ones(n_in))
        self.in_bias = nn.Parameter(torch.zeros(n_in))
        self.inp = nn.Conv1d(n_in, cfg.residual, 1)
        self.layers = nn.ModuleList(GatedLayer(cfg.residual, cfg.skip, d) for d in cfg.dilations)
        self.back_layers = (
            nn.ModuleList(GatedLayer(cfg.residual, cfg.skip, d) for d in cfg.dilations) if cfg.backward else None
        )
        self.head1 = nn.Conv1d(cfg.skip, cfg.hidden, 1)
        self.head2 = nn.Conv1d(cfg.hidden, cfg.stems * cfg.channels * cfg.bins, 1)
        self.refiner = LocalRefiner(cfg) if cfg.local else None

    def init_input_stats(self, mag: torch.Tensor) -> None:
        """Set the input affine so log1p features start near zero mean, unit variance."""
        feat = torch.log1p(mag).reshape(mag.shape[0], -1, mag.shape[-1])  # (B, C*F, T), as features() orders it
        mean = feat.mean(dim=(0, 2))
        std = feat.std(dim=(0, 2)).clamp_min(1e-2)
        with torch.no_grad():
            self.in_scale.copy_(1.0 / std)
            self.in_bias.copy_(-mean / std)

    def features(self, mag: torch.Tensor) -> torch.Tensor:
        b, c, f, t = mag.shape
        feat = torch.log1p(mag).reshape(b, c * f, t)
        return feat * self.in_scale[:, None] + self.in_bias[:, None]

    def masks(self, mag: torch.Tensor, stride: int = 1, offset: int = 0) -> torch.Tensor:
        """Masks (B, J, C, F, T) in [0, 1]; mask[..., t] belongs to frame t - lookahead.

        stride s > 1 (training): masks only at frames offset, offset + s, …
        The body runs on every frame (each output needs its past), but the per-bin part (the
        head's last layer, the refiner) and the loss then cost 1/s: they are most of a step."""
        cfg = self.cfg
        feat = self.features(mag)
        x = self.inp(feat)
        skip = _skip_sum(self.layers, x)
        if self.back_layers is not None:
            skip = 0.5 * (skip + _skip_sum(self.back_layers, x.flip(-1)).flip(-1))
        h = F.relu(self.head1(F.relu(skip)))
        if stride > 1:
            h = h[..., offset::stride]
        logits = self.head2(h)
        b, _, t = logits.shape
        if self.refiner is not None:
            logits = self.refiner(
                feat.reshape(b, cfg.channels, cfg.bins, mag.shape[-1]),
                logits.reshape(b, cfg.stems * cfg.channels, cfg.bins, t),
                stride=stride,
                offset=offset,
            )
        return torch.sigmoid(logits).reshape(b, cfg.stems, cfg.channels, cfg.bins, t)

    def forward(self, mag: torch.Tensor, stride: int = 1, offset: int = 0) -> torch.Tensor:
        """Stem magnitudes (B, J, C, F, T) aligned with `mag` (the last L frames are dropped
        and the first L are zero when lookahead L > 0: they'd need the future). With stride
        s > 1, those of frames offset, offset + s, … that have their L frames of future in
        ``mag`` (their masks are computed at frames offset + L, offset + L + s, …; see ``masks``)."""
        L = self.cfg.lookahead
        if stride > 1:
            m = self.masks(mag, stride, offset + L)
            return m * mag[..., offset::stride][..., : m.shape[-1]].unsqueeze(1)
        m = self.masks(mag)
        if L == 0:
            return m * mag.unsqueeze(1)
        out = torch.zeros_like(mag).unsqueeze(1).expand(-1, self.cfg.stems, -1, -1, -1).clone()
        out[..., : mag.shape[-1] - L] = m[..., L:] * mag[..., : mag.shape[-1] - L].unsqueeze(1)
        return out

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_frame(self) -> int:
        """Multiply-accumulates of one streaming step (the matrix products; element-wise ops
        add < 1%)."""
        cfg = self.cfg
        n_in = n_out = cfg.channels * cfg.bins
        per_layer = 2 * cfg.residual * 2 * cfg.residual + cfg.residual * cfg.residual + cfg.residual * cfg.skip
        head = cfg.skip * cfg.hidden + cfg.hidden * cfg.stems * n_out
        n = cfg.stems * cfg.channels
        patches = sum(cfg.channels * pb * pf for pb, pf in cfg.local_patches)
        local = cfg.bins * cfg.local * (patches + n + len(cfg.local_patches) * cfg.local) + cfg.bins * cfg.local * n
        stacks = 2 if cfg.backward else 1
        return n_in * cfg.residual + stacks * len(cfg.dilations) * per_layer + head + local


def _skip_sum(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    skip = 0
    for layer in layers:
        x, s = layer(x)
        skip = skip + s
    return skip


def with_backward_stack(state_dict: dict) -> dict:
    """A causal checkpoint's weights for a model with the backward stack: its layers twice."""
    out = dict(state_dict)
    for k, v in state_dict.items():
        if k.startswith("layers."):
            out.setdefault("back_" + k, v.clone())
    return out


class StreamingStep(nn.Module):
    """One frame of `WaveNetSeparator` with explicit state, for export to ONNX.

    Inputs: mag (1, C, F) (the channels' magnitudes); conv_state (1, Σ d, R): layer i's last d_i
    inputs, oldest first, in rows off_i … off_i + d_i - 1; with lookahead L also mag_state
    (1, C, F, L) (the last L magnitude frames); with the local refiner also feat_state
    (1, C, F, patch frames - 1) (the last features), in that order.
    Outputs: stems (1, J, C, F) for frame t - L; the new states, in the same order.

    Built from a trained network (it copies the weights, fused for a short ONNX graph: one
    matrix product per gated conv over [x(t-d), x(t)], one for the residual and skip
    projections together), so build it after training or loading.

    The state is handled with two gathers for the whole stack rather than slices per layer:
    every layer's past input x(t-d) is in the *incoming* state, so one gather reads them all,
    and the outgoing state is one gather from [incoming state, this frame's layer inputs] with
    a constant index (each segment shifted by one, the new input appended): 139 graph nodes
    instead of 210. The state is time-major so that both gathers copy whole rows of R floats
    (onnxruntime's Gather copies one block per index: along a last axis, one float at a time).
    """

    def __init__(self, net: WaveNetSeparator):
        super().__init__()
        cfg = self.cfg = net.cfg
        if cfg.backward:
            raise ValueError("a model with the backward stack sees the future and has no streaming step")
        self.offsets = []
        off = 0
        for d in cfg.dilations:
            self.offsets.append((off, d))
            off += d
        self.state_len = off
        n = len(cfg.dilations)
        # past_index[i]: the slot of layer i's input d_i frames ago (the oldest in its segment).
        # shift_index[k]: where slot k of the next state comes from in [state, layer inputs].
        shift = []
        for i, (o, d) in enumerate(self.offsets):
            shift += list(range(o + 1, o + d)) + [off + i]
        self.register_buffer("past_index", torch.tensor([o for o, _ in self.offsets], dtype=torch.long))
        self.register_buffer("shift_index", torch.tensor(shift, dtype=torch.long))
        self.n_layers = n
        with torch.no_grad():
            self.register_buffer("in_scale", net.in_scale.detach().clone())
            self.register_buffer("in_bias", net.in_bias.detach().clone())
            self.register_buffer("inp_w", net.inp.weight[:, :, 0].clone())
            self.register_buffer("inp_b", net.inp.bias.clone())
            for i, layer in enumerate(net.layers):
                w = layer.conv.weight  # (2R, R, 2): tap 0 → x[t-d], tap 1 → x[t]
                self.register_buffer(f"gate_w{i}", torch.cat([w[:, :, 0], w[:, :, 1]], dim=1).clone())
                self.register_buffer(f"gate_b{i}", layer.conv.bias.clone())
                self.register_buffer(
                    f"out_w{i}", torch.cat([layer.res.weight[:, :, 0], layer.skip.weight[:, :, 0]], dim=0).clone()
                )
                self.register_buffer(f"out_b{i}", torch.cat([layer.res.bias, layer.skip.bias]).clone())
            self.register_buffer("head1_w", net.head1.weight[:, :, 0].clone())
            self.register_buffer("head1_b", net.head1.bias.clone())
            self.register_buffer("head2_w", net.head2.weight[:, :, 0].clone())
            self.register_buffer("head2_b", net.head2.bias.clone())
        # The refiner runs as is on a window of the last frames' features.
        self.refiner = copy.deepcopy(net.refiner) if net.refiner is not None else None

    def initial_state(self) -> list[torch.Tensor]:
        cfg = self.cfg
        states = [torch.zeros(1, self.state_len, cfg.residual)]
        if cfg.lookahead:
            states.append(torch.zeros(1, cfg.channels, cfg.bins, cfg.lookahead))
        if cfg.local:
            states.append(torch.zeros(1, cfg.channels, cfg.bins, cfg.local_frames - 1))
        return states

    def state_names(self) -> list[str]:
        return (
            ["conv_state"] + (["mag_state"] if self.cfg.lookahead else []) + (["feat_state"] if self.cfg.local else [])
        )

    def forward(self, mag: torch.Tensor, conv_state: torch.Tensor, *extra_states: torch.Tensor):
        """extra_states: mag_state (1, C, F, L) with lookahead L, then feat_state (1, C, F, patch
        frames - 1) with the local refiner."""
        cfg = self.cfg
        mag_state = extra_states[0] if cfg.lookahead else None
        feat_state = extra_states[-1] if cfg.local else None
        r = cfg.residual
        feat = torch.log1p(mag).reshape(1, -1) * self.in_scale + self.in_bias
        x = F.linear(feat, self.inp_w, self.inp_b)  # (1, R)
        pasts = conv_state[0].index_select(0, self.past_index).split(1, dim=0)  # n × (1, R)
        skip = 0
        inputs = []
        for i in range(self.n_layers):
            a = F.linear(torch.cat([pasts[i], x], dim=1), getattr(self, f"gate_w{i}"), getattr(self, f"gate_b{i}"))
            t, g = a.split(r, dim=1)
            z = torch.tanh(t) * torch.sigmoid(g)
            res, sk = F.linear(z, getattr(self, f"out_w{i}"), getattr(self, f"out_b{i}")).split([r, cfg.skip], dim=1)
            inputs.append(x)
            x = x + res
            skip = skip + sk
        h = F.relu(F.linear(F.relu(skip), self.head1_w, self.head1_b))
        logits = F.linear(h, self.head2_w, self.head2_b)
        new_inputs = torch.cat(inputs, dim=0).unsqueeze(0)  # (1, n, R)
        conv_state_out = torch.cat([conv_state, new_inputs], dim=1).index_select(1, self.shift_index)
        outs = [conv_state_out]
        if cfg.local:
            window = torch.cat([feat_state, feat.reshape(1, cfg.channels, cfg.bins, 1)], dim=3)  # (1, C, F, frames)
            lg = logits.reshape(1, cfg.stems * cfg.channels, cfg.bins, 1)
            logits = self.refiner(window, lg, pad_time=False)
        masks = torch.sigmoid(logits).reshape(1, cfg.stems, cfg.channels, cfg.bins)
        target = mag
        if cfg.lookahead:
            target = mag_state[..., 0]  # the frame L steps back
            outs.append(torch.cat([mag_state[..., 1:], mag.unsqueeze(-1)], dim=-1))
        if cfg.local:
            outs.append(window[..., 1:])
        return (masks * target.unsqueeze(1), *outs)

"""SlowFast (Feichtenhofer et al., 2019) with a ResNet-50 backbone, defined here so no extra package is needed.

The module and parameter names follow PyTorchVideo's ``create_slowfast`` layout, so the Kinetics-400
checkpoint of its model zoo (``SLOWFAST_8x8_R50.pyth``, key ``model_state``) loads with
``load_state_dict(strict=True)``:

- ``blocks.0``: the two stems (``multipathway_blocks.{0,1}``: conv, norm, ReLU, max-pool) and the
  fast-to-slow fusion (``multipathway_fusion``: conv_fast_to_slow, norm, ReLU, then concatenation);
- ``blocks.1``-``blocks.4``: the four residual stages of both pathways (``res_blocks.{i}`` with
  ``branch1_conv``/``branch1_norm`` on the shortcut and ``branch2`` = bottleneck ``conv_a``, ``conv_b``,
  ``conv_c`` with their norms), fused after stages 1-3;
- ``blocks.5``: pooling (no parameters); ``blocks.6.proj``: the 400-way Kinetics classifier.

:meth:`SlowFast.features` returns the concatenated global-average-pooled outputs of the two pathways,
``8 w * 32 + w * 32 / 8`` channels: 2,304 for the real model (``w = 64``; 2,048 slow + 256 fast), the
standard "SlowFast" feature of QVHighlights, Charades-STA and TACoS. Small ``w`` and ``depths`` give
the tiny stand-ins the tests build locally.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["SlowFast", "SlowFastConfig"]


@dataclass(frozen=True)
class SlowFastConfig:
    """Architecture of a SlowFast network. The defaults are PyTorchVideo's ``slowfast_r50`` (8x8, K400).

    Attributes:
        width: channels of the slow stem (64); stage ``s`` outputs ``width * 4 * 2**s`` slow channels.
        depths: residual blocks per stage (3, 4, 6, 3 for ResNet-50).
        beta_inv: channel ratio slow : fast (8).
        alpha: frame-rate ratio fast : slow (4); the fusion conv strides time by it.
        fusion_kernel: temporal kernel of the fast-to-slow fusion conv (7).
        num_classes: classifier outputs (400 Kinetics classes).
        frames: frames per clip in the fast pathway (32; the slow pathway takes every ``alpha``-th).
        crop_size: side of the square input crop (224).
        mean, std: per-channel normalisation of RGB in [0, 1].
    """

    width: int = 64
    depths: tuple[int, int, int, int] = (3, 4, 6, 3)
    beta_inv: int = 8
    alpha: int = 4
    fusion_kernel: int = 7
    num_classes: int = 400
    frames: int = 32
    crop_size: int = 224
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    def __post_init__(self) -> None:
        if self.width % self.beta_inv or self.width <= 0:
            raise ValueError(
                f"width must be a positive multiple of beta_inv, got {self.width} / {self.beta_inv}"
            )
        if len(self.depths) != 4 or min(self.depths) < 1:
            raise ValueError(f"depths must be 4 positive block counts, got {self.depths}")
        if self.frames % self.alpha or self.frames < self.alpha:
            raise ValueError(f"frames must be a positive multiple of alpha, got {self.frames} / {self.alpha}")

    @property
    def dim(self) -> int:
        """Width of :meth:`SlowFast.features`: slow ``width * 32`` + fast ``width * 32 / beta_inv``."""
        return self.width * 32 + self.width * 32 // self.beta_inv

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _conv(
    cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)
) -> nn.Conv3d:
    """A bias-free 3D conv padded to keep sizes (``kernel // 2`` on every axis)."""
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)


class _Stem(nn.Module):
    """conv (t x 7 x 7, stride 1, 2, 2) -> BN -> ReLU -> max-pool (1 x 3 x 3, stride 1, 2, 2)."""

    def __init__(self, cout: int, t_kernel: int) -> None:
        super().__init__()
        self.conv = _conv(3, cout, (t_kernel, 7, 7), (1, 2, 2))
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, C, T, H/4, W/4)
        return self.pool(self.activation(self.norm(self.conv(x))))


class _Bottleneck(nn.Module):
    """conv_a (t x 1 x 1) -> conv_b (1 x 3 x 3, spatial stride) -> conv_c (1 x 1 x 1), BN after each."""

    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_a = _conv(cin, inner, (t_kernel, 1, 1))
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU()
        self.conv_b = _conv(inner, inner, (1, 3, 3), (1, stride, stride))
        self.norm_b = nn.BatchNorm3d(inner)
        self.act_b = nn.ReLU()
        self.conv_c = _conv(inner, cout, (1, 1, 1))
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class _ResBlock(nn.Module):
    """ReLU(shortcut(x) + bottleneck(x)); the shortcut is a strided 1x1x1 conv + BN when shapes change."""

    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, stride: int) -> None:
        super().__init__()
        self.branch1_conv: nn.Module | None = None
        self.branch1_norm: nn.Module | None = None
        if cin != cout or stride != 1:
            self.branch1_conv = _conv(cin, cout, (1, 1, 1), (1, stride, stride))
            self.branch1_norm = nn.BatchNorm3d(cout)
        self.branch2 = _Bottleneck(cin, inner, cout, t_kernel, stride)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x
        if self.branch1_conv is not None and self.branch1_norm is not None:
            short = self.branch1_norm(self.branch1_conv(x))
        return self.activation(short + self.branch2(x))


class _ResStage(nn.Module):
    def __init__(self, depth: int, cin: int, inner: int, cout: int, t_kernel: int, stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            _ResBlock(cin if i == 0 else cout, inner, cout, t_kernel, stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class _FuseFastToSlow(nn.Module):
    """Fast (B, c, T, H, W) -> conv (k x 1 x 1, stride alpha) -> BN -> ReLU, concatenated to the slow channels."""

    def __init__(self, fast_channels: int, kernel: int, alpha: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = _conv(fast_channels, 2 * fast_channels, (kernel, 1, 1), (alpha, 1, 1))
        self.norm = nn.BatchNorm3d(2 * fast_channels)
        self.activation = nn.ReLU()

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = x
        fuse = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return [torch.cat([slow, fuse], dim=1), fast]


class _TwoPathways(nn.Module):
    """One block per pathway, then the fusion (identity after the last stage)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: nn.Module | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [self.multipathway_blocks[0](x[0]), self.multipathway_blocks[1](x[1])]
        return self.multipathway_fusion(out) if self.multipathway_fusion is not None else out


class _Head(nn.Module):
    """The Kinetics classifier on the pooled 2,304-d feature (kept so the checkpoint loads strictly)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, dim) -> (B, num_classes)
        return self.proj(x)


class SlowFast(nn.Module):
    """SlowFast network; :meth:`features` gives the pooled clip feature, :meth:`forward` the class logits."""

    def __init__(self, config: SlowFastConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SlowFastConfig()
        w, r = cfg.width, cfg.beta_inv
        blocks: list[nn.Module] = [
            _TwoPathways(_Stem(w, 1), _Stem(w // r, 5), _FuseFastToSlow(w // r, cfg.fusion_kernel, cfg.alpha))
        ]
        slow_in, fast_in, out = w + 2 * w // r, w // r, 4 * w
        for s, depth in enumerate(cfg.depths):
            stride = 1 if s == 0 else 2
            slow = _ResStage(depth, slow_in, out // 4, out, 1 if s < 2 else 3, stride)
            fast = _ResStage(depth, fast_in, out // 4 // r, out // r, 3, stride)
            last = s == len(cfg.depths) - 1
            fusion = None if last else _FuseFastToSlow(out // r, cfg.fusion_kernel, cfg.alpha)
            blocks.append(_TwoPathways(slow, fast, fusion))
            slow_in, fast_in, out = out + 2 * out // r, out // r, 2 * out
        blocks.append(nn.Identity())  # blocks.5: the pooling, parameter-free (see features)
        blocks.append(_Head(cfg.dim, cfg.num_classes))
        self.blocks = nn.ModuleList(blocks)

    def features(self, fast: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised frames, T = ``config.frames`` -> (B, dim) pooled features.

        The slow pathway takes every ``alpha``-th frame (``fast[:, :, ::alpha]``).
        """
        x = [fast[:, :, :: self.config.alpha], fast]
        for block in self.blocks[:5]:
            x = block(x)
        pooled = [p.mean(dim=(2, 3, 4)) for p in x]  # [(B, 8w), (B, w)] global average over T, H, W
        return torch.cat(pooled, dim=1)  # (B, dim)

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, num_classes) Kinetics logits."""
        return self.blocks[6](self.features(fast))

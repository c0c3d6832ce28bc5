"""DeepLOB: convolutions, an inception module and an LSTM over the raw order book.

Paper: Zhang, Zohren, Roberts, "DeepLOB: Deep Convolutional Neural Networks for Limit Order Books",
IEEE Trans. Signal Process. 2019 (arXiv 1808.03668). Layout as in the PyTorch port shipped with TLOB
(Berti & Kasneci 2025, arXiv 2502.15757), generalised to any number of book levels.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from core.attention import SpatialMixerFactory
from domains.finance.models.base import LOBNetwork

__all__ = ["DeepLOB"]

_TIME_LOST = 18  # six Conv(4×1) layers without padding, 3 time steps each


def _conv(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    act: nn.Module,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> list[nn.Module]:
    """Conv2d → activation → BatchNorm, the order of the official code."""
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), act, nn.BatchNorm2d(cout)]


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.01)


class DeepLOB(LOBNetwork):
    """DeepLOB on the order-book columns of ``x``, as a 1-channel image ``(B, 1, T, num_lob_features)``.

    * Block 1: ``Conv(1×2, stride 1×2)`` (pairs price with size), then 2 × ``Conv(4×1)``; LeakyReLU(0.01)
      and BatchNorm after each.
    * Block 2: the same with Tanh (pairs ask with bid).
    * Block 3: ``Conv(1 × num_lob_features/4)`` collapses the levels to width 1 (``1×10`` for 10 levels),
      then 2 × ``Conv(4×1)``; LeakyReLU, BatchNorm.
    * Inception: [1×1 → 3×1], [1×1 → 5×1], [MaxPool 3×1 → 1×1], each with ``inception_channels``,
      concatenated.
    * ``LSTM(3 · inception_channels → lstm_hidden)``, last step, ``Linear`` to the logits.

    The unpadded ``4×1`` convolutions shorten time by 18 (T = 100 → 82), so ``seq_len`` must be ≥ 19.

    **No softmax.** The official port ends with a ``Softmax`` and then trains with ``CrossEntropyLoss``,
    which applies log-softmax again (a double softmax that flattens the gradients): this is a bug, and
    the model returns logits here.

    Training recipe of the paper (configured by the task, not here): Adam with lr 0.01 and **eps = 1**
    (as in the original Keras code), T = 100, the 40 order-book features of 10 levels.

    Args:
        num_lob_features: Order-book columns read from the start of ``x``'s last axis (4 per level:
            ask price, ask size, bid price, bid size); a multiple of 4.
        seq_len: Window length ``T``; at least 19.
        num_horizons: Number of horizons predicted at once.
        num_classes: Classes per horizon.
        conv_channels: Channels of the convolution blocks (32).
        inception_channels: Channels of each inception branch (64).
        lstm_hidden: Hidden size of the LSTM (64).
        spatial_attention: Optional :class:`~core.attention.SpatialMixer` factory applied to the
            ``(B, conv_channels, T', W')`` map after the first two convolution blocks (the third collapses
            the levels to width 1), e.g. ``--model.network.spatial_attention=CBAM`` or
            ``PositionAttention``. Not part of DeepLOB (default None = the paper's network); it lets the
            feature-map attentions of ``core.attention`` be compared on order books.
    """

    def __init__(
        self,
        num_lob_features: int,
        seq_len: int,
        num_horizons: int = 1,
        num_classes: int = 3,
        conv_channels: int = 32,
        inception_channels: int = 64,
        lstm_hidden: int = 64,
        spatial_attention: SpatialMixerFactory | None = None,
    ) -> None:
        super().__init__()
        if num_lob_features < 4 or num_lob_features % 4:
            raise ValueError(
                f"DeepLOB: num_lob_features must be a positive multiple of 4 (ask/bid price/size per level), "
                f"got {num_lob_features}"
            )
        if seq_len - _TIME_LOST < 1:
            raise ValueError(
                f"DeepLOB: seq_len must be >= {_TIME_LOST + 1} (the convolutions shorten time by "
                f"{_TIME_LOST}), got {seq_len}"
            )
        sizes = {"num_horizons": num_horizons, "conv_channels": conv_channels}
        sizes |= {"inception_channels": inception_channels, "lstm_hidden": lstm_hidden}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"DeepLOB: {name} must be >= 1, got {value}")
        if num_classes < 2:
            raise ValueError(f"DeepLOB: num_classes must be >= 2, got {num_classes}")
        self.num_lob_features = num_lob_features
        self.seq_len = seq_len
        self.num_horizons = num_horizons
        self.num_classes = num_classes
        c, ic = conv_channels, inception_channels

        def block(cin: int, width: int, stride: int, act: Callable[[], nn.Module]) -> nn.Sequential:
            layers = _conv(cin, c, (1, width), act(), stride=(1, stride))
            for _ in range(2):
                layers += _conv(c, c, (4, 1), act())
            return nn.Sequential(*layers)

        self.block1 = block(1, 2, 2, _leaky)
        self.block2 = block(c, 2, 2, nn.Tanh)
        self.block3 = block(c, num_lob_features // 4, 1, _leaky)
        if spatial_attention is None:
            self.attention = nn.ModuleList([nn.Identity() for _ in range(2)])
        else:
            self.attention = nn.ModuleList([spatial_attention(c, spatial_dims=2) for _ in range(2)])
        self.branch3 = nn.Sequential(
            *_conv(c, ic, (1, 1), _leaky()), *_conv(ic, ic, (3, 1), _leaky(), padding=(1, 0))
        )
        self.branch5 = nn.Sequential(
            *_conv(c, ic, (1, 1), _leaky()), *_conv(ic, ic, (5, 1), _leaky(), padding=(2, 0))
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d((3, 1), stride=(1, 1), padding=(1, 0)), *_conv(c, ic, (1, 1), _leaky())
        )
        self.lstm = nn.LSTM(3 * ic, lstm_hidden, batch_first=True)
        self.head = nn.Linear(lstm_hidden, num_horizons * num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify windows from their order-book columns.

        Args:
            x: ``(B, T, F)`` float windows with ``F >= num_lob_features``.

        Returns:
            Logits ``(B, num_horizons, num_classes)``.
        """
        if x.ndim != 3 or x.shape[1] != self.seq_len or x.shape[2] < self.num_lob_features:
            raise ValueError(
                f"DeepLOB: expected x of shape (B, {self.seq_len}, F >= {self.num_lob_features}), "
                f"got {tuple(x.shape)}"
            )
        h = x[..., : self.num_lob_features].unsqueeze(1)  # (B, 1, T, W)
        for block, attention in zip((self.block1, self.block2), self.attention, strict=True):
            h = attention(block(h))
        h = self.block3(h)  # (B, C, T - 18, 1)
        h = torch.cat([self.branch3(h), self.branch5(h), self.branch_pool(h)], dim=1)
        out, _ = self.lstm(h.squeeze(-1).transpose(1, 2))  # (B, T - 18, 3·ic)
        logits = self.head(out[:, -1])
        return logits.view(x.shape[0], self.num_horizons, self.num_classes)

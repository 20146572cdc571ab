"""Trainable text-side adapters: a small map applied to the frozen encoder's vectors before the loss
(LLM2CLIP's and the LIFT paper's outlook), saved with the model and applied by `encode_text`, so the
frozen encoder plus the adapter is the run's text tower. The text side still costs O(1) per sample:
no text model runs during training.

Adapters are residual and start as the identity (their last layer is zero), so a run begins exactly
where the paper's recipe does, and weight decay pulls them back towards it.
"""

from __future__ import annotations

from torch import Tensor, nn

from lift.registry import Registry

ADAPTERS: Registry[type[nn.Module]] = Registry("text adapter", flag="--text-adapter")


@ADAPTERS.register("none", help="the paper's recipe: the frozen vectors as they are")
class NoAdapter(nn.Identity):
    def __init__(self, dim: int) -> None:
        super().__init__()


class _Residual(nn.Module):
    """x + f(x), with f's last layer zero so the adapter starts as the identity."""

    def __init__(self, f: nn.Sequential) -> None:
        super().__init__()
        self.f = f
        nn.init.zeros_(f[-1].weight)
        nn.init.zeros_(f[-1].bias)

    def forward(self, x: Tensor) -> Tensor:  # [..., D] -> [..., D]
        return x + self.f(x)


@ADAPTERS.register("linear", help="x + W x (D x D, starts at zero)")
class LinearAdapter(_Residual):
    def __init__(self, dim: int) -> None:
        super().__init__(nn.Sequential(nn.Linear(dim, dim)))


@ADAPTERS.register("mlp", help="x + W2 GELU(W1 x) (D -> D -> D, W2 starts at zero)")
class MLPAdapter(_Residual):
    def __init__(self, dim: int) -> None:
        super().__init__(nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)))


def build_adapter(name: str, dim: int) -> nn.Module:
    return ADAPTERS.get(name)(dim)

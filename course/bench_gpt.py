"""``course bench gpt``: one training step of module 13's GPT next to the same model in PyTorch CPU.

The configuration is the 2017 milestone's character model (4 layers, 4 heads, 128 wide, context 64, batch 12,
65 characters): forward, backward and an AdamW step, in tinytorch and in PyTorch, with the same architecture
(pre-norm blocks, exact GELU, nanoGPT's fused ``c_attn``, tied token embedding and output layer), starting
from the same weights. NumPy's BLAS (``threadpoolctl``) and PyTorch (``torch.set_num_threads``) are pinned to
the same number of threads, and the output says so. Each step is timed as the median of several rounds; the
ratio tinytorch / PyTorch is printed (the issue's target: within 3x on one thread).

Without PyTorch only tinytorch's time is printed. Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from course.bench_training import per_call, training_step
from tinytorch.bench import pinned_threads
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.models.transformer import GPT


@dataclass(frozen=True)
class GPTConfig:
    """nanoGPT's names; the default is the 2017 milestone's character model and batch."""

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    batch_size: int = 12


def torch_gpt(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> Any:
    """The same GPT in PyTorch (nanoGPT's layout and parameter names as ``tinytorch.models.transformer.GPT``'s),
    so that ``load_state_dict(ours.state_dict(), strict=False)`` copies every weight (``strict=False``: PyTorch
    lists the tied matrix under ``lm_head.weight`` too). ``forward(idx, targets)`` returns ``(logits, loss)``."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    class Attention(nn.Module):  # type: ignore[misc]  # (PyTorch is not type-checked: see pyproject.toml)
        def __init__(self) -> None:
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, c = x.shape
            qkv = self.c_attn(x).view(b, t, 3, n_head, c // n_head).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            out: torch.Tensor = self.c_proj(y.transpose(1, 2).reshape(b, t, c))
            return out

    class MLP(nn.Module):  # type: ignore[misc]  # (PyTorch is not type-checked: see pyproject.toml)
        def __init__(self) -> None:
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.c_proj(F.gelu(self.c_fc(x)))
            return out

    class Block(nn.Module):  # type: ignore[misc]  # (PyTorch is not type-checked: see pyproject.toml)
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(n_embd), Attention(), nn.LayerNorm(n_embd), MLP()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x))
            out: torch.Tensor = x + self.mlp(self.ln_2(x))
            return out

    class TorchGPT(nn.Module):  # type: ignore[misc]  # (PyTorch is not type-checked: see pyproject.toml)
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
            self.h = nn.Sequential(*[Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            logits = self.lm_head(self.ln_f(self.h(x)))
            loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            return logits, loss

    return TorchGPT()


def _steps(config: GPTConfig, seed: int = 0) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(seed)
    shape = (config.batch_size, config.block_size)
    idx, targets = rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)
    model = GPT(config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd,
                generator=np.random.default_rng(seed))
    opt = AdamW(model.parameters(), lr=1e-3)
    x, y = Tensor(idx), Tensor(targets)
    steps: dict[str, Callable[[], object]] = {"GPT training step tinytorch": training_step(lambda: model(x, y)[1], opt)}
    if importlib.util.find_spec("torch") is not None:
        import torch

        theirs = torch_gpt(config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
        topt = torch.optim.AdamW(theirs.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(idx), torch.from_numpy(targets)
        steps["GPT training step PyTorch"] = training_step(lambda: theirs(tx, ty)[1], topt)
    return steps


def bench_gpt(threads: int = 1, rounds: int = 7, config: GPTConfig | None = None) -> str:
    """The table: milliseconds per training step, and tinytorch / PyTorch when PyTorch is installed."""
    config = config or GPTConfig()
    with pinned_threads(threads) as note:
        times = per_call(_steps(config), rounds=rounds, block_seconds=0.5)
    lines = [
        f"GPT(vocab_size={config.vocab_size}, block_size={config.block_size}, n_layer={config.n_layer}, "
        f"n_head={config.n_head}, n_embd={config.n_embd}), batch {config.batch_size}, AdamW; "
        f"median of {rounds} rounds",
        f"{'what':<32}{'ms per step':>14}{'tokens/s':>12}",
    ]
    tokens = config.batch_size * config.block_size
    for name, seconds in times.items():
        lines.append(f"{name:<32}{seconds * 1e3:>14.1f}{tokens / seconds:>12,.0f}")
    ours, theirs = times.get("GPT training step tinytorch"), times.get("GPT training step PyTorch")
    if ours is not None and theirs is not None:
        lines.append(f"tinytorch / PyTorch: {ours / theirs:.2f}x")
    lines.append(f"threads: {note}")
    return "\n".join(lines)

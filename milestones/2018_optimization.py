"""2018: the Fashion-MNIST CNN quantized to int8 and pruned, and the char GPT generating with a KV cache.

In 2018 MLPerf (Mattson et al., "MLPerf Training Benchmark", MLSys 2020) began to compare machine-learning systems
on the same models and data against stated quality targets, and the deployment tricks of those years (Jacob et
al.'s integer inference, CVPR 2018; Han et al.'s pruning, 2015; the key-value cache of autoregressive
transformers) became routine. Here they are applied to the course's own models, each against its baseline, and
every number in the table is measured in this run:

- LeNet-5 of the 1998 milestone trained on Fashion-MNIST (3 epochs, not 1998's 6) in float32; quantized to int8 per
  output channel (module 15's ``quantize_model``: int8 weights, a float32 scale per channel, float32 biases,
  computed in float32); magnitude-pruned to 80% zeros across all layers (module 16's ``magnitude_prune``, whose
  masks persist through one fine-tune epoch; its size is that of the weights stored in CSR, though it runs
  dense); pruned then quantized; and, structured, half of each layer's output channels removed
  (``prune_channels``, a really smaller model, one fine-tune epoch). For each: bytes (module 15's
  ``model_size_bytes``), latency (median and interquartile range) of a batch of 256 and of one image, accuracy
  on the 10,000 test images.
- a character GPT of module 13 (4 layers, 4 heads, 128 wide like 2017's, with a context of 160 so that the prompt
  and 128 new characters fit) trained for up to 1,200 steps with 2017's recipe, its validation loss, then 128
  characters generated with ``GPT.generate`` and with module 18's ``generate_cached`` (the same seed): total
  time, ms per token, tokens per second, the cache's bytes (``kv_cache_bytes``) and whether the characters agree.

Targets: int8 costs at most 1 accuracy point, and its weights (int8 codes and scales) take at least 3.9x fewer
bytes than the float32 weights; 80% pruning costs at most 2 points after the fine-tune epoch; cached generation
gives the same characters and is at least 5x faster. The run takes about 5 minutes on 2 cores. ``--quick``: 10,000
training images for 2 epochs, 2,000 test images, fine-tuning on 3,000, a 2-layer 64-wide GPT trained for 12 s
generating 64 characters (cache at least 2x faster), the same other targets, under a minute. Reads
Fashion-MNIST like 1998 (``--data FOLDER``) and Shakespeare like 2017; the table is saved beside the plot.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import sys
import textwrap
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from milestone import Latency, Run, latencies, plt, start
from threadpoolctl import threadpool_limits

from tinytorch import Tensor, manual_seed, no_grad
from tinytorch.core.training import History
from tinytorch.models.transformer import GPT
from tinytorch.nn import Conv2d, Linear, Module, Sequential
from tinytorch.perf.compression import magnitude_prune, prune_channels, remove_pruning, sparsity, to_csr
from tinytorch.perf.memoization import generate_cached, kv_cache_bytes
from tinytorch.perf.quantization import QuantizedConv2d, QuantizedLinear, model_size_bytes, quantize_model
from tinytorch.utils.data import DataLoader, Subset, TensorDataset

# The 1998 and 2017 scripts beside this one (their names start with a digit, hence importlib). What they import
# from tinytorch is imported above too, so that `course milestone 2018 --learner` asks for those modules.
cnn = importlib.import_module("1998_cnn")  # LeNet-5, the Fashion-MNIST sets and their training recipe
shakespeare = importlib.import_module("2017_transformer")  # the plays as token ids and nanoGPT's training recipe


@dataclass(frozen=True)
class Setting:
    n_train: int  # Fashion-MNIST training images
    epochs: int  # of the float32 baseline
    n_test: int  # test images for every accuracy
    batch: int  # images in the batch whose latency is measured
    repeats: int  # timed calls per latency (4x as many for a single image)
    prune: float  # the fraction of weights magnitude pruning removes
    channels: float  # the fraction of output channels structured pruning removes
    tune_images: int  # training images of the one fine-tune epoch after pruning
    gpt: Any  # a 2017_transformer.Config
    new_tokens: int
    gen_repeats: int
    max_int8_drop: float  # accuracy points
    min_size_ratio: float
    max_pruned_drop: float
    min_speedup: float


def gpt_config(**fields: Any) -> Any:
    """2017's ``Config``; it has no loss target here (the loss is reported, not judged)."""
    return shakespeare.Config(target=math.inf, **fields)


FULL = Setting(n_train=60_000, epochs=3, n_test=10_000, batch=256, repeats=15, prune=0.8, channels=0.5,
               tune_images=60_000,
               gpt=gpt_config(n_layer=4, n_head=4, n_embd=128, block_size=160, batch_size=5, max_iters=1200,
                              eval_interval=300, eval_iters=20, learning_rate=2e-3, time_budget=200),
               new_tokens=128, gen_repeats=3, max_int8_drop=1.0, min_size_ratio=3.9, max_pruned_drop=2.0,
               min_speedup=5.0)
QUICK = Setting(n_train=10_000, epochs=2, n_test=2_000, batch=256, repeats=5, prune=0.8, channels=0.5,
                tune_images=3_000,
                gpt=gpt_config(n_layer=2, n_head=2, n_embd=64, block_size=96, batch_size=8, max_iters=150,
                               eval_interval=75, eval_iters=5, learning_rate=3e-3, time_budget=12),
                new_tokens=64, gen_repeats=2, max_int8_drop=1.0, min_size_ratio=3.9, max_pruned_drop=2.0,
                min_speedup=2.0)
PROMPT = "ROMEO:\n"


def parameter_bytes(model: Module) -> int:
    """The bytes of the model's parameter arrays (float32: 4 per weight), each shared array once."""
    return sum(p.data.nbytes for p in model.parameters())


def weight_ratio(model: Module, quantized: Module) -> float:
    """The float32 bytes of the Linear/Conv2d weights over the bytes of their quantized storage (the int8 codes,
    the scales and any zero points): biases, which stay float32, are left out of both."""
    before = sum(layer.weight.data.nbytes for layer in model.modules()
                 if isinstance(layer, Linear | Conv2d) and layer.weight is not None)
    after = sum(layer.qweight.nbytes + layer.scale.nbytes + (0 if layer.zero_point is None else layer.zero_point.nbytes)
                for layer in quantized.modules() if isinstance(layer, QuantizedLinear | QuantizedConv2d))
    return before / after


def csr_bytes(model: Module) -> int:
    """The bytes of the model's Linear/Conv2d weights stored in CSR (module 16's ``to_csr``: values, column
    indices, row pointers; a weight as a matrix of its output channels), plus its dense biases."""
    total = 0
    for layer in model.modules():
        if isinstance(layer, Linear | Conv2d) and layer.weight is not None:
            weight = layer.weight.data
            total += to_csr(weight.reshape(weight.shape[0], -1)).nbytes
            total += 0 if layer.bias is None else layer.bias.data.nbytes
    return total


@dataclass
class Row:
    name: str
    size: int | None = None  # bytes
    batch: Latency | None = None
    single: Latency | None = None
    quality: float | None = None  # accuracy, or validation loss for the GPT
    note: str = ""
    weights_smaller: float | None = None  # float32 weight bytes / quantized weight bytes (int8 and scales)


def measure_cnn(name: str, model: Module, test_set: TensorDataset, size: int, note: str = "",
                weights_smaller: float | None = None) -> Row:
    """Accuracy on the test images (the latencies are measured later, for every version in turn)."""
    predicted = cnn.predictions(model, DataLoader(test_set, batch_size=1000))
    accuracy = float(np.mean(predicted == test_set.tensors[1].data))
    print(f"{name}: accuracy {accuracy:.2%}, {size:,} bytes", flush=True)
    return Row(name, size, quality=accuracy, note=note, weights_smaller=weights_smaller)


def time_cnns(rows: list[Row], models: list[Module], test_set: TensorDataset, setting: Setting) -> None:
    """Each version's latency for a batch and for one image, in eval mode without a graph on one BLAS thread,
    the versions taking turns (``latencies``)."""
    images = test_set.tensors[0].data
    batch, one = Tensor(images[: setting.batch]), Tensor(images[:1])
    for model in models:
        model.eval()
    with no_grad(), threadpool_limits(limits=cnn.THREADS):
        batch_times = latencies({row.name: partial(model, batch) for row, model in zip(rows, models, strict=True)},
                                setting.repeats)
        single_times = latencies({row.name: partial(model, one) for row, model in zip(rows, models, strict=True)},
                                 4 * setting.repeats)
    for row in rows:
        row.batch, row.single = batch_times[row.name], single_times[row.name]
        print(f"{row.name}: batch of {setting.batch} {row.batch}, one image {row.single}", flush=True)


def cnn_rows(run: Run, setting: Setting, train_set: TensorDataset, test_set: TensorDataset) -> list[Row]:
    """The float32 LeNet-5 and its int8, pruned, pruned-int8 and channel-pruned versions, each measured."""
    rng = run.rng()
    train_loader = DataLoader(train_set, batch_size=cnn.BATCH_SIZE, shuffle=True, generator=rng)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = cnn.lenet5(rng)
    history: History = cnn.train(model, train_loader, test_loader, setting.epochs)
    print(f"LeNet-5 trained for {setting.epochs} epochs on {len(train_set):,} images in "
          f"{sum(history.epoch_time):.1f} s", flush=True)
    rows = [measure_cnn("LeNet-5 float32", model, test_set, model_size_bytes(model), "baseline")]
    int8 = quantize_model(model, bits=8, per_channel=True)
    rows.append(measure_cnn("int8 per-channel", int8, test_set, model_size_bytes(int8),
                            f"weights {weight_ratio(model, int8):.2f}x smaller (int8 + a float32 scale per channel), "
                            "biases float32", weight_ratio(model, int8)))
    chosen = rng.permutation(len(train_set))[: setting.tune_images]
    tune_loader = DataLoader(Subset(train_set, np.sort(chosen)), batch_size=cnn.BATCH_SIZE, shuffle=True, generator=rng)
    pruned = magnitude_prune(copy.deepcopy(model), setting.prune)
    tune: History = cnn.train(pruned, tune_loader, test_loader, 1, lr=cnn.LR / 4)
    dense = remove_pruning(copy.deepcopy(pruned))  # the masked weights as plain Linear/Conv2d weights
    rows.append(measure_cnn(f"pruned {setting.prune:.0%}", pruned, test_set, csr_bytes(dense),
                            f"sparsity {sparsity(pruned):.1%} after a {tune.epoch_time[0]:.0f} s fine-tune epoch; "
                            "size stored as CSR, run dense"))
    both = quantize_model(dense, bits=8, per_channel=True)
    zeros = [layer.qweight for layer in both.modules() if isinstance(layer, QuantizedLinear | QuantizedConv2d)]
    zero_share = sum(int(np.count_nonzero(q == 0)) for q in zeros) / sum(q.size for q in zeros)
    rows.append(measure_cnn(f"pruned {setting.prune:.0%} + int8", both, test_set, model_size_bytes(both),
                            f"{zero_share:.1%} of the int8 weights are 0; stored dense"))
    assert isinstance(model, Sequential)
    thin = prune_channels(model, setting.channels)
    cnn.train(thin, tune_loader, test_loader, 1, lr=cnn.LR / 4)
    rows.append(measure_cnn(f"channels pruned {setting.channels:.0%}", thin, test_set, model_size_bytes(thin),
                            "structured: a smaller model, one fine-tune epoch"))
    time_cnns(rows, [model, int8, pruned, both, thin], test_set, setting)
    return rows


@dataclass
class Generation:
    uncached: Latency
    cached: Latency | None
    same_tokens: bool | None
    cache_bytes: int | None
    sample: str
    note: str = ""


def gpt_rows(run: Run, setting: Setting) -> tuple[Row, Generation]:
    """The char GPT trained briefly, its validation loss, and 128 new tokens without and with the KV cache."""
    config = setting.gpt
    manual_seed(run.seed)
    tokenizer, train_data, val_data = shakespeare.shakespeare()
    model = GPT(len(tokenizer.vocab), config.block_size, config.n_layer, config.n_head, config.n_embd, dropout=0.0)
    print(f"GPT: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, context {config.block_size}, "
          f"{model.get_num_params(non_embedding=False):,} parameters; training for up to {config.max_iters} steps "
          f"or {config.time_budget} s", flush=True)
    with threadpool_limits(limits=1):
        history = shakespeare.train(run, model, train_data, val_data, config)
    model.eval()
    prompt = Tensor(np.array([tokenizer.encode(PROMPT)]), dtype=np.int64)
    n = setting.new_tokens

    def uncached() -> Tensor:
        manual_seed(run.seed)
        out: Tensor = model.generate(prompt, max_new_tokens=n, temperature=0.8, top_k=20)
        return out

    def cached() -> Tensor:
        manual_seed(run.seed)
        return generate_cached(model, prompt, n, temperature=0.8, top_k=20)

    with threadpool_limits(limits=1):
        plain, fast = uncached(), cached()  # also the warm-up
        timings = latencies({"uncached": uncached, "cached": cached}, setting.gen_repeats, warmup=0)
    uncached_time, cached_time = timings["uncached"], timings["cached"]
    generation = Generation(uncached_time, cached_time, bool(np.array_equal(plain.data, fast.data)),
                            kv_cache_bytes(model, batch_size=1, seq_len=prompt.shape[1] + n), "")
    generation.sample = tokenizer.decode([int(i) for i in plain.data[0]])
    row = Row(f"char GPT {config.n_layer}x{config.n_embd}", parameter_bytes(model), quality=history["val"][-1],
              note=f"{history['step'][-1]} training steps")
    return row, generation


def table(rows: list[Row], gpt_row: Row, generation: Generation, setting: Setting) -> str:
    base = rows[0]
    assert base.size is not None and base.quality is not None and base.batch is not None
    lines = [f"{'Fashion-MNIST CNN':<22} {'bytes':>9} {'smaller':>7}  {f'batch of {setting.batch}':<24} "
             f"{'one image':<24} {'accuracy':>8} {'change':>7}  note"]
    for row in rows:
        if row.size is None or row.quality is None:
            lines.append(f"{row.name:<22} {row.note}")
            continue
        lines.append(f"{row.name:<22} {row.size:>9,} {base.size / row.size:>6.2f}x  {row.batch!s:<24} "
                     f"{row.single!s:<24} {row.quality:>8.2%} {100 * (row.quality - base.quality):>+6.2f}p  {row.note}")
    n = setting.new_tokens
    lines += ["", f"{gpt_row.name}: {gpt_row.size:,} bytes of float32 parameters, validation loss "
              f"{gpt_row.quality:.3f} nats/char ({gpt_row.note})",
              f"{f'generating {n} tokens':<22} {'total':<24} {'ms/token':>9} {'tokens/s':>9}  note"]
    for label, timing in (("uncached", generation.uncached), ("KV cache", generation.cached)):
        if timing is None:
            lines.append(f"{label:<22} {generation.note}")
            continue
        note = ""
        if label == "KV cache":
            note = (f"{generation.uncached.median / timing.median:.1f}x faster, same tokens: "
                    f"{'yes' if generation.same_tokens else 'NO'}, cache {generation.cache_bytes:,} bytes")
        line = f"{label:<22} {timing!s:<24} {1e3 * timing.median / n:>9.2f} {n / timing.median:>9.1f}  {note}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def verdict(rows: list[Row], generation: Generation, setting: Setting) -> tuple[list[str], bool]:
    """Each target with its measured figure; all must hold."""
    base, int8, pruned = rows[:3]
    assert base.size is not None and base.quality is not None
    checks: list[tuple[str, bool]] = []
    if int8.size is None or int8.quality is None:
        checks.append((f"int8: {int8.note}", False))
    else:
        drop = 100 * (base.quality - int8.quality)
        ratio = int8.weights_smaller or 0.0
        checks.append((f"int8 accuracy {int8.quality:.2%} vs {base.quality:.2%} (drop {drop:.2f} points, target <= "
                        f"{setting.max_int8_drop:g})",
                       drop <= setting.max_int8_drop))
        checks.append((f"int8 weights {ratio:.2f}x smaller (target >= {setting.min_size_ratio:g}x)",
                       ratio >= setting.min_size_ratio))
    if pruned.quality is None:
        checks.append((f"pruning: {pruned.note}", False))
    else:
        drop = 100 * (base.quality - pruned.quality)
        checks.append((f"{pruned.name} accuracy {pruned.quality:.2%} (drop {drop:.2f} points, target <= "
                        f"{setting.max_pruned_drop:g})",
                       drop <= setting.max_pruned_drop))
    if generation.cached is None:
        checks.append((f"KV cache: {generation.note}", False))
    else:
        speedup = generation.uncached.median / generation.cached.median
        same = bool(generation.same_tokens)
        checks.append((f"KV cache same tokens: {'yes' if same else 'no'}", same))
        checks.append((f"KV cache {speedup:.1f}x faster (target >= {setting.min_speedup:g}x)",
                       speedup >= setting.min_speedup))
    return [text for text, _ in checks], all(ok for _, ok in checks)


def plot(run: Run, rows: list[Row], generation: Generation, setting: Setting, n_test: int, title: str) -> Path:
    """Size, accuracy and latency of each CNN version; ms per generated token without and with the cache."""
    figure, (ax_size, ax_acc, ax_time, ax_gen) = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
    measured = [row for row in rows if row.size is not None and row.quality is not None and row.batch is not None]
    names = [textwrap.fill(row.name, 11) for row in measured]
    colors = [f"C{i}" for i in range(len(measured))]
    ax_size.bar(names, [row.size / 1024 for row in measured if row.size is not None], color=colors)
    ax_size.set(ylabel="KiB", title="model size")
    accuracies = [100 * row.quality for row in measured if row.quality is not None]
    ax_acc.bar(names, accuracies, color=colors)
    ax_acc.set(ylabel=f"% of {n_test:,} test images", title="accuracy",
               ylim=(min(accuracies) - 3, max(accuracies) + 1))
    medians = [1e3 * row.batch.median for row in measured if row.batch is not None]
    spread = np.array([[1e3 * (row.batch.median - row.batch.q1), 1e3 * (row.batch.q3 - row.batch.median)]
                       for row in measured if row.batch is not None]).T
    ax_time.bar(names, medians, yerr=spread, capsize=4, color=colors)
    ax_time.set(ylabel="ms (median, IQR)", title=f"latency, batch of {setting.batch}")
    for ax in (ax_size, ax_acc, ax_time):
        ax.tick_params(axis="x", labelsize=8)
    n = setting.new_tokens
    timings = [("uncached", generation.uncached), ("KV cache", generation.cached)]
    shown = [(label, t) for label, t in timings if t is not None]
    ax_gen.bar([label for label, _ in shown], [1e3 * t.median / n for _, t in shown], color=["C7", "C2"][: len(shown)],
               yerr=np.array([[1e3 * (t.median - t.q1) / n, 1e3 * (t.q3 - t.median) / n] for _, t in shown]).T,
               capsize=4)
    ax_gen.set(ylabel="ms per token (median, IQR)", title=f"GPT, {n} new tokens")
    if generation.cached is not None:
        ax_gen.text(1, 1e3 * generation.cached.q3 / n, f"{generation.uncached.median / generation.cached.median:.1f}x "
                    "faster", ha="center", va="bottom")
    figure.suptitle(title, fontsize=12)
    return run.save(figure)


def add_options(parser: argparse.ArgumentParser) -> None:
    cnn.add_options(parser)


def main() -> int:
    run = start("2018_optimization", __doc__ or "",
                quick="10,000 training images, 2,000 test images, a 2-layer GPT generating 64 tokens (under a minute)",
                options=add_options)
    setting = QUICK if run.quick else FULL
    try:
        train_set, test_set = cnn.fashion_sets(run.args.data, setting.n_train, setting.n_test, run.rng())
    except FileNotFoundError as err:
        print(f"{run.name}: {err} (to this script: --data FOLDER)", file=sys.stderr)
        return 2
    print(f"{'quick run' if run.quick else 'full run'}: LeNet-5 on {len(train_set):,} Fashion-MNIST training images "
          f"for {setting.epochs} epochs, accuracy on {len(test_set):,} test images; NumPy's BLAS pinned to 1 thread "
          f"(threadpoolctl)", flush=True)
    rows = cnn_rows(run, setting, train_set, test_set)
    gpt_row, generation = gpt_rows(run, setting)
    report = table(rows, gpt_row, generation, setting)
    print("\n" + report + "\n")
    print(f"--- {setting.new_tokens} generated characters ---\n{generation.sample}\n---", flush=True)
    (run.out / f"{run.name}.txt").write_text(report + "\n", encoding="utf-8")
    checks, reached = verdict(rows, generation, setting)
    result = "; ".join(checks) + (" (quick run)" if run.quick else "")
    kind = "quick run" if run.quick else "full run"
    path = plot(run, rows, generation, setting, len(test_set), f"2018: optimizing the course's models ({kind})")
    print(f"table: {run.out / f'{run.name}.txt'}")
    return run.finish(result, reached, path)


if __name__ == "__main__":
    raise SystemExit(main())

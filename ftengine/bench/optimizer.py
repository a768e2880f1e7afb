"""Optimizer workbench: FlatOptimizer against torch.optim.AdamW (for-loop, foreach, fused) on real model shapes.

llm.c style: build the inputs, run the reference, run each backend and validate its output, then time. Each case is a
model's parameter shapes (MODELS: MiniLM-L6, BERT-base, a 1.1B Llama, ResNet-50; structure only, built on the meta
device) split into N optimizer
groups, a precision and a frozen fraction (the input-side groups are frozen; torch gets only the trainable groups,
as other tools do). Reported per implementation: ms/step (median of repeats, wall clock; CPU time too, since a
shared machine deschedules threads), effective GB/s = bytes moved per parameter x trainable parameters / time, and
the ratio to a plain copy of the same number of bytes timed in the same rounds (same run, same load). Bytes count
each read and each write once; a copy's destination write also costs a read for ownership that is not counted,
while an optimizer's writes go to lines it just read, so an optimizer step can exceed the copy's effective GB/s.
Used by `ftengine bench optimizer`, bench/optimizer.py and bench/bench_optimizer.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import torch

from ftengine.bench.kit import echo, environment, loadavg, progress, sync
from ftengine.bench.options import OPTIMIZER_IMPLS as IMPLS
from ftengine.bench.options import OPTIMIZER_MODELS as MODELS
from ftengine.kernels.flat import bytes_per_param
from ftengine.kernels.testing import tol
from ftengine.runtime.optimizer import FlatOptimizer

# parameter dtype; "bf16" = bf16 parameters with fp32 master weights and fp32 moments (the "-bf16m" impls: bf16 moments)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _bert_group(name: str) -> str:
    return "embeddings" if name.startswith("embeddings") else \
        ".".join(name.split(".")[:3]) if name.startswith("encoder") else "pooler"


def _llama_group(name: str) -> str:
    return ".".join(name.split(".")[:3]) if name.startswith("model.layers") else name.split(".")[-2]


NATURAL = {"minilm-l6": _bert_group, "bert-base": _bert_group, "llama-1b": _llama_group,
           "resnet50": lambda n: n.split(".")[0] if n.startswith("layer") else "fc" if n.startswith("fc") else "stem"}
"""Per model: parameter name -> its natural (per-layer) group: MiniLM-L6 8 groups, BERT-base 14, Llama 25, ResNet 6."""


@dataclass(frozen=True)
class Case:
    """One benchmark setting."""

    model: str
    groups: int
    precision: str
    frozen: float

    @property
    def name(self) -> str:
        return f"{self.model}/g{self.groups}/{self.precision}/frozen{int(self.frozen * 100)}"


@lru_cache(maxsize=8)
def model_shapes(model: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter of ``model`` (one of MODELS), from the real architecture on the meta device.

    minilm-l6: all-MiniLM-L6-v2 (22.7M); bert-base: BERT-base (110M); llama-1b: TinyLlama-1.1B's shape (22 layers,
    hidden 2048, MLP 5632, 4 KV heads, vocab 32000, untied LM head: 1.10B); resnet50: torchvision's (25.6M).
    """
    with torch.device("meta"):
        if model in ("bert-base", "minilm-l6"):
            from transformers import BertConfig, BertModel

            small = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
            module = BertModel(BertConfig(**(small if model == "minilm-l6" else {})), add_pooling_layer=True)
        elif model == "llama-1b":
            from transformers import LlamaConfig, LlamaForCausalLM

            module = LlamaForCausalLM(LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                                  num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                                                  tie_word_embeddings=False))
        elif model == "resnet50":
            import torchvision

            module = torchvision.models.resnet50()
        else:
            raise ValueError(f"bench optimizer: unknown model {model!r}; choose from {', '.join(MODELS)}")
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


def split_groups(model: str, shapes: list[tuple[str, tuple[int, ...]]], groups: int) -> list[list[tuple[int, ...]]]:
    """Per-layer groups when ``groups`` is the model's natural count (see NATURAL), else a contiguous split
    into ``groups`` runs of about equally many parameters (as per-module groups with biases and norms split out:
    big and tiny groups interleave); 1 = everything in one group."""
    natural: dict[str, list[tuple[int, ...]]] = {}
    for name, shape in shapes:
        natural.setdefault(NATURAL[model](name), []).append(shape)
    if groups == len(natural):
        return list(natural.values())
    if not 1 <= groups <= len(shapes):
        raise ValueError(f"bench optimizer: {model} has {len(shapes)} parameters; groups must be 1..{len(shapes)} "
                         f"(got {groups})")
    out: list[list[tuple[int, ...]]] = [[] for _ in range(groups)]
    for i, (_, shape) in enumerate(shapes):
        out[i * groups // len(shapes)].append(shape)
    return out


def frozen_mask(group_shapes: list[list[tuple[int, ...]]], fraction: float) -> list[bool]:
    """trainable flags: input-side groups frozen while a group's midpoint is within ``fraction`` of the parameters."""
    sizes = [sum(torch.Size(s).numel() for s in g) for g in group_shapes]
    total, acc, mask = sum(sizes), 0, []
    for n in sizes:
        frozen = fraction > 0 and acc + n / 2 <= fraction * total
        mask.append(not frozen)
        acc += n
    return mask


@dataclass
class Setup:
    """Parameters and grads of one case on one device, built for one implementation."""

    params: list[list[torch.nn.Parameter]]
    trainable: list[bool]
    step: Callable[[], object] = field(default=lambda: None)
    optimizer: object = None

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for ps, t in zip(self.params, self.trainable) if t for p in ps)


def build(case: Case, impl: str, device: str, shrink: int | None = None, seed: int = 0) -> Setup:
    """Parameters (random), grads (random, fixed seed) and the step function of ``impl`` for ``case``."""
    dtype = PRECISIONS[case.precision]
    shapes = split_groups(case.model, model_shapes(case.model), case.groups)
    if shrink:  # validation replica: same groups and masks, each parameter cut to at most `shrink` elements
        shapes = [[(min(torch.Size(s).numel(), shrink),) for s in g] for g in shapes]
    trainable = frozen_mask(shapes, case.frozen)
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [[torch.nn.Parameter(torch.randn(s, generator=gen, device=device).to(dtype)) for s in g] for g in shapes]
    for g in params:
        for p in g:
            p.grad = torch.randn(p.shape, generator=gen, device=device).to(dtype)
    setup = Setup(params, trainable)
    lrs = [1e-4 * (0.9 ** (len(params) - i)) for i in range(len(params))]
    if impl.startswith("ftengine"):
        state = "bf16" if impl.endswith("bf16m") else "fp32"
        l2sp = "l2sp" in impl  # every group anchored (the most work L2-SP adds), weight decay kept as well
        groups = [dict(params=ps, name=f"g{i}", lr=lr, weight_decay=0.01, trainable=t, l2sp=0.01 if l2sp else 0.0)
                  for i, (ps, lr, t) in enumerate(zip(params, lrs, trainable))]
        backend = "reference" if impl.startswith("ftengine-reference") else "auto"
        opt = FlatOptimizer(groups, max_grad_norm=None, skip_nonfinite=False, state_dtype=state, backend=backend,
                            anchor_dtype=_anchor(impl))
    else:
        groups = [dict(params=ps, lr=lr, weight_decay=0.01) for ps, lr, t in zip(params, lrs, trainable) if t]
        flags = {"torch-forloop": dict(foreach=False), "torch-foreach": dict(foreach=True),
                 "torch-fused": dict(fused=True)}[impl]
        opt = torch.optim.AdamW(groups, **flags)
    setup.step, setup.optimizer = opt.step, opt
    return setup


def impl_bytes(case: Case, impl: str) -> int:
    """Bytes moved per trainable parameter by ``impl`` (torch keeps state in the parameter dtype, no master)."""
    pdt = PRECISIONS[case.precision]
    if impl.startswith("ftengine"):
        state = torch.bfloat16 if impl.endswith("bf16m") else torch.float32
        anchor = _anchor(impl)
        return bytes_per_param("adamw", pdt, state, grad_norm=False,
                               anchor_dtype=getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[anchor])
                               if anchor else None)
    p = torch.empty((), dtype=pdt).element_size()
    return 7 * p  # read p, g, m, v; write p, m, v (all in the parameter dtype)


def validate(case: Case, impl: str, device: str, steps: int = 2, shrink: int = 4097) -> str:
    """Run ``impl`` and the reference on a small replica of ``case`` (every parameter cut to at most ``shrink``
    elements); raise if any parameter differs."""
    bf16m = impl.endswith("bf16m")
    low = PRECISIONS[case.precision] != torch.float32 or bf16m
    if impl.startswith("torch") and low:
        return "not compared (torch keeps bf16 state without fp32 master weights: different numerics)"
    anchor = {None: "", "fp32": "-l2sp", "bf16": "-l2sp-bf16"}[_anchor(impl)]
    ref = build(case, "ftengine-reference" + anchor + ("-bf16m" if bf16m else ""), device, shrink=shrink)
    got = build(case, impl, device, shrink=shrink)
    for _ in range(steps):
        ref.step()
        got.step()
    tolerance = tol(torch.bfloat16 if low else torch.float32)
    for a, b in zip((p for g in got.params for p in g), (p for g in ref.params for p in g)):
        torch.testing.assert_close(a.detach().float(), b.detach().float(), **tolerance,
                                   msg=lambda m: f"{case.name} {impl} differs from the reference: {m}")
    return "ok"


def _time_once(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """Wall-clock and process-CPU milliseconds of one call."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def _copier(nbytes: int, device: str) -> Callable[[], None]:
    """A plain copy moving ``nbytes`` (read + write) in 256 MiB slices (far larger than any cache)."""
    chunk = min(256 << 20, max(nbytes // 2, 1 << 20))
    src = torch.ones(chunk, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = max(1, round(nbytes / (2 * chunk)))

    def copy() -> None:
        for _ in range(times):
            dst.copy_(src)

    copy.nbytes = 2 * chunk * times  # type: ignore[attr-defined]
    return copy


def _anchor(impl: str) -> str | None:
    """The L2-SP anchor dtype an implementation name asks for: ``-l2sp`` fp32, ``-l2sp-bf16`` bf16, else none."""
    if "l2sp" not in impl:
        return None
    return "bf16" if "l2sp-bf16" in impl else "fp32"


# Timed together, round-robin (their ratios are the targets); the slow torch variants run one after another.
INTERLEAVED = ("ftengine", "ftengine-bf16m", "ftengine-l2sp", "ftengine-l2sp-bf16", "torch-fused")


def run_case(case: Case, impls: tuple[str, ...], device: str, reps: int, log: Callable[[str], None],
             max_numel: int | None = None) -> list[dict]:
    """Validate and time every implementation of one case; one result row per implementation.

    ``max_numel`` cuts every parameter to at most that many elements (a smoke test of the whole sweep on tiny
    sizes; the timings then mean little).

    The implementations in INTERLEAVED are alive at once and timed round-robin, each round also timing the copy
    baseline, so a change in machine load hits all of them alike; the others are timed one at a time, each
    next to its own copy measurements.
    """
    status = {impl: validate(case, impl, device, shrink=min(4097, max_numel or 4097)) for impl in impls}
    together = [i for i in impls if i in INTERLEAVED]
    batches = [together] + [[i] for i in impls if i not in INTERLEAVED]
    rows = []
    for batch in (b for b in batches if b):
        setups = {impl: build(case, impl, device, shrink=max_numel) for impl in batch}
        nbytes = {impl: impl_bytes(case, impl) * s.trainable_params for impl, s in setups.items()}
        copy = _copier(max(nbytes.values()), device)
        for fn in [*(s.step for s in setups.values()), copy]:
            fn()  # warm-up: first-touch of state, kernel selection
        wall: dict[str, list[float]] = {impl: [] for impl in [*batch, "copy"]}
        cpu: dict[str, list[float]] = {impl: [] for impl in batch}
        for _ in range(reps):
            for impl, setup in setups.items():
                w, c = _time_once(setup.step, device)
                wall[impl].append(w)
                cpu[impl].append(c)
            wall["copy"].append(_time_once(copy, device)[0])
        copy_gbps = copy.nbytes / statistics.median(wall["copy"]) / 1e6  # type: ignore[attr-defined]
        for impl, setup in setups.items():
            ms = statistics.median(wall[impl])
            gbps = nbytes[impl] / ms / 1e6
            row = dict(case=case.name, **asdict(case), impl=impl, validation=status[impl],
                       trainable_params=setup.trainable_params, bytes_per_param=impl_bytes(case, impl),
                       ms_median=ms, ms_min=min(wall[impl]), ms_max=max(wall[impl]),
                       ms_all=[round(x, 2) for x in wall[impl]], cpu_ms_median=statistics.median(cpu[impl]),
                       cpu_ms_min=min(cpu[impl]), cpu_ms_max=max(cpu[impl]), gbps=gbps, copy_gbps=copy_gbps,
                       ratio_to_copy=gbps / copy_gbps)
            rows.append(row)
            log(f"{case.name:34s} {impl:15s} {ms:8.1f} ms  {gbps:6.1f} GB/s  copy {copy_gbps:5.1f} GB/s  "
                f"x{row['ratio_to_copy']:.2f} of copy  [{status[impl]}]")
        del setups
    fused = next((r["ms_median"] for r in rows if r["impl"] == "torch-fused"), None)
    for r in rows:
        r["speedup_vs_torch_fused"] = fused / r["ms_median"] if fused else None
    return rows


def run_sweep(args: argparse.Namespace, log: Callable[[str], None] = echo) -> dict:
    """Every case of the sweep described by ``args``; returns the JSON-able result (environment + rows)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    models = ["bert-base"] if args.quick else args.models.split(",")
    group_counts = [14, 26] if args.quick else [int(g) for g in args.groups.split(",")]
    impls = tuple(args.impls.split(","))
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ValueError(f"bench optimizer: --impls: unknown {', '.join(unknown)}; choose from {', '.join(IMPLS)}")
    env = environment(args.device)
    log(f"device {env['device_name']} | torch {env['torch']} threads {env['torch_threads']} | "
        f"backend {env['backend']['active']} | load {env['loadavg']}")
    cases, skipped = [], []
    for model in models:
        for groups in group_counts:
            for precision in args.precisions.split(","):
                for frozen in (float(f) for f in args.frozen.split(",")):
                    case = Case(model, groups, precision, frozen)
                    if frozen > 0 and groups == 1:
                        skipped.append(f"{case.name}: one group cannot be partly frozen")
                    else:
                        cases.append(case)
    rows: list[dict] = []
    with progress(len(cases), "optimizer", log) as bar:
        for case in cases:
            bar.start(case.name)
            rows += run_case(case, impls, args.device, args.reps, bar.log, getattr(args, "max_numel", None))
            bar.done()
    env["loadavg_end"] = loadavg()
    settings = dict(models=models, groups=group_counts, precisions=args.precisions.split(","),
                    frozen=args.frozen, impls=list(impls), reps=args.reps, optimizer="AdamW lr~1e-4 wd 0.01",
                    max_numel=getattr(args, "max_numel", None),
                    bytes_note="bytes_per_param: reads + writes of one step per trainable parameter "
                               "(torch: state in the parameter dtype, no master weights)")
    summary = summarize(rows)
    for line in summary["lines"]:
        log(line)
    return dict(benchmark="optimizer", environment=env, settings=settings, skipped=skipped, summary=summary,
                results=rows)


def summarize(rows: list[dict]) -> dict:
    """The issue's targets, from the rows: speed vs torch fused (fp32 and bf16 moments), and time vs trainable share.

    Ratios are same-case, same-run medians: torch-fused ms / ftengine ms, and ms(50% frozen) / ms(0% frozen).
    """
    by = {(r["model"], r["groups"], r["precision"], r["frozen"], r["impl"]): r for r in rows}
    out: dict = {"vs_torch_fused": [], "frozen_scaling": [], "lines": []}
    for (model, groups, precision, frozen, impl), r in sorted(by.items()):
        if impl.startswith("ftengine") and r.get("speedup_vs_torch_fused"):
            out["vs_torch_fused"].append(dict(case=r["case"], impl=impl, speedup=round(r["speedup_vs_torch_fused"], 3)))
        base = by.get((model, groups, precision, 0.0, impl))
        if frozen > 0 and base and impl.startswith("ftengine"):
            time_ratio = r["ms_median"] / base["ms_median"]
            share = r["trainable_params"] / base["trainable_params"]
            out["frozen_scaling"].append(dict(case=r["case"], impl=impl, time_ratio=round(time_ratio, 3),
                                              trainable_share=round(share, 3)))
    for item in out["vs_torch_fused"]:
        out["lines"].append(f"{item['case']:34s} {item['impl']:15s} {item['speedup']:.2f}x torch fused")
    for item in out["frozen_scaling"]:
        out["lines"].append(f"{item['case']:34s} {item['impl']:15s} time x{item['time_ratio']:.2f} of unfrozen "
                            f"(trainable share {item['trainable_share']:.2f})")
    return out

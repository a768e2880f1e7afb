"""ActivationCache on MiniLM: one pass fills every boundary, persisted entries are reused only when every key
part matches, damaged entries are rebuilt, lookups reproduce the backbone's own hidden states."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from cache_testing import CsvTextBundle, make_plan, with_cache

from ftengine.runtime.cache import ActivationCache
from ftengine.runtime.cache.fill import run_fill
from ftengine.runtime.cache.keys import CacheKey, prefix_fingerprints
from ftengine.runtime.cache.layout import EntryWriter
from ftengine.runtime.cache.store import ActivationStore
from ftengine.runtime.model import inputs_of

GRADUAL = ["freeze.groups_per_stage=2", "freeze.max_unfrozen=6"]  # stages read boundaries 8, 5, 3, 1


def examples_through_layer0(backbone) -> Counter:
    """Counts examples entering encoder.layer.0 (the cost of a forward through the frozen prefix)."""
    seen: Counter = Counter()
    layer = backbone.get_submodule("encoder.layer.0")
    layer.register_forward_hook(lambda m, args, out: seen.update(n=args[0].shape[0]))
    return seen


def build(spec, graph, backbone, data, **cache):
    return ActivationCache.create(with_cache(graph, **cache), backbone, data, device="cpu")


def test_one_pass_per_split_fills_every_boundary(fresh_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(fresh_backbone, GRADUAL)
    assert graph.cache_boundaries() == (1, 3, 5, 8)
    seen = examples_through_layer0(fresh_backbone)
    cache = build(spec, graph, fresh_backbone, tiny_data)
    cache.prepare(graph.cache_boundaries(), quiet=True)
    stats = cache.stats()
    assert seen["n"] == len(tiny_data.train) + len(tiny_data.validation)  # once per example, not once per boundary
    assert stats["forward_passes"] == {"train": {1: 1, 3: 1, 5: 1, 8: 1}, "validation": {1: 1, 3: 1, 5: 1, 8: 1}}
    assert stats["forward_passes_per_boundary"] == {1: 1, 3: 1, 5: 1, 8: 1}
    # auto on a CPU run: read from the page cache, no second copy in the process (tiers.plan_tiers)
    assert stats["tier"] == "disk" and stats["dtype"] == "fp32" and not stats["lossy"]
    assert all(cache.has(s, b) for s in ("train", "validation") for b in (1, 3, 5, 8))
    assert not cache.has("test", 5)  # the bundle has no test split

    again = build(spec, graph, fresh_backbone, tiny_data)  # a second run of the same spec: warm
    again.prepare(graph.cache_boundaries(), quiet=True)
    assert seen["n"] == len(tiny_data.train) + len(tiny_data.validation)
    assert again.stats()["forward_passes"] == {} and len(again.stats()["warm"]) == 8
    idx = torch.tensor([5, 0, 17])
    for b in (1, 8):
        assert all(torch.equal(v, again.lookup("train", b, idx)[k]) for k, v in cache.lookup("train", b, idx).items())


def test_the_test_split_is_filled_only_where_the_last_stage_reads(fresh_backbone, tiny_data, cache_dir):
    # The test split is read once, after training, when every other stage's boundary has been released.
    data = copy.copy(tiny_data)
    data.test = tiny_data.validation
    data.lengths = dict(tiny_data.lengths, test=tiny_data.lengths["validation"])
    spec, graph = make_plan(fresh_backbone, GRADUAL)
    last = graph.stages[-1].cache
    assert last.allowed and last.boundary == 1
    seen = examples_through_layer0(fresh_backbone)
    cache = build(spec, graph, fresh_backbone, data)
    cache.prepare(graph.cache_boundaries(), quiet=True)
    assert [b for b in (1, 3, 5, 8) if cache.has("test", b)] == [1]
    assert all(cache.has(s, b) for s in ("train", "validation") for b in (1, 3, 5, 8))
    assert cache.stats()["forward_passes"]["test"] == {1: 1}
    # train and validation go once through layer 0; test stops at boundary 1 (the embeddings) and never enters it
    assert seen["n"] == len(data.train) + len(data.validation)


def test_lookup_reproduces_the_backbones_hidden_states(minilm_backbone, tiny_data, tmp_path):
    """Padding-free storage round-trips: batches filled as collated give back the same rows, bit for bit."""
    backbone = minilm_backbone
    batches = [tiny_data.collate([tiny_data.train[i] for i in ids]) for ids in ([3, 0, 7], [1, 2, 4, 5, 6])]
    keys = {b: CacheKey(prefix=p, boundary=b, data="d", split="train", dtype="fp32")
            for b, p in prefix_fingerprints(backbone, [2, 8]).items()}
    writers = {b: EntryWriter(tmp_path, k, 8, {}) for b, k in keys.items()}
    run_fill(backbone, batches, writers, device=torch.device("cpu"), store_dtype=torch.float32)
    for b, writer in writers.items():
        store = ActivationStore.open(writer.commit(), tier="disk", device="cpu")
        for batch in batches:
            with torch.no_grad():
                want = backbone.forward_from(0, inputs_of(batch), stop=b)
            got = store.lookup(batch["index"])
            real = batch["attention_mask"].bool()
            assert torch.equal(got["attention_mask"], batch["attention_mask"])
            assert torch.equal(got["hidden"][real], want["hidden"][real])
            assert not got["hidden"][~real].any()
            if b == 8:
                assert torch.equal(got["pooled"], want["pooled"])


def test_lookup_in_other_batches_matches_within_float_noise(minilm_backbone, tiny_data, cache_dir):
    # Batches other than the fill's differ only by matmul blocking on differently padded shapes.
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    cache = build(spec, graph, minilm_backbone, tiny_data)
    cache.prepare([5], splits=("train",), quiet=True)
    batch = tiny_data.collate([tiny_data.train[i] for i in (9, 2, 30)])
    with torch.no_grad():
        want = minilm_backbone.forward_from(0, inputs_of(batch), stop=5)
    got = cache.lookup("train", 5, batch["index"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got["hidden"][real], want["hidden"][real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", ["data file", "max_length", "weights", "dtype"])
def test_any_key_change_is_a_miss(change, fresh_backbone, tiny_data, tiny_csv, cache_dir, tmp_path):
    spec, graph = make_plan(fresh_backbone, GRADUAL)
    build(spec, graph, fresh_backbone, tiny_data).prepare([3, 5], splits=("train",), quiet=True)
    data, options = tiny_data, {}
    if change == "data file":
        text = tiny_csv.read_text().splitlines()
        text[1] = text[1].replace(text[1].split(",")[0], "an entirely new first tweet", 1)
        changed = tmp_path / "changed.csv"
        changed.write_text("\n".join(text) + "\n")
        data = CsvTextBundle(changed, fresh_backbone.tokenizer)
    elif change == "max_length":
        data = CsvTextBundle(tiny_csv, fresh_backbone.tokenizer, max_length=16)
    elif change == "weights":
        with torch.no_grad():  # encoder.layer.3 = group 4: inside boundary 5's prefix, outside boundary 3's
            fresh_backbone.get_parameter("encoder.layer.3.attention.self.query.bias").add_(0.01)
    else:
        options = {"dtype": "bf16"}
    cache = build(spec, graph, fresh_backbone, data, **options)
    cache.prepare([3, 5], splits=("train",), quiet=True)
    stats = cache.stats()
    if change == "weights":  # boundary 3 stays valid; 5 is refilled starting from the cached boundary 3
        assert stats["forward_passes"] == {"train": {5: 1}}
        assert [(e["boundary"], e["start"]) for e in stats["filled"]] == [(5, 3)]
        assert [e["boundary"] for e in stats["warm"]] == [3]
    else:
        assert stats["forward_passes"] == {"train": {3: 1, 5: 1}} and "warm" not in stats


def test_truncated_entry_is_rebuilt(fresh_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(fresh_backbone, GRADUAL)
    first = build(spec, graph, fresh_backbone, tiny_data)
    first.prepare([5], splits=("train",), quiet=True)
    idx = torch.arange(len(tiny_data.train))
    expected = first.lookup("train", 5, idx)
    entry = cache_dir / "activations" / first.stats()["entries"][0]["id"]
    first.close()
    with open(entry / "hidden.bin", "r+b") as f:
        f.truncate(1000)  # a crash or a full disk halfway through a copy
    second = build(spec, graph, fresh_backbone, tiny_data)
    second.prepare([5], splits=("train",), quiet=True)
    stats = second.stats()
    assert stats["forward_passes"] == {"train": {5: 1}}
    assert "hidden.bin: 1000 bytes" in stats["rebuilt"][0]["reason"]
    got = second.lookup("train", 5, idx)
    assert torch.equal(got["hidden"], expected["hidden"])


def test_memory_budget_sends_the_rest_to_disk(minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    cache = build(spec, graph, minilm_backbone, tiny_data, tier="host", budget_mb=1)
    cache.prepare([1, 3, 5, 8], quiet=True)
    tiers = {(e["split"], e["boundary"]): e["tier"] for e in cache.stats()["entries"]}
    assert set(tiers.values()) == {"host", "disk"} and cache.stats()["tier"] == "mixed"
    held = sum(e["bytes"] for e in cache.stats()["entries"] if e["tier"] == "host")
    assert held <= 2**20
    disk = build(spec, graph, minilm_backbone, tiny_data, tier="disk")
    disk.prepare([1, 3, 5, 8], quiet=True)
    assert disk.stats()["tier"] == "disk" and disk.stats()["forward_passes"] == {}
    idx = torch.tensor([4, 1])
    for split, b in tiers:
        assert torch.equal(cache.lookup(split, b, idx)["hidden"], disk.lookup(split, b, idx)["hidden"])


def test_not_persisted_cache_lives_in_the_run_dir_until_close(minilm_backbone, tiny_data, tmp_path, cache_dir):
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    run_dir = tmp_path / "run"
    cache = ActivationCache.create(with_cache(graph, persist=False), minilm_backbone, tiny_data, device="cpu",
                                   run_dir=run_dir)
    cache.prepare([8], splits=("train",), quiet=True)
    assert len(list((run_dir / "activation-cache").iterdir())) == 1 and not cache_dir.exists()
    resumed = ActivationCache.create(with_cache(graph, persist=False), minilm_backbone, tiny_data, device="cpu",
                                     run_dir=run_dir)
    resumed.prepare([8], splits=("train",), quiet=True)  # a resumed run (after a crash) reuses it
    assert resumed.stats()["forward_passes"] == {}
    resumed.close()
    assert not (run_dir / "activation-cache").exists()


def test_create_returns_none_when_nothing_may_cache(minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    assert build(spec, graph, minilm_backbone, tiny_data, enabled="off") is None
    spec, graph = make_plan(minilm_backbone, ["freeze.preset=full_finetune"])
    assert graph.cache_boundaries() == ()
    assert build(spec, graph, minilm_backbone, tiny_data) is None


def test_boundary_trained_before_it_is_read_is_not_cached(minilm_backbone, tiny_data, cache_dir):
    stages = "[{trainable: [encoder.layer.1, head], epochs: 1}, {trainable: [encoder.layer.4-5, head], epochs: 1}]"
    spec, graph = make_plan(minilm_backbone, ["freeze.preset=null", f"freeze.stages={stages}"])
    assert graph.cache_boundaries() == (2, 5)
    cache = build(spec, graph, minilm_backbone, tiny_data)
    cache.prepare(graph.cache_boundaries(), splits=("train",), quiet=True)
    assert cache.has("train", 2) and not cache.has("train", 5)
    (skipped,) = cache.stats()["skipped"]
    assert skipped["boundary"] == 5 and "trains encoder.layer.1 below boundary 5" in skipped["reason"]
    resumed = build(spec, graph, minilm_backbone, tiny_data)  # resumed in stage 1: layer 1 is done training
    resumed.prepare(graph.cache_boundaries(), splits=("train",), quiet=True, stage=1)
    assert resumed.has("train", 5) and not resumed.has("train", 2)  # stage 0 (the only reader of 2) is over
    assert resumed.stats()["skipped"][0]["reason"] == "only stages before 1 read boundary 2: nothing left to serve"
    assert resumed.stats()["forward_passes"] == {"train": {5: 1}}


def test_lookup_errors_say_what_is_cached(minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    cache = build(spec, graph, minilm_backbone, tiny_data)
    cache.prepare([8], splits=("train",), quiet=True)
    with pytest.raises(KeyError, match=r"no entry for split 'train' at boundary 5 \(cached: train@8\)"):
        cache.lookup("train", 5, torch.tensor([0]))
    with pytest.raises(IndexError, match=r"example ids must be in 0..31 \(got 0..32\)"):
        cache.lookup("train", 8, torch.tensor([0, 32]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("tier", ["device", "host", "disk"])
def test_cuda_tiers_serve_batches_on_the_device(tier, minilm_backbone, tiny_data, cache_dir):
    import copy

    spec, graph = make_plan(minilm_backbone, GRADUAL)
    cpu = build(spec, graph, minilm_backbone, tiny_data)
    cpu.prepare([5], splits=("train",), quiet=True)
    backbone = copy.deepcopy(minilm_backbone).cuda()
    cache = ActivationCache.create(with_cache(graph, tier=tier, dir=str(cache_dir / "gpu")), backbone, tiny_data,
                                   device="cuda")
    cache.prepare([5], splits=("train",), quiet=True)
    assert cache.stats()["tier"] == tier
    idx = torch.tensor([9, 2, 30])
    got, want = cache.lookup("train", 5, idx), cpu.lookup("train", 5, idx)
    assert got["hidden"].is_cuda and got["attention_mask"].is_cuda
    assert torch.equal(got["attention_mask"].cpu(), want["attention_mask"])
    torch.testing.assert_close(got["hidden"].cpu(), want["hidden"], rtol=1e-3, atol=1e-3)  # TF32/GPU kernels


def test_summary_line_reports_lossy_types(minilm_backbone, tiny_data, cache_dir):
    spec, graph = make_plan(minilm_backbone, GRADUAL)
    cache = build(spec, graph, minilm_backbone, tiny_data, dtype="bf16")
    cache.prepare([8], splits=("train",), quiet=True)
    line = cache.summary()
    assert line.startswith("activation cache: train@8; ") and "bf16 (lossy: activations rounded)" in line
    assert "filled 1 in" in line and "reused 0" in line

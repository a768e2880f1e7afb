"""Pooling against hand-computed references (loops over rows and real tokens)."""

from __future__ import annotations

import pytest
import torch

from ftengine.heads.pooling import pool_avg, pool_cls, pool_last, pool_max, pool_mean, pool_pooler


def text_state(right_padding: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=g)
    lengths = [5, 2, 3]
    mask = torch.zeros(3, 5, dtype=torch.long)
    for row, n in enumerate(lengths):
        if right_padding:
            mask[row, :n] = 1
        else:
            mask[row, 5 - n:] = 1
    hidden[mask == 0] = 1e4  # padding positions hold garbage that must not leak into any pooling
    return {"hidden": hidden, "attention_mask": mask}


def test_masked_mean_ignores_padding() -> None:
    state = text_state()
    want = torch.stack([state["hidden"][r, state["attention_mask"][r].bool()].sum(0) / state["attention_mask"][r].sum()
                        for r in range(3)])
    torch.testing.assert_close(pool_mean(state), want)
    # Row 1 by hand: tokens 0 and 1 only.
    torch.testing.assert_close(pool_mean(state)[1], (state["hidden"][1, 0] + state["hidden"][1, 1]) / 2)


def test_mean_in_bf16_accumulates_in_fp32() -> None:
    state = text_state()
    state["hidden"] = state["hidden"].clamp(max=10).bfloat16()
    out = pool_mean(state)
    assert out.dtype == torch.bfloat16
    want = pool_mean({**state, "hidden": state["hidden"].float()})
    torch.testing.assert_close(out.float(), want, atol=1e-2, rtol=1e-2)


def test_last_token_with_right_and_left_padding() -> None:
    right = text_state(right_padding=True)
    torch.testing.assert_close(pool_last(right), torch.stack([right["hidden"][0, 4], right["hidden"][1, 1],
                                                              right["hidden"][2, 2]]))
    left = text_state(right_padding=False)
    torch.testing.assert_close(pool_last(left), left["hidden"][:, 4])


def test_cls_pooler_and_missing_mask() -> None:
    state = text_state()
    torch.testing.assert_close(pool_cls(state), state["hidden"][:, 0])
    pooled = torch.randn(3, 4)
    assert pool_pooler({**state, "pooled": pooled}) is pooled
    with pytest.raises(KeyError, match="no 'pooled' output"):
        pool_pooler(state)
    no_mask = {"hidden": state["hidden"]}
    torch.testing.assert_close(pool_mean(no_mask), state["hidden"].mean(1))
    torch.testing.assert_close(pool_last(no_mask), state["hidden"][:, -1])


def test_spatial_avg_and_max_and_prepooled_features() -> None:
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(pool_avg({"features": x}), torch.stack([torch.stack([x[b, c].sum() / 20 for c in range(3)])
                                                                       for b in range(2)]))
    torch.testing.assert_close(pool_max({"features": x}), torch.amax(x, dim=(2, 3)))
    flat = torch.randn(2, 3)
    assert pool_avg({"features": flat}) is flat and pool_max({"features": flat}) is flat

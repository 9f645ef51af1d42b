import torch

from lsllm.model.pooling import POOLERS, default_pooling

X = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # (B=2, T=4, D=3)
RIGHT = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
LEFT = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])


def test_last_and_first_for_both_padding_sides():
    assert torch.equal(POOLERS["last"](X, RIGHT), torch.stack([X[0, 2], X[1, 1]]))
    assert torch.equal(POOLERS["last"](X, LEFT), torch.stack([X[0, 3], X[1, 3]]))
    assert torch.equal(POOLERS["first"](X, RIGHT), torch.stack([X[0, 0], X[1, 0]]))
    assert torch.equal(POOLERS["first"](X, LEFT), torch.stack([X[0, 1], X[1, 2]]))


def test_mean_ignores_pads():
    assert torch.allclose(POOLERS["mean"](X, RIGHT)[1], X[1, :2].mean(0))
    assert torch.allclose(POOLERS["mean"](X, LEFT)[0], X[0, 1:].mean(0))


def test_max_pads_never_win():
    x = -torch.ones(1, 3, 2) * 5
    x[0, 2] = 100.0  # a huge value sitting on a pad
    out = POOLERS["max"](x, torch.tensor([[1, 1, 0]]))
    assert torch.equal(out, torch.tensor([[-5.0, -5.0]]))
    assert POOLERS["max"](x.bfloat16(), torch.tensor([[1, 1, 0]])).dtype == torch.bfloat16


def test_defaults_follow_the_measurements():
    assert default_pooling(bidirectional=False) == "last"
    assert default_pooling(bidirectional=True) == "mean"  # the paper says max; see benchmarks/RESULTS.md
    assert default_pooling(bidirectional=True, encoder=True) == "first"

"""benchmarks.recsys_costs times the same loss both ways: equal values and gradients at a small shape."""

import torch

from benchmarks.recsys_costs import catalogue_loss, loss_inputs


def test_chunked_and_full_catalogue_losses_agree() -> None:
    results = []
    for chunked in (True, False):
        h, weight, target = loss_inputs(rows=37, items=1300, hidden=8)
        loss = catalogue_loss(h, weight, target, chunked=chunked)
        loss.backward()
        results.append((loss.detach(), h.grad, weight.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert float(results[0][2][0].abs().sum()) == 0.0  # the padding row gets no gradient

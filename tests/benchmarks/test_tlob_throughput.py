"""The TLOB throughput benchmark runs end to end (one tiny step per model and shape) and prints its table."""

import pytest
import torch

from benchmarks.tlob_throughput import SHAPES, OfficialStyleTLOB, count_parameters, main
from domains.finance.models import TLOB


@pytest.fixture(autouse=True)
def _restore_threads():
    """``main`` sets the torch thread count; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_table_has_one_row_per_shape(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--batch", "2", "--steps", "1", "--warmup", "0", "--rounds", "1", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# TLOB training throughput") and "B=2" in lines[0]
    rows = [line.split(" | ") for line in lines[3:]]
    assert [row[0].lstrip("| ") for row in rows] == [name for name, *_ in SHAPES]
    for row, (_, f, t, hidden) in zip(rows, SHAPES, strict=True):
        ours = count_parameters(TLOB(num_features=f, seq_len=t, hidden_dim=hidden))
        official = count_parameters(OfficialStyleTLOB(num_features=f, seq_len=t))
        assert row[4:6] == [f"{ours:,}", f"{official:,}"]
        assert ours < official  # no double q/k/v projection
        assert float(row[-1].rstrip("x |")) > 0

"""The domain contract, checked for every domain registered under the ``attnlab.domains`` entry points.

Through the real CLI on each domain's smoke config: fit, validate, test, predict (files written, never among
the inputs), resume from ``last.ckpt``, the ``--print_config`` round trip, and a run stopped by SIGTERM and
resumed that ends with the weights of a run never stopped; then two DDP processes (gloo) train it for two
epochs with the default progress bar and logger: the run must finish, print no ``sync_dist`` warning, and
its last validation must equal a one-process validation of the same checkpoint (every sample scored exactly
once). A new domain is enrolled by registering its entry point.
"""

from pathlib import Path

import pytest

from core.plugins import domain_entry_points
from tests.domains.contract import check_commands, check_ddp, check_exact_resume, load_domain

DOMAINS = [ep.name for ep in domain_entry_points()]


def test_every_domain_is_registered() -> None:
    assert {"finance", "recsys", "medical"} <= set(DOMAINS)


@pytest.mark.parametrize("name", DOMAINS)
def test_commands_through_the_cli(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_commands(load_domain(name), tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("name", DOMAINS)
def test_stopped_and_resumed_equals_uninterrupted(name: str, tmp_path: Path) -> None:
    check_exact_resume(load_domain(name), tmp_path)


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("name", DOMAINS)
def test_ddp_two_processes_equal_one(name: str, tmp_path: Path) -> None:
    check_ddp(load_domain(name), tmp_path)

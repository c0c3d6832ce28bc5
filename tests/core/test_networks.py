"""Network factories: each network gets the data sizes its ``__init__`` declares, and the attention."""

from functools import partial

import pytest
from torch import nn

from core.attention import MultiHeadAttention
from core.training.networks import factory_target, instantiate_network

SIZES = {"num_items": 10, "max_len": 5, "num_features": None}


class WithAttention(nn.Module):
    def __init__(self, num_items: int, max_len: int, width: int = 4, attention=None) -> None:
        super().__init__()
        self.sizes = (num_items, max_len, width)
        self.attention = attention


class ItemsOnly(nn.Module):
    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items


class Anything(nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs


def test_each_network_receives_only_what_it_declares() -> None:
    assert instantiate_network(WithAttention, **SIZES).sizes == (10, 5, 4)
    assert instantiate_network(ItemsOnly, **SIZES).num_items == 10
    # None values (sizes this datamodule does not know) are never passed.
    assert instantiate_network(Anything, **SIZES).kwargs == {"num_items": 10, "max_len": 5}


def test_factories_keep_their_options_and_unwrap_to_the_class() -> None:
    factory = partial(WithAttention, width=8)
    assert factory_target(factory) == (WithAttention, {"width"})
    assert instantiate_network(factory, **SIZES).sizes == (10, 5, 8)
    # jsonargparse's form: partial(instantiator, cls, **init_args)
    cli_form = partial(lambda cls, **kw: cls(**kw), WithAttention, width=2)
    assert factory_target(cli_form) == (WithAttention, {"width"})
    assert instantiate_network(cli_form, **SIZES).sizes == (10, 5, 2)


def test_attention_goes_where_it_is_declared_and_is_refused_elsewhere() -> None:
    attention = partial(MultiHeadAttention, num_heads=2)
    assert instantiate_network(WithAttention, attention=attention, **SIZES).attention is attention
    assert instantiate_network(WithAttention, **SIZES).attention is None
    with pytest.raises(ValueError, match="ItemsOnly has no attention to replace"):
        instantiate_network(ItemsOnly, attention=attention, **SIZES)

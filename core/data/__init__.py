"""Data plumbing shared by every domain's datamodules."""

from core.data.links import data_links, register_data_links

__all__ = ["data_links", "register_data_links"]

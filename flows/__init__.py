"""Prefect flows, DVC stage entry points and the `shopfloor` CLI: thin wrappers around stage functions."""

from core.settings import apply_offline_defaults

apply_offline_defaults()

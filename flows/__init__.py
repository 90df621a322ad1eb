"""Prefect flows, DVC stage entry points and the `shopfloor` CLI: thin wrappers around stage functions."""

from flows.settings import apply_offline_defaults

apply_offline_defaults()

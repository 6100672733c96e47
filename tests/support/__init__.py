"""Helpers shared by kqueue's tests (real brokers only)."""

"""Zan: a Raft-replicated key-value store that speaks the Redis protocol."""

__all__ = ["__version__"]

__version__ = "0.1.0"

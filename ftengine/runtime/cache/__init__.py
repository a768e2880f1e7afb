"""Frozen-prefix activation cache: planned, tiered, ragged, persisted, invalidation-safe.

``ActivationCache`` is what the runtime uses (create / prepare / has / lookup / stats / close);
``ActivationStore`` is one loaded (split, boundary) entry; ``list_entries`` / ``remove_entries`` back
``ftengine cache ls / clear``.
"""

from ftengine.runtime.cache.cache import ActivationCache
from ftengine.runtime.cache.keys import FORMAT_VERSION, CacheKey, cache_root, prefix_fingerprints
from ftengine.runtime.cache.layout import check_entry, list_entries, remove_stale
from ftengine.runtime.cache.store import ActivationStore

__all__ = [
    "FORMAT_VERSION", "ActivationCache", "ActivationStore", "CacheKey", "cache_root", "check_entry", "list_entries",
    "prefix_fingerprints", "remove_stale",
]

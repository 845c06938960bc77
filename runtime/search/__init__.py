"""Indices, keys and results: HNSW + SQLite items, exact search, zero-shot label sets."""

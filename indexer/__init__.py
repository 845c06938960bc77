"""clamp-index batch indexer: ABC corpora -> Parquet embedding shards -> HNSW index."""

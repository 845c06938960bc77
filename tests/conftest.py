"""Tests never reach a model hub: huggingface_hub reads only its local cache (set before it is imported)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

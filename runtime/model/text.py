"""Text as CLaMP sees it: ASCII transliteration, then the model's own tokenizer, batched with masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from unidecode import unidecode


def normalize_text(text: str) -> str:
    """Transliterate to ASCII, as CLaMP does before tokenising."""
    return text if text.isascii() else unidecode(text)


class TextTokenizer:
    """A `tokenizers` tokenizer with the model's truncation and padding, giving numpy int64 batches."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, pad_id: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_tokens)

    @classmethod
    def from_file(cls, path: str | Path, max_tokens: int, pad_id: int) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_tokens, pad_id)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, both int64 [B, T], right-padded to the longest text in the batch."""
        encodings = self.tokenizer.encode_batch([normalize_text(t) for t in texts])
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return ids, mask

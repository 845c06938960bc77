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
    """A `tokenizers` tokenizer with the model's truncation and padding, giving numpy int64 batches.

    `max_tokens=None` keeps every token (CLaMP 2/3 window long texts instead of truncating them);
    `transliterate=False` keeps non-ASCII text as it is (XLM-R reads ~100 languages; CLaMP 1 transliterates).
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int | None, pad_id: int, transliterate: bool = True):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.transliterate = transliterate
        tokenizer.no_padding()
        if max_tokens is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_tokens)

    @classmethod
    def from_file(
        cls, path: str | Path, max_tokens: int | None, pad_id: int, transliterate: bool = True
    ) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_tokens, pad_id, transliterate)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, special tokens included."""
        prepared = [normalize_text(t) for t in texts] if self.transliterate else list(texts)
        return [encoding.ids for encoding in self.tokenizer.encode_batch(prepared)]

    def pad(self, id_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Token id lists -> ids and attention mask, int64 [B, T], right-padded to the longest."""
        width = max((len(ids) for ids in id_lists), default=0)
        ids = np.full((len(id_lists), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(id_lists), width), dtype=np.int64)
        for row, tokens in enumerate(id_lists):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, both int64 [B, T], right-padded to the longest text in the batch."""
        return self.pad(self.token_ids(texts))

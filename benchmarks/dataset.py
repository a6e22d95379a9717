"""The benchmark's data set: the demo's realistic rows at a scale factor, with no row prod would refuse.

Text is made of word-like tokens (Latin with accents, and Arabic) drawn with a Zipf law from a 30,000
token vocabulary, so that it compresses like real prose (about 2.5-3x with gzip), not like lorem ipsum.
Rows are cut from a pool of such text at random offsets, which keeps generation fast.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass

import psycopg

from websync_dagster.demo import sample_data as sd

LATIN = "abcdefghijklmnopqrstuvwxyzéèàçôî"
ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"
POOL_BYTES = 48_000_000


def _vocabulary(rng: random.Random, size: int = 30_000) -> list[str]:
    words = []
    for i in range(size):
        letters = ARABIC if i % 3 == 0 else LATIN
        words.append("".join(rng.choices(letters, k=rng.randint(2, 11))))
    return words


@functools.cache
def text_pool(seed: int = 11) -> str:
    rng = random.Random(seed)
    words = _vocabulary(rng)
    weights = list(itertools.accumulate(1 / (r + 1) for r in range(len(words))))
    parts, size = [], 0
    while size < POOL_BYTES:
        sentence = " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(8, 30))) + ".\n"
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


@dataclass(frozen=True)
class Scale:
    sources: int = 40
    kb_docs: int = 2_500
    pages: int = 20_000
    files: int = 3_500
    page_bytes: int = 12_000
    kb_bytes: int = 24_000

    def times(self, factor: float) -> Scale:
        return Scale(self.sources, int(self.kb_docs * factor), int(self.pages * factor), int(self.files * factor),
                     self.page_bytes, self.kb_bytes)


class _Text:
    def __init__(self, rng: random.Random) -> None:
        self.pool = text_pool()
        self.rng = rng

    def __call__(self, size: int) -> str:
        size = self.rng.randint(size // 2, size * 3 // 2)
        start = self.rng.randrange(0, len(self.pool) - size)
        return self.pool[start:start + size]


def generate(dev: psycopg.Connection, scale: Scale, *, seed: int = 5, first: int = 0) -> dict[str, int]:
    """Insert ``scale`` rows into dev (ids and urls numbered from ``first``); returns rows per table."""
    rng = random.Random(seed + first)
    text = _Text(rng)
    sources = [sd._source(rng, first + n, category="legislation") for n in range(scale.sources if not first else 0)]
    if first:
        sources = [{"id": r[0]} for r in dev.execute("SELECT id FROM web_sources").fetchall()]
    kb = [sd._kb(rng, first + n, 0, full_text=text(scale.kb_bytes), is_indexed=False, chunk_count=0)
          for n in range(scale.kb_docs)]
    pages = [sd._page(rng, first + n, sources[n % len(sources)]["id"], 0, extracted_text=text(scale.page_bytes),
                      knowledge_base_id=kb[n % len(kb)]["id"] if n % 4 == 0 else None)
             for n in range(scale.pages)]
    files = [sd._file(rng, first + n, pages[n % len(pages)], text_content=text(3000)[:9000])
             for n in range(scale.files)]
    rows = {"web_sources": sources if not first else [], "knowledge_base": kb, "web_pages": pages, "web_files": files}
    for table, table_rows in rows.items():
        sd._copy_rows(dev, table, table_rows)
    dev.commit()
    return {t: len(r) for t, r in rows.items()}


def generate_scaled(dev: psycopg.Connection, factor: float) -> dict[str, int]:
    """``generate`` at ``factor``; above x2 in batches of x1 (ids numbered from k * 1,000,000), so that the
    benchmark never holds more than one x1 of rows (~1 GB of Python strings) at once."""
    if factor <= 2:
        return generate(dev, Scale().times(factor))
    totals: dict[str, int] = {}
    batches = [1.0] * int(factor) + ([factor - int(factor)] if factor > int(factor) else [])
    for k, part in enumerate(batches):
        rows = generate(dev, Scale().times(part), first=k * 1_000_000)
        totals = {t: totals.get(t, 0) + n for t, n in rows.items()}
    return totals

"""Corpus -> token ids (GPT-2 BPE or a Hugging Face tokenizer.json; cached on disk) -> sliding windows -> batches.

A corpus is a file, a directory of files, or (path None) the embedded default: the standard
library's ``pydoc_data.topics``, ~465 KB of English that ships with every CPython. Each file is one
of (recognised from its extension and magic bytes, or forced with ``data.format``):

    text      UTF-8 (or UTF-16/32 with a byte-order mark); one file = one document
    jsonl     one JSON object per line; the document is its ``data.text_field``
    parquet   one document per row, from the string column ``data.text_field``
    bin       pre-tokenized ids of any vocabulary: raw uint16 (nanoGPT's prepare.py) or uint32
              (``data.token_dtype``), or llm.c's shards with their 1 KiB header (magic 20240520:
              uint16, 20240801: uint32); memory-mapped, never copied

Text and JSONL may be compressed (``.gz``; ``.zst`` when the ``zstandard`` package is installed).
Documents are joined with the tokenizer's end-of-text token (``<|endoftext|>`` for GPT-2). Text is read, tokenized and written to the cache in
~1 MB pieces, so tokenizing holds a few MB beside the cache file, whatever the corpus size. Tokens
are cached as a flat uint16 (uint32 above 65,536 ids) ``.npy`` file keyed by the corpus bytes and the
tokenizer's content; later runs
memory-map it. ``sample_tokens`` tokenizes a seeded sample of whole units (documents, ~1 MB chunks,
Parquet row groups, 64k-token blocks of a shard) instead of the whole corpus.

Rooms: :mod:`.formats` (which files, which format; light), :mod:`.text` (documents as text pieces),
:mod:`.tokenizer` (GPT-2 or tokenizer.json), :mod:`.tokens` (encoding, token files, shards), :mod:`.sample`, :mod:`.cache`
(:func:`load_tokens`), :mod:`.windows` (batches) and :mod:`.litgpt_data`. The names below load on first
use, so ``from trainables.corpus import FORMATS`` imports neither numpy nor PyTorch.
"""

from trainables.lazy import lazy_getattr

_WHERE = {
    "EMBEDDED": ".formats", "FORMATS": ".formats", "DEFAULT_PATTERN": ".formats", "corpus_files": ".formats",
    "detect_format": ".formats",
    "Piece": ".text", "sniff_encoding": ".text", "read_documents": ".text",
    "TOKENIZER": ".tokens", "EOT_ID": ".tokens", "VOCAB_SIZE": ".tokens", "CACHE_FORMAT": ".tokens",
    "tokenize_documents": ".tokens",
    "get_tokenizer": ".tokenizer", "load_tokenizer": ".tokenizer", "tokenizer_key": ".tokenizer",
    "Tokenizer": ".tokenizer", "EOT_NAMES": ".tokenizer", "TOKEN_DTYPES": ".formats",
    "Unit": ".sample", "sample_units": ".sample",
    "TokenCorpus": ".cache", "load_tokens": ".cache", "load_data": ".cache", "default_cache_dir": ".cache",
    "corpus_key": ".cache", "stat_key": ".cache",
    "split_tokens": ".windows", "window_starts": ".windows", "WindowLoader": ".windows",
    "litgpt_tokenizer_dir": ".litgpt_data", "CorpusWindows": ".litgpt_data", "EpochOrder": ".litgpt_data",
    "LitGPTData": ".litgpt_data",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)

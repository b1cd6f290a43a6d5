"""A held-out corpus and a small trained tokenizer for the transfer benchmarks.

No default, benchmark or test of the project was tuned on it: the METADATA (READMEs) and license texts
of the Python packages installed beside the running interpreter, read in sorted path order and
deduplicated by content. A byte-level BPE of ``vocab`` tokens is trained on it on the spot with the
`tokenizers` package (so the transformer body, not a 50,257-row head, dominates a trial's cost, as it
does at real scale), and the ids are written as a uint16 ``.bin`` shard that `hpsearch` reads as a
corpus, with ``model.vocab_size`` set to the tokenizer's size. The corpus's sha256 and size are
recorded beside every figure: another machine with other packages gives another corpus.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np

DATA = Path("/tmp/bench_data")


def package_texts(max_bytes: int = 4_000_000) -> str:
    """READMEs and licenses of the installed packages, sorted by path, deduplicated, at most ``max_bytes``."""
    site = Path(sysconfig.get_paths()["purelib"])
    files = sorted(p for p in site.glob("*.dist-info/**/*")
                   if p.is_file() and (p.name == "METADATA" or p.name.upper().startswith(("LICENSE", "COPYING"))))
    seen, parts, size = set(), [], 0
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        digest = hashlib.sha256(text.encode()).digest()
        if digest in seen or len(text) < 200:
            continue
        seen.add(digest)
        parts.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    return "\n\n".join(parts)


def stdlib_source(max_bytes: int = 4_000_000) -> str:
    """The standard library's own .py files (not site-packages, not tests), sorted by path, at most ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for p in sorted(root.glob("**/*.py")):
        rel = p.relative_to(root).parts
        if rel[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel:
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    return "\n\n".join(parts)


SOURCES = {"packages": (package_texts, "installed packages' METADATA and license texts"),
           "stdlib": (stdlib_source, "the standard library's .py source")}


def build(vocab: int = 2048, max_bytes: int = 4_000_000, source: str = "packages") -> dict:
    """Write the corpus's token shard and tokenizer.json under DATA; returns where and what they are."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    read, what = SOURCES[source]
    text = read(max_bytes)
    sha = hashlib.sha256(text.encode()).hexdigest()
    out = DATA / f"{source}-{sha[:12]}-v{vocab}"
    shard, tok_file = out / "tokens.bin", out / "tokenizer.json"
    if not shard.is_file():
        out.mkdir(parents=True, exist_ok=True)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        docs = text.split("\n\n")
        tok.train_from_iterator(docs, trainer)
        ids = np.concatenate([np.asarray(e.ids, dtype=np.uint16) for e in tok.encode_batch(docs) if e.ids])
        tok.save(str(tok_file))
        tmp = shard.with_suffix(".tmp")
        ids.tofile(tmp)
        tmp.rename(shard)
    n = shard.stat().st_size // 2
    return {"path": str(shard), "tokenizer": str(tok_file), "vocab_size": vocab, "tokens": int(n),
            "sha256": sha, "chars": len(text), "source": what}


if __name__ == "__main__":
    for name in SOURCES:
        print(build(source=name))

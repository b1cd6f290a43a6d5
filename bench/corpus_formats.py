"""Tokenizing memory and speed: peak RSS and tokens/s of a cold `load_tokens` (issue 14, item 3).

Two corpora, generated under /tmp (never in the repo): one 200 MB text file on a single line, and a
directory of 10,000 small files (about 2 KB each). Each load runs in a fresh child process with an
empty cache; the child reports its peak RSS (``resource.getrusage``) and its RSS before the load,
after importing the product and building the tokenizer, so the growth is the tokenizing's own.
Also timed: a warm load (cache hit) and a 1M-token sample of the large file.

    python bench/corpus_formats.py                  # the figures (a few minutes on 2 cores)
    python bench/corpus_formats.py --quick          # 20 MB and 1,000 files: checks that it works
    python bench/corpus_formats.py --compare-ref HEAD   # also measure trainables/ at a git ref

Figures: corpus_single_line_peak_rss_mb, corpus_single_line_tokens_per_s, corpus_many_files_peak_rss_mb,
corpus_many_files_tokens_per_s (growth over the pre-load RSS is in the details).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import common

SCRATCH = Path("/tmp/bench_corpus_formats")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from trainables.corpus import get_tokenizer, load_tokens
get_tokenizer().encode("warm up")
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
kw = json.loads(sys.argv[4])
t0 = time.perf_counter()
corpus = load_tokens(sys.argv[2], cache_dir=sys.argv[3], log=None, **kw)
cold = time.perf_counter() - t0
peak = rss()
t0 = time.perf_counter()
again = load_tokens(sys.argv[2], cache_dir=sys.argv[3], log=None, **kw)
warm = time.perf_counter() - t0
print(json.dumps({"tokens": int(len(corpus.tokens)), "seconds": cold, "warm_seconds": warm,
                  "rss_before_bytes": before, "peak_rss_bytes": peak}))
"""


def make_corpora(quick: bool) -> dict[str, Path]:
    """The single-line file and the directory of small files, generated once per size."""
    rng = random.Random(0)
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()] + [
        "model", "token", "learning", "rate", "batch", "warmup", "cosine", "gradient", "corpus", "über", "数据"]
    size = 20_000_000 if quick else 200_000_000
    n_files = 1_000 if quick else 10_000
    root = SCRATCH / ("quick" if quick else "full")
    big = root / "single_line.txt"
    many = root / "many_files"
    if not big.is_file() or big.stat().st_size < size:
        root.mkdir(parents=True, exist_ok=True)
        block = " ".join(rng.choice(words) + (str(rng.randrange(1000)) if rng.random() < 0.05 else "")
                         for _ in range(200_000)) + " "
        with open(big, "w", encoding="utf-8") as fh:
            written = 0
            while written < size:
                written += fh.write(block)
    if not many.is_dir() or len(list(many.iterdir())) != n_files:
        shutil.rmtree(many, ignore_errors=True)
        many.mkdir(parents=True)
        for i in range(n_files):
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(150, 450)))
            (many / f"doc{i:05d}.txt").write_text(f"Document {i}.\n{text}\n", encoding="utf-8")
    return {"single_line": big, "many_files": many}


def measure(code_root: Path, path: Path, **kw) -> dict:
    with tempfile.TemporaryDirectory(dir="/tmp") as cache:
        out = subprocess.run([sys.executable, "-c", CHILD, str(code_root), str(path), cache, json.dumps(kw)],
                             capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise SystemExit(f"child failed on {path}: {out.stderr.strip().splitlines()[-1:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    final = 2 * r["tokens"]
    growth = r["peak_rss_bytes"] - r["rss_before_bytes"]
    return {"tokens": r["tokens"], "seconds": round(r["seconds"], 2), "warm_seconds": round(r["warm_seconds"], 4),
            "tokens_per_s": round(r["tokens"] / r["seconds"]), "peak_rss_mb": round(r["peak_rss_bytes"] / 2**20, 1),
            "growth_mb": round(growth / 2**20, 1), "token_array_mb": round(final / 2**20, 1),
            "growth_over_token_array": round(growth / final, 3)}


def checkout(ref: str) -> Path:
    """trainables/ at a git ref, in a scratch directory (the comparison's 'before')."""
    dest = SCRATCH / f"ref-{ref.replace('/', '_')}"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "trainables").mkdir(parents=True)
    files = subprocess.run(["git", "-C", str(common.REPO), "ls-tree", "--name-only", ref, "trainables/"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.endswith(".py"):
            text = subprocess.run(["git", "-C", str(common.REPO), "show", f"{ref}:{name}"],
                                  capture_output=True, text=True, check=True).stdout
            (dest / name).write_text(text)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 MB and 1,000 files: checks that the script works")
    ap.add_argument("--compare-ref", help="also measure trainables/ at this git ref (e.g. HEAD)")
    args = ap.parse_args()
    corpora = make_corpora(args.quick)
    busy = common.wait_quiet()
    results: dict[str, dict] = {}
    for name, path in corpora.items():
        results[name] = measure(common.REPO, path)
        print(f"[{common.stamp()}] {name}: {results[name]}")
    results["single_line_sample_1m"] = measure(common.REPO, corpora["single_line"], sample_tokens=1_000_000)
    print(f"[{common.stamp()}] sample: {results['single_line_sample_1m']}")
    before = {}
    if args.compare_ref:
        root = checkout(args.compare_ref)
        for name, path in corpora.items():
            before[name] = measure(root, path)
            print(f"[{common.stamp()}] {name} at {args.compare_ref}: {before[name]}")
    figures = {
        "corpus_single_line_peak_rss_mb": results["single_line"]["peak_rss_mb"],
        "corpus_single_line_tokens_per_s": results["single_line"]["tokens_per_s"],
        "corpus_many_files_peak_rss_mb": results["many_files"]["peak_rss_mb"],
        "corpus_many_files_tokens_per_s": results["many_files"]["tokens_per_s"],
    }
    details = {
        "corpora": {name: {"path": str(p), "bytes": sum(f.stat().st_size for f in ([p] if p.is_file() else p.iterdir())),
                           "files": 1 if p.is_file() else len(list(p.iterdir()))} for name, p in corpora.items()},
        "results": results, "busy_at_start": busy, "loadavg": common.loadavg(),
        **({"before": {"ref": args.compare_ref, **before}} if before else {}),
    }
    common.record(figures, details, quick=args.quick)


if __name__ == "__main__":
    main()

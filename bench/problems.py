"""The search benchmark's problems: a corpus, a model, a per-trial budget and a grid space each (issue 18).

Three problems of different shape, so a search figure or a default is never a figure about one problem:

    nano  prose (the embedded corpus), nano model, context 32, batch 8, 12,288 tokens a trial;
          peak_lr x warmup x dropout x max_norm, 64 points, all valid (the original ground truth)
    code  Python's standard-library source, nano model at context 64, batch 4, 16,384 tokens (64 steps);
          peak_lr x warmup {4, 16, 64} x weight_decay, 48 points of which 16 are invalid (warmup 64
          is not below the run's 64 steps): the invalid region the searchers must not spend on
    docs  Python's documentation topics (pydoc_data), a 2-layer width-48 model at context 48, batch 6,
          11,520 tokens (40 steps); peak_lr x init_std x max_norm with three or more values on every
          axis, 45 points: a space whose best point can lie inside it on every axis
    pkgs  the licence and README texts of the installed Python packages (the files of the venv's
          ``*.dist-info`` directories), the nano model 64 wide at context 48, batch 4, 12,288 tokens
          (64 steps); a continuous learning rate: searched as ``loguniform: [0.001, 0.064]``, its ground
          truth trained on 13 values half an octave apart, x weight_decay {0, 0.1} x warmup {2, 8}, 52
          points (issue 28). A replayed trial's sampled LR is snapped to the nearest grid LR in log
          space, at most a quarter of an octave away (``Problem.snap``).
    changes  the Markdown files shipped inside the installed packages (changelogs, READMEs, model-card
          templates; not the ``*.dist-info`` texts pkgs reads), deduplicated by content; the 4-layer x 256
          small preset at ctx 128, batch 4, 32,768 tokens (64 steps): trials of about a minute on the
          serial script, closer to the seed's GPT-124M configs than the others' ~10 s; the source
          documents' axes peak_lr (their four values and 2e-3, 1e-2) x dropout {0, 0.1} x weight_decay
          {0, 0.1} x warmup_steps {10, 30}, 48 points (issue 28: time to answer where Ray's fixed cost
          is small beside a trial).
    pkgs2x   pkgs' corpus, model and trial, its grid widened to five of the source documents' axes:
          peak_lr 0.001-0.064 an octave apart x weight_decay {0, 0.1} x warmup {2, 8} x dropout {0, 0.1}
          x max_norm {0.5, 2}, 112 points (issue 28: the same search effort against a grid twice
          pkgs' size, as the seed's 38,880-point grid is far larger than any grid here)

Each problem's ground truth is ``bench/grid_<name>.csv`` (built by ``python bench/grid.py --problem
NAME``) with ``bench/grid_<name>.json`` beside it: the corpus's sha256 and token count, so a replay
needs no corpus and a different Python (a different stdlib) is noticed instead of silently compared.
batch_size is never an axis: the product scores a trial on ``eval_iter`` batches of ``batch_size``
windows, so trials of different batch sizes would be scored on different validation subsets.

An axis named in ``Problem.continuous`` is searched as a range (``Problem.space``: ``loguniform`` over
its grid values' span); its grid values are only where the ground truth was trained. Grid mode cannot
search such an axis; ``grid.py`` builds the ground truth from the grid values alone.

A benchmark script's ``--problems`` defaults to the problems whose grid is built (``default_problems``),
so adding a problem changes no script's default run until its ground truth exists.
"""

from __future__ import annotations

import hashlib
import json
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH

CORPORA = Path("/tmp/bench_corpora")
CODE_CHARS = 600_000  # the first stdlib modules (sorted by name) up to this many characters
PKGS_CHARS = 600_000  # the first package texts (sorted by path) up to this many characters
CHANGES_CHARS = 600_000  # the first package Markdown files (sorted by path) up to this many characters
PKG_TEXTS = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "README", "METADATA")  # file name starts


@dataclass(frozen=True)
class Problem:
    name: str
    what: str
    model: str  # preset
    model_overrides: dict
    max_tokens: int
    eval_freq: int
    eval_iter: int
    axes: dict  # axis -> grid values
    fixed: dict  # train settings every point shares
    corpus: str | None = None  # a builder in CORPUS_BUILDERS; None: the embedded corpus
    notes: list = field(default_factory=list)
    continuous: tuple = ()  # axes searched as loguniform over their grid values' span (a replay snaps)

    @property
    def csv(self) -> Path:
        return BENCH / f"grid_{self.name}.csv"

    @property
    def meta_path(self) -> Path:
        return BENCH / f"grid_{self.name}.json"

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}

    def base(self):
        """The PretrainConfig every point of the grid starts from (fp32: the same ground truth on every CPU)."""
        from trainables.config import EvalArgs, PretrainConfig, TrainArgs
        from trainables.model import preset_config

        cfg = PretrainConfig(model=preset_config(self.model, **self.model_overrides), preset=self.model,
                             train=TrainArgs(max_tokens=self.max_tokens, precision="fp32"),
                             eval=EvalArgs(eval_freq=self.eval_freq, eval_iter=self.eval_iter))
        return cfg.with_hparams(self.fixed, source=f"problem {self.name}")

    def params(self, point) -> dict:
        """A grid point (values in axis order, e.g. a CSV row's) as the product's hyperparameters."""
        return {a: (int(v) if a == "warmup_steps" else float(v)) for a, v in zip(self.axes, point)}

    def corpus_path(self) -> str | None:
        """The corpus file (built on first use), or None for the embedded corpus."""
        return None if self.corpus is None else str(CORPUS_BUILDERS[self.corpus]())

    def space(self):
        """The search space: a grid axis as ``grid``, a continuous one as ``loguniform`` over its grid's span."""
        from search_spaces import parse_space

        return parse_space({"name": f"bench-{self.name}", "axes": {
            a: {"loguniform": [min(v), max(v)]} if a in self.continuous else {"grid": v}
            for a, v in self.axes.items()}})

    def snap(self, params: dict) -> dict:
        """``params`` with each continuous axis's value moved to the nearest grid value in log space
        (where the ground truth was trained); the other axes unchanged."""
        return {a: (min(self.axes[a], key=lambda g: abs(math.log(float(v) / g))) if a in self.continuous else v)
                for a, v in params.items()}

    def max_snap_octaves(self) -> float:
        """The farthest a sampled value of a continuous axis can be moved by ``snap``, in octaves."""
        return max((math.log2(b / a) / 2 for c in self.continuous
                    for a, b in zip(sorted(self.axes[c]), sorted(self.axes[c])[1:])), default=0.0)


def _write(name: str, text: str) -> Path:
    path = CORPORA / f"{name}.txt"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def code_corpus() -> Path:
    """The running Python's standard-library modules, in name order, up to CODE_CHARS characters."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    return _write("code", _concat(files, CODE_CHARS, lambda f: f.name))


def _concat(files, limit: int, label) -> str:
    """The files' texts, each under a "# ---- label" line, until ``limit`` characters are reached."""
    parts, n = [], 0
    for f in files:
        parts.append(f"# ---- {label(f)}\n{f.read_text(encoding='utf-8', errors='replace')}")
        n += len(parts[-1])
        if n >= limit:
            break
    return "\n\n".join(parts)


def docs_corpus() -> Path:
    """Python's documentation topics (the text `help('topic')` prints), in topic order."""
    from pydoc_data.topics import topics

    return _write("docs", "\n\n".join(f"{k}\n\n{v}" for k, v in sorted(topics.items())))


def pkgs_corpus() -> Path:
    """The licence and README texts of the installed Python packages: the LICENSE*, LICENCE*, COPYING*,
    NOTICE*, AUTHORS*, README* and METADATA files of site-packages' ``*.dist-info`` directories (their
    ``licenses/`` folders included), in path order, up to PKGS_CHARS characters."""
    site = Path(sysconfig.get_paths()["purelib"])
    files = sorted(f for d in site.glob("*.dist-info") for f in d.rglob("*")
                   if f.is_file() and f.name.upper().startswith(PKG_TEXTS))
    return _write("pkgs", _concat(files, PKGS_CHARS, lambda f: f.relative_to(site)))


def changes_corpus() -> Path:
    """The Markdown files inside the installed packages' own directories (not ``*.dist-info``), in path
    order, deduplicated by content, up to CHANGES_CHARS characters."""
    site = Path(sysconfig.get_paths()["purelib"])
    seen, files = set(), []
    for f in sorted(site.rglob("*.md")):
        if f.is_file() and not any(part.endswith(".dist-info") for part in f.relative_to(site).parts):
            digest = hashlib.sha256(f.read_bytes()).digest()
            if digest not in seen:
                seen.add(digest)
                files.append(f)
    return _write("changes", _concat(files, CHANGES_CHARS, lambda f: f.relative_to(site)))


CORPUS_BUILDERS = {"code": code_corpus, "docs": docs_corpus, "pkgs": pkgs_corpus, "changes": changes_corpus}


def corpus_sha256(problem: Problem) -> str | None:
    path = problem.corpus_path()
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


LRS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128]
DENSE_LRS = [float(f"{0.001 * 2 ** (k / 2):.4g}") for k in range(13)]  # 0.001 ... 0.064, half an octave apart
PROBLEMS = {p.name: p for p in (
    Problem("nano", "prose (embedded corpus), nano, ctx 32, batch 8, 12,288 tokens; 64 points, all valid",
            model="nano", model_overrides={}, max_tokens=12288, eval_freq=8, eval_iter=3,
            axes={"peak_lr": LRS, "warmup_steps": [2, 10], "dropout": [0.0, 0.1], "max_norm": [0.5, 2.0]},
            fixed={"batch_size": 8, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}),
    Problem("code", "Python stdlib source, nano at ctx 64, batch 4, 16,384 tokens; 48 points, 16 invalid "
                    "(warmup 64 of 64 steps)",
            model="nano", model_overrides={"context_len": 64}, max_tokens=16384, eval_freq=8, eval_iter=4,
            axes={"peak_lr": LRS, "warmup_steps": [4, 16, 64], "weight_decay": [0.0, 0.1]},
            fixed={"batch_size": 4, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}, corpus="code"),
    Problem("docs", "Python doc topics, 2 layers x 48 wide at ctx 48, batch 6, 11,520 tokens; 45 points, "
                    "3+ values on every axis",
            model="tiny", model_overrides={"context_len": 48, "emb_dim": 48, "n_layers": 2, "n_heads": 2},
            max_tokens=11520, eval_freq=8, eval_iter=3,
            axes={"peak_lr": [0.002, 0.006, 0.018, 0.054, 0.162], "init_std": [0.005, 0.02, 0.08],
                  "max_norm": [0.1, 1.0, 10.0]},
            fixed={"batch_size": 6, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}, corpus="docs"),
    Problem("pkgs", "installed packages' licence and README texts, nano 64 wide at ctx 48, batch 4, 12,288 "
                    "tokens; continuous peak_lr (13 grid values) x weight_decay x warmup, 52 points",
            model="nano", model_overrides={"context_len": 48, "emb_dim": 64}, max_tokens=12288, eval_freq=8,
            eval_iter=4,
            axes={"peak_lr": DENSE_LRS, "weight_decay": [0.0, 0.1], "warmup_steps": [2, 8]},
            fixed={"batch_size": 4, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}, corpus="pkgs",
            continuous=("peak_lr",),
            notes=["peak_lr is searched as loguniform [0.001, 0.064]; its ground truth is 13 values half an "
                   "octave apart, and a replayed trial's LR is snapped to the nearest of them in log space "
                   "(at most a quarter of an octave away)",
                   "the corpus depends on the installed packages: grid_pkgs.json records its sha256"]),
    Problem("pkgs2x", "installed packages' licence and README texts, nano 64 wide at ctx 48, batch 4, 12,288 "
                      "tokens; peak_lr (7 octaves) x weight_decay x warmup x dropout x max_norm, 112 points",
            model="nano", model_overrides={"context_len": 48, "emb_dim": 64}, max_tokens=12288, eval_freq=8,
            eval_iter=4,
            axes={"peak_lr": LRS[:7], "weight_decay": [0.0, 0.1], "warmup_steps": [2, 8], "dropout": [0.0, 0.1],
                  "max_norm": [0.5, 2.0]},
            fixed={"batch_size": 4, "initial_lr": 1.0e-5, "min_lr": 1.0e-5}, corpus="pkgs",
            notes=["the corpus depends on the installed packages: grid_pkgs2x.json records its sha256"]),
    Problem("changes", "installed packages' Markdown (changelogs, READMEs), small (4 x 256) at ctx 128, batch 4, "
                       "32,768 tokens; the source documents' axes, 48 points, trials of ~1 min serial",
            model="small", model_overrides={"context_len": 128}, max_tokens=32768, eval_freq=16, eval_iter=4,
            axes={"peak_lr": [1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2], "dropout": [0.0, 0.1],
                  "weight_decay": [0.0, 0.1], "warmup_steps": [10, 30]},
            fixed={"batch_size": 4, "initial_lr": 5.0e-5, "min_lr": 1.0e-5}, corpus="changes",
            notes=["the corpus depends on the installed packages: grid_changes.json records its sha256"]),
)}


def default_problems() -> list[str]:
    """The problems whose ground truth (bench/grid_<name>.csv) is built: a benchmark's default set."""
    return [name for name, p in PROBLEMS.items() if p.csv.is_file()]


def add_problems_arg(ap) -> None:
    """--problems NAME ... (default: every problem whose grid is built) on a benchmark script's parser."""
    ap.add_argument("--problems", nargs="+", choices=PROBLEMS, default=default_problems(),
                    help="benchmark problems to run (default: those whose bench/grid_<problem>.csv is built: "
                         f"{' '.join(default_problems())})")


def subset_tag(names) -> str:
    """The record tag of a run on some of the (built) problems only: its figures are no product figures."""
    return "" if set(names) == set(default_problems()) else f" --problems {' '.join(names)}"

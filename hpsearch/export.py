"""Export a sweep's best (or any) trial as a pretraining config.

    native   the YAML `hpsearch pretrain --config` runs (round trip tested)
    litgpt   litgpt's pretrain YAML shape (train:, eval:, optimizer:, model_config:). litgpt rejects
             unknown keys, so provenance goes to a sidecar ``<out>.provenance.yaml``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from hpsearch import results as res
from trainables.files import atomic_write_text
from trainables.config import PretrainConfig
from trainables.errors import SweepError

FORMATS = ("native", "litgpt")


def trial_config(base: PretrainConfig, row: pd.Series, axes: list[str]) -> PretrainConfig:
    """The base config with a trial's hyperparameters applied."""
    values = {a: row[a] for a in axes if a in row and not _missing(row[a])}
    return base.with_hparams(values, source=f"trial {row['trial_id']}")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def export_native(base: PretrainConfig, row: pd.Series, axes: list[str]) -> str:
    cfg = trial_config(base, row, axes)
    header = (f"# hpsearch pretraining config: trial {row['trial_id']} "
              f"(best val loss {row['best_val_loss']:.4f} at {int(row['best_val_tokens']):,} tokens)\n"
              f"# run it: hpsearch pretrain --config THIS_FILE\n")
    return header + cfg.to_yaml()


def to_litgpt(cfg: PretrainConfig) -> dict:
    m, t, e = cfg.model, cfg.train, cfg.eval
    train = {
        "global_batch_size": t.batch_size,
        "micro_batch_size": t.batch_size,
        "lr_warmup_steps": t.warmup_steps,
        "max_seq_length": m.context_len,
        "max_norm": t.max_norm,
        "min_lr": t.min_lr,
        "tie_embeddings": False,
    }
    if t.max_tokens:
        train["max_tokens"] = t.max_tokens
    else:
        train["epochs"] = t.num_epochs
    return {
        "model_config": {
            "name": f"hpsearch-{cfg.preset}",
            "block_size": m.context_len,
            "vocab_size": m.vocab_size,
            "padded_vocab_size": -(-m.vocab_size // 64) * 64,
            "n_layer": m.n_layers,
            "n_head": m.n_heads,
            "n_embd": m.emb_dim,
            "bias": True,
            "norm_class_name": "LayerNorm",
            "mlp_class_name": "GptNeoxMLP",
            "intermediate_size": 4 * m.emb_dim,
            "gelu_approximate": "tanh",
            "parallel_residual": False,
        },
        "train": train,
        "eval": {"interval": e.eval_freq, "max_iters": e.eval_iter},
        "optimizer": {
            "class_path": "torch.optim.AdamW",
            "init_args": {"lr": t.peak_lr, "weight_decay": t.weight_decay},
        },
        "seed": t.seed,
        "devices": "auto",
    }


def export(sweep_dir: Path, out: Path, *, trial_id: str | None = None, fmt: str = "native",
           force: bool = False) -> list[Path]:
    """Write the chosen trial's config to ``out``; returns the files written."""
    if fmt not in FORMATS:
        raise SweepError(f"unknown --format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not force:
        raise SweepError(f"{out} already exists; choose another --out or pass --force to overwrite it")
    trials, _, meta = res.load(sweep_dir)
    axes = list(meta.get("space", {}).get("axes", {}))
    if trial_id is None:
        row = res.best_trial(trials)
        if row is None:
            raise SweepError(f"sweep {sweep_dir.name} has no completed or early-stopped trial to export "
                             f"({res.summary_line(trials)}); pick one with --trial ID")
    else:
        match = trials[trials["trial_id"] == trial_id]
        if match.empty:
            raise SweepError(f"no trial '{trial_id}' in sweep {sweep_dir.name}; "
                             f"see `hpsearch results {sweep_dir.name}` for trial ids")
        row = match.iloc[0]
    base = PretrainConfig.from_dict(meta["base_config"], source=f"{sweep_dir}/sweep.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    provenance = {
        "sweep": meta.get("name", sweep_dir.name), "trial": str(row["trial_id"]), "status": row["status"],
        "best_val_loss": float(row["best_val_loss"]), "best_val_tokens": int(row["best_val_tokens"]),
        "mode": meta.get("mode"), "space": meta.get("space", {}).get("name"),
        "command": meta.get("command"), "versions": meta.get("versions"),
    }
    if fmt == "native":
        atomic_write_text(out, export_native(base, row, axes))
        return [out]
    cfg = trial_config(base, row, axes)
    atomic_write_text(out, yaml.safe_dump(to_litgpt(cfg), sort_keys=False))
    provenance["not_representable_in_litgpt"] = {
        "initial_lr": f"{cfg.train.initial_lr:g} (litgpt warms up from 0)",
        "dropout": f"{cfg.model.dropout:g} (litgpt's GPT has no dropout)",
        "position_embeddings": "learned absolute in hpsearch; litgpt uses rotary (rotary_percentage)",
        "num_epochs": cfg.train.num_epochs if cfg.train.max_tokens else None,
    }
    provenance["hpsearch_config"] = cfg.to_dict()
    side = out.with_name(out.stem + ".provenance.yaml")
    atomic_write_text(side, yaml.safe_dump(provenance, sort_keys=False))
    return [out, side]

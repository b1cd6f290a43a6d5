"""Export a sweep's best (or any) trial as a pretraining config.

    native   the YAML `hpsearch pretrain --config` runs (round trip tested)
    litgpt   litgpt's pretrain YAML shape (train:, eval:, optimizer:, model_config:). litgpt rejects
             unknown keys, so provenance goes to a sidecar ``<out>.provenance.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

from hpsearch import results as res
from trainables.files import atomic_write_text
from trainables.config import PretrainConfig, plain
from trainables.model import preset_config
from trainables.errors import SweepError

FORMATS = ("native", "litgpt")


def trial_config(base: PretrainConfig, row: pd.Series, axes: list[str]) -> PretrainConfig:
    """The base config with a trial's hyperparameters applied."""
    values = {a: row[a] for a in axes if a in row and not _missing(row[a])}
    return base.with_hparams(values, source=f"trial {row['trial_id']}")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def export_native(base: PretrainConfig, row: pd.Series, axes: list[str]) -> str:
    return native_yaml(trial_config(base, row, axes), row)


def native_yaml(cfg: PretrainConfig, row: pd.Series, *, carried: bool = False) -> str:
    """The config as `hpsearch pretrain --config` reads it, under a header naming the trial."""
    header = (f"# hpsearch pretraining config: trial {row['trial_id']} "
              f"(best val loss {row['best_val_loss']:.4f} at {int(row['best_val_tokens']):,} tokens)\n"
              + ("# carried to the target model/budget: see the .provenance.yaml beside this file\n" if carried else "")
              + "# run it: hpsearch pretrain --config THIS_FILE\n")
    return header + cfg.to_yaml()


def to_litgpt(cfg: PretrainConfig) -> dict:
    m, t, e = cfg.model, cfg.train, cfg.eval
    train = {
        "global_batch_size": t.batch_size,
        "micro_batch_size": t.batch_size,
        **({"lr_warmup_fraction": t.warmup_fraction} if t.warmup_fraction is not None
           else {"lr_warmup_steps": t.warmup_steps}),
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


TRANSFERABLE_MUP = ("init_std", "mup_input_mult", "mup_output_mult", "mup_zero_readout", "tie_embeddings")
"""μP model fields a tuned value carries to any width (besides the LR, schedule shape and optimizer)."""


def to_width(cfg: PretrainConfig, *, target_model: str | None, target_width: int | None) -> tuple[PretrainConfig, dict]:
    """The tuned proxy config carried to a wider (or narrower) model: (config, provenance notes).

    μP: the target keeps the proxy's LR, schedule, init scale and multipliers, with base_width = the
    proxy's base width, so its per-layer LRs and inits are the ones μP prescribes. SP: the LR does
    not transfer across width, so anything but the proxy's own width is refused.
    """
    proxy = cfg.model
    target = preset_config(target_model) if target_model else proxy
    preset = target_model or cfg.preset
    if target_width is not None:
        target = replace(target, emb_dim=target_width)
    if target.emb_dim != proxy.emb_dim and proxy.parametrization != "mup":
        raise SweepError(
            f"the sweep tuned the standard parametrization at width {proxy.emb_dim}, and under SP the best "
            f"learning rate does not transfer to width {target.emb_dim}; rerun the sweep with μP "
            "(a --config whose model section has parametrization: mup) and export that")
    if target.n_heads != proxy.n_heads:
        raise SweepError(
            f"μP here transfers across width at a fixed head count, but the proxy has {proxy.n_heads} heads and "
            f"the target {target.n_heads}; sweep a proxy with n_heads {target.n_heads}, or use --target-width "
            "(which keeps the proxy's depth and heads)")
    keep = {k: getattr(proxy, k) for k in ("dropout", "qkv_bias", "parametrization", *TRANSFERABLE_MUP)}
    base_width = proxy.base_width or proxy.emb_dim
    target = replace(target, **keep, vocab_size=proxy.vocab_size,
                     base_width=base_width if proxy.parametrization == "mup" else None)
    problems = target.problems()
    if problems:
        raise SweepError(f"target model: {'; '.join(problems)}")
    notes = {"proxy_model": {"preset": cfg.preset, "emb_dim": proxy.emb_dim, "n_layers": proxy.n_layers,
                             "n_heads": proxy.n_heads, "context_len": proxy.context_len},
             "width_mult": target.emb_dim / base_width if proxy.parametrization == "mup" else 1.0,
             "transferred": "peak_lr, initial_lr, min_lr, schedule shape, init_std, mup multipliers (μP)"}
    caveats = []
    if target.n_layers != proxy.n_layers:
        caveats.append(f"depth changed ({proxy.n_layers} -> {target.n_layers} layers): μP transfers across "
                       "width; across depth the optimum may move")
    if target.context_len != proxy.context_len:
        caveats.append(f"context changed ({proxy.context_len} -> {target.context_len}): batch in tokens and "
                       "the horizon change with it")
    caveats.append("dropout and weight decay do not transfer with μP; they are kept as tuned on the proxy")
    notes["caveats"] = caveats
    return replace(cfg, model=target, preset=preset), notes


def to_budget(sweep_dir: Path, cfg: PretrainConfig, *, target_tokens: int) -> tuple[PretrainConfig, dict]:
    """peak_lr, batch size, warmup and total steps for ``target_tokens`` from the sweep's budget-ladder fit."""
    from hpsearch.scaling import load_fit, target_run

    fit, record, _ = load_fit(sweep_dir)
    run = target_run(fit, target_model=cfg.model, target_tokens=int(target_tokens),
                     warmup_fraction=float(record.get("warmup_fraction") or 0.0))
    t = replace(cfg.train, peak_lr=run["peak_lr"], batch_size=int(run["batch_size"]), max_tokens=int(target_tokens),
                warmup_steps=int(run["warmup_steps"]), warmup_fraction=None,
                min_lr=min(cfg.train.min_lr, run["peak_lr"]), initial_lr=min(cfg.train.initial_lr, run["peak_lr"]))
    notes = {k: run[k] for k in ("compute", "peak_lr", "lr_ci", "batch_tokens", "batch_ci", "batch_size",
                                 "total_steps", "warmup_steps", "extrapolation_factor", "warning", "notes",
                                 "reference")}
    return replace(cfg, train=t), notes


def export(sweep_dir: Path, out: Path, *, trial_id: str | None = None, fmt: str = "native",
           force: bool = False, target_model: str | None = None, target_width: int | None = None,
           target_tokens: int | None = None, log=print) -> list[Path]:
    """Write the chosen trial's config to ``out``; returns the files written.

    ``target_model`` / ``target_width`` carry it to another width (μP sweeps only) and
    ``target_tokens`` to another budget (budget-ladder sweeps, `hpsearch scale`).
    """
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
    cfg = trial_config(base, row, axes)
    target = target_model or target_width is not None or target_tokens is not None
    if target_model or target_width is not None:
        cfg, provenance["width_transfer"] = to_width(cfg, target_model=target_model, target_width=target_width)
    if target_tokens is not None:
        cfg, provenance["budget_transfer"] = to_budget(sweep_dir, cfg, target_tokens=target_tokens)
        if provenance["budget_transfer"]["warning"] and log:
            log(f"warning: {provenance['budget_transfer']['warning']}")
    if fmt == "litgpt" and cfg.model.parametrization == "mup":
        raise SweepError("litgpt cannot express μP (per-layer LR and init scaling, the readout multiplier, "
                         "1/d attention); export --format native and run it with `hpsearch pretrain`")
    if fmt == "native":
        atomic_write_text(out, native_yaml(cfg, row, carried=bool(target)))
        if not target:
            return [out]
        provenance["hpsearch_config"] = cfg.to_dict()
        side = out.with_name(out.stem + ".provenance.yaml")
        atomic_write_text(side, yaml.safe_dump(_plain_tree(provenance), sort_keys=False))
        return [out, side]
    atomic_write_text(out, yaml.safe_dump(to_litgpt(cfg), sort_keys=False))
    provenance["not_representable_in_litgpt"] = {
        "initial_lr": f"{cfg.train.initial_lr:g} (litgpt warms up from 0)",
        "dropout": f"{cfg.model.dropout:g} (litgpt's GPT has no dropout)",
        "position_embeddings": "learned absolute in hpsearch; litgpt uses rotary (rotary_percentage)",
        "num_epochs": cfg.train.num_epochs if cfg.train.max_tokens else None,
    }
    provenance["hpsearch_config"] = cfg.to_dict()
    side = out.with_name(out.stem + ".provenance.yaml")
    atomic_write_text(side, yaml.safe_dump(_plain_tree(provenance), sort_keys=False))
    return [out, side]


def _plain_tree(obj):
    """numpy scalars, tuples and NaN -> YAML-safe plain values."""
    if isinstance(obj, dict):
        return {str(k): _plain_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_tree(v) for v in obj]
    obj = plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

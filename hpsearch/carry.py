"""Carry a tuned proxy config to the run you will train: another shape (width, depth) and budget.

:func:`to_shape` applies the parametrization's rules (μP across width, a depth rule across depth) and
refuses a change no rule carries; :func:`to_budget` reads the budget ladder's laws for the target's
tokens. `hpsearch export --target-*` calls both and writes what they did to the provenance file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from trainables.config import PretrainConfig
from trainables.errors import SweepError
from trainables.model_config import preset_config

TRANSFERABLE_MUP = ("init_std", "mup_input_mult", "mup_output_mult", "mup_zero_readout", "tie_embeddings", "norm_gains",
                    "depth_rule")
"""Model fields a tuned value carries to any width and depth (besides the LR, schedule shape and optimizer)."""
BLOCK_STYLE = ("norm", "mlp", "positions", "linear_bias")
"""The block's architecture: the target keeps the proxy's, and a target preset of another style is refused."""


def to_shape(cfg: PretrainConfig, *, target_model: str | None, target_width: int | None,
             target_depth: int | None = None) -> tuple[PretrainConfig, dict]:
    """The tuned proxy config carried to a wider and/or deeper model: (config, provenance notes).

    μP carries the LR across width, a depth rule (model.depth_rule) across depth: the target keeps the
    proxy's LR, schedule, init scale, multipliers and rule, with base_width / base_depth = the proxy's,
    so its per-layer LRs, ε and branch multipliers are the ones the rules prescribe. Without μP a
    width change, and without a depth rule a depth change, is refused: the optimum moves there.
    """
    proxy = cfg.model
    target = preset_config(target_model) if target_model else proxy
    preset = target_model or cfg.preset
    if target_width is not None:
        target = replace(target, emb_dim=target_width)
    if target_depth is not None:
        target = replace(target, n_layers=target_depth)
    if target.emb_dim != proxy.emb_dim and proxy.parametrization != "mup":
        raise SweepError(
            f"the sweep tuned the standard parametrization at width {proxy.emb_dim}, and under SP the best "
            f"learning rate does not transfer to width {target.emb_dim}; rerun the sweep with μP "
            "(a --config whose model section has parametrization: mup) and export that")
    if target.n_layers != proxy.n_layers and proxy.depth_rule == "none":
        raise SweepError(
            f"the sweep tuned {proxy.n_layers} layers without a depth rule, and the best learning rate moves with "
            f"depth, so it does not carry to {target.n_layers} layers; rerun the sweep with a depth rule (a --config "
            "whose model section has depth_rule: completep) or export at the proxy's depth (--target-width)")
    if target_model and any(getattr(target, k) != getattr(proxy, k) for k in BLOCK_STYLE):
        raise SweepError(
            f"the proxy was tuned with {proxy.norm}/{proxy.mlp}/{proxy.positions} blocks and the target preset "
            f"{target_model} uses {target.norm}/{target.mlp}/{target.positions}: hyperparameters tuned on one block "
            "do not carry to the other; sweep a proxy of the target's style (e.g. --model llama-tiny for a Llama target)")
    if target.n_heads != proxy.n_heads:
        raise SweepError(
            f"μP here transfers across width at a fixed head count, but the proxy has {proxy.n_heads} heads and "
            f"the target {target.n_heads}; sweep a proxy with n_heads {target.n_heads}, or use --target-width "
            "and --target-depth (which keep the proxy's heads)")
    keep = {k: getattr(proxy, k) for k in ("dropout", "qkv_bias", "parametrization", *TRANSFERABLE_MUP, *BLOCK_STYLE)}
    base_width = proxy.base_width or proxy.emb_dim
    base_depth = proxy.base_depth or proxy.n_layers
    ruled = proxy.depth_rule != "none"
    target = replace(target, **keep, vocab_size=proxy.vocab_size,
                     base_width=base_width if proxy.parametrization == "mup" else None,
                     base_depth=base_depth if ruled else None)
    if proxy.mlp_hidden is not None and not target_model:  # a set MLP size widens with the model
        target = replace(target, mlp_hidden=round(proxy.mlp_hidden * target.emb_dim / proxy.emb_dim))
    problems = target.problems()
    if problems:
        raise SweepError(f"target model: {'; '.join(problems)}")
    notes = {"proxy_model": {"preset": cfg.preset, "emb_dim": proxy.emb_dim, "n_layers": proxy.n_layers,
                             "n_heads": proxy.n_heads, "context_len": proxy.context_len},
             "width_mult": target.emb_dim / base_width if proxy.parametrization == "mup" else 1.0,
             "depth_mult": target.n_layers / base_depth if ruled else 1.0,
             "depth_rule": proxy.depth_rule,
             "transferred": "peak_lr, initial_lr, min_lr, schedule shape, init_std, mup multipliers (μP), "
                            "depth rule"}
    caveats = []
    if target.context_len != proxy.context_len:
        caveats.append(f"context changed ({proxy.context_len} -> {target.context_len}): batch in tokens and "
                       "the horizon change with it")
    caveats.append("dropout and weight decay are kept as tuned on the proxy (μP scales the hidden weight decay "
                   "with width so lr x wd stays fixed; no rule is measured for their optimum)")
    notes["caveats"] = caveats
    return replace(cfg, model=target, preset=preset), notes


def to_budget(sweep_dir: Path, cfg: PretrainConfig, *, target_tokens: int,
              proxy: PretrainConfig | None = None) -> tuple[PretrainConfig, dict]:
    """peak_lr, batch size, warmup and total steps for ``target_tokens`` from the sweep's budget-ladder fit.
    The schedule (cosine or WSD with its decay fraction and shape) is kept; a WSD ladder's cooldown
    branches are not (they scored the ladder's budgets).

    ``proxy``: the ladder's own config, when ``cfg`` was carried to another shape first. Where the
    parametrization carries the shape (μP for width, a depth rule for depth) the law is read at the
    proxy's shape and the target's tokens: the shape's effect on the LR is the parametrization's job,
    and reading the law at the target's compute would count it twice.
    """
    from hpsearch.scaling import load_fit, target_run

    fit, record, _ = load_fit(sweep_dir)
    # to_shape already refused every shape change that μP and the depth rule do not carry
    shape = lambda m: (m.emb_dim, m.n_layers)  # noqa: E731
    law_model = proxy.model if proxy is not None and shape(proxy.model) != shape(cfg.model) else cfg.model
    run = target_run(fit, target_model=cfg.model, law_model=law_model, target_tokens=int(target_tokens),
                     warmup_fraction=float(record.get("warmup_fraction") or 0.0))
    t = replace(cfg.train, peak_lr=run["peak_lr"], batch_size=int(run["batch_size"]), max_tokens=int(target_tokens),
                warmup_steps=int(run["warmup_steps"]), warmup_fraction=None, cooldowns=None,
                min_lr=min(cfg.train.min_lr, run["peak_lr"]), initial_lr=min(cfg.train.initial_lr, run["peak_lr"]))
    notes = {k: run[k] for k in ("compute", "peak_lr", "lr_ci", "batch_tokens", "batch_ci", "batch_size",
                                 "total_steps", "warmup_steps", "extrapolation_factor", "warning", "notes",
                                 "reference")}
    return replace(cfg, train=t), notes

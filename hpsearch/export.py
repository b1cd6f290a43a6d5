"""Export a sweep's best (or any) trial as a pretraining config.

    native   the YAML `hpsearch pretrain --config` runs (round trip tested)
    litgpt   a file `litgpt pretrain --config FILE` runs as written: model_name + model_config, the budget as
             train.max_tokens, the schedule, optimizer, and data from hpsearch's own corpus reader. What
             litgpt cannot express is refused (tuned) or listed in the file's header (untuned). litgpt
             rejects unknown keys, so provenance goes to a sidecar ``<out>.provenance.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from hpsearch import results as res
from hpsearch.carry import to_budget, to_shape
from trainables.budget import warmup_steps_of
from trainables.config import PretrainConfig
from trainables.corpus import litgpt_tokenizer_dir
from trainables.errors import SweepError
from trainables.files import atomic_write_text, plain_tree

FORMATS = ("native", "litgpt")


def trial_config(base: PretrainConfig, row: pd.Series, axes: list[str]) -> PretrainConfig:
    """The base config with a trial's hyperparameters applied."""
    return base.with_hparams(res.trial_params(row, axes), source=f"trial {row['trial_id']}")


def export_native(base: PretrainConfig, row: pd.Series, axes: list[str]) -> str:
    return native_yaml(trial_config(base, row, axes), row)


def native_yaml(cfg: PretrainConfig, row: pd.Series, *, carried: bool = False) -> str:
    """The config as `hpsearch pretrain --config` reads it, under a header naming the trial."""
    header = (f"# hpsearch pretraining config: trial {row['trial_id']} "
              f"(best val loss {row['best_val_loss']:.4f} at {int(row['best_val_tokens']):,} tokens)\n"
              + ("# carried to the target model/budget: see the .provenance.yaml beside this file\n" if carried else "")
              + "# run it: hpsearch pretrain --config THIS_FILE\n")
    return header + cfg.to_yaml()


LITGPT_PRECISION = {"fp32": "32-true", "bf16-mixed": "bf16-mixed"}
"""hpsearch's train.precision -> litgpt's precision (Lightning's names)."""

LITGPT_DATA = "trainables.corpus.LitGPTData"
"""The data module a litgpt export names: hpsearch's corpus reader, so litgpt trains on the trials' tokens."""


def litgpt_run(cfg: PretrainConfig, *, corpus_tokens: int | None) -> tuple[int, int, str]:
    """(total optimizer steps, warmup steps, how the budget was found) of the run litgpt must repeat.

    litgpt counts its budget in tokens only. With the corpus size known, the steps are the trial's own
    (epochs of the corpus, capped by train.max_tokens: :func:`plan_run`); without it, train.max_tokens
    alone. A budget in epochs with an unknown corpus size cannot be expressed: SweepError.
    """
    from trainables.budget import plan_run

    t, tps = cfg.train, cfg.train.batch_size * cfg.model.context_len
    if corpus_tokens:
        plan = plan_run(cfg, int(corpus_tokens))
        why = (f"the trial's run: {plan.batches_per_epoch} steps/epoch x {plan.epochs:g} epochs of the sweep's "
               f"corpus ({int(corpus_tokens):,} tokens)" + (f", capped by max_tokens {t.max_tokens:,}" if t.max_tokens else ""))
        return plan.total_steps, plan.warmup_steps, why
    if not t.max_tokens:
        raise SweepError(f"litgpt counts its budget in tokens only (train.max_tokens), and this config's budget is "
                         f"train.num_epochs {t.num_epochs} of a corpus whose size is unknown here; set train.max_tokens "
                         "(or --max-tokens-per-trial in the sweep) and export again")
    total = max(1, t.max_tokens // tps)
    return total, warmup_steps_of(t, total), f"train.max_tokens {t.max_tokens:,}"


def litgpt_refusals(cfg: PretrainConfig, tuned=()) -> list[str]:
    """Why this config cannot be exported to litgpt (empty when it can).

    litgpt cannot express μP at all. Values it has no knob for (dropout, a warmup that starts above
    0, init_std, q/k/v without bias) are refused when the sweep tuned them: the winner's value was the
    point of the export. Untuned ones are listed in the file's header (:func:`litgpt_differences`).
    """
    m, t = cfg.model, cfg.train
    if m.parametrization == "mup":
        return ["litgpt cannot express μP (per-layer LR and init scaling, the readout multiplier, 1/d attention); "
                "export --format native and run it with `hpsearch pretrain`"]
    if m.depth_rule != "none":
        return [f"litgpt cannot express the depth rule {m.depth_rule} (residual branch multipliers, per-group LR "
                "and Adam ε by depth); export --format native and run it with `hpsearch pretrain`"]
    if t.schedule != "cosine":
        return [f"litgpt pretrain runs warmup + cosine only, and this config's schedule is {t.schedule}; "
                "export --format native and run it with `hpsearch pretrain`"]
    if not m.norm_gains:
        return ["litgpt's norms always train a gain, and this config's model.norm_gains is false; export "
                "--format native and run it with `hpsearch pretrain`"]
    out = []
    tuned = set(tuned)
    if "dropout" in tuned and m.dropout:
        out.append(f"the sweep tuned model.dropout (this trial: {m.dropout:g}) and litgpt's GPT has no dropout")
    if "initial_lr" in tuned and t.initial_lr and (t.warmup_steps or t.warmup_fraction):
        out.append(f"the sweep tuned train.initial_lr (this trial: {t.initial_lr:g}) and litgpt's warmup starts at 0")
    if "init_std" in tuned:
        out.append(f"the sweep tuned model.init_std (this trial: {m.init_std:g}) and litgpt's pretrain uses "
                   "GPT-NeoX's fixed init")
    if "qkv_bias" in tuned and not m.qkv_bias:
        out.append("the sweep tuned model.qkv_bias (this trial: false) and litgpt's bias covers q/k/v with the rest")
    return out


def litgpt_differences(cfg: PretrainConfig) -> list[str]:
    """What litgpt runs differently from hpsearch for this config (none of it tuned by the sweep)."""
    m, t = cfg.model, cfg.train
    out = [f"positions: rotary (litgpt) instead of learned absolute embeddings ({m.context_len * m.emb_dim:,} "
           "parameters fewer)"] if m.positions == "learned" else []
    out += ["init: GPT-NeoX's (std sqrt(2/(5 n_embd)); output projections 1/(sqrt(n_embd) n_layer))"
           f" instead of N(0, {m.init_std:g})",
           "gradients are clipped on every step; hpsearch clips only after warmup"]
    if m.dropout:
        out.append(f"dropout {m.dropout:g} is not applied: litgpt's GPT has no dropout")
    if t.initial_lr and (t.warmup_steps or t.warmup_fraction):
        out.append(f"warmup rises from LR 0, not from initial_lr {t.initial_lr:g}")
    if m.qkv_bias != m.linear_bias:  # litgpt's one `bias` covers q/k/v and the other linears alike
        out.append(f"q/k/v {'have' if m.linear_bias else 'lack'} biases in litgpt "
                   f"({3 * m.emb_dim * m.n_layers:,} parameters {'more' if m.linear_bias else 'fewer'})")
    return out


def to_litgpt(cfg: PretrainConfig, *, corpus_tokens: int | None = None, tuned=(), name: str | None = None,
              tokenizer_dir: str | None = None) -> dict:
    """The config as `litgpt pretrain --config` reads it: model, budget, schedule, optimizer and data.

    Same model size and schedule: the token budget, warmup steps, peak and min LR (cosine between),
    weight decay, clipping norm, batch and context. SweepError (one line) for what litgpt cannot express.
    """
    problems = litgpt_refusals(cfg, tuned)
    if problems:
        raise SweepError("cannot export to litgpt: " + "; ".join(problems)
                         + ("" if cfg.model.parametrization == "mup" else
                            "; fix the value in the space (or export --format native)"))
    m, t, d, e = cfg.model, cfg.train, cfg.data, cfg.eval
    total, warmup, _ = litgpt_run(cfg, corpus_tokens=corpus_tokens)
    precision = getattr(t, "precision", "auto")  # auto: litgpt picks (bf16-mixed where supported), as hpsearch does
    tag = name or f"hpsearch-{cfg.preset}"
    return {
        "model_name": tag,  # required by litgpt's parser; model_config below defines the model
        "model_config": {
            "name": tag,
            "block_size": m.context_len,
            "vocab_size": m.vocab_size,
            "padded_vocab_size": m.vocab_size,  # hpsearch's head has exactly vocab_size outputs
            "n_layer": m.n_layers,
            "n_head": m.n_heads,
            "n_embd": m.emb_dim,
            "bias": m.linear_bias,
            "lm_head_bias": False,
            "norm_class_name": "LayerNorm" if m.norm == "layernorm" else "RMSNorm",
            "norm_eps": 1e-5,
            "mlp_class_name": "GptNeoxMLP" if m.mlp == "gelu" else "LLaMAMLP",
            "intermediate_size": m.hidden_dim,
            "gelu_approximate": "tanh",
            "parallel_residual": False,
            **({"rotary_percentage": 1.0, "rope_base": int(m.rope_base)} if m.positions == "rope" else {}),
        },
        "out_dir": f"out/pretrain/{tag}",
        "devices": 1,
        **({"precision": LITGPT_PRECISION[precision]} if precision in LITGPT_PRECISION else {}),
        "train": {
            "global_batch_size": t.batch_size,
            "micro_batch_size": t.batch_size,
            "max_tokens": total * t.batch_size * m.context_len,
            "lr_warmup_steps": warmup,
            "max_seq_length": m.context_len,
            "max_norm": t.max_norm,
            "min_lr": t.min_lr,
            "tie_embeddings": m.tie_embeddings,
            "save_interval": e.checkpoint_freq or None,
        },
        "eval": {"interval": e.eval_freq, "max_iters": e.eval_iter},
        "optimizer": {
            "class_path": "torch.optim.AdamW",
            "init_args": {"lr": t.peak_lr, "weight_decay": t.weight_decay},
        },
        "data": {
            "class_path": LITGPT_DATA,
            "init_args": {"path": d.path, "pattern": d.pattern, "format": d.format, "text_field": d.text_field,
                          "sample_tokens": d.sample_tokens, "sample_seed": d.sample_seed, "tokenizer": d.tokenizer,
                          "eot_token": d.eot_token, "token_dtype": d.token_dtype, "vocab_size": m.vocab_size,
                          "train_ratio": d.train_ratio, "stride": d.stride, "seed": t.seed},
        },
        **({"tokenizer_dir": str(tokenizer_dir)} if tokenizer_dir else {}),
        "logger_name": "csv",
        "seed": t.seed,
    }


def litgpt_yaml(cfg: PretrainConfig, row: pd.Series | None = None, *, corpus_tokens: int | None = None, tuned=(),
                name: str | None = None, tokenizer_dir: str | None = None) -> str:
    """:func:`to_litgpt` as YAML under a header saying how to run it and what litgpt does differently."""
    lit = to_litgpt(cfg, corpus_tokens=corpus_tokens, tuned=tuned, name=name, tokenizer_dir=tokenizer_dir)
    total, warmup, why = litgpt_run(cfg, corpus_tokens=corpus_tokens)
    tr = lit["train"]
    trial = ("" if row is None else f": trial {row['trial_id']} (best val loss {row['best_val_loss']:.4f} "
             f"at {int(row['best_val_tokens']):,} tokens)")
    lines = [
        f"litgpt pretraining config written by hpsearch{trial}",
        "run it: litgpt pretrain --config THIS_FILE",
        "  needs hpsearch installed beside litgpt (pip install 'hpsearch[litgpt]'): data.class_path is hpsearch's",
        "  corpus reader, which gives litgpt the trials' tokens, train/val split and window order",
        *(["  tokenizer_dir: GPT-2's BPE as tokenizer.json, written by hpsearch from the files it tokenizes with;",
           "  litgpt copies it into each checkpoint (for litgpt generate/chat). Training does not need it: on",
           "  another machine drop it, or point it at any GPT-2 tokenizer (litgpt download openai-community/gpt2",
           "  --tokenizer_only true)"] if cfg.data.tokenizer == "gpt2" else
          [f"  tokenizer_dir: a copy of your tokenizer {cfg.data.tokenizer} (the corpus is tokenized with it),",
           "  with its end-of-text token named; litgpt copies it into each checkpoint (for litgpt generate/chat)"]),
        f"  the corpus: {cfg.data.path or 'the embedded corpus (pydoc_data.topics)'}; "
        "elsewhere pass --data.path /path/to/corpus",
        "  on N GPUs add --devices N --train.micro_batch_size <global_batch_size / N>",
        f"budget: {total} steps x {tr['global_batch_size']} x {tr['max_seq_length']} tokens = "
        f"train.max_tokens {tr['max_tokens']:,} ({why})",
        f"schedule: warmup {warmup} steps to lr {cfg.train.peak_lr:g}, cosine to min_lr {cfg.train.min_lr:g}; "
        f"AdamW weight_decay {cfg.train.weight_decay:g}; clipping at {cfg.train.max_norm:g}",
        "litgpt runs these differently (not tuned by the sweep):",
        *(f"  - {x}" for x in litgpt_differences(cfg)),
    ]
    return "".join(f"# {x}\n" for x in lines) + yaml.safe_dump(lit, sort_keys=False)


def export(sweep_dir: Path, out: Path, *, trial_id: str | None = None, fmt: str = "native",
           force: bool = False, target_model: str | None = None, target_width: int | None = None,
           target_depth: int | None = None, target_tokens: int | None = None, log=print) -> list[Path]:
    """Write the chosen trial's config to ``out``; returns the files written.

    ``target_model`` / ``target_width`` / ``target_depth`` carry it to another shape (μP for width, a
    depth rule for depth) and ``target_tokens`` to another budget (budget-ladder sweeps, `hpsearch scale`).
    """
    if fmt not in FORMATS:
        raise SweepError(f"unknown --format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    for path in (out, out.with_name(out.stem + ".provenance.yaml")):
        if path.is_dir():  # --force overwrites a file, never a directory
            raise SweepError(f"{path} is a directory; export writes files and never replaces a directory: "
                             f"choose another --out" + (f", e.g. --out {out / 'best.yaml'}" if path == out else ""))
    for path in (out, out.with_name(out.stem + ".provenance.yaml")):  # the sidecar is never overwritten silently
        if path.exists() and not force:
            raise SweepError(f"{path} already exists; choose another --out or pass --force to overwrite it")
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
    unfinished = unfinished_note(meta, trials)
    if unfinished and log:
        log(f"warning: {unfinished}")
    base = PretrainConfig.from_dict(meta["base_config"], source=f"{sweep_dir}/sweep.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    provenance = {
        "sweep": meta.get("name", sweep_dir.name), "trial": str(row["trial_id"]), "status": row["status"],
        "best_val_loss": float(row["best_val_loss"]), "best_val_tokens": int(row["best_val_tokens"]),
        "mode": meta.get("mode"), "space": meta.get("space", {}).get("name"),
        "command": meta.get("command"), "versions": meta.get("versions"),
        **({"unfinished": unfinished} if unfinished else {}),
    }
    cfg = proxy = trial_config(base, row, axes)
    reshaped = target_model or target_width is not None or target_depth is not None
    target = reshaped or target_tokens is not None
    if reshaped:
        cfg, provenance["shape_transfer"] = to_shape(cfg, target_model=target_model, target_width=target_width,
                                                     target_depth=target_depth)
    if target_tokens is not None:
        cfg, provenance["budget_transfer"] = to_budget(sweep_dir, cfg, target_tokens=target_tokens, proxy=proxy)
        if provenance["budget_transfer"]["warning"] and log:
            log(f"warning: {provenance['budget_transfer']['warning']}")
    if fmt == "native":
        atomic_write_text(out, native_yaml(cfg, row, carried=bool(target)))
        if not target:
            return [out]
        provenance["hpsearch_config"] = cfg.to_dict()
        side = out.with_name(out.stem + ".provenance.yaml")
        atomic_write_text(side, yaml.safe_dump(plain_tree(provenance), sort_keys=False))
        return [out, side]
    # litgpt: the trial's own run needs the sweep's corpus size (a budget in epochs); a target budget does not
    corpus_tokens = None if target_tokens is not None else (meta.get("corpus") or {}).get("tokens")
    text = litgpt_yaml(cfg, row, corpus_tokens=corpus_tokens, tuned=axes,
                       name=f"hpsearch-{meta.get('name', sweep_dir.name)}-{row['trial_id']}",
                       tokenizer_dir=str(litgpt_tokenizer_dir(tokenizer=cfg.data.tokenizer,
                                                              eot_token=cfg.data.eot_token)))
    atomic_write_text(out, text)
    provenance["litgpt_differences"] = litgpt_differences(cfg)
    provenance["hpsearch_config"] = cfg.to_dict()
    side = out.with_name(out.stem + ".provenance.yaml")
    atomic_write_text(side, yaml.safe_dump(plain_tree(provenance), sort_keys=False))
    return [out, side]


def unfinished_note(meta: dict, trials: pd.DataFrame) -> str:
    """Why the export is not the sweep's final answer yet ('' when the sweep finished)."""
    cut = int((trials["status"] == res.INTERRUPTED).sum()) if "status" in trials else 0
    name = meta.get("name", "NAME")
    if "interrupted" in meta or cut:
        return (f"sweep {name} was interrupted ({cut} trial(s) did not finish), so this is the best trial so far, "
                f"not the sweep's answer; finish it first with `hpsearch sweep --name {name} --resume`")
    if "finished" not in meta:
        return (f"sweep {name} has not finished (still running, or stopped before it could say so); this is the "
                "best trial so far")
    return ""

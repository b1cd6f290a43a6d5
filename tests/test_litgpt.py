"""`hpsearch export --format litgpt` against litgpt itself: its own parser, and `litgpt pretrain` for a few steps.

The tests that need litgpt are skipped, with the reason, where it is not installed
(`pip install -e '.[litgpt]'`); the refusals are plain functions and always run.
"""

import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpsearch.export import litgpt_yaml, to_litgpt
from trainables.config import PretrainConfig
from trainables.errors import SweepError
from trainables.pretrain import lr_at, plan_run

HAVE_LITGPT = importlib.util.find_spec("litgpt") is not None
needs_litgpt = pytest.mark.skipif(not HAVE_LITGPT, reason="litgpt is not installed: pip install -e '.[litgpt]'")


def config(preset: str = "nano", **train) -> PretrainConfig:
    """A nano model litgpt trains in seconds on a CPU: warmup from 0 and no dropout, as litgpt does them."""
    base = {"batch_size": 4, "max_tokens": 4 * 32 * 12, "peak_lr": 5e-3, "initial_lr": 0.0, "min_lr": 1e-4,
            "warmup_steps": 3, "weight_decay": 0.05, "max_norm": 0.5, "seed": 7}
    model = {"preset": preset, "dropout": 0.0, "qkv_bias": preset == "nano"}
    return PretrainConfig.from_dict({"model": model, "train": {**base, **train}, "eval": {"eval_freq": 4, "eval_iter": 2}})


# -- what cannot be expressed is refused in one line ---------------------------------------------

@pytest.mark.parametrize("change, tuned, expected", [
    ({"model": {"dropout": 0.1}}, ["dropout"], "tuned model.dropout (this trial: 0.1) and litgpt's GPT has no dropout"),
    ({"train": {"initial_lr": 1e-4}}, ["initial_lr"], "litgpt's warmup starts at 0"),
    ({"model": {"init_std": 0.01}}, ["init_std"], "GPT-NeoX's fixed init"),
    ({"model": {"qkv_bias": False}}, ["qkv_bias"], "litgpt's bias covers q/k/v"),
    ({"model": {"parametrization": "mup", "base_width": 32}}, [], "litgpt cannot express μP"),
    ({"model": {"norm_gains": False}}, [], "litgpt's norms always train a gain"),
    ({"train": {"max_tokens": None, "num_epochs": 2}}, [], "litgpt counts its budget in tokens only"),
])
def test_what_litgpt_cannot_express_is_refused(change, tuned, expected):
    raw = config().to_dict()
    for section, values in change.items():
        raw[section].update(values)
    cfg = PretrainConfig.from_dict(raw)
    with pytest.raises(SweepError, match=re.escape(expected)) as info:
        to_litgpt(cfg, tuned=tuned)
    assert "\n" not in str(info.value)


def test_untuned_differences_are_written_in_the_header():
    raw = config().to_dict()
    raw["model"].update(dropout=0.1, qkv_bias=False)
    raw["train"]["initial_lr"] = 1e-5
    text = litgpt_yaml(PretrainConfig.from_dict(raw), tuned=["peak_lr"])
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("dropout 0.1 is not applied" in h for h in header)
    assert any("warmup rises from LR 0, not from initial_lr 1e-05" in h for h in header)
    assert any("q/k/v have biases in litgpt" in h for h in header)
    assert any(h.startswith("# run it: litgpt pretrain --config THIS_FILE") for h in header)


def test_an_epoch_budget_becomes_the_trials_token_count():
    cfg = config(max_tokens=None, num_epochs=2)
    n = 20_000
    plan = plan_run(cfg, n)
    lit = to_litgpt(cfg, corpus_tokens=n)
    assert "epochs" not in lit["train"]
    assert lit["train"]["max_tokens"] == plan.total_steps * 4 * 32 == 2 * plan.batches_per_epoch * 4 * 32
    capped = to_litgpt(config(max_tokens=10 * 4 * 32 + 5, warmup_steps=0, warmup_fraction=0.2), corpus_tokens=n)
    assert capped["train"]["max_tokens"] == 10 * 4 * 32 and capped["train"]["lr_warmup_steps"] == 2


# -- litgpt's own parser and trainer -------------------------------------------------------------

def write_export(tmp_path, cfg=None, **kw) -> Path:
    f = tmp_path / "pretrain.yaml"
    f.write_text(litgpt_yaml(cfg or config(), **kw))
    return f


@needs_litgpt
def test_litgpts_parser_reads_the_export_as_written(tmp_path):
    from jsonargparse import ActionConfigFile, ArgumentParser
    from litgpt.config import Config
    from litgpt.model import GPT as LitGPT
    from litgpt.pretrain import setup

    from trainables.model import GPT

    cfg = config()
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(setup)  # what `litgpt pretrain` parses
    parsed = parser.instantiate_classes(parser.parse_args(["--config", str(write_export(tmp_path, cfg))]))
    train, model = parsed.train, parsed.model_config
    assert isinstance(model, Config) and parsed.model_name == "hpsearch-nano"
    assert (train.max_tokens, train.lr_warmup_steps, train.epochs) == (4 * 32 * 12, 3, None)
    assert (train.global_batch_size, train.micro_batch_size, train.max_seq_length) == (4, 4, 32)
    assert (train.min_lr, train.max_norm, train.tie_embeddings) == (1e-4, 0.5, False)
    assert parsed.optimizer == {"class_path": "torch.optim.AdamW", "init_args": {"lr": 5e-3, "weight_decay": 0.05}}
    assert type(parsed.data).__name__ == "LitGPTData" and parsed.data.seed == 7
    assert parsed.precision is None  # train.precision auto: litgpt's own choice (bf16-mixed where supported)
    raw = cfg.to_dict()
    raw["train"]["precision"] = "fp32"
    fp32 = write_export(tmp_path, PretrainConfig.from_dict(raw))
    assert parser.parse_args(["--config", str(fp32)]).precision == "32-true"
    # the same model size: litgpt's rotary positions have no parameters where hpsearch learns ctx x d
    ours = GPT(cfg.model).num_params()
    theirs = sum(p.numel() for p in LitGPT(model).parameters())
    assert theirs == ours - cfg.model.context_len * cfg.model.emb_dim


@needs_litgpt
def test_a_llama_style_export_is_litgpts_llama_with_our_parameters(tmp_path):
    from litgpt.config import Config
    from litgpt.model import GPT as LitGPT

    from trainables.model import GPT

    cfg = config("llama-nano")
    model = yaml.safe_load(write_export(tmp_path, cfg).read_text())["model_config"]
    assert (model["norm_class_name"], model["mlp_class_name"], model["bias"]) == ("RMSNorm", "LLaMAMLP", False)
    assert (model["intermediate_size"], model["rotary_percentage"], model["rope_base"]) == (128, 1.0, 10000)
    lit = LitGPT(Config(**model))
    ours = dict(GPT(cfg.model).named_parameters())
    assert sorted(p.numel() for p in lit.parameters()) == sorted(p.numel() for p in ours.values())


@needs_litgpt
def test_litgpts_data_batches_are_the_trials_batches():
    from trainables.corpus import LitGPTData, WindowLoader, load_tokens, split_tokens

    data = LitGPTData(seed=11)
    data.connect(batch_size=4, max_seq_length=32)
    data.prepare_data()
    train, _ = split_tokens(load_tokens(None, log=None).tokens, 0.9)
    ours = WindowLoader(train, context_len=32, stride=32, batch_size=4, shuffle=True, drop_last=True, seed=11)
    loader = data.train_dataloader()
    for epoch in range(2):  # litgpt re-iterates the loader each epoch; the order follows hpsearch's
        theirs = iter(loader)
        for x, y in list(ours.batches(epoch))[:3]:
            block = next(theirs)
            assert np.array_equal(block[:, :-1], x) and np.array_equal(block[:, 1:], y)


@needs_litgpt
def test_the_tokenizer_dir_gives_litgpt_hpsearchs_token_ids(tmp_path):
    from litgpt import Tokenizer

    from trainables.corpus import get_tokenizer, litgpt_tokenizer_dir, read_documents

    theirs = Tokenizer(litgpt_tokenizer_dir(tmp_path))
    ours = get_tokenizer()
    texts = [t for _, t in read_documents(None)] + [
        "naïve  café—über 123,456.78\t\tand   spaces 東京 预训练大型语言模型 it's we'll\n\n\n  x", " 🙂 \u3000 \xa0end"]
    for text in texts:
        assert theirs.encode(text).tolist() == ours.encode(text), text[:60]
    assert theirs.eos_id == 50256 and not theirs.use_bos and theirs.decode(theirs.encode("every effort")) == "every effort"


@needs_litgpt
@pytest.mark.parametrize("preset", ["nano", "llama-nano"])
def test_litgpt_pretrain_runs_the_export_unchanged(tmp_path, preset):
    """`litgpt pretrain --config FILE`, nothing added: 12 steps on the embedded corpus, hpsearch's LR schedule."""
    from trainables.corpus import litgpt_tokenizer_dir

    cfg = config(preset)
    f = write_export(tmp_path, cfg, tokenizer_dir=str(litgpt_tokenizer_dir(tmp_path / "tok")))
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1"}  # skip torch.compile: minutes on a CPU, no difference here
    run = subprocess.run([sys.executable, "-m", "litgpt", "pretrain", "--config", str(f)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "Final evaluation | val loss" in out
    assert f"Total tokens  : {4 * 32 * 12:,}" in out
    run_dir = tmp_path / "out" / "pretrain" / f"hpsearch-{preset}"
    assert (run_dir / "final" / "lit_model.pth").is_file() and (run_dir / "final" / "tokenizer.json").is_file()
    rows = list(csv.DictReader(open(next(run_dir.glob("logs/csv/version_*/metrics.csv")))))
    lrs = {int(r["iter"]): float(r["learning_rate"]) for r in rows if r.get("learning_rate")}
    t = cfg.train
    expected = [lr_at(s, warmup_steps=3, total_steps=12, initial_lr=0.0, peak_lr=t.peak_lr, min_lr=t.min_lr)
                for s in range(12)]
    assert [lrs[i] for i in range(1, 13)] == pytest.approx(expected)  # litgpt logs iter i with step i-1's LR


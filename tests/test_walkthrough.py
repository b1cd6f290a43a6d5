"""The README's start-to-finish path for a team with its own tokenizer and a Llama-style target, run at test
size with the same commands: sweep a Llama-style μP + CompleteP proxy on the team's tokenizer, export the
winner, run a WSD budget ladder from it, and export for llama-3.2-1b at a token budget."""

import pytest
import yaml

from hpsearch.cli import main
from test_tokenizers import train_bpe
from trainables.config import load_config

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["--eval-freq", "4", "--eval-iter", "1", "--no-dashboard"]


def test_own_tokenizer_llama_proxy_to_a_llama_3_2_1b_config(tmp_path, capsys):
    tok = train_bpe(tmp_path / "tokenizer.json", vocab=512)
    proxy = tmp_path / "proxy.yaml"  # llama-3.2-1b has 32 heads: the proxy keeps them (μP widens at fixed heads)
    proxy.write_text(yaml.safe_dump({
        "model": {"preset": "llama-nano", "emb_dim": 64, "n_heads": 32, "parametrization": "mup",
                  "depth_rule": "completep"},
        "data": {"tokenizer": str(tok)},
        "train": {"max_tokens": 2048, "warmup_fraction": 0.1, "schedule": "wsd"}}))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "lr", "axes": {"peak_lr": {"loguniform": [1e-3, 3e-2]},
                                                            "weight_decay": {"choice": [0.0, 0.1]}}}))
    results = ["--results-dir", str(tmp_path / "results")]
    assert main(["sweep", "--config", str(proxy), "--space", str(space), "--mode", "optuna-asha",
                 "--num-samples", "3", "--name", "team", *results, *QUIET]) == 0
    winner = tmp_path / "winner.yaml"
    assert main(["export", "team", "--out", str(winner), *results]) == 0
    assert main(["scale", "--config", str(winner), "--schedule", "wsd", "--budgets", "1024,2048,4096",
                 "--lrs", "2e-3,8e-3,3.2e-2", "--batch-sizes", "2,4", "--seeds", "0,1", "--name", "team-ladder",
                 *results, *QUIET]) == 0
    target = tmp_path / "target.yaml"
    capsys.readouterr()
    assert main(["export", "team-ladder", "--target-model", "llama-3.2-1b", "--target-tokens", "2e10",
                 "--out", str(target), *results]) == 0
    cfg, tuned = load_config(target), load_config(winner)
    m = cfg.model
    assert (m.emb_dim, m.n_layers, m.n_heads, m.norm, m.mlp, m.positions) == (2048, 16, 32, "rmsnorm", "swiglu", "rope")
    assert (m.vocab_size, m.parametrization, m.base_width, m.depth_rule, m.base_depth) == (512, "mup", 64, "completep", 1)
    assert cfg.data.tokenizer == str(tok) and cfg.train.schedule == "wsd" and cfg.train.max_tokens == 20_000_000_000
    assert cfg.train.weight_decay == tuned.train.weight_decay and cfg.train.cooldowns is None
    side = yaml.safe_load(target.with_name("target.provenance.yaml").read_text())
    assert cfg.train.peak_lr == pytest.approx(side["budget_transfer"]["peak_lr"])
    assert cfg.train.batch_size == side["budget_transfer"]["batch_size"]

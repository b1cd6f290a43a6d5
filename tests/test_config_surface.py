"""The config as users meet it: the README's reference block, dotted overrides on `hpsearch pretrain`,
the sweep's corpus and engine flags, and which settings a search may vary. No Ray here."""

import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import run_cli
from hpsearch.options import SweepOptions
from hpsearch.sweep import plan_sweep
from trainables.config import AXES, PretrainConfig, load_config
from trainables.corpus import load_tokens
from trainables.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_block_lists_every_key_with_its_default():
    text = README.read_text()
    block = re.search(r"```yaml\nmodel: +# a preset, then.*?```", text, re.S).group(0)
    shown = yaml.safe_load(block.removeprefix("```yaml").removesuffix("```"))
    defaults = PretrainConfig().to_dict()
    for section in ("data", "train", "eval"):  # complete, value for value
        assert shown[section] == defaults[section], section
    for key, value in shown["model"].items():
        assert defaults["model"][key] == value, key
    commented = re.findall(r"(\w+):", "".join(re.findall(r"#.*", block)))
    missing = set(defaults["model"]) - set(shown["model"]) - set(commented) - {"base_width", "base_depth", "mup_input_mult",
                                                                                 "mup_output_mult", "mup_zero_readout"}
    assert not missing, f"README's model block does not mention {missing}"


def test_engine_settings_are_never_searched():
    for name in ("device", "precision", "compile", "pad_vocab", "vocab_size"):
        assert name not in AXES
    with pytest.raises(ConfigError, match="unknown hyperparameter 'precision'"):
        PretrainConfig().with_hparams({"precision": "fp32"})


def test_dotted_overrides_are_typed_checked_and_applied(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(["pretrain", "--model.preset", "nano", "--train.peak_lr", "2e-3", "--train.warmup_steps=0",
                         "--max-tokens", "512", "--eval.eval_freq", "4", "--eval.eval_iter", "1",
                         "--data.stride", "null", "--train.compile", "false", "--out", str(out)], capsys)
    assert code == 0, err
    cfg = load_config(out / "config.yaml")
    assert cfg.preset == "nano" and cfg.model.emb_dim == PretrainConfig().with_overrides(
        {"model.preset": "nano"}).model.emb_dim
    assert cfg.train.peak_lr == 2e-3 and cfg.train.warmup_steps == 0 and cfg.data.stride is None
    assert json.loads((out / "metrics.json").read_text())["tokens_seen"] == 512
    steps = {tag: step for tag, step, _ in tensorboard_scalars(out / "tensorboard")}
    assert steps["val_loss"] == 512 and set(steps) >= {"train_loss", "val_loss", "lr"}  # steps are tokens seen


def tensorboard_scalars(directory: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the event files under ``directory`` (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for f in sorted(directory.glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


@pytest.mark.parametrize("argv, message", [
    (["--train.peak_rl", "3"], "unknown key 'train.peak_rl' (did you mean 'train.peak_lr'?)"),
    (["--train.peak_lr", "-1"], "train.peak_lr must be a number > 0, got -1"),
    (["--train.batch_size", "eight"], "train.batch_size must be a positive integer, got 'eight'"),
    (["--train.peak_lr"], "--train.peak_lr needs a value"),
    (["stray"], "unrecognized argument 'stray'"),
])
def test_bad_overrides_are_one_line_errors(argv, message, tmp_path, capsys):
    code, err = run_cli(["pretrain", "--out", str(tmp_path / "x"), *argv], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_other_commands_still_refuse_unknown_flags(capsys):
    code, err = run_cli(["sweep", "--train.peak_lr", "3"], capsys)
    assert code == 2 and "unrecognized arguments: --train.peak_lr 3" in err


def test_sweep_reads_its_corpus_with_the_given_format_field_and_sample(tmp_path):
    docs = tmp_path / "docs.data"  # an extension that says nothing: --data-format decides
    docs.write_text("".join(json.dumps({"body": f"document {i}: " + "the quick brown fox " * 40}) + "\n"
                            for i in range(200)))
    opts = SweepOptions(space="smoke", mode="grid", model="nano", data=str(docs), data_format="jsonl",
                        text_field="body", sample_tokens=4000, sample_seed=3, precision="fp32",
                        checkpoint_minutes=0, results_dir=str(tmp_path / "r"), name="fmt", dashboard=False)
    plan = plan_sweep(opts, log=lambda _: None)
    d = plan.base.data
    assert (d.format, d.text_field, d.sample_tokens, d.sample_seed) == ("jsonl", "body", 4000, 3)
    assert plan.base.train.precision == "fp32" and plan.base.eval.checkpoint_minutes == 0
    direct = load_tokens(docs, format="jsonl", text_field="body", sample_tokens=4000, sample_seed=3, log=None)
    assert len(plan.tokens) == len(direct.tokens) < 200 * 180  # a sample, not the whole file
    assert (plan.tokens == direct.tokens).all()

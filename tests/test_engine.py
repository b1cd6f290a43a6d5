"""The trial engine (issue 19): precision, compile, fused AdamW, padded vocabulary, checkpoint clock."""

import importlib
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import nano_config, straight_and_resumed

import trainables.engine as E
import trainables.pretrain as P
from trainables.config import PretrainConfig
from trainables.errors import ConfigError
from trainables.model import GPT, count_params, preset_config
from trainables.tune_trainable import checkpoint_now

BENCH = Path(__file__).resolve().parents[1] / "bench"


def config(preset="nano", model=None, eval=None, **train):
    base = nano_config(**train).to_dict()
    return PretrainConfig.from_dict({**base, "model": {"preset": preset, **(model or {})},
                                     "eval": {**base["eval"], **(eval or {})}})


# -- precision ----------------------------------------------------------------------------------

def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(E, "cpu_bf16_flags", lambda: ())
    assert E.resolve_precision("auto", cpu) == ("fp32", "auto: CPU has no avx512_bf16/amx_bf16")
    monkeypatch.setattr(E, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert E.resolve_precision("auto", cpu) == ("bf16-mixed", "auto: CPU has avx512_bf16")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert E.resolve_precision("auto", cpu)[0] == "fp32"
    assert E.resolve_precision("bf16-mixed", cpu) == ("bf16-mixed", "set")  # explicit: no detection
    assert E.resolve_precision("fp32", cpu) == ("fp32", "set")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    assert set(E.cpu_bf16_flags()) == flags & {"avx512_bf16", "amx_bf16"}


def test_first_log_line_says_what_auto_resolved_to(embedded_tokens):
    lines = []
    summary = P.pretrain(config(max_tokens=128 * 4), tokens=embedded_tokens, log=lines.append)
    expected, why = E.resolve_precision("auto", torch.device("cpu"))
    assert lines[0].startswith("engine: cpu, ") and f"precision {expected} ({why})" in lines[0]
    assert "compile off" in lines[0] and summary.precision == expected


def test_bf16_loss_curve_stays_within_tolerance_of_fp32(embedded_tokens):
    """bf16-mixed rounds every matmul input to 8 significant bits (relative error 2^-9 = 0.2 %) and
    keeps fp32 weights, accumulation and softmax. Measured on the tiny model, the two curves differ by
    at most 0.0005 nats over these 24 steps (0.003 over 40 steps without dropout) while the loss falls
    by 3. The tolerance, 0.02 nats at every evaluation, is 0.3 % of the loss and under a third of the
    1 % near-optimal band (about 0.07 nats) the searches are judged by (bench/RESULTS.md)."""
    curves = {}
    for precision in ("fp32", "bf16-mixed"):
        cfg = config("tiny", batch_size=4, max_tokens=4 * 64 * 24, warmup_steps=4, precision=precision,
                     eval={"eval_freq": 4, "eval_iter": 4})
        summary = P.pretrain(cfg, tokens=embedded_tokens, log=None)
        assert summary.precision == precision
        curves[precision] = [e["val_loss"] for e in summary.evals]
    fp32, bf16 = curves["fp32"], curves["bf16-mixed"]
    assert len(fp32) == len(bf16) == 6 and fp32[0] - fp32[-1] > 2.0
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) <= 0.02
    assert fp32 != bf16  # bf16 really ran


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_resume_is_exact_in_either_precision(tmp_path, embedded_tokens, precision):
    cfg = config(max_tokens=128 * 12, precision=precision, eval={"checkpoint_freq": 4})
    straight, resumed = straight_and_resumed(cfg, embedded_tokens, tmp_path)
    assert resumed.evals == straight.evals and resumed.precision == precision


@pytest.mark.parametrize("key, value, expect", [
    ("precision", "bf16_mixed", "train.precision must be one of auto, fp32, bf16-mixed, got 'bf16_mixed' "
                          "(did you mean 'bf16-mixed'?)"),
    ("compile", "yes", "train.compile must be true or false, got 'yes'"),
])
def test_bad_engine_settings_are_one_line_config_errors(key, value, expect):
    with pytest.raises(ConfigError) as info:
        PretrainConfig.from_dict({"train": {key: value}})
    assert expect in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"eval.checkpoint_minutes must be a number >= 0, got -1"):
        PretrainConfig.from_dict({"eval": {"checkpoint_minutes": -1}})


# -- optimizer and vocabulary -------------------------------------------------------------------

def test_fused_adamw_is_used_on_cpu_and_steps_like_foreach(embedded_tokens):
    assert E.fused_adamw_supported("cpu")  # torch >= 2.4 has the CPU kernel
    run = P.Run(config(precision="fp32"), embedded_tokens)
    assert all(g["fused"] for g in run.optimizer.param_groups)
    model = GPT(preset_config("nano", dropout=0.0))
    twin = GPT(preset_config("nano", dropout=0.0))
    twin.load_state_dict(model.state_dict())
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, **kw) for m, kw in ((model, {"fused": True}),
                                                                            (twin, {"foreach": True}))]
    x = torch.from_numpy(embedded_tokens[:65].astype("int64")).view(1, 65)
    for _ in range(3):
        for m, opt in zip((model, twin), opts):
            F.cross_entropy(m(x[:, :32]).flatten(0, 1), x[:, 1:33].flatten()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_padded_vocab_gives_the_unpadded_loss_with_the_same_weights(embedded_tokens):
    torch.manual_seed(0)
    plain_cfg = preset_config("nano")
    padded_cfg = replace(plain_cfg, pad_vocab=True)
    assert padded_cfg.padded_vocab == 50304 and plain_cfg.padded_vocab == 50257
    plain, padded = GPT(plain_cfg).eval(), GPT(padded_cfg).eval()
    assert padded.head.weight.shape == (50304, 32) and padded.num_params() == count_params(padded_cfg)
    with torch.no_grad():
        for name, p in padded.named_parameters():
            q = dict(plain.named_parameters())[name]
            p[: q.shape[0]].copy_(q)  # the real rows (and every other tensor) equal; the padding stays random
    x = torch.from_numpy(embedded_tokens[: 4 * 33].astype("int64")).view(4, 33)
    with torch.no_grad():
        logits = padded(x[:, :-1])
        assert logits.shape == (4, 32, 50257)  # sliced before the loss
        loss_padded = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        loss_plain = F.cross_entropy(plain(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
    assert loss_padded.item() == pytest.approx(loss_plain.item(), abs=1e-5)


def test_padded_vocab_trains_and_refuses_an_unpadded_checkpoint(tmp_path, embedded_tokens):
    cfg = config(max_tokens=128 * 4, model={"pad_vocab": True})
    summary = P.pretrain(cfg, tokens=embedded_tokens, out_dir=tmp_path / "run", log=None)
    assert summary.status == "completed"
    with pytest.raises(P.CheckpointError, match="pad_vocab: checkpoint True vs config False"):
        P.Run(config(max_tokens=128 * 4), embedded_tokens).load(tmp_path / "run")


# -- checkpoints --------------------------------------------------------------------------------

def test_checkpoints_follow_the_clock_not_every_evaluation(tmp_path, embedded_tokens, monkeypatch):
    saves = []
    real_save = P.Run.save
    monkeypatch.setattr(P.Run, "save", lambda self, d: saves.append(self.step) or real_save(self, d))
    summary = P.pretrain(config(max_tokens=128 * 12), tokens=embedded_tokens, out_dir=tmp_path / "a", log=None)
    assert saves == [12] and summary.checkpoint_seconds > 0  # default 5 minutes: only the end
    saves.clear()
    P.pretrain(config(max_tokens=128 * 12, eval={"checkpoint_minutes": 1e-9}), tokens=embedded_tokens,
               out_dir=tmp_path / "b", log=None)
    assert saves == [4, 8, 12]  # the clock has run out at every evaluation


def test_trial_checkpoint_rule(embedded_tokens):
    run = P.Run(config(), embedded_tokens)
    going, done = {"training_complete": False}, {"training_complete": True}
    assert checkpoint_now(done, run, 1, 0)
    assert not checkpoint_now(going, run, 5, 0)  # no count rule, clock not run out
    assert checkpoint_now(going, run, 2, 2) and not checkpoint_now(going, run, 1, 2)
    run.last_checkpoint -= 5 * 60 + 1
    assert checkpoint_now(going, run, 1, 0)


# -- the GPU path, on CPU -----------------------------------------------------------------------

def test_gpu_mfu_cpu_check_runs_every_setting(embedded_tokens):
    cache = os.environ.get("HPSEARCH_CACHE_DIR")
    sys.path.insert(0, str(BENCH))
    threads = torch.get_num_threads()
    try:
        gpu_mfu = importlib.import_module("gpu_mfu")
        torch.set_num_threads(1)
        got = gpu_mfu.cpu_check(tokens=embedded_tokens)
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(BENCH))
        if cache is not None:
            os.environ["HPSEARCH_CACHE_DIR"] = cache  # bench/common.py points it at /tmp on import
    assert got["precision"] == "bf16-mixed" and got["compile"] and got["fused_adamw"]
    assert got["padded_vocab"] == 50304 and got["sdpa"] == "flash" and got["tf32"]
    assert got["state_keys_plain"] and got["tokens_per_s"] > 0 and got["final_val_loss"] < 11.5
    assert got["flops_per_token"] == 6 * (count_params(preset_config("nano")) - 50257 * 32 - 32 * 32) + 12 * 32 * 32

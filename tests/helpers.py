"""Small builders shared by test modules (fixtures live in conftest.py)."""

import contextlib


def run_cli(argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``hpsearch ARGV`` in-process; argparse's exits count too."""
    from hpsearch.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


@contextlib.contextmanager
def tmpfs(mnt, size: str):
    """A real small filesystem at ``mnt`` (a tmpfs of ``size``, e.g. '1m'); the test is skipped, with the
    reason, where one cannot be mounted."""
    import subprocess
    import sys

    import pytest

    mnt.mkdir(exist_ok=True)
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs is Linux only")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root or CAP_SYS_ADMIN")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def sweep_options(results_dir, **kw):
    """Options of a quiet grid sweep of nano trials of a few hundred tokens on the smoke space (2x2 LR x batch);
    a test states only what it varies."""
    from hpsearch.options import SweepOptions

    base = dict(space="smoke", mode="grid", model="nano", max_tokens_per_trial=512, eval_freq=2, eval_iter=1,
                results_dir=str(results_dir), dashboard=False, verbose=0)
    return SweepOptions(**{**base, **kw})


def nano_config(**train):
    """A config that trains in a second or two on one CPU core."""
    from trainables.config import PretrainConfig

    base = {"batch_size": 4, "max_tokens": 128 * 12, "peak_lr": 5e-3, "initial_lr": 1e-5,
            "min_lr": 1e-5, "warmup_steps": 2, "seed": 7}
    return PretrainConfig.from_dict({
        "model": {"preset": "nano"},
        "train": {**base, **train},
        "eval": {"eval_freq": 4, "eval_iter": 2},
    })


def straight_and_resumed(cfg, tokens, tmp_path, *, stop_at: int = 8):
    """(summary of an uninterrupted run, summary of the same run stopped at ``stop_at`` and resumed)."""
    import pytest

    from trainables.pretrain import pretrain

    straight = pretrain(cfg, tokens=tokens, out_dir=tmp_path / "a", log=None)

    class Stop(Exception):
        pass

    def stop(metrics, save):
        if metrics["step"] == stop_at:
            raise Stop

    with pytest.raises(Stop):
        pretrain(cfg, tokens=tokens, out_dir=tmp_path / "b", on_eval=stop, log=None)
    return straight, pretrain(cfg, tokens=tokens, out_dir=tmp_path / "b", resume=True, log=None)


LIGHT_PROBE = """
import sys
from hpsearch.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}), code)
"""


def heavy_imports(argv: list[str]) -> tuple[list[str], int]:
    """(which of torch and ray ``hpsearch ARGV`` imported, its exit status), run in a fresh interpreter."""
    import ast
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LIGHT_PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    heavy, code = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    return ast.literal_eval(heavy), int(code)


def with_model(cfg, **model):
    """``cfg`` with model fields overridden (train, data and eval sections kept)."""
    from trainables.config import PretrainConfig

    raw = cfg.to_dict()
    return PretrainConfig.from_dict({**raw, "model": {**raw["model"], **model}})


def coordinate_slopes(make_model, sizes, tokens, watch, *, lr: float = 1e-2, steps: int = 3) -> dict[str, float]:
    """Slope of log2(mean |activation|) against log2(size) after ``steps`` Adam steps at ``lr``.

    ``make_model(size)`` builds the model (vocab 512, context 32); ``watch(model)`` names the modules
    whose outputs are measured. Per size, activations are averaged over 3 seeds (inits), on a batch
    (8 x 32 real tokens mod 512) the model has not trained on. The coordinate check of μP and the depth rules.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from trainables.model import param_groups

    B, T, V = 8, 32, 512
    data = torch.from_numpy(tokens[: (steps + 1) * B * (T + 1)].astype(np.int64) % V).view(steps + 1, B, T + 1)
    means: dict[str, list[float]] = {}
    for size in sizes:
        acts: dict[str, list[float]] = {}
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            model = make_model(size)
            opt = torch.optim.AdamW(param_groups(model, 0.0), lr=lr)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            for s in range(steps):
                loss = F.cross_entropy(model(data[s, :, :-1]).flatten(0, 1), data[s, :, 1:].flatten())
                opt.zero_grad()
                loss.backward()
                opt.step()
            hooks = [m.register_forward_hook(lambda m, i, out, k=k: acts.setdefault(k, []).append(out.abs().mean().item()))
                     for k, m in watch(model).items()]
            with torch.no_grad():
                model(data[steps, :, :-1])
            for h in hooks:
                h.remove()
        for k, v in acts.items():
            means.setdefault(k, []).append(float(np.mean(v)))
    return {k: float(np.polyfit(np.log2(sizes), np.log2(v), 1)[0]) for k, v in means.items()}

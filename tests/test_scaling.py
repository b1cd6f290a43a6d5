"""hpsearch.scaling on synthetic ladders with a planted power law: recovery, CIs, holdout, errors.

No Ray and no training. A ladder's loss is a bowl in log2(LR) and log2(batch tokens) around the
planted optimum eta* = 0.5 C^-0.2, B* = 1.0 C^0.3 (tokens), times (1 + 0.2% noise), on a fixed grid
that does not know where the optimum is (quarter-octave LRs, batch sizes in powers of two).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hpsearch.scaling import (
    MAX_EXTRAPOLATION,
    ScalingError,
    budget_optima,
    compute,
    deepseek_batch_tokens,
    deepseek_lr,
    fit_power_laws,
    flops_per_token,
    holdout,
    near_optimal,
    nearest_loss,
    non_embedding_params,
    plot_scaling,
    seed_noise,
    step_law_batch_tokens,
    step_law_lr,
    target_run,
    tolerance_from_noise,
)
from trainables.errors import HPSearchError
from trainables.model import PRESETS, GPTConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = PRESETS["tiny"]  # 2 layers, d 64, context 64
LR_COEF, LR_EXP = 0.5, -0.2
BT_COEF, BT_EXP = 1.0, 0.3
NOISE = 0.002
TOL = tolerance_from_noise(NOISE)


def planted_lr(c):
    return LR_COEF * c ** LR_EXP


def planted_batch_tokens(c):
    return BT_COEF * c ** BT_EXP


def ladder(budgets, *, repeats: int = 1, seed: int = 0, noise: float = NOISE,
           lr_exps=np.arange(-13, -6 + 1e-9, 0.25), batch_sizes=(16, 32, 64, 128, 256, 512)) -> pd.DataFrame:
    """A full grid at each budget; LR matters 2.5x more per octave than batch size, as in practice."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in budgets:
        c = compute(TINY, d)
        floor = 3.0 + 50.0 / d ** 0.2  # lower loss at larger budgets
        for lr in 2.0 ** np.asarray(lr_exps):
            for bs in batch_sizes:
                bowl = 0.01 * math.log2(lr / planted_lr(c)) ** 2 \
                    + 0.004 * math.log2(bs * TINY.context_len / planted_batch_tokens(c)) ** 2
                for r in range(repeats):
                    rows.append({"budget_tokens": int(d), "peak_lr": lr, "batch_size": bs,
                                 "context_len": TINY.context_len, "seed": r,
                                 "loss": floor * (1 + bowl) * (1 + noise * rng.standard_normal())})
    return pd.DataFrame(rows)


BUDGETS_3 = (10**6, 10**7, 10**8)
BUDGETS_6 = tuple(int(round(x)) for x in np.geomspace(1e6, 1e8, 6))


@pytest.fixture(scope="module")
def big_fit():
    table = ladder(BUDGETS_6, repeats=2, seed=1)
    return table, fit_power_laws(table, tol=TOL, model=TINY, n_boot=400, seed=0)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, HPSearchError)
    return msg


# -- compute and reference laws ---------------------------------------------------------------

def test_flops_per_token_is_deepseeks_m():
    # 72 * 2 * 64^2 + 12 * 2 * 64 * 64 = 589,824 + 98,304
    assert flops_per_token(TINY) == 688_128
    assert compute(TINY, 1000) == 688_128_000
    with pytest.raises(ScalingError, match="tokens"):
        compute(TINY, 0)


def test_non_embedding_params_counts_the_blocks_only():
    from trainables.model import GPT

    cfg = PRESETS["nano"]
    gpt = GPT(cfg)
    expected = sum(p.numel() for name, p in gpt.named_parameters()
                   if not name.startswith(("tok_emb", "pos_emb", "head")))
    assert non_embedding_params(cfg) == expected


def test_non_embedding_params_with_a_tied_head():
    import dataclasses

    from trainables.model import GPT

    if "tie_embeddings" not in {f.name for f in dataclasses.fields(GPTConfig)}:
        pytest.skip("GPTConfig has no tie_embeddings field")
    cfg = dataclasses.replace(PRESETS["nano"], tie_embeddings=True)
    gpt = GPT(cfg)  # a shared tensor is listed once, as tok_emb.weight
    expected = sum(p.numel() for name, p in gpt.named_parameters()
                   if not name.startswith(("tok_emb", "pos_emb", "head")))
    assert non_embedding_params(cfg) == expected == non_embedding_params(PRESETS["nano"])


def test_deepseek_law_reproduces_the_papers_7b_and_67b_settings():
    # DeepSeek LLM table 2: 7B (30 layers, d 4096) and 67B (95 layers, d 8192), context 4096, 2T tokens,
    # trained with LR 4.2e-4 / batch 2304 seqs and 3.2e-4 / 4608 seqs. By hand, 7B:
    # M = 30 * (72 * 4096^2 + 12 * 4096 * 4096) = 4.228e10, C = 8.456e22, C^-0.125 = 1.362e-3.
    m7 = GPTConfig(context_len=4096, emb_dim=4096, n_layers=30, n_heads=32)
    m67 = GPTConfig(context_len=4096, emb_dim=8192, n_layers=95, n_heads=64)
    c7, c67 = compute(m7, 2e12), compute(m67, 2e12)
    assert c7 == pytest.approx(8.456e22, rel=1e-3)
    assert deepseek_lr(c7) == pytest.approx(4.2e-4, rel=0.03)
    assert deepseek_batch_tokens(c7) == pytest.approx(2304 * 4096, rel=0.03)
    assert deepseek_lr(c67) == pytest.approx(3.2e-4, rel=0.03)
    assert deepseek_batch_tokens(c67) == pytest.approx(4608 * 4096, rel=0.10)  # the paper rounded B


def test_step_law_by_hand():
    # N = 1e9, D = 1e11: log10 eta = log10 1.79 - 0.713 * 9 + 0.307 * 11 = 0.25285 - 6.417 + 3.377
    assert step_law_lr(1e9, 1e11) == pytest.approx(10 ** -2.78715, rel=1e-4)  # 1.6325e-3
    # log10 B = log10 0.58 + 0.571 * 11 = -0.23657 + 6.281
    assert step_law_batch_tokens(1e11) == pytest.approx(10 ** 6.04443, rel=1e-4)  # 1.1077e6 tokens


# -- noise and tolerance ----------------------------------------------------------------------

def test_seed_noise_pools_relative_variance_by_hand():
    a, b = [3.0, 3.03], [4.0, 4.04, 3.96]
    sq = sum((x / np.mean(a) - 1) ** 2 for x in a) + sum((x / np.mean(b) - 1) ** 2 for x in b)
    expected = math.sqrt(sq / (1 + 2))
    assert seed_noise({"a": a, "b": b, "single": [5.0]}) == pytest.approx(expected)
    rows = [{"budget_tokens": 100, "peak_lr": 1e-3, "batch_size": 8, "context_len": 64, "seed": i, "loss": v}
            for i, v in enumerate(a)]
    rows += [{"budget_tokens": 200, "peak_lr": 1e-3, "batch_size": 8, "context_len": 64, "seed": i, "loss": v}
             for i, v in enumerate(b)]
    rows += [{**rows[0]}]  # the same seed twice is one run, not a repeat
    rows += [{"budget_tokens": 200, "peak_lr": 2e-3, "batch_size": 8, "context_len": 64, "seed": 0,
              "loss": float("nan")}]
    assert seed_noise(pd.DataFrame(rows)) == pytest.approx(expected)


def test_seed_noise_measures_the_planted_noise():
    assert seed_noise(ladder(BUDGETS_3, repeats=3, seed=4)) == pytest.approx(NOISE, rel=0.1)


def test_seed_noise_without_repeats_says_to_run_them():
    with pytest.raises(ScalingError) as excinfo:
        seed_noise(ladder(BUDGETS_3))
    assert "run repeats" in one_line_error(excinfo)


def test_tolerance_from_noise():
    assert tolerance_from_noise(0.01) == pytest.approx(2 * math.sqrt(2) * 0.01)
    assert tolerance_from_noise(0.01, k=3.0) == pytest.approx(3 * math.sqrt(2) * 0.01)
    with pytest.raises(ScalingError, match="rel_std"):
        tolerance_from_noise(float("nan"))
    with pytest.raises(ScalingError, match="k must"):
        tolerance_from_noise(0.01, k=0)


# -- near-optimal sets ------------------------------------------------------------------------

def hand_table() -> pd.DataFrame:
    rows = [(100, 1e-3, 8, 3.000), (100, 2e-3, 8, 3.005), (100, 4e-3, 16, 3.020), (100, 8e-3, 8, 3.100),
            (200, 1e-3, 8, 2.700), (200, 2e-3, 8, 2.702), (200, 4e-3, 32, 2.7070), (200, 8e-3, 8, float("inf"))]
    return pd.DataFrame(rows, columns=["budget_tokens", "peak_lr", "batch_size", "loss"]).assign(context_len=64)


def test_near_optimal_set_respects_the_tolerance():
    near = near_optimal(hand_table(), tol=0.002)  # 3.0 * 1.002 = 3.006; 2.7 * 1.002 = 2.7054
    assert sorted(near.loc[near.budget_tokens == 100, "loss"]) == [3.000, 3.005]
    assert sorted(near.loc[near.budget_tokens == 200, "loss"]) == [2.700, 2.702]
    near0 = near_optimal(hand_table(), tol=0.0)
    assert list(near0.loss) == [3.0, 2.7]
    assert len(near_optimal(hand_table(), tol=0.5)) == 7  # the infinite loss never counts


def test_budget_optimum_is_the_geometric_mean_of_the_near_set():
    opt = budget_optima(hand_table(), tol=0.002, model=TINY, method="near-optimal").set_index("budget_tokens")
    assert opt.loc[100, "lr_opt"] == pytest.approx(math.sqrt(1e-3 * 2e-3))
    assert opt.loc[100, "batch_tokens_opt"] == pytest.approx(8 * 64)
    assert opt.loc[200, "n_near"] == 2 and opt.loc[200, "n_trials"] == 3
    assert opt.loc[200, "compute"] == compute(TINY, 200)


def test_nearest_loss_takes_the_nearest_grid_point_in_log_space():
    rows = hand_table()[lambda t: t.budget_tokens == 100]
    assert nearest_loss(rows, 1.9e-3, 8 * 64) == 3.005
    assert nearest_loss(rows, 4e-3, 14 * 64) == 3.020  # batch counts as much as LR per octave
    with pytest.raises(ScalingError, match="one budget"):
        nearest_loss(hand_table(), 1e-3, 512)


def bowl(x0: float, y0: float, batch_sizes=(2, 4, 8, 16)) -> pd.DataFrame:
    """One budget whose loss is exactly 3 + (log2 lr - x0)^2 + 0.5 (log2 batch tokens - y0)^2."""
    rows = [{"budget_tokens": 100, "peak_lr": 2.0 ** x, "batch_size": bs, "context_len": 64,
             "loss": 3 + (x - x0) ** 2 + 0.5 * (math.log2(bs * 64) - y0) ** 2}
            for x in (-10, -9, -8, -7, -6) for bs in batch_sizes]
    return pd.DataFrame(rows)


def test_vertex_optimum_is_the_fitted_quadratics_minimum_between_grid_points():
    # the minimum at lr 2^-8.3 and 2^9.6 tokens (batch 12), neither on the grid
    opt = budget_optima(bowl(-8.3, 9.6), tol=0.01, model=TINY, method="vertex").iloc[0]
    assert math.log2(opt["lr_opt"]) == pytest.approx(-8.3, abs=1e-9)
    assert math.log2(opt["batch_tokens_opt"]) == pytest.approx(9.6, abs=1e-9)
    # the near-optimal set sees only grid points: here one, lr 2^-8 with batch 16 (2^10 tokens)
    near = budget_optima(bowl(-8.3, 9.6), tol=0.01, model=TINY, method="near-optimal").iloc[0]
    assert math.log2(near["lr_opt"]) == pytest.approx(-8.0) and math.log2(near["batch_tokens_opt"]) == pytest.approx(10)


def test_vertex_with_two_batch_sizes_picks_one_of_them_and_stays_inside_the_grid():
    # two batch sizes: a quadratic in batch is not identified, so the better of the two is taken
    opt = budget_optima(bowl(-8.3, 7.4, batch_sizes=(2, 4)), tol=0.01, model=TINY, method="vertex").iloc[0]
    assert opt["batch_tokens_opt"] == pytest.approx(128) and math.log2(opt["lr_opt"]) == pytest.approx(-8.3, abs=1e-9)
    # a minimum beyond the grid's largest LR is read on its edge (and the fit's notes say it is not bracketed)
    edge = budget_optima(bowl(-4.0, 9.0), tol=0.01, model=TINY, method="vertex").iloc[0]
    assert edge["lr_opt"] == pytest.approx(2.0 ** -6)
    with pytest.raises(ScalingError, match="near-optimal, vertex"):
        budget_optima(bowl(-8, 9), tol=0.01, model=TINY, method="parabola")


def test_vertex_fit_recovers_the_planted_exponents_with_tighter_intervals_than_the_near_set(big_fit):
    table, fit = big_fit  # the default reading
    near = fit_power_laws(table, tol=TOL, model=TINY, n_boot=400, seed=0, method="near-optimal")
    assert fit.method == "vertex" and "optima by vertex" in fit.summary() and near.method == "near-optimal"
    assert fit.lr.exponent == pytest.approx(LR_EXP, abs=0.01) and fit.batch.exponent == pytest.approx(BT_EXP, abs=0.02)
    assert fit.lr.exponent_ci[0] <= LR_EXP + 0.005 and LR_EXP - 0.005 <= fit.lr.exponent_ci[1]
    width = lambda law: law.exponent_ci[1] - law.exponent_ci[0]  # noqa: E731
    assert width(fit.lr) < width(near.lr) and width(fit.batch) < width(near.batch)


# -- the fit ----------------------------------------------------------------------------------

def test_fit_recovers_the_planted_exponents(big_fit):
    _, fit = big_fit
    assert fit.lr.exponent == pytest.approx(LR_EXP, abs=0.03)
    assert fit.batch.exponent == pytest.approx(BT_EXP, abs=0.05)
    assert fit.lr.exponent_ci[0] < LR_EXP < fit.lr.exponent_ci[1]
    assert fit.batch.exponent_ci[0] < BT_EXP < fit.batch.exponent_ci[1]
    assert fit.lr.coef_ci[0] < LR_COEF < fit.lr.coef_ci[1]
    assert fit.batch.coef_ci[0] < BT_COEF < fit.batch.coef_ci[1]
    c = compute(TINY, 3 * 10**7)
    pred = fit.predict(c)
    assert pred["lr_ci"][0] < planted_lr(c) < pred["lr_ci"][1]
    assert pred["batch_ci"][0] < planted_batch_tokens(c) < pred["batch_ci"][1]
    assert abs(math.log2(pred["lr"] / planted_lr(c))) < 0.25
    assert fit.notes == ()  # a bracketed, 6-budget ladder has nothing to warn about


def test_cis_shrink_with_more_data(big_fit):
    _, big = big_fit
    small = fit_power_laws(ladder(BUDGETS_3, seed=1), tol=TOL, model=TINY, n_boot=400, seed=0)

    def width(ci):
        return ci[1] - ci[0]

    assert width(big.lr.exponent_ci) < width(small.lr.exponent_ci)
    assert width(big.batch.exponent_ci) < width(small.batch.exponent_ci)
    assert small.lr.exponent_ci[0] < LR_EXP < small.lr.exponent_ci[1]


def test_fit_is_reproducible_with_its_seed():
    table = ladder(BUDGETS_3, seed=2)
    a = fit_power_laws(table, tol=TOL, model=TINY, n_boot=100, seed=7)
    b = fit_power_laws(table, tol=TOL, model=TINY, n_boot=100, seed=7)
    assert a.lr.exponent_ci == b.lr.exponent_ci and a.batch.coef_ci == b.batch.coef_ci


def test_fit_notes_two_budgets_and_an_unbracketed_optimum():
    table = ladder((10**6, 10**8), lr_exps=np.arange(-13, -10 + 1e-9, 0.5))  # all LRs below eta*
    fit = fit_power_laws(table, tol=TOL, model=TINY, n_boot=50)
    text = " | ".join(fit.notes)
    assert "only 2 budgets" in text
    assert "largest tried" in text and "widen the range" in text
    assert "only 2 budgets" in fit.summary()


# -- holdout and target -----------------------------------------------------------------------

def test_holdout_predicts_the_planted_optimum_at_the_largest_budget():
    table = ladder(tuple(int(x) for x in np.geomspace(1e6, 1e8, 5)), seed=3)
    h = holdout(table, tol=TOL, model=TINY, n_boot=300)
    c = compute(TINY, 10**8)
    assert h["budget_tokens"] == 1e8 and h["compute"] == c
    # within half an octave of the planted optimum (the grid step is a quarter octave in LR)
    assert abs(math.log2(h["predicted_lr"] / planted_lr(c))) < 0.5
    assert abs(math.log2(h["predicted_batch_tokens"] / planted_batch_tokens(c))) < 0.5
    assert h["lr_octaves"] == pytest.approx(math.log2(h["predicted_lr"] / h["measured_lr"]))
    assert abs(h["lr_octaves"]) < 0.5 and h["lr_within_ci"]
    assert h["loss_gap_source"] == "nearest grid point"
    assert 0 <= h["loss_gap"] <= TOL and h["loss_gap_within_tol"]
    assert h["fit"].largest_compute < c
    real = holdout(table, tol=TOL, model=TINY, n_boot=50, predicted_loss=h["best_loss"] * 1.01)
    assert real["loss_gap"] == pytest.approx(0.01) and real["loss_gap_source"] == "predicted run"
    assert not real["loss_gap_within_tol"]


def test_target_run_warns_beyond_the_extrapolation_limit_only(big_fit):
    _, fit = big_fit
    target = PRESETS["small"]
    largest = fit.largest_compute
    m = flops_per_token(target)
    below = target_run(fit, target_model=target, target_tokens=int(50 * largest / m),
                       largest_budget_compute=largest, warmup_fraction=0.05)
    beyond = target_run(fit, target_model=target, target_tokens=int(2 * MAX_EXTRAPOLATION * largest / m),
                        largest_budget_compute=largest, warmup_fraction=0.05)
    assert below["extrapolation_factor"] == pytest.approx(50, rel=1e-3) and below["warning"] is None
    assert beyond["extrapolation_factor"] == pytest.approx(200, rel=1e-3)
    assert "200x" in beyond["warning"] and "\n" not in beyond["warning"]
    r = below
    assert r["batch_size"] == max(1, round(r["batch_tokens"] / target.context_len))
    assert r["total_steps"] == int(50 * largest / m) // (r["batch_size"] * target.context_len)
    assert r["warmup_steps"] == round(0.05 * r["total_steps"])
    assert r["lr_ci"][0] < r["peak_lr"] < r["lr_ci"][1]
    assert r["batch_size_ci"][0] <= r["batch_size"] <= r["batch_size_ci"][1]
    assert r["notes"] and "compute only" in r["notes"][0]  # small != tiny: another model size
    assert r["reference"]["step_law"]["n_params"] == non_embedding_params(target)
    same = target_run(fit, target_model=TINY, target_tokens=10**9, warmup_fraction=0.0)
    assert same["notes"] == [] and same["warmup_steps"] == 0
    assert same["extrapolation_factor"] == pytest.approx(10**9 / BUDGETS_6[-1])


def test_target_run_rejects_bad_options(big_fit):
    _, fit = big_fit
    with pytest.raises(ScalingError, match="warmup_fraction"):
        target_run(fit, target_model=TINY, target_tokens=10**9, warmup_fraction=1.0)
    with pytest.raises(ScalingError, match="target_tokens"):
        target_run(fit, target_model=TINY, target_tokens=0, warmup_fraction=0.1)


# -- bad input --------------------------------------------------------------------------------

def test_one_budget_is_a_one_line_error():
    with pytest.raises(ScalingError) as excinfo:
        fit_power_laws(ladder((10**6,)), tol=TOL, model=TINY)
    assert "2 or more budgets" in one_line_error(excinfo)


def test_holdout_needs_three_budgets():
    with pytest.raises(ScalingError) as excinfo:
        holdout(ladder((10**6, 10**7)), tol=TOL, model=TINY)
    assert "3 or more budgets" in one_line_error(excinfo)


def test_no_finite_loss_is_a_one_line_error():
    table = ladder(BUDGETS_3).assign(loss=float("nan"))
    with pytest.raises(ScalingError) as excinfo:
        fit_power_laws(table, tol=TOL, model=TINY)
    assert "no finite loss" in one_line_error(excinfo)


def test_missing_column_is_named():
    with pytest.raises(ScalingError) as excinfo:
        fit_power_laws(ladder(BUDGETS_3).drop(columns="context_len"), tol=TOL, model=TINY)
    assert "context_len" in one_line_error(excinfo)


def test_bad_values_and_tolerance_are_named():
    with pytest.raises(ScalingError) as excinfo:
        near_optimal(ladder(BUDGETS_3).assign(peak_lr=-1.0), tol=TOL)
    assert "peak_lr" in one_line_error(excinfo)
    with pytest.raises(ScalingError) as excinfo:
        fit_power_laws(ladder(BUDGETS_3), tol=-0.1, model=TINY)
    assert "tol" in one_line_error(excinfo)


# -- plot -------------------------------------------------------------------------------------

def test_plot_is_written_as_png(big_fit, tmp_path):
    table, fit = big_fit
    path = plot_scaling(table, fit, tmp_path / "scaling.png", model=TINY, tol=TOL)
    assert path == tmp_path / "scaling.png"
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_scale_seeds_are_seed_values_and_one_value_is_refused_by_name():
    """`--seeds` lists seed values everywhere (issue 29 item 11): `scale --seeds 2` is the one seed 2, which
    cannot measure seed noise; the line says so with the value and an example, not 'fewer than 2 seeds'."""
    from hpsearch.scale import ladder_space
    from trainables.errors import SweepError

    with pytest.raises(SweepError) as excinfo:
        ladder_space(budgets=[1000, 2000, 4000], lrs=[1e-3, 2e-3, 4e-3], batch_sizes=[4], seeds=[2],
                     warmup_fraction=0.05)
    msg = str(excinfo.value)
    assert "\n" not in msg and "--seeds takes 2 or more seed values, e.g. 0,1 (got 2)" in msg
    space = ladder_space(budgets=[1000, 2000, 4000], lrs=[1e-3, 2e-3, 4e-3], batch_sizes=[4], seeds=[3, 7],
                         warmup_fraction=0.05)
    assert list(space.axes["seed"].values) == [3, 7]

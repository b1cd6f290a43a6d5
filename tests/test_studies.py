"""The transfer studies end to end on real Ray: width (SP vs μP) and budget (the scaling-law ladder),
and export of their results to a target model and budget."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from hpsearch.cli import main
from helpers import run_cli
from hpsearch.transfer import drift_octaves, interpolated_drift, lr_optima, parabola_optimum
from trainables.config import load_config

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["--model", "nano", "--eval-freq", "4", "--eval-iter", "1", "--no-dashboard"]


@pytest.fixture(scope="module")
def transfer_sweep(tmp_path_factory, ray_session):
    results = tmp_path_factory.mktemp("transfer")
    rc = main(["transfer", "--widths", "32,64", "--lrs", "1e-3,4e-3,1.6e-2", "--max-tokens-per-trial", "4096",
               "--seeds", "0", "--name", "w", "--results-dir", str(results), *QUIET])
    assert rc == 0
    return results


@pytest.fixture(scope="module")
def ladder(tmp_path_factory, ray_session):
    results = tmp_path_factory.mktemp("scale")
    rc = main(["scale", "--budgets", "1024,2048,4096", "--lrs", "2e-3,8e-3,3.2e-2", "--batch-sizes", "2,4",
               "--seeds", "0,1", "--name", "lad", "--results-dir", str(results), *QUIET])
    assert rc == 0
    return results


def test_lr_optima_and_drift_from_a_known_table():
    table = pd.DataFrame({
        "arm": ["sp"] * 9 + ["mup"] * 9,
        "emb_dim": [32, 32, 32, 64, 64, 64, 128, 128, 128] * 2,
        "peak_lr": [1e-3, 2e-3, 4e-3] * 6,
        "loss": [5.0, 4.0, 4.5, 4.2, 4.1, 4.6, 4.1, 4.6, 5.0,   # sp: best 2e-3 at 32 and 64, 1e-3 (edge) at 128
                 5.0, 4.0, 4.5, 4.4, 3.9, 4.0, 5.0, 3.9, 4.4],  # mup: best 2e-3 at every width
    })
    optima = lr_optima(table)
    sp = optima[optima["arm"] == "sp"].set_index("emb_dim")
    assert sp.loc[128, "best_lr"] == 1e-3 and sp.loc[128, "drift_octaves"] == -1.0 and sp.loc[128, "edge"] == "lowest LR"
    drift, undetermined = drift_octaves(optima)
    assert drift["mup"] == 0.0 and "mup" not in undetermined
    # an optimum on the grid's edge is never reported as a drift: it names the LRs to add
    assert math.isnan(drift["sp"]) and undetermined["sp"] == "emb_dim 128: best LR on the grid's lowest LR, add LRs below 0.001"


def test_depth_drift_is_the_largest_over_depths():
    table = pd.DataFrame({
        "arm": ["completep"] * 12, "n_layers": [2] * 4 + [4] * 4 + [8] * 4, "peak_lr": [1e-3, 2e-3, 4e-3, 8e-3] * 3,
        "loss": [5.0, 4.0, 4.5, 4.9, 5.0, 4.5, 4.0, 4.9, 5.0, 4.0, 4.5, 4.9],  # 2e-3, 4e-3, 2e-3
    })
    drift, undetermined = drift_octaves(lr_optima(table))
    assert drift == {"completep": 1.0} and undetermined == {}


def test_interpolated_optimum_is_the_parabolas_vertex_in_log_lr():
    # depth 2: losses symmetric about 2e-3 -> vertex exactly 2e-3; depth 8: y = (x - x*)^2 + 4 in
    # x = log2(lr) with x* = log2(2e-3) + 0.25, sampled at 1e-3, 2e-3, 4e-3 (and 8e-3 far up)
    xs = [math.log2(v) for v in (1e-3, 2e-3, 4e-3, 8e-3)]
    star = math.log2(2e-3) + 0.25
    table = pd.DataFrame({
        "arm": ["completep"] * 8, "n_layers": [2] * 4 + [8] * 4, "peak_lr": [1e-3, 2e-3, 4e-3, 8e-3] * 2,
        "loss": [4.5, 4.0, 4.5, 5.0] + [(x - star) ** 2 + 4 for x in xs],
    })
    optima = lr_optima(table).set_index("n_layers")
    assert optima.loc[2, "interp_lr"] == pytest.approx(2e-3) and optima.loc[8, "best_lr"] == 2e-3
    assert optima.loc[8, "interp_drift_octaves"] == pytest.approx(0.25)
    assert interpolated_drift(lr_optima(table)) == {"completep": pytest.approx(0.25)}
    # the grid's best on its edge, or a diverged neighbour: no vertex, so no interpolated drift
    assert math.isnan(parabola_optimum(np.array([1e-3, 2e-3, 4e-3]), np.array([4.0, 4.5, 5.0])))
    assert math.isnan(parabola_optimum(np.array([1e-3, 2e-3, 4e-3]), np.array([4.5, 4.0, math.inf])))
    # a tie between the best and its upper neighbour: the vertex is halfway between them
    assert parabola_optimum(np.array([1e-3, 2e-3, 4e-3]), np.array([4.5, 4.0, 4.0])) == pytest.approx(2e-3 * 2 ** 0.5)


def test_width_study_is_one_grid_sweep_with_a_table_and_a_plot(transfer_sweep):
    d = transfer_sweep / "w"
    trials = pd.read_parquet(d / "trials.parquet")
    assert len(trials) == 12 and set(trials["status"]) == {"completed"}
    assert set(zip(trials["parametrization"], trials["emb_dim"])) == {("sp", 32), ("sp", 64), ("mup", 32), ("mup", 64)}
    table = pd.read_csv(d / "transfer.csv")
    assert len(table) == 12 and table["loss"].map(math.isfinite).all()
    record = json.loads((d / "transfer.json").read_text())
    assert set(record["lr_drift_octaves"]) == {"sp", "mup"} and record["seeds"] == 1
    # the drift is the distance, in octaves, between the best LRs of the narrowest and widest width,
    # or null with the LRs to add where an optimum sits on the grid's edge
    lrs = sorted(table["peak_lr"].unique())
    for p, octaves in record["lr_drift_octaves"].items():
        best = table[table["parametrization"] == p].loc[lambda t: t.groupby("emb_dim")["loss"].idxmin()]
        if set(best["peak_lr"]) & {lrs[0], lrs[-1]}:
            assert octaves is None and "add LRs" in record["undetermined"][p]
        else:
            assert octaves == pytest.approx(abs(math.log2(best["peak_lr"].iloc[-1] / best["peak_lr"].iloc[0])))
    assert (d / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mup_trial_exports_to_a_wider_model_and_sp_is_refused(transfer_sweep, tmp_path, capsys):
    trials = pd.read_parquet(transfer_sweep / "w" / "trials.parquet")
    mup = trials[(trials["parametrization"] == "mup") & (trials["emb_dim"] == 32)].iloc[0]
    sp = trials[(trials["parametrization"] == "sp") & (trials["emb_dim"] == 32)].iloc[0]
    where = ["--results-dir", str(transfer_sweep)]
    out = tmp_path / "wide.yaml"
    assert main(["export", "w", *where, "--trial", mup["trial_id"], "--target-width", "256", "--out", str(out)]) == 0
    cfg = load_config(out)
    assert (cfg.model.emb_dim, cfg.model.base_width, cfg.model.parametrization) == (256, 32, "mup")
    assert cfg.model.width_mult == 8 and cfg.train.peak_lr == pytest.approx(mup["peak_lr"])
    side = yaml.safe_load(out.with_name("wide.provenance.yaml").read_text())
    assert side["shape_transfer"]["width_mult"] == 8.0 and side["trial"] == mup["trial_id"]

    capsys.readouterr()
    assert main(["export", "w", *where, "--trial", sp["trial_id"], "--target-width", "256",
                 "--out", str(tmp_path / "sp.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not transfer" in err and "mup" in err
    assert main(["export", "w", *where, "--trial", mup["trial_id"], "--format", "litgpt",
                 "--out", str(tmp_path / "lit.yaml")]) == 2
    assert "litgpt cannot express μP" in capsys.readouterr().err
    assert not (tmp_path / "sp.yaml").exists() and not (tmp_path / "lit.yaml").exists()


def test_ladder_fits_verifies_and_exports_to_a_target_budget(ladder, tmp_path, capsys):
    d = ladder / "lad"
    trials = pd.read_parquet(d / "trials.parquet")
    assert len(trials) == 3 * 3 * 2 * 2
    # every run's schedule is fitted to its own budget
    done = trials[trials["status"] == "completed"]
    assert (done["tokens_seen"] <= done["max_tokens"]).all()
    assert (done["tokens_seen"] > done["max_tokens"] - done["batch_size"] * 32).all()
    record = json.loads((d / "scaling.json").read_text())
    assert record["seed_noise_rel_std"] > 0 and record["tolerance"] > record["seed_noise_rel_std"]
    assert math.isfinite(record["fit"]["lr"]["exponent"]) and math.isfinite(record["fit"]["batch_tokens"]["exponent"])
    held = record["holdout"]
    assert record["optimum"] == "vertex"  # the default reading of each budget's optimum
    verify = pd.read_parquet(ladder / "lad-verify-vertex" / "trials.parquet")
    assert held["budget_tokens"] == 4096 and len(verify) == 2  # the predicted config, over the ladder's seeds
    assert held["predicted_loss"] == pytest.approx(verify["final_val_loss"].mean())
    assert held["scaling_law_loss_gap"] == pytest.approx(
        (held["predicted_loss"] - held["grid_best_loss_seed_mean"]) / held["grid_best_loss_seed_mean"])
    assert (d / "scaling.png").read_bytes()[:4] == b"\x89PNG"

    out = tmp_path / "target.yaml"
    capsys.readouterr()
    assert main(["export", "lad", "--results-dir", str(ladder), "--target-tokens", "1M", "--out", str(out)]) == 0
    assert "beyond 100x" in capsys.readouterr().out  # 1M tokens is far past a 4k-token ladder
    cfg = load_config(out)
    side = yaml.safe_load(out.with_name("target.provenance.yaml").read_text())["budget_transfer"]
    assert cfg.train.max_tokens == 1_000_000 and cfg.train.peak_lr == pytest.approx(side["peak_lr"])
    assert cfg.train.batch_size == side["batch_size"] and cfg.train.warmup_steps == side["warmup_steps"]
    assert side["lr_ci"][0] <= side["peak_lr"] <= side["lr_ci"][1] and side["extrapolation_factor"] > 100


def test_a_wsd_ladder_trains_one_run_per_point_and_fits_from_its_branches(ladder, tmp_path, capsys):
    """The same grid as the cosine ladder, --schedule wsd: one run per (LR, batch, seed) to 4,096 tokens,
    cooldown branches at 1,024 and 2,048 feed the fit; it trains (4096 + 0.2 (1024 + 2048)) / 7168 = 0.66
    of the cosine ladder's tokens; verification and export stay WSD, without the ladder's branches."""
    assert main(["scale", "--schedule", "wsd", "--budgets", "1024,2048,4096", "--lrs", "2e-3,8e-3,3.2e-2",
                 "--batch-sizes", "2,4", "--seeds", "0,1", "--name", "wsd", "--results-dir", str(tmp_path), *QUIET]) == 0
    trials = pd.read_parquet(tmp_path / "wsd" / "trials.parquet")
    curves = pd.read_parquet(tmp_path / "wsd" / "curves.parquet")
    assert len(trials) == 3 * 2 * 2 and (trials["status"] == "completed").all()
    branches = curves.dropna(subset=["cooldown_tokens"])
    assert sorted(branches.groupby("trial_id")["cooldown_tokens"].apply(sorted).map(tuple).unique()) == [(1024, 2048)]
    table = pd.read_csv(tmp_path / "wsd" / "scaling.csv")
    assert table.groupby("budget_tokens").size().to_dict() == {1024: 12, 2048: 12, 4096: 12}
    assert set(table.loc[table["budget_tokens"] < 4096, "loss"]) == set(branches["cooldown_val_loss"])
    wsd_record = json.loads((tmp_path / "wsd" / "scaling.json").read_text())
    cosine_record = json.loads((ladder / "lad" / "scaling.json").read_text())
    assert wsd_record["schedule"] == "wsd" and cosine_record["schedule"] == "cosine"
    assert 0.6 < wsd_record["ladder_tokens"] / cosine_record["ladder_tokens"] < 0.7
    verify = json.loads((tmp_path / "wsd-verify-vertex" / "sweep.json").read_text())["base_config"]["train"]
    assert verify["schedule"] == "wsd" and not verify["cooldowns"]
    assert verify["warmup_steps"] == wsd_record["warmup_steps"] and math.isfinite(wsd_record["holdout"]["loss_gap"])
    out = tmp_path / "target.yaml"
    assert main(["export", "wsd", "--results-dir", str(tmp_path), "--target-tokens", "1M", "--out", str(out)]) == 0
    cfg = load_config(out)
    assert (cfg.train.schedule, cfg.train.decay_fraction, cfg.train.decay_shape, cfg.train.cooldowns) == \
        ("wsd", 0.2, "1-sqrt", None)


def test_a_finished_ladder_is_refitted_by_the_near_optimal_set_on_resume(ladder, tmp_path, capsys):
    """--resume --optimum near-optimal trains nothing new in the ladder: it refits scaling.csv, verifies the
    new prediction in its own sweep (lad-verify, the vertex's lad-verify-vertex kept) and exports from it."""
    before = pd.read_parquet(ladder / "lad" / "trials.parquet")
    first = json.loads((ladder / "lad" / "scaling.json").read_text())
    assert first["optimum"] == "vertex"
    # none of the ladder's flags (--model nano, --eval-freq ...): the verification trains the ladder's own config
    assert main(["scale", "--name", "lad", "--resume", "--optimum", "near-optimal", "--results-dir", str(ladder),
                 "--no-dashboard"]) == 0
    assert pd.read_parquet(ladder / "lad" / "trials.parquet")["trial_id"].tolist() == before["trial_id"].tolist()
    record = json.loads((ladder / "lad" / "scaling.json").read_text())
    held = record["holdout"]
    assert record["optimum"] == "near-optimal" and held["verify_sweep"] == "lad-verify"
    verify = pd.read_parquet(ladder / "lad-verify" / "trials.parquet")
    assert len(verify) == 2 and held["predicted_loss"] == pytest.approx(verify["final_val_loss"].mean())
    fixed = json.loads((ladder / "lad-verify" / "sweep.json").read_text())["space"]["fixed"]
    assert fixed["peak_lr"] == pytest.approx(held["predicted_lr"], rel=1e-6)
    assert (ladder / "lad-verify-vertex" / "trials.parquet").is_file()
    ladder_base = json.loads((ladder / "lad" / "sweep.json").read_text())["base_config"]
    verify_base = json.loads((ladder / "lad-verify" / "sweep.json").read_text())["base_config"]
    assert verify_base["model"] == ladder_base["model"] and verify_base["eval"] == ladder_base["eval"]
    assert verify_base["data"] == ladder_base["data"] and not verify_base["train"]["cooldowns"]
    # the vertex fit had read every optimum inside the grid the ladder tried, in LR and in batch tokens
    for o in first["fit"]["optima"]:
        inside = lambda v, lo, hi: lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)  # noqa: E731  (exp(log) round-off)
        assert inside(o["lr_opt"], 2e-3, 3.2e-2) and inside(o["batch_tokens_opt"], 2 * 32, 4 * 32)
    out = tmp_path / "target.yaml"
    assert main(["export", "lad", "--results-dir", str(ladder), "--target-tokens", "1M", "--out", str(out)]) == 0
    side = yaml.safe_load(out.with_name("target.provenance.yaml").read_text())["budget_transfer"]
    assert load_config(out).train.peak_lr == pytest.approx(side["peak_lr"])
    # a resume without --optimum keeps the reading the ladder was last fitted with
    assert main(["scale", "--name", "lad", "--resume", "--results-dir", str(ladder), "--no-dashboard"]) == 0
    assert json.loads((ladder / "lad" / "scaling.json").read_text())["optimum"] == "near-optimal"
    capsys.readouterr()
    code, err = run_cli(["scale", "--name", "lad", "--resume", "--optimum", "mean", "--results-dir", str(ladder)], capsys)
    assert code == 2 and "--optimum" in err and "vertex" in err


def test_target_tokens_needs_a_ladder(transfer_sweep, tmp_path, capsys):
    assert main(["export", "w", "--results-dir", str(transfer_sweep), "--target-tokens", "10B",
                 "--out", str(tmp_path / "x.yaml")]) == 2
    assert "budget ladder" in capsys.readouterr().err

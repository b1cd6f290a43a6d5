"""Search spaces: built-ins, YAML validation, and conversion to Ray Tune / Optuna param spaces."""

from __future__ import annotations

import math
import textwrap

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Float, Integer

from search_spaces import (
    Choice,
    Grid,
    IntRange,
    LogUniform,
    Space,
    Uniform,
    builtin_spaces,
    get_space,
    load_space,
    parse_space,
)
from search_spaces.checks import axis_type
from trainables.config import AXES
from trainables.errors import SpaceError

SEED_GRID = {
    "batch_size": [2, 4, 8, 16],
    "dropout": [0.0, 0.1, 0.2],
    "warmup_steps": [10, 20, 30],
    "weight_decay": [0.1, 0.01, 0.0],
    "max_norm": [1.0, 0.5, 2.0],
    "peak_lr": [1e-4, 5e-4, 1e-3, 5e-3],
    "initial_lr": [5e-5, 1e-4],
    "min_lr": [5e-5, 1e-5, 1e-4],
    "num_epochs": [5, 10, 15, 20, 25],
}
SAMPLING_MODES = ("random", "optuna-asha", "quasi-random")


def write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def space_error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def axes_error(tmp_path, axes: str, fixed: str = "") -> str:
    return space_error(tmp_path, f"name: t\naxes:\n{axes}\n{fixed}")


# -- built-ins ------------------------------------------------------------------------------------


def test_builtins_are_sorted_and_named_after_their_files():
    names = [s.name for s in builtin_spaces()]
    assert names == sorted(names)
    assert {"seed-grid", "seed-continuous", "demo", "smoke"} <= set(names)
    assert all(s.source == "built-in" and s.description for s in builtin_spaces())


def test_seed_grid_is_the_source_grid():
    space = get_space("seed-grid")
    assert space.grid_size() == 38_880 == math.prod(len(v) for v in SEED_GRID.values())
    assert list(space.axes) == list(SEED_GRID)
    assert all(isinstance(d, Grid) for d in space.axes.values())
    tune_space = space.to_tune("grid")
    assert {axis: domain["grid_search"] for axis, domain in tune_space.items()} == SEED_GRID
    assert "38,880 configurations" in space.describe() and "grid" in space.describe()


def test_seed_continuous_covers_the_same_axes():
    space = get_space("seed-continuous")
    assert set(space.axes) == set(SEED_GRID)
    assert not space.is_discrete() and space.grid_size() is None
    assert space.axes["peak_lr"] == LogUniform(1e-4, 5e-3)
    assert space.axes["weight_decay"] == LogUniform(1e-3, 0.1)
    assert space.axes["dropout"] == Uniform(0.0, 0.2)
    assert space.axes["warmup_steps"] == IntRange(10, 30)
    assert space.axes["num_epochs"] == IntRange(5, 25)
    assert space.axes["batch_size"] == Choice((2, 4, 8, 16))
    assert space.description == ("the seed grid's ranges, continuous (weight_decay log-scale, so it cannot "
                                 "include 0)")
    assert "9 dimensions (4 loguniform, 2 uniform, 2 int, 1 choice)" in space.describe()


def test_seed_continuous_reaches_optuna_with_its_exact_bounds():
    """What Optuna samples from: log scale where the file says loguniform, int bounds inclusive."""
    converted = OptunaSearch.convert_search_space(get_space("seed-continuous").to_tune("optuna-asha"))
    assert converted == {
        "peak_lr": FloatDistribution(1e-4, 5e-3, log=True),
        "initial_lr": FloatDistribution(5e-5, 1e-4, log=True),
        "min_lr": FloatDistribution(1e-5, 1e-4, log=True),
        "weight_decay": FloatDistribution(1e-3, 0.1, log=True),
        "dropout": FloatDistribution(0.0, 0.2),
        "warmup_steps": IntDistribution(10, 30),
        "max_norm": FloatDistribution(0.5, 2.0),
        "batch_size": CategoricalDistribution((2, 4, 8, 16)),
        "num_epochs": IntDistribution(5, 25),
    }
    assert list(converted) == list(get_space("seed-continuous").axes)


def test_demo_and_smoke():
    demo, smoke = get_space("demo"), get_space("smoke")
    assert demo.fixed == {"max_tokens": 16384, "min_lr": 1e-5, "initial_lr": 1e-5}
    assert demo.axes["peak_lr"] == LogUniform(1e-4, 1e-2)
    assert smoke.grid_size() == 4
    assert smoke.fixed == {"warmup_steps": 2, "initial_lr": 1e-5, "min_lr": 1e-5}
    # the axes and nothing else: fixed values reach trials through the base config, not the param space
    assert smoke.to_tune("grid") == {"peak_lr": {"grid_search": [5e-4, 5e-3]}, "batch_size": {"grid_search": [4, 8]}}
    assert OptunaSearch.convert_search_space(demo.to_tune("optuna-asha")) == {
        "peak_lr": FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution((4, 8, 16)),
        "dropout": CategoricalDistribution((0.0, 0.1)),
        "weight_decay": CategoricalDistribution((0.0, 0.1)),
        "warmup_steps": CategoricalDistribution((5, 10, 20)),
    }


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
def test_builtins_round_trip(space: Space):
    again = parse_space(space.to_dict(), space.source)
    assert again == space and list(again.axes) == list(space.axes)
    for dist in space.to_dict()["axes"].values():
        ((_, values),) = dist.items()
        assert all(type(v) in (int, float, bool) for v in values)


def sampled_from(domain) -> tuple:
    """A Tune domain as what a trial can be given: (kind, scale, low, high) or ("choice", values)."""
    if isinstance(domain, Categorical):
        return ("choice", list(domain.categories))
    scale = {Float._LogUniform: "log", Float._Uniform: "linear", Integer._Uniform: "linear"}[type(domain.get_sampler())]
    return (type(domain).__name__, scale, domain.lower, domain.upper)


def declared(dist) -> tuple:
    """The same, from the space's declaration (Tune's integer upper bound is exclusive)."""
    if isinstance(dist, (Grid, Choice)):
        return ("choice", list(dist.values))
    return {Uniform: ("Float", "linear", dist.low, dist.high), LogUniform: ("Float", "log", dist.low, dist.high),
            IntRange: ("Integer", "linear", dist.low, dist.high + 1)}[type(dist)]


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_sampling_modes_sample_exactly_the_declared_ranges(space: Space, mode: str):
    tune_space = space.to_tune(mode)  # no grid_search: Optuna and the samplers reject it
    assert {axis: sampled_from(domain) for axis, domain in tune_space.items()} == \
        {axis: declared(dist) for axis, dist in space.axes.items()}
    assert list(tune_space) == list(space.axes)


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
def test_optuna_search_accepts_converted_space(space: Space):
    searcher = OptunaSearch(space=None, metric="m", mode="min")
    assert searcher.set_search_properties("m", "min", space.to_tune("optuna-asha")) is True
    config = searcher.suggest("t1")
    assert list(config) == list(space.axes)
    for axis, dist in space.axes.items():
        value = config[axis]
        if dist.discrete:
            assert value in dist.values, (axis, value)
        else:
            assert dist.low <= value <= dist.high and (type(value) is int) == isinstance(dist, IntRange), (axis, value)


# -- conversion -----------------------------------------------------------------------------------


def test_grid_mode_rejects_continuous_axes():
    with pytest.raises(SpaceError, match=r"space 'seed-continuous': axis 'peak_lr' is loguniform.*optuna-asha"):
        get_space("seed-continuous").to_tune("grid")


def test_choice_axes_enumerate_in_grid_mode():
    space = Space("c", "", {"batch_size": Choice((4, 8))})
    assert space.to_tune("grid") == {"batch_size": {"grid_search": [4, 8]}}
    assert "discrete, 2 configurations, 1 axis" in space.describe()


def test_unknown_mode_lists_modes():
    with pytest.raises(SpaceError, match=r"unknown mode 'optuna'.*optuna-asha"):
        get_space("smoke").to_tune("optuna")


def test_int_range_is_inclusive():
    domain = Space("i", "", {"warmup_steps": IntRange(10, 30)}).to_tune("random")["warmup_steps"]
    assert isinstance(domain, Integer) and (domain.lower, domain.upper) == (10, 31)
    assert {domain.sample() for _ in range(500)} == set(range(10, 31))


# -- YAML files -----------------------------------------------------------------------------------


def test_load_space_converts_values(tmp_path):
    path = write(tmp_path, """\
        axes:
          peak_lr: {loguniform: [1e-4, 1.0e-2]}
          weight_decay: {grid: [0, 1e-2]}
          warmup_steps: {int: [0, 1]}
          qkv_bias: {choice: [false, true]}
        fixed:
          initial_lr: 1e-5
          num_epochs: 2
        """, name="mine.yaml")
    space = get_space(str(path))
    assert space.name == "mine" and space.source == str(path)
    assert space.axes["peak_lr"] == LogUniform(1e-4, 1e-2)
    assert space.axes["weight_decay"].values == (0.0, 0.01)
    assert all(type(v) is float for v in space.axes["weight_decay"].values)
    assert space.axes["qkv_bias"] == Choice((False, True))
    assert space.fixed == {"initial_lr": 1e-5, "num_epochs": 2}
    assert parse_space(space.to_dict(), space.source) == space


@pytest.mark.parametrize(
    ("axes", "culprits"),
    [
        ("  peak_rl: {loguniform: [1.0e-4, 1.0e-2]}", ["unknown axis 'peak_rl' (did you mean 'peak_lr'?)"]),
        ("  colour: {grid: [1, 2]}", ["unknown axis 'colour'", "peak_lr"]),
        ("  batch_size: [4, 8]", ["axis 'batch_size' must be a one-key mapping"]),
        ("  batch_size: {grid: [4], choice: [8]}", ["axis 'batch_size' must be a one-key mapping"]),
        ("  peak_lr: {logunifrom: [1.0e-4, 1.0e-2]}", ["unknown distribution 'logunifrom'", "'loguniform'?"]),
        ("  batch_size: {grid: []}", ["axis 'batch_size': grid needs a non-empty list"]),
        ("  batch_size: {choice: 8}", ["axis 'batch_size': choice needs a non-empty list"]),
        ("  batch_size: {grid: [4, 8, 4]}", ["axis 'batch_size': grid has duplicate values 4"]),
        ("  weight_decay: {choice: [0, 0.0]}", ["axis 'weight_decay': choice has duplicate values 0.0"]),
        ("  peak_lr: {uniform: [1.0e-4]}", ["axis 'peak_lr': uniform needs two numbers"]),
        ("  peak_lr: {uniform: [a, b]}", ["axis 'peak_lr': uniform needs two numbers"]),
        ("  warmup_steps: {int: [1.5, 3]}", ["axis 'warmup_steps': int needs two integers"]),
        ("  dropout: {uniform: [0.2, 0.1]}", ["axis 'dropout'", "`low < high` must hold, but got (low=0.2, high=0.1)"]),
        ("  warmup_steps: {int: [5, 5]}", ["axis 'warmup_steps'", "(low=5, high=5)"]),
        ("  weight_decay: {loguniform: [0.0, 0.1]}", ["axis 'weight_decay': loguniform bounds must be > 0"]),
        ("  batch_size: {grid: [2.5]}", ["axis 'batch_size': grid value 2.5 is not an integer"]),
        ("  batch_size: {grid: [a]}", ["axis 'batch_size': grid value 'a' is not an integer"]),
        ("  batch_size: {grid: [true]}", ["axis 'batch_size': grid value True is not an integer"]),
        ("  dropout: {choice: [true]}", ["axis 'dropout': choice value True is not a number"]),
        ("  peak_lr: {grid: [fast]}", ["axis 'peak_lr': grid value 'fast' is not a number"]),
        ("  qkv_bias: {grid: [0, 1]}", ["axis 'qkv_bias': grid value 0 is not a boolean"]),
        ("  qkv_bias: {uniform: [0, 1]}", ["axis 'qkv_bias': uniform cannot vary a boolean"]),
        ("  batch_size: {uniform: [2, 16]}", ["axis 'batch_size': uniform draws floats", "{int: [low, high]}"]),
        ("  batch_size: {loguniform: [2, 16]}", ["axis 'batch_size': loguniform draws floats"]),
    ],
)
def test_bad_axis_is_named(tmp_path, axes, culprits):
    message = axes_error(tmp_path, axes)
    for culprit in culprits:
        assert culprit in message


@pytest.mark.parametrize(
    ("text", "culprits"),
    [
        ("axes: [", ["not valid YAML ("]),
        ("- 1\n- 2\n", ["expected a mapping", "got list"]),
        ("name: t\naxes: {peak_lr: {grid: [1.0e-3]}}\nfixd: {}", ["unknown top-level key 'fixd' (did you mean 'fixed'?)"]),
        ("name: t\n", ["'axes' must be a non-empty mapping"]),
        ("name: t\naxes: {}", ["'axes' must be a non-empty mapping"]),
        ("name: t\naxes: [peak_lr]", ["'axes' must be a non-empty mapping"]),
        ("name: [t]\naxes: {peak_lr: {grid: [1.0e-3]}}", ["'name' must be a non-empty string"]),
        ("axes: {peak_lr: {grid: [1.0e-3]}}\nfixed: {peak_lr: 1.0e-3}", ["'peak_lr' is both an axis and fixed"]),
        ("axes: {peak_lr: {grid: [1.0e-3]}}\nfixed: {num_epoch: 2}", ["unknown fixed key 'num_epoch' (did you mean 'num_epochs'?)"]),
        ("axes: {peak_lr: {grid: [1.0e-3]}}\nfixed: {num_epochs: 2.5}", ["fixed 'num_epochs': 2.5 is not an integer"]),
        ("axes: {peak_lr: {grid: [1.0e-3]}}\nfixed: [num_epochs]", ["'fixed' must be a mapping"]),
    ],
)
def test_bad_file_is_named(tmp_path, text, culprits):
    message = space_error(tmp_path, text)
    for culprit in culprits:
        assert culprit in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = axes_error(tmp_path, "  peak_rl: {grid: [1]}\n  dropout: {uniform: [0.2, 0.1]}",
                         "fixed: {batch_size: x}")
    assert message.count(";") >= 2
    assert all(c in message for c in ("'peak_rl'", "'dropout'", "fixed 'batch_size'"))


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="nope.yaml does not exist; pass an existing YAML space file"):
        get_space(str(tmp_path / "nope.yaml"))


def test_unknown_builtin_lists_and_suggests():
    with pytest.raises(SpaceError) as info:
        get_space("seed-gird")
    message = str(info.value)
    assert "(did you mean 'seed-grid'?)" in message
    assert all(s.name in message for s in builtin_spaces())


def test_nullable_axes_take_ints_or_null():
    space = parse_space({"name": "n", "axes": {"stride": {"grid": [None, 16]}}, "fixed": {"max_tokens": 1000}})
    assert space.axes["stride"] == Grid((None, 16)) and space.fixed == {"max_tokens": 1000}


def test_every_axis_name_is_accepted():
    # a value of the axis's own type (an int for a float axis, widened) comes back as exactly that
    # (the first of 1, 0 and the axis's default that the config accepts: dropout 1 or train_ratio 0 is refused)
    from search_spaces.checks import value_problems
    from trainables.config import PretrainConfig

    defaults = PretrainConfig().hparams()
    for axis in AXES:
        want = axis_type(axis)
        if want is list:  # train.cooldowns: a list, set under fixed, never searched
            with pytest.raises(SpaceError, match=f"{axis} takes a list, which is set under fixed:, not searched"):
                parse_space({"name": "a", "axes": {axis: {"grid": [[1000]]}}})
            assert parse_space({"name": "a", "axes": {"seed": {"grid": [0, 1]}}, "fixed": {axis: [1000]}}).fixed[axis] == [1000]
            continue
        if axis == "eval_batch_size":  # the windows every trial is scored on: fixed, never searched
            with pytest.raises(SpaceError, match="eval_batch_size sets the validation windows every trial is scored "
                                                 "on, so trials that differ in it cannot be compared; set it under "
                                                 "fixed:, not as an axis"):
                parse_space({"name": "a", "axes": {axis: {"grid": [4, 8]}}})
            assert parse_space({"name": "a", "axes": {"seed": {"grid": [0, 1]}}, "fixed": {axis: 8}}).fixed[axis] == 8
            continue
        candidates = [True] if want is bool else [defaults[axis] or "x"] if want is str else [1, 0, defaults[axis]]
        written = next(v for v in candidates if v is not None and not value_problems(axis, v))
        (value,) = parse_space({"name": "a", "axes": {axis: {"grid": [written]}}}).axes[axis].values
        assert type(value) is want and value == want(written), (axis, value)


def test_import_has_no_ray_side_effect():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, search_spaces; search_spaces.builtin_spaces(); assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("axes, expect", [
    ({"batch_size": {"grid": [4, -4, 0]}}, "axis 'batch_size': grid value -4: train.batch_size must be a positive "
                                           "integer, got -4; axis 'batch_size': grid value 0:"),
    ({"dropout": {"grid": [-0.5, 1.5]}}, "axis 'dropout': grid value -0.5: model.dropout must be in [0, 1), got -0.5"),
    ({"dropout": {"uniform": [0.0, 1.0]}}, "axis 'dropout': uniform bound 1.0: model.dropout must be in [0, 1), got 1.0"),
    ({"depth_rule": {"grid": ["completep", "complete"]}}, "model.depth_rule must be one of none, completep, depth-mup"),
])
def test_axis_values_are_checked_like_fixed_values(axes, expect):
    with pytest.raises(SpaceError) as info:
        parse_space({"name": "bad", "axes": axes}, source="bad.yaml")
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_rules_between_fields_are_left_to_the_trial():
    # min_lr above the default peak_lr, an emb_dim the default heads do not divide: other axes may fix them
    space = parse_space({"name": "ok", "axes": {"min_lr": {"grid": [1e-3]}, "emb_dim": {"grid": [30, 64]}}}, source="ok")
    assert set(space.axes) == {"min_lr", "emb_dim"}

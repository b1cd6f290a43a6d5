"""Search spaces: built-ins, YAML validation, and conversion to Ray Tune / Optuna param spaces."""

from __future__ import annotations

import math
import textwrap

import pytest
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
    assert "0" in space.description
    assert "9 dimensions (4 loguniform, 2 uniform, 2 int, 1 choice)" in space.describe()


def test_demo_and_smoke():
    demo, smoke = get_space("demo"), get_space("smoke")
    assert demo.fixed == {"max_tokens": 16384, "min_lr": 1e-5, "initial_lr": 1e-5}
    assert demo.axes["peak_lr"] == LogUniform(1e-4, 1e-2)
    assert smoke.grid_size() == 4
    assert smoke.fixed == {"warmup_steps": 2, "initial_lr": 1e-5, "min_lr": 1e-5}
    assert "fixed" not in smoke.to_tune("grid")


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
def test_builtins_round_trip(space: Space):
    again = parse_space(space.to_dict(), space.source)
    assert again == space and list(again.axes) == list(space.axes)
    for dist in space.to_dict()["axes"].values():
        ((_, values),) = dist.items()
        assert all(type(v) in (int, float, bool) for v in values)


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_sampling_modes_have_no_grid_search(space: Space, mode: str):
    tune_space = space.to_tune(mode)
    assert list(tune_space) == list(space.axes)
    for axis, domain in tune_space.items():
        expected = {Grid: Categorical, Choice: Categorical, Uniform: Float, LogUniform: Float, IntRange: Integer}
        assert isinstance(domain, expected[type(space.axes[axis])]), axis


@pytest.mark.parametrize("space", builtin_spaces(), ids=lambda s: s.name)
def test_optuna_search_accepts_converted_space(space: Space):
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space=None, metric="m", mode="min")
    assert searcher.set_search_properties("m", "min", space.to_tune("optuna-asha")) is True
    config = searcher.suggest("t1")
    assert set(config) == set(space.axes)


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
          dropout: {int: [0, 1]}
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
    for axis in AXES:
        spec = {"grid": [True]} if axis == "qkv_bias" else {"grid": [1]}
        assert parse_space({"name": "a", "axes": {axis: spec}}).axes[axis].values in ((1,), (1.0,), (True,))


def test_import_has_no_ray_side_effect():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, search_spaces; search_spaces.builtin_spaces(); assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])

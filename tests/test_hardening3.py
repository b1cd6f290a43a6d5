"""Hostile and mistaken input, round 3 (issue 29): special files as spaces and configs, two sweeps of
one name at once, options changed on --resume, errored trials, an interrupted transfer study. Each case:
one line, exit status 2 (130 for an interrupt), nothing already computed lost, no hang.
(The table of all cases: bench/BAD_INPUT.md, written by bench/bad_input_matrix.py.)"""

import os

import pytest

from helpers import run_cli

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1 and len(err) < 2100, err[:3000]
    return err


# -- item 3: only regular files are read as spaces and configs ------------------------------------------

@pytest.mark.parametrize("argv", [["spaces", "F"], ["sweep", "--space", "F"], ["sweep", "--config", "F"],
                                  ["pretrain", "--config", "F"]])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_as_space_or_config_is_refused_without_reading_it(tmp_path, capsys, argv, special):
    if special == "fifo":
        special = str(tmp_path / "space.yaml")
        os.mkfifo(special)  # no writer: opening it would block forever
    argv = [special if a == "F" else a for a in argv]
    if argv[0] == "sweep":
        argv += ["--results-dir", str(tmp_path / "r"), "--no-dashboard"]
    code, err = run_cli(argv, capsys)
    kind = "character device" if special == "/dev/zero" else "FIFO"
    assert code == 2 and f"{special} is not a regular file (a {kind}); hpsearch reads spaces and configs only " \
                         "from regular files" in one_line(err)
    assert "does not exist" not in err and not (tmp_path / "r").exists()

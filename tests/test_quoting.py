"""Every command hpsearch prints for pasting is quoted for the shell (paths with spaces or `$(...)`)."""

import shlex

from hpsearch.cli import main
from trainables.errors import shell_command

HOSTILE = "/tmp/my results/$(touch pwned)/it's"


def test_shell_command_round_trips_through_the_shell_parser():
    words = ["hpsearch", "sweep", "--name", "a b", "--results-dir", HOSTILE, "--resume"]
    assert shlex.split(shell_command(*words)) == words


def test_the_tensorboard_hint_of_a_hostile_results_dir_is_one_quoted_word(tmp_path, capsys):
    results = tmp_path / "my results" / "$(touch pwned)"
    (results / "s").mkdir(parents=True)
    (results / "s" / "sweep.json").write_text("{}")
    assert main(["tensorboard", "s", "--results-dir", str(results)]) == 0
    printed = capsys.readouterr().out.strip()
    assert shlex.split(printed) == ["tensorboard", "--logdir", str((results / "s" / "tune").resolve())]

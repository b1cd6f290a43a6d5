"""The bad-input matrix, end to end through the CLI: one line naming the culprit and the fix,
exit status 2, and nothing already on disk lost. (More cases: test_sweep.py's
test_bad_sweep_requests_fail_with_one_line, test_spaces.py, test_corpus.py.)"""

import re
import subprocess
import sys

import pytest
import yaml
from helpers import nano_config

from hpsearch.cli import main


def write_config(path, **train):
    cfg = nano_config().to_dict()
    cfg["train"].update(train)  # written raw: the file may be invalid on purpose
    path.write_text(yaml.safe_dump(cfg))
    return path


def data_config(tmp_path, corpus):
    cfg = nano_config().to_dict()
    cfg["data"]["path"] = str(corpus)
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return ["pretrain", "--config", str(f), "--out", str(tmp_path / "out")]


CASES = {
    "corpus missing": (lambda t: ["sweep", "--data", str(t / "nope.txt")], "nope.txt does not exist"),
    "corpus empty": (lambda t: data_config(t, _file(t, "e.txt", b"\n \n")), "e.txt: file empty or whitespace only"),
    "corpus binary": (lambda t: ["sweep", "--data", str(_file(t, "x.txt", b"\x7fELF\x00\x00"))], "x.txt looks binary"),
    "corpus not UTF-8": (lambda t: data_config(t, _file(t, "l.txt", "naïve".encode("latin-1"))), "l.txt is not valid UTF-8"),
    "corpus too short": (lambda t: data_config(t, _file(t, "s.txt", b"just a few words")),
                         "4 tokens give a train split of 3 tokens, but one window needs 33"),
    "directory without text": (lambda t: data_config(t, _dir(t)), "has no files matching '**/*.txt'"),
    "space not YAML": (lambda t: ["sweep", "--space", str(_file(t, "s.yaml", b"axes: [unclosed"))], "not valid YAML"),
    "space unknown axis": (lambda t: ["sweep", "--space", _space(t, {"peak_rl": {"grid": [1e-3]}})],
                           "unknown axis 'peak_rl' (did you mean 'peak_lr'?)"),
    "space empty choice": (lambda t: ["sweep", "--space", _space(t, {"batch_size": {"choice": []}})], "empty"),
    "space low >= high": (lambda t: ["sweep", "--space", _space(t, {"peak_lr": {"uniform": [0.1, 0.01]}})],
                          "low < high"),
    "space wrong type": (lambda t: ["sweep", "--space", _space(t, {"batch_size": {"grid": [2.5]}})], "batch_size"),
    "min_lr > peak_lr": (lambda t: ["pretrain", "--config", str(write_config(t / "c.yaml", min_lr=0.1))],
                         "train.min_lr (0.1) must not exceed train.peak_lr"),
    "warmup >= total steps": (lambda t: ["pretrain", "--config", str(write_config(t / "c.yaml", warmup_steps=50))],
                              "train.warmup_steps (50) must be below the run's total steps"),
    "batch > windows": (lambda t: ["pretrain", "--config", str(write_config(t / "c.yaml", batch_size=5000))],
                        # the count depends on the Python's own pydoc topics (3,909 on 3.11.7)
                        re.compile(r"train\.batch_size 5000 exceeds the \d+ training windows .*use batch_size <= \d+")),
    "unknown config key": (lambda t: ["pretrain", "--config", str(_file(t, "c.yaml", b"train: {lr: 1}"))],
                           "unknown key 'train.lr'"),
}


def _file(t, name, data: bytes):
    (t / name).write_bytes(data)
    return t / name


def _dir(t):
    (t / "docs").mkdir()
    (t / "docs" / "notes.md").write_text("markdown, not .txt")
    return t / "docs"


def _space(t, axes):
    (t / "space.yaml").write_text(yaml.safe_dump({"name": "s", "axes": axes}))
    return str(t / "space.yaml")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, case):
    build, expected = CASES[case]
    argv = build(tmp_path)
    if argv[0] == "sweep":
        argv += ["--results-dir", str(tmp_path / "results"), "--no-dashboard"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hpsearch: error: ") and len(err.splitlines()) == 1, err
    assert (expected.search(err) if isinstance(expected, re.Pattern) else expected in err), err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing lost


def test_a_corrupt_or_foreign_checkpoint_is_refused_and_kept(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", max_tokens=128 * 4)
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(cfg), "--out", str(out)]) == 0
    good = (out / "checkpoint.pt").read_bytes()
    other = nano_config(max_tokens=128 * 4).to_dict()
    other["model"]["n_layers"] = 2
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(other))
    capsys.readouterr()
    assert main(["pretrain", "--config", str(tmp_path / "o.yaml"), "--out", str(out), "--resume"]) == 2
    assert "another model shape (n_layers: checkpoint 1 vs config 2)" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == good
    (out / "checkpoint.pt").write_bytes(good[: len(good) // 2])  # truncated
    assert main(["pretrain", "--config", str(cfg), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt is corrupt" in err and len(err.strip().splitlines()) == 1


def test_an_address_that_answers_nothing_fails_fast():
    # a subprocess, because this test session already has a Ray of its own
    proc = subprocess.run([sys.executable, "-m", "hpsearch.cli", "sweep", "--address", "127.0.0.1:9",
                           "--smoke-test", "--name", "a"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--address 127.0.0.1:9: nothing answers there" in proc.stderr


def test_non_english_text_trains(tmp_path, capsys):
    corpus = tmp_path / "zh.txt"
    corpus.write_text("大型语言模型的预训练需要大量高质量的文本数据，以及合理的学习率调度。\n" * 200, encoding="utf-8")
    assert main(data_config(tmp_path, corpus)) == 0
    assert "completed: 12 steps" in capsys.readouterr().out

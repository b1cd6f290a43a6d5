"""Corpora that used to hang or blow up: FIFOs and devices, one huge line without whitespace, a token cache on
a full disk (issue 29, items 2, 3 and 4)."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_cli, tmpfs
from trainables.corpus import get_tokenizer, load_tokens, read_documents, tokenize_documents
from trainables.corpus import tokens as tokens_module
from trainables.corpus.text import _RUN_CHARS, _cut_runs
from trainables.errors import DataError


# -- only regular files are corpora ------------------------------------------------------------------

def hpsearch(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "hpsearch.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_is_refused_before_it_is_opened(tmp_path, kind):
    path = tmp_path / "corpus.txt"
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would block until a writer comes: it must never be opened
    else:
        path = "/dev/zero"  # endless: hashing it first never ended
    what = "a FIFO" if kind == "fifo" else "a device"
    with pytest.raises(DataError, match=f"corpus path {path} is not a regular file \\({what}\\); pass a text file"):
        load_tokens(path, cache_dir=tmp_path / "cache", log=None)
    proc = hpsearch("sweep", "--data", str(path), "--results-dir", str(tmp_path / "r"), "--no-dashboard")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"hpsearch: error: corpus path {path} is not a regular file ({what}); pass a text file or a directory of "
        "corpus files (copy a stream to a file first)"]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_pretrain_refuses_a_fifo_in_one_line(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    code, err = run_cli(["pretrain", "--data.path", str(tmp_path / "pipe"), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and err == (f"hpsearch: error: corpus path {tmp_path / 'pipe'} is not a regular file (a FIFO); "
                                 "pass a text file or a directory of corpus files (copy a stream to a file first)")


# -- long unbroken runs -------------------------------------------------------------------------------

def test_text_without_long_runs_is_never_cut():
    docs = read_documents(None)
    texts = [t for _, t in docs] + ["x" * _RUN_CHARS, "https://example.com/" + "a1b2/" * 1000, " " * _RUN_CHARS]
    assert all(_cut_runs(t) == [t] for t in texts)
    enc = get_tokenizer()
    expected = [i for n, (_, t) in enumerate(docs) for i in ([50256] if n else []) + enc.encode(t, disallowed_special=())]
    assert tokenize_documents(docs).tolist() == expected


def test_a_long_line_is_cut_where_the_ids_do_not_change(tmp_path):
    """base64 changes class every few characters: every cut is at a letter/digit boundary, so the ids equal
    those of the whole line, with GPT-2 and with a byte-level BPE trained here."""
    import base64

    from test_tokenizers import train_bpe
    from tokenizers import Tokenizer

    line = base64.b64encode(np.random.default_rng(0).bytes(150_000)).decode()
    f = tmp_path / "b64.txt"
    f.write_text(line)
    assert len(_cut_runs(line)) > 30
    got = load_tokens(f, cache_dir=tmp_path / "c", log=None).tokens
    assert got.tolist() == get_tokenizer().encode(line, disallowed_special=())
    bpe = str(train_bpe(tmp_path / "tok.json"))
    got = load_tokens(f, tokenizer=bpe, cache_dir=tmp_path / "c", log=None).tokens
    assert got.tolist() == Tokenizer.from_file(bpe).encode(line, add_special_tokens=False).ids


LONG_LINE = """
import resource, sys, tempfile
from trainables.corpus import load_tokens
from trainables.corpus.tokenizer import load_tokenizer
path, spec = sys.argv[1], sys.argv[2]
tok = load_tokenizer(spec)
tok.encode("warm up")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ids = load_tokens(path, tokenizer=spec, cache_dir=tempfile.mkdtemp(), log=None).tokens
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
text = open(path).read()
decode = tok.enc.decode if spec == "gpt2" else tok.tok.decode
assert decode(ids.tolist()) == text  # cut, never lost
print(peak)
"""


def test_one_long_line_without_whitespace_keeps_memory_bounded(tmp_path):
    """4 MB of DNA on one line: one pre-tokenizer piece. Whole, tiktoken held ~46 bytes per character (a
    20 MB line peaked at 1.1 GB RSS); cut into runs of _RUN_CHARS, the peak grows by a few bytes per character."""
    from test_tokenizers import train_bpe

    f = tmp_path / "dna.txt"
    size = 4_000_000
    f.write_bytes(np.frombuffer(b"ACGT", np.uint8)[np.random.default_rng(0).integers(0, 4, size)].tobytes())
    bpe = str(train_bpe(tmp_path / "tok.json", text=["ACGT" * 500, "hello world"]))
    peaks = []
    for spec in ("gpt2", bpe):
        out = subprocess.run([sys.executable, "-c", LONG_LINE, str(f), spec], capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        peaks.append(int(out.stdout))
    gpt2, hf = peaks
    assert gpt2 < 8 * size and hf < 8 * size, (gpt2, hf)


# -- a token cache that cannot be written ----------------------------------------------------------

class _FullDisk:
    """A real file whose writes fail with ENOSPC past ``room`` bytes, and whose close fails again (a
    buffered writer flushing what it could not write), as on a full disk."""

    def __init__(self, path, mode, room, **kw):
        self.fh, self.room = open(path, mode, **kw), room

    def write(self, data):
        if self.fh.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    @property
    def closed(self):
        return self.fh.closed

    def close(self):
        self.fh.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def _corpus(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("".join(t for _, t in read_documents(None)[:80]))
    return f


def test_a_full_disk_under_the_cache_leaves_no_temporary_file_and_costs_only_a_warning(tmp_path, monkeypatch):
    f = _corpus(tmp_path)
    expected = load_tokens(f, cache_dir=tmp_path / "fine", log=None).tokens
    monkeypatch.setattr(tokens_module, "open", lambda p, m, **kw: _FullDisk(p, m, 50_000, **kw), raising=False)
    lines = []
    got = load_tokens(f, cache_dir=tmp_path / "full", log=lines.append)
    assert np.array_equal(got.tokens, expected) and got.cache_file is None and not got.from_cache
    warnings = [x for x in lines if x.startswith("warning")]
    assert warnings == [f"warning: the token cache in {tmp_path / 'full'} cannot be written (no space left on the "
                        "device); tokenizing again into memory, uncached. Free space there, or set HPSEARCH_CACHE_DIR "
                        "to a writable disk with room"]
    assert [p.name for p in (tmp_path / "full").rglob("*") if p.is_file()] == []  # no temporary file, no index


def test_a_real_full_tmpfs_under_the_cache(tmp_path):
    f = _corpus(tmp_path)
    with tmpfs(tmp_path / "mnt", "64k") as mnt:
        lines = []
        got = load_tokens(f, cache_dir=mnt, log=lines.append)
        assert got.cache_file is None and len(got.tokens) > 64_000 // 2
        assert sum(x.startswith("warning: the token cache in") for x in lines) == 1
        assert [p for p in mnt.rglob("*") if p.is_file()] == []
    assert json.dumps(got.tokens[:3].tolist())  # the tokens are usable in memory

"""Corpus -> tokens -> windows -> batches."""

import numpy as np
import pytest

from trainables.corpus import (
    EOT_ID,
    WindowLoader,
    get_tokenizer,
    load_tokens,
    read_documents,
    tokenize_documents,
    window_starts,
)
from trainables.errors import DataError


def test_known_token_ids():
    enc = get_tokenizer()
    assert enc.n_vocab == 50257
    assert enc.encode("every effort moves") == [16833, 3626, 6100]
    assert enc.encode("I really like chocolate") == [40, 1107, 588, 11311]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT_ID]


def test_embedded_corpus_is_cached_and_memory_mapped(tmp_path):
    first = load_tokens(None, cache_dir=tmp_path, log=None)
    again = load_tokens(None, cache_dir=tmp_path, log=None)
    assert not first.from_cache and again.from_cache
    assert isinstance(again.tokens, np.memmap) and again.tokens.dtype == np.uint16
    assert 90_000 < len(again.tokens) < 200_000
    assert np.array_equal(first.tokens, again.tokens)
    assert first.n_documents == again.n_documents > 10
    assert int((again.tokens == EOT_ID).sum()) == again.n_documents - 1  # documents joined by <|endoftext|>


def test_cache_is_keyed_by_content_not_path(tmp_path):
    (tmp_path / "a.txt").write_text("the same words " * 50)
    (tmp_path / "b.txt").write_text("the same words " * 50)
    a = load_tokens(tmp_path / "a.txt", cache_dir=tmp_path / "c", log=None)
    b = load_tokens(tmp_path / "b.txt", cache_dir=tmp_path / "c", log=None)
    assert a.key == b.key and b.from_cache
    (tmp_path / "b.txt").write_text("other words " * 50)
    assert load_tokens(tmp_path / "b.txt", cache_dir=tmp_path / "c", log=None).key != a.key


def test_parallel_chunked_tokenization_equals_whole_text():
    text = "\n\n".join(t for _, t in read_documents(None)) * 3  # > 1 MB: split into chunks
    enc = get_tokenizer()
    whole = enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)
    assert np.array_equal(tokenize_documents([("x", text)]), whole)


def test_directory_is_read_recursively(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "one.txt").write_text("first document")
    (tmp_path / "sub" / "two.txt").write_text("second document")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    docs = read_documents(tmp_path)
    assert [d[1] for d in docs] == ["first document", "second document"]


def test_non_english_text_tokenizes(tmp_path):
    f = tmp_path / "zh.txt"
    f.write_text("预训练大型语言模型需要大量的文本数据。" * 20, encoding="utf-8")
    tokens = load_tokens(f, cache_dir=tmp_path, log=None).tokens
    assert len(tokens) > 100 and tokens.max() < 50257
    assert get_tokenizer().decode(tokens[:30].tolist()).startswith("预训练")


def test_window_counts_for_a_known_length():
    # range(0, n - ctx, stride): 1000 tokens, ctx 100 -> 9 windows at stride 100, 36 at stride 25
    assert len(window_starts(1000, 100, 100)) == 9
    assert len(window_starts(1000, 100, 25)) == 36
    assert len(window_starts(100, 100, 10)) == 0


def test_loaders_shuffle_drop_last_and_keep_partial_batches():
    tokens = np.arange(1000, dtype=np.uint16)
    train = WindowLoader(tokens, context_len=10, stride=10, batch_size=4, shuffle=True, drop_last=True, seed=1)
    val = WindowLoader(tokens, context_len=10, stride=10, batch_size=4, shuffle=False, drop_last=False)
    assert train.num_windows == 99 and len(train) == 24 and len(val) == 25
    x, y = next(iter(val))
    assert x.shape == (4, 10) and (y == x + 1).all()  # targets are inputs shifted by one
    assert [b[0].shape[0] for b in val][-1] == 3  # last partial batch kept
    e0 = [b[0][:, 0].tolist() for b in train.batches(0)]
    assert e0 == [b[0][:, 0].tolist() for b in train.batches(0)]  # an epoch's order is reproducible
    assert e0 != [b[0][:, 0].tolist() for b in train.batches(1)]  # and differs between epochs
    assert [b[0][:, 0].tolist() for b in train.batches(0, start_batch=5)] == e0[5:]


@pytest.mark.parametrize("setup, expected", [
    (lambda p: p / "missing.txt", "does not exist"),
    (lambda p: (p / "d").mkdir() or p / "d", "has no files matching"),
    (lambda p: (p / "e.txt").write_text("  \n\t ") and p / "e.txt", "empty or whitespace only"),
    (lambda p: (p / "b.txt").write_bytes(b"GIF89a\x00\x00\x01") and p / "b.txt", "looks binary"),
    (lambda p: (p / "l.txt").write_bytes("café".encode("latin-1")) and p / "l.txt", "is not valid UTF-8"),
])
def test_bad_corpora_name_the_culprit(tmp_path, setup, expected):
    path = setup(tmp_path)
    with pytest.raises(DataError, match=expected) as info:
        load_tokens(path, cache_dir=tmp_path / "cache", log=None)
    assert str(path.name) in str(info.value) and "\n" not in str(info.value)


def test_one_bad_file_in_a_directory_is_named_not_dropped(tmp_path):
    (tmp_path / "good.txt").write_text("fine text")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe broken")
    with pytest.raises(DataError, match="bad.txt is not valid UTF-8"):
        read_documents(tmp_path)


def test_an_edited_corpus_is_never_served_stale_tokens(tmp_path):
    import os

    f = tmp_path / "c.txt"
    f.write_text("first version of the text " * 20)
    first = load_tokens(f, cache_dir=tmp_path / "cache", log=None)
    assert load_tokens(f, cache_dir=tmp_path / "cache", log=None).from_cache  # warm: from the index
    f.write_text("second version, longer, of the text " * 20)
    edited = load_tokens(f, cache_dir=tmp_path / "cache", log=None)
    assert not edited.from_cache and edited.key != first.key
    assert get_tokenizer().decode(edited.tokens[:3].tolist()).startswith("second")
    os.utime(f, ns=(1, 1))  # touched, same content: read and hashed again, tokens reused
    touched = load_tokens(f, cache_dir=tmp_path / "cache", log=None)
    assert touched.from_cache and touched.key == edited.key


def test_same_size_text_with_the_old_mtime_is_not_served_stale(tmp_path):
    import os

    f = tmp_path / "c.txt"
    f.write_text("alpha beta gamma " * 20)
    before = f.stat()
    first = load_tokens(f, cache_dir=tmp_path / "cache", log=None)
    f.write_text("gamma beta alpha " * 20)  # same size
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # what `cp -p` does: the old mtime
    again = load_tokens(f, cache_dir=tmp_path / "cache", log=None)
    assert again.key != first.key
    assert get_tokenizer().decode(again.tokens[:6].tolist()).startswith("gamma beta")

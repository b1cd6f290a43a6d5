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
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfd broken")
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


# -- formats (issue 14) and encodings (issue 12) ------------------------------------------------

import gzip
import json
import subprocess
from pathlib import Path
import sys

from trainables.corpus import load_data

SAMPLE_DOCS = [f"Document {i}: the quick brown fox number {i} jumps over {i * 7} lazy dogs. 预训练 {i}\n"
               for i in range(40)]


def _whole(texts):
    return tokenize_documents([(str(i), t) for i, t in enumerate(texts)])


def _load(path, tmp_path, **kw):
    return load_tokens(path, cache_dir=tmp_path / "cache", log=None, **kw)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path, encoding):
    text = "Grüße, 世界! A byte-order mark names the encoding.\n" * 30
    bom = {"utf-16-le": "\ufeff", "utf-16-be": "\ufeff", "utf-32-be": "\ufeff", "utf-8-sig": ""}.get(encoding, "")
    f = tmp_path / "bom.txt"
    f.write_bytes((bom + text).encode(encoding))
    assert np.array_equal(_load(f, tmp_path).tokens, _whole([text]))


def test_utf16_without_a_bom_is_named_not_called_binary(tmp_path):
    f = tmp_path / "nobom.txt"
    f.write_bytes(("plain words in UTF-16 " * 40).encode("utf-16-le"))
    with pytest.raises(DataError, match=r"nobom.txt looks like UTF-16-LE text without a byte-order mark"):
        _load(f, tmp_path)


def test_streamed_long_lines_tokenize_as_the_whole_text(tmp_path):
    # 2.6 MB on one line, with multi-byte characters and space runs: read and tokenized in ~1 MB pieces
    text = ("naïve  café—über 123,456.78 tokens\t\tand   spaces 東京 " * 60_000).rstrip()
    f = tmp_path / "one-line.txt"
    f.write_text(text, encoding="utf-8")
    got = _load(f, tmp_path).tokens
    assert np.array_equal(got, get_tokenizer().encode_to_numpy(text, disallowed_special=()).astype(np.uint16))


def test_compressed_text_equals_plain_text(tmp_path):
    text = "".join(SAMPLE_DOCS)
    plain = _whole([text])
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "gzip-named-txt.txt").write_bytes(gzip.compress(text.encode()))  # recognised by magic bytes
    assert np.array_equal(_load(tmp_path / "a.txt.gz", tmp_path).tokens, plain)
    assert np.array_equal(_load(tmp_path / "gzip-named-txt.txt", tmp_path).tokens, plain)
    zstandard = pytest.importorskip("zstandard", reason="zstandard is not installed (pip install zstandard)")
    (tmp_path / "a.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    assert np.array_equal(_load(tmp_path / "a.txt.zst", tmp_path).tokens, plain)


def test_zst_without_zstandard_names_the_package(tmp_path):
    f = tmp_path / "a.txt.zst"
    f.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)  # a zstd frame header: the magic bytes decide
    code = ("import sys; sys.modules['zstandard'] = None\n"  # what Python does when it is not installed
            "from trainables.corpus import load_tokens\n"
            "from trainables.errors import DataError\n"
            f"try: load_tokens({str(f)!r}, cache_dir={str(tmp_path)!r}, log=None)\n"
            "except DataError as e: print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()
    assert "a.txt.zst is zstd-compressed" in out and "pip install zstandard" in out and "\n" not in out


def test_jsonl_and_parquet_read_the_named_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = [json.dumps({"id": i, "body": t}) for i, t in enumerate(SAMPLE_DOCS)]
    lines[3:3] = ["", json.dumps({"id": -1, "body": None}), "   "]  # blank lines and nulls are skipped
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "docs.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    pq.write_table(pa.table({"id": list(range(40)), "body": SAMPLE_DOCS}), tmp_path / "docs.parquet", row_group_size=7)
    expected = _whole(SAMPLE_DOCS)
    for name in ("docs.jsonl", "docs.jsonl.gz", "docs.parquet"):
        got = _load(tmp_path / name, tmp_path, text_field="body")
        assert np.array_equal(got.tokens, expected), name
        assert got.n_documents == 40


def test_format_is_detected_per_directory_and_can_be_forced(tmp_path):
    (tmp_path / "j").mkdir()
    for i in range(3):
        (tmp_path / "j" / f"part-{i}.jsonl").write_text(json.dumps({"text": SAMPLE_DOCS[i]}) + "\n")
    assert np.array_equal(_load(tmp_path / "j", tmp_path).tokens, _whole(SAMPLE_DOCS[:3]))  # no .txt: the jsonl
    f = tmp_path / "records.txt"
    f.write_text(json.dumps({"text": SAMPLE_DOCS[0]}) + "\n" + json.dumps({"text": SAMPLE_DOCS[1]}) + "\n")
    assert np.array_equal(_load(f, tmp_path, format="jsonl").tokens, _whole(SAMPLE_DOCS[:2]))
    (tmp_path / "j" / "more.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="several corpus formats .*data.format"):
        _load(tmp_path / "j", tmp_path)


def test_a_token_shard_is_memory_mapped_in_place(tmp_path):
    ids = (np.arange(100_000) * 7919 % 50257).astype(np.uint16)
    shard = tmp_path / "train.bin"
    ids.tofile(shard)  # nanoGPT's prepare.py layout
    first = _load(shard, tmp_path)
    again = _load(shard, tmp_path)
    for got in (first, again):
        assert isinstance(got.tokens, np.memmap) and Path(got.tokens.filename) == shard.resolve()
        assert np.array_equal(got.tokens, ids) and got.format == "bin"
    assert not first.from_cache and again.from_cache
    assert not (tmp_path / "cache" / "tokens").exists()  # nothing copied into the cache

    llmc = tmp_path / "llmc" / "fineweb_val_000000.bin"  # llm.c's shards: a 1 KiB header, then uint16 ids
    llmc.parent.mkdir()
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(ids)]
    llmc.write_bytes(header.tobytes() + ids.tobytes())
    assert np.array_equal(_load(llmc, tmp_path).tokens, ids)


def test_a_directory_of_shards_is_joined_in_order(tmp_path):
    a, b = np.arange(0, 5000, dtype=np.uint16), np.arange(5000, 9000, dtype=np.uint16)
    a.tofile(tmp_path / "shard_000.bin")
    b.tofile(tmp_path / "shard_001.bin")
    got = _load(tmp_path, tmp_path)  # no .txt files: read as shards
    assert np.array_equal(got.tokens, np.concatenate([a, b])) and got.n_documents == 2


def _write(p, data):
    p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return p


@pytest.mark.parametrize("name, data, kw, expected", [
    ("bad.jsonl", '{"text": "fine"}\n{"text": "fine"}\n{"text": oops}\n', {}, r"bad.jsonl: line 3 is not JSON"),
    ("nofield.jsonl", '{"text": "a"}\n{"body": "b", "id": 2}\n', {}, r"nofield.jsonl: line 2 has no field 'text' "
                                                                        r"\(fields: body, id\); set data.text_field"),
    ("num.jsonl", '{"text": 12}\n', {}, r"num.jsonl: line 1: field 'text' is a int, not text"),
    ("list.jsonl", '["text"]\n', {}, r"list.jsonl: line 1 is a JSON list, not an object"),
    ("cut.txt.gz", gzip.compress(b"some text " * 500)[:-30], {}, r"cut.txt.gz: corrupt gzip data"),
    ("junk.txt.gz", b"\x1f\x8b" + b"\xff" * 60, {}, r"junk.txt.gz: corrupt gzip data"),
    ("fake.txt.gz", b"plain text, not gzip", {}, r"fake.txt.gz is named .gz but holds no gzip data"),
    ("odd.bin", b"\x01\x00\x02", {}, r"odd.bin holds 3 bytes, not a whole number of uint16 token ids; "
                                        r"set data.token_dtype"),
    ("big.bin", np.array([5, 6, 60000, 7], dtype=np.uint16).tobytes(), {},
     r"big.bin: token id 60000 at position 2 is not below model.vocab_size 50,257; set model.vocab_size"),
    ("empty.bin", b"", {"format": "bin"}, r"empty.bin holds no tokens"),
    ("broken.parquet", b"PAR1 not really", {}, r"broken.parquet is not a readable Parquet file"),
])
def test_every_bad_file_gives_one_line_naming_it(tmp_path, name, data, kw, expected):
    f = _write(tmp_path / name, data)
    with pytest.raises(DataError, match=expected) as info:
        _load(f, tmp_path, **kw)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_parquet_without_the_text_column_names_the_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["a", "b"], "n": [1, 2]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t.parquet: no column 'text' \(columns: content, n\); set data.text_field"):
        _load(tmp_path / "t.parquet", tmp_path)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n.parquet: column 'text' holds int64, not text"):
        _load(tmp_path / "n.parquet", tmp_path)


# -- sampling -------------------------------------------------------------------------------------

def _corpus_dir(tmp_path, n=300):
    d = tmp_path / "many"
    d.mkdir()
    texts = [f"File {i} starts here. " + " ".join(f"w{i}x{j}" for j in range(40 + i % 17)) + f" File {i} ends.\n"
             for i in range(n)]
    for i, t in enumerate(texts):
        (d / f"doc{i:04d}.txt").write_text(t)
    return d, texts


def test_a_sample_is_seeded_whole_documents_in_corpus_order(tmp_path):
    d, texts = _corpus_dir(tmp_path)
    a = _load(d, tmp_path, sample_tokens=3000, sample_seed=1)
    again = _load(d, tmp_path / "other", sample_tokens=3000, sample_seed=1)
    other = _load(d, tmp_path, sample_tokens=3000, sample_seed=2)
    assert a.sampled and np.array_equal(a.tokens, again.tokens) and a.key == again.key
    assert not np.array_equal(a.tokens, other.tokens)
    longest = max(len(get_tokenizer().encode(t)) for t in texts)
    assert 3000 <= len(a.tokens) <= 3000 + longest + 1
    enc = get_tokenizer()
    pieces = enc.decode(a.tokens.tolist()).split("<|endoftext|>")
    positions = [texts.index(p) for p in pieces]  # every piece is one whole document ...
    assert positions == sorted(positions) and len(positions) == a.n_documents  # ... kept in corpus order


def test_a_sample_larger_than_the_corpus_is_the_whole_corpus(tmp_path):
    d, _ = _corpus_dir(tmp_path, n=50)
    big = tmp_path / "big.txt"  # one file of several ~1 MB units: units join as in the whole text
    big.write_text("".join(f"line {i} of a long text with words, numbers {i * 31} and Ünïcödé.\n" for i in range(60_000)))
    for path in (d, big):
        assert np.array_equal(_load(path, tmp_path, sample_tokens=10**9).tokens, _load(path, tmp_path).tokens)


def test_a_sample_of_a_huge_shard_reads_only_the_blocks_it_takes(tmp_path):
    shard = tmp_path / "huge.bin"
    with open(shard, "wb") as fh:  # 4 G tokens (8 GB), sparse: zeros except a bad id in the very last block
        fh.truncate(8 << 30)
        fh.seek((8 << 30) - 2)
        fh.write(np.array([60000], dtype=np.uint16).tobytes())
    if shard.stat().st_blocks * 512 > 1 << 30:
        pytest.skip("the filesystem under tmp_path does not store sparse files")
    got = _load(shard, tmp_path, sample_tokens=100_000)
    ids = got.tokens[got.tokens != EOT_ID]  # blocks that do not follow one another are separated by EOT
    assert len(ids) == 100_000 and not ids.any() and len(got.tokens) <= 100_002  # the bad block was never read


def test_data_args_select_format_field_and_sample(tmp_path):
    from trainables.config import PretrainConfig
    from trainables.errors import ConfigError

    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in SAMPLE_DOCS) + "\n")
    cfg = PretrainConfig.from_dict({"data": {"path": str(tmp_path / "d.jsonl"), "text_field": "body",
                                             "sample_tokens": 100, "sample_seed": 3}})
    got = load_data(cfg.data, cache_dir=tmp_path / "cache", log=None)
    assert got.sampled and 100 <= len(got.tokens) < 200
    with pytest.raises(ConfigError) as info:
        PretrainConfig.from_dict({"data": {"format": "csv", "sample_tokens": 0, "text_field": ""}})
    msg = str(info.value)
    assert "data.format must be one of auto, text, jsonl, parquet, bin, got 'csv'" in msg
    assert "data.sample_tokens must be a positive integer" in msg and "data.text_field" in msg


# -- bounded memory (issue 14 item 3) -----------------------------------------------------------

def test_tokenizing_a_large_file_holds_a_few_mb_not_the_text(tmp_path):
    f = tmp_path / "single-line.txt"
    f.write_text("all work and no play makes a dull model, 1234 " * 450_000)  # 20 MB, one line
    code = f"""
import resource, numpy as np
from trainables.corpus import get_tokenizer, load_tokens
get_tokenizer().encode("warm up")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tokens = load_tokens({str(f)!r}, cache_dir={str(tmp_path / 'c')!r}, log=None).tokens
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(tokens), (peak - before) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    n, grown = map(int, out.stdout.split())
    assert n > 4_000_000
    assert grown < 2 * n * 2 + 40e6, f"tokenizing grew the process by {grown / 1e6:.0f} MB for {2 * n / 1e6:.0f} MB of tokens"

"""A team's own tokenizer (a Hugging Face tokenizer.json trained here with `tokenizers`) and token shards of
any vocabulary (uint16/uint32, llm.c's headers): read, cached by content, checked, and used end to end."""

import importlib.util
import json

import numpy as np
import pytest
import yaml

from helpers import run_cli, sweep_options
from trainables.config import PretrainConfig, load_config
from trainables.corpus import load_tokens
from trainables.corpus.tokenizer import load_tokenizer
from trainables.errors import ConfigError, DataError

DOCS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump! " * 15,
    "Sphinx of black quartz, judge my vow. 12345 67890 <|endoftext|> is plain text here. " * 15,
]


def train_bpe(path, vocab: int = 400, special=("<|endoftext|>",), text=None):
    """A small byte-level BPE trained on the spot with the `tokenizers` package, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from trainables.corpus import read_documents

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(special), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = text or [t for _, t in read_documents(None)[:40]]
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(path))
    return path


@pytest.fixture
def bpe(tmp_path):
    return train_bpe(tmp_path / "tokenizer.json")


def jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def test_documents_are_separated_by_the_tokenizers_end_of_text(tmp_path, bpe):
    from tokenizers import Tokenizer

    corpus = load_tokens(jsonl(tmp_path / "c.jsonl", DOCS), tokenizer=str(bpe), cache_dir=tmp_path / "cache", log=None)
    hf = Tokenizer.from_file(str(bpe))
    eot = hf.token_to_id("<|endoftext|>")
    hf.encode_special_tokens = True
    expected = []
    for d in DOCS:
        expected += ([eot] if expected else []) + hf.encode(d, add_special_tokens=False).ids
    assert corpus.tokens.dtype == np.uint16 and corpus.tokens.tolist() == expected
    assert corpus.n_documents == 3 and int((corpus.tokens == eot).sum()) == 2  # the literal in doc 3 is text


def test_the_cache_keys_on_the_tokenizers_content_not_its_path(tmp_path):
    corpus = jsonl(tmp_path / "c.jsonl", DOCS)
    path = tmp_path / "team" / "tokenizer.json"
    path.parent.mkdir()
    first = load_tokens(corpus, tokenizer=str(train_bpe(path, vocab=300)), cache_dir=tmp_path / "cache", log=None)
    again = load_tokens(corpus, tokenizer=str(path), cache_dir=tmp_path / "cache", log=None)
    assert again.from_cache and again.key == first.key
    second = load_tokens(corpus, tokenizer=str(train_bpe(path, vocab=500)), cache_dir=tmp_path / "cache", log=None)
    assert not second.from_cache and second.key != first.key
    assert len(second.tokens) < len(first.tokens)  # more merges, fewer tokens: really the new tokenizer
    assert len(list((tmp_path / "cache" / "tokens").glob("*.npy"))) == 2
    gpt2 = load_tokens(corpus, cache_dir=tmp_path / "cache", log=None)
    assert gpt2.key not in (first.key, second.key)


def test_end_of_text_is_found_named_or_asked_for(tmp_path):
    assert load_tokenizer(str(train_bpe(tmp_path / "s.json", special=("<unk>", "</s>")))).eot_token == "</s>"
    none = str(train_bpe(tmp_path / "n.json", special=("[DOC]",)))
    with pytest.raises(DataError, match=r"n.json has no end-of-text token \(none of <\|endoftext\|>, .*\); "
                                        r"set data.eot_token"):
        load_tokenizer(none)
    named = load_tokenizer(none, "[DOC]")
    assert named.eot_token == "[DOC]" and named.eot_id == named.tok.token_to_id("[DOC]")
    with pytest.raises(DataError, match=r"data.eot_token '<nope>' is not a token of .*n.json"):
        load_tokenizer(none, "<nope>")
    for bad, message in ((tmp_path / "missing.json", "does not exist"), (tmp_path, "is not a regular file")):
        with pytest.raises(DataError, match=f"data.tokenizer {bad} {message}"):
            load_tokenizer(str(bad))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError, match=r"junk.json is not a Hugging Face tokenizer.json"):
        load_tokenizer(str(tmp_path / "junk.json"))


def test_vocab_size_defaults_to_the_tokenizers_size(tmp_path, bpe):
    size = load_tokenizer(str(bpe)).vocab_size
    assert size == 400
    assert PretrainConfig.from_dict({"data": {"tokenizer": str(bpe)}}).model.vocab_size == size
    assert PretrainConfig.from_dict({"data": {"tokenizer": str(bpe)}, "model": {"vocab_size": 512}}).model.vocab_size == 512
    cfg = PretrainConfig().with_overrides({"data.tokenizer": str(bpe)})
    assert cfg.model.vocab_size == size and cfg.with_overrides({"data.tokenizer": "gpt2"}).model.vocab_size == 50257
    with pytest.raises(ConfigError, match=r"data.token_dtype must be one of uint16, uint32, got 'int8'"):
        PretrainConfig.from_dict({"data": {"token_dtype": "int8"}})
    with pytest.raises(ConfigError, match=r"data.tokenizer .*nope.json does not exist"):
        PretrainConfig.from_dict({"data": {"tokenizer": str(tmp_path / "nope.json")}})
    with pytest.raises(DataError, match=r"model.vocab_size 300 is below the size of tokenizer .* \(400 ids\)"):
        load_tokens(jsonl(tmp_path / "c.jsonl", DOCS), tokenizer=str(bpe), vocab_size=300, log=None)


# -- shards of any vocabulary ---------------------------------------------------------------------

def llmc_shard(path, ids, magic: int, version: int, dtype):
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(ids)
    path.write_bytes(header.tobytes() + np.asarray(ids, dtype=dtype).tobytes())
    return path


def test_uint32_shards_raw_and_llmc_headered(tmp_path):
    ids = np.random.default_rng(0).integers(0, 128_256, 5000).astype(np.uint32)
    raw = tmp_path / "raw" / "a.bin"
    raw.parent.mkdir()
    ids.tofile(raw)
    got = load_tokens(raw, token_dtype="uint32", vocab_size=128_256, cache_dir=tmp_path / "c", log=None)
    assert got.tokens.dtype == np.uint32 and np.array_equal(got.tokens, ids) and got.cache_file == raw
    llama = llmc_shard(tmp_path / "llama.bin", ids, 20240801, 7, "<u4")  # llm.c's Llama 3 shards
    got = load_tokens(llama, vocab_size=128_256, cache_dir=tmp_path / "c", log=None)  # the magic says uint32
    assert np.array_equal(got.tokens, ids)
    small = (ids % 50_000).astype(np.uint16)
    gpt2 = llmc_shard(tmp_path / "gpt2.bin", small, 20240520, 1, "<u2")
    assert np.array_equal(load_tokens(gpt2, cache_dir=tmp_path / "c", log=None).tokens, small)
    d = tmp_path / "mixed"
    d.mkdir()
    llmc_shard(d / "0.bin", small, 20240520, 1, "<u2")
    llmc_shard(d / "1.bin", ids, 20240801, 7, "<u4")
    joined = load_tokens(d, vocab_size=128_256, cache_dir=tmp_path / "c", log=None)  # one uint32 cache file
    assert joined.tokens.dtype == np.uint32 and joined.tokens.tolist() == small.tolist() + ids.tolist()
    sampled = load_tokens(d, vocab_size=128_256, sample_tokens=2000, cache_dir=tmp_path / "c", log=None)
    assert sampled.tokens.dtype == np.uint32 and 2000 <= len(sampled.tokens) < 4000


def test_an_id_beyond_the_vocabulary_names_the_shard_the_id_and_the_fix(tmp_path):
    ids = np.arange(0, 70_000, 7, dtype=np.uint32)
    f = llmc_shard(tmp_path / "shard_007.bin", ids, 20240801, 7, "<u4")
    corpus = load_tokens(f, vocab_size=70_000, cache_dir=tmp_path / "c", log=None)
    assert corpus.tokens.max() == 69_993
    with pytest.raises(DataError, match=r"shard_007.bin: token id 65541 at position 9,363 is not below model.vocab_size "
                                        r"65,536; set model.vocab_size to the size of the tokenizer that wrote the "
                                        r"shard \(at least 69,994\)"):
        load_tokens(f, vocab_size=65_536, cache_dir=tmp_path / "c", log=None)  # warm index: still checked
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(llmc_shard(tmp_path / "x.bin", ids, 20240801, 7, "<u4").read_bytes()[:-4])
    with pytest.raises(DataError, match=r"cut.bin: its llm.c header promises 10,000 tokens but the file holds 9,999"):
        load_tokens(truncated, log=None)


def test_pretrain_reads_a_uint32_shard_above_65536_ids(tmp_path, one_thread):
    from trainables.pretrain import pretrain

    ids = np.random.default_rng(1).integers(0, 70_000, 6000).astype(np.uint32)
    f = llmc_shard(tmp_path / "big.bin", ids, 20240801, 7, "<u4")
    cfg = PretrainConfig.from_dict({"model": {"preset": "nano", "vocab_size": 70_000}, "data": {"path": str(f)},
                                    "train": {"batch_size": 2, "max_tokens": 256, "warmup_steps": 1},
                                    "eval": {"eval_freq": 2, "eval_iter": 1}})
    summary = pretrain(cfg, log=None)
    assert summary.status == "completed" and np.isfinite(summary.final_val_loss)


# -- end to end: sweep, export, pretrain ------------------------------------------------------------

@pytest.mark.usefixtures("ray_session")
def test_a_team_tokenizer_end_to_end(tmp_path, capsys, bpe):
    from hpsearch.sweep import run_sweep
    from trainables.corpus import read_documents

    corpus = jsonl(tmp_path / "corpus.jsonl", [t for _, t in read_documents(None)[:60]])
    out = run_sweep(sweep_options(tmp_path / "results", name="team", data=str(corpus), tokenizer=str(bpe),
                                  max_tokens_per_trial=1024), log=print)
    assert len(out.trials) == 4 and set(out.trials["status"]) == {"completed"}
    meta = json.loads((tmp_path / "results" / "team" / "sweep.json").read_text())
    assert meta["base_config"]["data"]["tokenizer"] == str(bpe) and meta["base_config"]["model"]["vocab_size"] == 400

    native = tmp_path / "best.yaml"
    code, err = run_cli(["export", "team", "--results-dir", str(tmp_path / "results"), "--out", str(native)], capsys)
    assert code == 0, err
    best = load_config(native)
    assert best.data.tokenizer == str(bpe) and best.model.vocab_size == 400
    code, err = run_cli(["pretrain", "--config", str(native), "--out", str(tmp_path / "run"),
                         "--train.max_tokens", "1024"], capsys)
    assert code == 0, err
    assert load_config(tmp_path / "run" / "config.yaml").data.tokenizer == str(bpe)

    lit = tmp_path / "lit.yaml"
    code, err = run_cli(["export", "team", "--results-dir", str(tmp_path / "results"), "--out", str(lit),
                         "--format", "litgpt"], capsys)
    assert code == 0, err
    written = yaml.safe_load(lit.read_text())
    assert written["data"]["init_args"]["tokenizer"] == str(bpe)
    tok_dir = written["tokenizer_dir"]
    assert open(f"{tok_dir}/tokenizer.json", "rb").read() == bpe.read_bytes()
    assert json.load(open(f"{tok_dir}/tokenizer_config.json"))["eos_token"] == "<|endoftext|>"
    if importlib.util.find_spec("litgpt"):  # litgpt's own tokenizer class reads the directory as we do
        from litgpt.tokenizer import Tokenizer

        ours, theirs = load_tokenizer(str(bpe)), Tokenizer(tok_dir)
        assert theirs.eos_id == ours.eot_id and not theirs.use_bos
        assert theirs.encode(DOCS[1]).tolist() == ours.encode(DOCS[1]).tolist()

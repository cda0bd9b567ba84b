"""scripts/silver_alignment.py's cache (eflomal replaced by a stub): keyed by the input text, never stale,
rebuilt when incomplete; train is aligned alone, another split with train before it."""
import gzip

import pytest


def corpus(root, split, de, en):
    (root / "multi30k").mkdir(parents=True, exist_ok=True)
    for lang, lines in (("de", de), ("en", en)):
        (root / "multi30k" / f"{split}.{lang}.gz").write_bytes(gzip.compress("".join(f"{x}\n" for x in lines).encode()))


@pytest.fixture
def silver(load_script, monkeypatch):
    module = load_script("silver_alignment")
    calls = []

    def align(src, tgt, n_keep):  # eflomal's stand-in: the diagonal of the kept pairs
        calls.append((list(src), list(tgt), n_keep))
        return [" ".join(f"{i}-{i}" for i in range(len(s.split()))) for s in src[-n_keep:]]

    monkeypatch.setattr(module, "align", align)
    monkeypatch.setattr(module, "version", lambda name: "2.0.0")
    return module, calls


def test_cached_by_content_and_never_stale(tmp_path, silver):
    module, calls = silver
    root, cache = tmp_path / "data", tmp_path / "cache"
    corpus(root, "train", ["ein Hund", "eine Katze läuft"], ["a dog", "a cat runs"])
    first = module.cached_alignment(root, cache, "train", "de", "en")
    assert first.read_text() == "0-0 1-1\n0-0 1-1 2-2\n"
    assert calls == [(["ein Hund", "eine Katze läuft"], ["a dog", "a cat runs"], 2)]  # train alone
    assert module.cached_alignment(root, cache, "train", "de", "en") == first and len(calls) == 1  # cache hit
    corpus(root, "train", ["ein Hund", "eine Katze rennt"], ["a dog", "a cat runs"])  # one word changed
    second = module.cached_alignment(root, cache, "train", "de", "en")
    assert second != first and len(calls) == 2
    assert module.cached_alignment(root, cache, "train", "en", "de") not in (first, second)  # direction is keyed
    second.write_text("0-0\n")  # an incomplete file under the right key is rebuilt
    assert module.cached_alignment(root, cache, "train", "de", "en") == second and len(calls) == 4
    assert second.read_text().count("\n") == 2
    assert not [p for p in second.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_another_split_is_aligned_with_train_before_it(tmp_path, silver):
    module, calls = silver
    root = tmp_path / "data"
    corpus(root, "train", ["ein Hund", "eine Katze"], ["a dog", "a cat"])
    corpus(root, "test_2016_flickr", ["Hunde laufen schnell"], ["dogs run fast"])
    path = module.cached_alignment(root, tmp_path / "cache", "test_2016_flickr", "de", "en")
    assert calls[0] == (["ein Hund", "eine Katze", "Hunde laufen schnell"], ["a dog", "a cat", "dogs run fast"], 1)
    assert path.read_text() == "0-0 1-1 2-2\n" and "test_2016_flickr-de-en-" in path.name


def test_unequal_files_and_a_missing_split_say_what_to_fix(tmp_path, silver):
    module, _ = silver
    root = tmp_path / "data"
    corpus(root, "train", ["ein Hund", "eine Katze"], ["a dog"])
    with pytest.raises(SystemExit, match="de and en files differ in line count"):
        module.cached_alignment(root, tmp_path / "cache", "train", "de", "en")
    with pytest.raises(SystemExit, match="set NMT_DATA_DIR"):
        module.cached_alignment(root, tmp_path / "cache", "val", "de", "en")

"""nmt-translate decode.alignment=hard|soft: each output line gets ` ||| ` and its word alignment, read from the
rows the search kept; the links equal the argmax of a teacher-forced pass over the printed output."""
from types import SimpleNamespace

import pytest
import torch
from helpers import TINY_RNN, TINY_TRANSFORMER, TOY_TRAIN, compose_cfg, train

from nmt.alignment.extract import links_from_matrix, selections, word_matrix
from nmt.alignment.links import format_pharaoh
from nmt.cli.common import decode_settings
from nmt.cli.translate import printed_words, supervised_selection, translate
from nmt.decoding import translate_lines
from nmt.decoding.inspect import output_attention
from nmt.runs.trained import load_trained

CPU = torch.device("cpu")
AUTO = "dec.1.cross:mean"  # decode.selection=auto on a 2-layer, 2-head Transformer


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 2-layer 2-head Transformer trained 40 steps on the toy copy task (outputs of several words), and an
    input file with an empty line."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("translate_alignment")
    cfg = compose_cfg([o for o in TOY_TRAIN if o not in TINY_RNN] + TINY_TRANSFORMER +
                      [f"run_dir={tmp / 'run'}", f"data.cache_dir={tmp / 'cache'}", "data.corpus.task=copy",
                       "trainer.max_steps=40", "trainer.valid_every=40", "trainer.num_threads=1",
                       "logger.probe_sentences=0", "logger.stats_sentences=0"])
    train(cfg)
    from hydra.utils import instantiate
    src = instantiate(cfg.data.corpus).load("test")["src"][:4]
    (tmp / "in.txt").write_text("\n".join([src[0], "", *src[1:]]) + "\n")
    return tmp / "run", tmp / "in.txt"


def printed(toy_run, capsys, *overrides: str) -> tuple[list[str], object]:
    """nmt-translate's stdout lines, and its settings and translations recomputed in-process."""
    run, inp = toy_run
    cfg = compose_cfg([f"run_dir={run}", "device=cpu", f"input={inp}", "decode.max_len_a=0.5",
                       "decode.max_len_b=4", *overrides], "translate")
    translate(cfg)
    trained = load_trained(run, "best", CPU)
    result = translate_lines(trained.model, trained.src_tok, trained.tgt_tok, inp.read_text().splitlines(),
                             decode_settings(cfg), CPU)
    return capsys.readouterr().out.splitlines(), SimpleNamespace(trained=trained, result=result)


def forced_maps(got, outputs: list[list[int]]):
    """{slot: (H, T + 1, S)} of one teacher-forced pass over each decoded input's given output."""
    tok = got.trained.tgt_tok
    return output_attention(got.trained.model, got.result.src_ids, outputs, pad_id=tok.pad_id, bos_id=tok.bos_id,
                            eos_id=tok.eos_id, device=CPU)


def forced_links(maps, src_w: list[int], out_w: list[int], selection: str) -> str:
    """Pharaoh argmax links of a forced pass's maps {slot: (H, T + 1, S)}, the eos row left out."""
    if not src_w or not out_w:
        return ""
    m = selections(maps)[selection][: len(out_w)]  # (T, S)
    return format_pharaoh(links_from_matrix(word_matrix(m, src_w, out_w), None))


class Pieces:
    """A tokenizer whose ids are positions in a piece list; a piece prints without its "▁", <s> prints nothing."""

    def __init__(self, pieces: list[str]):
        self.table = pieces

    def pieces(self, ids):
        return [self.table[i] for i in ids]

    def decode(self, ids):
        return ["" if self.table[i] == "<s>" else self.table[i].lstrip("▁") for (i,) in ids]


def test_printed_words_join_what_prints_nothing_to_the_next_word():
    for pieces, words in [(["▁", "▁a", "b", "▁", "<s>", "▁c", "▁"], [0, 0, 0, 1, 1, 1, 1]),
                          (["▁Ein", "▁Hund", "e", "▁."], [0, 1, 1, 2]), (["<s>", "▁"], []), ([], [])]:
        assert printed_words(Pieces(pieces), list(range(len(pieces)))) == words


def words(got, k: int, out: list[int]) -> tuple[list[int], list[int]]:
    return printed_words(got.trained.src_tok, got.result.src_ids[k]), printed_words(got.trained.tgt_tok, out)


def test_hard_links_are_the_argmax_of_a_forced_pass_over_the_printed_output(toy_run, capsys):
    lines, got = printed(toy_run, capsys, "decode.alignment=hard", "decode.beam_size=3")
    res = got.result
    assert len(lines) == 5 and lines[1] == " ||| "  # one line per input; the empty line has no links
    assert [line.split(" ||| ")[0] for line in lines] == res.lines
    maps = forced_maps(got, res.hyp.tokens)
    for k, i in enumerate(res.decoded):
        src_w, out_w = words(got, k, res.hyp.tokens[k])
        text, links = lines[i].split(" ||| ")
        assert links == forced_links(maps[k].maps, src_w, out_w, AUTO)
        pairs = [tuple(map(int, link.split("-"))) for link in links.split()]
        assert sorted(j for _, j in pairs) == list(range(len(text.split())))  # one link per output word
        assert all(i_ < len(got.trained.src_tok.decode([res.src_ids[k]])[0].split()) for i_, _ in pairs)


def test_soft_weights_are_the_word_matrix_of_a_forced_pass(toy_run, capsys):
    lines, got = printed(toy_run, capsys, "decode.alignment=soft", "decode.beam_size=2",
                         "decode.selection=dec.0.cross:h1")
    res = got.result
    maps = forced_maps(got, res.hyp.tokens)
    for k, i in enumerate(res.decoded):
        src_w, out_w = words(got, k, res.hyp.tokens[k])
        soft = lines[i].split(" ||| ")[1]
        if not out_w:
            assert soft == ""
            continue
        W = torch.tensor([[float(w) for w in word.split(",")] for word in soft.split(" ")])  # (Tw, Sw)
        m = selections(maps[k].maps)["dec.0.cross:h1"][: len(out_w)]  # (T, S) head 1, eos row left out
        torch.testing.assert_close(W, word_matrix(m, src_w, out_w), atol=6e-5, rtol=0)
        assert W.size(0) == len(lines[i].split(" ||| ")[0].split())
        torch.testing.assert_close(W.sum(-1), torch.ones(W.size(0)), atol=1e-3, rtol=0)


def test_nbest_lines_carry_each_outputs_own_links(toy_run, capsys):
    lines, got = printed(toy_run, capsys, "decode.alignment=hard", "decode.beam_size=3", "decode.nbest=2")
    res = got.result
    assert "1 |||  ||| 0.0000 ||| " in lines
    rows = [line.split(" ||| ") for line in lines if not line.startswith("1 ||| ")]
    assert all(len(r) == 4 for r in rows) and len(rows) == sum(len(n) for n in res.hyp.nbest)
    outputs = [out for outs in res.hyp.nbest for out in outs]
    owners = [k for k, outs in enumerate(res.hyp.nbest) for _ in outs]
    maps = output_attention(got.trained.model, [res.src_ids[k] for k in owners], outputs, pad_id=0,
                            bos_id=got.trained.tgt_tok.bos_id, eos_id=got.trained.tgt_tok.eos_id, device=CPU)
    for r, k, out, m in zip(rows, owners, outputs, maps):
        assert int(r[0]) == res.decoded[k]
        assert r[3] == forced_links(m.maps, *words(got, k, out), AUTO)
    assert len({r[3] for r in rows}) > 1


def test_auto_reads_the_supervised_head_of_a_run_trained_with_align_loss():
    from helpers import tiny_model
    model = tiny_model([], base=TINY_TRANSFORMER)
    decode = decode_settings(compose_cfg(["run_dir=x", "decode.alignment=hard"], "translate"))
    supervised = {"weight": 1.0, "slot": "penultimate", "head": 1, "kind": "soft", "centre_weight": 0.0}
    run = SimpleNamespace(config=SimpleNamespace(values={"trainer": {"align_loss": supervised}}), model=model)
    assert supervised_selection(decode, run).selection == "dec.0.cross:h1"
    off = SimpleNamespace(config=SimpleNamespace(values={"trainer": {"align_loss": {**supervised, "weight": 0.0}}}),
                          model=model)
    assert supervised_selection(decode, off).selection == "auto"
    named = decode_settings(compose_cfg(["run_dir=x", "decode.alignment=hard", "decode.selection=dec.1.cross:h0"],
                                        "translate"))
    assert supervised_selection(named, run).selection == "dec.1.cross:h0"  # a named selection is kept

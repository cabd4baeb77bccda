"""The fim reference decoder: stop rules on text, commits on crafted token streams, and the whole
decode (events, drafts, statistics, cancellation) on a tiny FIM model."""

import threading
from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2Config

from codila_engine.models.ar import LocalAR
from codila_engine.models.checkpoint import load_tokenizer
from codila_engine.config import DecodeConfig
from codila_engine.engine import Engine
from codila_engine.decoding.fim import FimTokens, NoFimTokens, StopRules
from tiny_models import build_fim_model


# --- stop rules on text ----------------------------------------------------------------
def test_rules_take_the_suffix_first_nonblank_line_and_the_prefix_unfinished_line():
    rules = StopRules.of("def f(x):\n    y = ", "\n\n    return y\n", single_line=False)
    assert rules.repeat == "return y" and rules.line_start == "    y = "


def test_repeat_of_the_suffix_line_cuts_at_its_start():
    rules = StopRules(repeat="return y")
    text = "x + 1\n    return y\n"
    assert rules.check(text, final=False) == (text.index("    return"), 0)


def test_repeat_with_a_trailing_comment_still_counts():
    rules = StopRules.of("", "    return total / len(xs)\n", single_line=False)
    text = "sum(xs)\n    return total / len(xs)  # the mean\n"
    assert rules.check(text, final=False)[0] == len("sum(xs)\n")
    assert rules.check("sum(xs)\n    return total / len(xs)  # the", final=False) == (None, len("sum(xs)\n"))
    assert StopRules.of("", "# only a comment\n    x = 1\n", False).repeat == "# only a comment"


def test_a_line_that_may_still_become_the_repeat_is_held_back():
    rules = StopRules(repeat="return y")
    assert rules.check("x + 1\n    ret", final=False) == (None, len("x + 1\n"))
    assert rules.check("x + 1\n    return yy", final=False) == (None, len("x + 1\n    return yy"))
    assert rules.check("x + 1\n    ", final=False) == (None, len("x + 1\n"))  # blank so far: could be anything


def test_an_unterminated_repeat_counts_only_when_no_more_text_comes():
    rules = StopRules(repeat="return y")
    assert rules.check("x\n    return y", final=False)[0] is None
    assert rules.check("x\n    return y", final=True)[0] == 2


def test_first_line_is_judged_with_the_prefix_unfinished_line():
    rules = StopRules(line_start="    ", repeat="return y")
    assert rules.check("return y\n", final=False)[0] == 0  # the model wrote the suffix's line again
    rules = StopRules(line_start="z = ", repeat="return y")
    assert rules.check("return y\n", final=False) == (None, len("return y\n"))  # "z = return y" is not it


def test_single_line_ends_at_the_first_newline_and_holds_nothing_back_before_it():
    rules = StopRules(single_line=True)
    assert rules.check("a + b)\n    more", final=False)[0] == len("a + b)")
    assert rules.check("a + b", final=False) == (None, len("a + b"))
    assert rules.check("a + b", final=True) == (len("a + b"), len("a + b"))


def test_a_single_line_between_line_starts_keeps_its_line_break():
    whole = StopRules.of("def f(x):\n", "    return y\n", single_line=True)  # HumanEval single-line
    assert whole.whole_line and whole.check("    y = x\n    more", final=False)[0] == len("    y = x\n")
    for prefix, suffix in (("def f(x):\n    y = ", "\n    return y\n"), ("print(", ")\n"), ("x = 1\n", "")):
        rules = StopRules.of(prefix, suffix, single_line=True)  # the rest of a line, mid-line, completion
        assert not rules.whole_line and rules.check("a\nb", final=False)[0] == 1


def test_completion_without_suffix_never_cuts_before_the_end():
    assert StopRules().check("a\nb\n", final=False) == (None, 4)
    assert StopRules().check("a\nb\n", final=True) == (4, 4)


# --- commits on crafted token streams -----------------------------------------------------
@pytest.fixture(scope="module")
def fim_folder(tmp_path_factory):
    return build_fim_model(tmp_path_factory.mktemp("fim"))


@pytest.fixture(scope="module")
def tokenizer(fim_folder):
    return load_tokenizer(fim_folder)


class Scripted(torch.nn.Module):
    """A causal LM that emits a fixed token stream, whatever it reads; records what it read."""

    def __init__(self, stream: list[int], vocab: int) -> None:
        super().__init__()
        self.config = Qwen2Config(
            vocab_size=vocab,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
            intermediate_size=8,
        )
        self.embed = torch.nn.Embedding(vocab, 8)
        self.stream, self.vocab, self.reads = list(stream), vocab, []

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, **_):
        self.reads.append(input_ids[0].tolist())
        logits = torch.full((1, 1, self.vocab), -30.0)
        logits[0, 0, self.stream.pop(0)] = 30.0
        return SimpleNamespace(logits=logits)


def scripted_engine(tokenizer, texts: list[str], stop: str | None = None) -> tuple[Engine, Scripted]:
    stream = [i for t in texts for i in tokenizer.encode(t, add_special_tokens=False)]
    stream += [tokenizer.convert_tokens_to_ids(stop)] if stop else []
    model = Scripted(stream, len(tokenizer) + 4)
    ar = LocalAR(model, tokenizer)
    model.config.max_position_embeddings = 512
    return Engine(None, ar), model


def decode(engine, prefix, suffix, **options):
    cfg = DecodeConfig(decoder="fim", temperature=0, **options)
    decoding = engine.decode(prefix, suffix, cfg)
    events = list(decoding)
    return decoding.result, events


def test_stop_token_ends_the_middle_and_reaches_no_text(tokenizer):
    engine, _ = scripted_engine(tokenizer, ["x = 1\n"], stop="<|fim_pad|>")
    result, events = decode(engine, "a = 0\n", "print(a)\n", max_new_tokens=32)
    assert result.text == "x = 1\n"
    assert events[-1].draft == "x = 1\n" and result.stats.text_tokens == len(tokenizer.encode("x = 1\n"))


def test_each_stop_token_of_qwen_coder_stops(tokenizer):
    for stop in ("<|endoftext|>", "<|im_end|>", "<|file_sep|>", "<|fim_prefix|>", "<|repo_name|>"):
        engine, _ = scripted_engine(tokenizer, ["y"], stop=stop)
        assert decode(engine, "a = ", "\nb = 2\n", max_new_tokens=16)[0].text == "y"


def test_repeated_suffix_line_is_never_shown_and_cut_from_the_result(tokenizer):
    engine, _ = scripted_engine(tokenizer, ["x + 1\n", "    return y\n", "z = 3\n"])
    result, events = decode(engine, "def f(x):\n    y = ", "\n    return y\n", max_new_tokens=64)
    assert result.text == "x + 1\n"
    assert all("return" not in e.draft for e in events)  # held back, then dropped: never on screen
    assert not result.cancelled and result.ids.count(-1) == 0


def test_single_line_cuts_a_token_that_crosses_the_newline(tokenizer):
    # "b)\n" may be one token or several; either way the text ends right before the newline
    engine, _ = scripted_engine(tokenizer, ["a + b)\n    return c\n"])
    result, _ = decode(engine, "print(", "", max_new_tokens=32, single_line=True)
    assert result.text == "a + b)"


def test_token_limit_ends_the_middle(tokenizer):
    engine, model = scripted_engine(tokenizer, ["x = 1\n" * 20])
    result, events = decode(engine, "", "\n", max_new_tokens=8, block_size=1)
    assert result.stats.tokens == 8 and len(model.reads) == 8
    assert events[-1].draft == result.text


def test_prompt_is_prefix_suffix_middle_and_then_one_token_per_forward(tokenizer):
    engine, model = scripted_engine(tokenizer, ["abc"], stop="<|im_end|>")
    decode(engine, "P", "S", max_new_tokens=8)
    fim = FimTokens.of(tokenizer)
    p, s = tokenizer.encode("P"), tokenizer.encode("S")
    assert model.reads[0] == [fim.prefix, *p, fim.suffix, *s, fim.middle]
    assert all(len(r) == 1 for r in model.reads[1:])


def test_tokenizer_without_fim_tokens_is_a_clear_error(tiny_pair):
    with pytest.raises(NoFimTokens, match="<\\|fim_prefix\\|>"):
        FimTokens.of(load_tokenizer(tiny_pair[1]))


# --- the real decode on a tiny FIM model --------------------------------------------------------
@pytest.fixture(scope="module")
def fim_engine(fim_folder):
    return Engine.load(None, fim_folder, device="cpu")


def test_engine_with_an_ar_alone_runs_fim_by_default_and_refuses_diffusion(fim_engine):
    assert fim_engine.resolve(DecodeConfig()).decoder == "fim"
    with pytest.raises(ValueError, match="codila decoder needs a DLM and an AR"):
        fim_engine.decode("a", "", DecodeConfig(decoder="codila"))


def test_fim_decode_streams_drafts_and_matches_greedy_generation(fim_engine):
    cfg = DecodeConfig(temperature=0, max_new_tokens=12, block_size=1)
    decoding = fim_engine.decode("def add(a, b):\n", "", cfg)
    events = list(decoding)
    result = decoding.result
    assert [e.iteration for e in events] == list(range(1, len(events) + 1))
    assert events[-1].draft == result.text and result.stats.first_commit_s is not None
    # the same tokens as transformers' own greedy generation from the same prompt
    tok, model = fim_engine.ar.tokenizer, fim_engine.ar.model
    fim = FimTokens.of(tok, (fim_engine.ar.eos_id,))
    prompt = torch.tensor([fim.prompt(tok.encode("def add(a, b):\n"), [])])
    out = model.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=sorted(fim.stops))[
        0, prompt.shape[1] :
    ]
    assert not set(out.tolist()) & fim.stops and len(result.text) > 0  # the check below is not vacuous
    assert result.ids == out.tolist()


def test_fim_decode_cancels_between_commits(fim_engine):
    cancel = threading.Event()
    decoding = fim_engine.decode("x = ", "", DecodeConfig(temperature=0, max_new_tokens=40), cancel=cancel)
    for event in decoding:
        cancel.set()
    assert decoding.result.cancelled and decoding.result.stats.iterations == 1

"""Plain fill-in-the-middle decoding: the reference every CoDiLA number is compared with.

The AR model alone decodes the span left to right from Qwen2.5-Coder's FIM prompt
`<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`, one token per forward with a KV cache; this is
what a user of llama.vim or Tabby gets from the same model. It uses the canvas, the decode loop
and the events of the other decoders, so drafts, cancellation and statistics work alike.

Instruct weights never emit a stop token in FIM mode, so decoding stops at the first of:
- a stop token (EOS, end of text, any FIM or file-separator token),
- the first repeat of the suffix's first non-blank line (the model writing the suffix again;
  lines are compared as code: surrounding blanks and a trailing `#` comment do not count),
- the end of the first line, for single-line requests,
- the span's token limit.
`StopRules.check` decides on text (pure, tested on crafted streams); `FimSampler` turns its answer
into commits, holding back only the tokens of a line that might still turn out to be the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from codila_engine.models.ar import LocalAR, cache_keyword
from codila_engine.decoding.canvas import Canvas, Decode
from codila_engine.decoding.clock import Clock
from codila_engine.config import DecodeConfig
from codila_engine.decoding.events import Commit
from codila_engine.sampling import sample

FIM_NAMES = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
STOP_NAMES = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|im_start|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|repo_name|>",
)


class NoFimTokens(ValueError):
    """The AR's tokenizer has no FIM tokens, so it cannot be a FIM model."""


@dataclass(frozen=True)
class FimTokens:
    prefix: int
    suffix: int
    middle: int
    stops: frozenset[int]

    @classmethod
    def of(cls, tokenizer, eos_ids: tuple[int | None, ...] = ()) -> "FimTokens":
        vocab = tokenizer.get_vocab()
        missing = [name for name in FIM_NAMES if name not in vocab]
        if missing:
            raise NoFimTokens(
                f"the AR's tokenizer has no {', '.join(missing)}: the fim decoder needs a FIM-trained "
                "model such as Qwen2.5-Coder (the default model)"
            )
        stops = {vocab[n] for n in STOP_NAMES if n in vocab} | {i for i in eos_ids if i is not None}
        prefix, suffix, middle = (vocab[n] for n in FIM_NAMES)
        return cls(prefix, suffix, middle, frozenset(stops))

    def prompt(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        return [self.prefix, *prefix_ids, self.suffix, *suffix_ids, self.middle]


@dataclass(frozen=True)
class StopRules:
    """Where the middle ends, judged on its text. `line_start` is the prefix's unfinished last
    line (the middle's first line continues it); `repeat` the suffix's first non-blank line;
    `whole_line`: a single-line middle that is a whole line (the span lies between line starts,
    as in HumanEval's single-line split) keeps its line break, else the suffix supplies it."""

    line_start: str = ""
    repeat: str | None = None
    single_line: bool = False
    whole_line: bool = False

    @classmethod
    def of(cls, prefix: str, suffix: str, single_line: bool) -> "StopRules":
        first = next((code(line) for line in suffix.split("\n") if code(line)), None)
        whole_line = single_line and prefix[-1:] in ("", "\n") and suffix[:1] not in ("", "\n")
        return cls(prefix.rsplit("\n", 1)[-1], first, single_line, whole_line)

    def check(self, text: str, final: bool) -> tuple[int | None, int]:
        """(cut, safe): the middle ends at text[:cut] if cut is not None; else text[:safe] is
        certain to stay. `final` means no more text will come (a stop token or the limit)."""
        if self.single_line and "\n" in text:
            return text.index("\n") + self.whole_line, 0
        start = 0
        lines = text.split("\n")
        for i, line in enumerate(lines):
            full = self.line_start + line if i == 0 else line
            complete = i < len(lines) - 1 or final
            if self.repeat is not None and code(full) == self.repeat and complete:
                return start, 0
            if i == len(lines) - 1:
                could_repeat = self.repeat is not None and self.repeat.startswith(code(full))
                safe = start if could_repeat else len(text)
                return (len(text) if final else None), (len(text) if final else safe)
            start += len(line) + 1
        raise AssertionError("unreachable: split always yields a last line")


def code(line: str) -> str:
    """A line as code: without surrounding blanks or a trailing `#` comment."""
    before, hash_, _ = line.partition("#")
    return before.strip() if hash_ and before.strip() else line.strip()


def committable(ids: list[int], decode: Decode, limit: int) -> int:
    """How many leading tokens of `ids` decode to text within the first `limit` characters
    (a token is taken whole or not at all)."""
    count = 0
    for k in range(1, len(ids) + 1):
        if len(decode(ids[:k])) > limit:
            break
        count = k
    return count


class FimSampler:
    """Left-to-right FIM decoding as a sampler step: each call commits at least one token."""

    def __init__(
        self,
        ar: LocalAR,
        fim: FimTokens,
        canvas: Canvas,
        cfg: DecodeConfig,
        rules: StopRules,
        generator: torch.Generator | None,
    ) -> None:
        self.model, self.tokenizer = ar.model, ar.tokenizer
        self.fim, self.canvas, self.cfg, self.rules, self.generator = fim, canvas, cfg, rules, generator
        self.cache = DynamicCache(config=ar.model.config)
        self.cache_keyword = cache_keyword(ar.model)  # `cache` or, before transformers 5.2x, `past_key_values`
        self.ids: list[int] = []  # every token decoded so far; the first `committed` are on the canvas
        self.committed = 0
        self.next_input = fim.prompt(canvas.prefix_ids, canvas.suffix_ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    @torch.inference_mode()
    def next_token(self) -> int:
        device = self.model.get_input_embeddings().weight.device
        inputs = torch.tensor([self.next_input], device=device)
        kw = {self.cache_keyword: self.cache}
        logits = self.model(input_ids=inputs, use_cache=True, logits_to_keep=1, **kw).logits[0, -1]
        return int(sample(logits.float(), self.cfg.temperature, self.cfg.top_p, self.generator))

    def __call__(self, clock: Clock) -> Commit:
        while True:
            with clock.phase("ar"):
                token = self.next_token()
            with clock.phase("select"):
                stopped = token in self.fim.stops
                if not stopped:
                    self.ids.append(token)
                    self.next_input = [token]
                final = stopped or len(self.ids) == self.canvas.span_length
                text = self.decode(self.ids)
                cut, safe = self.rules.check(text, final)
                if cut is not None:
                    return self.finish(text[:cut])
                take = committable(
                    self.ids[self.committed :], self.decode, safe - len(self.decode(self.ids[: self.committed]))
                )
                if take:
                    offsets = list(range(self.committed, self.committed + take))
                    self.committed += take
                    return Commit(offsets, self.ids[offsets[0] : self.committed], "ar")

    def finish(self, middle: str) -> Commit:
        """Commit the rest of `middle` and end the span: whole tokens where they fit inside it,
        the text of a token cut in two encoded again."""
        done = self.decode(self.ids[: self.committed])
        rest = self.ids[self.committed :]
        take = committable(rest, self.decode, len(middle) - len(done))
        tail = middle[len(self.decode(self.ids[: self.committed + take])) :]
        ids = rest[:take] + (self.tokenizer.encode(tail, add_special_tokens=False) if tail else [])
        ids = ids[: self.canvas.span_length - self.committed]
        offsets = list(range(self.committed, self.committed + len(ids)))
        self.committed += len(ids)
        return Commit(offsets, ids, "ar", end=True)

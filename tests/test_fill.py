"""What the editor inserts for a span (lead and trim) and how client settings are read."""

from __future__ import annotations

import pytest

from codila_engine.config import DecodeConfig
from lsp_server.fill import lead, trim
from lsp_server.settings import InfillLimits, Settings, SettingsError, apply_options, as_options
from lsp_server.spans import Span, choose_span

CURSOR = "\u25ae"


def span_of(marked: str) -> tuple[Span, str]:
    text = marked.replace(CURSOR, "")
    return choose_span(text, marked.index(CURSOR)), text


def test_lead_after_block_header_starts_an_indented_line():
    span, text = span_of("def f(x):\u25ae\n")
    assert span.kind == "block_body" and lead(text, span) == "\n    "


def test_lead_on_blank_indented_line_adds_only_missing_indent():
    span, text = span_of("def f(x):\n  \u25ae\n")
    assert lead(text, span) == span.indent[2:]
    span, text = span_of("def f(x):\n    \u25ae\n")
    assert lead(text, span) == ""


def test_lead_is_empty_mid_line():
    span, text = span_of("print(\u25ae)\n")
    assert span.kind == "line_rest" and lead(text, span) == ""


def test_trim_line_rest_keeps_one_line():
    span, _ = span_of("x = foo(\u25ae)\n")
    assert trim("a, b)\nprint(x)", span, "\n") == "a, b)"


def test_trim_body_stops_at_dedent_and_drops_repeated_suffix():
    span, text = span_of("def f(x):\u25ae\n\nprint(f(1))\n")
    fill = lead(text, span) + "y = x + 1\n    return y\nprint(f(1))\nmore()"
    assert trim(fill, span, text[span.end :]) == "\n    y = x + 1\n    return y"
    span, text = span_of("def f(x):\u25ae\n    return y\n")
    fill = lead(text, span) + "y = x * 2\n    return y\n\n"
    assert trim(fill, span, text[span.end :]) == "\n    y = x * 2"


def test_settings_from_client_options():
    settings, ignored = apply_options(
        Settings(),
        {
            "dlm": "/m/dlm",
            "ar": "/m/ar",
            "blockSize": 8,
            "mode": "dynamic",
            "threshold": 0.5,
            "spanCaps": {"lineRest": 5, "bogus": 1},
            "infillMargin": 1.0,
            "colour": "red",
        },
    )
    assert settings.decode == DecodeConfig(block_size=8, mode="dynamic", threshold=0.5, max_new_tokens=1)
    assert settings.caps.line_rest == 5 and settings.infill.margin == 1.0
    assert settings.model_key == ("/m/dlm", "/m/ar", None, None, None, None, None, None, "torch")
    defaults, _ = apply_options(Settings(), {"decoder": "dream"})  # no folders: the decoder picks the default DLM
    assert defaults.model_key[5] == "dlm" and apply_options(Settings(), {})[0].model_key[5] is None
    remote, _ = apply_options(Settings(), {"engineUrl": "http://127.0.0.1:8000", "engineTokenFile": "/t"})
    assert remote.model_key[6:8] == ("http://127.0.0.1:8000", "/t")  # a new team server means a new engine
    assert ignored == ["colour", "spanCaps.bogus"]
    nested, _ = apply_options(settings, {"codila": {"scope": 3}})  # didChangeConfiguration shape
    assert nested.decode.scope == 3 and nested.decode.block_size == 8


@pytest.mark.parametrize(
    "options,message",
    [
        ({"blockSize": 0}, "setting 'blockSize': must be a whole number of tokens >= 1, got 0"),
        ({"mode": "turbo"}, "setting 'mode': must be one of static, dynamic, got 'turbo'"),
        ({"threshold": float("nan")}, "setting 'threshold': must be a finite mean entropy"),
        ({"spanCaps": {"lineRest": -1}}, "'spanCaps.lineRest': must be an integer >= 1, got -1"),
        ({"spanCaps": 3}, "spanCaps must be an object"),
        ({"infillMinTokens": 9, "infillMaxTokens": 4}, "infillMinTokens <= infillMaxTokens"),
        ({"dlm": 5}, "'dlm': must be a string or null"),
        ({"dtype": "int8"}, "'dtype': must be one of auto, float32"),
        ("fast", "must be a JSON object"),
        ({"codila": {"seed": "abc"}}, "'seed': must be an integer or null, got 'abc'"),
        ({"placeholder": 5}, "'placeholder': must be a string, got 5"),
        ({"fast": "yes"}, "'fast': must be true or false, got 'yes'"),
        ({"blockSize": 4.0}, "'blockSize': must be an integer, got 4.0"),
        ({"seed": 2**64}, "'seed': must be in \\[0, 2\\^63\\)"),
        ({"temperature": 1e-300}, "'temperature': must be 0 \\(greedy\\) or at least 0.0001"),
        ({"maxContext": 10**6}, "'maxContext': must be at most 32768"),
        ({"spanCaps": {"blockBody": 3000}}, "'spanCaps.blockBody': 3000 tokens do not fit maxContext 2048"),
        ({"maxContext": 128}, "'spanCaps.blockBody': 64 tokens do not fit|'infillMaxTokens': 256 tokens do not fit"),
        ({"infillMargin": float("inf")}, "'infillMargin': must be a number in \\[0, 100\\]"),
        ({"suggestions": 0}, "'suggestions': must be an integer from 1 to 5, got 0"),
        ({"device": "cu\ud800da"}, "'device': must be valid Unicode text"),
    ],
)
def test_bad_settings_name_the_problem(options, message):
    with pytest.raises(SettingsError, match=message):
        apply_options(Settings(), options)


def test_a_rejected_change_applies_nothing_and_settings_round_trip():
    base, _ = apply_options(Settings(), {"blockSize": 8, "suggestions": 3})
    with pytest.raises(SettingsError):
        apply_options(base, {"blockSize": 2, "scope": 4, "seed": "abc"})  # two good keys, one bad
    assert base.decode.block_size == 8 and base.decode.scope == 10
    assert apply_options(Settings(), as_options(base)) == (base, [])


def test_infill_mask_tokens_from_selection():
    limits = InfillLimits(margin=0.5, min_tokens=8, max_tokens=100, empty_selection_tokens=40)
    assert limits.mask_tokens(0) == 40
    assert limits.mask_tokens(2) == 8
    assert limits.mask_tokens(20) == 30
    assert limits.mask_tokens(1000) == 100

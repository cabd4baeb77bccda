import json

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from codila_engine.train.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer, token_id, train_tokenizer

CODE = [
    f"def handler_{i}(request, count={i}):\n"
    f'    """Handle request number {i}."""\n'
    f"    for item in request.items:\n"
    f"        if item.value > {i * 7}:\n"
    f"            return item.name\n"
    f"    return None\n"
    for i in range(300)
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer(CODE, vocab_size=400, show_progress=False), path)
    return path


def test_files_and_special_tokens(folder):
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    special = json.loads((folder / "special_tokens_map.json").read_text())
    assert special["eos_token"] == special["pad_token"] == "<|endoftext|>"
    assert special["mask_token"] == "<|mask|>"
    for cls in (PreTrainedTokenizerFast, AutoTokenizer):
        tok = cls.from_pretrained(str(folder))
        ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        assert len(set(ids)) == 4 and None not in ids
        assert tok.eos_token_id == tok.pad_token_id == ids[0]
        assert tok.mask_token_id == ids[1]
        assert tok.decode([ids[2]]) == "<think>"
        assert 300 < len(tok) <= 400


def test_round_trip_any_text(folder):
    tok = load_tokenizer(folder)
    texts = [
        "def grüße(naïve: str) -> str:\r\n\treturn f'日本語 {naïve} 🐍'  # ünïcödé\n",
        "x = '\\x00\\u2028'\n\n\n        \t  \n",
        "s = 'e\u0301'  # a decomposed accent stays decomposed\n",
    ]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_python_friendly_splits(folder):
    tok = load_tokenizer(folder)
    assert tok.tokenize("12345") == list("12345"), "digits are split one by one"
    pieces = tok.tokenize("        return item.name")
    assert pieces[0].strip("Ġ") == "", "indentation is a whitespace token of its own"
    assert tok.convert_tokens_to_string(pieces) == "        return item.name"
    assert "Ġreturn" in tok.get_vocab()


def test_special_token_in_text_is_one_token(folder):
    tok = load_tokenizer(folder)
    ids = tok("a<|mask|>b", add_special_tokens=False)["input_ids"]
    assert tok.mask_token_id in ids


def test_errors_name_the_problem(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="codila train tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(CODE, vocab_size=100)
    with pytest.raises(ValueError, match="no '<nope>' token"):
        token_id(load_tokenizer(folder), "<nope>", "this test")

"""Instruction/response data (Ling-Coder-SFT and chat-style JSONL) as training documents.

For these the target region is the response: prompts are context, never a training target.
"""

from __future__ import annotations

import json
from pathlib import Path

from codila_engine.train.corpus import CorpusReport, Document

_USER = {"user", "human"}
_ASSISTANT = {"assistant", "gpt", "bot"}


def _from_messages(messages: list) -> tuple[str, str]:
    """Last assistant turn is the response; every earlier turn (system too) is the prompt."""
    turns = [(str(m.get("role", m.get("from", ""))).lower(), m.get("content", m.get("value", ""))) for m in messages]
    last = max((i for i, (role, _) in enumerate(turns) if role in _ASSISTANT), default=None)
    if last is None or not any(role in _USER for role, _ in turns[:last]):
        raise ValueError("messages need a user turn followed by an assistant turn")
    return "\n\n".join(text for _, text in turns[:last]), turns[last][1]


def parse_record(row: dict) -> tuple[str, str]:
    """(prompt, response) from {"instruction", ["input"], "response"|"output"} or {"messages": [...]}."""
    if "messages" in row or "conversations" in row:
        return _from_messages(row.get("messages") or row.get("conversations") or [])
    response = row.get("response", row.get("output"))
    if "instruction" not in row or response is None:
        raise ValueError(f"expected instruction/response or messages fields, got {sorted(row)}")
    prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return prompt, response


def read_instruction_jsonl(path: str | Path) -> tuple[list[Document], CorpusReport]:
    """Documents from one JSONL file; a malformed line is an error naming file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"instruction data {path} does not exist (check --data-jsonl)")
    docs = []
    report = CorpusReport()
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.found += 1
            try:
                prompt, response = parse_record(json.loads(line))
            except (ValueError, AttributeError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not an instruction/response record ({exc})") from exc
            if not response.strip():
                report.skipped["empty response"] += 1
                continue
            docs.append(Document(f"{path}:{number}", response, prompt))
    if not docs:
        raise ValueError(f"{path} holds no instruction/response records")
    return docs, report

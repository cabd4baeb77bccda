"""From the command line's data options to train and held-out token sequences, cached.

Reading and tokenizing a large corpus takes minutes, so the sequences are cached in the output
folder under a fingerprint of the documents, the tokenizer and seq_len: a resumed or repeated
run reuses them, a run with other data or settings rebuilds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codila_engine.train.corpus import Corpus, CorpusReport, Document, build_corpus, read_python_dirs
from codila_engine.train.instructions import read_instruction_jsonl
from codila_engine.train.sequences import SequenceData, to_sequences


@dataclass
class TrainingData:
    train: SequenceData
    held_out: SequenceData
    report: CorpusReport
    too_long: int  # instruction pairs dropped for not fitting in seq_len


def read_documents(
    data_dirs: Sequence[str | Path] = (), data_jsonl: Sequence[str | Path] = (), progress: bool = True
) -> tuple[list[Document], CorpusReport]:
    """Documents from directories of .py files and/or instruction JSONL files, one report for all."""
    if not data_dirs and not data_jsonl:
        raise ValueError("no training data: give --data-dir (Python sources) and/or --data-jsonl (instruction pairs)")
    docs: list[Document] = []
    report = CorpusReport()
    parts = [read_python_dirs(data_dirs, progress)] if data_dirs else []
    parts += [read_instruction_jsonl(path) for path in data_jsonl]
    for part_docs, part_report in parts:
        docs += part_docs
        report.found += part_report.found
        report.skipped.update(part_report.skipped)
    return docs, report


def load_corpus(
    data_dirs: Sequence[str | Path] = (),
    data_jsonl: Sequence[str | Path] = (),
    *,
    humaneval_dir: str | Path | None = None,
    held_out_fraction: float = 0.02,
    max_documents: int | None = None,
    progress: bool = True,
) -> Corpus:
    docs, report = read_documents(data_dirs, data_jsonl, progress)
    return build_corpus(
        docs, report, humaneval_dir=humaneval_dir, held_out_fraction=held_out_fraction, max_documents=max_documents
    )


def _fingerprint(docs: list[Document], tokenizer, seq_len: int) -> str:
    h = hashlib.sha256(f"{seq_len}\n".encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    for doc in docs:
        h.update(doc.digest.encode())
    return h.hexdigest()


def cached_sequences(
    docs: list[Document], tokenizer, seq_len: int, cache: Path | None, progress: bool = True
) -> tuple[SequenceData, int]:
    """Token sequences of `docs`, from `cache` when it was made from the same inputs."""
    fingerprint = _fingerprint(docs, tokenizer, seq_len)
    data = SequenceData.load(cache, fingerprint) if cache is not None else None
    if data is not None:
        return data, 0
    data, too_long = to_sequences(docs, tokenizer, seq_len, progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        data.save(cache, fingerprint)
    return data, too_long


def prepare_data(
    corpus: Corpus, tokenizer, seq_len: int, cache_dir: Path | None = None, progress: bool = True
) -> TrainingData:
    def cache(name: str) -> Path | None:
        return cache_dir / f"{name}-{seq_len}.safetensors" if cache_dir is not None else None

    train, dropped = cached_sequences(corpus.train, tokenizer, seq_len, cache("train"), progress)
    held_out, dropped_val = cached_sequences(corpus.held_out, tokenizer, seq_len, cache("held_out"), progress)
    if len(train) == 0:
        raise ValueError(f"no training sequences fit in seq_len={seq_len}: raise --seq-len")
    return TrainingData(train, held_out, corpus.report, dropped + dropped_val)

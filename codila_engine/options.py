"""Command-line options for the models and for decoding, shared by `codila` and its subcommands:
the flags of SETTINGS (config.py), and the DecodeConfig they make."""

from __future__ import annotations

import argparse
from typing import Any

from codila_engine.config import SETTINGS, DecodeConfig, OptionError, Setting


class UsageError(ValueError):
    """A flag or input the user can fix: one line, exit code 2."""


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _flags(record: str) -> list[Setting]:
    return [s for s in SETTINGS if s.record == record and s.cli]


def add_args(parser: argparse.ArgumentParser, settings: list[Setting]) -> None:
    """One flag per setting; its help ends with the default (and unit). A setting that applies to one
    decoder is None unless given, so check_applies can tell."""
    for s in settings:
        if s.type is bool:
            parser.add_argument(flag(s.name), action="store_true", help=f"{s.help} (default: off)")
            continue
        shown = s.zero if s.applies and s.zero else s.shown  # its 0 is spelled by leaving the flag out
        kwargs: dict[str, Any] = {"choices": s.choices} if s.choices else {"type": s.type}
        if isinstance(s.metavar, tuple):
            kwargs["nargs"] = len(s.metavar)
        parser.add_argument(
            flag(s.name),
            default=None if s.applies else s.default,
            metavar=s.metavar,
            help=f"{s.help} (default: {shown})",
            **kwargs,
        )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    add_args(parser, _flags("model"))


def add_decode_args(parser: argparse.ArgumentParser) -> None:
    add_args(parser, _flags("decode"))


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    """The flags as decoding options; an out-of-range value names its flag."""
    given = {s: getattr(args, s.name) for s in _flags("decode") if getattr(args, s.name) is not None}
    for s, value in given.items():
        if s.applies and s.zero and not s.in_range(value):  # 0 ("off") is the flag left out
            raise UsageError(f"{flag(s.name)}: must be {s.rule}, got {value}")
    try:
        return DecodeConfig(**{s.name: value for s, value in given.items()})
    except OptionError as exc:
        raise UsageError(f"{flag(exc.field)}: {exc.problem}") from None


def check_applies(args: argparse.Namespace, cfg: DecodeConfig) -> None:
    """Flags that mean nothing for the decoder and mode that will run are an error, not ignored."""
    given = [s for s in _flags("decode") if s.applies and getattr(args, s.name) is not None]
    for applies in dict.fromkeys(s.applies for s in given):  # each (decoder, mode) once, in order
        decoder, mode = applies[0], applies[1:]
        if cfg.decoder == decoder and mode in ((), (cfg.mode,)):
            continue
        names = [flag(s.name) for s in given if s.applies == applies]
        said = f"{', '.join(names)} {'applies' if len(names) == 1 else 'apply'} to"
        if mode:
            raise UsageError(
                f"{said} --mode {mode[0]} of the {decoder} decoder only "
                f"(this run: {cfg.decoder} decoder, {cfg.mode} mode)"
            )
        raise UsageError(f"{said} --decoder {decoder} only (this run: the {cfg.decoder} decoder)")

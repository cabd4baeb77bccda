"""CoDiLA: Coherent Diffusion with Local Autoregression, for code completion and infilling.

A diffusion LM (Dream format) predicts a marginal for every masked token of a span; a small
autoregressive model (Qwen3) turns a block of those marginals, given as soft tokens, into a
coherent run of B tokens. See README.md for the algorithm and the module map.
"""

import os

# Nothing in this package may reach a model hub: every model comes from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from codila_engine.config import DecodeConfig  # noqa: E402
from codila_engine.decoding.events import Event, Result, Stats  # noqa: E402

__all__ = ["DecodeConfig", "Event", "Result", "Stats", "installed_version"]


def installed_version() -> str | None:
    """codila's version from its installed metadata; None when running from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codila")
    except PackageNotFoundError:
        return None

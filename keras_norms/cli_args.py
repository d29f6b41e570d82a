"""Argument types shared by the command lines (`keras-norms`, its `export` and `compare` commands).

The one place the CLIs share: it sits below every one of them (`keras_norms.cli`,
`keras_norms.export.cli`, `keras_norms.study.cli`) and imports nothing but the standard library,
so a CLI never imports another one for a helper.

Examples:
    >>> import argparse
    >>> from keras_norms.cli_args import norm_list, positive_int
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--epochs", type=positive_int)
    >>> _ = parser.add_argument("--norms", type=norm_list)
    >>> args = parser.parse_args(["--epochs", "3", "--norms", "batch, group"])
    >>> args.epochs, args.norms
    (3, ['batch', 'group'])
"""

from __future__ import annotations

import argparse

__all__ = ["norm_list", "positive_int"]


def norm_list(text: str) -> list[str]:
    """A comma-separated list of norms, as an `argparse` type: `"batch, group"` gives `["batch", "group"]`.

    Raises:
        argparse.ArgumentTypeError: The list is empty.
    """
    norms = [n.strip() for n in text.split(",") if n.strip()]
    if not norms:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of norms, got {text!r}")
    return norms


def positive_int(text: str) -> int:
    """An integer >= 1, as an `argparse` type.

    Raises:
        argparse.ArgumentTypeError: `text` is not an integer, or is < 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value

"""Hypothesis strategies the webhook dialect tests share: JSON-like values in a dialect's vocabulary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st


def vocabulary(keys: Iterable[str], words: Iterable[str]) -> tuple[Any, Any, Any]:
    """Keys, scalars and nested JSON values that use a dialect's own key names and values (so that
    rendering, not only refusing, is exercised), mixed with arbitrary ones."""
    key_strategy = st.sampled_from(list(keys)) | st.text(max_size=6)
    scalars = (
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(list(words))
    )
    values = st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(key_strategy, children, max_size=6),
        max_leaves=30,
    )
    return key_strategy, scalars, values

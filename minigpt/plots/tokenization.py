"""Figures of chapter 1, tokenization."""

from __future__ import annotations

__all__: list[str] = []

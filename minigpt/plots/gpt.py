"""Figures of chapter 3, the GPT."""

from __future__ import annotations

__all__: list[str] = []

"""Figures of chapter 2, attention."""

from __future__ import annotations

__all__: list[str] = []

"""Figures of sampling (chapter 4): what each rule leaves of the next-token distribution."""

from __future__ import annotations

__all__: list[str] = []

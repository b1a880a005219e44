"""MQTT topic-filter matching (``+`` one level, ``#`` the rest): which subscriber should have got what."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=65536)
def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` per MQTT 3.1.1 section 4.7 (no ``$`` topics here)."""
    if topic_filter == "#":
        return not topic.startswith("$")
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)

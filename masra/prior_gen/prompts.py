"""Prompts: per-task instructions and JSON schemas, rendered by a per-model-family chat format.

Three tasks:
    events          whole video -> ``{"events": [{"start", "end", "description"}]}`` in seconds.
    clip_caption    the frames of one clip -> ``{"caption": "..."}`` (per-clip mode).
    dense_captions  whole video -> ``{"captions": [...]}``, one per clip (dense mode).

Model families are a registry (:data:`FAMILIES`): each renders (system, user) text into the model's
own chat format with its video placeholder. A family is picked by an explicit name, else by the
``model_type`` of a local model folder, else by a pattern in the model id. The prompt version is a
short hash of the family's format and of every instruction and schema template, so any change to a
prompt starts a new run folder instead of mixing outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM = "You are a precise video annotator. Answer with JSON only."
EVENTS_TEXT = (
    "The video lasts {duration:.1f} seconds; {n_frames} frames were sampled uniformly from it. "
    "List the distinct events that happen, in temporal order, covering the whole video. For each "
    "event give its start and end time in seconds (0 to {duration:.1f}) and a one-sentence "
    "description of what is visible (people, objects, actions, scene). Use at most {max_events} "
    'events. Answer as {{"events": [{{"start": s, "end": s, "description": "..."}}]}}.'
)
CLIP_TEXT = (
    "These frames show seconds {start:.1f} to {end:.1f} of a video. Describe what happens in them "
    'in one short sentence (at most 15 words). Answer as {{"caption": "..."}}.'
)
DENSE_TEXT = (
    "The video lasts {duration:.1f} seconds and is cut into {num_clips} consecutive clips of "
    "{clip_len:g} seconds (clip i covers seconds i*{clip_len:g} to (i+1)*{clip_len:g}). Write one short "
    "caption (at most 12 words) for every clip, in order, exactly {num_clips} captions. Answer as "
    '{{"captions": ["...", ...]}}.'
)
EVENT_TEXT_MAX_CHARS = 240
CAPTION_MAX_CHARS = 160


def events_schema(duration: float, max_events: int) -> dict[str, Any]:
    """JSON schema of the events answer (bounds times to the video and the list to ``max_events``)."""
    event = {
        "type": "object",
        "properties": {
            "start": {"type": "number", "minimum": 0, "maximum": round(duration, 3)},
            "end": {"type": "number", "minimum": 0, "maximum": round(duration, 3)},
            "description": {"type": "string", "minLength": 1, "maxLength": EVENT_TEXT_MAX_CHARS},
        },
        "required": ["start", "end", "description"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"events": {"type": "array", "items": event, "maxItems": max_events}},
        "required": ["events"],
        "additionalProperties": False,
    }


def caption_schema() -> dict[str, Any]:
    """JSON schema of one clip caption."""
    cap = {"type": "string", "minLength": 1, "maxLength": CAPTION_MAX_CHARS}
    return {
        "type": "object",
        "properties": {"caption": cap},
        "required": ["caption"],
        "additionalProperties": False,
    }


def dense_schema(num_clips: int) -> dict[str, Any]:
    """JSON schema of the dense answer: exactly ``num_clips`` captions."""
    cap = {"type": "string", "minLength": 1, "maxLength": CAPTION_MAX_CHARS}
    arr = {"type": "array", "items": cap, "minItems": num_clips, "maxItems": num_clips}
    return {
        "type": "object",
        "properties": {"captions": arr},
        "required": ["captions"],
        "additionalProperties": False,
    }


def _qwen_chat(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|video_pad|><|vision_end|>{user}<|im_end|>\n<|im_start|>assistant\n"
    )


@dataclass(frozen=True)
class PromptFamily:
    """How one model family formats a chat turn with one video.

    Attributes:
        name: registry key.
        model_types: ``model_type`` values of transformers configs of this family.
        patterns: lowercase substrings of model ids of this family.
        render: (system text, user text) -> full prompt with the video placeholder.
    """

    name: str
    model_types: tuple[str, ...]
    patterns: tuple[str, ...]
    render: Callable[[str, str], str]


FAMILIES: dict[str, PromptFamily] = {
    f.name: f
    for f in (
        PromptFamily("qwen2_vl", ("qwen2_vl",), ("qwen2-vl",), _qwen_chat),
        PromptFamily("qwen2_5_vl", ("qwen2_5_vl",), ("qwen2.5-vl", "qwen2_5_vl", "qwen2.5vl"), _qwen_chat),
        PromptFamily("qwen3_vl", ("qwen3_vl", "qwen3_vl_moe"), ("qwen3-vl", "qwen3_vl"), _qwen_chat),
    )
}


def resolve_family(model: str, family: str | None = None) -> PromptFamily:
    """The prompt family of ``model`` (a local folder or a hub id), or of the explicit ``family``."""
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"unknown prompt family {family!r}; registered: {sorted(FAMILIES)}")
        return FAMILIES[family]
    config = Path(model) / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        for fam in FAMILIES.values():
            if model_type in fam.model_types:
                return fam
    name = os.path.basename(str(model).rstrip("/")).lower()
    for fam in FAMILIES.values():
        if any(p in name for p in fam.patterns):
            return fam
    raise ValueError(
        f"no prompt family for model {model!r}; pass --prompt-family, one of {sorted(FAMILIES)}, "
        "or register a PromptFamily in masra.prior_gen.prompts.FAMILIES"
    )


def prompt_version(family: PromptFamily) -> str:
    """8-hex-digit hash of everything that shapes the prompts of ``family``."""
    parts = {
        "family": family.name,
        "format": family.render("{system}", "{user}"),
        "system": SYSTEM,
        "texts": [EVENTS_TEXT, CLIP_TEXT, DENSE_TEXT],
        "schemas": [events_schema(1.0, 1), caption_schema(), dense_schema(1)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def events_text(duration: float, n_frames: int, max_events: int) -> str:
    """The user text of the events request (no chat markup; the OpenAI backend sends it as is)."""
    return EVENTS_TEXT.format(duration=duration, n_frames=n_frames, max_events=max_events)


def clip_text(start: float, end: float) -> str:
    """The user text of one per-clip caption request."""
    return CLIP_TEXT.format(start=start, end=end)


def dense_text(duration: float, num_clips: int, clip_len: float) -> str:
    """The user text of the dense captions request."""
    return DENSE_TEXT.format(duration=duration, num_clips=num_clips, clip_len=clip_len)

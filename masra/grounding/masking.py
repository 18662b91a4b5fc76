"""The one mask convention of the grounding stage.

Boolean masks are ``True`` where an entry is real and ``False`` where it is padding, everywhere.
Masked logits are filled with :data:`MASKED_LOGIT`, a finite stand-in for ``-inf``: a softmax row
that is all padding then stays finite (uniform) instead of NaN, and ``exp(MASKED_LOGIT)`` is exactly
0 in float32 and bfloat16 next to any real logit.
"""

from __future__ import annotations

__all__ = ["MASKED_LOGIT"]

MASKED_LOGIT = -1e4

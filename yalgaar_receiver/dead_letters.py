"""The former path of :mod:`yalgaar_receiver.delivery.dead_letters`
and :mod:`yalgaar_receiver.delivery.replay`.

``yalgaar_receiver.dead_letters`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .delivery.dead_letters import *  # noqa: F403
from .delivery.dead_letters import __all__ as _all0
from .delivery.replay import *  # noqa: F403
from .delivery.replay import __all__ as _all1

__all__ = [*_all0, *_all1]

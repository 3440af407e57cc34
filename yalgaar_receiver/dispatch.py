"""The former path of :mod:`yalgaar_receiver.delivery.dispatch`
and :mod:`yalgaar_receiver.delivery.threads`.

``yalgaar_receiver.dispatch`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .delivery.dispatch import *  # noqa: F403
from .delivery.dispatch import __all__ as _all0
from .delivery.threads import *  # noqa: F403
from .delivery.threads import __all__ as _all1

__all__ = [*_all0, *_all1]

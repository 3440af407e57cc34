"""The former path of :mod:`yalgaar_receiver.delivery.dedupe`.

``yalgaar_receiver.dedupe`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .delivery.dedupe import *  # noqa: F403
from .delivery.dedupe import __all__ as __all__

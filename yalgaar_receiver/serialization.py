"""The former path of :mod:`yalgaar_receiver.delivery.serialization`.

``yalgaar_receiver.serialization`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .delivery.serialization import *  # noqa: F403
from .delivery.serialization import __all__ as __all__

"""The former path of :mod:`yalgaar_receiver.delivery.celery`.

``yalgaar_receiver.celery`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .delivery.celery import *  # noqa: F403
from .delivery.celery import __all__ as __all__

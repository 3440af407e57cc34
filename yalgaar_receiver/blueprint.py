"""The former path of :mod:`yalgaar_receiver.flask.blueprint`.

``yalgaar_receiver.blueprint`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .flask.blueprint import *  # noqa: F403
from .flask.blueprint import __all__ as __all__

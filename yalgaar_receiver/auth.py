"""The former path of :mod:`yalgaar_receiver.flask.auth`.

``yalgaar_receiver.auth`` keeps working for code written against it; new code imports
from the new path.
"""

from __future__ import annotations

from .flask.auth import *  # noqa: F403
from .flask.auth import __all__ as __all__

"""Internal: give an object fresh threads and locks in a process forked after it was built.

A forked child inherits memory, not threads: a lock that another thread held at the fork stays
held for ever, and a worker thread is simply gone. gunicorn ``--preload`` and Celery's prefork
pool fork after the application built its receiver, so each object that owns a lock or a thread
asks for a reset here.

Imports: the standard library.
"""

from __future__ import annotations

import os
import typing as t
import weakref

__all__ = ["reset_after_fork"]


def reset_after_fork(method: t.Callable[[], object]) -> None:
    """Call the bound ``method`` in every child forked from now on, while its object lives.

    The hook holds the object weakly, so registering it never keeps the object alive.
    """
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - not on the platforms CI runs
        return
    ref = weakref.WeakMethod(method)

    def reset() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=reset)

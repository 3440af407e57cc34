"""Blinker signals sent by :class:`~yalgaar_receiver.Receiver`; declarations only.

The sender is always the ``Receiver``, so ``signal.connect(func, sender=receiver)`` listens to one
receiver and ``signal.connect(func)`` to all. Receivers are called as ``func(sender, **kwargs)``.
Use the signals qualified (``signals.bind``), never imported bare: ``bind`` and ``message`` are
names an application also uses.

Decorated handlers (``@receiver.on_bind``) run first, in registration order; these signals are for
subscribers connected directly, such as metrics or a test's capture. See ``docs/signals.md``.
"""

from __future__ import annotations

from blinker import Namespace

# A namespace of our own: blinker's default one is shared by every library in the process.
_signals = Namespace()

#: ``batch=``: an envelope passed every check; sent before the first handler runs.
envelope_received = _signals.signal("envelope-received")
#: ``event=``: every presence event, after ``bind``/``unbind``; unknown actions arrive only here.
presence = _signals.signal("presence")
#: ``event=``: a :class:`~yalgaar_receiver.BindEvent`.
bind = _signals.signal("bind")
#: ``event=``: an :class:`~yalgaar_receiver.UnbindEvent`.
unbind = _signals.signal("unbind")
#: ``event=``: a :class:`~yalgaar_receiver.MessageEvent`.
message = _signals.signal("message")
#: ``event=``: an :class:`~yalgaar_receiver.UnknownEvent`.
unknown_event = _signals.signal("unknown-event")
#: ``rejection=``: a malformed item that was not dispatched.
event_rejected = _signals.signal("event-rejected")
#: ``error=``: a request refused as a whole (answered 400, 403 or 413).
envelope_rejected = _signals.signal("envelope-rejected")
#: ``event=``, ``handler=``, ``error=``: a handler or subscriber raised.
handler_failed = _signals.signal("handler-failed")
#: ``event=``: an event not run because a delivery of it was already handled (de-duplication).
duplicate_event = _signals.signal("duplicate-event")

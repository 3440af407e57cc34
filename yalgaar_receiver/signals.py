"""Blinker signals sent by :class:`~yalgaar_receiver.Receiver`; declarations only.

The sender is always the ``Receiver``, so ``signal.connect(func, sender=receiver)`` listens to one
receiver and ``signal.connect(func)`` to all. Receivers are called as ``func(sender, **kwargs)``.
Use the signals qualified (``signals.bind``), never imported bare: ``bind`` and ``message`` are
names an application also uses.

Decorated handlers (``@receiver.on_bind``) run first, in registration order; these signals are for
subscribers connected directly, such as metrics or a test's capture. See ``docs/signals.md``.

The presence signals at the end are the exception: their sender is a
:class:`~yalgaar_receiver.presence.PresenceTracker` (``docs/presence.md``).
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
#: ``event=``, ``rejection=``: a handler's payload schema refused the message of ``event``;
#: the handlers ``rejection.handlers`` names do not get it, the others do.
payload_rejected = _signals.signal("payload-rejected")
#: ``error=``: a request refused as a whole (answered 400, 403 or 413).
envelope_rejected = _signals.signal("envelope-rejected")
#: ``event=``, ``handler=``, ``error=``: a handler or subscriber raised.
handler_failed = _signals.signal("handler-failed")
#: ``event=``: an event not run because a delivery of it was already handled (de-duplication).
duplicate_event = _signals.signal("duplicate-event")
#: ``event=``, ``failures=``, ``attempts=``: an event whose handlers failed on its last allowed
#: attempt (``Receiver(max_attempts=...)``); it was kept as a dead letter and acknowledged.
event_dead_lettered = _signals.signal("event-dead-lettered")
#: ``source_hint=``, ``source=``: an envelope of one source came to the URL of the other (the
#: Yalgaar dashboard's two webhook URLs swapped); it was read as its own ``source`` says.
source_mismatch = _signals.signal("source-mismatch")

# Presence transitions: sent by a PresenceTracker (the sender), never by the Receiver; see
# docs/presence.md. Each is sent once per transition, after the tracker's decorated handlers.
#: ``channel=``, ``uuid=``: a uuid became a member of a channel.
member_joined = _signals.signal("member-joined")
#: ``channel=``, ``uuid=``: a member's departure was confirmed (after the grace time, if any).
member_left = _signals.signal("member-left")
#: ``channel=``: a channel went from 0 members to 1, after that member's ``member_joined``.
channel_occupied = _signals.signal("channel-occupied")
#: ``channel=``: a channel went from 1 member to 0, after that member's ``member_left``.
channel_vacated = _signals.signal("channel-vacated")
#: ``change=``, ``handler=``, ``error=``: a tracker's handler or subscriber raised on a
#: :class:`~yalgaar_receiver.presence.PresenceChange`.
presence_handler_failed = _signals.signal("presence-handler-failed")

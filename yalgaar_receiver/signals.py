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
#: attempt (``Receiver(max_attempts=...)``); it was kept as a dead letter and acknowledged. A
#: background dispatcher sends it too, as the sender, for the events it gives up.
event_dead_lettered = _signals.signal("event-dead-lettered")
#: ``source_hint=``, ``source=``: an envelope of one source came to the URL of the other (the
#: Yalgaar dashboard's two webhook URLs swapped); it was read as its own ``source`` says.
source_mismatch = _signals.signal("source-mismatch")
#: ``source=``, ``items=``, ``channels=``, ``at=``: an envelope held as many items as the sender
#: puts in one request (``Receiver(sender_cap=...)``), so the sender has probably dropped events
#: of that window; ``channels`` counts the envelope's items by channel.
possible_loss = _signals.signal("possible-loss")

# Instrumentation: sent only to subscribers (metrics, tracing); a receiver with none pays a
# check of each signal, not a call. The blueprint sends the request signals as the receiver.
#: ``route=``, ``method=``: the blueprint began to answer a request; ``route`` is
#: ``"webhook"``, ``"presence"``, ``"message"`` or ``"unmatched"``.
request_started = _signals.signal("request-started")
#: ``route=``, ``method=``, ``status=``, ``seconds=``, ``outcome=``: the blueprint answered;
#: ``outcome`` is the :class:`~yalgaar_receiver.Outcome` when the body was handled, else ``None``.
request_answered = _signals.signal("request-answered")
#: ``event=``, ``handler=``: a handler or event subscriber is about to be called with ``event``,
#: or a unit's deferred work (``handler`` the flush, ``event`` the first event it was given).
handler_started = _signals.signal("handler-started")
#: ``event=``, ``handler=``, ``seconds=``, ``error=``: that call returned (``error`` ``None``) or
#: raised (``error`` what it raised, which ``handler_failed`` also reports).
handler_finished = _signals.signal("handler-finished")

# Sent by a dispatcher (the sender) that runs events elsewhere.
#: ``event=``, ``carrier=``: a task for ``event`` is about to be published; a subscriber may add
#: text entries to the ``carrier`` dict, which the task carries to the worker (trace context).
task_publishing = _signals.signal("task-publishing")
#: ``event=``, ``carrier=``, ``attempt=``: a worker is about to run the task of ``event``.
task_started = _signals.signal("task-started")
#: ``event=``, ``attempt=``: the worker is done with that run of the task, whatever came of it
#: (the handlers ran, a retry is scheduled, or the event is a dead letter).
task_finished = _signals.signal("task-finished")

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
#: ``channels=``: the tracker applied binds and unbinds of these channels and delivered the
#: transitions they caused; their state may have changed without one (a departure entering its
#: grace time). Sent after each store call: once per request or envelope task.
presence_applied = _signals.signal("presence-applied")
#: ``change=``, ``handler=``, ``error=``: a tracker's handler or subscriber raised on a
#: :class:`~yalgaar_receiver.presence.PresenceChange`.
presence_handler_failed = _signals.signal("presence-handler-failed")

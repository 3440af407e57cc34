"""The smallest useful receiver: the README's snippet, unchanged.

Run it with ``flask --app examples/minimal_app.py run`` and post a webhook::

    curl -X POST http://127.0.0.1:5000/yalgaar/presence \\
      -d '{"items": {"source": "Presence", "clientKey": "ck-0123456789abcdef",
           "data": [{"channel": "lobby", "uuid": "u1", "timestamp": "1521609600",
                     "action": "bind"}]}}'
"""

from flask import Flask

from yalgaar_receiver import BindEvent, MessageEvent, Receiver, create_blueprint

receiver = Receiver(client_keys=["ck-0123456789abcdef"])


@receiver.on_bind
def joined(event: BindEvent) -> None:
    print(event.uuid, "joined", event.channel, "at", event.timestamp)


@receiver.on_message(channel="orders-*")
def order(event: MessageEvent) -> None:
    print(event.json(default=event.message))  # the text itself when it is not JSON


app = Flask(__name__)
app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
# Yalgaar dashboard: Presence URL = https://host/yalgaar/presence, Message URL = https://host/yalgaar/message

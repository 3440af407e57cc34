"""gunicorn settings for a Yalgaar receiver; every value can be overridden from the environment.

Run from the repository root::

    export YALGAAR_CLIENT_KEYS=ck-0123456789abcdef \\
        YALGAAR_URL_TOKENS=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    gunicorn -c examples/deploy_gunicorn/gunicorn_conf.py \\
        'examples.deploy_gunicorn.wsgi:create_app()'

Put it behind a reverse proxy that terminates HTTPS (Yalgaar should post to an ``https://`` URL)
and set ``FORWARDED_ALLOW_IPS`` to the proxy's address so that logs show the sender's address.
"""

from __future__ import annotations

import os

# Loopback by default: the reverse proxy on the same machine reaches it, nothing else does.
bind = [os.environ.get("BIND", "127.0.0.1:8000")]

# Webhook handlers wait on I/O (a database, a queue); threads keep one slow request from
# holding a whole worker. Two processes is a start on a small machine; measure before raising it.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("THREADS", "4"))

# Yalgaar batches events every 2 s and its retry policy is not documented: answer well within
# that. A request still running after 30 s is killed, so the sender sees a failure, not silence.
timeout = int(os.environ.get("TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5

# Recycle workers now and then, so that a slow leak in a handler never becomes an outage.
max_requests = 10_000
max_requests_jitter = 1_000

# Webhook bodies are small (200 items at most); refuse absurd request lines and header sets early.
limit_request_line = 4094
limit_request_fields = 50

# The proxies whose X-Forwarded-* headers are trusted.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = "-"
# Without the path and the query string: they hold the URL token (docs/security.md).
access_log_format = '%(h)s %(t)s "%(m)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# The receiver and the app log through the standard library: send their lines to stderr with
# gunicorn's own handler (gunicorn merges this dict over its default logging config).
logconfig_dict = {
    "loggers": {
        name: {"level": "INFO", "handlers": ["error_console"], "propagate": False}
        for name in ("yalgaar_receiver", "yalgaar_example")
    }
}

# gunicorn 25 and later open a control socket at one path per user; this deployment does not use
# it, and two servers of one user would fight over it. (Older versions ignore the setting.)
control_socket_disable = True

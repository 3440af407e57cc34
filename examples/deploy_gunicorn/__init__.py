"""A production deployment with gunicorn: ``wsgi.py`` (the app) and ``gunicorn_conf.py``."""

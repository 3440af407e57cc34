"""A live presence dashboard: ``flask --app examples.presence_dashboard.dashboard run``."""

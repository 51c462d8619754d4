"""Pages for growth teams and analysts under /ui: server-rendered, signed in with an API key."""

from flask import Flask

from api.pages.session import PagesOnlySessions


def init_app(app: Flask) -> None:
    """Serve the pages: their blueprint, and a cookie session that exists only under /ui."""
    from api.pages.routes import bp

    app.session_interface = PagesOnlySessions()
    app.register_blueprint(bp)

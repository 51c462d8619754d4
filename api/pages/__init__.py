"""Pages for growth teams and analysts under /ui: server-rendered, signed in with an API key."""

from flask import Flask, request

from api.pages.session import PagesOnlySessions, is_page


def init_app(app: Flask) -> None:
    """Serve the pages: their blueprint, and a cookie session that exists only under /ui."""
    from api.pages.routes import bp

    app.session_interface = PagesOnlySessions()
    app.register_blueprint(bp)


def page_error(error):
    """An HTTP error under /ui (a URL no page matches, too) as a page; None elsewhere."""
    if not is_page(request.path):
        return None
    from api.pages.routes import http_error

    return http_error(error)

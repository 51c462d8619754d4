"""Run the app under gunicorn from Python, for `kairos serve`."""

from gunicorn.app.base import BaseApplication


class KairosServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api import create_app

        return create_app()


def run_gunicorn(*, bind: str, workers: int, threads: int, access_log: bool) -> None:
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 120,
        "graceful_timeout": 30,
        "errorlog": "-",
        "loglevel": "info",
    }
    if access_log:
        options["accesslog"] = "-"
    KairosServer(options).run()

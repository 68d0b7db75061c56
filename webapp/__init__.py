"""Gatehouse: deploy tokens for git, container images and packages."""
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from .extensions import csrf, db, login_manager, migrate


def create_app(config=None):
    """Build the app: config, extensions, blueprints, error handlers, CLI."""
    app = Flask(__name__, instance_relative_config=True)
    config_module.load(app, config)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_headers(app)
    register_front(app)
    register_database_errors(app)
    register_cli(app)
    register_logging(app)
    trusted = int(app.config.get("TRUSTED_PROXIES", 0) or 0)
    if trusted:
        # Only as many X-Forwarded-For hops as there are proxies we run: a client
        # cannot forge its way out of a ban by sending the header itself.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=trusted, x_host=trusted)
    return app


def register_extensions(app):
    from pathlib import Path

    from . import models  # noqa: F401  (the models must be known to migrations)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"),
                     render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "You need to sign in before continuing."
    csrf.init_app(app)


def register_blueprints(app):
    from .protocols import BLUEPRINTS as protocol_blueprints
    from .web import BLUEPRINTS as web_blueprints
    for blueprint in protocol_blueprints:
        csrf.exempt(blueprint)  # every protocol request authenticates itself
        app.register_blueprint(blueprint)
    for blueprint in web_blueprints:
        app.register_blueprint(blueprint)


def register_error_handlers(app):
    from .web.errors import register
    register(app)


def register_headers(app):
    from .web.headers import register
    register(app)


def register_front(app):
    from .protocols.spool import register
    register(app)


def register_database_errors(app):
    from .database_errors import register
    register(app)


def register_cli(app):
    from .cli import register
    register(app)


def register_logging(app):
    from .logs import install_scrubber
    # Decisions worth diagnosing (each /jwt/auth answer, refused runners) log at INFO.
    app.logger.setLevel(app.config["LOG_LEVEL"])
    install_scrubber(app)

"""The package's version, written once (``pyproject.toml`` reads it from here; the default image tag, the CLI's
``--version``, telemetry's ``service.version`` and the provider metadata import it).

Its own module so that low modules (telemetry, config) need not import the package root."""

__version__ = "0.1.0"

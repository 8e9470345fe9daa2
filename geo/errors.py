"""Domain errors. Each knows the HTTP status a web layer should answer with (as pygeoapi's do)."""


class KpmapError(Exception):
    """Base of every error kpmap raises on purpose; `status` is the HTTP answer it maps to."""

    status = 500
    code = "internal-error"


class FetchError(KpmapError):
    """An upstream file could not be fetched or failed its hash check."""

    status = 502
    code = "fetch-failed"


class BuildError(KpmapError):
    """The store could not be built from its inputs; the previous store is left untouched."""

    status = 500
    code = "build-failed"


class StoreNotFound(KpmapError, RuntimeError):
    """No built store at the given folder (or none this kpmap can read). A RuntimeError too, so
    that gunicorn, failing to load the app, prints its one line rather than a traceback."""

    status = 503
    code = "store-not-found"


class StoreCorrupt(StoreNotFound):
    """A store file that is not what its build wrote (geo.store.integrity): changed, cut short or
    missing. The message names the file and what to run."""

    code = "store-corrupt"


class LayerNotFound(KpmapError):
    """A layer name that the store does not hold."""

    status = 404
    code = "layer-not-found"


class InvalidQuery(KpmapError):
    """A query argument (bbox, date, property filter) that cannot be answered as given."""

    status = 400
    code = "invalid-query"


class SchemaError(KpmapError):
    """Input or store content that does not match a layer's schema."""

    status = 422
    code = "schema-error"


class InvalidTile(InvalidQuery):
    """A tile address outside the grid: z, x or y not an integer, z beyond the zoom range, or
    x, y >= 2**z."""

    code = "invalid-tile"


class RowWithheld(KpmapError):
    """A record whose dataset's terms forbid handing its rows out (geo.licences); the message
    names the terms and the setting by which a licensed operator serves it."""

    status = 403
    code = "licence-restricted"


class OlderRelease(KpmapError):
    """An import of a dataset's release older than the one the store already holds (the newer
    release replaced it; importing the older one again would bring back what it replaced)."""

    status = 409
    code = "older-release"


class RenderBusy(KpmapError):
    """An answer that must be rendered (a filtered GeoPackage) while as many renders as allowed
    are running (geo.renders); the client should try again after `retry_after` seconds."""

    status = 503
    code = "busy"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def problem_list(title: str, problems: list[str]) -> str:
    """One message for many problems, each on its own line, so an author fixes a file in one pass.

    >>> print(problem_list("data/x.csv has 2 problems", ["line 2: a", "line 5: b"]))
    data/x.csv has 2 problems:
      - line 2: a
      - line 5: b
    """
    return title + ":\n" + "\n".join(f"  - {p}" for p in problems)

"""The store: the built layers, opened once and queried.

    from geo.store import Store
    store = Store.open("data/store")
    store.query("districts", bbox=(70.0, 33.0, 71.0, 34.0), former_fata=True)

The package: files (the GeoJSON store on disk, queried from memory), schemas (what each layer
holds, and validation).
"""

from geo.store.files import FeatureNotFound, FileLayer, Store, current_version
from geo.store.layer import Layer

__all__ = ["FeatureNotFound", "FileLayer", "Layer", "Store", "current_version"]

"""A package's front: the names a package offers the code outside it, each imported from its
module when first asked for (a module ``__getattr__``, PEP 562).

Importing one name of a package then loads the module that defines it and no other, as
importing that module itself did: the CLI's parser loads no client, an idle keeper no provider,
a service that needs one constant of a provider not the provider. A front (``__init__.py``)
says what it offers twice, for two readers: its ``if TYPE_CHECKING:`` imports, for type checkers
and people, and the table it hands ``lazy_front``, for the interpreter;
tests/unit/test_package_fronts.py keeps the two and ``__all__`` equal.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's, without importing typing: a front is on the CLI's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def lazy_front(package: str, offers: Mapping[str, tuple[str, ...]]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``'s front: ``offers`` maps each of its modules
    (named inside the package) to the names the front takes from it, each as an import names it
    (``"probe"``, or ``"probe as network_probe"`` where two modules have a ``probe``)."""
    where: dict[str, tuple[str, str]] = {}
    for module, names in offers.items():
        for spelled in names:
            name, _, offered = spelled.partition(" as ")
            where[offered or name] = (f"{package}.{module}", name)

    def __getattr__(name: str) -> object:
        if name not in where:  # a submodule, or nothing: Python's own import looks next
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        return getattr(importlib.import_module(module), attr)

    return __getattr__

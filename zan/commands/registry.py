"""Importing this module fills `zan.commands.table.REGISTRY` with every family."""

from zan.commands import table

# Each import registers its family's commands.
from zan.commands import keys, server, strings  # noqa: F401
from zan.commands import hashes, sets  # noqa: F401
from zan.commands import lists, zsets  # noqa: F401
from zan.commands import introspection  # noqa: F401
from zan.commands import transactions  # noqa: F401
from zan.commands import keyspace, zset_algebra  # noqa: F401
from zan.commands import bitfield, lcs  # noqa: F401
from zan.commands import json_docs, table_scans  # noqa: F401
from zan.commands import hyperloglog, geo  # noqa: F401
from zan.commands import scripting  # noqa: F401

REGISTRY = table.REGISTRY
spec_named = table.spec_named

__all__ = ["REGISTRY", "spec_named"]

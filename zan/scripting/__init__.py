"""Lua scripting as Redis 7.0 has it: a sandboxed Lua 5.1 runtime (`engine`), Redis's
Lua libraries that Lua itself lacks (`libs`), and nothing of the node: the node runs the
commands a script calls (`zan.node.scripts`)."""

__all__ = ["engine", "libs"]

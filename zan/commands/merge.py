"""How the node combines per-partition replies of MULTI_KEY commands.

Every function has the `CommandSpec.merge` signature ``merge(parts, ngroups)``: `parts` is
``[(positions, reply), ...]``, one item per partition, where `positions` are the indexes
(0-based, in call order) of the key groups sent to that partition and `reply` is what
the handler answered for them; `ngroups` is the number of key groups of the whole call.
A reply may be an error value (a `ZanError`): the first one, in partition order, wins,
as a single-node Redis would have reported one error for the whole command.
"""

from __future__ import annotations

from zan.errors import ZanError
from zan.resp.types import OK

__all__ = ["merge_sum", "merge_positional", "merge_ok", "first_error"]


def first_error(parts):
    for _, reply in parts:
        if isinstance(reply, ZanError):
            return reply
    return None


def merge_sum(parts, ngroups: int):
    """DEL, EXISTS, UNLINK, TOUCH: the total of the integer replies."""
    err = first_error(parts)
    if err is not None:
        return err
    return sum(reply for _, reply in parts)


def merge_positional(parts, ngroups: int):
    """MGET: each partition answered one value per key it was given, in the order given;
    put them back where the keys were in the call."""
    err = first_error(parts)
    if err is not None:
        return err
    out = [None] * ngroups
    for positions, reply in parts:
        if len(positions) != len(reply):
            raise ValueError(f"{len(reply)} replies for {len(positions)} keys")
        for pos, value in zip(positions, reply):
            out[pos] = value
    return out


def merge_ok(parts, ngroups: int):
    """MSET: OK once every partition said OK."""
    err = first_error(parts)
    return err if err is not None else OK

"""Majority arithmetic over one voter set (etcd's ``quorum/majority.go``).

Membership changes one node at a time, so a single majority config is enough: no joint
consensus.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Callable, Collection, Mapping

__all__ = ["VoteResult", "committed_index", "vote_result", "majority"]


class VoteResult(IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Collection[int], acked: Callable[[int], int]) -> int:
    """The largest index acknowledged by a majority of `voters` (0 if there are none)."""
    n = len(voters)
    if n == 0:
        # An empty config commits everything: there is nobody to disagree.
        return 1 << 63
    if n == 1:
        for v in voters:
            return acked(v)
    srt = sorted([acked(v) for v in voters], reverse=True)
    return srt[n // 2]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    if not voters:
        return VoteResult.WON
    granted = missing = 0
    for v in voters:
        vote = votes.get(v)
        if vote is None:
            missing += 1
        elif vote:
            granted += 1
    q = majority(len(voters))
    if granted >= q:
        return VoteResult.WON
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST

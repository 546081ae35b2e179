"""leader_action: leadership goes to RaftNodes[0] only when that replica is reachable."""

from zan.node.reconcile import TransferLeader, leader_action
from zan.pd.model import PartitionReplicaInfo

NODES = ("1:127.0.0.1::1:2:datanode", "2:127.0.0.1::3:4:datanode", "3:127.0.0.1::5:6:datanode")


def _action(me, active, removings=None):
    info = PartitionReplicaInfo.initial(NODES)
    return leader_action(me, info, [1, 2, 3], {1: 10, 2: 10, 3: 10}, 10,
                         conf_change_pending=False, since_leader_change=100.0,
                         change_wait=1.0, lag=0, active=active)


def test_hands_leadership_to_the_desired_leader_when_it_is_active():
    assert _action(2, {1, 3}) == TransferLeader(1)
    assert _action(2, None) == TransferLeader(1)     # no activity known: every voter


def test_no_transfer_to_a_desired_leader_that_is_down():
    # Its match index still equals the commit index (nothing could be committed while
    # transfers to it were pending), but it has not answered lately.
    assert _action(2, {3}) is None

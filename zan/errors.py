"""The one error hierarchy of Zan.

Every error a client, an operator or a peer can see derives from `ZanError`.  Each
family knows how it is shown: `RespError` carries the exact text of a RESP error reply
(prefix included, as Redis writes it), and `resp_message()` / `http_status` give the
mapping used by the single RESP encoder (`zan.resp.encoder`) and the single HTTP
error handler of each Klein app.
"""

from __future__ import annotations


class ZanError(Exception):
    """Root of every error Zan raises on purpose."""

    http_status = 500

    def resp_message(self) -> str:
        """The text of the RESP error reply (without the leading '-')."""
        text = str(self) or type(self).__name__
        return text if _has_prefix(text) else "ERR " + text


def _has_prefix(text: str) -> bool:
    head = text.split(" ", 1)[0]
    return bool(head) and (head.isupper() or head.startswith("ERR_")) and head.replace("_", "").isalnum()


# --- errors that are replies to a Redis command -------------------------------------

class RespError(ZanError):
    """An error reply with Redis's exact text, e.g. ``RespError("WRONGTYPE Operation ...")``.

    The message is sent as is; a message without an upper-case prefix word gets "ERR ".
    """

    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def resp_message(self) -> str:
        return self.message if _has_prefix(self.message) else "ERR " + self.message


class ProtocolError(RespError):
    """Malformed RESP input.  The server replies with it and closes the connection."""

    def __init__(self, detail: str):
        super().__init__("ERR Protocol error: " + detail)
        self.detail = detail


# Shared texts (Redis's shared.* objects in server.h).
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
NO_SUCH_KEY = "ERR no such key"
OUT_OF_RANGE = "ERR index out of range"


def wrong_arity(name: str) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{name}' command")


def wrongtype() -> RespError:
    return RespError(WRONGTYPE)


# --- cluster / replication errors ---------------------------------------------------
# Texts follow ZanRedisDB, so its SDK's "cluster changed" retry logic keeps working.

class ClusterError(ZanError):
    """The cluster cannot serve the request here and now; a client may retry elsewhere."""

    http_status = 503
    text = "ERR_CLUSTER_CHANGED: cluster changed"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.text)

    def resp_message(self) -> str:
        return str(self)


class NamespaceNotFound(ClusterError):
    http_status = 404
    text = "ERR_CLUSTER_CHANGED: namespace is not found"


class PartitionNotFound(ClusterError):
    http_status = 404
    text = "ERR_CLUSTER_CHANGED: partition of the namespace is not found"


class NotLeader(ClusterError):
    """This replica does not lead the partition; `leader_hint` names the leader if known."""

    text = "ERR_CLUSTER_CHANGED: partition of the namespace is not leader on the node"

    def __init__(self, message: str | None = None, leader_hint=None):
        super().__init__(message)
        self.leader_hint = leader_hint


class NoLeader(ClusterError):
    text = "ERR_CLUSTER_CHANGED: partition of the node has no leader"


class NotReady(ClusterError):
    text = "ERR_CLUSTER_CHANGED: raft group not ready"


class LeaderChanged(ClusterError):
    """A proposal was lost to a change of leader (its entry was overwritten or never committed)."""

    text = "ERR_CLUSTER_CHANGED: raft proposal context canceled"


class ProposalDropped(ClusterError):
    text = "ERR_CLUSTER_CHANGED: raft proposal dropped"


class Stopping(ClusterError):
    text = "ERR_CLUSTER_CHANGED: the node stopped"


class ProposalTimeout(ZanError):
    http_status = 504

    def __init__(self, message: str = "ERR proposal timed out: context deadline exceeded"):
        super().__init__(message)

    def resp_message(self) -> str:
        return str(self)


# --- operator errors ----------------------------------------------------------------

class ConfigError(ZanError):
    """Invalid configuration; raised at start-up, names the offending key."""

    http_status = 400


class BadRequest(ZanError):
    """An HTTP request with missing or invalid parameters."""

    http_status = 400


class NotFound(ZanError):
    http_status = 404


class StorageError(ZanError):
    """The disk holds something we cannot trust (a corrupt record, a torn file in the middle)."""

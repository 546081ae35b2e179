from twisted.application.service import ServiceMaker

zan_node = ServiceMaker("Zan data node", "zan.node.tap", "A Redis-protocol, Raft-replicated "
                        "key-value store node (standalone without etcd)", "zan-node")

"""zan.etcd"""

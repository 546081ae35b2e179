"""zan.node"""

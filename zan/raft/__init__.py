"""zan.raft"""

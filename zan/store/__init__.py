"""zan.store"""

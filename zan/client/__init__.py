"""zan.client"""

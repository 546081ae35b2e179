"""zan.pd"""

"""zan.resp"""

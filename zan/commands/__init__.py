"""zan.commands"""

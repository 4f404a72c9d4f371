"""kubemu.apiserver"""

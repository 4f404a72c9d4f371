"""kubemu.cloudlb"""

"""kubemu.controllers"""

"""kubemu.nodeagent"""

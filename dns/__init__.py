"""kubemu.dns"""

"""spanlake.dashboard"""

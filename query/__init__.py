"""spanlake.query"""

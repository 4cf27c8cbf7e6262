"""spanlake.jobs"""

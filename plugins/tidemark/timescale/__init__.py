"""timescale"""

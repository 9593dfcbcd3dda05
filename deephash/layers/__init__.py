"""deephash.layers"""

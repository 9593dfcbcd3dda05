"""deephash.losses"""

"""deephash.data"""

"""deephash.backbones"""

"""The broker core: vhosts, exchanges, queues, bindings, consumers, channels and users.

Pure Python state driven by plain method calls; it knows nothing of frames or sockets.
"""

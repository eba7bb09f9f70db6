"""Real-time delivery: the Phoenix channel protocol (seed 001's client speaks it) on Django Channels,
and the broadcast of every stored message to the sockets that may see it."""

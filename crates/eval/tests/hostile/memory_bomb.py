# Allocates and touches memory until something stops it.
chunks = []
while True:
    chunks.append(bytearray(64 * 1024 * 1024))

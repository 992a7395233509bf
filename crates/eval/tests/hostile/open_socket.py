# Tries to reach a TCP listener on the host's loopback (the test listens and counts connections).
import socket
s = socket.create_connection(("127.0.0.1", {PORT}), timeout=2)
s.sendall(b"escaped")

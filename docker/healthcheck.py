"""The container's HEALTHCHECK: exit 0 when the relay greets on HOST PORT
within five seconds (220, or 554 for a client outside client_networks:
it is alive either way), 1 otherwise."""

import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        greeting = s.recv(512)
        if greeting[:3] == b"220":
            s.sendall(b"QUIT\r\n")
except OSError as e:
    print(f"mxg health: {host}:{port}: {e}")
    sys.exit(1)
sys.exit(0 if greeting[:3] in (b"220", b"554") else 1)

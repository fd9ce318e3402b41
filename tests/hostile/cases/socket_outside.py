import socket


def run():
    connected = 0
    for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("example.com", 80)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            connected += 1
        except OSError:
            pass
    return {"score": 0.5, "connected": connected}

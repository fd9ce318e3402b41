import socket


def run():
    try:
        socket.create_connection(("127.0.0.1", __PORT__), timeout=2).close()
        return {"score": 0.5, "connected": 1}
    except OSError as exc:
        return {"score": 0.5, "connected": 0, "artifacts": {"why": repr(exc)}}

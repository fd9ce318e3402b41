import os


def run():
    """API keys from the environment, from /proc/<any pid>/environ (the engine's, the fork server's,
    the supervisor's) and from the engine user's home."""
    marker = "__MARKER__"
    found = [name for name, value in os.environ.items() if marker in value]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(f"/proc/{pid}/environ")
            except OSError:
                pass
    try:
        with open("__HOME_SECRET__") as fh:
            if marker in fh.read():
                found.append("home")
    except OSError:
        pass
    return {"score": 0.5, "found": len(found), "artifacts": {"found": ",".join(found)}}

import os


def run():
    chunk = b"\0" * (8 * 1024 * 1024)
    written_mb = 0
    try:
        for index in range(100000):                   # many files: RLIMIT_FSIZE caps only one
            with open(os.path.join(os.getcwd(), f"fill{index}"), "wb") as fh:
                for _ in range(8):
                    fh.write(chunk)
                    written_mb += 8
    except OSError as exc:
        return {"score": 0.5, "written_mb": written_mb, "artifacts": {"stopped": repr(exc)}}
    return {"score": 0.5, "written_mb": written_mb}

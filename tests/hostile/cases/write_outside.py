import os


def run():
    """Write into (or delete from) the run directory, run.db, the task folder and the home folder."""
    damage = []
    for folder in ("__RUN_DIR__", "__TASK_DIR__", "__HOME_DIR__", "/tmp"):
        try:
            with open(os.path.join(folder, "planted_by_candidate.txt"), "w") as fh:
                fh.write("pwned")
            damage.append(f"wrote in {folder}")
        except OSError:
            pass
    for victim in ("__RUN_DIR__/run.db", "__TASK_DIR__/evaluator.py"):
        try:
            with open(victim, "r+b") as fh:
                fh.write(b"garbage")
            damage.append(f"overwrote {victim}")
        except OSError:
            pass
        try:
            os.remove(victim)
            damage.append(f"removed {victim}")
        except OSError:
            pass
    return {"score": 0.5, "damage": len(damage), "artifacts": {"damage": "; ".join(damage)}}

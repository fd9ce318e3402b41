import os
import time


def run():
    if os.fork() == 0:
        os.setsid()                                   # leave the process group
        if os.fork() == 0:
            time.sleep(3600)                          # the daemon, reparented away from its parent
        os._exit(0)
    time.sleep(0.2)
    return 0.5

# Leaves a detached child behind (new session, out of the process group) and exits.
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
raise SystemExit(1)

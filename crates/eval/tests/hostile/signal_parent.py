# Tries to kill its parent, the evaluator, and a bystander process the test started.
import os, signal
for pid in (os.getppid(), {EVALUATOR_PID}, {BYSTANDER_PID}):
    try:
        os.kill(pid, signal.SIGKILL)
    except Exception:
        pass
raise SystemExit(3)
